"""`farmplug demo` and `farmplug calibrate` through the command line, on tiny real Blender shots."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from farmplug.cli import main
from farmplug.imageio import read_frame

pytestmark = pytest.mark.slow


def test_tiny_demo_calibrates_runs_reports_and_resumes(tmp_path):
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "farmplug.cli", "demo", "--out", str(out),
           "--frames", "3", "--width", "64", "--height", "36", "--samples", "64"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["savings", "quality", "report"]
    report = json.loads((out / "report.json").read_text())
    savings = report["savings"]
    # The headline is the report's own figures.
    assert f"{savings['ratio']:.1f}x fewer CPU core-seconds" in lines[-3]
    assert f"mean FLIP {report['quality']['flip_mean']:.4f}" in lines[-2]
    assert lines[-1] == f"report: {out / 'report.html'}"
    # The demo calibrated: both of its candidates measured on the check frames, and charged to the plan.
    calibration = json.loads((out / "calibration.json").read_text())
    assert [c["name"] for c in calibration["candidates"]] == ["x1-64_denoise", "x1-32_denoise"]
    assert all([f["frame"] for f in c["frames"]] == calibration["check_frames"] for c in calibration["candidates"])
    assert savings["core_seconds_calibration"] > 0
    assert savings["core_seconds_plan"] > savings["core_seconds_calibration"]
    # At 64x36 no candidate reaches FLIP 0.1: the demo runs its fixed plan and says it misses the target.
    assert calibration["recommendation"] == "full render"
    assert "MISSES target" in lines[-2] and report["quality"]["flip_mean"] > 0.1
    frames = sorted((out / "frames").glob("demo.*.exr"))
    assert [p.name for p in frames] == [f"demo.{f:04d}.exr" for f in (1, 2, 3)]
    assert {read_frame(p).parts[0].spec.getattribute("farmplug:stage") for p in frames} == {"denoise"}
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script src=" not in html
    # Run again in the same folder: every farm task is found done.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "ran 0 tasks, skipped 3" in again.stderr


def _shot(folder, scene, frames: int) -> None:
    shot = {"name": "tiny", "scene": str(scene), "frames": {"start": 1, "end": frames},
            "resolution": {"width": 64, "height": 36}, "samples": 256, "output": "frames/tiny.####.exr"}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))


def test_calibrate_verb_tries_the_given_candidates_against_the_given_target(tiny_scene, tmp_path, capsys):
    _shot(tmp_path, tiny_scene, 4)
    out = tmp_path / "calib"
    # A lenient target: at 64x36 the denoiser cannot reach 0.1 (see test_calibrate.py).
    rc = main(["calibrate", str(tmp_path / "shot.yaml"), "--out", str(out), "--factors", "1/16,1/4",
               "--frame-steps", "1", "--check-count", "2", "--flip-target", "0.4"])
    assert rc == 0
    printed = capsys.readouterr().out
    calibration = json.loads((out / "calibration.json").read_text())
    assert [c["name"] for c in calibration["candidates"]] == ["x1-16_denoise", "x1-4_denoise"]
    assert calibration["flip_mean_max"] == 0.4 and len(calibration["check_frames"]) == 2
    chosen = calibration["recommendation"]
    assert chosen in {"x1-16_denoise", "x1-4_denoise"}
    assert f"chose {chosen}" in printed and f"next: farmplug submit {out / 'plan.yaml'}" in printed
    for name in ("x1-16_denoise", "x1-4_denoise"):
        assert name in printed  # the summary table lists every candidate
    plan = yaml.safe_load((out / "plan.yaml").read_text())
    assert plan["quality_target"]["flip_mean_max"] == 0.4
    winner = next(c for c in calibration["candidates"] if c["name"] == chosen)
    assert plan["samples_factor"] == pytest.approx(winner["samples_factor"])
    assert winner["flip_mean"] <= 0.4


@pytest.mark.parametrize("flag, value, message", [
    pytest.param("--factors", "1/0", "bad --factors", id="zero-denominator"),
    pytest.param("--factors", "half", "bad --factors", id="not-a-number"),
    pytest.param("--frame-steps", "two", "bad --factors/--frame-steps", id="step-not-a-number"),
])
def test_calibrate_verb_rejects_bad_candidates_in_one_line(tmp_path, capsys, flag, value, message):
    (tmp_path / "scene.blend").write_bytes(b"")
    _shot(tmp_path, tmp_path / "scene.blend", 4)
    assert main(["calibrate", str(tmp_path / "shot.yaml"), flag, value]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("farmplug: error:") and message in err
    assert not (tmp_path / "calibration.json").exists()
