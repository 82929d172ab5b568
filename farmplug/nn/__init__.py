"""farmplug's model layer: architectures, weights, ONNX export, inference backends and tiling.

Importing this package (or any module here but the ones named below) is light: torch and ONNX
Runtime are imported inside the functions that need them, so ``import farmplug`` never pulls
them in. Torch is needed to build, train or export a model (:mod:`farmplug.nn.archs`,
:func:`farmplug.nn.weights.load_module`, :mod:`farmplug.nn.export`); ONNX Runtime to run an
exported one (:mod:`farmplug.nn.backends`).

- :mod:`farmplug.nn.registry`: architectures and their descriptors (inputs, scale, size multiple,
  channels, half precision), as spandrel's are.
- :mod:`farmplug.nn.weights`: ``safetensors`` weights with a metadata header; never pickle.
- :mod:`farmplug.nn.export`: ONNX export with dynamic height and width, checked against torch.
- :mod:`farmplug.nn.backends`: one inference interface over ONNX Runtime (TensorRT, CUDA, CPU)
  and PyTorch (CUDA fp16, CPU), chosen by what the machine has.
- :mod:`farmplug.nn.tiling`: tiles with overlap under a memory budget; out-of-memory retries smaller.
"""
