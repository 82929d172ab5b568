"""The resolution lever end to end on a real tiny Blender shot: `farmplug plan --resolution-scale
1/2` renders half size, denoises, upscales with the shipped guided model from a cheap
full-resolution guide render, delivers full-size frames, and the report measures them against
full-resolution references."""

from __future__ import annotations

import json

import pytest
import yaml

from farmplug.cli import main
from farmplug.imageio import read_frame

pytestmark = pytest.mark.slow


def test_a_half_resolution_plan_delivers_full_size_frames_and_a_report(tiny_scene, tmp_path, capsys):
    shot = {"name": "tiny", "scene": str(tiny_scene), "frames": {"start": 1, "end": 4},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/tiny.####.exr"}
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(shot))
    assert main(["plan", str(tmp_path / "shot.yaml"), "--resolution-scale", "1/2", "--samples-factor", "1/4",
                 "--check-frames", "2"]) == 0
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert plan["resolution_scale"] == 0.5 and [s["kind"] for s in plan["stages"]] == ["denoise", "upscale"]
    run_dir = tmp_path / "run"
    assert main(["submit", str(tmp_path / "plan.yaml"), "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert read_frame(run_dir / "work" / "render" / "tiny.0001.exr").feature("color").shape[:2] == (18, 32)
    assert read_frame(run_dir / "work" / "fullres" / "tiny.0001.exr").feature("normal").shape[:2] == (36, 64)
    for f in range(1, 5):
        frame = read_frame(run_dir / "frames" / f"tiny.{f:04d}.exr")
        assert frame.feature("color").shape[:2] == (36, 64)
        spec = frame.parts[0].spec
        assert spec.getattribute("farmplug:stage") == "upscale"
        assert spec.getattribute("farmplug:inference")  # the backend that ran is on the frame
    report = json.loads((run_dir / "report.json").read_text())
    assert report["plan"]["resolution_scale"] == 0.5
    assert [f["frame"] for f in report["quality"]["frames"]] == [2]
    assert 0 < report["quality"]["flip_mean"] < 1
    stages = {c["stage"] for c in report["costs"]}
    assert {"render", "denoise", "upscale", "fullres"} <= stages


def test_calibration_measures_a_half_resolution_candidate_with_its_guide_render(tiny_scene, tmp_path, capsys):
    shot = {"name": "tiny", "scene": str(tiny_scene), "frames": {"start": 1, "end": 4},
            "resolution": {"width": 64, "height": 36}, "samples": 1024, "output": "frames/tiny.####.exr"}
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(shot))
    out = tmp_path / "calib"
    assert main(["calibrate", str(tmp_path / "shot.yaml"), "--out", str(out), "--factors", "1/16", "--frame-steps", "1",
                 "--variants", "none", "--resolution-scales", "1/2,1", "--check-frames", "2", "--flip-target", "0.9",
                 "--budget-share", "1", "--all-candidates"]) == 0
    capsys.readouterr()
    calibration = json.loads((out / "calibration.json").read_text())
    measured = {c["name"]: c for c in calibration["candidates"]}
    assert sorted(measured) == ["x1-16_denoise", "x1-16_res1-2_denoise_upscale"]
    half = measured["x1-16_res1-2_denoise_upscale"]
    assert half["stages"] == ["denoise:oidn", "upscale:guided"]
    # Its costs are its own tasks': the half-size render, the full-size guide, denoise and upscale.
    assert {"render", "fullres", "denoise", "upscale"} == set(half["measured"]["layers"])
    full = measured["x1-16_denoise"]
    assert half["measured"]["layers"]["render"]["core_s_per_frame"] < full["measured"]["layers"]["render"]["core_s_per_frame"]
    assert 0 < half["flip_mean"] < 1 and half["frames"][0]["frame"] == 2
