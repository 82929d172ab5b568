"""Calibration: find the cheapest plan that meets the quality target, by measuring it on the shot.

Calibration is a job like any other. :func:`compile_calibration` turns the candidates into one
job graph: the check frames rendered at the shot's full settings (the reference), and for each
candidate its own plan compiled by :func:`farmplug.graph.compile_plan` restricted to the check
frames (and, for a frame step, the keyframes and the frames between them), so each candidate
runs exactly the chain the farm would run, in the same tasks with the same timing records. A last
task (``farmplug run calibration``) measures every candidate's delivered check frames against the
reference (HDR-FLIP mean and p95, PSNR, SSIM) and its cost from its tasks' timing records, and
writes ``calibration.json`` and the chosen ``plan.yaml``. :func:`farmplug.execute.run_calibration` runs it here;
``farmplug calibrate --farm NAME --dry-run`` writes it for a farm instead.

Each candidate's whole-shot cost is extrapolated over the tasks its plan compiles to: per-frame
cost x frames plus every task's fixed cost (process start, scene and model load), the same
accounting the savings report uses on a real run. For a frame step, the frames the stage could
not vouch for are rendered for real; their expected cost (the measured fallback rate x the frames
made x the keyframe cost, and the fallback tasks' start-up) is part of the estimate.

The cheapest candidate meeting the target becomes ``plan.yaml``; when none does, or none is
cheaper than the full render, the recommendation is the full render, with the reason.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import keys_around
from farmplug.graph import JobGraph, Task, compile_plan, load_graph, run_layout, timing_path
from farmplug.models import ConfidenceRecord, Plan, QualityTarget, Shot, default_check_frames, load_plan, load_shot
from farmplug.schema import StrictModel, describe_validation_error, load_model, save_model
from farmplug.stages.base import StageConfig
from farmplug.stages.registry import default_stages, descriptor, keyframe_stage
from farmplug.timing import TimingRecord, read_timing

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
SETUP_FILE = "calibration-setup.json"
PLAN_FILE = "plan.yaml"
FULL_RENDER = "full render"
#: The calibration's own folder (beside the plan it chooses); its tasks' records are under ``work/``.
CALIBRATION_DIR = "calibration"
#: The measuring task's layer and id (its frame set is the placeholder frame 0).
MEASURE_LAYER = "calibration"
MEASURE_TASK = f"{MEASURE_LAYER}-0000-0000"
#: Samples factors tried by default (each with the default stages; and with frame step 2).
DEFAULT_FACTORS: tuple[float, ...] = (1 / 64, 1 / 32, 1 / 16, 1 / 8)
#: A frame step is only worth trying on shots at least this long (fewer frames leave too few
#: in-between frames to save anything).
MIN_FRAMES_FOR_STEP = 5
#: The share of the full render's predicted cost a calibration may spend by default (reference
#: renders, candidates and measuring together; see :mod:`farmplug.search` and docs/benchmarks.md).
DEFAULT_BUDGET_SHARE = 0.10

#: ``progress(done, total, label)``: called before each task and once at the end with ``done == total``.
ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Candidate:
    """One plan to try: reduced samples, the per-frame stages, and an optional frame step.

    ``post`` names the per-frame stage kinds (None: the registry's default stages); with a frame
    step the registry's stage that makes frames between keyframes is added at the end.
    ``variants`` names stage settings to use instead of the defaults, ``KIND-NAME`` for a variant
    the stage's config declares (:meth:`~farmplug.stages.base.StageConfig.calibration_variants`).

    Raises:
        ConfigError: on construction, for a samples factor outside (0, 1] or a frame step below 1.
    """

    samples_factor: float
    frame_step: int = 1
    post: tuple[str, ...] | None = None
    variants: tuple[str, ...] = ()
    resolution_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.samples_factor <= 1:
            raise ConfigError(f"candidate samples_factor must be in (0, 1], got {self.samples_factor}")
        if self.frame_step < 1:
            raise ConfigError(f"candidate frame_step must be 1 or more, got {self.frame_step}")
        if not 0 < self.resolution_scale <= 1:
            raise ConfigError(f"candidate resolution_scale must be in (0, 1], got {self.resolution_scale}")

    @property
    def name(self) -> str:
        """A file-safe label: ``x1-32_denoise``, ``x1-16_step2_denoise_inbetween``."""
        fraction = Fraction(self.samples_factor).limit_denominator(4096)
        exact = math.isclose(float(fraction), self.samples_factor, rel_tol=1e-9)
        parts = [f"x{fraction.numerator}-{fraction.denominator}" if exact else f"x{self.samples_factor:g}"]
        if self.frame_step > 1:
            parts.append(f"step{self.frame_step}")
        if self.resolution_scale != 1:
            parts.append(f"res{Fraction(self.resolution_scale).limit_denominator(64)}".replace("/", "-"))
        applied = dict(v.split("-", 1) for v in self.variants)
        parts += [f"{s.kind}-{applied[s.kind]}" if s.kind in applied else s.kind for s in self.stages()]
        return "_".join(parts)

    def stages(self) -> list[StageConfig]:
        """The candidate's stage configs, in chain order.

        Raises:
            FarmplugError: a named stage kind is not registered.
        """
        stages = default_stages() if self.post is None else [descriptor(kind).config() for kind in self.post]
        if self.resolution_scale != 1:
            from farmplug.stages.registry import descriptor_of, upscale_stage

            stages = sorted([*stages, upscale_stage(self.resolution_scale)], key=lambda c: descriptor_of(c).order)
        if self.frame_step > 1:
            stages.append(keyframe_stage())
        for variant in self.variants:
            kind, _, name = variant.partition("-")
            index = next((i for i, s in enumerate(stages) if s.kind == kind), None)
            offered = stages[index].calibration_variants() if index is not None else {}
            if name not in offered:
                known = [f"{s.kind}-{n}" for s in stages for n in s.calibration_variants()]
                raise ConfigError(f"candidate variant {variant!r} is not offered by its stages "
                                  f"(offered: {', '.join(known) or 'none'})")
            stages[index] = offered[name]
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
                resolution_scale=self.resolution_scale,
                quality_target=target, check_frames=list(check_frames), chunk_size=chunk_size, threads=threads,
            )
        except ValidationError as err:
            raise ConfigError(f"candidate {self.name}: {describe_validation_error(err)}") from None


def stage_variants(frame_step: int = 1) -> list[tuple[str, ...]]:
    """The variant sets calibration tries by default: none, then each variant a default stage offers."""
    stages = Candidate(1.0, frame_step=frame_step).stages()
    return [(), *((f"{s.kind}-{name}",) for s in stages for name in s.calibration_variants())]


def default_candidates(shot: Shot) -> list[Candidate]:
    """Samples factors 1/64..1/8 with the default stages and each variant they offer, and the same
    with frame step 2 on 5+ frames (structures in that order: the search tries them in turn)."""
    steps = [1] + ([2] if len(shot.frames.frames) >= MIN_FRAMES_FOR_STEP else [])
    return [Candidate(f, frame_step=n, variants=v) for n in steps for v in stage_variants(n) for f in DEFAULT_FACTORS]


# --- evidence saved in calibration.json -------------------------------------------------------------


class CheckFrame(StrictModel):
    """One check frame of a candidate, as it would be delivered, against the full-quality reference."""

    frame: int
    source: Literal["rendered", "interpolated", "fallback"]
    confidence: float | None = Field(default=None, description="the score of a frame a stage made between keyframes")
    flip_mean: float
    flip_p95: float
    psnr: float
    ssim: float
    thumbnail: str = Field(default="", description="PNG of the delivered frame, relative to the calibration folder")
    error_map: str = Field(default="", description="HDR-FLIP heat map PNG, relative to the calibration folder")


class LayerCost(StrictModel):
    """What the tasks of one layer (``render``, a stage, an aux render) cost per frame and per task."""

    core_s_per_frame: float = Field(ge=0)
    overhead_core_s: float = Field(default=0.0, ge=0, description="per task: process start, scene or model load")
    gpu_s_per_frame: float = Field(default=0.0, ge=0)
    frames: int = Field(default=0, ge=0, description="frames measured")
    tasks: int = Field(default=0, ge=0, description="tasks measured")


class MeasuredCost(StrictModel):
    """What a candidate's calibration tasks cost, in CPU core-seconds, by layer (task ``stage``)."""

    layers: dict[str, LayerCost] = Field(description="render, each stage kind, aux renders")
    fallback_rate: float = Field(default=0.0, ge=0, le=1, description="share of the frames made that failed their check")
    fallback_rate_bound: float | None = Field(
        default=None, ge=0, le=1,
        description="the fallback rate the cost estimate uses: the upper 90% confidence bound of the measured rate "
                    "(binomial, Clopper-Pearson), so a frame step measured on few frames is costed cautiously "
                    "(None: the measured rate)")
    withheld_frames_measured: int = Field(default=0, ge=0, description="frames the withholding stage made")

    @property
    def gpu_s_per_frame(self) -> float:
        return sum(layer.gpu_s_per_frame for layer in self.layers.values())


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
    flicker: float | None = Field(
        default=None, description="temporal instability over the consecutive check frames (None: no pairs measured)")
    flicker_pairs: list[int] = Field(default_factory=list, description="the second frame of each pair measured")
    meets_target: bool = False
    chosen: bool = False
    reason: str = ""


class ReferenceResult(StrictModel):
    samples: int
    frames: list[int]
    core_s_per_frame: float
    overhead_core_s: float = Field(description="per render task: process start, scene load (counted, not extrapolated away)")
    cost: CostEstimate


class SkippedCandidate(StrictModel):
    """A candidate the search did not render, and why."""

    name: str
    samples_factor: float
    frame_step: int
    reason: str


class BudgetStatement(StrictModel):
    """What calibration was allowed to spend and what it spent (written in ``calibration.json``)."""

    share: float | None = Field(description="the share of the full render's predicted cost allowed (None: no budget)")
    budget_core_s: float | None = None
    spent_core_s: float = Field(ge=0, description="every calibration task's core-seconds: reference renders, candidates, measuring")
    full_render_core_s: float = Field(ge=0, description="the full render's predicted cost on the whole shot")
    rounds: int = Field(default=1, ge=1)

    @property
    def spent_share(self) -> float:
        return self.spent_core_s / self.full_render_core_s if self.full_render_core_s else 0.0


class SharedShot(StrictModel):
    """A shot whose plan comes from this calibration (its share of the cost goes by its frames)."""

    shot: str = Field(description="the shot file, absolute")
    name: str
    frames: int = Field(ge=1)


class CalibrationResult(StrictModel):
    schema_version: Literal[2] = 2
    shot: str = Field(description="the shot file, absolute")
    shot_name: str
    frames: int
    check_frames: list[int]
    chunk_size: int
    flip_mean_max: float
    flip_p95_max: float | None = None
    flicker_max: float | None = None
    reference: ReferenceResult
    candidates: list[CandidateResult]
    recommendation: str = Field(description=f"the chosen candidate's name, or {FULL_RENDER!r}")
    reason: str
    skipped: list[SkippedCandidate] = Field(default_factory=list, description="candidates not rendered, and why")
    budget: BudgetStatement | None = Field(default=None, description="what calibration could spend and spent")
    shared_by: list[SharedShot] = Field(
        default_factory=list, description="every shot planned from this calibration (the calibrated one first)")

    def share_of(self, shot_file: str | Path) -> float:
        """The share of this calibration's cost charged to ``shot_file``: its frames over the
        frames of every shot that shares it (all of it when it is the only one, or not listed)."""
        total = sum(s.frames for s in self.shared_by)
        mine = [s for s in self.shared_by if Path(s.shot).resolve() == Path(shot_file).resolve()]
        if not mine or total == 0:
            return 1.0
        return mine[0].frames / total
    plan_file: str | None = Field(default=None, description="the chosen plan, relative to the calibration folder")
    wall_s: float = 0.0
    host: str = Field(default_factory=platform.node)
    cores: int = Field(default_factory=lambda: os.cpu_count() or 1)

    def candidate(self, name: str) -> CandidateResult:
        for result in self.candidates:
            if result.name == name:
                return result
        raise KeyError(name)


class CandidateSetup(StrictModel):
    """One candidate of a calibration job: its plan file and the run folder of its tasks."""

    name: str
    samples_factor: float
    frame_step: int
    plan_file: str = Field(description="the candidate's plan, absolute")
    run_dir: str = Field(description="the candidate's run folder, absolute")
    layer_prefix: str
    shared_tasks: list[str] = Field(
        default_factory=list, description="other candidates' tasks it reads (their renders are its renders too)")


class CalibrationSetup(StrictModel):
    """Everything the measuring task needs, written beside the calibration's job graph."""

    schema_version: Literal[1] = 1
    shot_file: str
    out_dir: str
    check_frames: list[int]
    chunk_size: int
    threads: int | None = None
    flip_mean_max: float
    flip_p95_max: float | None = None
    flicker_max: float | None = None
    reference_pattern: str
    reference_tasks: list[str]
    chosen_plan_shot: str = Field(description="the shot as the chosen plan names it (relative to out_dir)")
    candidates: list[CandidateSetup]
    started_at: float = 0.0
    skipped: list[SkippedCandidate] = Field(default_factory=list)
    budget_share: float | None = None
    rounds: int = Field(default=1, ge=1)
    measuring_core_s_before: float = Field(default=0.0, ge=0, description="earlier rounds' measuring tasks")
    shared_by: list[SharedShot] = Field(default_factory=list, description="the shots this calibration plans")


# --- pure parts: cost extrapolation and the choice ------------------------------------------------


def reference_cost(core_s_per_frame: float, overhead_core_s: float, frames: int, chunk_size: int) -> CostEstimate:
    """The full render's cost: every frame at full quality, one start-up per chunk (as the report counts it)."""
    tasks = math.ceil(frames / chunk_size)
    fixed = overhead_core_s * tasks
    return CostEstimate(frames=frames, tasks=tasks, per_frame_core_s=core_s_per_frame, fixed_core_s=fixed,
                        total_core_s=core_s_per_frame * frames + fixed)


def _layer(measured: MeasuredCost, task: Task, what: str) -> LayerCost:
    try:
        return measured.layers[what]
    except KeyError:
        raise FarmplugError(f"calibration cannot cost task {task.id}: no {what} tasks were measured") from None


def estimate_cost(measured: MeasuredCost, plan: Plan, shot: Shot) -> CostEstimate:
    """Extrapolate measured costs over every task the plan compiles to (check frames excluded).

    Each task costs its frames at its layer's measured per-frame cost plus one start-up. A fallback
    task over ``m`` frames is expected to re-render ``rate x m`` of them (the render and every
    per-frame stage) and to pay their start-ups when at least one fails, which happens with
    probability ``1 - (1 - rate)^m``.

    Raises:
        FarmplugError: the plan has a task of a layer the measurements do not cover.
    """
    graph = compile_plan(plan.model_copy(update={"check_frames": []}), shot,
                         plan_file=Path("plan.yaml"), shot_file=Path("shot.yaml"), run_dir=Path("run"))
    rate = measured.fallback_rate if measured.fallback_rate_bound is None else measured.fallback_rate_bound
    chain = ["render", *(s.kind for s in plan.frame_stages())]
    frame_work = fixed = 0.0
    for task in graph.tasks:
        m = len(task.frames)
        if task.kind == "fallback":
            layers = [_layer(measured, task, what) for what in chain]
            frame_work += rate * m * sum(layer.core_s_per_frame for layer in layers)
            fixed += (1 - (1 - rate) ** m) * sum(layer.overhead_core_s for layer in layers)
            continue
        layer = _layer(measured, task, task.stage)
        frame_work += m * layer.core_s_per_frame
        fixed += layer.overhead_core_s
    frames = len(shot.frames.frames)
    return CostEstimate(frames=frames, tasks=len(graph.tasks), per_frame_core_s=frame_work / frames,
                        fixed_core_s=fixed, total_core_s=frame_work + fixed)


def measured_cost(records: Sequence[tuple[Task, TimingRecord]], *, made: int = 0, failed: int = 0) -> MeasuredCost:
    """Per-layer costs from tasks and their timing records (fallback tasks are not a layer: their
    frames are costed from the render and the stages they re-run)."""
    grouped: dict[str, list[TimingRecord]] = {}
    for task, record in records:
        if task.kind != "fallback":
            grouped.setdefault(task.stage, []).append(record)
    layers = {}
    for what, rs in grouped.items():
        frames = [f for r in rs for f in r.frames]
        # A render with Cycles' persistent data pays the scene sync on a task's first frame only:
        # that extra is a per-task cost, so the estimate holds for chunks of any length. The
        # split keeps the layer's total exact (tasks x start-up + frames x per-frame = measured).
        extra = _first_frame_extra(rs)
        total = sum(r.cpu_s for r in rs)
        start_ups = sum(r.overhead_cpu_s for r in rs) + extra
        layers[what] = LayerCost(
            core_s_per_frame=(total - start_ups) / len(frames) if frames else 0.0,
            overhead_core_s=start_ups / len(rs),
            gpu_s_per_frame=sum(f.gpu_s for f in frames) / len(frames) if frames else 0.0,
            frames=len(frames), tasks=len(rs),
        )
    return MeasuredCost(layers=layers, fallback_rate=failed / made if made else 0.0,
                        fallback_rate_bound=fallback_upper_bound(failed, made) if made else None,
                        withheld_frames_measured=made)


#: The confidence of :func:`fallback_upper_bound`.
FALLBACK_CONFIDENCE = 0.9


def fallback_upper_bound(failed: int, made: int, confidence: float = FALLBACK_CONFIDENCE) -> float:
    """The upper ``confidence`` bound of a failure rate seen as ``failed`` of ``made`` frames
    (Clopper-Pearson: the rate at which seeing ``failed`` or fewer has probability ``1 - confidence``).

    One failure in three frames measured is a rate of 33% but bounds it at 68%: calibration sees
    a few frames between keyframes, and a frame step that fails on most of a shot's motion must not
    look cheap because its check frames sat where the motion was slow.
    """
    if made <= 0:
        return 1.0
    if failed >= made:
        return 1.0

    def at_most_failed(p: float) -> float:
        return sum(math.comb(made, k) * p ** k * (1 - p) ** (made - k) for k in range(failed + 1))

    lo, hi = failed / made, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if at_most_failed(mid) > 1 - confidence:
            lo = mid
        else:
            hi = mid
    return hi


def _first_frame_extra(records: Sequence[TimingRecord]) -> float:
    """What the first frames of render tasks cost beyond a later frame's fixed part (persistent
    data: the full scene sync), summed over the tasks; 0 without a measured split with later frames."""
    splits = [r.render_cost for r in records if r.render_cost is not None]
    later = [s.fixed_cpu_s_later_frames for s in splits if s.fixed_cpu_s_later_frames is not None]
    if not later or len(splits) != len(records):
        return 0.0
    typical = sum(later) / len(later)
    return sum(max(0.0, s.fixed_cpu_s_first_frame - typical) for s in splits)


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
    flicker_max: float | None = None,
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
        if flicker_max is not None and (r.flicker is None or r.flicker > flicker_max):
            problems.append(f"flicker {r.flicker:.4f} > {flicker_max:g}" if r.flicker is not None
                            else "flicker not measured (no consecutive check frames)")
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
        "| candidate | spp | FLIP mean | FLIP p95 | PSNR dB | SSIM | flicker | fallback | core-s/frame | shot core-s | ratio | meets | chosen |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :-: | :-: |",
    ]
    ref = result.reference
    lines.append(f"| full render (reference) | {ref.samples} | 0 | 0 | - | 1 | 0 | - | {ref.core_s_per_frame:.2f} "
                 f"| {ref.cost.total_core_s:.0f} | 1.0 | - | - |")
    for c in result.candidates:
        fallback = f"{c.measured.fallback_rate:.0%}" if c.measured.withheld_frames_measured else "-"
        flicker = f"{c.flicker:.4f}" if c.flicker is not None else "-"
        lines.append(
            f"| {c.name} | {c.samples} | {c.flip_mean:.4f} | {c.flip_p95:.4f} | {c.psnr:.1f} | {c.ssim:.3f} | {flicker} | {fallback} "
            f"| {c.cost.per_frame_core_s:.2f} | {c.cost.total_core_s:.0f} | {c.predicted_ratio:.1f} "
            f"| {'yes' if c.meets_target else 'no'} | {'**yes**' if c.chosen else ''} |"
        )
    return "\n".join(lines)


