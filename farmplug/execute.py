"""Running a job graph here, in dependency order: the engine of the local farm, and calibration run here.

A task is skipped when its timing record holds the same key (:func:`task_key`: its command,
the versions of farmplug and the renderer, and a fingerprint of every input) and every output it
lists reads back and carries its provenance; anything else runs again. So a run killed midway
can be started again: finished tasks stay, the interrupted one runs again from the start (its
outputs are written atomically, so nothing half-written is ever taken as done) and produces the
same frames, and a changed plan, scene or upstream output re-runs exactly what depends on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import format_frame_set
from farmplug.graph import JobGraph, Task
from farmplug.imageio import image_is_valid
from farmplug.keys import task_key
from farmplug.timing import TASK_KEY_ENV, read_timing

if TYPE_CHECKING:
    from farmplug.calibrate import CalibrationJob, CalibrationResult, Candidate, ProgressCallback
    from farmplug.models import QualityTarget

log = logging.getLogger(__name__)

TaskRunner = Callable[[Task], None]


def _provenance(path: Path, *, header_only: bool = False) -> dict[str, str] | None:
    """The ``farmplug:*`` attributes of a frame's first part (None when it does not read back:
    the whole file, or only its headers with ``header_only``)."""
    from farmplug.errors import ImageError
    from farmplug.imageio import read_frame, read_header

    try:
        spec = (read_header if header_only else read_frame)(path).parts[0].spec
    except ImageError:
        return None
    return {name: spec.getattribute(f"farmplug:{name}") for name in ("task", "key", "plan")
            if spec.getattribute(f"farmplug:{name}") is not None}


def _trusted(path: Path, task: Task, key: str) -> bool:
    """An output frame is trusted when it reads back and, where it says who made it, that is this
    task with this key, or one of the tasks it depends on (a fallback lists frames its withholding
    task delivered). Renders carry no farmplug provenance; their record's key vouches for them."""
    made = _provenance(path)
    if made is None:
        return False
    if "task" not in made:
        return True
    if made["task"] == task.id:
        return made.get("key", key) == key
    return made["task"] in task.depends_on


def task_is_done(task: Task, run_dir: str | Path, key: str | None = None) -> bool:
    """True when the task (of the run in ``run_dir``) has a record saying this very command
    finished with the same key (the same inputs and versions; ``key`` when already computed), and
    every output it lists reads back and carries its provenance."""
    if not Path(task.timing).is_file():
        return False
    try:
        record = read_timing(task.timing)
    except ConfigError:
        return False
    # The key covers the command too: a changed command is a changed key.
    key = task_key(task, run_dir) if key is None else key
    if record.key != key:
        return False
    for out in map(Path, task.outputs):
        if not (_trusted(out, task, key) if out.suffix == ".exr" else _output_is_valid(out)):
            return False
    return _delivered_frames_are_there(task)


def _delivered_frames_are_there(task: Task) -> bool:
    """A task that vouches for frames: every frame its record passed must be there and read back."""
    if not task.verdicts or not task.delivers:
        return True
    from farmplug.models import ConfidenceRecord
    from farmplug.schema import load_model

    try:
        record = load_model(ConfidenceRecord, task.verdicts)
    except ConfigError:
        return False
    passed = {v.frame for v in record.frames if v.passed}
    return all(image_is_valid(Path(out)) for frame, out in zip(task.frames, task.delivers, strict=True) if frame in passed)


def _output_is_valid(path: Path) -> bool:
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return True
    return image_is_valid(path)


