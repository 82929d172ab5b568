"""ONNX export (dynamic height and width), checked against torch on the same input.

Exported graphs carry the weights' hash in their metadata (``farmplug:weights_sha256``), so a
cached or shipped ``.onnx`` is used only with the weights it was made from.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.nn.weights import Weights

log = logging.getLogger(__name__)

OPSET = 17
SHA_KEY = "farmplug:weights_sha256"


def cache_root() -> Path:
    """Where exported graphs and TensorRT engines are cached (``FARMPLUG_MODEL_CACHE``, else ~/.cache)."""
    given = os.environ.get("FARMPLUG_MODEL_CACHE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "farmplug" / "models"


def example_inputs(weights: Weights, height: int, width: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible random inputs for an output of ``height`` x ``width`` (HDR colour, unit normals, depths)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in weights.arch.inputs:
        h, w = round(height * spec.scale), round(width * spec.scale)
        parts = []
        for feature in spec.features:
            if feature == "color":
                parts.append(rng.gamma(1.0, 0.5, (3, h, w)))
            elif feature == "albedo":
                parts.append(rng.uniform(0, 1, (3, h, w)))
            elif feature == "normal":
                n = rng.normal(size=(3, h, w))
                parts.append(n / np.linalg.norm(n, axis=0, keepdims=True))
            elif feature == "depth":
                parts.append(rng.uniform(0.5, 30, (1, h, w)))
            else:
                raise FarmplugError(f"no example values for feature {feature}")
        inputs[spec.name] = np.concatenate(parts)[None].astype(np.float32)
    return inputs


@dataclass(frozen=True)
class ExportResult:
    """An exported graph and how it compared with torch."""

    path: Path
    max_abs_diff: float
    shape: tuple[int, int]


def export_onnx(weights: Weights, path: str | Path, *, check_shape: tuple[int, int] = (64, 64),
                tolerance: float = 1e-3) -> ExportResult:
    """Export ``weights`` to ONNX with dynamic height/width and check it against torch (ORT CPU).

    The comparison runs both on the same random input of ``check_shape`` (output height, width)
    and measures the largest absolute difference relative to the output's scale (values over 1
    are compared relatively, as HDR colour should be).

    Raises:
        FarmplugError: torch, onnx or onnxruntime missing, or the graph differs by more than ``tolerance``.
    """
    import torch

    path = Path(path)
    net = weights.module()
    names = [spec.name for spec in weights.arch.inputs]
    sample = example_inputs(weights, *check_shape)
    args = tuple(torch.from_numpy(sample[n]) for n in names)
    axes = {n: {2: f"{n}_h", 3: f"{n}_w"} for n in names} | {weights.arch.output: {2: "out_h", 3: "out_w"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: no onnxscript needed, and dynamic axes by name.
            torch.onnx.export(net, args, tmp, dynamo=False, input_names=names, output_names=[weights.arch.output],
                              dynamic_axes=axes, opset_version=OPSET)
        _stamp(tmp, weights)
        with torch.no_grad():
            expected = net(*args).numpy()
        got = run_onnx_cpu(tmp, sample)
        diff = max_relative_diff(expected, got)
        if not diff <= tolerance:
            raise FarmplugError(f"ONNX export differs from torch by {diff:.3g} (more than {tolerance})", path=path)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("exported %s to %s (max difference from torch %.2g)", weights.arch.name, path, diff)
    return ExportResult(path=path, max_abs_diff=diff, shape=check_shape)


def max_relative_diff(expected: np.ndarray, got: np.ndarray) -> float:
    """Largest ``|a - b| / max(1, |a|)``: absolute below 1, relative above (HDR values)."""
    return float(np.max(np.abs(expected - got) / np.maximum(1.0, np.abs(expected))))


def _stamp(path: str | Path, weights: Weights) -> None:
    import onnx

    model = onnx.load(str(path))
    entries = {SHA_KEY: weights.sha256, "farmplug:architecture": weights.arch.name,
               "farmplug:weights_version": str(weights.metadata.get("version", ""))}
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(path))


def onnx_sha(path: str | Path) -> str:
    """The weights hash a graph was exported from ('' when it carries none)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map.get(SHA_KEY, "")


def run_onnx_cpu(path: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def onnx_for(weights: Weights, *, cache: Path | None = None) -> Path:
    """An ONNX graph of ``weights``: the one shipped beside it (``MODEL.onnx``) when made from the
    same weights, else one exported once into the cache (needs torch).

    Raises:
        FarmplugError: no matching graph and torch is not installed to export one.
    """
    if weights.path is not None:
        beside = weights.path.with_suffix(".onnx")
        if beside.is_file() and onnx_sha(beside) == weights.sha256:
            return beside
    target = (cache or cache_root()) / f"{weights.arch.name}-{weights.sha256[:16]}.onnx"
    if target.is_file():
        return target
    try:
        import torch  # noqa: F401
    except ImportError:
        raise FarmplugError(f"no ONNX graph of these weights (looked for {target}) and no torch to export one: "
                            "run `farmplug build-engine MODEL` where torch is installed", path=weights.path) from None
    return export_onnx(weights, target).path
