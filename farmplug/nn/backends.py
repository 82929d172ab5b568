"""One inference interface over ONNX Runtime (TensorRT, CUDA, CPU) and PyTorch (CUDA fp16, CPU).

:func:`open_backend` tries the backends in :data:`BACKEND_ORDER` that the request allows and the
machine has, and returns the first that starts; the backend's :attr:`Backend.name` is what a
stage records with each output (``farmplug:inference`` on the frame, ``inference`` in the
task's settings). A GPU backend that is listed but fails to start (TensorRT libraries missing, a
driver too old) is skipped with a warning naming it and the backend used instead; a request for
``device="cuda"`` that no CUDA backend can serve is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.nn.engine import CPU_PROVIDER, CUDA_PROVIDER, TRT_PROVIDER
from farmplug.nn.weights import Weights

log = logging.getLogger(__name__)

Runtime = Literal["auto", "onnxruntime", "torch"]
Device = Literal["auto", "cpu", "cuda"]

#: Backends in order of preference: name -> (runtime, device).
BACKEND_ORDER: dict[str, tuple[str, str]] = {
    "onnxruntime-tensorrt": ("onnxruntime", "cuda"),
    "onnxruntime-cuda": ("onnxruntime", "cuda"),
    "torch-cuda": ("torch", "cuda"),
    "onnxruntime-cpu": ("onnxruntime", "cpu"),
    "torch-cpu": ("torch", "cpu"),
}


class Backend(Protocol):
    """A loaded model that maps named NCHW float32 inputs to its NCHW float32 output."""

    name: str
    device: str
    precision: str

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the model on one batch."""

    def close(self) -> None:
        """Release the session or module (safe to call twice)."""


@dataclass(frozen=True)
class Machine:
    """What this machine offers: ONNX Runtime's providers, whether torch is installed and sees CUDA."""

    ort_providers: tuple[str, ...] = ()
    torch: bool = False
    torch_cuda: bool = False

    def has(self, name: str) -> bool:
        """Whether backend ``name`` can be tried here."""
        need = {
            "onnxruntime-tensorrt": TRT_PROVIDER in self.ort_providers,
            "onnxruntime-cuda": CUDA_PROVIDER in self.ort_providers,
            "torch-cuda": self.torch_cuda,
            "onnxruntime-cpu": CPU_PROVIDER in self.ort_providers,
            "torch-cpu": self.torch,
        }
        return need[name]


def probe() -> Machine:
    """Look at this machine (imports onnxruntime and torch when installed)."""
    try:
        import onnxruntime as ort

        providers = tuple(ort.get_available_providers())
    except ImportError:
        providers = ()
    try:
        import torch

        has_torch, cuda = True, bool(torch.cuda.is_available())
    except ImportError:
        has_torch, cuda = False, False
    return Machine(providers, has_torch, cuda)


@dataclass
class BackendOptions:
    """How to build a backend.

    Attributes:
        cache: Folder for exported graphs and TensorRT engines (default :func:`~farmplug.nn.export.cache_root`).
        threads: CPU threads (None: the runtime's default, all cores).
        tile_shape: The largest output tile (height, width) a TensorRT engine is built for.
        half: fp16 on GPU backends where the architecture allows it.
    """

    cache: Path | None = None
    threads: int | None = None
    tile_shape: tuple[int, int] = (1024, 1024)
    half: bool = True
    extra: dict[str, object] = field(default_factory=dict)


Factory = Callable[[Weights, BackendOptions], Backend]


def candidates(runtime: Runtime = "auto", device: Device = "auto", machine: Machine | None = None) -> list[str]:
    """The backends to try, best first, for ``runtime`` and ``device`` on ``machine``.

    Raises:
        FarmplugError: an unknown runtime or device.
    """
    if runtime not in ("auto", "onnxruntime", "torch"):
        raise FarmplugError(f"unknown inference runtime {runtime!r}; allowed: auto, onnxruntime, torch")
    if device not in ("auto", "cpu", "cuda"):
        raise FarmplugError(f"unknown device {device!r}; allowed: auto, cpu, cuda")
    machine = machine or probe()
    return [name for name, (rt, dev) in BACKEND_ORDER.items()
            if runtime in ("auto", rt) and device in ("auto", dev) and machine.has(name)]