# --- the calibration job -----------------------------------------------------------------------------




def affordable_checks(shot: Shot, wanted: int, share: float, *, shot_file: Path | None = None,
                      frames: int | None = None, per_check: int = 1) -> int:
    """How many check frames a calibration of ``shot`` can render within ``share`` of the full
    render of ``frames`` (the shot's, or all the shots that share the calibration): each
    full-quality reference frame costs ``1 / frames`` of it, and nine tenths of the budget at most
    go to the reference (the rest is for the candidates).

    Raises:
        ConfigError: not even one check frame fits; the message gives the choices.
    """
    frames = frames or len(shot.frames.frames)
    fits = math.floor(share * 0.9 * frames / per_check + 1e-9)
    if fits >= 1:
        if fits < wanted:
            log.info("the calibration budget (%.0f%% of the full render) affords %d check frame(s) of %d frames, "
                     "not %d", share * 100, fits, frames, wanted)
        return min(wanted, fits)
    needed = per_check / (0.9 * frames)
    raise ConfigError(
        f"shot {shot.name}{' and the shots sharing it' if frames != len(shot.frames.frames) else ''} "
        f"{'have' if frames != len(shot.frames.frames) else 'has'} {frames} frames: too short to calibrate within {share:.0%} of its full render "
        f"(one full-quality check {'pair' if per_check == 2 else 'frame'} alone is {per_check / frames:.0%}); reuse a calibration of a shot like it "
        f"(farmplug plan SHOT --reuse CALIBRATION.json), allow a larger share (--budget-share {min(1.0, needed):.2f}), "
        "or plan it uncalibrated with a stated default (farmplug plan SHOT --samples-factor 1/16)", path=shot_file)


