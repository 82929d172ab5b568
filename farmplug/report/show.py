"""The report over many runs: per shot, rolled up per sequence, and for the whole show.

Each run folder (one shot: a local run or a finished farm job, the same files) is read on its own
and reduced to a :class:`~farmplug.report.model.ShotEntry` (its headline numbers and quality) plus
the compact task list the farm simulation needs; its timing records are then dropped, so a show of
hundreds of shots is read in one streaming pass and the rollup adds up per-shot numbers only.

What is measured and what is extrapolated:

* **Plan**: every task's CPU core-seconds and wall seconds are measured (timing records).
* **Full render**: measured on the full-quality check frames, extrapolated to every frame of the
  shot with the per-task start-up paid once per chunk (:func:`farmplug.report.build.compute_savings`).
* **Money** (only with prices): :func:`farmplug.cost.cost_of` on the plan's records; the full
  render is billed the same way as one CPU render of its extrapolated core-seconds and wall time.
* **Farm time** (only with capacity): :func:`farmplug.schedule.simulate` of the plan's tasks
  with their measured wall seconds, and of the full render in chunks of the plan's chunk size;
  a sequence's (and the show's) makespan simulates all its shots on the farm together.
* **Quality**: FLIP/PSNR/SSIM of the check frames against their full-quality references. It is
  measured once per run; a run whose ``report.json`` (written by ``farmplug report RUN`` or a
  local submit) is newer than its check frames has it reused, which keeps a large show fast.

Sequences: a shot belongs to the sequence named by its shot name up to the first ``_``
(``sq010_sh020`` -> ``sq010``; a name without ``_`` is its own sequence), unless the caller
passes ``sequence_of``.

The page: headline, cost bars and farm timelines for the show (idle farm nodes not drawn, and
back-to-back chunks merged so thousands of tasks draw as a few hundred bars), a table per sequence
and per shot (every shot), then thumbnails (small JPEGs) and per-shot timelines inside a
``<details>`` for the first ``detail_shots`` shots only (the first one open), so the single HTML
file stays a few MB for any show size.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from farmplug import __version__
from farmplug.cost import Prices, cost_of, load_prices, round_money
from farmplug.errors import FarmplugError
from farmplug.graph import JobGraph, load_graph, run_layout
from farmplug.models import Plan, Shot, load_plan
from farmplug.render.base import frame_path
from farmplug.report.build import (
    _cpu_model,
    compute_savings,
    inbetween_summary,
    load_confidence,
    load_records,
    measure_check_frames,
    stage_costs,
)
from farmplug.report.model import (
    Assumptions,
    CapacityInfo,
    Figures,
    PlanInfo,
    PricesInfo,
    QualitySummary,
    Report,
    ShotEntry,
    ShotInfo,
    ShowReport,
    StageCost,
)
from farmplug.schedule import (
    Capacity,
    Schedule,
    SimTask,
    full_render_tasks,
    load_capacity,
    namespaced,
    reference_rates,
    simulate,
    timeline_svg,
)
from farmplug.schema import atomic_write_text
from farmplug.timing import FrameTiming, TimingRecord

log = logging.getLogger(__name__)

#: Shots shown with thumbnails and their own timelines (the first ones, in the order given).
DETAIL_SHOTS = 10
SECONDS_PER_DAY = 86400.0
SEQUENCE_RULE = "sequence = shot name up to the first '_' (a name without '_' is its own sequence)"

CSV_COLUMNS = (
    "level", "sequence", "name", "shots", "frames",
    "full_core_hours", "plan_core_hours", "check_core_hours", "saved_core_hours", "savings_ratio",
    "currency", "full_cost", "plan_cost", "check_cost", "saved_cost", "cost_ratio",
    "full_makespan_hours", "plan_makespan_hours", "saved_days",
    "check_frames", "flip_mean", "flip_p95", "psnr_db", "fallback_frames", "shots_failing_target",
)


def sequence_from_name(shot_name: str) -> str:
    """The default sequence of a shot: its name up to the first ``_`` (``sq010_sh020`` -> ``sq010``)."""
    head, sep, _ = shot_name.partition("_")
    return head if sep and head else shot_name


@dataclass
class _Work:
    """What the rollup keeps of one shot besides its entry: the tasks to simulate on the farm."""

    entry: ShotEntry
    plan_tasks: list[SimTask] = field(default_factory=list)
    plan_durations: dict[str, float] = field(default_factory=dict)
    full_tasks: list[SimTask] = field(default_factory=list)
    full_durations: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ShowExtras:
    """What the page draws but ``report.json`` does not keep: inline SVG timelines.

    Attributes:
        show_timelines: ``(full, plan)`` SVGs for the whole show, or None without capacity.
        shot_timelines: ``(full, plan)`` SVGs per shot name, for the detail shots.
    """

    show_timelines: tuple[str, str] | None
    shot_timelines: dict[str, tuple[str, str]]


# ----------------------------------------------------------------------------- one shot


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
    capacity: Capacity | None,
) -> tuple[_Work, list[StageCost]]:
    """Read one run folder into its entry, the tasks to simulate and its stage costs.

    Raises:
        FarmplugError: the run has no graph, a timing or confidence record is missing or corrupt,
            a cost is zero, or the prices lack a price the work needs.
    """
    graph = load_graph(run_dir)
    plan, shot, _ = load_plan(graph.plan_file)
    records = load_records(graph)
    savings = compute_savings(graph, records, shot, plan)
    verdicts = load_confidence(graph)
    cached = _cached_quality(run_dir, shot, plan)
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
    figures = _figures(
        "shot", shot.name, sequence=sequence(shot.name), shots=1, frames=savings.frames,
        full_s=savings.core_seconds_full, plan_s=savings.core_seconds_plan, check_s=savings.core_seconds_checks,
        currency=prices.currency if prices else None, full_cost=full_cost, plan_cost=plan_cost, check_cost=check_cost,
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
    )
    work = _Work(entry, plan_tasks, plan_durations, full_tasks, full_durations)
    return work, stage_costs(graph, records)


# ----------------------------------------------------------------------------- rollup


def _figures(
    level: str, name: str, *, sequence: str | None, shots: int, frames: int, full_s: float, plan_s: float,
    check_s: float, currency: str | None, full_cost: Decimal | None, plan_cost: Decimal | None,
    check_cost: Decimal | None, full_makespan: float | None, plan_makespan: float | None,
    quality: list[tuple[int, float, float, float]], fallback: int, failing: int,
) -> Figures:
    """One row; ``quality`` is (check frames, FLIP mean, FLIP p95, PSNR) per shot, weighted by frames.

    Raises:
        FarmplugError: the plan costs nothing (a ratio would be infinite).
    """
    if plan_s <= 0:
        raise FarmplugError(f"{level} {name}: the plan's measured cost is zero; cannot compute a saving")
    checked = sum(n for n, *_ in quality)
    if checked <= 0:
        raise FarmplugError(f"{level} {name}: no check frames were scored, so quality cannot be reported")

    def weighted(index: int) -> float:
        return sum(q[0] * q[index] for q in quality) / checked

    money = full_cost is not None and plan_cost is not None
    return Figures(
        level=level, name=name, sequence=sequence, shots=shots, frames=frames,
        full_core_hours=full_s / 3600, plan_core_hours=plan_s / 3600, check_core_hours=check_s / 3600,
        saved_core_hours=(full_s - plan_s) / 3600, ratio=full_s / plan_s,
        currency=currency if money else None,
        full_cost=full_cost, plan_cost=plan_cost, check_cost=check_cost,
        saved_cost=full_cost - plan_cost if money else None,
        cost_ratio=float(full_cost / plan_cost) if money and plan_cost > 0 else None,
        full_makespan_s=full_makespan, plan_makespan_s=plan_makespan,
        saved_days=(full_makespan - plan_makespan) / SECONDS_PER_DAY
        if full_makespan is not None and plan_makespan is not None else None,
        check_frames=checked, flip_mean=weighted(1), flip_p95=weighted(2), psnr_mean=weighted(3),
        fallback_frames=fallback, shots_failing_target=failing,
    )


def _sum_money(values: list[Decimal | None]) -> Decimal | None:
    return None if any(v is None for v in values) else sum(values, Decimal(0))


def _rollup(level: str, name: str, works: list[_Work], capacity: Capacity | None) -> tuple[Figures, tuple[Schedule, Schedule] | None]:
    rows = [w.entry.figures for w in works]
    schedules = None
    full_makespan = plan_makespan = None
    if capacity is not None:
        schedules = _farm_schedules(works, capacity)
        full_makespan, plan_makespan = schedules[0].makespan, schedules[1].makespan
    figures = _figures(
        level, name, sequence=name if level == "sequence" else None, shots=len(rows),
        frames=sum(r.frames for r in rows),
        full_s=sum(r.full_core_hours for r in rows) * 3600, plan_s=sum(r.plan_core_hours for r in rows) * 3600,
        check_s=sum(r.check_core_hours for r in rows) * 3600, currency=rows[0].currency,
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


# ----------------------------------------------------------------------------- timelines


def compact_schedule(schedule: Schedule, *, used_rows_only: bool = False, gap_fraction: float = 1 / 1500) -> Schedule:
    """The schedule with back-to-back tasks of one stage on one lane merged into one bar.

    Gaps under ``gap_fraction`` of the makespan (below a pixel when drawn) are closed, so a
    show's thousands of chunks draw as a few hundred bars and the page stays small; the
    makespan and every resource's busy span are unchanged.

    Args:
        schedule: A simulated schedule.
        used_rows_only: Keep only the resources some task ran on (a small shot on a big farm).
        gap_fraction: Largest gap closed, as a fraction of the makespan.
    """
    tolerance = schedule.makespan * gap_fraction
    groups: dict[tuple, list] = defaultdict(list)
    for task in schedule.tasks:
        groups[(task.resource, task.lane, task.cores, task.gpus, task.stage, task.role)].append(task)
    merged = []
    for tasks in groups.values():
        tasks.sort(key=lambda t: t.start)
        current, count = tasks[0], 1
        for task in tasks[1:]:
            if task.start - current.end <= tolerance:
                current, count = replace(current, end=max(current.end, task.end)), count + 1
                continue
            merged.append(replace(current, id=f"{count} {current.stage} tasks") if count > 1 else current)
            current, count = task, 1
        merged.append(replace(current, id=f"{count} {current.stage} tasks") if count > 1 else current)
    merged.sort(key=lambda t: (t.start, t.resource))
    resources = schedule.resources
    if used_rows_only:
        used = {t.resource for t in merged}
        resources = tuple(r for r in resources if r in used)
    return replace(schedule, tasks=tuple(merged), resources=resources)


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


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{round_money(value):.2f}"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.2f}"
    return str(value)


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
        ))
    return out.getvalue()


def _resolve(value, path: Path | None, loader, what: str):
    if value is not None and path is not None:
        raise FarmplugError(f"give the {what} or a {what} file, not both")
    return loader(path) if path is not None else value


def build_show_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    prices: Prices | None = None,
    prices_file: str | Path | None = None,
    capacity: Capacity | None = None,
    capacity_file: str | Path | None = None,
    sequence_of: Callable[[str], str] | None = None,
    detail_shots: int = DETAIL_SHOTS,
) -> tuple[ShowReport, Path, Path, Path]:
    """Build ``report.html``, ``report.json`` and ``report.csv`` over the runs (one shot each).

    Args:
        run_dirs: Finished run folders (local runs or farm jobs), one shot each, in display order.
        out_dir: Where to write the report files and thumbnails (created).
        prices: The farm's prices; with none, every figure is in core-hours only.
        prices_file: Or a prices YAML to read (:func:`farmplug.cost.load_prices`).
        capacity: The farm's capacity; with none, no makespans and no timelines.
        capacity_file: Or a capacity YAML to read (:func:`farmplug.schedule.load_capacity`).
        sequence_of: Shot name -> sequence name (default :func:`sequence_from_name`).
        detail_shots: Shots (the first ones) shown with thumbnails and their own timelines.

    Returns:
        ``(report, html_path, json_path, csv_path)``.

    Raises:
        FarmplugError: no run folders; two runs of one shot; a run's graph, timing or
            confidence record is missing or corrupt (names the file); a prices file is bad or
            a price the work needs is missing or the prices make a cost zero (names the file and
            field); a capacity file is bad, e.g. ``cpu_nodes: 0``, or has no GPU for GPU tasks
            (names the file and field); a measured cost is zero.
    """
    from farmplug.report.html import write_show_report

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise FarmplugError("no run folders to report on")
    out_dir = Path(out_dir)
    prices = _resolve(prices, Path(prices_file) if prices_file else None, load_prices, "prices")
    capacity = _resolve(capacity, Path(capacity_file) if capacity_file else None, load_capacity, "capacity")
    if prices is not None:
        prices.check()
    sequence = sequence_of or sequence_from_name
    out_dir.mkdir(parents=True, exist_ok=True)

    works: list[_Work] = []
    seen: dict[str, Path] = {}
    stage_totals: dict[tuple[str, str, str], StageCost] = {}
    shot_timelines: dict[str, tuple[str, str]] = {}
    machines: dict[str, None] = {}
    for index, run_dir in enumerate(run_dirs):
        try:
            work, costs = _summarize_run(run_dir, out_dir, sequence=sequence, prices=prices, capacity=capacity)
        except FarmplugError as err:
            if str(run_dir) in str(err):
                raise
            raise type(err)(f"run {run_dir}: {err}") from None
        name = work.entry.shot.name
        if name in seen:
            raise FarmplugError(f"runs {seen[name]} and {run_dir} are both shot {name}; report each shot once")
        seen[name] = run_dir
        _add_stage_costs(stage_totals, costs)
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
    show_timelines = _timelines(*show_schedules, label, used_rows_only=True) if show_schedules else None

    report = ShowReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        farmplug_version=__version__,
        show=show,
        sequences=sequences,
        shots=[w.entry for w in works],
        costs=sorted(stage_totals.values(), key=lambda c: (c.role != "plan", c.stage)),
        assumptions=_assumptions(prices, capacity, list(machines), sequence_of is None, min(detail_shots, len(works))),
        notes=_notes(works, prices, capacity),
    )
    extras = ShowExtras(show_timelines=show_timelines, shot_timelines=shot_timelines)
    json_path, html_path = write_show_report(report, extras, out_dir)
    csv_path = out_dir / "report.csv"
    atomic_write_text(csv_path, figures_csv([*(w.entry.figures for w in works), *sequences, show]))
    return report, html_path, json_path, csv_path


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
        extrapolated.append("Full-render money: its extrapolated core-hours (and render node-hours) billed at the same prices as the plan.")
    if capacity is not None:
        extrapolated.append(
            "Farm time: a simulation of the tasks on the capacity (critical-path list scheduling), with measured "
            "wall seconds for the plan and the extrapolated per-chunk time for the full render; farm nodes are "
            "assumed as fast as the machine the timings were measured on. A sequence's and the show's time "
            "schedule all their shots on the farm together."
        )
    return Assumptions(
        prices=PricesInfo(source=prices.source, currency=prices.currency, cpu_core_hour=prices.cpu_core_hour,
                          ghz_hour=prices.ghz_hour, cpu_ghz=prices.cpu_ghz, gpu_hour=prices.gpu_hour,
                          licence_node_hour=prices.licence_node_hour) if prices is not None else None,
        capacity=CapacityInfo(source=capacity.source, cpu_nodes=capacity.cpu_nodes,
                              cores_per_node=capacity.cores_per_node, gpus=capacity.gpus) if capacity is not None else None,
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
    if capacity is None:
        notes.append("No farm capacity was given: farm time (makespan, days saved) is not simulated; give a capacity file.")
    reused = sum(1 for w in works if w.entry.quality_from != "measured")
    if reused:
        notes.append(f"Quality of {reused} shot(s) was read from the run's own report.json (newer than its check frames).")
    failing = [w.entry.shot.name for w in works if w.entry.quality.meets_target is False]
    if failing:
        notes.append(f"{len(failing)} shot(s) miss their quality target: {', '.join(failing[:20])}{' …' if len(failing) > 20 else ''}.")
    return notes


__all__ = ["CSV_COLUMNS", "DETAIL_SHOTS", "ShowExtras", "build_show_report", "compact_schedule", "figures_csv",
           "sequence_from_name"]

