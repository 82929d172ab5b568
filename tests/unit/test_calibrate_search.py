"""Calibration's search on hand-made measurements (no rendering): cheapest first, stop when known,
stay in budget, and say what was skipped and why."""

from __future__ import annotations

import pytest

from farmplug.calibrate import (
    CalibrationResult,
    Candidate,
    CandidateResult,
    CostEstimate,
    LayerCost,
    MeasuredCost,
    ReferenceResult,
    affordable_checks,
    reference_cost,
)
from farmplug.errors import ConfigError
from farmplug.search import calibration_spend, next_round, predicted_spend, structures
from tests.unit.test_calibrate_choice import shot

FULL_SPP = 1024
STEP1 = [Candidate(f) for f in (1 / 8, 1 / 64, 1 / 32, 1 / 16)]  # given out of order on purpose
STEP2 = [Candidate(f, frame_step=2) for f in (1 / 64, 1 / 32, 1 / 16, 1 / 8)]
SAMPLES = {c.name: round(FULL_SPP * c.samples_factor) for c in STEP1 + STEP2}


def measured(c: Candidate, *, meets: bool, shot_cost: float, render_per_frame: float = 2.0,
             frames: int = 3) -> CandidateResult:
    return CandidateResult(
        name=c.name, samples_factor=c.samples_factor, samples=SAMPLES[c.name], frame_step=c.frame_step,
        stages=["denoise:oidn"], passes=[], frames=[], flip_mean=0.05 if meets else 0.2, flip_p95=0.1, psnr=30.0,
        ssim=0.9, meets_target=meets,
        measured=MeasuredCost(layers={
            "render": LayerCost(core_s_per_frame=render_per_frame, overhead_core_s=1.0, frames=frames, tasks=frames),
            "denoise": LayerCost(core_s_per_frame=0.5, overhead_core_s=0.2, frames=frames, tasks=frames)}),
        cost=CostEstimate(frames=24, tasks=6, per_frame_core_s=shot_cost / 24, fixed_core_s=0.0, total_core_s=shot_cost),
        predicted_ratio=2400.0 / shot_cost,
    )


def calibration(results: list[CandidateResult], *, reference_per_frame: float = 100.0) -> CalibrationResult:
    return CalibrationResult(
        shot="/s/shot.yaml", shot_name="s", frames=24, check_frames=[2, 12, 23], chunk_size=8, flip_mean_max=0.1,
        reference=ReferenceResult(samples=FULL_SPP, frames=[2, 12, 23], core_s_per_frame=reference_per_frame,
                                  overhead_core_s=1.0, cost=reference_cost(reference_per_frame, 1.0, 24, 8)),
        candidates=results, recommendation="full render", reason="-",
    )


def names(candidates) -> list[str]:
    return [c.name for c in candidates]


def test_structures_group_by_frame_step_and_stages_from_the_fewest_samples():
    groups = structures(STEP1 + STEP2 + [Candidate(1 / 64, post=())])
    assert [names(g) for g in groups] == [
        ["x1-64_denoise", "x1-32_denoise", "x1-16_denoise", "x1-8_denoise"],
        ["x1-64_step2_denoise_inbetween", "x1-32_step2_denoise_inbetween", "x1-16_step2_denoise_inbetween",
         "x1-8_step2_denoise_inbetween"],
        ["x1-64"],
    ]


def test_the_first_round_tries_the_cheapest_of_the_first_structure_the_next_the_others_priced():
    groups = structures(STEP1 + STEP2)
    step = next_round(groups, None, samples_of=SAMPLES, budget_core_s=None, spent_core_s=0)
    assert names(step.tries) == ["x1-64_denoise"] and step.skipped == {}
    so_far = calibration([measured(STEP1[1], meets=False, shot_cost=300)])
    second = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=None, spent_core_s=0)
    assert names(second.tries) == ["x1-32_denoise", "x1-64_step2_denoise_inbetween"]
    # Within budget only what fits: the untried structure is priced as the measured x1-64 cost.
    spend = calibration_spend(so_far.candidates[0])
    tight = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=spend * 0.5, spent_core_s=0)
    assert "x1-64_step2_denoise_inbetween" in tight.skipped
    assert f"would take about {spend:.1f} core-s (as x1-64_denoise did)" in \
        tight.skipped["x1-64_step2_denoise_inbetween"].reason


