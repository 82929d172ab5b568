"""The savings headline (compute_savings) on a compiled graph and hand-made timing records (no rendering).

Every task, the reference renders included, has a non-zero start-up (``overhead_cpu_s``), so an
estimate that drops the start-up, or pays it per frame instead of per chunk, is visibly wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from farmplug.denoise.config import DenoiseConfig
from farmplug.errors import FarmplugError
from farmplug.graph import JobGraph, compile_plan
from farmplug.models import FrameRangeModel, Plan, Resolution, Shot
from farmplug.report.build import CALIBRATION_PREFIX, compute_savings
from farmplug.timing import FrameTiming, TimingRecord


def shot(frames: int) -> Shot:
    return Shot(name="sh030", scene="/shows/demo/sh030/scene.blend", frames=FrameRangeModel(start=1, end=frames),
                resolution=Resolution(width=320, height=180), samples=1024, output="frames/sh030.####.exr")


def compiled(frames: int, chunk_size: int, check_frames: list[int]) -> tuple[Plan, Shot, JobGraph]:
    s = shot(frames)
    plan = Plan(shot="shot.yaml", samples_factor=1 / 32, stages=[DenoiseConfig()], chunk_size=chunk_size,
                check_frames=check_frames)
    root = Path("/shows/demo/sh030")
    graph = compile_plan(plan, s, plan_file=root / "plan.yaml", shot_file=root / "shot.yaml", run_dir=root / "run")
    return plan, s, graph


def record(task_id: str, stage: str, role: str, frame_cpu: dict[int, float], overhead: float) -> TimingRecord:
    return TimingRecord(
        task=task_id, stage=stage, role=role, backend="test", started_at=0.0, finished_at=1.0,
        overhead_wall_s=overhead / 4, overhead_cpu_s=overhead,
        frames=[FrameTiming(frame=f, wall_s=c / 4, cpu_s=c) for f, c in frame_cpu.items()],
    )


def records_for(graph: JobGraph, reference: dict[str, tuple[dict[int, float], float]]) -> dict[str, TimingRecord]:
    """Plan tasks: renders 2 core-s/frame + 7 start-up, denoise 0.5/frame + 3; references as given."""
    records = {}
    for task in graph.tasks:
        if task.role == "reference":
            frame_cpu, overhead = reference[task.id]
            assert sorted(frame_cpu) == task.frames
        elif task.stage == "render":
            frame_cpu, overhead = dict.fromkeys(task.frames, 2.0), 7.0
        else:
            frame_cpu, overhead = dict.fromkeys(task.frames, 0.5), 3.0
        records[task.id] = record(task.id, task.stage, task.role, frame_cpu, overhead)
    return records


def test_full_render_is_the_mean_frame_cost_times_frames_plus_one_mean_start_up_per_chunk():
    plan, s, graph = compiled(10, 4, [1, 4, 7, 9, 10])
    assert [t.id for t in graph.tasks if t.role == "reference"] == ["reference-0001-0009", "reference-0010-0010"]
    reference = {
        "reference-0001-0009": ({1: 100.0, 4: 110.0, 7: 90.0, 9: 120.0}, 30.0),
        "reference-0010-0010": ({10: 80.0}, 50.0),
    }
    savings = compute_savings(graph, records_for(graph, reference), s, plan)
    # Mean frame 100 core-s, mean start-up (30 + 50) / 2 = 40 core-s, 10 frames in ceil(10/4) = 3 chunks.
    assert savings.core_seconds_full == pytest.approx(100.0 * 10 + 40.0 * 3)
    assert savings.core_seconds_full == pytest.approx(1120.0)
    assert savings.core_seconds_full != pytest.approx(100.0 * 10)  # start-up dropped
    assert savings.core_seconds_full != pytest.approx(100.0 * 10 + 40.0 * 10)  # start-up paid per frame
    # The plan: 3 render + 3 denoise tasks, every core-second counted, start-ups included.
    plan_cost = 10 * 2.0 + 3 * 7.0 + 10 * 0.5 + 3 * 3.0
    assert savings.core_seconds_plan == pytest.approx(plan_cost)
    assert savings.core_seconds_plan == pytest.approx(sum(r.cpu_s for r in records_for(graph, reference).values()
                                                          if r.role == "plan"))
    assert savings.ratio == pytest.approx(1120.0 / plan_cost)
    assert savings.core_seconds_checks == pytest.approx(420.0 + 30.0 + 80.0 + 50.0)
    assert savings.ratio_including_checks == pytest.approx(1120.0 / (plan_cost + 580.0))
    assert savings.full_core_seconds_per_frame == pytest.approx(112.0)
    assert savings.plan_core_seconds_per_frame == pytest.approx(plan_cost / 10)
    assert savings.measured_frames_full == [1, 4, 7, 9, 10]
    assert savings.core_seconds_calibration == 0.0
    assert "40.00 core-s start-up per 4-frame task" in savings.method
    assert "100.00 core-s/frame" in savings.method and "10 frames" in savings.method
    assert "calibration" not in savings.method


@pytest.mark.parametrize(
    ("frames", "chunk_size", "chunks"),
    [
        pytest.param(12, 4, 3, id="chunks-divide-the-shot"),
        pytest.param(13, 4, 4, id="one-frame-left-over"),
        pytest.param(12, 1, 12, id="one-frame-per-task"),
        pytest.param(12, 50, 1, id="one-task-for-the-shot"),
    ],
)
def test_start_up_is_paid_once_per_chunk_of_the_full_render(frames, chunk_size, chunks):
    plan, s, graph = compiled(frames, chunk_size, [1, frames])
    refs = [t for t in graph.tasks if t.role == "reference"]
    reference = {t.id: (dict.fromkeys(t.frames, 60.0), 25.0) for t in refs}
    savings = compute_savings(graph, records_for(graph, reference), s, plan)
    assert math.ceil(frames / chunk_size) == chunks
    assert savings.core_seconds_full == pytest.approx(60.0 * frames + 25.0 * chunks)


def test_calibration_records_count_in_the_plan_cost():
    plan, s, graph = compiled(10, 4, [1, 10])
    reference = {"reference-0001-0010": ({1: 100.0, 10: 100.0}, 40.0)}
    records = records_for(graph, reference)
    plain = compute_savings(graph, records, s, plan)
    records[f"{CALIBRATION_PREFIX}x1-32/render.timing.json"] = record("calibration", "render", "calibration",
                                                                     {1: 5.0, 2: 5.0}, 11.0)
    with_calibration = compute_savings(graph, records, s, plan)
    assert with_calibration.core_seconds_calibration == pytest.approx(21.0)
    assert with_calibration.core_seconds_plan == pytest.approx(plain.core_seconds_plan + 21.0)
    assert with_calibration.core_seconds_full == pytest.approx(plain.core_seconds_full) == pytest.approx(100.0 * 10 + 40.0 * 3)
    assert "calibration included" in with_calibration.method


def test_no_reference_frames_is_an_error_not_a_made_up_ratio():
    plan, s, graph = compiled(8, 4, [])
    with pytest.raises(FarmplugError, match="no full-quality reference frames"):
        compute_savings(graph, records_for(graph, {}), s, plan)


def test_a_longer_shot_pays_the_calibration_once_a_labelled_projection():
    plan, s, graph = compiled(10, 4, [1, 10])
    records = records_for(graph, {"reference-0001-0010": ({1: 100.0, 10: 100.0}, 40.0)})
    assert compute_savings(graph, records, s, plan).longer_shots == []  # no calibration: the ratio would not change
    records[f"{CALIBRATION_PREFIX}x1-32/render.timing.json"] = record("calibration", "render", "calibration",
                                                                     {1: 50.0}, 10.0)
    savings = compute_savings(graph, records, s, plan)
    full, rerun, once = savings.core_seconds_full, savings.core_seconds_plan - 60.0, 60.0
    assert [(p.frames, p.ratio) for p in savings.longer_shots] == [
        (n * 10, pytest.approx(full * n / (rerun * n + once))) for n in (2, 4, 10)]
    # Longer shots approach the ratio without calibration from below, never past it.
    assert savings.ratio < savings.longer_shots[0].ratio < savings.longer_shots[-1].ratio < savings.ratio_without_calibration


def test_the_fixed_share_of_a_reduced_frame_comes_from_the_renderer_s_split():
    from farmplug.report.build import render_fixed_share
    from farmplug.timing import RenderCostSplit

    plain = record("render-0001-0004", "render", "plan", {1: 2.0, 2: 2.0, 3: 2.0, 4: 2.0}, 4.0)
    assert render_fixed_share([plain]) is None  # no measured split: not guessed
    split = RenderCostSplit(samples=32, frames=4, persistent_data=True, fixed_cpu_s_per_frame=0.5,
                            fixed_cpu_s_first_frame=0.8, fixed_cpu_s_later_frames=0.4, cpu_s_per_sample=1.5 / 32)
    measured = plain.model_copy(update={"render_cost": split})
    # Start-up 4 + 4 frames x 0.5 fixed = 6 of the task's 12 core-s.
    assert render_fixed_share([measured]) == pytest.approx(6.0 / 12.0)
    assert render_fixed_share([measured, plain]) is None
