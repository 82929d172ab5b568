"""Build the savings report of run folders from what their tasks left behind.

Inputs are only each run's ``graph.json``, the timing record of every task and the frames, so the
same code reports a local run and a finished farm job. Cost is CPU core-seconds (process CPU
time, all threads): the plan's cost is measured on every task it ran; the full render's cost is
measured on the check frames rendered at full quality and extrapolated to the whole shot,
counting its per-task overhead (process start, scene load) once per chunk as a farm would pay it.

A single run is the show report of one shot: :func:`build_report` (one run) and
:func:`farmplug.report.show.build_show_report` (several) both read their runs with
:func:`collect` and write the same ``report.csv`` rows, assumptions and projection; only the
page around them differs.

Each run folder is reduced to a :class:`~farmplug.report.model.ShotEntry` (its headline numbers
and quality) plus the compact task list the farm simulation needs; its timing records are then
dropped, so a show of hundreds of shots is read in one streaming pass and the rollup adds up
per-shot numbers only.

What is measured and what is extrapolated:

* **Plan**: every task's CPU core-seconds and wall seconds are measured (timing records).
* **Full render**: measured on the full-quality check frames, extrapolated to every frame of the
  shot with the per-task start-up paid once per chunk (:func:`compute_savings`).
* **Money**: :func:`farmplug.cost.cost_of` on the plan's records; the full render is billed the
  same way as one CPU render of its extrapolated core-seconds and wall time. With no prices
  given, farmplug's default example prices (:func:`farmplug.cost.default_prices`), said so on
  the page; with ``default_prices=False``, core-hours only.
* **Farm time** (only with capacity): :func:`farmplug.schedule.simulate` of the plan's tasks
  with their measured wall seconds, and of the full render in chunks of the plan's chunk size,
  CPU tasks sped up by the capacity's ``core_speed``; a sequence's (and the show's) makespan
  simulates all its shots on the farm together.
* **Projection** (only with a :class:`ShowSize`): the measured per-frame costs (and so the
  measured ratio) times the frames asked for, times the pixel ratio when a resolution is given.
* **Quality**: FLIP/PSNR/SSIM of the check frames against their full-quality references. In a
  show it is measured once per run: a run whose ``report.json`` is newer than its check frames
  has it reused, which keeps a large show fast.

Sequences: a shot belongs to the sequence named by its shot name up to the first ``_``
(``sq010_sh020`` -> ``sq010``; a name without ``_`` is its own sequence), unless the caller
passes ``sequence_of``.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import platform
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from farmplug import __version__
from farmplug.cost import Prices, cost_of, load_prices, round_money
from farmplug.cost import default_prices as example_prices
from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import format_frames
from farmplug.graph import JobGraph, load_graph, run_layout
from farmplug.imageio import read_frame
from farmplug.models import ConfidenceRecord, FrameConfidence, Plan, Shot, load_plan
from farmplug.render.base import frame_path
from farmplug.report.model import (
    Assumptions,
    CapacityInfo,
    Figures,
    FlickerPair,
    FrameQuality,
    InbetweenSummary,
    LongerShot,
    MachineInfo,
    PlanInfo,
    PricesInfo,
    Projection,
    QualityFigures,
    QualitySummary,
    Report,
    Savings,
    ShotEntry,
    ShotInfo,
    StageCost,
)
from farmplug.schedule import (
    Capacity,
    Schedule,
    SimTask,
    compact_schedule,
    full_render_tasks,
    load_capacity,
    namespaced,
    reference_rates,
    simulate,
    timeline_svg,
)
from farmplug.schema import atomic_write_text, load_model
from farmplug.timing import FrameTiming, TimingRecord, read_timing

if TYPE_CHECKING:
    from farmplug.calibrate import CalibrationResult

log = logging.getLogger(__name__)

#: Shots shown with thumbnails and their own timelines (the first ones, in the order given).
DETAIL_SHOTS = 10
SEQUENCE_RULE = "sequence = shot name up to the first '_' (a name without '_' is its own sequence)"

CSV_COLUMNS = (
    "level", "sequence", "name", "shots", "frames",
    "full_core_hours", "plan_core_hours", "check_core_hours", "saved_core_hours", "savings_ratio",
    "currency", "full_cost", "plan_cost", "check_cost", "saved_cost", "cost_ratio",
    "full_makespan_hours", "plan_makespan_hours", "saved_days",
    "check_frames", "flip_mean", "flip_p95", "psnr_db", "fallback_frames", "shots_failing_target",
    "calibration_core_hours", "savings_ratio_without_calibration",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CALIBRATION_PREFIX = "calibration:"


def _scaled(record: TimingRecord, share: float) -> TimingRecord:
    """``record`` with its CPU and GPU costs times ``share`` (a shot's share of a shared calibration)."""
    if share == 1.0:
        return record
    return record.model_copy(update={
        "overhead_cpu_s": record.overhead_cpu_s * share,
        "frames": [f.model_copy(update={"cpu_s": f.cpu_s * share, "gpu_s": f.gpu_s * share}) for f in record.frames],
    })


@dataclass(frozen=True)
class RunCalibration:
    """The calibration that chose a run's plan, read once per report.

    Attributes:
        path: Its ``calibration.json`` (the one the plan names, else one beside the plan file).
        result: The record, or None when it does not read back (``error`` says why).
        error: Why it does not read back, or None.
        share: The share of its cost this run's shot carries (its frames over those of every shot
            that shares it); 1 when the record is unreadable.
    """

    path: Path
    result: CalibrationResult | None
    error: str | None
    share: float


def find_calibration(graph: JobGraph) -> RunCalibration | None:
    """The calibration that chose the run's plan, or None when there is none."""
    from farmplug.calibrate import CalibrationResult, calibration_for

    plan = graph.plan
    found = (Path(graph.plan_file).parent / "calibration.json") if plan is None else calibration_for(plan, Path(graph.plan_file))
    if found is None or not found.is_file():
        return None
    try:
        result = load_model(CalibrationResult, found)
    except ConfigError as err:
        return RunCalibration(path=found, result=None, error=str(err), share=1.0)
    # A graph without its plan (older run folders): its shot's share is unknown; charge it all.
    share = result.share_of(graph.shot_file) if plan is not None else 1.0
    return RunCalibration(path=found, result=result, error=None, share=share)


def load_records(graph: JobGraph, calibration: RunCalibration | None) -> dict[str, TimingRecord]:
    """Every task's timing record, plus (keyed ``calibration:...``) the records of the calibration
    that chose the plan (``calibration``, from :func:`find_calibration`), whose cost is part of the plan's:
    all of it, or this shot's share (by frames) when several shots share the calibration.

    Raises:
        FarmplugError: a record is missing or corrupt (names the task and file).
    """
    records = {}
    # Calibration writes its evidence (and its renders' timing records) beside the plan it chose.
    share = calibration.share if calibration is not None else 1.0
    found = calibration.path if calibration is not None else None
    calibration = (found.parent if found else Path(graph.plan_file).parent) / "calibration" / "work"
    if calibration.is_dir():
        for path in sorted(calibration.rglob("*.timing.json")):
            try:
                record = read_timing(path)
            except ConfigError as err:
                raise FarmplugError(f"corrupt calibration timing record: {err}") from None
            records[f"{CALIBRATION_PREFIX}{path.relative_to(calibration)}"] = _scaled(record, share).model_copy(
                update={"stage": "calibration", "role": "plan"}
            )
    for task in graph.tasks:
        if not Path(task.timing).is_file():
            raise FarmplugError(f"no timing record for task {task.id}; has the run finished?", path=task.timing)
        try:
            records[task.id] = read_timing(task.timing)
        except ConfigError as err:
            raise FarmplugError(f"corrupt timing record for task {task.id}: {err}") from None
    return records


def compute_savings(graph: JobGraph, records: dict[str, TimingRecord], shot: Shot, plan: Plan):
    """Full-render cost (extrapolated from the reference tasks) against the plan's measured cost.

    Raises:
        FarmplugError: no reference frames were rendered, or a cost is zero (never report a fake ratio).
    """
    refs = [records[t.id] for t in graph.tasks if t.role == "reference"]
    plan_records = [records[t.id] for t in graph.tasks if t.role == "plan"]
    calibration = [r for key, r in records.items() if key.startswith(CALIBRATION_PREFIX)]
    plan_records += calibration
    ref_frames = [f for r in refs for f in r.frames]
    if not ref_frames:
        raise FarmplugError("the run has no full-quality reference frames to measure the full render on; add check_frames to the plan")
    n = len(shot.frames.frames)
    per_frame = sum(f.cpu_s for f in ref_frames) / len(ref_frames)
    per_task_overhead = sum(r.overhead_cpu_s for r in refs) / len(refs)
    chunks = math.ceil(n / plan.chunk_size)
    full = per_frame * n + per_task_overhead * chunks
    plan_cost = sum(r.cpu_s for r in plan_records)
    checks = sum(r.cpu_s for r in refs)
    calibration_cost = sum(r.cpu_s for r in calibration)
    rerun = plan_cost - calibration_cost
    if full <= 0 or plan_cost <= 0:
        raise FarmplugError(f"cannot compute savings: measured cost is zero (full {full:.3f}, plan {plan_cost:.3f} core-s)")
    return Savings(
        render_fixed_share=render_fixed_share([records[t.id] for t in graph.tasks
                                               if t.role == "plan" and t.kind == "render"]),
        longer_shots=longer_shots(full / n, rerun / n, calibration_cost, n),
        frames=n,
        core_seconds_full=full,
        core_seconds_plan=plan_cost,
        ratio=full / plan_cost,
        core_seconds_checks=checks,
        core_seconds_calibration=calibration_cost,
        ratio_including_checks=full / (plan_cost + checks),
        ratio_without_calibration=full / rerun if calibration_cost > 0 and rerun > 0 else None,
        full_core_seconds_per_frame=full / n,
        plan_core_seconds_per_frame=plan_cost / n,
        measured_frames_full=sorted(f.frame for f in ref_frames),
        method=(
            f"Full render: {len(ref_frames)} check frames rendered at {shot.samples} spp, mean "
            f"{per_frame:.2f} core-s/frame plus {per_task_overhead:.2f} core-s start-up per {plan.chunk_size}-frame "
            f"task, extrapolated to {n} frames. Plan: every task measured ({len(plan_records)} tasks, all {n} frames"
            + (", calibration included)." if any(k.startswith(CALIBRATION_PREFIX) for k in records) else ").")
        ),
    )


#: The longer shots a single run's savings are projected to, as multiples of its frames.
LONGER_SHOTS = (2, 4, 10)


def longer_shots(full_per_frame: float, plan_per_frame: float, calibration: float, frames: int) -> list[LongerShot]:
    """The ratio on shots ``LONGER_SHOTS`` times as long, with the same per-frame costs (task
    start-ups included as measured) and the one-off calibration paid once. Empty without one (the
    ratio would not change)."""
    if calibration <= 0 or plan_per_frame <= 0:
        return []
    return [LongerShot(frames=frames * k, ratio=full_per_frame * frames * k / (plan_per_frame * frames * k + calibration))
            for k in LONGER_SHOTS]


def render_fixed_share(renders: Sequence[TimingRecord]) -> float | None:
    """The part of the plan's render cost per frame that fewer samples do not shrink: every task's
    start-up plus each frame's fixed part (the renderer's measured split); None when a render
    record has no split."""
    if not renders or any(r.render_cost is None for r in renders):
        return None
    total = sum(r.cpu_s for r in renders)
    fixed = sum(r.overhead_cpu_s + r.render_cost.fixed_cpu_s_per_frame * len(r.frames) for r in renders)
    return min(1.0, fixed / total) if total > 0 else None


def stage_costs(graph: JobGraph, records: dict[str, TimingRecord]):
    groups: dict[tuple[str, str, str], list[TimingRecord]] = defaultdict(list)
    for task in graph.tasks:
        r = records[task.id]
        groups[(task.stage, task.role, r.backend)].append(r)
    for key, r in records.items():
        if key.startswith(CALIBRATION_PREFIX):
            groups[("calibration", "plan", "calibrate")].append(r)
    return [
        StageCost(
            stage=stage, role=role, backend=backend, tasks=len(rs), frames=sum(len(r.frames) for r in rs),
            core_seconds=sum(r.cpu_s for r in rs), wall_seconds=sum(r.wall_s for r in rs),
            overhead_core_seconds=sum(r.overhead_cpu_s for r in rs),
        )
        for (stage, role, backend), rs in groups.items()
    ]


def load_confidence(graph: JobGraph) -> dict[int, FrameConfidence]:
    """Every in-between frame's verdict, from the inbetween tasks' confidence records.

    Raises:
        FarmplugError: a record is missing or corrupt.
    """
    verdicts: dict[int, FrameConfidence] = {}
    for task in graph.tasks:
        if not task.verdicts:
            continue
        try:
            record = load_model(ConfidenceRecord, task.verdicts)
        except ConfigError as err:
            raise FarmplugError(f"confidence record of task {task.id} is missing or corrupt: {err}") from None
        verdicts.update({v.frame: v for v in record.frames})
    return verdicts


def load_thresholds(graph: JobGraph) -> list[float]:
    """The confidence thresholds the withholding tasks applied (from their records)."""
    found = set()
    for task in graph.tasks:
        if task.verdicts and Path(task.verdicts).is_file():
            found.add(load_model(ConfidenceRecord, task.verdicts).threshold)
    return sorted(found)


def measure_check_frames(graph: JobGraph, shot: Shot, plan: Plan, out_dir: Path, verdicts: dict[int, FrameConfidence]):
    """Quality of the delivered frames (and of the reduced render before post) against the references."""
    from farmplug.imageio.thumbnails import error_map_png, tonemap_png
    from farmplug.quality import measure

    layout = run_layout(Path(graph.run_dir), shot)
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    rows = []
    for frame in sorted(plan.check_frames):
        verdict = verdicts.get(frame)
        source = "rendered" if verdict is None else ("interpolated" if verdict.passed else "fallback")
        ref = read_frame(frame_path(layout.reference, frame)).feature("color")
        result = read_frame(frame_path(layout.final, frame)).feature("color")
        if ref.shape != result.shape:
            raise FarmplugError(f"frame {frame}: result {result.shape[:2]} and reference {ref.shape[:2]} differ in size")
        res_q, err_map = measure(ref, result, error_map=True)
        names = {k: f"thumbs/{shot.stem}.{frame:04d}.{k}.png" for k in ("reference", "before_post", "result", "flip")}
        before_q = None
        # The reduced render before the stages ran (nothing to compare when no stage works on rendered frames).
        reduced = {"rendered": layout.render, "fallback": layout.fallback}.get(source) if plan.frame_stages() else None
        if reduced is not None:
            before = read_frame(frame_path(reduced, frame)).feature("color")
            before_q = measure(ref, before) if before.shape == ref.shape else None
            tonemap_png(before, out_dir / names["before_post"])
        else:
            del names["before_post"]
        tonemap_png(ref, out_dir / names["reference"])
        tonemap_png(result, out_dir / names["result"])
        error_map_png(err_map, out_dir / names["flip"])
        rows.append(
            FrameQuality(
                frame=frame,
                result=QualityFigures(**res_q.as_dict()),
                before_post=QualityFigures(**before_q.as_dict()) if before_q else None,
                thumbnails=names,
                source=source,
                confidence=verdict.score if verdict is not None else None,
            )
        )
    if not rows:
        raise FarmplugError("the plan has no check frames, so quality cannot be measured")

    def mean(key: str) -> float:
        return sum(getattr(r.result, key) for r in rows) / len(rows)

    flip_mean = mean("flip_mean")
    target = plan.quality_target.flip_mean_max
    from farmplug.calibrate import flicker_of, pairs_in

    pairs = pairs_in(plan.check_frames)
    scores = flicker_of(layout.reference, layout.final, pairs) if pairs else []
    flicker = sum(scores) / len(scores) if scores else None
    bound = plan.quality_target.flicker_max
    meets = flip_mean <= target and (bound is None or (flicker is not None and flicker <= bound))
    return QualitySummary(
        flip_mean=flip_mean, flip_p95=mean("flip_p95"), psnr_mean=mean("psnr"), ssim_mean=mean("ssim"),
        flip_target=target, meets_target=meets, frames=rows, flicker=flicker, flicker_target=bound,
        flicker_pairs=[FlickerPair(frame=t, flicker=v) for t, v in zip(pairs, scores, strict=True)],
    )


def inbetween_summary(graph: JobGraph, records: dict[str, TimingRecord], shot: Shot, plan: Plan, verdicts):
    """What the frame step saved, and which frames went back to render."""
    if plan.keyframe_stage() is None:
        return None
    keys = plan.keyframes(shot)
    # Measured cost per keyframe of the reduced render and its per-frame stages (not the frames made
    # between keyframes, their aux renders or their fallbacks).
    keyed = [records[t.id] for t in graph.tasks
             if t.role == "plan" and ((t.kind == "render" and t.stage == "render") or (t.kind == "stage" and t.reads != "keyframes"))]
    per_key = sum(r.cpu_s for r in keyed) / len(keys)
    every_frame = per_key * len(shot.frames.frames)
    plan_cost = sum(records[t.id].cpu_s for t in graph.tasks if t.role == "plan")
    scores = [v.score for v in verdicts.values() if v.score is not None]
    return InbetweenSummary(
        frame_step=plan.frame_step,
        threshold=max(load_thresholds(graph), default=0.0),
        interpolated=sorted(f for f, v in verdicts.items() if v.passed),
        fallback=sorted(f for f, v in verdicts.items() if not v.passed),
        mean_score=sum(scores) / len(scores) if scores else None,
        core_seconds_every_frame=every_frame,
        extra_saving_core_seconds=every_frame - plan_cost,
    )


def _calibration_note(calibration: RunCalibration, shot_file: str) -> str:
    """One line on how the plan was chosen, from the calibration evidence saved with it."""
    if calibration.result is None:
        return f"A calibration record is present but unreadable: {calibration.error}."
    result, path = calibration.result, calibration.path
    tried = ", ".join(c.name for c in result.candidates)
    note = (f"Plan chosen by calibration of {result.shot_name} on check frames {result.check_frames}: "
            f"{result.recommendation} ({result.reason}). Candidates tried: {tried}")
    if result.skipped:
        note += f"; not rendered: {', '.join(s.name for s in result.skipped)} (reasons in {path.name})"
    if len(result.shared_by) > 1:
        share = result.share_of(shot_file)
        note += (f". Shared by {len(result.shared_by)} shots ({', '.join(s.name for s in result.shared_by)}): "
                 f"this shot is charged {share:.0%} of its cost, by frames")
    return note + f". Evidence: {path.name}."


def run_notes(graph: JobGraph, records: dict[str, TimingRecord], inbetween,
              calibration: RunCalibration | None = None) -> list[str]:
    """What one run's figures need said: several hosts, GPU work, how the plan was chosen, fallbacks."""
    notes = []
    hosts = sorted({r.host for r in records.values()})
    if len(hosts) > 1:
        notes.append(f"Tasks ran on {len(hosts)} hosts ({', '.join(hosts)}); core-seconds from different CPUs are summed as they are.")
    if any(r.settings.get("device") not in (None, "cpu") for r in records.values()):
        notes.append("Some stages ran on a GPU; their GPU-seconds are not part of the CPU core-second totals.")
    # Calibration saves its evidence beside the plan it chose (its cost is found there too).
    if calibration is not None:
        notes.append(_calibration_note(calibration, graph.shot_file))
    if inbetween is not None and inbetween.fallback:
        notes.append(
            f"{len(inbetween.fallback)} interpolated frame(s) scored under the confidence threshold and were "
            f"rendered for real instead: {format_frames(inbetween.fallback, sep=', ')}."
        )
    return notes


# ----------------------------------------------------------------------------- reports of runs


def sequence_from_name(shot_name: str) -> str:
    """The default sequence of a shot: its name up to the first ``_`` (``sq010_sh020`` -> ``sq010``)."""
    head, sep, _ = shot_name.partition("_")
    return head if sep and head else shot_name


@dataclass(frozen=True)
class ShowSize:
    """A show size to project the measured savings to (``--project-frames``, ``--project-resolution``).

    Attributes:
        frames: Frames of the show (or sequence) to project to.
        width: Its resolution, or None to keep the measured one; with ``height``.
        height: See ``width``.

    Raises:
        ConfigError: frames below 1, a size below 1, or only one of width and height.
    """

    frames: int
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"projection: frames must be >= 1, got {self.frames}")
        if (self.width is None) != (self.height is None):
            raise ConfigError("projection: give both width and height of the resolution, or neither")
        if self.width is not None and (self.width < 1 or self.height < 1):
            raise ConfigError(f"projection: resolution must be at least 1x1, got {self.width}x{self.height}")


