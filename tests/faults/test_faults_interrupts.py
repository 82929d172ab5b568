"""Interrupted runs for real: ``kill -9`` of the parent alone or of its whole process group at
several points of a ``submit``, SIGTERM, and two ``submit``s at once. No wrong frame is delivered
and a rerun converges to the uninterrupted run's pixels."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import assert_one_line_error, check_delivery, submit_cmd, write_shot

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def _wait_for(what: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if what():
            return True
        time.sleep(0.02)
    return False


def _after_the_first_render(run_dir: Path, proc: subprocess.Popen) -> bool:
    """Between two tasks: the first render's record is written."""
    return (run_dir / "work" / "render" / "render-0001-0001.timing.json").exists()


def _inside_a_render(run_dir: Path, proc: subprocess.Popen) -> bool:
    """Mid-task: the second render's Blender child is running."""
    return _after_the_first_render(run_dir, proc) and bool(_children(proc.pid))


def _after_a_delivered_frame(run_dir: Path, proc: subprocess.Popen) -> bool:
    """Among the stage tasks: a denoised frame is delivered, others are not yet."""
    return (run_dir / "frames" / "tiny.0001.exr").exists()


KILL_POINTS = {"after the first render": _after_the_first_render, "inside a render": _inside_a_render,
               "after a delivered frame": _after_a_delivered_frame}


@pytest.mark.parametrize(("point", "target"), [
    pytest.param("after the first render", "parent", id="between-tasks-parent"),
    pytest.param("inside a render", "parent", id="mid-render-parent"),
    pytest.param("inside a render", "group", id="mid-render-group"),
    pytest.param("after a delivered frame", "group", id="mid-stages-group"),
])
def test_kill_9_then_a_rerun_converges(point, target, tiny_scene, baseline, tmp_path, ledger):
    plan = write_shot(tmp_path, tiny_scene)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(submit_cmd(plan, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        reached = _wait_for(lambda: KILL_POINTS[point](run_dir, proc), proc)
        children = _children(proc.pid)
        if target == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert reached, f"the run never got to {point}"
    # A Blender child never outlives the killed parent (it could publish a stale frame later).
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(c) for c in children):
        time.sleep(0.1)
    assert not any(_alive(c) for c in children), "a render child outlived its killed parent"
    ledger.notes.append(f"killed the {target} {point}")
    check_delivery(run_dir, baseline, ledger, complete=False)
    done = subprocess.run(submit_cmd(plan, run_dir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped" in done.stdout  # the finished tasks were kept
    check_delivery(run_dir, baseline, ledger, complete=True)
    assert not list(run_dir.rglob(".*tmp*")), "temp files of the killed run must be cleaned"


def test_sigterm_stops_a_submit_in_one_line_and_a_rerun_converges(tiny_scene, baseline, tmp_path, ledger):
    """A farm or a wrangler cancelling (SIGTERM): one message, exit 143, no child left, nothing wrong."""
    plan = write_shot(tmp_path, tiny_scene)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(submit_cmd(plan, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert _wait_for(lambda: _inside_a_render(run_dir, proc), proc), "the run never started its second render"
        children = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("farmplug: terminated;")
    assert not any(_alive(c) for c in children)
    check_delivery(run_dir, baseline, ledger, complete=False)
    done = subprocess.run(submit_cmd(plan, run_dir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    check_delivery(run_dir, baseline, ledger, complete=True)


def test_two_submits_on_one_run_folder_do_not_run_at_once(tiny_scene, baseline, tmp_path, ledger):
    """The second ``submit`` is refused in one line (naming the holder) while the first runs; the
    first finishes with the uninterrupted run's frames."""
    plan = write_shot(tmp_path, tiny_scene)
    run_dir = tmp_path / "run"
    first = subprocess.Popen(submit_cmd(plan, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    lock = run_dir / ".farmplug.lock"
    try:
        assert _wait_for(lambda: lock.is_file() and bool(lock.read_text().strip()), first, timeout=120)
        second = subprocess.run(submit_cmd(plan, run_dir), capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first submit ended before the second could be tried"
        assert_one_line_error(second, f"pid {first.pid}", "in use")
        _out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err[-3000:]
    check_delivery(run_dir, baseline, ledger, complete=True)
