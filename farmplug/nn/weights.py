"""Weights files: ``safetensors`` with a metadata header saying what the weights are.

A weights file holds the network's tensors (and, for a training checkpoint, the optimiser's, under
``optimizer/``) and string metadata:

=========================  =================================================================
``farmplug:architecture``  the registry name (:mod:`farmplug.nn.registry`)
``farmplug:arch_version``  the architecture version the tensors fit
``farmplug:hparams``       JSON of the module's hyper-parameters
``farmplug:version``       the weights' own version (bumped on each release of new weights)
``farmplug:training``      JSON summary of the training data and run (scenes, crops, iterations)
``farmplug:normalisation`` how inputs are normalised (inside the graph for shipped models)
``farmplug:command``       the command line that made the file
=========================  =================================================================

Files are read with ``safetensors``' NumPy loader, never with pickle: a ``torch.save`` file is
refused by name. Reading the header needs neither torch nor the tensors' memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.nn.registry import ArchDescriptor, architecture

PREFIX = "farmplug:"
OPTIMIZER_PREFIX = "optimizer/"
#: Magic bytes of what farmplug refuses to unpickle: a raw pickle, and torch.save's zip.
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")


class WeightsError(FarmplugError):
    """A weights file is missing, corrupt, foreign or for another architecture."""


@dataclass(frozen=True)
class Weights:
    """A weights file read into memory: the tensors (NumPy) and the metadata header.

    Attributes:
        arch: The architecture's descriptor.
        hparams: The module's hyper-parameters.
        tensors: Parameter name -> array (the module's ``state_dict`` names).
        metadata: Every header entry, ``farmplug:`` prefix removed (``training`` and ``hparams``
            decoded from JSON).
        path: Where it was read from.
        sha256: The file's content hash (engine caches are keyed by it).
        optimizer: The optimiser state of a checkpoint (name -> array), else empty.
    """

    arch: ArchDescriptor
    hparams: dict[str, Any]
    tensors: dict[str, np.ndarray]
    metadata: dict[str, Any]
    path: Path | None = None
    sha256: str = ""
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def training(self) -> dict[str, Any]:
        return dict(self.metadata.get("training") or {})

    def module(self, *, eval_mode: bool = True):
        """The torch module with these weights (imports torch).

        Raises:
            WeightsError: the tensors do not fit the architecture.
        """
        import torch

        net = self.arch.build(**self.hparams)
        state = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in self.tensors.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise WeightsError(f"the tensors do not fit architecture {self.arch.name}: {first}", path=self.path) from None
        return net.eval() if eval_mode else net


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    path: str | Path,
    arch: ArchDescriptor,
    tensors: Mapping[str, Any],
    *,
    hparams: Mapping[str, Any] | None = None,
    version: str = "1",
    training: Mapping[str, Any] | None = None,
    command: str = "",
    optimizer: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` (NumPy arrays or torch tensors) with the metadata header, atomically.

    Raises:
        WeightsError: the file cannot be written.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    arrays = {name: _as_numpy(value) for name, value in tensors.items()}
    arrays.update({OPTIMIZER_PREFIX + name: _as_numpy(value) for name, value in (optimizer or {}).items()})
    metadata = {
        "architecture": arch.name,
        "arch_version": str(arch.version),
        "hparams": json.dumps({**arch.hparams, **(hparams or {})}, sort_keys=True),
        "version": str(version),
        "training": json.dumps(dict(training or {}), sort_keys=True),
        "normalisation": normalisation_note(arch),
        "command": command,
        **dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(arrays, tmp, metadata={PREFIX + k: v for k, v in metadata.items()})
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise WeightsError(f"cannot write weights: {err.strerror or err}", path=path) from None
    return path


def normalisation_note(arch: ArchDescriptor) -> str:
    inputs = "; ".join(f"{spec.name}: {'+'.join(spec.features)} raw linear" for spec in arch.inputs)
    return f"inside the graph (log1p colour, 1/(1+z) depth); inputs {inputs}; output linear HDR"


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The raw ``farmplug:`` header of a weights file (no tensors read).

    Raises:
        WeightsError: missing, a pickle, or not a safetensors file.
    """
    from safetensors import safe_open

    path = _check_file(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types (and OSError) for bad files
        raise WeightsError(f"not a safetensors weights file ({_first_line(err)})", path=path) from None
    return {k[len(PREFIX):]: v for k, v in meta.items() if k.startswith(PREFIX)}


def load_weights(path: str | Path) -> Weights:
    """Read a weights file: header checked against the registry, tensors as NumPy (no pickle, no torch).

    Raises:
        WeightsError: missing, a pickle, corrupt, without farmplug's header, for an unknown
            architecture or another architecture version.
    """
    from safetensors import safe_open

    path = _check_file(path)
    raw = read_metadata(path)
    name = raw.get("architecture")
    if not name:
        raise WeightsError("a safetensors file without farmplug's metadata (farmplug:architecture); "
                           "not a farmplug model", path=path)
    try:
        arch = architecture(name)
    except FarmplugError as err:
        raise WeightsError(str(err), path=path) from None
    if raw.get("arch_version") != str(arch.version):
        raise WeightsError(f"weights for {name} version {raw.get('arch_version')}, this farmplug has version "
                           f"{arch.version}", path=path)
    try:
        hparams = json.loads(raw.get("hparams") or "{}")
        training = json.loads(raw.get("training") or "{}")
    except json.JSONDecodeError as err:
        raise WeightsError(f"corrupt metadata header: {err}", path=path) from None
    tensors: dict[str, np.ndarray] = {}
    optimizer: dict[str, np.ndarray] = {}
    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                value = handle.get_tensor(key)
                if key.startswith(OPTIMIZER_PREFIX):
                    optimizer[key[len(OPTIMIZER_PREFIX):]] = value
                else:
                    tensors[key] = value
    except Exception as err:  # truncated or corrupt data after a valid header
        raise WeightsError(f"corrupt weights ({_first_line(err)})", path=path) from None
    metadata: dict[str, Any] = {**raw, "hparams": hparams, "training": training}
    return Weights(arch=arch, hparams=hparams, tensors=tensors, metadata=metadata, path=path,
                   sha256=file_sha256(path), optimizer=optimizer)


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightsError("weights file not found", path=path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if any(head.startswith(magic) for magic in _PICKLE_MAGIC):
        raise WeightsError("is a pickle (torch.save) file; farmplug never unpickles weights: convert it to "
                           "safetensors", path=path)
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
