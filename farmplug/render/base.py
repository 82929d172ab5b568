"""What every renderer is asked to do, and the frame-number patterns of its output paths.

A renderer takes a :class:`RenderRequest` (one task: a .blend file, a chunk of frames and the
cheap or full settings to render them with) and returns the :class:`~farmplug.timing.TimingRecord`
of what the task cost. It never writes the timing record itself; the executor does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from farmplug.errors import ConfigError, FarmplugError
from farmplug.timing import TimingRecord

#: Render features a request may ask for, beyond the beauty (colour) pass.
KNOWN_PASSES: frozenset[str] = frozenset({"albedo", "normal", "depth", "motion", "object_index", "material_index"})

ExrLayout = Literal["multipart", "singlepart"]
EXR_LAYOUTS: tuple[str, ...] = ("multipart", "singlepart")

# A run of '#' (zero-padded to the run's length) or a printf integer token: %d, %4d, %04d.
_FRAME_TOKEN = re.compile(r"#+|%(0?)(\d*)d")


def has_frame_token(pattern: str) -> bool:
    """Whether ``pattern`` contains a frame-number token (``#``-run or ``%d``-style)."""
    return _FRAME_TOKEN.search(pattern) is not None


def frame_path(pattern: str, frame: int) -> Path:
    """Expand the frame-number tokens of an output pattern for one frame.

    Every ``#``-run becomes the frame number zero-padded to the run's length (``####`` -> ``0012``,
    ``#`` -> ``12``); every printf token ``%0Nd``, ``%Nd`` or ``%d`` is formatted as printf would.
    Negative frames keep their sign (``####`` -> ``-012``). A pattern without a token is
    returned unchanged; :func:`frame_paths` rejects it when more than one frame is asked for.

    Args:
        pattern: Output path with frame tokens, e.g. ``out/beauty.####.exr``.
        frame: The frame number.

    Returns:
        The path of that frame's file.

    Raises:
        FarmplugError: the pattern is empty.
    """
    if not pattern:
        raise FarmplugError("output pattern is empty")

    def expand(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("#"):
            return f"{frame:0{len(token)}d}"
        zero, width = match.group(1), match.group(2)
        return f"{frame:{zero}{width}d}"

    return Path(_FRAME_TOKEN.sub(expand, pattern))


def frame_paths(pattern: str, frames: Iterable[int]) -> tuple[Path, ...]:
    """Expand an output pattern for each frame, checking the frames get distinct files.

    Args:
        pattern: Output path with frame tokens (see :func:`frame_path`).
        frames: The frame numbers, in render order.

    Returns:
        One path per frame, in the same order.

    Raises:
        FarmplugError: the pattern has no frame token but more than one frame is requested,
            or two frames would write the same file.
    """
    frames = tuple(frames)
    if len(frames) > 1 and not has_frame_token(pattern):
        raise FarmplugError(
            f"output pattern {pattern!r} has no frame token ('####' or '%04d') "
            f"but {len(frames)} frames are requested"
        )
    paths = tuple(frame_path(pattern, f) for f in frames)
    if len(set(paths)) != len(paths):
        raise FarmplugError(f"output pattern {pattern!r} maps different frames to the same file")
    return paths


@dataclass(frozen=True)
class RenderRequest:
    """One render task: which frames of which scene, written where, with which settings.

    Values are checked on construction; ``frames`` and ``passes`` accept any iterable and are
    stored as a tuple and a frozenset.

    Raises:
        ConfigError: on construction, for an empty or repeated frame list, an unknown pass
            (the message lists the allowed ones), samples < 1, a resolution percentage outside
            1..100, threads < 1, a negative seed, an unknown EXR layout, or an output pattern
            that cannot name each frame's file.
    """

    scene: Path
    frames: tuple[int, ...]
    output_pattern: str
    samples: int | None = None
    resolution_percentage: int = 100
    passes: frozenset[str] = field(default_factory=frozenset)
    threads: int | None = None
    exr_layout: ExrLayout = "multipart"
    seed: int | None = None
    #: Keep Cycles' scene data between the task's frames: None (default) where the scene allows
    #: it, False never (a fresh scene sync per frame, as before), True always.
    persistent_data: bool | None = None
    task: str = "render"
    role: str = "plan"

    def __post_init__(self) -> None:
        # Normalise the container types so equal requests compare and hash equal.
        object.__setattr__(self, "scene", Path(self.scene))
        object.__setattr__(self, "frames", tuple(int(f) for f in self.frames))
        object.__setattr__(self, "passes", frozenset(self.passes))
        object.__setattr__(self, "output_pattern", str(self.output_pattern))

        if not self.frames:
            raise ConfigError("render request has no frames")
        if len(set(self.frames)) != len(self.frames):
            raise ConfigError(f"render request repeats frames: {list(self.frames)}")
        unknown = sorted(self.passes - KNOWN_PASSES)
        if unknown:
            raise ConfigError(f"unknown render passes {unknown}; allowed: {sorted(KNOWN_PASSES)}")
        if self.samples is not None and self.samples < 1:
            raise ConfigError(f"samples must be >= 1 (got {self.samples})")
        if not 1 <= self.resolution_percentage <= 100:
            raise ConfigError(f"resolution_percentage must be in 1..100 (got {self.resolution_percentage})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None for all cores (got {self.threads})")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"seed must be >= 0 or None for the scene's own (got {self.seed})")
        if self.exr_layout not in EXR_LAYOUTS:
            raise ConfigError(f"unknown exr_layout {self.exr_layout!r}; allowed: {list(EXR_LAYOUTS)}")
        try:
            frame_paths(self.output_pattern, self.frames)
        except FarmplugError as err:
            raise ConfigError(str(err)) from None

    def outputs(self) -> tuple[Path, ...]:
        """The output file of each frame, in the order of :attr:`frames`."""
        return frame_paths(self.output_pattern, self.frames)


@runtime_checkable
class Renderer(Protocol):
    """A render backend: renders one task's frames and reports what they cost."""

    name: str

    def render(self, request: RenderRequest, *, progress: Callable[[int], None] | None = None) -> TimingRecord:
        """Render every frame of ``request``; call ``progress(frame)`` as each one is written.

        Raises:
            RenderError: the scene is missing or the renderer failed.
        """
        ...