def check_reusable(calibrated: Shot, other: Shot, other_file: Path, *, source: Path | str) -> None:
    """A calibration measured on ``calibrated`` can plan ``other`` only at the same samples and
    resolution (its quality per pixel was measured at those); another scene file is allowed (shots
    of a sequence share a look, not always a file) and said.

    Raises:
        ConfigError: the samples or the resolution differ (the message says what to do).
    """
    mismatch = []
    if other.samples != calibrated.samples:
        mismatch.append(f"{other.samples} spp, not {calibrated.samples}")
    if (other.resolution.width, other.resolution.height) != (calibrated.resolution.width, calibrated.resolution.height):
        mismatch.append(f"{other.resolution.width}x{other.resolution.height}, not "
                        f"{calibrated.resolution.width}x{calibrated.resolution.height}")
    if mismatch:
        raise ConfigError(f"shot {other.name} is {' and '.join(mismatch)} as calibrated in {source}: a calibration "
                          "only serves shots at the same samples and resolution; calibrate this shot", path=other_file)
    if other.scene != calibrated.scene:
        log.warning("shot %s renders %s, calibrated on %s: its plan assumes the same look and lighting",
                    other.name, other.scene, calibrated.scene)


def reuse_calibration(calibration_file: Path, shot_file: Path, plan_file: Path, *, check_count: int = 1) -> Plan:
    """The plan a calibration chose, for another shot of the same sequence, scene and look: the
    same samples factor, frame step and stages, the shot's own check frames (``check_count``: the
    run's evidence and its full-render estimate), and ``calibration`` naming the file, whose
    ``shared_by`` gains the shot (so the report charges each shot its share, by frames).

    Raises:
        ConfigError: the calibration does not read back, chose no plan (it recommends the full
            render), or was measured at other samples or resolution.
    """
    calibration_file, shot_file, plan_file = Path(calibration_file), Path(shot_file), Path(plan_file)
    result = load_model(CalibrationResult, calibration_file)
    if result.plan_file is None:
        raise ConfigError(f"this calibration recommends the full render ({result.reason}); there is no plan to reuse",
                          path=calibration_file)
    chosen, _calibrated_shot, _ = load_plan(calibration_file.parent / result.plan_file)
    shot = load_shot(shot_file)
    check_reusable(load_shot(result.shot), shot, shot_file, source=calibration_file)
    keys = frozenset(chosen.keyframes(shot)) if chosen.frame_step > 1 else frozenset()
    plan = chosen.model_copy(update={
        "shot": os.path.relpath(shot_file.absolute(), plan_file.absolute().parent),
        "check_frames": default_check_frames(shot, check_count, avoid=keys),
        "calibration": os.path.relpath(calibration_file.absolute(), plan_file.absolute().parent),
    })
    entry = SharedShot(shot=str(shot_file.absolute()), name=shot.name, frames=len(shot.frames.frames))
    if all(Path(s.shot).resolve() != shot_file.resolve() for s in result.shared_by):
        save_model(result.model_copy(update={"shared_by": [*result.shared_by, entry]}), calibration_file)
    return plan


