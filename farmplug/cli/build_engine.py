"""``farmplug build-engine MODEL --shape WxH``: export the ONNX graph and prebuild the TensorRT engine.

Run once per GPU kind (engines are specific to the GPU and the TensorRT version) before the GPU
tasks, so no task spends minutes building one. The engine lands in the cache folder
(``FARMPLUG_MODEL_CACHE``, else ``~/.cache/farmplug/models``) under a name made of the model's
hash, the GPU and the TensorRT version. Where TensorRT is missing it says so and exits 1; the
ONNX graph is still exported (``--onnx-only`` stops there).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.cli.report import resolution
from farmplug.worker import add_common, help_formatter


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("build-engine", help="export a model to ONNX and prebuild its TensorRT engine for this GPU",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("model", type=Path, help="weights file (.safetensors)")
    p.add_argument("--shape", type=resolution, default=(1024, 1024), metavar="WxH",
                   help="the largest output tile the engine serves (the stage's tile plus its overlap)")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default: FARMPLUG_MODEL_CACHE or ~/.cache)")
    p.add_argument("--onnx-only", action="store_true", help="export (and check) the ONNX graph only")
    p.add_argument("--json", action="store_true", help="print what was built as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.nn.backends import BackendOptions, open_backend
    from farmplug.nn.engine import TensorRTUnavailable
    from farmplug.nn.export import example_inputs, onnx_for
    from farmplug.nn.weights import load_weights

    weights = load_weights(args.model)
    graph = onnx_for(weights, cache=args.cache)
    width, height = args.shape
    multiple = weights.arch.size_multiple
    if width % multiple or height % multiple:
        raise TensorRTUnavailable(f"--shape must be a multiple of {multiple} pixels")
    result = {"model": str(args.model), "onnx": str(graph), "engine": None, "backend": None}
    if not args.onnx_only:
        from farmplug.nn.backends import probe, tensorrt_options

        if "TensorrtExecutionProvider" not in probe().ort_providers:
            raise TensorRTUnavailable("ONNX Runtime here has no TensorRT execution provider (install onnxruntime-gpu "
                                      f"and TensorRT on the GPU node); the ONNX graph is at {graph}")
        options = BackendOptions(cache=args.cache, tile_shape=(height, width))
        folder = tensorrt_options(weights, options)["trt_engine_cache_path"]
        backend = open_backend(weights, runtime="onnxruntime", device="cuda", options=options)
        if backend.name != "onnxruntime-tensorrt":
            backend.close()
            raise TensorRTUnavailable(f"TensorRT did not start here (ran on {backend.name}); no engine built")
        backend.run(example_inputs(weights, height, width))  # builds and caches the engine
        backend.close()
        result.update(engine=str(folder), backend=backend.name)
    if args.json:
        print_json(result)
    else:
        print(f"onnx: {graph}" + (f"\nengine: {result['engine']}" if result["engine"] else ""))
    return 0
