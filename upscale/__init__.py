"""Upscale stage: render the colour at half resolution, upscale it 2x guided by full-resolution passes.

Backend ``guided``: a small network of farmplug's own (:mod:`farmplug.nn`, architecture
``guided-sr-2x``) trained from renders (``farmplug dataset``, ``farmplug train upscale``), run on
ONNX Runtime (TensorRT, CUDA, CPU) or PyTorch. Shipped weights: ``models/guided-sr-2x.safetensors``.
"""
