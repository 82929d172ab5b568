"""Prebuilding a model's TensorRT engine: what ``farmplug build-engine`` and the job graph's
``farmplug run engine`` task run (:func:`build_engine`), and the record of what it did.

It exports the ONNX graph into the model cache and, where ONNX Runtime has its TensorRT provider
and a GPU starts it, runs the model once on a full tile so the provider builds the engine into its
cache folder (:func:`farmplug.nn.engine.engine_cache_dir`), where the stage's tasks find it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from farmplug.nn.engine import TRT_PROVIDER, TensorRTUnavailable
from farmplug.schema import StrictModel


class EngineRecord(StrictModel):
    """What an engine build did (``farmplug build-engine --json``, and the record ``farmplug run
    engine`` writes): the ONNX graph it exported and the TensorRT engine it built, or why it built none."""

    schema_version: Literal[1] = 1
    model: str = Field(description="the weights file")
    model_sha256: str = Field(description="the weights' content hash (the engine cache is keyed by it)")
    shape: str = Field(description="WxH: the largest output tile the engine serves")
    onnx: str | None = Field(default=None, description="the exported ONNX graph (None: ONNX Runtime is not installed)")
    built: bool = Field(description="a TensorRT engine was built (or found) and cached")
    backend: str | None = Field(default=None, description="the inference backend that built it (onnxruntime-tensorrt)")
    engine: str | None = Field(default=None, description="the engine cache folder (model hash, GPU, TensorRT version)")
    reason: str | None = Field(default=None, description="why no engine was built")


def build_engine(model: Path, shape: tuple[int, int], *, cache: Path | None = None,
                 onnx_only: bool = False) -> EngineRecord:
    """Export ``model``'s ONNX graph into the cache and, where ONNX Runtime has its TensorRT provider
    and a GPU starts it, build and cache the (fp16) engine for output tiles up to ``shape``
    (width, height).

    Where no engine can be built here (no ONNX Runtime, no TensorRT, no GPU, a shape the network
    cannot take, a build that fails) the record says ``built: false`` and why; the ONNX graph is
    exported all the same where ONNX Runtime is installed. ``onnx_only`` stops after the export.

    Raises:
        FarmplugError: the weights do not read back, or there is no ONNX graph of them and no torch
            to export one.
    """
    from farmplug.nn.weights import load_weights

    weights = load_weights(Path(model))
    width, height = shape
    known = {"model": str(model), "model_sha256": weights.sha256, "shape": f"{width}x{height}"}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return EngineRecord(**known, built=False,
                            reason="ONNX Runtime is not installed here (pip install farmplug[models]); no engine built")
    from farmplug.nn.export import onnx_for

    graph = onnx_for(weights, cache=cache)
    known["onnx"] = str(graph)
    multiple = weights.arch.size_multiple
    if width % multiple or height % multiple:
        return EngineRecord(**known, built=False, reason=f"--shape {width}x{height} is not a multiple of {multiple} "
                                                         f"pixels, which {weights.arch.name} needs; no engine built")
    if onnx_only:
        return EngineRecord(**known, built=False, reason="asked for the ONNX graph only")
    try:
        backend, folder = _build(weights, (height, width), cache)
    except TensorRTUnavailable as err:
        return EngineRecord(**known, built=False, reason=str(err))
    return EngineRecord(**known, built=True, backend=backend, engine=str(folder))


def _build(weights, tile_shape: tuple[int, int], cache: Path | None) -> tuple[str, Path]:
    """Build and cache the engine of ``weights`` for tiles up to ``tile_shape`` (height, width).

    Raises:
        TensorRTUnavailable: no TensorRT provider, TensorRT or GPU here, or the build failed.
    """
    from farmplug.nn.backends import FACTORIES, BackendOptions, probe, tensorrt_options
    from farmplug.nn.export import example_inputs

    if TRT_PROVIDER not in probe().ort_providers:
        raise TensorRTUnavailable("ONNX Runtime here has no TensorRT execution provider (install onnxruntime-gpu "
                                  "and TensorRT on the GPU node)")
    options = BackendOptions(cache=cache, tile_shape=tile_shape)
    folder = Path(str(tensorrt_options(weights, options)["trt_engine_cache_path"]))
    name = "onnxruntime-tensorrt"
    try:
        backend = FACTORIES[name](weights, options)
    except TensorRTUnavailable:
        raise
    except Exception as err:  # any failure to start (libraries, driver) is TensorRT not running here
        raise TensorRTUnavailable(f"TensorRT did not start here: {_first_line(err)}") from err
    try:
        height, width = tile_shape
        backend.run(example_inputs(weights, height, width))  # builds the engine and caches it
    except Exception as err:  # ONNX Runtime's own errors: a failed build is an engine not built
        raise TensorRTUnavailable(f"the TensorRT engine build failed: {_first_line(err)}") from err
    finally:
        backend.close()
    return name, folder


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]