def foreign_outputs(task: Task, graph: JobGraph) -> list[Path]:
    """Delivered frames at the task's outputs that this run did not make: no farmplug provenance,
    or another plan's or another task's. A run never overwrites those without ``--force``.

    Only the delivery location is checked (not the run folder's ``work/``), and not for render
    tasks, whose frames carry no provenance (their timing record's key vouches for them).
    """
    if task.kind == "render":
        return []
    work = Path(graph.run_dir) / "work"
    ours = {t.id for t in graph.tasks}
    found = []
    for out in map(Path, [*task.outputs, *task.delivers]):
        if out.suffix != ".exr" or not out.is_file() or work in out.parents:
            continue
        made = _provenance(out, header_only=True)
        if made is None:
            # A frame that does not read back: this task's own, damaged since (a sync cut short),
            # when the task's record says it wrote it; else someone else's file, left alone.
            if not _recorded_output(task, out):
                found.append(out)
        elif made.get("task") not in ours or made.get("plan", graph.plan_file) != graph.plan_file:
            found.append(out)
    return found


def _recorded_output(task: Task, out: Path) -> bool:
    try:
        record = read_timing(task.timing)
    except ConfigError:
        return False
    # By name: the record was written where the run folder was then (it may have moved since).
    return record.task == task.id and any(f.output and Path(f.output).name == out.name for f in record.frames)


def remove_stale_temp_files(task: Task) -> list[Path]:
    """Delete temp files a killed run of ``task`` left beside its outputs (``.NAME.*tmp*``)."""
    removed = []
    for target in [*task.outputs, *task.delivers, task.timing]:
        target = Path(target)
        if target.parent.is_dir():
            for stale in target.parent.glob(f".{target.name}.*tmp*"):
                stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


LOCK_FILE = ".farmplug.lock"


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's exclusive lock while work runs in it (one ``submit`` or ``calibrate`` at a time).

    The lock is an ``flock`` on ``RUN_DIR/.farmplug.lock``, so the kernel drops it when its holder
    dies, even by ``kill -9``: a lock left by a dead run is never in the way. The file says who
    holds it (PID, host, since when, the command), for the message a second run gets.

    Raises:
        FarmplugError: another process holds the lock (the message names it).
    """
    import fcntl
    import platform
    import sys

    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FarmplugError(f"run folder {folder} is in use by {holder}; wait for it to finish, "
                                "or use another --run-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {platform.node()} since {time.strftime('%Y-%m-%d %H:%M:%S')} "
                     f"({' '.join(['farmplug', *sys.argv[1:3]])})\n")
        handle.flush()
        yield path
    finally:
        handle.close()


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

    Each task runs with its key in ``FARMPLUG_TASK_KEY`` (see :func:`task_key`); a task whose
    outputs hold frames another run made is refused unless ``force``.

    Raises:
        FarmplugError: a task failed (the message names it; earlier tasks' outputs are kept), or a
            task would overwrite frames it did not make.
    """
    runner = runner or run_task_in_process
    with run_folder_lock(graph.run_dir):
        return _run_tasks(graph, force=force, runner=runner, progress=progress)


