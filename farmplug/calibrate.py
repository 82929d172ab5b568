"""Calibration: find the cheapest plan that meets the quality target, by measuring it on the shot.

A few check frames spread over the shot are rendered at the shot's full settings (the reference,
timed). Each candidate plan (a samples factor, with denoise, optionally a frame step with the
inbetween stage) then renders those frames, or the keyframes around them, at its own settings,
runs its stages exactly as a farm task would, and is measured against the reference: quality
(HDR-FLIP mean and p95, PSNR, SSIM) and cost (CPU core-seconds per frame and per task).

Each candidate's whole-shot cost is extrapolated over the tasks its plan compiles to
(:func:`farmplug.graph.compile_plan`): per-frame cost x frames plus every task's fixed cost
(process start, scene and model load), the same accounting the savings report uses on a real
run. For a frame step, the frames the inbetween stage could not vouch for are rendered for real;
their expected cost (the measured fallback rate x the in-between frames x the keyframe cost, and
the fallback tasks' start-up) is part of the estimate.

The cheapest candidate meeting the target becomes ``plan.yaml``; when none does, or none is
cheaper than the full render, the recommendation is the full render, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import compile_plan, run_layout
from farmplug.models import (
    DenoiseConfig,
    InbetweenConfig,
    Plan,
    QualityTarget,
    Shot,
    default_check_frames,
    load_shot,
)
from farmplug.schema import StrictModel, describe_validation_error, save_model
from farmplug.timing import TimingRecord, write_timing

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
PLAN_FILE = "plan.yaml"
FULL_RENDER = "full render"
#: Samples factors tried by default (each with OIDN denoise; and with frame step 2 + inbetween).
DEFAULT_FACTORS: tuple[float, ...] = (1 / 64, 1 / 32, 1 / 16, 1 / 8)
#: A frame step is only worth trying on shots at least this long (fewer frames leave too few
#: in-between frames to save on and to check).
MIN_FRAMES_FOR_STEP = 5

#: ``progress(done, total, label)``: called before each step (reference, then each candidate)
#: and once at the end with ``done == total``.
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Candidate:
    """One plan to try: reduced samples, denoise or not, and an optional frame step (inbetween).

    Raises:
        ConfigError: on construction, for a samples factor outside (0, 1] or a frame step below 1.
    """

    samples_factor: float
    frame_step: int = 1
    denoise: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.samples_factor <= 1:
            raise ConfigError(f"candidate samples_factor must be in (0, 1], got {self.samples_factor}")
        if self.frame_step < 1:
            raise ConfigError(f"candidate frame_step must be 1 or more, got {self.frame_step}")

    @property
    def name(self) -> str:
        """A file-safe label: ``x1-32_denoise``, ``x1-16_step2_denoise_inbetween``."""
        fraction = Fraction(self.samples_factor).limit_denominator(4096)
        exact = math.isclose(float(fraction), self.samples_factor, rel_tol=1e-9)
        parts = [f"x{fraction.numerator}-{fraction.denominator}" if exact else f"x{self.samples_factor:g}"]
        if self.frame_step > 1:
            parts.append(f"step{self.frame_step}")
        if self.denoise:
            parts.append("denoise")
        if self.frame_step > 1:
            parts.append("inbetween")
        return "_".join(parts)

    def stages(self) -> list[DenoiseConfig | InbetweenConfig]:
        stages: list[DenoiseConfig | InbetweenConfig] = [DenoiseConfig()] if self.denoise else []
        if self.frame_step > 1:
            stages.append(InbetweenConfig())
        return stages

    def plan(
        self,
        *,
        shot: str,
        target: QualityTarget,
        check_frames: Sequence[int] = (),
        chunk_size: int = 8,
        threads: int | None = None,
    ) -> Plan:
        """This candidate as a plan of the shot file ``shot``.

        Raises:
            ConfigError: the settings do not make a valid plan.
        """
        try:
            return Plan(
                shot=shot, samples_factor=self.samples_factor, frame_step=self.frame_step, stages=self.stages(),
                quality_target=target, check_frames=list(check_frames), chunk_size=chunk_size, threads=threads,
            )
        except ValidationError as err:
            raise ConfigError(f"candidate {self.name}: {describe_validation_error(err)}") from None


def default_candidates(shot: Shot) -> list[Candidate]:
    """Samples factors 1/64..1/8 with denoise, and the same with frame step 2 when the shot has 5+ frames."""
    candidates = [Candidate(f) for f in DEFAULT_FACTORS]
    if len(shot.frames.frames) >= MIN_FRAMES_FOR_STEP:
        candidates += [Candidate(f, frame_step=2) for f in DEFAULT_FACTORS]
    return candidates


# --- evidence saved in calibration.json -------------------------------------------------------------


class CheckFrame(StrictModel):
    """One check frame of a candidate, as it would be delivered, against the full-quality reference."""

    frame: int
    source: Literal["rendered", "interpolated", "fallback"]
    confidence: float | None = Field(default=None, description="inbetween score, for in-between frames")
    flip_mean: float
    flip_p95: float
    psnr: float
    ssim: float
    thumbnail: str = Field(default="", description="PNG of the delivered frame, relative to the calibration folder")
    error_map: str = Field(default="", description="HDR-FLIP heat map PNG, relative to the calibration folder")


class MeasuredCost(StrictModel):
    """What a candidate's calibration tasks cost, in CPU core-seconds (GPU-seconds where a GPU ran)."""

    render_core_s_per_frame: float = Field(ge=0)
    render_overhead_core_s: float = Field(ge=0, description="per render task: process start, scene load")
    denoise_core_s_per_frame: float = Field(default=0.0, ge=0)
    denoise_overhead_core_s: float = Field(default=0.0, ge=0, description="per denoise task: model/device load")
    inbetween_core_s_per_frame: float = Field(default=0.0, ge=0)
    inbetween_overhead_core_s: float = Field(default=0.0, ge=0)
    fallback_rate: float = Field(default=0.0, ge=0, le=1, description="share of in-between frames that failed confidence")
    inbetween_frames_measured: int = Field(default=0, ge=0)
    gpu_s_per_frame: float = Field(default=0.0, ge=0, description="GPU-seconds per processed frame, all stages")


