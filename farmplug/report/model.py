"""The savings-and-quality report: one pydantic model per section, written as ``report.json``.

The report is the input of the HTML page (:mod:`farmplug.report.html`) and the record a producer
or a script reads back later, so it is a strict boundary model with a ``schema_version``.
Costs are in core-seconds (CPU core time, or GPU time converted by the caller) so that renders
and AI stages on different backends add up.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from farmplug.errors import FarmplugError
from farmplug.schema import StrictModel

SECONDS_PER_DAY = 86400.0


class QualityFigures(StrictModel):
    """Quality of one image against the full-quality reference.

    Attributes:
        flip_mean: Mean HDR-FLIP error (0 = identical, 1 = worst).
        flip_p95: 95th percentile of the per-pixel HDR-FLIP error.
        psnr: PSNR of the tone-mapped images in dB.
        ssim: Mean SSIM of the tone-mapped images (1 = identical).
    """

    flip_mean: float
    flip_p95: float
    psnr: float
    ssim: float


class FrameQuality(StrictModel):
    """Quality evidence for one check frame.

    Attributes:
        frame: Frame number.
        result: The plan's delivered frame (e.g. denoised) against the full-quality reference.
        before_post: The reduced render before AI post (e.g. noisy) against the reference.
        thumbnails: PNG file names relative to the run dir, keyed ``reference``,
            ``before_post``, ``result`` and ``flip``. Any may be missing.
    """

    frame: int
    result: QualityFigures
    before_post: QualityFigures | None = None
    thumbnails: dict[str, str] = Field(default_factory=dict)
    source: Literal["rendered", "interpolated", "fallback"] = "rendered"
    confidence: float | None = None


class FlickerPair(StrictModel):
    """The temporal instability of the delivered frames ``frame - 1`` and ``frame`` against the references'."""

    frame: int
    flicker: float = Field(ge=0)


class QualitySummary(StrictModel):
    """Quality over all check frames and the verdict against the target.

    Attributes:
        flip_mean: Mean over frames of the per-frame FLIP mean.
        flip_p95: FLIP 95th percentile summary over frames (the caller's choice, e.g. the max).
        psnr_mean: Mean PSNR in dB.
        ssim_mean: Mean SSIM.
        flip_target: The FLIP-mean target the plan was chosen for, if any.
        meets_target: Whether the plan meets ``flip_target`` (None when there is no target).
        frames: Per check frame evidence.
    """

    flip_mean: float
    flip_p95: float
    psnr_mean: float
    ssim_mean: float
    flip_target: float | None = None
    meets_target: bool | None = None
    frames: list[FrameQuality]
    flicker: float | None = Field(
        default=None, description="temporal instability over the consecutive check frames (None: no pairs)")
    flicker_pairs: list[FlickerPair] = Field(default_factory=list, description="per pair (t - 1, t)")
    flicker_target: float | None = None


class StageCost(StrictModel):
    """Measured cost of one stage of the job graph.

    Attributes:
        stage: Stage name, e.g. ``render``, ``denoise:oidn``.
        role: ``plan`` (part of the cheap pipeline) or ``reference`` (full-quality check renders).
        backend: Where it ran, e.g. ``local``.
        tasks: Number of farm tasks.
        frames: Number of frames processed.
        core_seconds: Total core-seconds, overheads included.
        wall_seconds: Wall-clock seconds.
        overhead_core_seconds: The part of ``core_seconds`` spent outside frame work
            (start-up, model load, I/O).
    """

    stage: str
    role: Literal["plan", "reference"]
    backend: str
    tasks: int
    frames: int
    core_seconds: float
    wall_seconds: float
    overhead_core_seconds: float


class LongerShot(StrictModel):
    """The measured per-frame costs on ``frames`` frames, the calibration paid once (a projection)."""

    frames: int = Field(ge=1)
    ratio: float = Field(gt=0)