def _run_tasks(graph: JobGraph, *, force: bool, runner: TaskRunner,
               progress: Callable[[int, int, Task], None] | None) -> RunSummary:
    summary = RunSummary()
    started = time.perf_counter()
    order = graph.topological()
    for number, task in enumerate(order, 1):
        if progress:
            progress(number - 1, len(order), task)
        key = task_key(task, graph.run_dir)
        if not force and task_is_done(task, graph.run_dir, key):
            log.info("[%d/%d] %s: already done, skipped", number, len(order), task.id)
            summary.skipped.append(task.id)
            continue
        if not force and task.role == "plan":
            foreign = foreign_outputs(task, graph)
            if foreign:
                more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
                raise FarmplugError(f"task {task.id} would overwrite {foreign[0]}{more}, which this run did not make; "
                                    "move it away, or run again with --force to replace it")
        log.info("[%d/%d] %s: %s frames %s", number, len(order), task.id, task.stage, format_frame_set(task.frames))
        for stale in remove_stale_temp_files(task):
            log.info("removed %s left by an interrupted run", stale)
        previous = os.environ.get(TASK_KEY_ENV)
        os.environ[TASK_KEY_ENV] = key
        try:
            runner(task)
        except FarmplugError as err:
            raise FarmplugError(f"task {task.id} failed: {err}") from err
        finally:
            if previous is None:
                os.environ.pop(TASK_KEY_ENV, None)
            else:
                os.environ[TASK_KEY_ENV] = previous
        summary.ran.append(task.id)
    summary.wall_s = time.perf_counter() - started
    return summary



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
    budget_share: float | None = None,
    search: bool = True,
    also_for: Sequence[Path] = (),
) -> CalibrationResult:
    """Calibrate a shot here: a search over the candidates (see :mod:`farmplug.search`), each
    round a calibration job (:func:`farmplug.calibrate.compile_calibration`) run on this machine.

    Round one renders the reference check frames and the cheapest candidate of each structure
    (frame step and stages); each later round the next candidate up of each structure still
    open. Tasks of earlier rounds are done and are not run again. ``search=False`` measures
    every candidate in one round.

    Writes ``out_dir/calibration.json`` (:class:`CalibrationResult`, with the candidates skipped
    and why, and what calibration spent against its budget), the check images under
    ``out_dir/calibration/<candidate>/``, each candidate's run under ``out_dir/calibration/work/``
    and, when a candidate is chosen, ``out_dir/plan.yaml`` with the calibration's check frames.

    Args:
        crop: Not supported: a centred border render needs border support in the render adapter
            (``RenderRequest`` has none), so calibration renders whole frames. Must be None.
        run_dir: When the chosen plan will run in this folder: render the reference as that run's
            reference tasks, so the run reuses them instead of rendering the check frames twice.
        budget_share: The share of the full render's predicted cost calibration may spend
            (default :data:`~farmplug.calibrate.DEFAULT_BUDGET_SHARE`; 1 for no limit short of the
            full render).
        also_for: Other shots of the sequence (same scene, look, lighting, samples and
            resolution) the calibration will plan: they share its cost, and its budget is a share
            of all their full renders.
        progress: ``progress(done, total, label)`` before each task and at the end.

    Returns:
        The calibration result, also saved as ``calibration.json``.

    Raises:
        ConfigError: the shot file or its scene is missing or invalid, an argument is out of
            range, or the shot is too short to calibrate within the budget.
        FarmplugError: a render or stage failed (the message names the calibration task).
    """
    from farmplug.calibrate import (
        CALIBRATION_FILE,
        DEFAULT_BUDGET_SHARE,
        MEASURE_TASK,
        CalibrationResult,
        compile_calibration,
        default_candidates,
        write_calibration_job,
    )
    from farmplug.errors import ConfigError
    from farmplug.models import QualityTarget, load_shot
    from farmplug.schema import load_model
    from farmplug.search import next_round, structures

    shot_file = Path(shot_file)
    shot = load_shot(shot_file)
    scene = shot.scene_path(shot_file)
    if not scene.is_file():
        raise ConfigError(f"scene {shot.scene!r} of shot {shot_file} not found", path=scene)
    if crop is not None:
        raise ConfigError("crop is not supported: border rendering needs support in farmplug.render's RenderRequest")
    share = DEFAULT_BUDGET_SHARE if budget_share is None else budget_share
    candidates = default_candidates(shot) if candidates is None else list(candidates)
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ConfigError(f"calibration candidates repeat: {names}")
    if isinstance(check_frames, int):
        # The check frames are chosen once, from every candidate (frames made between keyframes
        # where some candidate has a frame step), so every round measures the same frames and no
        # round renders the reference again.
        check_frames = compile_calibration(shot_file, out_dir, candidates=candidates, check_frames=check_frames,
                                           target=target, budget_share=share, also_for=also_for).setup.check_frames
    settings = dict(check_frames=check_frames, target=target, flip_p95_max=flip_p95_max, chunk_size=chunk_size,
                    threads=threads, run_dir=run_dir, budget_share=share, also_for=also_for)
    groups = structures(candidates) if search else [candidates]
    samples_of = {c.name: c.plan(shot=str(shot_file), target=target or QualityTarget()).samples_for(shot)
                  for c in candidates}
    work_of = calibration_work(shot_file, shot, candidates, check_frames if not isinstance(check_frames, int) else None)
    tried: list[Candidate] = []
    skipped: dict = {}
    result: CalibrationResult | None = None
    rounds = 0
    measuring = 0.0
    while True:
        if search:
            step = next_round(groups, result, samples_of=samples_of, work_of=work_of,
                              budget_core_s=share * result.budget.full_render_core_s if result and result.budget else None,
                              spent_core_s=result.budget.spent_core_s if result and result.budget else 0.0)
            skipped.update(step.skipped)
            tries = step.tries
        else:
            tries = [] if result else candidates
        if not tries:
            break
        tried += tries
        rounds += 1
        before = result.budget.spent_core_s if result and result.budget else 0.0
        job = compile_calibration(shot_file, out_dir, candidates=tried, skipped=list(skipped.values()),
                                  rounds=rounds, measuring_core_s_before=measuring, **settings)
        log.info("calibrating %s, round %d, on check frames %s: %s (%d tasks)", shot.name, rounds,
                 job.setup.check_frames, ", ".join(c.name for c in tries), len(job.graph.tasks))
        write_calibration_job(job)
        if rounds == 1:
            warm_up(job)
        label = f"round {rounds}: " if search else ""
        last_total = len(job.graph.tasks)
        try:
            # The reference renders go into the run folder the plan will use: it is locked too.
            with run_folder_lock(run_dir) if run_dir is not None else contextlib.nullcontext():
                run_graph(job.graph, progress=(
                    lambda done, n, task, label=label: progress(done, n, label + task.id)) if progress else None)
        except FarmplugError as err:
            raise FarmplugError(f"calibration {err}") from err
        result = load_model(CalibrationResult, Path(out_dir) / CALIBRATION_FILE)
        measuring += read_timing(job.graph.task(MEASURE_TASK).timing).frames[0].cpu_s
        log.debug("round %d spent %.1f core-s", rounds, (result.budget.spent_core_s if result.budget else 0) - before)
    if progress and rounds:
        progress(last_total, last_total, "done")
    if result is None:
        raise ConfigError("no calibration candidates given")
    _record_skips(Path(out_dir) / CALIBRATION_FILE, result, list(skipped.values()))
    return load_model(CalibrationResult, Path(out_dir) / CALIBRATION_FILE)