class CostEstimate(StrictModel):
    """A whole-shot cost: ``per_frame_core_s x frames + fixed_core_s``."""

    frames: int
    tasks: int
    per_frame_core_s: float = Field(description="frame work per delivered frame (keyframes, inbetween, expected fallbacks)")
    fixed_core_s: float = Field(description="per-task start-up costs of every task")
    total_core_s: float


class CandidateResult(StrictModel):
    name: str
    samples_factor: float
    samples: int
    frame_step: int
    stages: list[str]
    passes: list[str]
    frames: list[CheckFrame]
    flip_mean: float
    flip_p95: float = Field(description="mean over the check frames of each frame's 95th percentile")
    psnr: float
    ssim: float
    measured: MeasuredCost
    cost: CostEstimate
    predicted_ratio: float = Field(description="full render's extrapolated cost / this candidate's")
    meets_target: bool = False
    chosen: bool = False
    reason: str = ""


class ReferenceResult(StrictModel):
    samples: int
    frames: list[int]
    core_s_per_frame: float
    overhead_core_s: float = Field(description="per render task: process start, scene load (counted, not extrapolated away)")
    cost: CostEstimate


class CalibrationResult(StrictModel):
    schema_version: Literal[1] = 1
    shot: str = Field(description="the shot file, absolute")
    shot_name: str
    frames: int
    check_frames: list[int]
    chunk_size: int
    flip_mean_max: float
    flip_p95_max: float | None = None
    reference: ReferenceResult
    candidates: list[CandidateResult]
    recommendation: str = Field(description=f"the chosen candidate's name, or {FULL_RENDER!r}")
    reason: str
    plan_file: str | None = Field(default=None, description="the chosen plan, relative to the calibration folder")
    wall_s: float = 0.0
    host: str = Field(default_factory=platform.node)
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1)

    def candidate(self, name: str) -> CandidateResult:
        for result in self.candidates:
            if result.name == name:
                return result
        raise KeyError(name)


# --- pure parts: cost extrapolation and the choice ------------------------------------------------


def reference_cost(core_s_per_frame: float, overhead_core_s: float, frames: int, chunk_size: int) -> CostEstimate:
    """The full render's cost: every frame at full quality, one start-up per chunk (as the report counts it)."""
    tasks = math.ceil(frames / chunk_size)
    fixed = overhead_core_s * tasks
    return CostEstimate(frames=frames, tasks=tasks, per_frame_core_s=core_s_per_frame, fixed_core_s=fixed,
                        total_core_s=core_s_per_frame * frames + fixed)