def calibration_for(plan: Plan, plan_file: Path) -> Path | None:
    """The calibration.json that chose ``plan``: the one it names, else one beside the plan file
    (plans written before plans named their calibration)."""
    if plan.calibration:
        named = Path(plan.calibration)
        return named if named.is_absolute() else Path(plan_file).parent / named
    beside = Path(plan_file).parent / CALIBRATION_FILE
    return beside if beside.is_file() else None


def consecutive_pairs(checks: Sequence[int], shot: Shot) -> list[int]:
    """``checks`` with the frame before each (the frame after, for the shot's first frame), so
    flicker can be measured on each check frame's pair."""
    frames = set(checks)
    for f in checks:
        if f - 1 in frames or f + 1 in frames:
            continue  # already in a pair (the list was made of pairs)
        frames.add(f - 1 if f - 1 >= shot.frames.start else f + 1)
    return sorted(f for f in frames if shot.frames.start <= f <= shot.frames.end)


def pairs_in(frames: Sequence[int]) -> list[int]:
    """The frames ``t`` of ``frames`` whose predecessor ``t - 1`` is there too."""
    present = set(frames)
    return [f for f in sorted(present) if f - 1 in present]


def delivered_for_checks(plan: Plan, shot: Shot, checks: Sequence[int]) -> list[int]:
    """The frames a candidate delivers to measure ``checks``: the check frames, and for a frame step
    every frame between the keyframes around a check frame (they share the keyframe reads as in a real
    task, and each one adds a sample to the measured fallback rate)."""
    if plan.keyframe_stage() is None:
        return sorted(set(checks))
    keys = plan.keyframes(shot)
    frames = set()
    for frame in checks:
        if frame in keys:
            frames.add(frame)
            continue
        a, b = keys_around(keys, frame)
        frames |= set(range(a + 1, b))
    return sorted(frames)