@dataclass
class _Work:
    """What the rollup keeps of one shot besides its entry: the tasks to simulate on the farm."""

    entry: ShotEntry
    costs: list[StageCost] = field(default_factory=list)
    inbetween: InbetweenSummary | None = None
    cores: int = 0
    plan_tasks: list[SimTask] = field(default_factory=list)
    plan_durations: dict[str, float] = field(default_factory=dict)
    full_tasks: list[SimTask] = field(default_factory=list)
    full_durations: dict[str, float] = field(default_factory=dict)


def _cached_quality(run_dir: Path, shot: Shot, plan: Plan) -> Report | None:
    """The run's own ``report.json`` when it is newer than the check frames it measured, else None."""
    path = run_dir / "report.json"
    try:
        stamp = path.stat().st_mtime
        report = Report.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report.shot.name != shot.name or [f.frame for f in report.quality.frames] != sorted(plan.check_frames):
        return None
    layout = run_layout(run_dir, shot)
    for frame in plan.check_frames:
        for pattern in (layout.final, layout.reference):
            try:
                if frame_path(pattern, frame).stat().st_mtime > stamp:
                    return None
            except OSError:
                continue
    return report


def _rebase_thumbnails(quality: QualitySummary, base: Path, out_dir: Path) -> QualitySummary:
    """Thumbnail names made relative to ``out_dir`` (they were relative to ``base``)."""
    frames = []
    for frame in quality.frames:
        names = {k: os.path.relpath(base / v, out_dir) for k, v in frame.thumbnails.items()}
        frames.append(frame.model_copy(update={"thumbnails": names}))
    return quality.model_copy(update={"frames": frames})