def estimate_cost(measured: MeasuredCost, plan: Plan, shot: Shot) -> CostEstimate:
    """Extrapolate measured costs over every task the plan compiles to (check frames excluded).

    Render and denoise tasks cost their frames plus one start-up each; inbetween tasks their
    frames; a fallback task over ``m`` in-between frames is expected to re-render ``rate x m`` of
    them (render + denoise each) and to pay the render and denoise start-up when at least one
    fails, which happens with probability ``1 - (1 - rate)^m``.
    """
    graph = compile_plan(plan.model_copy(update={"check_frames": []}), shot,
                         plan_file=Path("plan.yaml"), shot_file=Path("shot.yaml"), run_dir=Path("run"))
    rate = measured.fallback_rate
    key_frame = measured.render_core_s_per_frame + measured.denoise_core_s_per_frame
    key_start = measured.render_overhead_core_s + (measured.denoise_overhead_core_s if plan.stage("denoise") else 0.0)
    frame_work = fixed = 0.0
    for task in graph.tasks:
        m = len(task.frames)
        if task.kind == "render":
            frame_work += m * measured.render_core_s_per_frame
            fixed += measured.render_overhead_core_s
        elif task.stage == "denoise":
            frame_work += m * measured.denoise_core_s_per_frame
            fixed += measured.denoise_overhead_core_s
        elif task.stage == "inbetween":
            frame_work += m * measured.inbetween_core_s_per_frame
            fixed += measured.inbetween_overhead_core_s
        elif task.kind == "fallback":
            frame_work += rate * m * key_frame
            fixed += (1 - (1 - rate) ** m) * key_start
        else:
            raise FarmplugError(f"calibration cannot cost task {task.id} ({task.kind}/{task.stage})")
    frames = len(shot.frames.frames)
    return CostEstimate(frames=frames, tasks=len(graph.tasks), per_frame_core_s=frame_work / frames,
                        fixed_core_s=fixed, total_core_s=frame_work + fixed)


@dataclass(frozen=True)
class Choice:
    """The outcome of :func:`choose`: the candidates with their verdicts, and the recommendation."""

    candidates: list[CandidateResult]
    recommendation: str
    reason: str

    @property
    def chosen(self) -> CandidateResult | None:
        return next((c for c in self.candidates if c.chosen), None)


def _choice_key(result: CandidateResult) -> tuple:
    # Cheapest first; on a tie the better quality, then the simpler plan (no frame step, more samples).
    return (result.cost.total_core_s, result.flip_mean, result.frame_step, -result.samples_factor, result.name)


