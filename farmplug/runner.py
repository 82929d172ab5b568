"""Running a stage over a list of frames: read, process, write atomically, time every frame.

A ``mode="frame"`` stage gets each frame on its own (``process``). A ``mode="window"`` stage
(:class:`WindowStage`) also gets the neighbours within its window each side (``process_window``),
read from the same input pattern: the neighbours that exist, up to the first missing one each
side (a shot's first and last frames have fewer), each read once per task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from farmplug import __version__
from farmplug.errors import FarmplugError, ImageError
from farmplug.imageio import Frame, read_frame, write_frame
from farmplug.stages import create_stage
from farmplug.stages.base import ProcessInfo, StageDescriptor
from farmplug.timing import FrameTiming, Stopwatch, TimingRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameJob:
    """One frame to process: its number, where to read it and where to write the result.

    ``pattern`` is the input pattern the frame came from, where a window stage's neighbours are.
    """

    frame: int
    source: Path
    destination: Path
    pattern: str | None = None


@runtime_checkable
class WindowStage(Protocol):
    """A stage that reads the neighbouring frames of each frame (``mode="window"``)."""

    descriptor: StageDescriptor

    def open(self) -> None:
        """Load models / create devices; called once per task."""

    def process_window(self, frame: Frame, neighbours: Mapping[int, Frame]) -> tuple[Frame, ProcessInfo]:
        """Process ``frame`` with its ``neighbours`` (offset -> frame: -1 the previous, 1 the next...)."""

    def close(self) -> None:
        """Release devices and models; safe to call twice."""


def run_stage(
    config,
    jobs: Sequence[FrameJob],
    *,
    task: str,
    role: str = "plan",
    plan: str = "",
    key: str = "",
    progress: Callable[[int], None] | None = None,
) -> TimingRecord:
    """Run one stage (its config model says which) over ``jobs``; returns the task's timing record.

    The stage is opened once (model/device load counted as task overhead), then each frame is read,
    processed and written atomically. A bad input stops the run with an error naming the file;
    frames finished before it stay valid. A window stage also reads each frame's neighbours from
    its job's ``pattern`` (their reading counts in the frame's time; each is read once).

    Raises:
        FarmplugError: a missing or corrupt input, a missing pass, a neighbour that does not match
            its frame (both files named), or a backend failure.
    """
    missing = [str(j.source) for j in jobs if not j.source.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ImageError("input frame not found" + more, path=missing[0])
    stage = create_stage(config)
    started = time.time()
    load = Stopwatch()
    opened = False
    device = "cpu"
    frames: list[FrameTiming] = []
    window = _window(config, stage.descriptor)
    around: dict[Path, Frame] = {}
    provenance = {
        "stage": stage.descriptor.name,
        "backend": stage.descriptor.backend,
        "version": __version__,
        "plan": plan,
        "task": task,
        **({"key": key} if key else {}),
    }
    try:
        for job in jobs:
            _check_passes(stage.descriptor, job.source)
            with Stopwatch() as reading:
                frame = read_frame(job.source)
                neighbours = _neighbours(job, frame, window, around) if window else {}
            if not opened:
                # Open (load the model, create the device) once the first input has read, so a bad
                # file is reported at once; the load is the task's overhead, not a frame's cost.
                with load:
                    stage.open()
                opened = True
                device = getattr(stage, "device_name", "cpu")
            with Stopwatch() as work:
                if window:
                    result, info = stage.process_window(frame, neighbours)
                else:
                    result, info = stage.process(frame)
                write_frame(job.destination, result, provenance=provenance,
                            inputs=[job.source, *(n.path for n in neighbours.values() if n.path is not None)])
            frames.append(
                FrameTiming(
                    frame=job.frame,
                    wall_s=reading.wall_s + work.wall_s,
                    cpu_s=reading.cpu_s + work.cpu_s,
                    gpu_s=info.gpu_s,
                    output=str(job.destination),
                )
            )
            if progress:
                progress(job.frame)
    finally:
        stage.close()
    return TimingRecord(
        task=task,
        stage=stage.descriptor.name,
        role=role,
        backend=stage.descriptor.backend,
        started_at=started,
        finished_at=time.time(),
        overhead_wall_s=load.wall_s,
        overhead_cpu_s=load.cpu_s,
        frames=frames,
        settings={k: v for k, v in config.model_dump().items() if isinstance(v, (str, int, float, bool))} | {"device": device},
    )


def _window(config, descriptor: StageDescriptor) -> int:
    """Frames each side a window stage reads (its config's, see :func:`farmplug.graph.stage_window`); 0 otherwise."""
    if descriptor.mode != "window":
        return 0
    from farmplug.graph import stage_window

    return stage_window(config, descriptor)


def _neighbours(job: FrameJob, frame: Frame, window: int, around: dict[Path, Frame]) -> dict[int, Frame]:
    """The frames within ``window`` of ``job``'s frame that exist at its input pattern, up to the first
    missing one each side; ``around`` keeps the frames read for the next job (and drops the others).

    Raises:
        ImageError: a neighbour does not match the frame (size or passes), naming both files.
    """
    from farmplug.render.base import frame_path, has_frame_token

    found: dict[int, Frame] = {}
    if not job.pattern or not has_frame_token(job.pattern):
        return found
    for direction in (-1, 1):
        for step in range(1, window + 1):
            path = frame_path(job.pattern, job.frame + direction * step)
            if not path.is_file():
                break
            neighbour = around.get(path)
            if neighbour is None:
                neighbour = read_frame(path)
            _check_neighbour(frame, neighbour)
            found[direction * step] = neighbour
    kept = {n.path: n for n in found.values()}
    around.clear()
    around.update(kept)
    return found


def _check_neighbour(frame: Frame, neighbour: Frame) -> None:
    """A neighbour must have the frame's size and passes, or nothing of it lines up.

    Raises:
        ImageError: naming both files and what differs.
    """
    window, theirs = frame.feature_window("color"), neighbour.feature_window("color") if neighbour.has("color") else None
    if theirs != window:
        size = f"{theirs.width}x{theirs.height}" if theirs is not None else "no colour"
        raise ImageError(f"neighbouring frame {neighbour.path} does not match {frame.path}: {size} against "
                         f"{window.width}x{window.height}")
    if neighbour.features() != frame.features():
        raise ImageError(f"neighbouring frame {neighbour.path} does not match {frame.path}: passes "
                         f"{sorted(neighbour.features())} against {sorted(frame.features())}")


def _check_passes(descriptor, source: Path) -> None:
    """The passes the stage cannot do without, checked from the file's headers before its pixels are read.

    Raises:
        MissingPassError: naming the file, the pass and how to enable it in the renderer.
    """
    from farmplug.errors import MissingPassError
    from farmplug.imageio import read_header
    from farmplug.imageio.channels import HOW_TO_ENABLE

    header = read_header(source)
    for feature in sorted(descriptor.required_features):
        if not header.has(feature):
            how = HOW_TO_ENABLE.get(feature, "enable it in the renderer")
            raise MissingPassError(f"no {feature} pass, which the {descriptor.kind} stage needs: {how}", path=source)


def frame_jobs(input_pattern: str, output_pattern: str, frames: Sequence[int]) -> list[FrameJob]:
    """Pair input and output paths for each frame; a plain path (no frame token) works for one frame.

    Raises:
        FarmplugError: the patterns cannot name several frames, or input and output are the same file.
    """
    from farmplug.render.base import frame_path

    jobs = [FrameJob(f, frame_path(input_pattern, f), frame_path(output_pattern, f), str(input_pattern)) for f in frames]
    if len({job.destination for job in jobs}) < len(jobs):
        raise FarmplugError(f"--output {output_pattern} has no frame token (#### or %04d), but {len(jobs)} frames "
                            "would be written to it")
    for job in jobs:
        if job.source.resolve() == job.destination.resolve():
            raise FarmplugError(f"output would overwrite the input {job.source}; choose another --output")
    return jobs
