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
           "--frames", "3", "--width", "64", "--height", "36", "--samples", "64", "--budget-share", "1"]
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
    # The demo calibrated: its cheapest candidate measured on the check frames, and charged to the
    # plan. On 3 frames the two full-quality check frames alone are 2/3 of the full render, so the
    # search stops there: the next candidate would take calibration past the full render's cost.
    calibration = json.loads((out / "calibration.json").read_text())
    assert [c["name"] for c in calibration["candidates"]] == ["x1-64_denoise"]
    assert [s["name"] for s in calibration["skipped"]] == ["x1-32_denoise"]
    assert "over the calibration budget" in calibration["skipped"][0]["reason"]
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


def test_calibrate_verb_searches_from_the_cheapest_candidate_and_says_what_it_cost(tiny_scene, tmp_path, capsys):
    _shot(tmp_path, tiny_scene, 4)
    out = tmp_path / "calib"
    # A lenient target: at 64x36 the denoiser cannot reach 0.1 (see test_calibrate.py). A 4-frame
    # shot cannot be calibrated within the default 10% (one check frame is 25%): it says so.
    args = ["calibrate", str(tmp_path / "shot.yaml"), "--out", str(out), "--factors", "1/4,1/16",
            "--frame-steps", "1", "--variants", "none", "--check-count", "2", "--flip-target", "0.4"]
    assert main(args) == 1
    assert "too short to calibrate within 10% of its full render" in capsys.readouterr().err
    assert main([*args, "--budget-share", "1"]) == 0
    printed = capsys.readouterr().out
    calibration = json.loads((out / "calibration.json").read_text())
    measured = [c["name"] for c in calibration["candidates"]]
    assert measured[0] == "x1-16_denoise"  # the fewest samples first, whatever order they were given in
    if calibration["candidates"][0]["meets_target"]:
        # It meets the target: more samples cannot be needed, so x1-4 is never rendered.
        assert measured == ["x1-16_denoise"] and calibration["budget"]["rounds"] == 1
        assert [s["name"] for s in calibration["skipped"]] == ["x1-4_denoise"]
        assert "skipped x1-4_denoise: x1-16_denoise, with fewer samples" in printed
        assert not list((out / "calibration" / "work").glob("x1-4_denoise*"))
    else:
        assert measured == ["x1-16_denoise", "x1-4_denoise"] and calibration["budget"]["rounds"] == 2
    assert calibration["flip_mean_max"] == 0.4 and len(calibration["check_frames"]) == 2
    # What it cost is every calibration task's record, said on the command line too.
    from farmplug.timing import read_timing

    spent = sum(read_timing(p).cpu_s for p in (out / "calibration" / "work").rglob("*.timing.json"))
    assert calibration["budget"]["spent_core_s"] == pytest.approx(spent, rel=0.02)
    assert "calibration cost" in printed and "of the full render's predicted" in printed
    chosen = calibration["recommendation"]
    assert f"chose {chosen}" in printed and f"next: farmplug submit {out / 'plan.yaml'}" in printed
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
