"""Calibration's choice and cost logic on hand-made measurements (no rendering)."""

from __future__ import annotations

import math

import pytest

from farmplug.calibrate import (
    FULL_RENDER,
    Candidate,
    CandidateResult,
    CostEstimate,
    LayerCost,
    MeasuredCost,
    choose,
    default_candidates,
    estimate_cost,
    reference_cost,
)
from farmplug.errors import ConfigError
from farmplug.execute import run_calibration as calibrate
from farmplug.models import FrameRangeModel, QualityTarget, Resolution, Shot


def shot(frames: int = 24) -> Shot:
    return Shot(name="s", scene="s.blend", frames=FrameRangeModel(start=1, end=frames),
                resolution=Resolution(width=64, height=36), samples=1024, output="out/s.####.exr")


def result(name: str, flip: float, total: float, *, step: int = 1, factor: float = 1 / 32, p95: float | None = None) -> CandidateResult:
    return CandidateResult(
        name=name, samples_factor=factor, samples=32, frame_step=step, stages=["denoise:oidn"], passes=[], frames=[],
        flip_mean=flip, flip_p95=p95 if p95 is not None else flip * 2, psnr=30.0, ssim=0.9,
        measured=MeasuredCost(layers={"render": LayerCost(core_s_per_frame=1.0, overhead_core_s=1.0)}),
        cost=CostEstimate(frames=24, tasks=6, per_frame_core_s=total / 24, fixed_core_s=0.0, total_core_s=total),
        predicted_ratio=1000.0 / total,
    )


def test_cheapest_candidate_meeting_the_target_is_chosen():
    choice = choose(
        [result("too-noisy", 0.15, 50), result("expensive", 0.05, 300), result("good", 0.09, 120)],
        full_core_s=1000, flip_mean_max=0.1,
    )
    assert choice.recommendation == "good"
    assert choice.chosen.name == "good"
    assert [c.chosen for c in choice.candidates] == [False, False, True]
    assert [c.meets_target for c in choice.candidates] == [False, True, True]
    assert "misses the target" in choice.candidates[0].reason
    assert "good" in choice.reason and "1000" in choice.reason


def test_none_meets_the_target_recommends_the_full_render_with_the_reason():
    choice = choose([result("a", 0.2, 50), result("b", 0.12, 100)], full_core_s=1000, flip_mean_max=0.1)
    assert choice.recommendation == FULL_RENDER
    assert choice.chosen is None
    assert not any(c.chosen or c.meets_target for c in choice.candidates)
    assert "no candidate meets" in choice.reason and "b" in choice.reason and "0.1200" in choice.reason


def test_meeting_the_target_but_not_saving_is_not_chosen():
    choice = choose([result("dear", 0.01, 1200)], full_core_s=1000, flip_mean_max=0.1)
    assert choice.recommendation == FULL_RENDER
    assert choice.candidates[0].meets_target and not choice.candidates[0].chosen
    assert "none costs less than the full render" in choice.reason


@pytest.mark.parametrize(
    ("candidates", "winner"),
    [
        pytest.param([result("worse", 0.09, 100), result("better", 0.05, 100)], "better", id="equal-cost-better-quality"),
        pytest.param([result("step", 0.05, 100, step=2), result("plain", 0.05, 100)], "plain", id="equal-then-no-frame-step"),
        pytest.param([result("fewer", 0.05, 100, factor=1 / 64), result("more", 0.05, 100, factor=1 / 16)], "more",
                     id="equal-then-more-samples"),
        pytest.param([result("b", 0.05, 100), result("a", 0.05, 100)], "a", id="all-equal-by-name"),
    ],
)
def test_ties(candidates, winner):
    assert choose(candidates, full_core_s=1000, flip_mean_max=0.1).recommendation == winner


