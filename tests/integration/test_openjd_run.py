"""End to end on the real Open Job Description runtime: a tiny Blender shot is planned, compiled to a
job bundle with ``farmplug submit --farm openjd --dry-run``, and every step is run with ``openjd run``
(the OpenJD sessions runtime a Deadline Cloud worker uses) in dependency order; then the delivered
frames, the timing records and ``farmplug report`` are checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from farmplug.cli import main
from farmplug.execute import run_graph, task_is_done
from farmplug.graph import load_graph
from farmplug.imageio import read_frame
from farmplug.timing import read_timing

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
OPENJD = shutil.which("openjd", path=str(BIN)) or shutil.which("openjd")
WORKER_FARMPLUG = shutil.which("farmplug", path=str(BIN))


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory) -> Path:
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    if OPENJD is None or WORKER_FARMPLUG is None:
        pytest.skip("the openjd CLI or this environment's farmplug executable is missing")
    from farmplug.render.demo_scene import build_demo_scene

    path = tmp_path_factory.mktemp("openjd-scene") / "small.blend"
    build_demo_scene(path, frames=5, resolution=(48, 27), samples=16)
    return path


def plan_and_compile(folder: Path, scene: Path, *, frames: int, plan_args: list[str]) -> tuple[Path, Path]:
    shot = {
        "name": "small", "scene": str(scene), "frames": {"start": 1, "end": frames},
        "resolution": {"width": 48, "height": 27}, "samples": 16, "output": "frames/small.####.exr",
    }
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    assert main(["plan", str(folder / "shot.yaml"), "--samples-factor", "0.25", "--chunk-size", "2", *plan_args]) == 0
    run_dir, bundle = folder / "run", folder / "bundle"
    assert main(["submit", str(folder / "plan.yaml"), "--farm", "openjd", "--dry-run", "--out", str(bundle),
                 "--run-dir", str(run_dir), "--worker-farmplug", WORKER_FARMPLUG]) == 0
    return run_dir, bundle


def run_every_step(bundle: Path) -> list[str]:
    """``openjd run`` each step of the bundle, dependencies first (the template lists them in that order)."""
    template = yaml.safe_load((bundle / "template.yaml").read_text())
    values = yaml.safe_load((bundle / "parameter_values.yaml").read_text())["parameterValues"]
    params = bundle.parent / "job-params.json"
    params.write_text(json.dumps({v["name"]: v["value"] for v in values if not v["name"].startswith("deadline:")}))
    done: list[str] = []
    for step in template["steps"]:
        assert all(d["dependsOn"] in done for d in step.get("dependencies", [])), step["name"]
        proc = subprocess.run(
            [OPENJD, "run", str(bundle / "template.yaml"), "--step", step["name"], "--job-param", f"file://{params}",
             "--no-run-dependencies"],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"step {step['name']} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        done.append(step["name"])
    return done


def check_run(run_dir: Path, frames: int, tmp_path: Path) -> dict:
    # The dry run left the same graph in the bundle and in the run folder (for `farmplug report`).
    assert (tmp_path / "bundle" / "graph.json").read_text() == (run_dir / "graph.json").read_text()
    graph = load_graph(run_dir)
    for task in graph.tasks:  # every task of the graph ran as exactly that task: its timing record is there
        record = read_timing(task.timing)
        assert record.task == task.id and record.command[:2] == task.argv[:2]
    # The farm's workers keyed their records from graph.json as the local engine would: a local
    # run over the same folder trusts every task and runs none again.
    assert all(task_is_done(task, graph.run_dir) for task in graph.tasks)
    assert run_graph(graph, runner=lambda task: pytest.fail(f"{task.id} ran again")).ran == []
    for f in range(1, frames + 1):
        frame = read_frame(run_dir / "frames" / f"small.{f:04d}.exr")
        assert frame.feature("color").shape[:2] == (27, 48)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "report.html").is_file()
    return json.loads((tmp_path / "report" / "report.json").read_text())


def test_openjd_runs_render_denoise_and_reference_steps(small_scene, tmp_path):
    started = time.perf_counter()
    run_dir, bundle = plan_and_compile(tmp_path, small_scene, frames=4, plan_args=["--check-frames", "1,4"])
    assert sorted(p.name for p in bundle.iterdir()) == [
        "asset_references.yaml", "graph.json", "parameter_values.yaml", "template.yaml"]
    assert run_every_step(bundle) == ["render-denoise", "reference"]
    report = check_run(run_dir, 4, tmp_path)
    assert report["savings"]["core_seconds_plan"] > 0
    assert [f["frame"] for f in report["quality"]["frames"]] == [1, 4]
    for f in range(1, 5):  # render then denoise ran for every chunk
        frame = read_frame(run_dir / "frames" / f"small.{f:04d}.exr")
        assert frame.parts[0].spec.getattribute("farmplug:stage") == "denoise"
    assert time.perf_counter() - started < 120


def test_openjd_runs_a_frame_step_2_plan_with_inbetween_and_fallback(small_scene, tmp_path):
    run_dir, bundle = plan_and_compile(tmp_path, small_scene, frames=5,
                                       plan_args=["--frame-step", "2", "--check-frames", "2,5"])
    assert run_every_step(bundle) == ["render-denoise", "inbetween", "fallback", "reference"]
    report = check_run(run_dir, 5, tmp_path)
    assert set(report["inbetween"]["interpolated"]) | set(report["inbetween"]["fallback"]) == {2, 4}


def test_calibration_is_a_job_bundle_that_openjd_runs(small_scene, tmp_path, capsys):
    """`farmplug calibrate --farm openjd --dry-run`: the calibration job, run step by step by `openjd run`,
    ends with the measuring task writing calibration.json and the chosen plan."""
    shot = {"name": "small", "scene": str(small_scene), "frames": {"start": 1, "end": 5},
            "resolution": {"width": 48, "height": 27}, "samples": 16, "output": "frames/small.####.exr"}
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(shot))
    bundle = tmp_path / "bundle"
    assert main(["calibrate", str(tmp_path / "shot.yaml"), "--out", str(tmp_path), "--factors", "1/4",
                 "--frame-steps", "1,2", "--variants", "none", "--check-count", "1", "--flip-target", "0.9", "--budget-share", "1", "--farm", "openjd",
                 "--dry-run", "--out-files", str(bundle), "--worker-farmplug", WORKER_FARMPLUG]) == 0
    assert "nothing submitted" in capsys.readouterr().out
    assert not (tmp_path / "calibration.json").exists()
    check = subprocess.run([OPENJD, "check", str(bundle / "template.yaml")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    steps = run_every_step(bundle)
    assert steps[0] == "reference" and steps[-1] == "calibration"
    result = json.loads((tmp_path / "calibration.json").read_text())
    assert [c["name"] for c in result["candidates"]] == ["x1-4_denoise", "x1-4_step2_denoise_inbetween"]
    # At 48x27 the start-ups dominate, so the verdict may well be the full render; either way it is
    # a measured one, and the plan file exists exactly when a candidate won.
    assert all(len(c["frames"]) == 1 and c["measured"]["layers"]["render"]["tasks"] >= 1 for c in result["candidates"])
    assert result["recommendation"] in {"full render", "x1-4_denoise", "x1-4_step2_denoise_inbetween"}
    assert (tmp_path / "plan.yaml").is_file() == (result["recommendation"] != "full render")
    graph = load_graph(tmp_path / "calibration")
    for task in graph.tasks:  # every task ran as that task (the farm writes its own frame range spelling)
        record = read_timing(task.timing)
        assert record.task == task.id and record.command[:2] == task.argv[:2]
    # The farm's workers keyed their records from graph.json as the local engine would: a local
    # run over the same folder trusts every task and runs none again.
    assert all(task_is_done(task, graph.run_dir) for task in graph.tasks)
    assert run_graph(graph, runner=lambda task: pytest.fail(f"{task.id} ran again")).ran == []
