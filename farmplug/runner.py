"""Running a stage over a list of frames: read, process, write atomically, time every frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from farmplug import __version__
from farmplug.errors import FarmplugError, ImageError
from farmplug.imageio import read_frame, write_frame
from farmplug.stages import create_stage
from farmplug.timing import FrameTiming, Stopwatch, TimingRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameJob:
    """One frame to process: its number, where to read it and where to write the result."""

    frame: int
    source: Path
    destination: Path


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
    frames finished before it stay valid.

    Raises:
        FarmplugError: a missing or corrupt input, a missing pass, or a backend failure.
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
            if not opened:
                # Open (load the model, create the device) once the first input has read, so a bad
                # file is reported at once; the load is the task's overhead, not a frame's cost.
                with load:
                    stage.open()
                opened = True
                device = getattr(stage, "device_name", "cpu")
            with Stopwatch() as work:
                result, info = stage.process(frame)
                write_frame(job.destination, result, provenance=provenance, inputs=[job.source])
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

    jobs = [FrameJob(f, frame_path(input_pattern, f), frame_path(output_pattern, f)) for f in frames]
    if len({job.destination for job in jobs}) < len(jobs):
        raise FarmplugError(f"--output {output_pattern} has no frame token (#### or %04d), but {len(jobs)} frames "
                            "would be written to it")
    for job in jobs:
        if job.source.resolve() == job.destination.resolve():
            raise FarmplugError(f"output would overwrite the input {job.source}; choose another --output")
    return jobs
