"""Build the savings report of a run folder from what its tasks left behind.

Inputs are only the run's ``graph.json``, the timing record of every task and the frames, so the
same code reports a local run and a finished farm job. Cost is CPU core-seconds (process CPU
time, all threads): the plan's cost is measured on every task it ran; the full render's cost is
measured on the check frames rendered at full quality and extrapolated to the whole shot,
counting its per-task overhead (process start, scene load) once per chunk as a farm would pay it.
"""

from __future__ import annotations

import logging
import math
import platform
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from farmplug import __version__
from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import format_frames
from farmplug.graph import JobGraph, load_graph, run_layout
from farmplug.imageio import read_frame
from farmplug.models import ConfidenceRecord, FrameConfidence, Plan, Shot, load_plan
from farmplug.render.base import frame_path
from farmplug.schema import load_model
from farmplug.timing import TimingRecord, read_timing

log = logging.getLogger(__name__)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CALIBRATION_PREFIX = "calibration:"


def load_records(graph: JobGraph) -> dict[str, TimingRecord]:
    """Every task's timing record, plus (keyed ``calibration:...``) the records of a calibration
    run in the same folder, whose cost is part of the plan's.

    Raises:
        FarmplugError: a record is missing or corrupt (names the task and file).
    """
    records = {}
    # Calibration writes its evidence (and its renders' timing records) beside the plan it chose.
    calibration = Path(graph.plan_file).parent / "calibration" / "work"
    if calibration.is_dir():
        for path in sorted(calibration.rglob("*.timing.json")):
            try:
                record = read_timing(path)
            except ConfigError as err:
                raise FarmplugError(f"corrupt calibration timing record: {err}") from None
            records[f"{CALIBRATION_PREFIX}{path.relative_to(calibration)}"] = record.model_copy(
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
    from farmplug.report.model import Savings

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
    if full <= 0 or plan_cost <= 0:
        raise FarmplugError(f"cannot compute savings: measured cost is zero (full {full:.3f}, plan {plan_cost:.3f} core-s)")
    return Savings(
        frames=n,
        core_seconds_full=full,
        core_seconds_plan=plan_cost,
        ratio=full / plan_cost,
        core_seconds_checks=checks,
        core_seconds_calibration=sum(r.cpu_s for r in calibration),
        ratio_including_checks=full / (plan_cost + checks),
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


def stage_costs(graph: JobGraph, records: dict[str, TimingRecord]):
    from farmplug.report.model import StageCost

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
    from farmplug.report.model import FrameQuality, QualityFigures, QualitySummary

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
        names = {k: f"thumbs/{shot.name}.{frame:04d}.{k}.png" for k in ("reference", "before_post", "result", "flip")}
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
    return QualitySummary(
        flip_mean=flip_mean, flip_p95=mean("flip_p95"), psnr_mean=mean("psnr"), ssim_mean=mean("ssim"),
        flip_target=target, meets_target=flip_mean <= target, frames=rows,
    )


def inbetween_summary(graph: JobGraph, records: dict[str, TimingRecord], shot: Shot, plan: Plan, verdicts):
    """What the frame step saved, and which frames went back to render."""
    from farmplug.report.model import InbetweenSummary

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


def _calibration_note(path: Path) -> str:
    """One line on how the plan was chosen, from the calibration evidence saved with it."""
    from farmplug.calibrate import CalibrationResult

    try:
        result = load_model(CalibrationResult, path)
    except ConfigError as err:
        return f"A calibration record is present but unreadable: {err}."
    tried = ", ".join(c.name for c in result.candidates)
    return (f"Plan chosen by calibration on check frames {result.check_frames}: {result.recommendation} "
            f"({result.reason}). Candidates tried: {tried}. Evidence: {path.name}.")


def build_report(run_dir: str | Path, out_dir: str | Path | None = None):
    """Build report.json and report.html for a finished run; returns (Report, html path).

    Raises:
        FarmplugError: the run folder has no graph, a timing record or frame is missing or corrupt.
    """
    from farmplug.report.html import write_report
    from farmplug.report.model import MachineInfo, PlanInfo, Report, ShotInfo

    run_dir = Path(run_dir)
    out_dir = Path(out_dir or run_dir)
    graph = load_graph(run_dir)
    plan, shot, _ = load_plan(graph.plan_file)
    records = load_records(graph)
    savings = compute_savings(graph, records, shot, plan)
    verdicts = load_confidence(graph)
    quality = measure_check_frames(graph, shot, plan, out_dir, verdicts)
    inbetween = inbetween_summary(graph, records, shot, plan, verdicts)
    hosts = sorted({r.host for r in records.values()})
    notes = []
    if len(hosts) > 1:
        notes.append(f"Tasks ran on {len(hosts)} hosts ({', '.join(hosts)}); core-seconds from different CPUs are summed as they are.")
    warnings = [r for r in records.values() if r.settings.get("device") not in (None, "cpu")]
    if warnings:
        notes.append("Some stages ran on a GPU; their GPU-seconds are not part of the CPU core-second totals.")
    # Calibration saves its evidence beside the plan it chose (its cost is found there too).
    calibration = Path(graph.plan_file).parent / "calibration.json"
    if calibration.is_file():
        notes.append(_calibration_note(calibration))
    if inbetween is not None and inbetween.fallback:
        notes.append(
            f"{len(inbetween.fallback)} interpolated frame(s) scored under the confidence threshold and were "
            f"rendered for real instead: {format_frames(inbetween.fallback, sep=', ')}."
        )
    report = Report(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        farmplug_version=__version__,
        shot=ShotInfo(
            name=shot.name, scene=shot.scene, frame_start=shot.frames.start, frame_end=shot.frames.end,
            width=shot.resolution.width, height=shot.resolution.height, full_samples=shot.samples,
        ),
        plan=PlanInfo(
            samples=plan.samples_for(shot), samples_factor=plan.samples_factor, resolution_scale=plan.resolution_scale,
            frame_step=plan.frame_step, stages=[f"{s.kind}:{s.backend}" for s in plan.stages],
            check_frames=sorted(plan.check_frames),
        ),
        savings=savings,
        quality=quality,
        costs=stage_costs(graph, records),
        machine=MachineInfo(
            host=hosts[0] if len(hosts) == 1 else ", ".join(hosts), cores=max(r.cores for r in records.values()),
            cpu=_cpu_model(), platform=f"{platform.system()} {platform.release()} / Python {platform.python_version()}",
        ),
        inbetween=inbetween,
        notes=notes,
    )
    _json, html = write_report(report, out_dir, out_dir)
    return report, html


__all__ = ["build_report", "compute_savings", "load_records", "measure_check_frames", "stage_costs"]
