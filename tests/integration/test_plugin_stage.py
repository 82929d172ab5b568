"""A third-party stage installed through an entry point (tests/plugins/farmplug_grade): no core file knows it.

The plugin is installed for the test the way pip would make it visible: a ``*.dist-info`` folder
with its ``entry_points.txt`` on ``sys.path`` (and ``PYTHONPATH`` for subprocesses), found by
``importlib.metadata`` like any installed distribution.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from farmplug.cli import main
from farmplug.imageio import read_frame
from farmplug.render.base import frame_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = ROOT / "tests" / "plugins" / "farmplug_grade"
FARMS = ["openjd", "deadline", "opencue", "flamenco", "tractor"]


@pytest.fixture
def grade_plugin(tmp_path, monkeypatch):
    from farmplug.stages.registry import STAGES

    site = tmp_path / "plugin-site"
    dist = site / "farmplug_grade-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: farmplug-grade\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[farmplug.stages]\ngrade:scale = farmplug_grade:DESCRIPTOR\n")
    monkeypatch.syspath_prepend(str(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(site), str(PLUGIN_SOURCE),
                                                                   os.environ.get("PYTHONPATH", "")) if p))
    STAGES.forget()
    yield
    STAGES.forget()


def _plan(folder: Path, scene: Path, stages: list[dict]) -> Path:
    shot = {"name": "tiny", "scene": str(scene), "frames": {"start": 1, "end": 4},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/tiny.####.exr"}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    plan = {"shot": "shot.yaml", "samples_factor": 0.125, "chunk_size": 2, "check_frames": [1], "stages": stages}
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan))
    return folder / "plan.yaml"


def test_without_the_plugin_a_plan_naming_it_is_one_line_listing_the_stages(tiny_scene, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FARMPLUG_NO_PLUGINS", "1")
    plan = _plan(tmp_path, tiny_scene, [{"kind": "denoise"}, {"kind": "grade", "factor": 0.5}])
    assert main(["submit", str(plan), "--dry-run", "--farm", "openjd", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "stages.1.kind" in err and "'grade' is not a known stage; allowed: denoise, upscale, inbetween" in err


def test_the_plugin_is_listed_and_its_config_validated(grade_plugin, tiny_scene, tmp_path, capsys):
    from farmplug.stages.registry import available_stages

    assert "grade:scale" in available_stages()
    bad = _plan(tmp_path, tiny_scene, [{"kind": "denoise"}, {"kind": "grade", "factor": -1}])
    assert main(["submit", str(bad), "--dry-run", "--farm", "openjd", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "plan.yaml" in err
    assert "stages.1.factor: Input should be greater than 0 (got -1)" in err
    unknown = _plan(tmp_path, tiny_scene, [{"kind": "grade", "gain": 2}])
    assert main(["submit", str(unknown), "--dry-run", "--farm", "openjd", "--out", str(tmp_path / "y")]) == 1
    assert "stages.0.gain: unknown field" in capsys.readouterr().err
    # Its options come from its config model.
    with pytest.raises(SystemExit):
        main(["run", "grade", "--help"])
    assert "--factor" in capsys.readouterr().out


def test_the_plugin_runs_in_the_chain_on_the_local_farm_and_is_reported(grade_plugin, tiny_scene, tmp_path, capsys):
    plan = _plan(tmp_path, tiny_scene, [{"kind": "denoise"}, {"kind": "grade", "factor": 0.5}])
    run_dir = tmp_path / "run"
    assert main(["submit", str(plan), "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    graph = json.loads((run_dir / "graph.json").read_text())
    layers = [t["layer"] for t in graph["tasks"] if t["role"] == "plan"]
    assert layers == ["render", "denoise", "grade", "render", "denoise", "grade"]
    grade = next(t for t in graph["tasks"] if t["layer"] == "grade")
    denoise = next(t for t in graph["tasks"] if t["layer"] == "denoise")
    assert grade["depends_on"] == [denoise["id"]] and grade["gpus"] == 0
    for f in range(1, 5):
        delivered = read_frame(run_dir / "frames" / f"tiny.{f:04d}.exr")
        denoised = read_frame(frame_path(str(run_dir / "work" / "denoise" / "tiny.####.exr"), f))
        assert delivered.parts[0].spec.getattribute("farmplug:stage") == "grade"
        np.testing.assert_allclose(delivered.feature("color"), denoised.feature("color") * 0.5, rtol=1e-3, atol=1e-6)
        np.testing.assert_array_equal(delivered.feature("albedo"), denoised.feature("albedo"))
    report = json.loads((run_dir / "report.json").read_text())
    costs = {c["stage"]: c for c in report["costs"]}
    assert costs["grade"]["frames"] == 4 and costs["grade"]["core_seconds"] > 0
    assert report["plan"]["stages"] == ["denoise:oidn", "grade:scale"]
    assert "grade" in (run_dir / "report.html").read_text()


@pytest.mark.parametrize("farm", FARMS)
def test_the_plugin_dry_runs_for_every_farm(grade_plugin, tiny_scene, tmp_path, farm, capsys):
    plan = _plan(tmp_path, tiny_scene, [{"kind": "denoise"}, {"kind": "grade", "factor": 0.5}])
    out = tmp_path / "native"
    assert main(["submit", str(plan), "--farm", farm, "--dry-run", "--out", str(out), "--run-dir", str(tmp_path / "run")]) == 0
    files = [p for p in out.rglob("*") if p.is_file() and p.name != "graph.json"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    assert "grade" in text, f"{farm}: the grade stage is not in the native files"
    assert "run" in text and "--plan" in text
