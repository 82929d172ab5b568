"""The stage interface: what a stage declares, and how it processes frames.

The planner and the job graph read a stage's :class:`StageDescriptor`, never its concrete type.
Workers follow the Open Job Description adaptor lifecycle: ``open()`` once per task (load the
model, create the device), ``process()`` each frame of the chunk, ``close()`` at the end or on
cancel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from farmplug.imageio import Frame


@dataclass(frozen=True)
class StageDescriptor:
    """What a stage needs and can do (read by the planner, like spandrel's architecture descriptors)."""

    name: str
    backend: str
    required_features: frozenset[str]
    optional_features: frozenset[str] = frozenset()
    scale: int = 1
    temporal_window: int = 0
    size_multiple: int = 1
    tiling: bool = False
    half_precision: bool = False
    devices: tuple[str, ...] = ("cpu",)


@dataclass
class ProcessInfo:
    """What happened to one frame: warnings to show, and GPU seconds when a GPU did the work."""

    warnings: list[str] = field(default_factory=list)
    gpu_s: float = 0.0


@runtime_checkable
class Stage(Protocol):
    """A post-processing stage over frames."""

    descriptor: StageDescriptor

    def open(self) -> None:
        """Load models / create devices; called once per task."""

    def process(self, frame: Frame) -> tuple[Frame, ProcessInfo]:
        """Process one frame; returns the new frame (unchanged layers kept) and what happened."""

    def close(self) -> None:
        """Release devices and models; safe to call twice."""