def test_a_structure_stops_at_its_first_candidate_meeting_the_target_and_says_why():
    groups = structures(STEP1 + STEP2)
    so_far = calibration([measured(STEP1[1], meets=True, shot_cost=300), measured(STEP2[0], meets=False, shot_cost=150)])
    step = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=None, spent_core_s=0)
    assert names(step.tries) == ["x1-32_step2_denoise_inbetween"]
    assert sorted(step.skipped) == ["x1-16_denoise", "x1-32_denoise", "x1-8_denoise"]
    assert "x1-64_denoise, with fewer samples and the same frame step and stages, meets the target" in \
        step.skipped["x1-32_denoise"].reason


def test_a_structure_already_dearer_than_a_passing_candidate_is_closed():
    groups = structures(STEP1 + STEP2)
    so_far = calibration([measured(STEP1[1], meets=True, shot_cost=300), measured(STEP2[0], meets=False, shot_cost=320)])
    step = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=None, spent_core_s=0)
    assert step.tries == []
    reason = step.skipped["x1-8_step2_denoise_inbetween"].reason
    assert "already costs 320.0 core-s, more than x1-64_denoise (300.0)" in reason


def test_failing_structures_climb_one_candidate_per_round_until_none_is_left():
    groups = structures(STEP1)
    results = []
    for expected in ["x1-64_denoise", "x1-32_denoise", "x1-16_denoise", "x1-8_denoise"]:
        step = next_round(groups, calibration(results) if results else None, samples_of=SAMPLES, budget_core_s=None,
                          spent_core_s=0)
        assert names(step.tries) == [expected]
        results.append(measured(step.tries[0], meets=False, shot_cost=100))
    assert next_round(groups, calibration(results), samples_of=SAMPLES, budget_core_s=None, spent_core_s=0).tries == []


def test_the_spend_of_a_candidate_and_the_prediction_for_more_samples():
    tried = measured(STEP1[1], meets=False, shot_cost=100, render_per_frame=2.0, frames=3)  # x1-64: 16 spp
    assert calibration_spend(tried) == pytest.approx(3 * 2.0 + 3 * 1.0 + 3 * 0.5 + 3 * 0.2)
    # Render cost on the line through (16 spp, 2.0) and (1024 spp, 100.0): 32 spp costs 16 more
    # samples x (98 / 1008) per sample, on each of the 3 frames rendered.
    assert predicted_spend(tried, 100.0, FULL_SPP, 32) == pytest.approx(calibration_spend(tried) + 3 * 16 * 98 / 1008)


def test_a_candidate_over_the_budget_is_skipped_with_the_figures():
    groups = structures(STEP1)
    so_far = calibration([measured(STEP1[1], meets=False, shot_cost=100)])
    need = predicted_spend(so_far.candidates[0], 100.0, FULL_SPP, SAMPLES["x1-32_denoise"])
    fits = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=50 + need + 0.01, spent_core_s=50)
    assert names(fits.tries) == ["x1-32_denoise"]
    over = next_round(groups, so_far, samples_of=SAMPLES, budget_core_s=50 + need - 0.01, spent_core_s=50)
    assert over.tries == [] and sorted(over.skipped) == ["x1-16_denoise", "x1-32_denoise", "x1-8_denoise"]
    assert f"over the calibration budget: x1-32_denoise would take about {need:.1f} core-s" in \
        over.skipped["x1-16_denoise"].reason


@pytest.mark.parametrize(("frames", "share", "wanted", "checks"), [
    pytest.param(12, 0.10, 3, 1, id="12-frames-afford-one"),
    pytest.param(48, 0.10, 3, 3, id="48-frames-afford-three"),
    pytest.param(48, 0.05, 3, 2, id="48-frames-at-5pc-afford-two"),
    pytest.param(240, 0.10, 3, 3, id="never-more-than-asked"),
])
def test_check_frames_are_what_the_budget_affords(frames, share, wanted, checks):
    assert affordable_checks(shot(frames), wanted, share) == checks