def _full_render_cost(core_seconds: float, wall_seconds: float, prices: Prices) -> Decimal:
    """The full render billed as the plan's renders are: one CPU render task of that size."""
    record = TimingRecord(
        task="full-render", stage="render", role="full", backend="extrapolated", host="model", cores=1,
        started_at=0.0, finished_at=wall_seconds,
        frames=[FrameTiming(frame=0, wall_s=wall_seconds, cpu_s=core_seconds)],
    )
    return cost_of([record], prices).total


def _schedule_tasks(graph: JobGraph, records: dict[str, TimingRecord]) -> tuple[list[SimTask], dict[str, float]]:
    plan_ids = {t.id for t in graph.tasks if t.role == "plan"}
    tasks = [
        SimTask(id=t.id, stage=t.stage, role="plan", depends_on=tuple(d for d in t.depends_on if d in plan_ids),
                cores=t.cores, gpus=t.gpus)
        for t in graph.tasks if t.id in plan_ids
    ]
    return tasks, {tid: records[tid].wall_s for tid in plan_ids}


def _summarize_run(
    run_dir: Path, out_dir: Path, *, sequence: Callable[[str], str], prices: Prices | None,
    capacity: Capacity | None, reuse_quality: bool = True,
) -> _Work:
    """Read one run folder into its entry, the tasks to simulate and its stage costs.

    ``reuse_quality``: take the quality from the run's own ``report.json`` when it is newer than
    the check frames (else measure them again, writing thumbnails into ``out_dir``).

    Raises:
        FarmplugError: the run has no graph, a timing or confidence record is missing or corrupt,
            a cost is zero, or the prices lack a price the work needs.
    """
    graph = load_graph(run_dir)
    # The plan and shot the run was made from travel in its graph (older graphs: read the plan file).
    plan, shot = (graph.plan, graph.shot) if graph.plan is not None and graph.shot is not None else load_plan(graph.plan_file)[:2]
    calibration = find_calibration(graph)
    records = load_records(graph, calibration)
    savings = compute_savings(graph, records, shot, plan)
    verdicts = load_confidence(graph)
    cached = _cached_quality(run_dir, shot, plan) if reuse_quality else None
    if cached is not None:
        quality = _rebase_thumbnails(cached.quality, run_dir, out_dir)
        quality_from = str(run_dir / "report.json")
    else:
        quality = measure_check_frames(graph, shot, plan, out_dir, verdicts)
        quality_from = "measured"
    inbetween = inbetween_summary(graph, records, shot, plan, verdicts)
    fallback = inbetween.fallback if inbetween is not None else []

    frame_wall, overhead_wall = reference_rates(records.values())
    full_tasks, full_durations = full_render_tasks(
        shot.frames.frames, chunk_size=plan.chunk_size, seconds_per_frame=frame_wall, overhead_s=overhead_wall,
    )
    full_cost = plan_cost = check_cost = None
    if prices is not None:
        breakdown = cost_of(records.values(), prices)
        plan_cost, check_cost = breakdown.total_for("plan"), breakdown.total_for("reference")
        full_cost = _full_render_cost(savings.core_seconds_full, sum(full_durations.values()), prices)
        if plan_cost <= 0 or full_cost <= 0:
            raise FarmplugError(
                f"shot {shot.name}: at these prices the {'plan' if plan_cost <= 0 else 'full render'} costs "
                f"0 {prices.currency} (cpu_core_hour/ghz_hour, gpu_hour and licence_node_hour are all zero for its "
                "work), so a saving in money cannot be shown; give the farm's real prices or no prices",
                path=prices.source,
            )
    plan_tasks, plan_durations = _schedule_tasks(graph, records)
    full_makespan = plan_makespan = None
    if capacity is not None:
        full_makespan = simulate(full_tasks, full_durations, capacity).makespan
        plan_makespan = simulate(plan_tasks, plan_durations, capacity).makespan

    quality_failing = 1 if quality.meets_target is False else 0
    figures = Figures.of(
        "shot", shot.name, sequence=sequence(shot.name), shots=1, frames=savings.frames,
        full_s=savings.core_seconds_full, plan_s=savings.core_seconds_plan, check_s=savings.core_seconds_checks,
        calibration_s=savings.core_seconds_calibration, currency=prices.currency if prices else None, full_cost=full_cost, plan_cost=plan_cost, check_cost=check_cost,
        full_makespan=full_makespan, plan_makespan=plan_makespan,
        quality=[(len(quality.frames), quality.flip_mean, quality.flip_p95, quality.psnr_mean)],
        fallback=len(fallback), failing=quality_failing,
    )
    hosts = sorted({r.host for r in records.values()})
    entry = ShotEntry(
        run_dir=str(run_dir), figures=figures,
        shot=ShotInfo(name=shot.name, scene=shot.scene, frame_start=shot.frames.start, frame_end=shot.frames.end,
                      width=shot.resolution.width, height=shot.resolution.height, full_samples=shot.samples),
        plan=PlanInfo(samples=plan.samples_for(shot), samples_factor=plan.samples_factor,
                      resolution_scale=plan.resolution_scale, frame_step=plan.frame_step,
                      stages=[f"{s.kind}:{s.backend}" for s in plan.stages], check_frames=sorted(plan.check_frames)),
        savings=savings, quality=quality, fallback=fallback, hosts=hosts, quality_from=quality_from,
        notes=run_notes(graph, records, inbetween, calibration),
    )
    return _Work(entry, stage_costs(graph, records), inbetween, max(r.cores for r in records.values()),
                 plan_tasks, plan_durations, full_tasks, full_durations)