class Savings(StrictModel):
    """The headline: what a traditional full render would cost against the plan.

    Attributes:
        frames: Frames in the shot.
        core_seconds_full: Traditional full render of every frame (extrapolated from check frames).
        core_seconds_plan: The plan, everything counted (reduced render, AI stages, overheads).
        ratio: ``core_seconds_full / core_seconds_plan``.
        core_seconds_checks: Cost of rendering the full-quality check frames (evidence, not plan).
        ratio_including_checks: ``core_seconds_full / (core_seconds_plan + core_seconds_checks)``.
        ratio_without_calibration: ``core_seconds_full / (core_seconds_plan - core_seconds_calibration)``:
            the saving of running the chosen plan again, without the one-off calibration; None
            when no calibration is counted.
        full_core_seconds_per_frame: Measured full-render cost per frame.
        plan_core_seconds_per_frame: Plan cost per delivered frame.
        measured_frames_full: Check frames the full cost was measured on.
        method: One sentence: what was measured and what extrapolated.
    """

    frames: int
    core_seconds_full: float
    core_seconds_plan: float
    ratio: float
    core_seconds_checks: float
    core_seconds_calibration: float = Field(
        default=0.0, description="part of core_seconds_plan: the calibration that chose the plan"
    )
    ratio_including_checks: float
    ratio_without_calibration: float | None = None
    full_core_seconds_per_frame: float
    plan_core_seconds_per_frame: float
    measured_frames_full: list[int]
    method: str
    render_fixed_share: float | None = Field(
        default=None, ge=0, le=1,
        description="of the plan's render cost per frame, the part that does not shrink with fewer samples: task "
                    "start-up (process, scene load) per frame plus each frame's fixed part (scene sync, BVH, film); "
                    "None when the renderer did not measure the split")
    longer_shots: list[LongerShot] = Field(
        default_factory=list,
        description="a projection, not a measurement: the ratio on a longer shot of the same frames, the one-off "
                    "calibration counted once")


class ShotInfo(StrictModel):
    """The shot as the artist set it up (full quality)."""

    name: str
    scene: str
    frame_start: int
    frame_end: int
    width: int
    height: int
    full_samples: int


class PlanInfo(StrictModel):
    """The cheap plan that was run.

    Attributes:
        samples: Samples per pixel of the reduced render.
        samples_factor: ``samples / full_samples``.
        resolution_scale: Render resolution relative to the shot (1 = full).
        frame_step: Render every n-th frame (1 = all).
        stages: AI post stages in order, e.g. ``["denoise:oidn"]``.
        check_frames: Frames rendered at full quality to measure quality and full cost.
    """

    samples: int
    samples_factor: float
    resolution_scale: float
    frame_step: int
    stages: list[str]
    check_frames: list[int]


class MachineInfo(StrictModel):
    """The machine the costs were measured on."""

    host: str
    cores: int
    cpu: str
    platform: str


class InbetweenSummary(StrictModel):
    """What the inbetween stage did: frames interpolated, frames sent back to render, what it saved.

    Attributes:
        frame_step: Every how many frames a frame was rendered.
        threshold: Frame confidence needed to deliver an interpolated frame.
        interpolated: Frames delivered as interpolated.
        fallback: Frames the stage could not vouch for, rendered for real instead.
        mean_score: Mean frame confidence over every interpolated candidate.
        core_seconds_every_frame: What rendering and post-processing every frame at the plan's
            reduced settings would have cost (measured per-frame cost of the keyframes x all frames).
        extra_saving_core_seconds: That, minus what the plan cost: the saving the frame step adds.
    """

    frame_step: int
    threshold: float
    interpolated: list[int]
    fallback: list[int]
    mean_score: float | None
    core_seconds_every_frame: float
    extra_saving_core_seconds: float


# ----------------------------------------------------------------------------- show report


