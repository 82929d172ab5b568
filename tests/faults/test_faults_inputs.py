"""Hostile inputs for real: a shot name made to break paths and shells, and header bombs in a
run's own folders. Nothing is written outside the shot's folder, no wrong frame is delivered, and
a bomb costs neither the memory it claims nor a frame."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.faults.conftest import (
    assert_one_line_error,
    check_delivery,
    farmplug_cmd,
    submit_cmd,
    write_shot,
)
from tests.unit.test_image_budget import _bomb

pytestmark = pytest.mark.slow

HOSTILE = "tiny; rm -rf ~ $(touch PWNED) `touch PWNED` é/ø\\x %s%n {frames}"


def test_a_hostile_shot_name_stays_a_name(tiny_scene, baseline, tmp_path, ledger):
    """A name with shell syntax, separators and format tokens: the run goes where farmplug puts it
    (its default run folder, beside the plan), runs no shell, and delivers the right frames."""
    shot_dir = tmp_path / "shot"
    plan = write_shot(shot_dir, tiny_scene, name=HOSTILE)
    before = {p for p in tmp_path.parent.iterdir()}
    done = subprocess.run(farmplug_cmd("submit", plan), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [p for p in shot_dir.iterdir() if p.is_dir() and p.name.startswith("run-")]
    assert len(runs) == 1, sorted(p.name for p in shot_dir.iterdir())
    run_dir = runs[0]
    assert not set(run_dir.name) & set("$`{}#%\\")  # nothing a shell, a template or a frame pattern expands
    check_delivery(run_dir, baseline, ledger, complete=True)
    # Nothing outside the shot's folder, no shell ran the name, and the report's files have plain names.
    assert {p for p in tmp_path.parent.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["shot"]
    assert not list(tmp_path.rglob("PWNED")) and not (Path.home() / "PWNED").exists()
    assert all(run_dir in p.parents or p.parent == shot_dir or shot_dir / "run" in p.parents
               for p in shot_dir.rglob("*") if p.is_file())


def test_header_bombs_in_a_run_cost_no_memory_and_no_frame(tiny_scene, baseline, tmp_path, ledger):
    """A render replaced by a file whose header claims 16000x16000 (a few KB on disk), and one at a
    delivery path: the first is not trusted and is rendered again, the second is refused as a file
    this run did not make; neither is read into memory."""
    plan = write_shot(tmp_path, tiny_scene)
    run_dir = tmp_path / "run"
    assert subprocess.run(submit_cmd(plan, run_dir), capture_output=True, timeout=600).returncode == 0
    _bomb(run_dir / "work" / "render" / "tiny.0002.exr", 16000, 16000)
    rerun = subprocess.run(_measured(submit_cmd(plan, run_dir)), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "render-0002-0002: render frames 2" in rerun.stderr
    assert _peak_mb(rerun) < 1000, f"the rerun peaked at {_peak_mb(rerun)} MB: the bomb was read"
    check_delivery(run_dir, baseline, ledger, complete=True)

    _bomb(run_dir / "frames" / "tiny.0003.exr", 16000, 16000)
    refused = subprocess.run(_measured(submit_cmd(plan, run_dir)), capture_output=True, text=True, timeout=600)
    assert _peak_mb(refused) < 1000
    assert_one_line_error(refused, "tiny.0003.exr", "--force")
    assert (run_dir / "frames" / "tiny.0003.exr").stat().st_size < 10_000  # left alone for the wrangler
    forced = subprocess.run(submit_cmd(plan, run_dir, "--force"), capture_output=True, text=True, timeout=600)
    assert forced.returncode == 0, forced.stderr[-3000:]
    check_delivery(run_dir, baseline, ledger, complete=True)


def _measured(cmd: list[str]) -> list[str]:
    """``cmd`` under a wrapper that prints its peak memory (children included) as its last stderr line."""
    script = ("import resource, subprocess, sys\n"
              "rc = subprocess.call(sys.argv[1:])\n"
              "peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 0)\n"
              "print(f'PEAK_KB {peak}', file=sys.stderr)\n"
              "sys.exit(rc)\n")
    return [cmd[0], "-c", script, *cmd]


def _peak_mb(done: subprocess.CompletedProcess) -> int:
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("PEAK_KB "), line
    done.stderr = "\n".join(done.stderr.strip().splitlines()[:-1]) + "\n"
    return int(line.split()[1]) // 1024

