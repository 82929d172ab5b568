"""Running a model over a frame in tiles with overlap, under a memory budget, retrying smaller on OOM.

Tiles are cut on the output grid (multiples of the architecture's size multiple, so every input
at a lower scale is cut on whole pixels), each grown by an overlap of at least the network's
receptive field; only each tile's core is kept, so the tiled result equals the untiled one up to
floating-point noise. The tile size comes from a memory budget; when the device still runs out of
memory (a CUDA OOM, or a host ``MemoryError``) the frame is run again with tiles half the size,
down to :data:`MIN_TILE`, and only then does the task fail.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.nn.backends import Backend
from farmplug.nn.registry import ArchDescriptor

log = logging.getLogger(__name__)

MIN_TILE = 64
#: Bytes of device memory one output pixel needs while the network runs (activations, workspace).
BYTES_PER_PIXEL = 2048
_OOM_WORDS = ("out of memory", "cuda_error_out_of_memory", "cudaerrormemoryallocation", "failed to allocate memory",
              "out_of_memory", "outofmemory")


class OutOfMemory(FarmplugError):
    """The frame did not fit even in the smallest tiles."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` says the device (or host) ran out of memory: torch's OutOfMemoryError, a
    MemoryError, or ONNX Runtime's allocation failures (which arrive as plain runtime errors)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    text = str(err).lower()
    return any(word in text for word in _OOM_WORDS)


@dataclass(frozen=True)
class Tile:
    """One tile on the output grid: the core it delivers and the padded window it is run on."""

    y0: int
    y1: int
    x0: int
    x1: int
    py0: int
    py1: int
    px0: int
    px1: int


def _splits(size: int, tile: int, multiple: int) -> list[tuple[int, int]]:
    count = max(1, math.ceil(size / tile))
    step = math.ceil(size / count / multiple) * multiple
    return [(start, min(size, start + step)) for start in range(0, size, step)]


def plan_tiles(height: int, width: int, tile: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles of about ``tile`` pixels a side (even sizes, multiples of ``multiple``) covering the frame.

    Raises:
        FarmplugError: the frame's size is not a multiple of ``multiple``.
    """
    if height % multiple or width % multiple:
        raise FarmplugError(f"a {width}x{height} frame is not a multiple of {multiple} pixels")
    pad = math.ceil(overlap / multiple) * multiple
    tiles = []
    for y0, y1 in _splits(height, tile, multiple):
        for x0, x1 in _splits(width, tile, multiple):
            tiles.append(Tile(y0, y1, x0, x1, max(0, y0 - pad), min(height, y1 + pad),
                              max(0, x0 - pad), min(width, x1 + pad)))
    return tiles


def tile_for_budget(arch: ArchDescriptor, budget_mb: float, overlap: int) -> int:
    """The largest tile side whose padded window fits ``budget_mb`` of device memory."""
    pixels = budget_mb * 1024 * 1024 / BYTES_PER_PIXEL
    side = int(math.sqrt(pixels)) - 2 * overlap
    side -= side % arch.size_multiple
    return max(MIN_TILE, side)


def run_tiles(backend: Backend, arch: ArchDescriptor, inputs: Mapping[str, np.ndarray], *, tile: int,
              overlap: int | None = None) -> np.ndarray:
    """Run ``backend`` over ``inputs`` (NCHW, each at its scale of the output) tile by tile.

    Raises:
        FarmplugError: inputs whose sizes do not match the architecture's scales.
    """
    overlap = arch.receptive_field if overlap is None else overlap
    first = arch.inputs[-1]
    height = round(inputs[first.name].shape[2] / first.scale)
    width = round(inputs[first.name].shape[3] / first.scale)
    for spec in arch.inputs:
        shape = inputs[spec.name].shape
        if shape[1] != spec.channels or (shape[2], shape[3]) != (round(height * spec.scale), round(width * spec.scale)):
            raise FarmplugError(f"input {spec.name} has shape {tuple(shape)}, expected "
                                f"(N, {spec.channels}, {round(height * spec.scale)}, {round(width * spec.scale)})")
    batch = inputs[first.name].shape[0]
    out = np.zeros((batch, arch.out_channels, height, width), dtype=np.float32)
    for t in plan_tiles(height, width, tile, overlap, arch.size_multiple):
        window = {}
        for spec in arch.inputs:
            s = spec.scale
            window[spec.name] = inputs[spec.name][:, :, round(t.py0 * s):round(t.py1 * s), round(t.px0 * s):round(t.px1 * s)]
        result = backend.run(window)
        out[:, :, t.y0:t.y1, t.x0:t.x1] = result[:, :, t.y0 - t.py0:t.y1 - t.py0, t.x0 - t.px0:t.x1 - t.px0]
    return out


def run_with_retry(backend: Backend, arch: ArchDescriptor, inputs: Mapping[str, np.ndarray], *, tile: int,
                   overlap: int | None = None, min_tile: int = MIN_TILE) -> tuple[np.ndarray, int]:
    """:func:`run_tiles`, retried with tiles half the size after each out-of-memory error.

    Returns:
        The output and the tile size that worked.

    Raises:
        OutOfMemory: out of memory even with ``min_tile`` tiles.
    """
    while True:
        try:
            return run_tiles(backend, arch, inputs, tile=tile, overlap=overlap), tile
        except Exception as err:  # only out-of-memory errors are retried; anything else propagates
            if not is_out_of_memory(err):
                raise
            _release_cached_memory()
            if tile <= min_tile:
                raise OutOfMemory(f"out of memory on {backend.name} even with {tile}-pixel tiles") from err
            smaller = max(min_tile, (tile // 2) - (tile // 2) % arch.size_multiple)
            log.warning("out of memory on %s with %d-pixel tiles; retrying with %d", backend.name, tile, smaller)
            tile = smaller


def _release_cached_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