def choose(
    results: Sequence[CandidateResult],
    *,
    full_core_s: float,
    flip_mean_max: float,
    flip_p95_max: float | None = None,
) -> Choice:
    """Pick the cheapest candidate whose mean HDR-FLIP (and p95, when bounded) meets the target.

    A candidate that meets the target but would cost as much as the full render or more is not
    a saving and is not chosen. When nothing qualifies the recommendation is :data:`FULL_RENDER`.

    Raises:
        ConfigError: no candidates.
    """
    if not results:
        raise ConfigError("no calibration candidates to choose from")
    judged: list[CandidateResult] = []
    for r in results:
        problems = []
        if r.flip_mean > flip_mean_max:
            problems.append(f"FLIP mean {r.flip_mean:.4f} > {flip_mean_max:g}")
        if flip_p95_max is not None and r.flip_p95 > flip_p95_max:
            problems.append(f"FLIP p95 {r.flip_p95:.4f} > {flip_p95_max:g}")
        meets = not problems
        if meets and r.cost.total_core_s >= full_core_s:
            reason = (f"meets the target but would cost {r.cost.total_core_s:.1f} core-s, "
                      f"not less than the full render's {full_core_s:.1f}")
        elif meets:
            reason = f"meets the target (FLIP mean {r.flip_mean:.4f} <= {flip_mean_max:g})"
        else:
            reason = "misses the target: " + "; ".join(problems)
        judged.append(r.model_copy(update={"meets_target": meets, "chosen": False, "reason": reason}))

    eligible = sorted((r for r in judged if r.meets_target and r.cost.total_core_s < full_core_s), key=_choice_key)
    if not eligible:
        meeting = [r for r in judged if r.meets_target]
        if meeting:
            reason = (f"{len(meeting)} candidate(s) meet the target but none costs less than the full render "
                      f"({full_core_s:.1f} core-s); render the shot at full quality")
        else:
            best = min(judged, key=lambda r: r.flip_mean)
            bound = f"FLIP mean <= {flip_mean_max:g}" + (f" and p95 <= {flip_p95_max:g}" if flip_p95_max is not None else "")
            reason = (f"no candidate meets {bound}: the best, {best.name}, has FLIP mean {best.flip_mean:.4f} "
                      f"(p95 {best.flip_p95:.4f}); render the shot at full quality or loosen the target")
        return Choice(candidates=judged, recommendation=FULL_RENDER, reason=reason)

    winner = eligible[0]
    final = []
    for r in judged:
        if r.name == winner.name:
            r = r.model_copy(update={"chosen": True, "reason": r.reason + "; cheapest that does: chosen"})
        elif r.meets_target and r.cost.total_core_s < full_core_s:
            r = r.model_copy(update={"reason": r.reason + f"; costs {r.cost.total_core_s:.1f} core-s, "
                                               f"the chosen {winner.name} {winner.cost.total_core_s:.1f}"})
        final.append(r)
    reason = (f"{winner.name} is the cheapest candidate meeting FLIP mean <= {flip_mean_max:g}"
              + (f" and p95 <= {flip_p95_max:g}" if flip_p95_max is not None else "")
              + f": FLIP mean {winner.flip_mean:.4f}, predicted {winner.cost.total_core_s:.1f} core-s "
              f"against {full_core_s:.1f} for the full render ({full_core_s / winner.cost.total_core_s:.1f}x cheaper)")
    return Choice(candidates=final, recommendation=winner.name, reason=reason)


def summary_table(result: CalibrationResult) -> str:
    """The candidates as a Markdown table (for the CLI, logs and docs)."""
    lines = [
        "| candidate | spp | FLIP mean | FLIP p95 | PSNR dB | SSIM | fallback | core-s/frame | shot core-s | ratio | meets | chosen |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :-: | :-: |",
    ]
    ref = result.reference
    lines.append(f"| full render (reference) | {ref.samples} | 0 | 0 | - | 1 | - | {ref.core_s_per_frame:.2f} "
                 f"| {ref.cost.total_core_s:.0f} | 1.0 | - | - |")
    for c in result.candidates:
        fallback = f"{c.measured.fallback_rate:.0%}" if c.frame_step > 1 else "-"
        lines.append(
            f"| {c.name} | {c.samples} | {c.flip_mean:.4f} | {c.flip_p95:.4f} | {c.psnr:.1f} | {c.ssim:.3f} | {fallback} "
            f"| {c.cost.per_frame_core_s:.2f} | {c.cost.total_core_s:.0f} | {c.predicted_ratio:.1f} "
            f"| {'yes' if c.meets_target else 'no'} | {'**yes**' if c.chosen else ''} |"
        )
    return "\n".join(lines)


# --- measuring ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _task(name: str) -> Iterator[None]:
    """Name the calibration task in any error raised inside it."""
    try:
        yield
    except FarmplugError as err:
        raise FarmplugError(f"calibration task {name} failed: {err}") from err


def _per_frame(records: Sequence[TimingRecord], attr: str = "cpu_s") -> float:
    frames = [f for r in records for f in r.frames]
    return sum(getattr(f, attr) for f in frames) / len(frames) if frames else 0.0


def _overhead(records: Sequence[TimingRecord]) -> float:
    return sum(r.overhead_cpu_s for r in records) / len(records) if records else 0.0


@dataclass(frozen=True)
class _Context:
    shot: Shot
    scene: Path
    checks: list[int]
    out_dir: Path
    work: Path
    reference_pattern: str
    threads: int | None
    target: QualityTarget
    chunk_size: int
    shot_file: Path | None = None
    run_dir: Path | None = None
    reference_plan: Plan | None = None


