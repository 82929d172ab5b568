"""Run folders under fault for real: moved and copied, another plan or a changed plan in one
folder, deleted, foreign and corrupt outputs, a read-only folder, a full disk. No wrong frame is
delivered; failures are one line; reruns converge to the uninterrupted run's pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.faults.conftest import (
    assert_one_line_error,
    check_delivery,
    colour,
    delivered,
    run_farmplug,
    submit_cmd,
    write_shot,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tiny_scene, tmp_path_factory) -> tuple[Path, Path]:
    """A plan and its finished run folder (never changed by a test: each works on a copy)."""
    folder = tmp_path_factory.mktemp("faults-finished")
    plan = write_shot(folder, tiny_scene)
    done = subprocess.run(submit_cmd(plan, folder / "run"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return plan, folder / "run"


def _copy_of(finished, where: Path) -> Path:
    shutil.copytree(finished[1], where, symlinks=True)
    return where


def _submit(plan: Path, run_dir: Path, *more: str) -> subprocess.CompletedProcess:
    return subprocess.run(submit_cmd(plan, run_dir, *more), capture_output=True, text=True, timeout=600)


def _bytes(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in delivered(run_dir).values() if p.exists()}


def test_a_copied_and_a_moved_run_folder_report_and_resume_where_they_lie(finished, baseline, tmp_path, ledger):
    plan, original = finished
    before = _bytes(original)
    copy = _copy_of(finished, tmp_path / "copy")
    assert run_farmplug("report", copy, "--out", tmp_path / "report").returncode == 0
    assert str(copy) in (tmp_path / "report" / "report.html").read_text() or (tmp_path / "report" / "report.json").is_file()
    again = _submit(plan, copy)
    assert again.returncode == 0 and "ran 0 tasks" in again.stdout, again.stdout + again.stderr[-2000:]
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(copy, moved)
    (moved / "frames" / "tiny.0003.exr").unlink()
    resumed = _submit(plan, moved)
    assert resumed.returncode == 0 and "ran 1 tasks" in resumed.stdout, resumed.stdout + resumed.stderr[-2000:]
    check_delivery(moved, baseline, ledger, complete=True)
    assert _bytes(original) == before, "working in a copy touched the original run folder"


def test_another_plan_in_a_finished_run_folder_is_refused_and_a_dry_run_writes_nothing(
        finished, tiny_scene, baseline, tmp_path, ledger):
    run_dir = _copy_of(finished, tmp_path / "run")
    graph_before = (run_dir / "graph.json").read_bytes()
    frames_before = _bytes(run_dir)
    other = write_shot(tmp_path / "other", tiny_scene)
    assert_one_line_error(_submit(other, run_dir), "belongs to plan")
    dry = _submit(other, run_dir, "--farm", "openjd", "--dry-run", "--out", str(tmp_path / "bundle"))
    assert_one_line_error(dry, "belongs to plan")
    assert (run_dir / "graph.json").read_bytes() == graph_before and _bytes(run_dir) == frames_before
    check_delivery(run_dir, baseline, ledger, complete=True)


def test_a_changed_plan_re_runs_what_it_changes_and_delivers_the_new_plans_frames(tiny_scene, tmp_path, ledger):
    plan = write_shot(tmp_path / "shot", tiny_scene)
    run_dir = tmp_path / "shot" / "run"
    assert _submit(plan, run_dir).returncode == 0
    data = yaml.safe_load(plan.read_text())
    data["samples_factor"] = 0.25
    plan.write_text(yaml.safe_dump(data))
    changed = _submit(plan, run_dir)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "ran 8 tasks, skipped 1" in changed.stdout  # everything but the full-quality reference render
    # The frames delivered are the changed plan's: those of a fresh run of it.
    fresh_plan = write_shot(tmp_path / "fresh", tiny_scene)
    fresh_plan.write_text(yaml.safe_dump(data | {"shot": str(tmp_path / "fresh" / "shot.yaml")}))
    assert _submit(fresh_plan, tmp_path / "fresh" / "run").returncode == 0
    expected = {f: colour(p) for f, p in delivered(tmp_path / "fresh" / "run").items()}
    check_delivery(run_dir, expected, ledger, complete=True)


def test_deleted_and_corrupt_outputs_are_made_again(finished, baseline, tmp_path, ledger):
    plan, _ = finished
    run_dir = _copy_of(finished, tmp_path / "run")
    (run_dir / "frames" / "tiny.0001.exr").unlink()  # a delivered frame
    (run_dir / "work" / "render" / "tiny.0002.exr").unlink()  # a render a delivered frame came from
    truncated = run_dir / "frames" / "tiny.0004.exr"
    truncated.write_bytes(truncated.read_bytes()[:200])  # a delivered frame cut short (a sync gone wrong)
    done = _submit(plan, run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ran 4 tasks" in done.stdout  # denoise 1, render 2 + denoise 2, denoise 4
    check_delivery(run_dir, baseline, ledger, complete=True)


def test_foreign_frames_at_the_delivery_path_are_refused_unless_forced(tiny_scene, baseline, tmp_path, ledger):
    from tests.unit.test_image_budget import _small_exr

    plan = write_shot(tmp_path, tiny_scene)
    run_dir = tmp_path / "run"
    foreign = run_dir / "frames" / "tiny.0003.exr"
    foreign.parent.mkdir(parents=True)
    _small_exr(foreign)  # a valid frame farmplug never made (someone's comp, another tool's output)
    kept = foreign.read_bytes()
    refused = _submit(plan, run_dir)
    assert_one_line_error(refused, "tiny.0003.exr", "--force")
    assert foreign.read_bytes() == kept, "a frame this run did not make was overwritten"
    forced = _submit(plan, run_dir, "--force")
    assert forced.returncode == 0, forced.stderr[-3000:]
    check_delivery(run_dir, baseline, ledger, complete=True)


@pytest.fixture
def mounts():
    """Mount helpers for real read-only folders and full disks (root and mount(8) needed)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a read-only bind mount or a small tmpfs needs root and mount(8); this scenario cannot run here")
    made: list[Path] = []

    def mount(*args: str | Path) -> None:
        done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount here: {done.stderr.strip()}")
        made.append(Path(args[-1]))

    yield mount
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_read_only_delivery_folder_fails_in_one_line_and_a_rerun_converges(finished, baseline, tmp_path, mounts,
                                                                               ledger):
    plan, _ = finished
    run_dir = _copy_of(finished, tmp_path / "run")
    (run_dir / "frames" / "tiny.0002.exr").unlink()
    frames = run_dir / "frames"
    mounts("--bind", frames, frames)
    mounts("-o", "remount,ro,bind", frames)
    # Root ignores file modes, so only a read-only mount really refuses the write.
    done = _submit(plan, run_dir)
    assert_one_line_error(done, "frames")
    check_delivery(run_dir, baseline, ledger, complete=False)
    subprocess.run(["umount", str(frames)], check=True)
    again = _submit(plan, run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    check_delivery(run_dir, baseline, ledger, complete=True)


def test_a_full_disk_fails_in_one_line_and_the_run_finishes_elsewhere(finished, baseline, tmp_path, mounts, ledger):
    plan, original = finished
    disk = tmp_path / "disk"
    disk.mkdir()
    # Room for about half of the run's files: renders start, then a write fails mid-run.
    size_kb = sum(p.stat().st_size for p in original.rglob("*") if p.is_file()) // 2048
    mounts("-t", "tmpfs", "-o", f"size={max(size_kb, 64)}k", "tmpfs", disk)
    run_dir = disk / "run"
    done = _submit(plan, run_dir)
    assert_one_line_error(done)
    assert "no space left" in done.stderr.strip().splitlines()[-1].lower(), done.stderr[-2000:]
    check_delivery(run_dir, baseline, ledger, complete=False)
    # The partly finished folder, copied to a disk with room, finishes with the same frames.
    roomy = tmp_path / "roomy"
    shutil.copytree(run_dir, roomy, symlinks=True)
    again = _submit(plan, roomy)
    assert again.returncode == 0, again.stderr[-3000:]
    check_delivery(roomy, baseline, ledger, complete=True)
    assert json.loads((roomy / "graph.json").read_text())["run_dir"] == "{run_dir}"
    np.testing.assert_array_equal(colour(roomy / "frames" / "tiny.0001.exr"), baseline[1])