@dataclass(frozen=True)
class CalibrationJob:
    """A calibration compiled into a job graph, with the files its tasks read (no I/O done)."""

    graph: JobGraph
    setup: CalibrationSetup
    setup_file: Path
    plans: dict[Path, Plan]


def compile_calibration(
    shot_file: Path,
    out_dir: Path,
    *,
    candidates: Sequence[Candidate] | None = None,
    check_frames: int | Sequence[int] = 3,
    target: QualityTarget | None = None,
    flip_p95_max: float | None = None,
    chunk_size: int = 8,
    threads: int | None = None,
    run_dir: Path | None = None,
    budget_share: float | None = DEFAULT_BUDGET_SHARE,
    skipped: Sequence[SkippedCandidate] = (),
    rounds: int = 1,
    measuring_core_s_before: float = 0.0,
    also_for: Sequence[Path] = (),
) -> CalibrationJob:
    """Compile the calibration of a shot into one job graph (it reads the shot file, writes nothing).

    ``check_frames`` is how many frames to measure, spread over the shot (frames made between
    keyframes where a candidate has a frame step), or the frames themselves. With a
    ``budget_share``, a count is cut to what the budget affords: the reference renders alone cost
    ``checks / frames`` of the full render; shots in ``also_for`` (shots of the same sequence,
    scene, look and lighting, planned from this calibration) share it, so their frames count too.

    Raises:
        ConfigError: the shot file is missing or invalid, the candidate list is empty or repeats a
            candidate, an argument is out of range, or the shot is too short to calibrate within
            the budget (the message gives the choices).
    """
    shot_file, out_dir = Path(shot_file).absolute(), Path(out_dir).absolute()
    shot = load_shot(shot_file)
    if isinstance(check_frames, int) and check_frames < 1:
        raise ConfigError(f"check_frames must be 1 or more, got {check_frames}")
    if not isinstance(check_frames, int):
        outside = [f for f in check_frames if not shot.frames.start <= f <= shot.frames.end]
        if outside or not check_frames:
            raise ConfigError(f"check frames {list(check_frames)} must be frames of the shot "
                              f"({shot.frames.start}-{shot.frames.end})", path=shot_file)
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
    if budget_share is not None and not 0 < budget_share <= 1:
        raise ConfigError(f"the calibration budget share must be in (0, 1], got {budget_share}")
    shared = [SharedShot(shot=str(shot_file), name=shot.name, frames=len(shot.frames.frames))]
    for other in also_for:
        other_shot = load_shot(other)
        check_reusable(shot, other_shot, Path(other), source=shot_file)
        shared.append(SharedShot(shot=str(Path(other).absolute()), name=other_shot.name,
                                 frames=len(other_shot.frames.frames)))
    if isinstance(check_frames, int) and budget_share is not None:
        check_frames = affordable_checks(shot, check_frames, budget_share, shot_file=shot_file,
                                         frames=sum(s.frames for s in shared),
                                         per_check=2 if target.flicker_max is not None else 1)

    # Check frames are frames made between keyframes of every frame-step candidate where the shot allows it.
    avoid: set[int] = set()
    for c in candidates:
        if c.frame_step > 1:
            avoid |= set(c.plan(shot="shot.yaml", target=target).keyframes(shot))
    checks = (default_check_frames(shot, check_frames, avoid=frozenset(avoid)) if isinstance(check_frames, int)
              else sorted(set(check_frames)))
    if target.flicker_max is not None:
        # Flicker is measured on consecutive frames: each check frame with the frame before it.
        checks = consecutive_pairs(checks, shot)
    folder = out_dir / CALIBRATION_DIR
    work = folder / "work"

    # The reference: the check frames at full quality, as the chosen plan's run would render them
    # (in that run folder when given, so the run reuses them), else in the calibration's own folder.
    reference_plan = candidates[0].plan(shot=str(shot_file), target=target, check_frames=checks,
                                        chunk_size=chunk_size, threads=threads)
    reference_root = Path(run_dir).absolute() if run_dir is not None else folder
    reference_graph = compile_plan(reference_plan, shot, plan_file=out_dir / PLAN_FILE, shot_file=shot_file,
                                   run_dir=reference_root)
    tasks = [t for t in reference_graph.tasks if t.role == "reference"]

    plans: dict[Path, Plan] = {}
    setups = []
    renders: dict[tuple, Task] = {}
    for candidate in candidates:
        name = candidate.name
        plan = candidate.plan(shot=str(shot_file), target=target, chunk_size=chunk_size, threads=threads)
        plan_file = work / name / PLAN_FILE
        prefix = f"{name}-"
        sub = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=work / name,
                           frames=delivered_for_checks(plan, shot, checks), layer_prefix=prefix)
        own, borrowed = _share_renders([t.model_copy(update={"role": "plan"}) for t in sub.tasks], renders)
        tasks += own
        plans[plan_file] = plan
        setups.append(CandidateSetup(name=name, samples_factor=candidate.samples_factor, frame_step=candidate.frame_step,
                                     plan_file=str(plan_file), run_dir=str(work / name), layer_prefix=prefix,
                                     shared_tasks=borrowed))

    setup_file = folder / SETUP_FILE
    tasks.append(Task(
        id=MEASURE_TASK, layer=MEASURE_LAYER, kind="stage", stage=MEASURE_LAYER, role="plan", frames=[0],
        depends_on=[t.id for t in tasks], argv=["run", "calibration", "--layer", MEASURE_LAYER, "--setup", str(setup_file)],
        outputs=[str(out_dir / CALIBRATION_FILE)], timing=str(measure_timing_path(setup_file)),
        inputs=[str(setup_file)],  # a round with other candidates is another setup: measured again
    ))
    setup = CalibrationSetup(
        shot_file=str(shot_file), out_dir=str(out_dir), check_frames=checks, chunk_size=chunk_size, threads=threads,
        flip_mean_max=target.flip_mean_max, flip_p95_max=flip_p95_max, flicker_max=target.flicker_max,
        reference_pattern=run_layout(reference_root, shot).reference,
        reference_tasks=[t.id for t in tasks if t.role == "reference"],
        chosen_plan_shot=os.path.relpath(shot_file, out_dir), candidates=setups, skipped=list(skipped),
        budget_share=budget_share, rounds=rounds, measuring_core_s_before=measuring_core_s_before, shared_by=shared,
    )
    graph = JobGraph(name=f"{shot.name} calibration", run_dir=str(folder), plan_file=str(out_dir / PLAN_FILE),
                     shot_file=str(shot_file), tasks=tasks)
    graph.topological()
    return CalibrationJob(graph=graph, setup=setup, setup_file=setup_file, plans=plans)