def test_p95_bound_when_given():
    candidates = [result("spiky", 0.05, 50, p95=0.4), result("even", 0.08, 80, p95=0.2)]
    assert choose(candidates, full_core_s=1000, flip_mean_max=0.1).recommendation == "spiky"
    choice = choose(candidates, full_core_s=1000, flip_mean_max=0.1, flip_p95_max=0.3)
    assert choice.recommendation == "even"
    assert "p95 0.4000 > 0.3" in choice.candidates[0].reason


def test_no_candidates_is_an_error():
    with pytest.raises(ConfigError, match="no calibration candidates"):
        choose([], full_core_s=1, flip_mean_max=0.1)


MEASURED = dict(layers={
    "render": LayerCost(core_s_per_frame=10.0, overhead_core_s=5.0),
    "denoise": LayerCost(core_s_per_frame=1.0, overhead_core_s=2.0),
    "inbetween": LayerCost(core_s_per_frame=0.5),
})


def test_every_frame_plan_cost_counts_each_task_start_up():
    plan = Candidate(1 / 32).plan(shot="shot.yaml", target=QualityTarget(), chunk_size=8)
    cost = estimate_cost(MeasuredCost(**MEASURED), plan, shot(24))
    assert cost.tasks == 6  # 3 render + 3 denoise chunks
    assert cost.per_frame_core_s == pytest.approx(11.0)
    assert cost.fixed_core_s == pytest.approx(3 * 5 + 3 * 2)
    assert cost.total_core_s == pytest.approx(24 * 11 + 21)


def test_frame_step_cost_includes_expected_fallbacks():
    plan = Candidate(1 / 32, frame_step=2).plan(shot="shot.yaml", target=QualityTarget(), chunk_size=8)
    # 24 frames, step 2: keyframes 1,3,...,23,24 (13) in chunks of 8 and 5; in-between frames
    # 2..16 (8, first inbetween/fallback task) and 18,20,22 (3, second).
    none_fail = estimate_cost(MeasuredCost(**MEASURED, fallback_rate=0.0), plan, shot(24))
    half_fail = estimate_cost(MeasuredCost(**MEASURED, fallback_rate=0.5), plan, shot(24))
    frame_work = 13 * 11 + 11 * 0.5
    assert none_fail.per_frame_core_s == pytest.approx(frame_work / 24)
    assert none_fail.fixed_core_s == pytest.approx(2 * 5 + 2 * 2)
    assert half_fail.per_frame_core_s == pytest.approx((frame_work + 0.5 * 11 * 11) / 24)
    expected_start_ups = (1 - 0.5**8) + (1 - 0.5**3)
    assert half_fail.fixed_core_s == pytest.approx(2 * 5 + 2 * 2 + expected_start_ups * 7)
    assert half_fail.total_core_s == pytest.approx(half_fail.per_frame_core_s * 24 + half_fail.fixed_core_s)
    # Everything failing costs more than rendering every frame: the frame step would not pay.
    all_fail = estimate_cost(MeasuredCost(**MEASURED, fallback_rate=1.0), plan, shot(24))
    every_frame = estimate_cost(MeasuredCost(**MEASURED), Candidate(1 / 32).plan(shot="shot.yaml", target=QualityTarget()), shot(24))
    assert all_fail.total_core_s > every_frame.total_core_s


def test_reference_cost_pays_one_start_up_per_chunk():
    cost = reference_cost(60.0, 4.0, 24, 8)
    assert (cost.tasks, cost.total_core_s) == (3, 24 * 60 + 3 * 4)
    assert reference_cost(60.0, 4.0, 25, 8).tasks == 4