def _record_skips(path: Path, result: CalibrationResult, skipped: list) -> None:
    """The last round's search decisions (candidates closed after its measurements) into ``calibration.json``."""
    from farmplug.schema import save_model

    known = {s.name for s in result.skipped}
    more = [s for s in skipped if s.name not in known]
    if more:
        save_model(result.model_copy(update={"skipped": [*result.skipped, *more]}), path)


def calibration_work(shot_file: Path, shot, candidates: Sequence[Candidate], checks: Sequence[int] | None) -> dict[str, int]:
    """Frames each candidate's calibration tasks handle (renders and stages), from its compiled
    graph on the shot's middle frame or the given check frames: what prices an untried structure."""
    from farmplug.calibrate import delivered_for_checks
    from farmplug.graph import compile_plan
    from farmplug.models import QualityTarget

    frames = list(checks) if checks else [shot.frames.frames[len(shot.frames.frames) // 2]]
    work = {}
    for c in candidates:
        plan = c.plan(shot=str(shot_file), target=QualityTarget())
        graph = compile_plan(plan, shot, plan_file=Path("plan.yaml"), shot_file=Path(shot_file), run_dir=Path("run"),
                             frames=delivered_for_checks(plan, shot, frames))
        # A setup task (an engine build) names the frames its stage's tasks cover but handles none.
        work[c.name] = sum(len(t.frames) for t in graph.tasks if t.role == "plan" and t.kind != "setup")
    return work
