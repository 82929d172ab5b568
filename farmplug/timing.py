"""Timing records: what each task cost, written as JSON beside its outputs.

The savings report is built from these records alone, so it works the same from a local run and
from a finished farm job. CPU time is process CPU time (user + system, all threads), so
``cpu_s`` is in core-seconds.

A render frame's cost is ``fixed + samples x per-sample``: the fixed part (scene sync, BVH build,
light and world importance maps, image loads, film and EXR write) does not shrink when a plan
renders fewer samples. Render records carry that split as measured by the renderer
(:class:`RenderCostSplit`, from each frame's ``sampling_cpu_s``), and :func:`cost_split` fits it
across records rendered at different sample counts.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from farmplug.errors import FarmplugError
from farmplug.schema import StrictModel, load_model, save_model

TIMING_SUFFIX = ".timing.json"
#: The environment variable through which the engine hands a task its key (the task writes it
#: into its timing record and into the provenance of every frame it writes).
TASK_KEY_ENV = "FARMPLUG_TASK_KEY"


class FrameTiming(StrictModel):
    """Cost of one frame inside a task."""

    frame: int
    wall_s: float = Field(ge=0)
    cpu_s: float = Field(ge=0, description="CPU core-seconds (user+system, all threads)")
    gpu_s: float = Field(default=0.0, ge=0)
    sampling_cpu_s: float | None = Field(
        default=None, ge=0,
        description="renders: the part of cpu_s spent path tracing, from Cycles' first 'Sample 0/N' render-stats "
                    "update to 'Finished' (CPU clock read at each update); the rest of cpu_s is the frame's fixed part",
    )
    synced_objects: int | None = Field(
        default=None, ge=0,
        description="renders: objects Cycles synchronised for this frame (named in its render stats); with "
                    "persistent data, after the task's first frame, only the objects that changed",
    )
    output: str | None = None


class RenderCostSplit(StrictModel):
    """A render task's frame cost split into a per-frame fixed part and a per-sample part.

    Measured, not fitted: each frame's ``sampling_cpu_s`` (path tracing, from Blender's render
    stats) against the rest of its ``cpu_s``. With persistent data the first frame pays the full
    scene sync and later frames only what moved, so both are given. Task start-up (process start,
    ``import bpy``, scene load) is not in any frame: it is the record's ``overhead_cpu_s``.
    """

    method: Literal["render-stats"] = Field(
        default="render-stats",
        description="fixed = frame cpu_s - sampling_cpu_s; sampling_cpu_s from Cycles' first 'Sample 0/N' "
                    "render-stats update to 'Finished'",
    )
    samples: int = Field(ge=1, description="samples per pixel of the task's frames")
    frames: int = Field(ge=1, description="frames the split was measured on")
    persistent_data: bool = Field(description="Cycles kept its scene data between the task's frames")
    fixed_cpu_s_per_frame: float = Field(ge=0, description="mean over the frames of cpu_s - sampling_cpu_s")
    fixed_cpu_s_first_frame: float = Field(ge=0, description="the first frame's fixed part (the full scene sync)")
    fixed_cpu_s_later_frames: float | None = Field(
        default=None, ge=0, description="mean fixed part of the frames after the first (None for one frame)")
    cpu_s_per_sample: float = Field(ge=0, description="sum of sampling_cpu_s / (samples x frames)")

    @classmethod
    def from_frames(cls, frames: Sequence[FrameTiming], *, samples: int, persistent_data: bool) -> RenderCostSplit | None:
        """The split of a task's frames; None when a frame lacks ``sampling_cpu_s`` (the renderer's
        stats did not show its sampling) or there are no frames."""
        if not frames or samples < 1 or any(f.sampling_cpu_s is None for f in frames):
            return None
        fixed = [max(0.0, f.cpu_s - (f.sampling_cpu_s or 0.0)) for f in frames]
        sampling = sum(f.sampling_cpu_s or 0.0 for f in frames)
        return cls(
            samples=samples, frames=len(frames), persistent_data=persistent_data,
            fixed_cpu_s_per_frame=sum(fixed) / len(fixed), fixed_cpu_s_first_frame=fixed[0],
            fixed_cpu_s_later_frames=sum(fixed[1:]) / (len(fixed) - 1) if len(fixed) > 1 else None,
            cpu_s_per_sample=sampling / (samples * len(frames)),
        )


class TimingRecord(StrictModel):
    """Cost of one task: per-frame costs plus the task's fixed overhead (start-up, scene/model load)."""

    schema_version: Literal[1] = 1
    task: str
    stage: str = Field(description="render | denoise | upscale | inbetween | ...")
    role: str = Field(default="plan", description="plan | reference | fallback | calibration")
    backend: str
    host: str = Field(default_factory=platform.node)
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    started_at: float
    finished_at: float
    overhead_wall_s: float = Field(default=0.0, ge=0)
    overhead_cpu_s: float = Field(default=0.0, ge=0)
    frames: list[FrameTiming] = Field(default_factory=list)
    render_cost: RenderCostSplit | None = Field(
        default=None, description="renders: the frames' fixed and per-sample CPU cost, as measured (None: not measured)")
    settings: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list, description="the farmplug arguments that ran this task")
    key: str = Field(default="", description="what made it: command, inputs and versions (set by the engine)")

    @property
    def cpu_s(self) -> float:
        """All CPU core-seconds of the task, overhead included."""
        return self.overhead_cpu_s + sum(f.cpu_s for f in self.frames)

    @property
    def wall_s(self) -> float:
        return self.overhead_wall_s + sum(f.wall_s for f in self.frames)

    @property
    def gpu_s(self) -> float:
        return sum(f.gpu_s for f in self.frames)