@pytest.mark.parametrize(
    ("candidate", "name"),
    [
        pytest.param(Candidate(1 / 32), "x1-32_denoise", id="factor"),
        pytest.param(Candidate(1 / 16, frame_step=2), "x1-16_step2_denoise_inbetween", id="step"),
        pytest.param(Candidate(0.3, post=()), "x3-10", id="no-denoise"),
        pytest.param(Candidate(1 / math.pi), "x0.31831_denoise", id="irrational"),
    ],
)
def test_candidate_names(candidate, name):
    assert candidate.name == name


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(dict(samples_factor=0), id="zero-factor"),
        pytest.param(dict(samples_factor=1.5), id="factor-above-1"),
        pytest.param(dict(samples_factor=0.5, frame_step=0), id="zero-step"),
    ],
)
def test_bad_candidates_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        Candidate(**kwargs)


def test_default_candidates_add_a_frame_step_only_on_longer_shots_and_each_stage_variant():
    assert [c.frame_step for c in default_candidates(shot(4))] == [1] * 12
    assert [c.frame_step for c in default_candidates(shot(24))] == [1] * 12 + [2] * 12
    # The variants come from the stages' configs (the denoiser offers its balanced filter and
    # its temporal backend).
    assert [c.name for c in default_candidates(shot(4))][3::4] == [
        "x1-8_denoise", "x1-8_denoise-balanced", "x1-8_denoise-temporal"]
    assert Candidate(1 / 8, variants=("denoise-temporal",)).stages()[0].backend == "temporal"
    balanced = Candidate(1 / 64, variants=("denoise-balanced",)).stages()
    assert balanced[0].kind == "denoise" and balanced[0].quality == "balanced"
    with pytest.raises(ConfigError, match="'denoise-ultra' is not offered .*offered: denoise-balanced, denoise-temporal"):
        Candidate(1 / 64, variants=("denoise-ultra",)).stages()


