"""One calibration serving several shots of a sequence: the plan it chose, reused; its cost shared
by frames, charged once across the shots (no rendering: a hand-made calibration.json)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farmplug.calibrate import CALIBRATION_FILE, CalibrationResult, SharedShot, calibration_for, reuse_calibration
from farmplug.cli import main
from farmplug.errors import ConfigError
from farmplug.models import FrameRangeModel, Plan, Resolution, Shot, load_plan
from farmplug.schema import load_model, save_model
from tests.unit.test_calibrate_search import calibration


def _shot(folder: Path, name: str, frames: int, *, samples: int = 1024, width: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(Shot(name=name, scene="../scene.blend", frames=FrameRangeModel(start=1, end=frames),
                    resolution=Resolution(width=width, height=36), samples=samples, output=f"frames/{name}.####.exr"),
               folder / "shot.yaml")
    return folder / "shot.yaml"


@pytest.fixture
def calibrated(tmp_path) -> Path:
    """sh010 (24 frames) calibrated: x1-32_denoise chosen; calibration.json and plan.yaml in calib/."""
    first = _shot(tmp_path / "sh010", "sh010", 24)
    out = tmp_path / "calib"
    out.mkdir()
    save_model(Plan(shot="../sh010/shot.yaml", samples_factor=1 / 32, check_frames=[2, 12, 23],
                    calibration=CALIBRATION_FILE), out / "plan.yaml")
    result = calibration([]).model_copy(update={
        "shot": str(first), "shot_name": "sh010", "recommendation": "x1-32_denoise", "plan_file": "plan.yaml",
        "shared_by": [SharedShot(shot=str(first), name="sh010", frames=24)]})
    save_model(result, out / CALIBRATION_FILE)
    return out / CALIBRATION_FILE


def test_a_reused_plan_is_the_chosen_plan_for_the_other_shot_with_its_own_check_frame(calibrated, tmp_path):
    other = _shot(tmp_path / "sh020", "sh020", 72)
    plan = reuse_calibration(calibrated, other, tmp_path / "sh020" / "plan.yaml")
    assert plan.samples_factor == 1 / 32 and [s.kind for s in plan.stages] == ["denoise"]
    assert plan.shot == "shot.yaml" and plan.check_frames == [37]  # one, the middle: the run's evidence
    assert plan.calibration == "../calib/calibration.json"
    assert calibration_for(plan, tmp_path / "sh020" / "plan.yaml").resolve() == calibrated.resolve()
    shared = load_model(CalibrationResult, calibrated)
    assert [(s.name, s.frames) for s in shared.shared_by] == [("sh010", 24), ("sh020", 72)]
    # Each shot carries its share by frames: a quarter and three quarters, once in all.
    assert shared.share_of(tmp_path / "sh010" / "shot.yaml") == pytest.approx(0.25)
    assert shared.share_of(other) == pytest.approx(0.75)
    reuse_calibration(calibrated, other, tmp_path / "sh020" / "plan.yaml")  # again: not listed twice
    assert len(load_model(CalibrationResult, calibrated).shared_by) == 2


@pytest.mark.parametrize(("samples", "width", "what"), [
    pytest.param(512, 64, "512 spp, not 1024", id="other-samples"),
    pytest.param(1024, 128, "128x36, not 64x36", id="other-resolution"),
])
def test_a_shot_at_other_samples_or_resolution_cannot_reuse_it(calibrated, tmp_path, samples, width, what):
    other = _shot(tmp_path / "sh030", "sh030", 24, samples=samples, width=width)
    with pytest.raises(ConfigError, match=f"{what} as calibrated in .*calibrate this shot"):
        reuse_calibration(calibrated, other, tmp_path / "sh030" / "plan.yaml")
    assert len(load_model(CalibrationResult, calibrated).shared_by) == 1


def test_a_calibration_recommending_the_full_render_has_nothing_to_reuse(calibrated, tmp_path):
    result = load_model(CalibrationResult, calibrated)
    save_model(result.model_copy(update={"plan_file": None, "recommendation": "full render"}), calibrated)
    with pytest.raises(ConfigError, match="recommends the full render"):
        reuse_calibration(calibrated, _shot(tmp_path / "sh040", "sh040", 24), tmp_path / "sh040" / "plan.yaml")


def test_plan_reuse_on_the_command_line(calibrated, tmp_path, capsys):
    other = _shot(tmp_path / "sh020", "sh020", 72)
    assert main(["plan", str(other), "--reuse", str(calibrated)]) == 0
    assert "from calibration ../calib/calibration.json" in capsys.readouterr().out
    written = yaml.safe_load((tmp_path / "sh020" / "plan.yaml").read_text())
    assert written["calibration"] == "../calib/calibration.json" and written["check_frames"] == [37]
    assert main(["plan", str(other), "--reuse", str(calibrated), "--check-count", "2"]) == 0
    assert load_plan(tmp_path / "sh020" / "plan.yaml")[0].check_frames == [1, 72]
    bad = _shot(tmp_path / "sh050", "sh050", 24, samples=64)
    assert main(["plan", str(bad), "--reuse", str(calibrated)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "64 spp, not 1024" in err


def test_a_run_is_charged_its_shot_s_share_of_the_calibration(calibrated, tmp_path):
    """The report's records of a shared calibration are scaled by the shot's share (by frames)."""
    from farmplug.graph import compile_plan
    from farmplug.report.build import CALIBRATION_PREFIX, find_calibration, load_records
    from farmplug.timing import FrameTiming, TimingRecord, write_timing

    work = calibrated.parent / "calibration" / "work"
    write_timing(TimingRecord(task="reference-0002-0023", stage="render", backend="test", started_at=0, finished_at=1,
                              overhead_cpu_s=4.0, frames=[FrameTiming(frame=2, wall_s=1, cpu_s=36.0)]),
                 work / "reference" / "reference-0002-0023.timing.json")
    other = _shot(tmp_path / "sh020", "sh020", 72)
    plan_file = tmp_path / "sh020" / "plan.yaml"
    save_model(reuse_calibration(calibrated, other, plan_file), plan_file)

    def charged(plan_file: Path, run_dir: Path) -> float:
        """The calibration core-seconds the report charges a finished run of ``plan_file``."""
        plan, shot, shot_file = load_plan(plan_file)
        graph = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=run_dir)
        for task in graph.tasks:
            write_timing(TimingRecord(task=task.id, stage=task.stage, backend="test", started_at=0, finished_at=1,
                                      frames=[FrameTiming(frame=f, wall_s=1, cpu_s=1.0) for f in task.frames]),
                         task.timing)
        return sum(r.cpu_s for key, r in load_records(graph, find_calibration(graph)).items() if key.startswith(CALIBRATION_PREFIX))

    assert charged(plan_file, tmp_path / "sh020" / "run") == pytest.approx(0.75 * 40.0)
    # The calibrated shot's own run (plan beside the calibration) carries the other quarter.
    assert charged(calibrated.parent / "plan.yaml", tmp_path / "sh010" / "run") == pytest.approx(0.25 * 40.0)
