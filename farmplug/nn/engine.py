"""TensorRT engines through ONNX Runtime's TensorRT execution provider: options and cache keys.

An engine is specific to the model, the GPU and the TensorRT version, so its cache folder is
named by all three: ``<cache>/trt/<model sha256[:16]>-<gpu>-trt<version>``.
:func:`farmplug.nn.prebuild.build_engine` prebuilds it: by hand with ``farmplug build-engine MODEL
--shape WxH`` once per GPU kind, and in every job graph whose stage asks for it
(``StageConfig.engine_build``) as the ``farmplug run engine`` task before that stage's GPU tasks.
A task that finds the engine loads it in seconds instead of building it for minutes.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

from farmplug.errors import FarmplugError

TRT_PROVIDER = "TensorrtExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class TensorRTUnavailable(FarmplugError):
    """TensorRT (or ONNX Runtime's TensorRT provider, or a GPU) is not on this machine."""


def tensorrt_version() -> str | None:
    """The installed TensorRT's version, or None."""
    for dist in ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs", "tensorrt_cu12_libs"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(getattr(tensorrt, "__version__", "unknown"))


def gpu_name(device_id: int = 0) -> str | None:
    """The GPU's name (torch if it sees CUDA, else ``nvidia-smi``), or None."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device_id)
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader", f"--id={device_id}"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def engine_cache_dir(cache: Path, model_sha256: str, gpu: str, trt_version: str) -> Path:
    """The engine cache folder of one model on one GPU kind with one TensorRT version."""
    return Path(cache) / "trt" / f"{model_sha256[:16]}-{_slug(gpu)}-trt{_slug(trt_version)}"


def tensorrt_provider_options(cache_dir: Path, *, fp16: bool, device_id: int = 0,
                              min_input_shapes: dict[str, tuple[int, int, int]] | None = None,
                              max_input_shapes: dict[str, tuple[int, int, int]] | None = None) -> dict[str, object]:
    """ONNX Runtime TensorRT provider options: fp16, the engine and timing caches in ``cache_dir``,
    and (for dynamic shapes) one optimisation profile from the smallest input up to a full tile.

    Each shape is ``name -> (channels, height, width)``.
    """
    options: dict[str, object] = {
        "device_id": device_id,
        "trt_fp16_enable": bool(fp16),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }
    if max_input_shapes:
        options["trt_profile_min_shapes"] = _shapes(min_input_shapes or max_input_shapes)
        options["trt_profile_opt_shapes"] = _shapes(max_input_shapes)
        options["trt_profile_max_shapes"] = _shapes(max_input_shapes)
    return options


def _shapes(inputs: dict[str, tuple[int, int, int]]) -> str:
    return ",".join(f"{name}:1x{c}x{h}x{w}" for name, (c, h, w) in inputs.items())