def _render(ctx: _Context, name: str, frames: Sequence[int], pattern: str, samples: int, passes: frozenset[str],
            role: str) -> TimingRecord:
    from farmplug.render import BlenderRenderer, RenderRequest

    with _task(name):
        record = BlenderRenderer().render(RenderRequest(
            scene=ctx.scene, frames=tuple(sorted(frames)), output_pattern=pattern, samples=samples,
            passes=passes, threads=ctx.threads, task=name, role=role,
        ))
    write_timing(record, Path(pattern).parent / f"{name}.timing.json")
    return record


def _denoise(ctx: _Context, name: str, config: DenoiseConfig, frames: Sequence[int], source: str, target: str) -> TimingRecord:
    from farmplug.runner import frame_jobs, run_stage

    with _task(name):
        record = run_stage(config, frame_jobs(source, target, sorted(frames)), task=name, role="calibration")
    write_timing(record, Path(target).parent / f"{name}.timing.json")
    return record


def _check_images(ctx: _Context, folder: str, frame: int, image, error) -> tuple[str, str]:
    from farmplug.report.images import error_map_png, tonemap_png

    base = f"calibration/{folder}/{ctx.shot.name.replace('/', '_')}.{frame:04d}"
    tonemap_png(image, ctx.out_dir / f"{base}.png")
    if error is not None:
        error_map_png(error, ctx.out_dir / f"{base}.flip.png")
    return f"{base}.png", (f"{base}.flip.png" if error is not None else "")


def _warm_up(candidates: Sequence[Candidate]) -> None:
    """Load each stage once before anything is timed.

    The first stage opened in a process pays one-off Python imports (pyoidn pulls in torch, about
    a core-second); counted in whichever candidate ran first it would skew the comparison. A run
    on the local farm pays them once too, and a farm task's timing record never counts its
    interpreter start, so warm per-task costs are what the savings report adds up.
    """
    from farmplug.stages import create_stage

    with _task("calibrate-warm-up"):
        if any(c.denoise for c in candidates):
            stage = create_stage(DenoiseConfig())
            try:
                stage.open()
            finally:
                stage.close()
        if any(c.frame_step > 1 for c in candidates):
            import farmplug.inbetween.interpolate  # noqa: F401


def _reference_as_run_tasks(ctx: _Context) -> TimingRecord:
    """Render the reference as the run's own reference tasks, so the run that follows reuses them.

    The tasks are exactly those ``compile_plan`` makes for the run folder (same command, outputs
    and timing records), so the local farm finds them done; their records are merged into one
    for the calibration's per-frame and start-up costs.
    """
    from farmplug.cli import run_argv
    from farmplug.integrations.local import task_is_done
    from farmplug.timing import read_timing

    graph = compile_plan(ctx.reference_plan, ctx.shot, plan_file=ctx.out_dir / PLAN_FILE, shot_file=ctx.shot_file,
                         run_dir=ctx.run_dir)
    records = []
    for task in (t for t in graph.tasks if t.role == "reference"):
        if not task_is_done(task):
            with _task(task.id):
                run_argv(task.argv)
        records.append(read_timing(task.timing))
    return TimingRecord(
        task="calibrate-reference", stage="render", role="reference", backend=records[0].backend,
        started_at=min(r.started_at for r in records), finished_at=max(r.finished_at for r in records),
        overhead_wall_s=sum(r.overhead_wall_s for r in records) / len(records),
        overhead_cpu_s=sum(r.overhead_cpu_s for r in records) / len(records),
        frames=[f for r in records for f in r.frames],
    )


def _measure_reference(ctx: _Context) -> ReferenceResult:
    from farmplug.imageio import read_frame
    from farmplug.render.base import frame_path

    if ctx.run_dir is not None:
        record = _reference_as_run_tasks(ctx)
    else:
        record = _render(ctx, "calibrate-reference", ctx.checks, ctx.reference_pattern, ctx.shot.samples, frozenset(),
                         "reference")
    for frame in ctx.checks:
        _check_images(ctx, "reference", frame, read_frame(frame_path(ctx.reference_pattern, frame)).feature("color"), None)
    per_frame, overhead = _per_frame([record]), record.overhead_cpu_s
    frames = len(ctx.shot.frames.frames)
    log.info("reference: %d check frames at %d spp, %.2f core-s/frame + %.2f core-s start-up per task",
             len(ctx.checks), ctx.shot.samples, per_frame, overhead)
    return ReferenceResult(samples=ctx.shot.samples, frames=list(ctx.checks), core_s_per_frame=per_frame,
                           overhead_core_s=overhead, cost=reference_cost(per_frame, overhead, frames, ctx.chunk_size))


