"""Timing records: what each task cost, written as JSON beside its outputs.

The savings report is built from these records alone, so it works the same from a local run and
from a finished farm job. CPU time is process CPU time (user + system, all threads), so
``cpu_s`` is in core-seconds.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

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
    output: str | None = None


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