def _render_signature(task: Task) -> tuple:
    """What a render task renders: its command but for where it writes and what it is called."""
    argv = list(task.argv)
    for flag in ("--output", "--layer"):
        if flag in argv:
            at = argv.index(flag)
            del argv[at:at + 2]
    return (tuple(argv), tuple(task.frames))


def _share_renders(tasks: list[Task], renders: dict[tuple, Task]) -> tuple[list[Task], list[str]]:
    """A candidate's tasks with every render another candidate already makes (the same scene,
    samples, passes, resolution and frames: candidates that differ only after the render, such as
    a stage's settings) taken from that candidate instead of rendered again.

    Returns the tasks to add and the ids of the other candidates' tasks this one reads.
    """
    moved: dict[str, Task] = {}
    for task in tasks:
        if task.kind != "render":
            continue
        same = renders.get(_render_signature(task))
        if same is None:
            renders[_render_signature(task)] = task
        else:
            moved[task.id] = same
    if not moved:
        return tasks, []
    paths: dict[str, str] = {}
    for old_id, same in moved.items():
        old = next(t for t in tasks if t.id == old_id)
        paths[old.argv[old.argv.index("--output") + 1]] = same.argv[same.argv.index("--output") + 1]
        paths.update(zip(old.outputs, same.outputs, strict=True))
    kept = []
    for task in tasks:
        if task.id in moved:
            continue
        kept.append(task.model_copy(update={
            "argv": [paths.get(a, a) for a in task.argv],
            "inputs": [paths.get(i, i) for i in task.inputs],
            "depends_on": [moved[d].id if d in moved else d for d in task.depends_on],
        }))
    return kept, [t.id for t in moved.values()]


def measure_timing_path(setup_file: Path) -> Path:
    """Where the measuring task's timing record goes (with the calibration's other records, so it is charged)."""
    return Path(timing_path(Path(setup_file).parent / "work", MEASURE_TASK))


def write_calibration_job(job: CalibrationJob) -> Path:
    """Write the candidates' plans, the setup and the graph (``calibration/graph.json``); returns the graph file."""
    from farmplug.graph import save_graph

    for path, plan in job.plans.items():
        save_model(plan, path)
    save_model(job.setup.model_copy(update={"started_at": time.time()}), job.setup_file)
    return save_graph(job.graph, job.setup_file.parent)


# --- measuring (the calibration task) -----------------------------------------------------------------


def _check_images(out_dir: Path, shot: Shot, folder: str, frame: int, image, error) -> tuple[str, str]:
    from farmplug.imageio.thumbnails import error_map_png, tonemap_png

    base = f"{CALIBRATION_DIR}/{folder}/{shot.stem}.{frame:04d}"
    tonemap_png(image, out_dir / f"{base}.png")
    if error is not None:
        error_map_png(error, out_dir / f"{base}.flip.png")
    return f"{base}.png", (f"{base}.flip.png" if error is not None else "")


#: Folder beside ``calibration-setup.json`` holding each candidate's measurement (one JSON file
#: each), reused by later rounds while nothing it was measured from has changed.
MEASURED_DIR = "measured"


class MeasuredCandidate(StrictModel):
    """One candidate's measurement as the measuring task made it, and what it was made from."""

    schema_version: Literal[1] = 1
    key: str = Field(description="sha256 of the candidate, the check frames and every timing record it read")
    result: CandidateResult