# ----------------------------------------------------------------------------- rollup


def _sum_money(values: list[Decimal | None]) -> Decimal | None:
    return None if any(v is None for v in values) else sum(values, Decimal(0))


def _rollup(level: str, name: str, works: list[_Work], capacity: Capacity | None) -> tuple[Figures, tuple[Schedule, Schedule] | None]:
    rows = [w.entry.figures for w in works]
    schedules = None
    full_makespan = plan_makespan = None
    if capacity is not None:
        schedules = _farm_schedules(works, capacity)
        full_makespan, plan_makespan = schedules[0].makespan, schedules[1].makespan
    figures = Figures.of(
        level, name, sequence=name if level == "sequence" else None, shots=len(rows),
        frames=sum(r.frames for r in rows),
        full_s=sum(r.full_core_hours for r in rows) * 3600, plan_s=sum(r.plan_core_hours for r in rows) * 3600,
        check_s=sum(r.check_core_hours for r in rows) * 3600,
        calibration_s=sum(r.calibration_core_hours for r in rows) * 3600, currency=rows[0].currency,
        full_cost=_sum_money([r.full_cost for r in rows]), plan_cost=_sum_money([r.plan_cost for r in rows]),
        check_cost=_sum_money([r.check_cost for r in rows]),
        full_makespan=full_makespan, plan_makespan=plan_makespan,
        quality=[(r.check_frames, r.flip_mean, r.flip_p95, r.psnr_mean) for r in rows],
        fallback=sum(r.fallback_frames for r in rows), failing=sum(r.shots_failing_target for r in rows),
    )
    return figures, schedules