def _run_candidate(ctx: _Context, candidate: Candidate, full: ReferenceResult) -> CandidateResult:
    """Render, post-process and measure one candidate on the check frames."""
    from farmplug.imageio import read_frame
    from farmplug.inbetween.stage import run_inbetween
    from farmplug.quality import measure
    from farmplug.render.base import frame_path

    plan = candidate.plan(shot="shot.yaml", target=ctx.target, chunk_size=ctx.chunk_size, threads=ctx.threads)
    shot, name = ctx.shot, candidate.name
    folder = ctx.work / name
    shutil.rmtree(folder, ignore_errors=True)
    stem = shot.name.replace("/", "_")
    pattern = {k: str(folder / k / f"{stem}.####.exr") for k in
               ("render", "denoise", "final", "rejected", "fallback", "fallback-denoise")}
    samples = plan.samples_for(shot)
    denoise = plan.stage("denoise")
    inbetween = plan.stage("inbetween")

    keys = set(plan.keyframes(shot)) if inbetween else set(shot.frames.frames)
    spans: set[tuple[int, int]] = set()
    for frame in ctx.checks:
        if frame not in keys:
            spans.add((max(k for k in keys if k < frame), min(k for k in keys if k > frame)))
    rendered = sorted({f for f in ctx.checks if f in keys} | {k for span in spans for k in span})
    # Every frame of each span is interpolated: they share the keyframe reads as in a real task,
    # and each one adds a sample to the measured fallback rate.
    targets = sorted({f for a, b in spans for f in range(a + 1, b)})

    renders = [_render(ctx, f"calibrate-{name}-render", rendered, pattern["render"], samples, plan.passes(), "calibration")]
    denoises = []
    keyed = pattern["render"]
    if denoise is not None:
        denoises.append(_denoise(ctx, f"calibrate-{name}-denoise", denoise, rendered, pattern["render"], pattern["denoise"]))
        keyed = pattern["denoise"]
    delivered = {f: (keyed, "rendered", None) for f in ctx.checks if f in keys}
    inbetween_records: list[TimingRecord] = []
    failed: list[int] = []
    if targets:
        with _task(f"calibrate-{name}-inbetween"):
            record, verdicts = run_inbetween(
                inbetween, input_pattern=keyed, output_pattern=pattern["final"], keys=rendered, targets=targets,
                rejected_pattern=pattern["rejected"], task=f"calibrate-{name}-inbetween",
            )
        inbetween_records.append(record)
        by_frame = {v.frame: v for v in verdicts.frames}
        failed = verdicts.failed
        failed_checks = [f for f in ctx.checks if f in by_frame and not by_frame[f].passed]
        for f in ctx.checks:
            if f in by_frame and by_frame[f].passed:
                delivered[f] = (pattern["final"], "interpolated", by_frame[f].score)
        if failed_checks:
            # As the fallback task would: render the failed frames at the plan's settings and denoise them.
            fallback_passes = denoise.needs if denoise is not None else frozenset()
            renders.append(_render(ctx, f"calibrate-{name}-fallback", failed_checks, pattern["fallback"], samples,
                                   fallback_passes, "calibration"))
            source = pattern["fallback"]
            if denoise is not None:
                denoises.append(_denoise(ctx, f"calibrate-{name}-fallback-denoise", denoise, failed_checks,
                                         pattern["fallback"], pattern["fallback-denoise"]))
                source = pattern["fallback-denoise"]
            for f in failed_checks:
                delivered[f] = (source, "fallback", by_frame[f].score)

    rows = []
    for frame in ctx.checks:
        source_pattern, source, score = delivered[frame]
        reference = read_frame(frame_path(ctx.reference_pattern, frame)).feature("color")
        result = read_frame(frame_path(source_pattern, frame)).feature("color")
        if result.shape != reference.shape:
            raise FarmplugError(f"calibration {name}: frame {frame} is {result.shape[:2]}, the reference {reference.shape[:2]}")
        quality, error = measure(reference, result, error_map=True)
        thumb, flip_png = _check_images(ctx, name, frame, result, error)
        rows.append(CheckFrame(frame=frame, source=source, confidence=score, **quality.as_dict(),
                               thumbnail=thumb, error_map=flip_png))

    measured = MeasuredCost(
        render_core_s_per_frame=_per_frame(renders),
        render_overhead_core_s=_overhead(renders),
        denoise_core_s_per_frame=_per_frame(denoises),
        denoise_overhead_core_s=_overhead(denoises),
        inbetween_core_s_per_frame=_per_frame(inbetween_records),
        inbetween_overhead_core_s=_overhead(inbetween_records),
        fallback_rate=len(failed) / len(targets) if targets else 0.0,
        inbetween_frames_measured=len(targets),
        gpu_s_per_frame=_per_frame(denoises, "gpu_s") + _per_frame(inbetween_records, "gpu_s"),
    )
    cost = estimate_cost(measured, plan, shot)

    def mean(key: str) -> float:
        return sum(getattr(r, key) for r in rows) / len(rows)

    result = CandidateResult(
        name=name, samples_factor=candidate.samples_factor, samples=samples, frame_step=candidate.frame_step,
        stages=[f"{s.kind}:{s.backend}" for s in plan.stages], passes=sorted(plan.passes()), frames=rows,
        flip_mean=mean("flip_mean"), flip_p95=mean("flip_p95"), psnr=mean("psnr"), ssim=mean("ssim"),
        measured=measured, cost=cost, predicted_ratio=full.cost.total_core_s / cost.total_core_s,
    )
    log.info(
        "%s: %d spp, FLIP mean %.4f (p95 %.4f), PSNR %.1f dB; %.2f core-s/frame, shot %.0f core-s, %.1fx cheaper%s",
        name, samples, result.flip_mean, result.flip_p95, result.psnr, cost.per_frame_core_s, cost.total_core_s,
        result.predicted_ratio,
        f"; {len(failed)}/{len(targets)} in-between frames failed confidence" if targets else "",
    )
    return result