def _measurement_key(setup: CalibrationSetup, candidate: CandidateSetup, graph: JobGraph) -> str:
    """What a candidate's measurement depends on: the candidate, the check frames and references,
    and the record of every task it reads (a task run again writes a new record)."""
    import hashlib
    import json

    from farmplug import __version__

    tasks = _candidate_tasks(graph, candidate) + [graph.task(t) for t in setup.reference_tasks]
    records = [(t.id, r.key, r.started_at, r.finished_at) for t, r in _records(graph, tasks)]
    plan = Path(candidate.plan_file).read_bytes()
    payload = {"farmplug": __version__, "candidate": candidate.model_dump(mode="json"),
               "plan": hashlib.sha256(plan).hexdigest(), "check_frames": list(setup.check_frames),
               "reference": setup.reference_pattern, "records": records}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _candidate_tasks(graph: JobGraph, candidate: CandidateSetup) -> list[Task]:
    """The tasks a candidate's measurement reads: its own, and the other candidates' it shares."""
    tasks = [t for t in graph.tasks if t.layer.startswith(candidate.layer_prefix)]
    return tasks + [graph.task(t) for t in candidate.shared_tasks]


def _measured(setup: CalibrationSetup, candidate: CandidateSetup, graph: JobGraph, shot: Shot,
              full: ReferenceResult, folder: Path) -> CandidateResult:
    """The candidate's measurement: an earlier round's, where nothing it read has changed since
    (and its check images are still there), else measured now and kept for the next round."""
    key = _measurement_key(setup, candidate, graph)
    path = folder / MEASURED_DIR / f"{candidate.name}.json"
    out_dir = Path(setup.out_dir)
    if path.is_file():
        try:
            kept = load_model(MeasuredCandidate, path)
        except ConfigError:
            kept = None
        images = [out_dir / name for row in kept.result.frames for name in (row.thumbnail, row.error_map) if name] if kept else []
        if kept is not None and kept.key == key and all(p.is_file() for p in images):
            log.debug("%s: measured in an earlier round, its tasks unchanged", candidate.name)
            cost = kept.result.cost
            return kept.result.model_copy(update={"predicted_ratio": full.cost.total_core_s / cost.total_core_s})
    result = _measure_candidate(setup, candidate, graph, shot, full)
    save_model(MeasuredCandidate(key=key, result=result), path)
    return result


def _records(graph: JobGraph, tasks: Sequence[Task]) -> list[tuple[Task, TimingRecord]]:
    found = []
    for task in tasks:
        if not Path(task.timing).is_file():
            raise FarmplugError(f"calibration task {task.id} has not run (no {task.timing})")
        found.append((task, read_timing(task.timing)))
    return found


def flicker_of(reference_pattern: str, result_pattern: str, pairs: Sequence[int]) -> list[float]:
    """Temporal instability of the results of each pair ``(t - 1, t)`` (``t`` in ``pairs``)
    against the references, reprojected along the references' Vector pass where they carry one
    (a plan with a flicker target renders them with it), else not reprojected.

    The vectors are the references', never a result's: a candidate whose frames carry a Vector
    pass (the temporal denoiser's) and one whose frames do not are then scored the same way.
    """
    from farmplug.imageio import read_frame
    from farmplug.quality import temporal_instability
    from farmplug.render.base import frame_path

    scores = []
    for t in pairs:
        results = [read_frame(frame_path(result_pattern, f)).feature("color") for f in (t - 1, t)]
        refs = [read_frame(frame_path(reference_pattern, f)) for f in (t - 1, t)]
        motion = [r.feature("motion") for r in refs] if all(r.has("motion") for r in refs) else None
        scores.append(temporal_instability(results, [r.feature("color") for r in refs], motion=motion).mean)
    return scores


def _measure_reference(setup: CalibrationSetup, shot: Shot, graph: JobGraph) -> ReferenceResult:
    from farmplug.imageio import read_frame
    from farmplug.render.base import frame_path

    records = [r for _t, r in _records(graph, [graph.task(t) for t in setup.reference_tasks])]
    frames = [f for r in records for f in r.frames]
    per_frame = sum(f.cpu_s for f in frames) / len(frames)
    overhead = sum(r.overhead_cpu_s for r in records) / len(records)
    for frame in setup.check_frames:
        image = read_frame(frame_path(setup.reference_pattern, frame)).feature("color")
        _check_images(Path(setup.out_dir), shot, "reference", frame, image, None)
    log.info("reference: %d check frames at %d spp, %.2f core-s/frame + %.2f core-s start-up per task",
             len(setup.check_frames), shot.samples, per_frame, overhead)
    return ReferenceResult(samples=shot.samples, frames=list(setup.check_frames), core_s_per_frame=per_frame,
                           overhead_core_s=overhead,
                           cost=reference_cost(per_frame, overhead, len(shot.frames.frames), setup.chunk_size))