def _farm_schedules(works: list[_Work], capacity: Capacity) -> tuple[Schedule, Schedule]:
    """Full render and plan of all ``works`` simulated together on one farm."""
    full_tasks: list[SimTask] = []
    full_durations: dict[str, float] = {}
    plan_tasks: list[SimTask] = []
    plan_durations: dict[str, float] = {}
    for work in works:
        name = work.entry.shot.name
        tasks, durations = namespaced(name, work.full_tasks, work.full_durations)
        full_tasks += tasks
        full_durations.update(durations)
        tasks, durations = namespaced(name, work.plan_tasks, work.plan_durations)
        plan_tasks += tasks
        plan_durations.update(durations)
    return simulate(full_tasks, full_durations, capacity), simulate(plan_tasks, plan_durations, capacity)


def _add_stage_costs(total: dict[tuple[str, str, str], StageCost], costs: list[StageCost]) -> None:
    for cost in costs:
        key = (cost.stage, cost.role, cost.backend)
        seen = total.get(key)
        if seen is None:
            total[key] = cost
            continue
        total[key] = seen.model_copy(update={
            "tasks": seen.tasks + cost.tasks, "frames": seen.frames + cost.frames,
            "core_seconds": seen.core_seconds + cost.core_seconds, "wall_seconds": seen.wall_seconds + cost.wall_seconds,
            "overhead_core_seconds": seen.overhead_core_seconds + cost.overhead_core_seconds,
        })