def test_bad_input_is_refused_before_rendering(tmp_path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        calibrate(tmp_path / "missing.yaml", tmp_path / "out")
    (tmp_path / "bad.yaml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        calibrate(tmp_path / "bad.yaml", tmp_path / "out")
    shot_file = tmp_path / "shot.yaml"
    shot_file.write_text(shot().model_dump_json())
    with pytest.raises(ConfigError, match="s.blend"):
        calibrate(shot_file, tmp_path / "out")
    (tmp_path / "s.blend").write_bytes(b"")
    with pytest.raises(ConfigError, match="no calibration candidates"):
        calibrate(shot_file, tmp_path / "out", candidates=[])
    with pytest.raises(ConfigError, match="repeat"):
        calibrate(shot_file, tmp_path / "out", candidates=[Candidate(0.5), Candidate(0.5)])
    with pytest.raises(ConfigError, match="crop"):
        calibrate(shot_file, tmp_path / "out", crop=0.5)
    assert not (tmp_path / "out").exists()


def test_a_persistent_data_render_s_first_frame_sync_is_a_per_task_cost():
    """Cycles syncs the scene on a task's first frame only: measured on a 3-frame task, a render
    layer must predict an 8-frame task as start-up + first-frame sync once + 8 cheap frames."""
    from farmplug.calibrate import measured_cost
    from farmplug.graph import Task
    from farmplug.timing import FrameTiming, RenderCostSplit, TimingRecord

    frames = [FrameTiming(frame=f, wall_s=1, cpu_s=c, sampling_cpu_s=0.5) for f, c in ((1, 3.0), (2, 1.0), (3, 1.0))]
    split = RenderCostSplit.from_frames(frames, samples=8, persistent_data=True)
    record = TimingRecord(task="render-0001-0003", stage="render", backend="blender", started_at=0, finished_at=1,
                          overhead_cpu_s=1.0, frames=frames, render_cost=split)
    task = Task(id="render-0001-0003", layer="render", kind="render", stage="render", role="plan", frames=[1, 2, 3],
                argv=["run"], outputs=[], timing="t.json")
    layer = measured_cost([(task, record)]).layers["render"]
    assert layer.overhead_core_s == pytest.approx(1.0 + (2.5 - 0.5))  # start-up + the first frame's extra sync
    assert layer.core_s_per_frame == pytest.approx(1.0)  # a later frame: 0.5 fixed + 0.5 sampling
    assert layer.overhead_core_s + 3 * layer.core_s_per_frame == pytest.approx(record.cpu_s)  # exact on its own task
    plain = measured_cost([(task, record.model_copy(update={"render_cost": None}))]).layers["render"]
    assert (plain.overhead_core_s, plain.core_s_per_frame) == (pytest.approx(1.0), pytest.approx(5.0 / 3))


def test_the_fallback_rate_is_costed_at_its_upper_confidence_bound():
    """Three frames measured say little: the estimate uses the rate's upper 90% bound."""
    from farmplug.calibrate import fallback_upper_bound, measured_cost

    # No failure in n: the bound solves (1 - p)^n = 0.1 exactly.
    for n in (1, 3, 30):
        assert fallback_upper_bound(0, n) == pytest.approx(1 - 0.1 ** (1 / n), abs=1e-9)
    assert fallback_upper_bound(3, 3) == 1.0
    bounds = [fallback_upper_bound(k, 10) for k in range(11)]
    assert bounds == sorted(bounds) and all(b >= k / 10 for k, b in enumerate(bounds))
    assert fallback_upper_bound(1, 3) > 0.75 > fallback_upper_bound(10, 100) > 0.1  # more frames, a tighter bound
    measured = measured_cost([], made=3, failed=1)
    assert measured.fallback_rate == pytest.approx(1 / 3)
    assert measured.fallback_rate_bound == pytest.approx(fallback_upper_bound(1, 3))
    # The estimate uses the bound: a frame step with one failure in three costs as if most fail.
    s = shot(24)
    layers = {"render": LayerCost(core_s_per_frame=2.0, overhead_core_s=1.0),
              "denoise": LayerCost(core_s_per_frame=1.0, overhead_core_s=1.0),
              "inbetween": LayerCost(core_s_per_frame=0.5, overhead_core_s=1.0)}
    plan = Candidate(1 / 32, frame_step=2).plan(shot="s.yaml", target=QualityTarget())
    cautious = estimate_cost(MeasuredCost(layers=layers, fallback_rate=1 / 3,
                                          fallback_rate_bound=fallback_upper_bound(1, 3)), plan, s)
    naive = estimate_cost(MeasuredCost(layers=layers, fallback_rate=1 / 3), plan, s)
    assert cautious.total_core_s > naive.total_core_s


def test_a_flicker_bound_judges_the_consecutive_check_frames():
    from farmplug.calibrate import consecutive_pairs, pairs_in

    steady, flickery = result("steady", 0.05, 300), result("flickery", 0.05, 200)
    steady = steady.model_copy(update={"flicker": 0.004, "flicker_pairs": [12]})
    flickery = flickery.model_copy(update={"flicker": 0.02, "flicker_pairs": [12]})
    assert choose([steady, flickery], full_core_s=1000, flip_mean_max=0.1).recommendation == "flickery"
    judged = choose([steady, flickery], full_core_s=1000, flip_mean_max=0.1, flicker_max=0.01)
    assert judged.recommendation == "steady"
    assert "flicker 0.0200 > 0.01" in next(c for c in judged.candidates if c.name == "flickery").reason
    unmeasured = choose([result("x", 0.05, 100)], full_core_s=1000, flip_mean_max=0.1, flicker_max=0.01)
    assert unmeasured.recommendation == FULL_RENDER and "flicker not measured" in unmeasured.candidates[0].reason
    # Check frames become pairs: each with the frame before it (after it, at the shot's start).
    assert consecutive_pairs([1, 12, 24], shot(24)) == [1, 2, 11, 12, 23, 24]
    assert pairs_in([1, 2, 11, 12, 23, 24]) == [2, 12, 24]
    assert consecutive_pairs([1, 2, 11, 12, 23, 24], shot(24)) == [1, 2, 11, 12, 23, 24]  # pairs stay pairs