class Figures(StrictModel):
    """The headline numbers of one shot, one sequence or the whole show (one row of ``report.csv``).

    Money fields are exact decimals in ``currency`` (strings in JSON, never rounded; round only to
    show them) and are None when no prices were given;
    makespans are None when no capacity was given. Ratios are only computed from non-zero
    costs (a zero cost is an error upstream, never an infinite ratio).

    Attributes:
        level: ``shot``, ``sequence`` or ``show``.
        name: Shot name, sequence name, or ``show``.
        sequence: The sequence a shot belongs to (None for the show row).
        shots: Shots counted in this row.
        frames: Delivered frames.
        full_core_hours: Traditional full render (extrapolated from the check frames).
        plan_core_hours: The plan as run (measured on every task).
        check_core_hours: The full-quality check frames (evidence, not part of the plan).
        saved_core_hours: ``full_core_hours - plan_core_hours``.
        ratio: ``full_core_hours / plan_core_hours``.
        calibration_core_hours: The part of ``plan_core_hours`` spent calibrating (choosing the plan).
        ratio_without_calibration: ``full_core_hours / (plan_core_hours - calibration_core_hours)``;
            None when no calibration is counted.
        full_cost: Full render at the prices.
        plan_cost: The plan at the prices.
        check_cost: The check frames at the prices.
        saved_cost: ``full_cost - plan_cost``.
        cost_ratio: ``full_cost / plan_cost``.
        full_makespan_s: Simulated farm time of the full render, seconds.
        plan_makespan_s: Simulated farm time of the plan, seconds.
        saved_days: ``(full_makespan_s - plan_makespan_s)`` in days.
        check_frames: Check frames the quality figures are over.
        flip_mean: Mean FLIP error over the check frames (frame-weighted across shots).
        flip_p95: Mean over the check frames of each frame's FLIP 95th percentile.
        psnr_mean: Mean PSNR in dB over the check frames.
        fallback_frames: Interpolated frames that failed their confidence check and were rendered.
        shots_failing_target: Shots whose quality misses their plan's FLIP target.
    """

    level: Literal["shot", "sequence", "show"]
    name: str
    sequence: str | None = None
    shots: int
    frames: int
    full_core_hours: float
    plan_core_hours: float
    check_core_hours: float
    saved_core_hours: float
    ratio: float
    calibration_core_hours: float = 0.0
    ratio_without_calibration: float | None = None
    currency: str | None = None
    full_cost: Decimal | None = None
    plan_cost: Decimal | None = None
    check_cost: Decimal | None = None
    saved_cost: Decimal | None = None
    cost_ratio: float | None = None
    full_makespan_s: float | None = None
    plan_makespan_s: float | None = None
    saved_days: float | None = None
    check_frames: int
    flip_mean: float
    flip_p95: float
    psnr_mean: float
    fallback_frames: int
    shots_failing_target: int

    @classmethod
    def of(
        cls, level: str, name: str, *, sequence: str | None, shots: int, frames: int, full_s: float, plan_s: float,
        check_s: float, calibration_s: float, currency: str | None, full_cost: Decimal | None, plan_cost: Decimal | None,
        check_cost: Decimal | None, full_makespan: float | None, plan_makespan: float | None,
        quality: list[tuple[int, float, float, float]], fallback: int, failing: int,
    ) -> Figures:
        """One row from its sums; ``quality`` is (check frames, FLIP mean, FLIP p95, PSNR) per shot,
        weighted by frames.

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
        rerun_s = plan_s - calibration_s
        return cls(
            level=level, name=name, sequence=sequence, shots=shots, frames=frames,
            full_core_hours=full_s / 3600, plan_core_hours=plan_s / 3600, check_core_hours=check_s / 3600,
            saved_core_hours=(full_s - plan_s) / 3600, ratio=full_s / plan_s,
            calibration_core_hours=calibration_s / 3600,
            ratio_without_calibration=full_s / rerun_s if calibration_s > 0 and rerun_s > 0 else None,
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


class ShotEntry(StrictModel):
    """One shot of a show report: its figures and the evidence behind them.

    Attributes:
        run_dir: The run folder the shot was read from.
        figures: The shot's row.
        shot: The shot as set up.
        plan: The plan that ran.
        savings: Core-second savings and how they were measured.
        quality: Quality on the check frames (thumbnail names relative to the report folder).
        fallback: Frames rendered after their interpolation failed the confidence check.
        hosts: Hosts the tasks ran on.
        quality_from: ``measured`` now, or the run's ``report.json`` it was reused from.
        notes: What the shot's figures need said (hosts, GPU work, calibration, fallback frames).
    """

    run_dir: str
    figures: Figures
    shot: ShotInfo
    plan: PlanInfo
    savings: Savings
    quality: QualitySummary
    fallback: list[int] = Field(default_factory=list)
    hosts: list[str]
    quality_from: str
    notes: list[str] = Field(default_factory=list)


class PricesInfo(StrictModel):
    """The prices the money figures use (amounts per hour, in ``currency``).

    Attributes:
        default: True when no prices were given and farmplug's example prices were used.
    """

    source: str
    default: bool = False
    currency: str
    cpu_core_hour: Decimal | None = None
    ghz_hour: Decimal | None = None
    cpu_ghz: Decimal | None = None
    gpu_hour: Decimal | None = None
    licence_node_hour: Decimal | None = None


class CapacityInfo(StrictModel):
    """The farm the makespans are simulated on.

    Attributes:
        core_speed: Per-core speed of its nodes relative to the measuring machine (CPU task
            durations are divided by it).
    """

    source: str
    cpu_nodes: int
    cores_per_node: int
    gpus: int
    core_speed: float = 1.0


class Assumptions(StrictModel):
    """What the figures rest on: prices, capacity, what was measured and what extrapolated.

    Attributes:
        prices: None when no prices were given (figures are in core-hours only).
        capacity: None when no capacity was given (no makespans).
        measured: What was measured.
        extrapolated: What was extrapolated or simulated.
        machines: The machines (host · CPU) the timings were measured on.
        sequence_rule: How shots were grouped into sequences.
        detail_shots: Shots shown with thumbnails and timelines (the first ones, in order).
    """

    prices: PricesInfo | None = None
    capacity: CapacityInfo | None = None
    measured: list[str]
    extrapolated: list[str]
    machines: list[str]
    sequence_rule: str
    detail_shots: int


class Projection(StrictModel):
    """The measured savings applied to a show size the producer gave: a projection, not a measurement.

    Per-frame costs are the measured ones (full render: the check frames' cost extrapolated to the
    shot; plan: every task, calibration included) times the projected frames, and times
    ``pixel_scale`` when a resolution is given (cost assumed proportional to pixel count), so
    ``ratio`` is the measured one.

    Attributes:
        frames: Frames projected.
        width: Resolution projected at, or None (the measured resolution).
        height: See ``width``.
        pixel_scale: Projected pixels per frame over the measured ones (frame-weighted); 1 without
            a resolution.
        measured_frames: Frames the per-frame costs were measured on (every shot reported).
        full_core_hours: Projected full render.
        plan_core_hours: Projected plan.
        saved_core_hours: ``full_core_hours - plan_core_hours``.
        ratio: ``full_core_hours / plan_core_hours`` (the measured ratio).
        full_cost: Projected full render at the prices (None without prices).
        plan_cost: Projected plan at the prices.
        saved_cost: ``full_cost - plan_cost``.
        assumptions: What the projection assumes, one sentence each.
    """

    frames: int = Field(ge=1)
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    pixel_scale: float
    measured_frames: int
    full_core_hours: float
    plan_core_hours: float
    saved_core_hours: float
    ratio: float
    currency: str | None = None
    full_cost: Decimal | None = None
    plan_cost: Decimal | None = None
    saved_cost: Decimal | None = None
    assumptions: list[str]


class ShowReport(StrictModel):
    """A report over one or more runs (shots): per shot, per sequence and for the show.

    Serialised as ``report.json`` of the show report folder; ``report.csv`` holds the same
    :class:`Figures` rows (shots, then sequences, then the show). ``costs`` sums the stage costs
    of every shot (core-seconds per stage, role and backend).
    """

    schema_version: Literal[1] = 1
    kind: Literal["show"] = "show"
    generated_at: str
    farmplug_version: str
    show: Figures
    sequences: list[Figures]
    shots: list[ShotEntry]
    costs: list[StageCost] = Field(default_factory=list)
    assumptions: Assumptions
    notes: list[str] = Field(default_factory=list)
    projection: Projection | None = None


class Report(StrictModel):
    """Everything the savings report of one run shows; serialised as ``report.json``.

    A single run is the show report of one shot: ``figures`` is its row of ``report.csv`` (money
    at the given or default prices, farm time with a capacity), ``assumptions`` what the figures
    rest on, ``projection`` the measured savings applied to a show size the producer gave. The
    three are None in a report written before they existed.
    """

    schema_version: Literal[1] = 1
    kind: Literal["shot"] = "shot"
    generated_at: str
    farmplug_version: str
    shot: ShotInfo
    plan: PlanInfo
    savings: Savings
    quality: QualitySummary
    costs: list[StageCost]
    machine: MachineInfo
    inbetween: InbetweenSummary | None = None
    notes: list[str] = Field(default_factory=list)
    figures: Figures | None = None
    assumptions: Assumptions | None = None
    projection: Projection | None = None

    def row(self) -> Figures:
        """The run's ``report.csv`` row: ``figures``, or for a report written before reports carried
        it, the row its savings and quality give (core-hours only: no money, no farm time).

        Raises:
            FarmplugError: the plan's cost is zero, or no check frame was scored.
        """
        if self.figures is not None:
            return self.figures
        s, q = self.savings, self.quality
        return Figures.of(
            "shot", self.shot.name, sequence=None, shots=1, frames=s.frames, full_s=s.core_seconds_full,
            plan_s=s.core_seconds_plan, check_s=s.core_seconds_checks, calibration_s=s.core_seconds_calibration,
            currency=None, full_cost=None, plan_cost=None, check_cost=None, full_makespan=None, plan_makespan=None,
            quality=[(len(q.frames), q.flip_mean, q.flip_p95, q.psnr_mean)],
            fallback=len(self.inbetween.fallback) if self.inbetween else 0, failing=1 if q.meets_target is False else 0,
        )