def _timelines(full: Schedule, plan: Schedule, label: str, *, used_rows_only: bool) -> tuple[str, str]:
    full_c = compact_schedule(full, used_rows_only=used_rows_only)
    plan_c = compact_schedule(plan, used_rows_only=used_rows_only)
    rows = max(len(full_c.resources), len(plan_c.resources))
    row_height = 18 if rows <= 16 else 12
    return (
        timeline_svg(full_c, title=f"{label}: full render (traditional)", width=1040, row_height=row_height),
        timeline_svg(plan_c, title=f"{label}: plan (reduced render + AI post)", width=1040, row_height=row_height),
    )


# ----------------------------------------------------------------------------- files


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{round_money(value):.2f}"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.2f}"
    text = str(value)
    # Text (a shot or sequence name) that a spreadsheet would run as a formula is quoted with a
    # leading apostrophe, which spreadsheets show as text; numbers are written as numbers.
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def figures_csv(rows: Sequence[Figures]) -> str:
    """The rows as CSV text with :data:`CSV_COLUMNS` (money rounded to cents, hours of makespan)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        hours = {k: None if v is None else v / 3600 for k, v in (("full", r.full_makespan_s), ("plan", r.plan_makespan_s))}
        writer.writerow(_csv_cell(v) for v in (
            r.level, r.sequence, r.name, r.shots, r.frames,
            r.full_core_hours, r.plan_core_hours, r.check_core_hours, r.saved_core_hours, r.ratio,
            r.currency, r.full_cost, r.plan_cost, r.check_cost, r.saved_cost, r.cost_ratio,
            hours["full"], hours["plan"], r.saved_days,
            r.check_frames, r.flip_mean, r.flip_p95, r.psnr_mean, r.fallback_frames, r.shots_failing_target,
            r.calibration_core_hours, r.ratio_without_calibration,
        ))
    return out.getvalue()


def _resolve(value, path: Path | None, loader, what: str):
    if value is not None and path is not None:
        raise FarmplugError(f"give the {what} or a {what} file, not both")
    return loader(path) if path is not None else value


def report_inputs(
    prices: Prices | None, prices_file: str | Path | None, capacity: Capacity | None,
    capacity_file: str | Path | None, *, default_prices: bool = True,
) -> tuple[Prices | None, Capacity | None]:
    """The prices and capacity a report uses: given, read from their files, or the default prices.

    Raises:
        FarmplugError: a value and a file given for the same thing.
        ConfigError: a prices or capacity file is bad (names the file and field).
    """
    prices = _resolve(prices, Path(prices_file) if prices_file else None, load_prices, "prices")
    capacity = _resolve(capacity, Path(capacity_file) if capacity_file else None, load_capacity, "capacity")
    if prices is None and default_prices:
        prices = example_prices()
    if prices is not None:
        prices.check()
    return prices, capacity


def _projection(show: Figures, works: list[_Work], size: ShowSize) -> Projection:
    """The measured figures of ``show`` (over ``works``) applied to ``size``: exact ratio arithmetic.

    Per frame when no resolution is given (``full * N / measured frames``); per pixel-frame when
    one is (``full * N * W * H / measured pixel-frames``), so shots of any resolution combine.
    """
    measured_pixels = sum(w.entry.figures.frames * w.entry.shot.width * w.entry.shot.height for w in works)
    if size.width is None:
        factor = Decimal(size.frames) / Decimal(show.frames)
        pixel_scale = 1.0
    else:
        factor = Decimal(size.frames * size.width * size.height) / Decimal(measured_pixels)
        pixel_scale = size.width * size.height * show.frames / measured_pixels
    scale = float(factor)
    full_h, plan_h = show.full_core_hours * scale, show.plan_core_hours * scale
    money = show.full_cost is not None and show.plan_cost is not None
    assumptions = [
        f"A projection, not a measurement: the costs per frame measured on {show.frames} frame"
        f"{'s' if show.frames != 1 else ''} ({show.shots} shot{'s' if show.shots != 1 else ''}) times "
        f"{size.frames:,} frames, so the saving ratio is the measured {show.ratio:.3g}×.",
        "The plan's cost per frame includes its task start-ups"
        + (" and its one-off calibration" if show.calibration_core_hours > 0 else "")
        + " as measured; the full-quality check frames (evidence) are not projected.",
    ]
    if size.width is not None:
        assumptions.append(
            f"Cost assumed proportional to pixel count: {size.width}×{size.height} is {pixel_scale:.4g}× the "
            "measured pixels per frame. An assumption: render time rarely scales exactly with pixels."
        )
    if money:
        assumptions.append("Money at the same prices as the measured figures.")
    return Projection(
        frames=size.frames, width=size.width, height=size.height, pixel_scale=pixel_scale,
        measured_frames=show.frames, full_core_hours=full_h, plan_core_hours=plan_h,
        saved_core_hours=full_h - plan_h, ratio=full_h / plan_h,
        currency=show.currency if money else None,
        full_cost=show.full_cost * factor if money else None,
        plan_cost=show.plan_cost * factor if money else None,
        saved_cost=(show.full_cost - show.plan_cost) * factor if money else None,
        assumptions=assumptions,
    )


@dataclass(frozen=True)
class Collected:
    """Runs read and rolled up: what both report builders turn into their report and page.

    Attributes:
        works: One per run, in the order given.
        sequences: One row per sequence.
        show: The row over every run.
        costs: Stage costs summed over the runs.
        timelines: ``(full, plan)`` SVGs of every run on the farm together, or None without capacity.
        shot_timelines: ``(full, plan)`` SVGs per shot name, for the detail shots (several runs only).
        assumptions: What the figures rest on.
        notes: Notes on the figures as a whole (per-run notes are in each entry).
        projection: The figures projected to the show size asked for, or None.
    """

    works: list[_Work]
    sequences: list[Figures]
    show: Figures
    costs: list[StageCost]
    timelines: tuple[str, str] | None
    shot_timelines: dict[str, tuple[str, str]]
    assumptions: Assumptions
    notes: list[str]
    projection: Projection | None


def collect(
    run_dirs: Sequence[Path], out_dir: Path, *, prices: Prices | None, capacity: Capacity | None,
    sequence_of: Callable[[str], str] | None = None, detail_shots: int = DETAIL_SHOTS,
    project: ShowSize | None = None, reuse_quality: bool = True,
) -> Collected:
    """Read every run, roll the figures up per sequence and show, simulate the farm, project.

    Raises:
        FarmplugError: no run folders; two runs of one shot; a run's records are missing or
            corrupt (names the file); a price the work needs is missing; a measured cost is zero.
    """
    if not run_dirs:
        raise FarmplugError("no run folders to report on")
    sequence = sequence_of or sequence_from_name
    out_dir.mkdir(parents=True, exist_ok=True)
    works: list[_Work] = []
    seen: dict[str, Path] = {}
    stage_totals: dict[tuple[str, str, str], StageCost] = {}
    shot_timelines: dict[str, tuple[str, str]] = {}
    machines: dict[str, None] = {}
    for index, run_dir in enumerate(run_dirs):
        try:
            work = _summarize_run(run_dir, out_dir, sequence=sequence, prices=prices, capacity=capacity,
                                  reuse_quality=reuse_quality)
        except FarmplugError as err:
            if str(run_dir) in str(err):
                raise
            raise type(err)(f"run {run_dir}: {err}") from None
        name = work.entry.shot.name
        if name in seen:
            raise FarmplugError(f"runs {seen[name]} and {run_dir} are both shot {name}; report each shot once")
        seen[name] = run_dir
        _add_stage_costs(stage_totals, work.costs)
        for host in work.entry.hosts:
            machines[host] = None
        if capacity is not None and index < detail_shots and len(run_dirs) > 1:
            full, plan = _farm_schedules([work], capacity)
            shot_timelines[name] = _timelines(full, plan, name, used_rows_only=True)
        works.append(work)
        log.info("report: read %s (%d of %d)", run_dir, index + 1, len(run_dirs))

    by_sequence: dict[str, list[_Work]] = defaultdict(list)
    for work in works:
        by_sequence[work.entry.figures.sequence].append(work)
    sequences = [_rollup("sequence", name, group, capacity)[0] for name, group in by_sequence.items()]
    show, show_schedules = _rollup("show", "show", works, capacity)
    label = "Show" if len(works) > 1 else works[0].entry.shot.name
    return Collected(
        works=works, sequences=sequences, show=show,
        costs=sorted(stage_totals.values(), key=lambda c: (c.role != "plan", c.stage)),
        timelines=_timelines(*show_schedules, label, used_rows_only=True) if show_schedules else None,
        shot_timelines=shot_timelines,
        assumptions=_assumptions(prices, capacity, list(machines), sequence_of is None, min(detail_shots, len(works))),
        notes=_notes(works, prices, capacity),
        projection=_projection(show, works, project) if project is not None else None,
    )


def write_csv(out_dir: Path, collected: Collected) -> Path:
    """Write ``report.csv``: the shots' rows, then the sequences', then the show's."""
    path = Path(out_dir) / "report.csv"
    atomic_write_text(path, figures_csv([*(w.entry.figures for w in collected.works), *collected.sequences,
                                         collected.show]))
    return path