def open_backend(
    weights: Weights,
    *,
    runtime: Runtime = "auto",
    device: Device = "auto",
    options: BackendOptions | None = None,
    machine: Machine | None = None,
    factories: Mapping[str, Factory] | None = None,
) -> Backend:
    """The first backend that starts, in :data:`BACKEND_ORDER`, among those ``runtime``/``device`` allow.

    Args:
        weights: The model.
        runtime: ``onnxruntime``, ``torch`` or ``auto`` (either).
        device: ``cuda`` (fail rather than fall back to the CPU), ``cpu`` or ``auto``.
        options: Cache folder, threads, tile shape, half precision.
        machine: What the machine offers (default: :func:`probe`); tests pass their own.
        factories: name -> factory (default: the real ones); tests inject failing or fake backends.

    Raises:
        FarmplugError: no allowed backend exists or starts here; the message lists what was tried.
    """
    options = options or BackendOptions()
    factories = {**FACTORIES, **(factories or {})}
    names = candidates(runtime, device, machine)
    failures: list[str] = []
    for name in names:
        try:
            backend = factories[name](weights, options)
        except Exception as err:  # any failure to start (missing libraries, driver) moves on to the next
            failures.append(f"{name}: {_first_line(err)}")
            continue
        if failures:
            log.warning("inference on %s (%s could not start)", backend.name, "; ".join(failures))
        else:
            log.info("inference on %s", backend.name)
        return backend
    wanted = f"runtime {runtime}, device {device}"
    tried = "; ".join(failures) if failures else "none of them is installed here"
    hint = " (install onnxruntime-gpu with CUDA, or ask for --device auto)" if device == "cuda" else \
        " (install farmplug[models] or farmplug[torch])"
    raise FarmplugError(f"no inference backend for {wanted}: {tried}{hint}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


# --- ONNX Runtime ------------------------------------------------------------------------------


class OrtBackend:
    """An ONNX Runtime session on one provider (TensorRT and CUDA sessions keep CPU as the fallback
    for operators they lack, but must place the graph on their own provider to count as started)."""

    def __init__(self, name: str, session, precision: str) -> None:
        self.name = name
        self.device = "cuda" if name != "onnxruntime-cpu" else "cpu"
        self.precision = precision
        self._session = session
        self._output = session.get_outputs()[0].name

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        return self._session.run([self._output], feeds)[0]

    def close(self) -> None:
        self._session = None


def _ort_session(weights: Weights, options: BackendOptions, providers: Sequence, want: str):
    import onnxruntime as ort

    from farmplug.nn.export import onnx_for

    graph = onnx_for(weights, cache=options.cache)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if options.threads:
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph), so, providers=list(providers))
    used = session.get_providers()
    if not used or used[0] != want:
        raise FarmplugError(f"ONNX Runtime placed the model on {used[0] if used else 'nothing'}, not {want}")
    return session


def _ort_cpu(weights: Weights, options: BackendOptions) -> Backend:
    return OrtBackend("onnxruntime-cpu", _ort_session(weights, options, [CPU_PROVIDER], CPU_PROVIDER), "fp32")


def _ort_cuda(weights: Weights, options: BackendOptions) -> Backend:
    session = _ort_session(weights, options, [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER], CUDA_PROVIDER)
    return OrtBackend("onnxruntime-cuda", session, "fp32")


def tensorrt_options(weights: Weights, options: BackendOptions) -> dict[str, object]:
    """The TensorRT provider options for ``weights`` on this machine's GPU (cache folder included).

    Raises:
        TensorRTUnavailable: no TensorRT or no GPU.
    """
    from farmplug.nn.engine import (
        TensorRTUnavailable,
        engine_cache_dir,
        gpu_name,
        tensorrt_provider_options,
        tensorrt_version,
    )
    from farmplug.nn.export import cache_root

    version = tensorrt_version()
    if version is None:
        raise TensorRTUnavailable("TensorRT is not installed (pip install farmplug[tensorrt] on a GPU node)")
    gpu = gpu_name()
    if gpu is None:
        raise TensorRTUnavailable("no NVIDIA GPU found for TensorRT")
    folder = engine_cache_dir(options.cache or cache_root(), weights.sha256, gpu, version)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = options.tile_shape
    small, large = {}, {}
    for spec in weights.arch.inputs:
        small[spec.name] = (spec.channels, max(2, round(32 * spec.scale)), max(2, round(32 * spec.scale)))
        large[spec.name] = (spec.channels, round(height * spec.scale), round(width * spec.scale))
    fp16 = options.half and weights.arch.half
    return tensorrt_provider_options(folder, fp16=fp16, min_input_shapes=small, max_input_shapes=large)


def _ort_tensorrt(weights: Weights, options: BackendOptions) -> Backend:
    trt = tensorrt_options(weights, options)
    providers = [(TRT_PROVIDER, trt), (CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    session = _ort_session(weights, options, providers, TRT_PROVIDER)
    return OrtBackend("onnxruntime-tensorrt", session, "fp16" if trt["trt_fp16_enable"] else "fp32")


# --- PyTorch -----------------------------------------------------------------------------------


class TorchBackend:
    """The torch module on CPU (fp32) or CUDA (fp16 where the architecture allows, channels-last)."""

    def __init__(self, weights: Weights, options: BackendOptions, device: str) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise FarmplugError("torch sees no CUDA device")
        self._torch = torch
        self.device = device
        self.name = f"torch-{device}"
        half = device == "cuda" and options.half and weights.arch.half
        self.precision = "fp16" if half else "fp32"
        self._dtype = torch.float16 if half else torch.float32
        if device == "cpu" and options.threads:
            torch.set_num_threads(options.threads)
        net = weights.module().to(device=device, dtype=self._dtype)
        if device == "cuda":
            net = net.to(memory_format=torch.channels_last)
        self._net = net
        self._names = [spec.name for spec in weights.arch.inputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        tensors = [torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(self.device, self._dtype)
                   for v in (inputs[n] for n in self._names)]
        with torch.inference_mode():
            out = self._net(*tensors)
        return out.float().cpu().numpy()

    def close(self) -> None:
        if self._net is not None and self.device == "cuda":
            self._net = None
            self._torch.cuda.empty_cache()
        self._net = None


def _torch_cpu(weights: Weights, options: BackendOptions) -> Backend:
    return TorchBackend(weights, options, "cpu")


def _torch_cuda(weights: Weights, options: BackendOptions) -> Backend:
    return TorchBackend(weights, options, "cuda")


FACTORIES: dict[str, Factory] = {
    "onnxruntime-tensorrt": _ort_tensorrt,
    "onnxruntime-cuda": _ort_cuda,
    "torch-cuda": _torch_cuda,
    "onnxruntime-cpu": _ort_cpu,
    "torch-cpu": _torch_cpu,
}
