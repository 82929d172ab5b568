"""A run folder belongs to one plan and one run at a time: locks, plan binding, dry runs, default names."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from farmplug.cli import main
from farmplug.errors import FarmplugError
from farmplug.execute import LOCK_FILE, run_folder_lock, run_graph
from tests.unit.test_task_keys import KeyframeAwareRunner, graph_of, shot_and_plan

HOLD = """
import sys, time
from farmplug.execute import run_folder_lock
with run_folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the run folder's lock (started in its own process group)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_second_run_in_a_locked_folder_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, holder):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    proc = holder(Path(graph.run_dir))
    with pytest.raises(FarmplugError, match=rf"run folder .*run is in use by pid {proc.pid} on .*; wait for it"):
        run_graph(graph, runner=KeyframeAwareRunner())
    assert not (Path(graph.run_dir) / "frames").exists()  # nothing ran
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9: the kernel drops the flock with the process
    proc.wait()
    runner = KeyframeAwareRunner()
    run_graph(graph, runner=runner)
    assert runner.ran == [t.id for t in graph.topological()]
    assert f"pid {os.getpid()}" in (Path(graph.run_dir) / LOCK_FILE).read_text()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))

    def failing(task):
        raise FarmplugError("boom")

    with pytest.raises(FarmplugError, match="boom"):
        run_graph(graph, runner=failing)
    with run_folder_lock(graph.run_dir):  # free again
        pass


def _shot_and_plans(folder: Path) -> tuple[Path, Path]:
    (folder / "scene.blend").write_bytes(b"a scene")
    shot = {"name": "sh", "scene": "scene.blend", "frames": {"start": 1, "end": 4},
            "resolution": {"width": 8, "height": 8}, "samples": 64, "output": "frames/sh.####.exr"}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    for name, factor in (("plan.yaml", 0.25), ("plan-b.yaml", 0.5)):
        (folder / name).write_text(yaml.safe_dump({"shot": "shot.yaml", "samples_factor": factor, "check_frames": [1]}))
    return folder / "plan.yaml", folder / "plan-b.yaml"


def test_two_plans_of_one_shot_get_their_own_run_folders_by_default(tmp_path, capsys):
    plan_a, plan_b = _shot_and_plans(tmp_path)
    for plan in (plan_a, plan_b):
        assert main(["submit", str(plan), "--farm", "openjd", "--dry-run", "--out", str(tmp_path / f"bundle-{plan.stem}")]) == 0
    assert (tmp_path / "run-sh-plan" / "graph.json").is_file() and (tmp_path / "run-sh-plan-b" / "graph.json").is_file()


def test_a_run_folder_belongs_to_one_plan(tmp_path, capsys):
    plan_a, plan_b = _shot_and_plans(tmp_path)
    run_dir = tmp_path / "run"
    assert main(["submit", str(plan_a), "--farm", "openjd", "--dry-run", "--out", str(tmp_path / "a"),
                 "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["submit", str(plan_b), "--farm", "openjd", "--dry-run", "--out", str(tmp_path / "b"),
                 "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"run folder {run_dir} belongs to plan {plan_a.absolute()}" in err and "its own --run-dir" in err


def test_a_dry_run_never_rewrites_an_existing_run_folder(tmp_path):
    plan_a, _ = _shot_and_plans(tmp_path)
    run_dir = tmp_path / "run"
    assert main(["submit", str(plan_a), "--farm", "openjd", "--dry-run", "--out", str(tmp_path / "a"),
                 "--run-dir", str(run_dir)]) == 0
    graph_file = run_dir / "graph.json"
    before, stamp = graph_file.read_bytes(), graph_file.stat().st_mtime_ns
    time.sleep(0.01)
    assert main(["submit", str(plan_a), "--farm", "tractor", "--dry-run", "--out", str(tmp_path / "t"),
                 "--run-dir", str(run_dir), "--priority", "80"]) == 0
    assert graph_file.read_bytes() == before and graph_file.stat().st_mtime_ns == stamp
    assert (tmp_path / "t" / "graph.json").is_file()