def _assumptions(prices: Prices | None, capacity: Capacity | None, hosts: list[str], default_rule: bool,
                 detail: int) -> Assumptions:
    measured = [
        "Plan: CPU core-seconds and wall seconds of every task it ran (timing records), start-up and loads included.",
        "Full render: CPU core-seconds and wall seconds of the full-quality check frames.",
        "Quality: FLIP, PSNR and SSIM of the delivered check frames against their full-quality renders.",
    ]
    extrapolated = [
        "Full render of every frame: the check frames' mean cost per frame x the shot's frames, plus the "
        "per-task start-up once per chunk of the plan's chunk size.",
    ]
    if prices is not None:
        extrapolated.append(
            "Full-render money: its extrapolated core-hours (and render node-hours) billed at the same prices as the plan"
            + (" (farmplug's default example prices, not this farm's)." if prices.is_default else ".")
        )
    if capacity is not None:
        extrapolated.append(
            "Farm time: a simulation of the tasks on the capacity (critical-path list scheduling), with measured "
            "wall seconds for the plan and the extrapolated per-chunk time for the full render; each farm core is "
            f"taken as {capacity.core_speed:g}x as fast as the machine the timings were measured on (capacity "
            "core_speed: CPU task times divided by it, GPU tasks as measured). Money stays billed on the "
            "core-hours measured here. A sequence's and the show's time schedule all their shots on the farm together."
        )
    return Assumptions(
        prices=PricesInfo(source=prices.source, default=prices.is_default, currency=prices.currency,
                          cpu_core_hour=prices.cpu_core_hour, ghz_hour=prices.ghz_hour, cpu_ghz=prices.cpu_ghz,
                          gpu_hour=prices.gpu_hour, licence_node_hour=prices.licence_node_hour)
        if prices is not None else None,
        capacity=CapacityInfo(source=capacity.source, cpu_nodes=capacity.cpu_nodes,
                              cores_per_node=capacity.cores_per_node, gpus=capacity.gpus,
                              core_speed=capacity.core_speed) if capacity is not None else None,
        measured=measured,
        extrapolated=extrapolated,
        machines=[f"{host} · {_cpu_model()}" if len(hosts) == 1 else host for host in hosts],
        sequence_rule=SEQUENCE_RULE if default_rule else "sequence given by the caller for each shot",
        detail_shots=detail,
    )