def test_a_shot_too_short_for_the_budget_says_so_and_offers_the_choices():
    with pytest.raises(ConfigError) as err:
        affordable_checks(shot(8), 3, 0.10)
    message = str(err.value)
    assert "8 frames: too short to calibrate within 10% of its full render" in message
    for choice in ("--reuse CALIBRATION.json", "--budget-share 0.14", "--samples-factor 1/16"):
        assert choice in message


def test_candidates_that_differ_after_the_render_share_its_tasks(tmp_path):
    """x1-64 with the high and the balanced denoiser render the same frames: rendered once."""
    from farmplug.calibrate import compile_calibration
    from farmplug.schema import save_model

    (tmp_path / "s.blend").write_bytes(b"a scene")
    save_model(shot(24).model_copy(update={"scene": "s.blend"}), tmp_path / "shot.yaml")
    both = [Candidate(1 / 64), Candidate(1 / 64, variants=("denoise-balanced",)), Candidate(1 / 32)]
    job = compile_calibration(tmp_path / "shot.yaml", tmp_path / "out", candidates=both, budget_share=None)
    renders = [t for t in job.graph.tasks if t.kind == "render" and t.role == "plan"]
    assert [t.layer for t in renders] == ["x1-64_denoise-render", "x1-32_denoise-render"]  # x1-32 renders its own
    balanced = next(t for t in job.graph.tasks if t.layer == "x1-64_denoise-balanced-denoise")
    assert balanced.depends_on == [renders[0].id]
    assert balanced.argv[balanced.argv.index("--input") + 1] == renders[0].argv[renders[0].argv.index("--output") + 1]
    assert set(renders[0].outputs) <= set(balanced.inputs)
    setups = {c.name: c for c in job.setup.candidates}
    assert setups["x1-64_denoise-balanced"].shared_tasks == [renders[0].id]
    assert setups["x1-64_denoise"].shared_tasks == [] == setups["x1-32_denoise"].shared_tasks
    job.graph.topological()


def test_an_untried_structure_is_priced_by_the_frames_its_calibration_handles():
    """A temporal denoiser renders each check frame's neighbours too: priced at that many times
    a measured candidate's spend, it is skipped where that does not fit."""
    temporal = [Candidate(1 / 64, variants=("denoise-temporal",))]
    groups = structures(STEP1 + temporal)
    samples = SAMPLES | {temporal[0].name: 16}
    so_far = calibration([measured(STEP1[1], meets=True, shot_cost=300)])
    spend = calibration_spend(so_far.candidates[0])
    work = {"x1-64_denoise": 2, temporal[0].name: 6}
    fits_plain = next_round(groups, so_far, samples_of=samples, budget_core_s=2 * spend, spent_core_s=0)
    assert names(fits_plain.tries) == [temporal[0].name]
    priced = next_round(groups, so_far, samples_of=samples, budget_core_s=2 * spend, spent_core_s=0, work_of=work)
    assert priced.tries == [] and f"about {3 * spend:.1f} core-s" in priced.skipped[temporal[0].name].reason


def test_every_round_measures_the_check_frames_chosen_from_every_candidate(tmp_path, monkeypatch):
    """The first round has no frame-step candidate, but its check frames already avoid the
    keyframes of the ones to come: no later round renders the reference again."""
    import farmplug.execute as execute
    from farmplug.calibrate import compile_calibration
    from farmplug.schema import save_model

    (tmp_path / "s.blend").write_bytes(b"a scene")
    save_model(shot(24).model_copy(update={"scene": "s.blend"}), tmp_path / "shot.yaml")
    expected = compile_calibration(tmp_path / "shot.yaml", tmp_path / "out", candidates=STEP1 + STEP2,
                                   budget_share=1.0).setup.check_frames
    seen = []

    def no_run(graph, **_kwargs):
        seen.append(sorted({f for t in graph.tasks if t.role == "reference" for f in t.frames}))
        raise execute.FarmplugError("stop here")

    monkeypatch.setattr(execute, "run_graph", no_run)
    monkeypatch.setattr(execute, "warm_up", lambda job: None)
    with pytest.raises(execute.FarmplugError, match="stop here"):
        execute.run_calibration(tmp_path / "shot.yaml", tmp_path / "out", candidates=STEP1 + STEP2, budget_share=1.0)
    assert seen == [expected] and any(f % 2 == 0 for f in expected)  # frames between step-2 keyframes