@dataclass(frozen=True)
class CostSplit:
    """What a render frame costs: ``fixed_cpu_s_per_frame + samples x cpu_s_per_sample`` core-seconds.

    Attributes:
        fixed_cpu_s_per_frame: Core-seconds per frame that do not depend on the sample count.
        cpu_s_per_sample: Core-seconds per sample per pixel of a frame (at the records' resolution).
        frames: How many frames the split comes from.
        sample_counts: The distinct sample counts among them.
        method: ``fit`` (least squares of frame cost on samples, over frames of at least two
            sample counts) or ``render-stats`` (the records' measured :class:`RenderCostSplit`).
    """

    fixed_cpu_s_per_frame: float
    cpu_s_per_sample: float
    frames: int
    sample_counts: tuple[int, ...]
    method: Literal["fit", "render-stats"]

    def cpu_s(self, samples: int) -> float:
        """The predicted core-seconds of one frame at ``samples``."""
        return self.fixed_cpu_s_per_frame + samples * self.cpu_s_per_sample

    def fixed_share(self, samples: int) -> float:
        """The fixed part's share of a frame at ``samples`` (0 when the frame costs nothing)."""
        total = self.cpu_s(samples)
        return self.fixed_cpu_s_per_frame / total if total > 0 else 0.0


def _record_samples(record: TimingRecord) -> int:
    if record.render_cost is not None:
        return record.render_cost.samples
    samples = record.settings.get("samples")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise FarmplugError(f"timing record of task {record.task!r} has no sample count (settings['samples'])")
    return samples


def cost_split(records: Iterable[TimingRecord], *, include_overhead: bool = False) -> CostSplit:
    """Split render frames' cost into a fixed part per frame and a part per sample.

    With frames of at least two sample counts it is a least-squares fit of each frame's
    ``cpu_s`` on its task's samples (``method="fit"``): that is what a plan pays per frame when it
    changes only the samples. With a single sample count a fit is impossible, and the records'
    measured splits (:attr:`TimingRecord.render_cost`) are pooled instead, weighted by frames
    (``method="render-stats"``). A fit's negative intercept or slope (measurement noise on a
    near-zero part) is clamped to 0.

    Args:
        records: Render task records, each with its sample count (``render_cost`` or
            ``settings["samples"]``).
        include_overhead: Add each task's start-up (``overhead_cpu_s``: process start, scene load)
            to the fixed part, shared equally by the task's frames.

    Returns:
        The split, with how many frames it comes from and how it was made.

    Raises:
        FarmplugError: no frames, a record without a sample count, or a single sample count among
            records without a measured split.
    """
    xs: list[float] = []
    ys: list[float] = []
    measured: list[tuple[RenderCostSplit, float]] = []
    all_measured = True
    for record in records:
        if not record.frames:
            continue
        samples = _record_samples(record)
        share = record.overhead_cpu_s / len(record.frames) if include_overhead else 0.0
        for frame in record.frames:
            xs.append(float(samples))
            ys.append(frame.cpu_s + share)
        if record.render_cost is None:
            all_measured = False
        else:
            measured.append((record.render_cost, share))
    if not xs:
        raise FarmplugError("no render frames to split into fixed and per-sample cost")
    counts = tuple(sorted({int(x) for x in xs}))
    if len(counts) >= 2:
        n = len(xs)
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
        slope = max(0.0, slope)
        intercept = max(0.0, mean_y - slope * mean_x)
        return CostSplit(intercept, slope, n, counts, "fit")
    if not all_measured:
        raise FarmplugError(
            f"cannot split render cost: every frame was rendered at {counts[0]} samples and not every record "
            "has a measured split (render_cost)")
    frames = sum(split.frames for split, _ in measured)
    fixed = sum((split.fixed_cpu_s_per_frame + share) * split.frames for split, share in measured) / frames
    per_sample = sum(split.cpu_s_per_sample * split.frames for split, _ in measured) / frames
    return CostSplit(fixed, per_sample, frames, counts, "render-stats")


def write_timing(record: TimingRecord, path: str | Path) -> None:
    """Write a timing record atomically."""
    save_model(record, path)


def read_timing(path: str | Path) -> TimingRecord:
    """Read a timing record.

    Raises:
        ConfigError: the record is missing or corrupt.
    """
    return load_model(TimingRecord, path)


def cpu_seconds() -> float:
    """CPU core-seconds used so far by this process (all threads) and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class Stopwatch:
    """Measures wall and CPU time of a block: ``with Stopwatch() as sw: ...; sw.wall_s, sw.cpu_s``."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall0 = time.perf_counter()
        self._cpu0 = cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall0
        self.cpu_s = cpu_seconds() - self._cpu0
