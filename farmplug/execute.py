"""Running a job graph here, in dependency order: the engine of the local farm, and calibration run here.

A task whose outputs already exist and read back, and whose timing record is valid and was
written by this very command, is skipped, so a run killed midway can be started again: finished
tasks stay, the interrupted one runs again from the start (its outputs are written atomically,
so nothing half-written is ever taken as done) and produces the same frames.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import JobGraph, Task
from farmplug.imageio import image_is_valid
from farmplug.timing import read_timing

if TYPE_CHECKING:
    from farmplug.calibrate import CalibrationJob, CalibrationResult, Candidate, ProgressCallback
    from farmplug.models import QualityTarget

log = logging.getLogger(__name__)

TaskRunner = Callable[[Task], None]


def task_is_done(task: Task) -> bool:
    """True when every output reads back and the timing record shows this very command finished."""
    if not Path(task.timing).is_file():
        return False
    try:
        record = read_timing(task.timing)
    except ConfigError:
        return False
    if record.command != task.argv:
        return False
    return all(_output_is_valid(Path(out)) for out in task.outputs)


def _output_is_valid(path: Path) -> bool:
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return True
    return image_is_valid(path)


def remove_stale_temp_files(task: Task) -> list[Path]:
    """Delete temp files a killed run of ``task`` left beside its outputs (``.NAME.*tmp*``)."""
    removed = []
    for target in [*task.outputs, task.timing]:
        target = Path(target)
        if target.parent.is_dir():
            for stale in target.parent.glob(f".{target.name}.*tmp*"):
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


@dataclass
class RunSummary:
    """What a run did: the tasks it ran and the ones it found done."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def run_task_in_process(task: Task) -> None:
    """Run a task's ``farmplug run ...`` command in this process (the code a farm worker runs)."""
    from farmplug.worker import run_task

    run_task(task.argv)


def run_graph(graph: JobGraph, *, force: bool = False, runner: TaskRunner | None = None,
              progress: Callable[[int, int, Task], None] | None = None) -> RunSummary:
    """Run every task of ``graph`` not already done, dependencies first.

    Raises:
        FarmplugError: a task failed; the message names it (earlier tasks' outputs are kept).
    """
    runner = runner or run_task_in_process
    summary = RunSummary()
    started = time.perf_counter()
    order = graph.topological()
    for number, task in enumerate(order, 1):
        if progress:
            progress(number - 1, len(order), task)
        if not force and task_is_done(task):
            log.info("[%d/%d] %s: already done, skipped", number, len(order), task.id)
            summary.skipped.append(task.id)
            continue
        log.info("[%d/%d] %s: %s frames %s", number, len(order), task.id, task.stage, _frames_label(task.frames))
        for stale in remove_stale_temp_files(task):
            log.info("removed %s left by an interrupted run", stale)
        try:
            runner(task)
        except FarmplugError as err:
            raise FarmplugError(f"task {task.id} failed: {err}") from err
        summary.ran.append(task.id)
    summary.wall_s = time.perf_counter() - started
    return summary


def _frames_label(frames: list[int]) -> str:
    from farmplug.frames import format_frame_set

    return format_frame_set(frames)


def warm_up(job: CalibrationJob) -> None:
    """Open each stage once before anything is timed.

    The first stage opened in a process pays one-off Python imports (pyoidn pulls in torch, about
    a core-second); counted in whichever candidate ran first it would skew the comparison. A run
    on the local farm pays them once too, and a farm task's timing record never counts its
    interpreter start, so warm per-task costs are what the savings report adds up.
    """
    from farmplug.stages.registry import create_stage

    seen = set()
    for plan in job.plans.values():
        for config in plan.stages:
            if config.kind in seen:
                continue
            seen.add(config.kind)
            stage = create_stage(config)
            try:
                stage.open()
            finally:
                stage.close()


def run_calibration(
    shot_file: Path,
    out_dir: Path,
    *,
    candidates: Sequence[Candidate] | None = None,
    check_frames: int | Sequence[int] = 3,
    crop: float | None = None,
    target: QualityTarget | None = None,
    flip_p95_max: float | None = None,
    chunk_size: int = 8,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    run_dir: Path | None = None,
) -> CalibrationResult:
    """Compile a shot's calibration job and run it here (see :func:`farmplug.calibrate.compile_calibration`).

    Writes ``out_dir/calibration.json`` (:class:`CalibrationResult`), the check images under
    ``out_dir/calibration/<candidate>/``, each candidate's run under ``out_dir/calibration/work/``
    and, when a candidate is chosen, ``out_dir/plan.yaml`` with the calibration's check frames.

    Args:
        crop: Not supported: a centred border render needs border support in the render adapter
            (``RenderRequest`` has none), so calibration renders whole frames. Must be None.
        run_dir: When the chosen plan will run in this folder: render the reference as that run's
            reference tasks, so the run reuses them instead of rendering the check frames twice.
        progress: ``progress(done, total, label)`` before each task and at the end.

    Returns:
        The calibration result, also saved as ``calibration.json``.

    Raises:
        ConfigError: the shot file or its scene is missing or invalid, or an argument is out of range.
        FarmplugError: a render or stage failed (the message names the calibration task).
    """
    from farmplug.calibrate import (
        CALIBRATION_FILE,
        CalibrationResult,
        compile_calibration,
        write_calibration_job,
    )
    from farmplug.errors import ConfigError
    from farmplug.models import load_shot
    from farmplug.schema import load_model

    shot_file = Path(shot_file)
    shot = load_shot(shot_file)
    scene = shot.scene_path(shot_file)
    if not scene.is_file():
        raise ConfigError(f"scene {shot.scene!r} of shot {shot_file} not found", path=scene)
    if crop is not None:
        raise ConfigError("crop is not supported: border rendering needs support in farmplug.render's RenderRequest")
    job = compile_calibration(shot_file, out_dir, candidates=candidates, check_frames=check_frames, target=target,
                              flip_p95_max=flip_p95_max, chunk_size=chunk_size, threads=threads, run_dir=run_dir)
    log.info("calibrating %s on check frames %s: %d candidates, %d tasks", shot.name, job.setup.check_frames,
             len(job.setup.candidates), len(job.graph.tasks))
    write_calibration_job(job)
    warm_up(job)
    total = len(job.graph.tasks)
    try:
        run_graph(job.graph, progress=(lambda done, _n, task: progress(done, total, task.id)) if progress else None)
    except FarmplugError as err:
        raise FarmplugError(f"calibration {err}") from err
    if progress:
        progress(total, total, "done")
    return load_model(CalibrationResult, Path(out_dir) / CALIBRATION_FILE)
