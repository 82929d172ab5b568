"""Calibration on a real tiny Blender shot, then the chosen plan run for real: does the prediction hold?"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from farmplug.calibrate import CALIBRATION_FILE, FULL_RENDER, CalibrationResult, Candidate
from farmplug.errors import FarmplugError
from farmplug.execute import run_calibration as calibrate
from farmplug.models import FrameRangeModel, QualityTarget, Resolution, Shot, load_plan
from farmplug.schema import load_model, save_model

pytestmark = pytest.mark.slow

CANDIDATES = [Candidate(1 / 16), Candidate(1 / 4)]


@pytest.fixture(scope="module")
def shot_file(tmp_path_factory) -> Path:
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    from farmplug.render.demo_scene import build_demo_scene

    folder = tmp_path_factory.mktemp("calibrate")
    build_demo_scene(folder / "scene" / "tiny.blend", frames=6, resolution=(64, 36), samples=64)
    # 256 spp at full quality: the reference costs enough (about a core-second a frame) for the
    # frame work, not the process start-up, to decide the ratio.
    shot = Shot(name="tiny", scene="scene/tiny.blend", frames=FrameRangeModel(start=1, end=6),
                resolution=Resolution(width=64, height=36), samples=256, output="frames/tiny.####.exr")
    save_model(shot, folder / "shot.yaml")
    return folder / "shot.yaml"


@pytest.fixture(scope="module")
def calibrated(shot_file) -> tuple[CalibrationResult, Path]:
    out = shot_file.parent / "calib"
    steps = []
    # A lenient target: a 64x36 frame has too few pixels for the denoiser to reach 0.1; what is
    # tested here is the machinery, the choice and the prediction, not the demo's quality.
    # Every candidate in one round (no search), and no budget: this checks the measuring itself.
    result = calibrate(shot_file, out, candidates=CANDIDATES, check_frames=3, search=False, budget_share=1.0,
                       target=QualityTarget(flip_mean_max=0.4), progress=lambda *step: steps.append(step))
    # One step per task of the calibration's job graph, then "done".
    total = steps[-1][1]
    assert steps[0][:2] == (0, total) and steps[-1] == (total, total, "done")
    assert [s[0] for s in steps] == list(range(total + 1))
    return result, out


def test_calibration_json_holds_the_evidence(calibrated):
    result, out = calibrated
    saved = load_model(CalibrationResult, out / CALIBRATION_FILE)
    assert saved == result
    assert result.check_frames == [1, 3, 6] and result.reference.frames == [1, 3, 6]
    assert result.reference.core_s_per_frame > 0 and result.reference.overhead_core_s > 0
    assert [c.name for c in result.candidates] == ["x1-16_denoise", "x1-4_denoise"]
    for c in result.candidates:
        assert [f.frame for f in c.frames] == [1, 3, 6]
        assert all(f.source == "rendered" and 0 < f.flip_mean < 1 and f.psnr > 10 for f in c.frames)
        assert c.measured.layers["render"].core_s_per_frame > 0 and c.measured.layers["denoise"].core_s_per_frame > 0
        assert c.cost.total_core_s == pytest.approx(c.cost.per_frame_core_s * 6 + c.cost.fixed_core_s)
        assert c.predicted_ratio == pytest.approx(result.reference.cost.total_core_s / c.cost.total_core_s)
        for f in c.frames:
            assert (out / f.thumbnail).is_file() and (out / f.error_map).is_file()
    # Calibration is a job graph: every candidate ran as its own plan's tasks, and its measured
    # costs are exactly those tasks' timing records (not another candidate's).
    from farmplug.calibrate import measured_cost
    from farmplug.graph import load_graph
    from farmplug.timing import read_timing

    graph = load_graph(out / "calibration")
    for c in result.candidates:
        own = [t for t in graph.tasks if t.layer.startswith(f"{c.name}-")]
        assert {t.layer for t in own} == {f"{c.name}-render", f"{c.name}-denoise"}
        assert c.measured == measured_cost([(t, read_timing(t.timing)) for t in own])
        assert all(read_timing(t.timing).command == t.argv for t in own)
    assert graph.tasks[-1].id == "calibration-0000-0000"
    assert set(graph.tasks[-1].depends_on) == {t.id for t in graph.tasks[:-1]}
    # More samples cost more per frame and look better.
    few, more = result.candidates
    assert few.measured.layers["render"].core_s_per_frame < more.measured.layers["render"].core_s_per_frame
    assert few.flip_mean > more.flip_mean
    # The choice: the cheapest candidate meeting the target, exactly one, with its reason.
    meeting = [c for c in result.candidates if c.meets_target and c.cost.total_core_s < result.reference.cost.total_core_s]
    assert meeting, json.dumps(result.model_dump(mode="json"), indent=1)
    best = min(meeting, key=lambda c: c.cost.total_core_s)
    assert result.recommendation == best.name != FULL_RENDER
    assert [c.name for c in result.candidates if c.chosen] == [best.name]
    assert best.name in result.reason and result.plan_file == "plan.yaml"


def test_chosen_plan_runs_and_the_report_confirms_the_prediction(calibrated, shot_file):
    from farmplug.graph import compile_plan, save_graph
    from farmplug.integrations.local import LocalFarm
    from farmplug.report.build import build_report

    result, out = calibrated
    plan, shot, loaded_shot_file = load_plan(out / "plan.yaml")
    assert loaded_shot_file.resolve() == shot_file.resolve()
    chosen = result.candidate(result.recommendation)
    assert (plan.samples_factor, plan.frame_step, [s.kind for s in plan.stages]) == (
        chosen.samples_factor, chosen.frame_step, ["denoise"])
    assert plan.check_frames == result.check_frames and plan.quality_target.flip_mean_max == 0.4

    run_dir = out / "run"
    graph = compile_plan(plan, shot, plan_file=out / "plan.yaml", shot_file=loaded_shot_file, run_dir=run_dir)
    save_graph(graph, run_dir)
    LocalFarm().run(graph)
    report, _html = build_report(run_dir, run_dir)

    # Direct measurement: the report's plan cost is exactly the plan tasks' timing records.
    from farmplug.timing import read_timing

    plan_core_s = sum(read_timing(t.timing).cpu_s for t in graph.tasks if t.role == "plan")
    calibration_core_s = sum(read_timing(p).cpu_s for p in (out / "calibration" / "work").rglob("*.timing.json"))
    assert calibration_core_s > 0
    assert report.savings.core_seconds_calibration == pytest.approx(calibration_core_s, rel=1e-12)
    assert report.savings.core_seconds_plan == pytest.approx(plan_core_s + calibration_core_s, rel=1e-12)
    # The cost formula, exactly: fed the run's own per-frame and start-up costs, the estimate
    # must give the run's measured plan cost. Noise cannot hide a wrong formula here (a missed
    # start-up per task, frames counted twice, the wrong task or frame count all break it).
    from farmplug.calibrate import estimate_cost, measured_cost

    own = measured_cost([(t, read_timing(t.timing)) for t in graph.tasks if t.role == "plan"])
    render = own.layers["render"]
    assert render.overhead_core_s > 0.1 * render.core_s_per_frame * plan.chunk_size  # start-up matters here
    assert estimate_cost(own, plan, shot).total_core_s == pytest.approx(plan_core_s, rel=1e-9)
    # Prediction (from the calibration's own tasks) against measurement (the run's): CPU
    # core-seconds of different processes on a shared 2-core machine with other work running.
    # With calibration run as a job graph, measured/predicted over 7 runs of this test, the
    # machine busy with other tests: 0.76, 0.83, 0.94, 1.07, 1.11, 1.21, 1.35. The formula is
    # checked exactly above and each candidate's costs are checked to be its own tasks'
    # (test_calibration_json_holds_the_evidence), so this band only has to catch a prediction
    # that is off by far more than the noise (a unit or frame-count error: x2 and more).
    measured = report.savings.core_seconds_full / (report.savings.core_seconds_plan - report.savings.core_seconds_calibration)
    ratio = measured / chosen.predicted_ratio
    assert 0.6 <= ratio <= 1.6, (measured, chosen.predicted_ratio)
    assert report.quality.flip_mean == pytest.approx(chosen.flip_mean, abs=0.05)


def test_a_failing_render_names_the_calibration_task(tmp_path):
    (tmp_path / "broken.blend").write_bytes(b"not a blend file")
    shot = Shot(name="broken", scene="broken.blend", frames=FrameRangeModel(start=1, end=3),
                resolution=Resolution(width=8, height=8), samples=4, output="f/b.####.exr")
    save_model(shot, tmp_path / "shot.yaml")
    with pytest.raises(FarmplugError, match="calibration task reference-0001-0003 failed"):
        calibrate(tmp_path / "shot.yaml", tmp_path / "out", candidates=[Candidate(0.5)], budget_share=1.0)
    assert not (tmp_path / "out" / CALIBRATION_FILE).exists()


def test_a_later_round_measures_only_the_candidates_whose_tasks_changed(calibrated, monkeypatch):
    """Each round's measuring task reuses an earlier round's measurement of a candidate while every
    record it read is the same, so a search of many rounds does not pay again for the frames it
    has already scored; a task run again (a new record) makes that candidate alone measured again."""
    from farmplug import calibrate as cal
    from farmplug.graph import load_graph
    from farmplug.timing import read_timing

    result, out = calibrated
    setup_file = out / "calibration" / cal.SETUP_FILE
    # Measuring again rewrites the calibration's verdict: put the fixture's back afterwards.
    kept = {p: p.read_bytes() for p in (out / CALIBRATION_FILE, out / "plan.yaml")}
    calls: list[str] = []
    real = cal._measure_candidate

    def counted(setup, candidate, *args):
        calls.append(candidate.name)
        return real(setup, candidate, *args)

    monkeypatch.setattr(cal, "_measure_candidate", counted)
    again, _record = cal.measure_calibration(setup_file)
    assert calls == []
    assert [(c.name, c.flip_mean, c.cost) for c in again.candidates] == [(c.name, c.flip_mean, c.cost)
                                                                          for c in result.candidates]
    graph = load_graph(setup_file.parent)
    first = next(c for c in load_model(cal.CalibrationSetup, setup_file).candidates)
    task = next(t for t in graph.tasks if t.layer.startswith(first.layer_prefix) and t.kind == "render")
    original = Path(task.timing).read_bytes()
    record = read_timing(task.timing)
    try:
        save_model(record.model_copy(update={"finished_at": record.finished_at + 1}), Path(task.timing))
        cal.measure_calibration(setup_file)
        assert calls == [first.name]
    finally:
        Path(task.timing).write_bytes(original)
        for path, data in kept.items():
            path.write_bytes(data)