def _measure_candidate(setup: CalibrationSetup, candidate: CandidateSetup, graph: JobGraph, shot: Shot,
                       full: ReferenceResult) -> CandidateResult:
    from farmplug.imageio import read_frame
    from farmplug.quality import measure
    from farmplug.render.base import frame_path

    plan, _shot, _ = load_plan(candidate.plan_file)
    name, out_dir = candidate.name, Path(setup.out_dir)
    tasks = _candidate_tasks(graph, candidate)
    records = _records(graph, tasks)
    verdicts = {}
    for task in tasks:
        if task.verdicts:
            verdicts.update({v.frame: v for v in load_model(ConfidenceRecord, task.verdicts).frames})
    failed = [f for f, v in verdicts.items() if not v.passed]
    final = run_layout(Path(candidate.run_dir), shot).final
    rows = []
    for frame in setup.check_frames:
        verdict = verdicts.get(frame)
        source = "rendered" if verdict is None else ("interpolated" if verdict.passed else "fallback")
        reference = read_frame(frame_path(setup.reference_pattern, frame)).feature("color")
        result = read_frame(frame_path(final, frame)).feature("color")
        if result.shape != reference.shape:
            raise FarmplugError(f"calibration {name}: frame {frame} is {result.shape[:2]}, the reference {reference.shape[:2]}")
        quality, error = measure(reference, result, error_map=True)
        thumb, flip_png = _check_images(out_dir, shot, name, frame, result, error)
        rows.append(CheckFrame(frame=frame, source=source, confidence=verdict.score if verdict else None,
                               **quality.as_dict(), thumbnail=thumb, error_map=flip_png))
    measured = measured_cost(records, made=len(verdicts), failed=len(failed))
    cost = estimate_cost(measured, plan, shot)
    pairs = pairs_in(setup.check_frames)
    flicker = (sum(scores := flicker_of(setup.reference_pattern, final, pairs)) / len(scores)) if pairs else None

    def mean(key: str) -> float:
        return sum(getattr(r, key) for r in rows) / len(rows)

    result = CandidateResult(
        name=name, samples_factor=plan.samples_factor, samples=plan.samples_for(shot), frame_step=plan.frame_step,
        stages=[f"{s.kind}:{s.backend}" for s in plan.stages], passes=sorted(plan.passes()), frames=rows,
        flip_mean=mean("flip_mean"), flip_p95=mean("flip_p95"), psnr=mean("psnr"), ssim=mean("ssim"),
        measured=measured, cost=cost, predicted_ratio=full.cost.total_core_s / cost.total_core_s,
        flicker=flicker, flicker_pairs=pairs,
    )
    log.info(
        "%s: %d spp, FLIP mean %.4f (p95 %.4f), PSNR %.1f dB; %.2f core-s/frame, shot %.0f core-s, %.1fx cheaper%s",
        name, result.samples, result.flip_mean, result.flip_p95, result.psnr, cost.per_frame_core_s, cost.total_core_s,
        result.predicted_ratio,
        f"; {len(failed)}/{len(verdicts)} frames made between keyframes failed their check" if verdicts else "",
    )
    return result


def measure_calibration(setup_file: Path) -> tuple[CalibrationResult, TimingRecord]:
    """The calibration task: measure every candidate, choose, write ``calibration.json`` and ``plan.yaml``.

    Returns:
        The result and the task's own timing record (its measuring is part of the calibration's cost).

    Raises:
        FarmplugError: a calibration task has not run, or its frames or records are missing or corrupt.
    """
    from farmplug.timing import FrameTiming, Stopwatch

    started = time.time()
    setup_file = Path(setup_file)
    setup = load_model(CalibrationSetup, setup_file)
    graph = load_graph(setup_file.parent)
    shot = load_shot(setup.shot_file)
    out_dir = Path(setup.out_dir)
    with Stopwatch() as work:
        spent_tasks = sum(r.cpu_s for _t, r in _records(graph, [t for t in graph.tasks if t.id != MEASURE_TASK]))
        reference = _measure_reference(setup, shot, graph)
        results = [_measured(setup, c, graph, shot, reference, setup_file.parent) for c in setup.candidates]
        choice = choose(results, full_core_s=reference.cost.total_core_s, flip_mean_max=setup.flip_mean_max,
                        flip_p95_max=setup.flip_p95_max, flicker_max=setup.flicker_max)
        plan_path = out_dir / PLAN_FILE
        plan_file = None
        target = QualityTarget(flip_mean_max=setup.flip_mean_max, flicker_max=setup.flicker_max)
        if choice.chosen is not None:
            chosen = next(c for c in setup.candidates if c.name == choice.chosen.name)
            plan, _shot, _ = load_plan(chosen.plan_file)
            plan = plan.model_copy(update={"shot": setup.chosen_plan_shot, "check_frames": list(setup.check_frames),
                                           "quality_target": target, "calibration": CALIBRATION_FILE})
            save_model(plan, plan_path)
            plan_file = PLAN_FILE
            # Said once, by whoever shows the result (the CLI prints it; calibration.json keeps it).
            log.debug("chose %s: %s", chosen.name, choice.reason)
        else:
            if plan_path.is_file():
                # A plan left by an earlier calibration must not outlive this verdict.
                plan_path.unlink()
                log.info("removed %s from an earlier calibration", plan_path)
            log.debug("recommendation: full render: %s", choice.reason)
        result = CalibrationResult(
            shot=setup.shot_file, shot_name=shot.name, frames=len(shot.frames.frames), check_frames=setup.check_frames,
            chunk_size=setup.chunk_size, flip_mean_max=setup.flip_mean_max, flip_p95_max=setup.flip_p95_max,
            flicker_max=setup.flicker_max,
            reference=reference, candidates=choice.candidates, recommendation=choice.recommendation, reason=choice.reason,
            plan_file=plan_file, wall_s=time.time() - setup.started_at if setup.started_at else 0.0,
            skipped=setup.skipped, shared_by=setup.shared_by,
        )
    # The budget is a share of the full render of every shot that shares the calibration.
    full = reference.core_s_per_frame * sum(s.frames for s in setup.shared_by) if setup.shared_by else 0.0
    full = max(full, reference.cost.total_core_s)
    result = result.model_copy(update={"budget": BudgetStatement(
        share=setup.budget_share, budget_core_s=setup.budget_share * full if setup.budget_share is not None else None,
        spent_core_s=spent_tasks + setup.measuring_core_s_before + work.cpu_s, full_render_core_s=full,
        rounds=setup.rounds)})
    save_model(result, out_dir / CALIBRATION_FILE)
    # Earlier rounds' measuring is this record's overhead, so the report charges every round.
    record = TimingRecord(task=MEASURE_TASK, stage=MEASURE_LAYER, role="plan", backend="farmplug",
                          started_at=started, finished_at=time.time(), overhead_cpu_s=setup.measuring_core_s_before,
                          frames=[FrameTiming(frame=0, wall_s=work.wall_s, cpu_s=work.cpu_s)])
    return result, record


__all__ = [
    "CALIBRATION_FILE",
    "DEFAULT_BUDGET_SHARE",
    "DEFAULT_FACTORS",
    "FULL_RENDER",
    "CalibrationJob",
    "CalibrationResult",
    "CalibrationSetup",
    "Candidate",
    "CandidateResult",
    "CheckFrame",
    "Choice",
    "CostEstimate",
    "LayerCost",
    "MeasuredCost",
    "ReferenceResult",
    "SharedShot",
    "calibration_for",
    "check_reusable",
    "reuse_calibration",
    "SkippedCandidate",
    "BudgetStatement",
    "choose",
    "compile_calibration",
    "default_candidates",
    "estimate_cost",
    "measure_calibration",
    "measured_cost",
    "reference_cost",
    "summary_table",
]