def _check_frames(shot: Shot, count: int, avoid: frozenset[int]) -> list[int]:
    if count > 1:
        return default_check_frames(shot, count, avoid=avoid)
    # One frame: the middle one (default_check_frames spreads first to last, so needs two).
    frames = [f for f in shot.frames.frames if f not in avoid] or shot.frames.frames
    return [frames[len(frames) // 2]]


def calibrate(
    shot_file: Path,
    out_dir: Path,
    *,
    candidates: Sequence[Candidate] | None = None,
    check_frames: int = 3,
    crop: float | None = None,
    target: QualityTarget | None = None,
    flip_p95_max: float | None = None,
    chunk_size: int = 8,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    run_dir: Path | None = None,
) -> CalibrationResult:
    """Measure candidate plans on a few check frames and save the cheapest that meets the target.

    Writes ``out_dir/calibration.json`` (:class:`CalibrationResult`), the check images under
    ``out_dir/calibration/<candidate>/`` (renders under ``out_dir/calibration/work``) and, when a
    candidate is chosen, ``out_dir/plan.yaml`` with the calibration's check frames.

    Args:
        shot_file: The shot YAML.
        out_dir: Where the plan and the evidence go.
        candidates: Plans to try (default: :func:`default_candidates`).
        check_frames: How many frames to measure, spread over the shot (in-between frames when a
            candidate has a frame step).
        crop: Not supported: a centred border render needs border support in the render adapter
            (``RenderRequest`` has none), so calibration renders whole frames. Must be None.
        target: Quality target (default: mean HDR-FLIP <= 0.1); saved in the plan.
        flip_p95_max: Optional bound on the mean per-frame 95th-percentile FLIP as well.
        chunk_size: Frames per farm task, for the per-task costs and the plan.
        threads: Render threads (None: all cores); saved in the plan.
        progress: ``progress(done, total, label)`` before each step and at the end.
        run_dir: When the chosen plan will run in this folder: render the reference as that run's
            reference tasks, so the run reuses them instead of rendering the check frames twice.

    Returns:
        The calibration result, also saved as ``calibration.json``.

    Raises:
        ConfigError: the shot file is missing or invalid, its scene is missing, the candidate
            list is empty or repeats a candidate, or an argument is out of range.
        FarmplugError: a render or stage failed (the message names the calibration task).
    """
    started = time.perf_counter()
    shot_file, out_dir = Path(shot_file), Path(out_dir).absolute()
    shot = load_shot(shot_file)
    scene = shot.scene_path(shot_file)
    if not scene.is_file():
        raise ConfigError(f"scene {shot.scene!r} of shot {shot_file} not found", path=scene)
    if crop is not None:
        raise ConfigError("crop is not supported: border rendering needs support in farmplug.render's RenderRequest")
    if check_frames < 1:
        raise ConfigError(f"check_frames must be 1 or more, got {check_frames}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be 1 or more, got {chunk_size}")
    candidates = default_candidates(shot) if candidates is None else list(candidates)
    if not candidates:
        raise ConfigError("no calibration candidates given")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ConfigError(f"calibration candidates repeat: {names}")
    if len(shot.frames.frames) < 2 and any(c.frame_step > 1 for c in candidates):
        raise ConfigError(f"shot {shot.name} has one frame; a frame step needs at least two")
    target = target or QualityTarget()

    # Check frames are in-between frames of every frame-step candidate where the shot allows it.
    avoid: set[int] = set()
    for c in candidates:
        if c.frame_step > 1:
            avoid |= set(c.plan(shot="shot.yaml", target=target).keyframes(shot))
    checks = _check_frames(shot, check_frames, frozenset(avoid))
    work = out_dir / "calibration" / "work"
    ctx = _Context(
        shot=shot, scene=scene, checks=checks, out_dir=out_dir, work=work,
        reference_pattern=str(work / "reference" / f"{shot.name.replace('/', '_')}.####.exr"),
        threads=threads, target=target, chunk_size=chunk_size, shot_file=shot_file,
        run_dir=Path(run_dir).absolute() if run_dir is not None else None,
        reference_plan=candidates[0].plan(shot="shot.yaml", target=target, check_frames=checks, chunk_size=chunk_size,
                                          threads=threads),
    )
    if ctx.run_dir is not None:
        ctx = replace(ctx, reference_pattern=run_layout(ctx.run_dir, shot)["reference"])
    total = 1 + len(candidates)
    log.info("calibrating %s on check frames %s: %d candidates", shot.name, checks, len(candidates))
    if progress:
        progress(0, total, "reference")
    _warm_up(candidates)
    reference = _measure_reference(ctx)
    results = []
    for done, candidate in enumerate(candidates, 1):
        if progress:
            progress(done, total, candidate.name)
        results.append(_run_candidate(ctx, candidate, reference))

    choice = choose(results, full_core_s=reference.cost.total_core_s, flip_mean_max=target.flip_mean_max,
                    flip_p95_max=flip_p95_max)
    plan_path = out_dir / PLAN_FILE
    plan_file = None
    if choice.chosen is not None:
        chosen = next(c for c in candidates if c.name == choice.chosen.name)
        shot_ref = os.path.relpath(shot_file.absolute(), out_dir)
        plan = chosen.plan(shot=shot_ref, target=target, check_frames=checks, chunk_size=chunk_size, threads=threads)
        save_model(plan, plan_path)
        plan_file = PLAN_FILE
        log.info("chose %s: %s", chosen.name, choice.reason)
    else:
        if plan_path.is_file():
            # A plan left by an earlier calibration must not outlive this verdict.
            plan_path.unlink()
            log.info("removed %s from an earlier calibration", plan_path)
        log.warning("recommendation: full render: %s", choice.reason)

    result = CalibrationResult(
        shot=str(shot_file.absolute()), shot_name=shot.name, frames=len(shot.frames.frames), check_frames=checks,
        chunk_size=chunk_size, flip_mean_max=target.flip_mean_max, flip_p95_max=flip_p95_max, reference=reference,
        candidates=choice.candidates, recommendation=choice.recommendation, reason=choice.reason,
        plan_file=plan_file, wall_s=time.perf_counter() - started,
    )
    save_model(result, out_dir / CALIBRATION_FILE)
    if progress:
        progress(total, total, "done")
    return result


__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_FACTORS",
    "FULL_RENDER",
    "CalibrationResult",
    "Candidate",
    "CandidateResult",
    "CheckFrame",
    "Choice",
    "CostEstimate",
    "MeasuredCost",
    "ReferenceResult",
    "calibrate",
    "choose",
    "default_candidates",
    "estimate_cost",
    "reference_cost",
    "summary_table",
]
