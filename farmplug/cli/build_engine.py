"""``farmplug build-engine MODEL --shape WxH``: export the ONNX graph and prebuild the TensorRT engine.

Run once per GPU kind (engines are specific to the GPU and the TensorRT version) before the GPU
tasks, so no task spends minutes building one. The engine lands in the cache folder
(``FARMPLUG_MODEL_CACHE``, else ``~/.cache/farmplug/models``) under a name made of the model's
hash, the GPU and the TensorRT version. Where TensorRT is missing it says so and exits 1; the
ONNX graph is still exported (``--onnx-only`` stops there). The job graph runs the same build
(:func:`farmplug.nn.prebuild.build_engine`) as its ``farmplug run engine`` task, which on a node
without TensorRT records why and succeeds instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_json
from farmplug.worker import add_common, help_formatter, tile_shape


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("build-engine", help="export a model to ONNX and prebuild its TensorRT engine for this GPU",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("model", type=Path, help="weights file (.safetensors)")
    p.add_argument("--shape", type=tile_shape, default=(1024, 1024), metavar="WxH",
                   help="the largest output tile the engine serves (the stage's tile plus its overlap)")
    p.add_argument("--cache", type=Path, default=None, help="cache folder (default: FARMPLUG_MODEL_CACHE or ~/.cache)")
    p.add_argument("--onnx-only", action="store_true", help="export (and check) the ONNX graph only")
    p.add_argument("--json", action="store_true", help="print what was built as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.nn.engine import TensorRTUnavailable
    from farmplug.nn.prebuild import build_engine

    record = build_engine(args.model, args.shape, cache=args.cache, onnx_only=args.onnx_only)
    if not record.built and not args.onnx_only:
        where = f"; the ONNX graph is at {record.onnx}" if record.onnx else ""
        raise TensorRTUnavailable(f"{record.reason}{where}")
    if args.json:
        print_json(record.model_dump(mode="json"))
    else:
        print(f"onnx: {record.onnx}" + (f"\nengine: {record.engine}" if record.engine else ""))
    return 0