def _notes(works: list[_Work], prices: Prices | None, capacity: Capacity | None) -> list[str]:
    notes = []
    if prices is None:
        notes.append("No prices were given: every figure is in core-hours of compute; give a prices file for money.")
    elif prices.is_default:
        notes.append("No prices were given: money is at farmplug's default example prices, not this farm's; "
                     "give a prices file (--prices) for the farm's own.")
    if capacity is None:
        notes.append("No farm capacity was given: farm time (makespan, days saved) is not simulated; give a capacity file.")
    reused = sum(1 for w in works if w.entry.quality_from != "measured")
    if reused:
        notes.append(f"Quality of {reused} shot(s) was read from the run's own report.json (newer than its check frames).")
    failing = [w.entry.shot.name for w in works if w.entry.quality.meets_target is False]
    if failing:
        notes.append(f"{len(failing)} shot(s) miss their quality target: {', '.join(failing[:20])}{' …' if len(failing) > 20 else ''}.")
    return notes


def build_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    prices: Prices | None = None,
    prices_file: str | Path | None = None,
    capacity: Capacity | None = None,
    capacity_file: str | Path | None = None,
    default_prices: bool = True,
    project: ShowSize | None = None,
) -> tuple[Report, Path]:
    """Build report.json, report.html and report.csv for a finished run; returns (Report, html path).

    The report of one run is the show report of one shot (:func:`farmplug.report.show.build_show_report`):
    the same figures, CSV rows, assumptions and page blocks, plus the single run's full-size
    thumbnails, per-stage costs and how it was measured.

    Args:
        run_dir: The finished run folder.
        out_dir: Where to write (default: the run folder).
        prices: The farm's prices, or ``prices_file`` to read.
        prices_file: A prices YAML.
        capacity: The farm's capacity, or ``capacity_file`` to read.
        capacity_file: A capacity YAML; with neither, farm time is not simulated.
        default_prices: With no prices given, show money at farmplug's default example prices
            (named as such on the page); False: core-hours only.
        project: A show size to project the measured savings to (a labelled projection).

    Raises:
        FarmplugError: the run folder has no graph, a timing record or frame is missing or corrupt,
            a prices or capacity file is bad (names the file and field), a measured cost is zero.
    """
    from farmplug.report.html import write_report

    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    prices, capacity = report_inputs(prices, prices_file, capacity, capacity_file, default_prices=default_prices)
    built = collect([run_dir], out_dir, prices=prices, capacity=capacity, project=project, reuse_quality=False)
    work = built.works[0]
    entry = work.entry
    hosts = entry.hosts
    report = Report(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        farmplug_version=__version__,
        shot=entry.shot,
        plan=entry.plan,
        savings=entry.savings,
        quality=entry.quality,
        costs=work.costs,
        machine=MachineInfo(
            host=hosts[0] if len(hosts) == 1 else ", ".join(hosts), cores=work.cores,
            cpu=_cpu_model(), platform=f"{platform.system()} {platform.release()} / Python {platform.python_version()}",
        ),
        inbetween=work.inbetween,
        notes=entry.notes + built.notes,
        figures=entry.figures,
        assumptions=built.assumptions,
        projection=built.projection,
    )
    _json, html = write_report(report, out_dir, out_dir, timelines=built.timelines)
    write_csv(out_dir, built)
    return report, html


__all__ = [
    "CALIBRATION_PREFIX", "CSV_COLUMNS", "DETAIL_SHOTS", "Collected", "ShowSize", "build_report", "collect",
    "compute_savings", "figures_csv", "find_calibration", "load_records", "measure_check_frames", "report_inputs", "run_notes",
    "sequence_from_name", "stage_costs", "write_csv",
]
