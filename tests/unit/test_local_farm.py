"""The local farm's resume logic and write_frame's atomicity, on real tiny EXR files (no rendering).

The tasks of a hand-made job graph are run by an injected runner that does what a real task
does: it writes its EXR outputs with farmplug's ``write_frame`` and then its timing record, whose
``command`` is the task's argument list. Which tasks run and which are skipped is what is checked.
The real end-to-end resume (a killed ``farmplug submit``) is tests/integration/test_pipeline.py's
``test_killed_run_resumes_with_nothing_lost``; it needs Blender.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.errors import ImageError
from farmplug.graph import JobGraph, Task, task_id, timing_path
from farmplug.imageio import read_frame, write_frame
from farmplug.imageio.exr import Frame, Part
from farmplug.integrations.local import LocalFarm, task_is_done
from farmplug.timing import TASK_KEY_ENV, TimingRecord, read_timing, write_timing

SIZE = 8


def tiny_frame(value: float) -> Frame:
    """An 8x8 float RGB frame filled with ``value``."""
    spec = oiio.ImageSpec(SIZE, SIZE, 3, oiio.FLOAT)
    spec.channelnames = ("R", "G", "B")
    return Frame((Part(spec, np.full((SIZE, SIZE, 3), value, dtype=np.float32)),))


def render_task(folder: Path, frames: list[int], *, samples: int = 32) -> Task:
    tid = task_id("render", frames)
    pattern = str(folder / "shot.####.exr")
    return Task(
        id=tid, layer="render", kind="render", stage="render", role="plan", frames=frames,
        argv=["run", "render", "--layer", "render", "--output", pattern, "--frames", f"{frames[0]}-{frames[-1]}",
              "--samples", str(samples)],
        outputs=[str(folder / f"shot.{f:04d}.exr") for f in frames], timing=timing_path(folder, tid),
    )


def make_graph(folder: Path) -> JobGraph:
    """Two render chunks (frames 1-2, 3-4) and a denoise chunk after the first."""
    first, second = render_task(folder, [1, 2]), render_task(folder, [3, 4])
    denoised = folder / "denoised"
    denoise = Task(
        id=task_id("denoise", [1, 2]), layer="denoise", kind="stage", stage="denoise", role="plan", frames=[1, 2],
        depends_on=[first.id],
        argv=["run", "denoise", "--layer", "denoise", "--input", str(folder / "shot.####.exr"),
              "--output", str(denoised / "shot.####.exr"), "--frames", "1-2"],
        outputs=[str(denoised / f"shot.{f:04d}.exr") for f in (1, 2)], timing=timing_path(denoised, "denoise-0001-0002"),
    )
    return JobGraph(name="shot", run_dir=str(folder), plan_file=str(folder / "plan.yaml"),
                    shot_file=str(folder / "shot.yaml"), tasks=[denoise, first, second])


class FakeTaskRunner:
    """Runs a task the way the real one ends: every output written with write_frame, then the timing record."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.stale_seen: list[Path] = []

    def __call__(self, task: Task) -> None:
        self.ran.append(task.id)
        for out in task.outputs:
            self.stale_seen += list(Path(out).parent.glob(f".{Path(out).name}.*"))
        started = time.time()
        # The engine hands the task its key; the task stamps it on its frames and its record.
        key = os.environ.get(TASK_KEY_ENV, "")
        # Like Blender, a render writes no farmplug provenance; stages stamp theirs.
        provenance = {} if task.kind == "render" else {"stage": task.stage, "task": task.id, "key": key}
        for frame_number, out in zip(task.frames, task.outputs, strict=True):
            write_frame(out, tiny_frame(float(frame_number)), provenance=provenance)
        write_timing(TimingRecord(task=task.id, stage=task.stage, role=task.role, backend="test", started_at=started,
                                  finished_at=time.time(), overhead_cpu_s=0.1, command=list(task.argv), key=key),
                     task.timing)


def run(graph: JobGraph) -> tuple[list[str], list[str]]:
    """Run the graph on the local farm; returns (tasks the runner ran, tasks the farm skipped)."""
    runner = FakeTaskRunner()
    summary = LocalFarm(runner=runner).run(graph)
    assert summary.ran == runner.ran
    return runner.ran, summary.skipped


def assert_outputs_read_back(task: Task) -> None:
    for frame_number, out in zip(task.frames, task.outputs, strict=True):
        np.testing.assert_array_equal(read_frame(out).parts[0].pixels, float(frame_number))


def test_first_run_runs_every_task_dependencies_first(tmp_path):
    graph = make_graph(tmp_path)
    ran, skipped = run(graph)
    assert ran == ["render-0001-0002", "denoise-0001-0002", "render-0003-0004"]
    assert skipped == []
    for task in graph.tasks:
        assert task_is_done(task, graph.run_dir)
        assert_outputs_read_back(task)
        assert read_timing(task.timing).command == task.argv


def test_finished_tasks_are_skipped_and_a_changed_command_runs_again(tmp_path):
    run(make_graph(tmp_path))
    ran, skipped = run(make_graph(tmp_path))
    assert ran == []
    assert sorted(skipped) == ["denoise-0001-0002", "render-0001-0002", "render-0003-0004"]
    # The same outputs are on disk, but the second chunk now asks for more samples: its record
    # shows a different command finished, so it runs again.
    changed = make_graph(tmp_path)
    second = changed.task("render-0003-0004")
    second.argv = render_task(tmp_path, [3, 4], samples=64).argv
    assert not task_is_done(second, changed.run_dir)
    ran, skipped = run(changed)
    assert ran == ["render-0003-0004"]
    assert skipped == ["render-0001-0002", "denoise-0001-0002"]
    assert read_timing(second.timing).command == second.argv
    assert read_timing(second.timing).command[-2:] == ["--samples", "64"]
    assert run(changed) == ([], ["render-0001-0002", "denoise-0001-0002", "render-0003-0004"])


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_truncate, id="truncated-exr"),
        pytest.param(lambda p: p.write_bytes(b""), id="empty-exr"),
        pytest.param(lambda p: p.write_bytes(b"not an image at all\n" * 20), id="not-an-exr"),
        pytest.param(Path.unlink, id="missing-exr"),
    ],
)
def test_an_invalid_output_makes_its_task_run_again(tmp_path, damage):
    graph = make_graph(tmp_path)
    run(graph)
    task = graph.task("render-0003-0004")
    damage(Path(task.outputs[1]))
    assert not task_is_done(task, graph.run_dir)
    ran, skipped = run(graph)
    assert ran == ["render-0003-0004"]
    assert sorted(skipped) == ["denoise-0001-0002", "render-0001-0002"]
    assert_outputs_read_back(task)
    assert task_is_done(task, graph.run_dir)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(Path.unlink, id="missing"),
        pytest.param(lambda p: p.write_text('{"task": "render-0003-0004", "stage": '), id="truncated-json"),
        pytest.param(lambda p: p.write_text('{"task": "render-0003-0004"}'), id="incomplete-record"),
    ],
)
def test_a_bad_timing_record_makes_its_task_run_again(tmp_path, damage):
    graph = make_graph(tmp_path)
    run(graph)
    task = graph.task("render-0003-0004")
    damage(Path(task.timing))
    assert run(graph)[0] == ["render-0003-0004"]
    assert read_timing(task.timing).command == task.argv


def test_temp_files_a_killed_run_left_are_removed_before_its_task_runs_again(tmp_path):
    graph = make_graph(tmp_path)
    run(graph)
    task = graph.task("render-0003-0004")
    # A run killed inside write_frame leaves its temp file (tempfile.mkstemp(prefix=".NAME.",
    # suffix=".tmp.exr")) and never renames it over the output.
    good = Path(task.outputs[0]).read_bytes()
    output = Path(task.outputs[1])
    output.unlink()
    stale = [output.parent / f".{output.name}.k1ll3d.tmp.exr", output.parent / f".{Path(task.outputs[0]).name}.x_9q.tmp.exr"]
    stale[0].write_bytes(good[:200])
    stale[1].write_bytes(b"")
    runner = FakeTaskRunner()
    summary = LocalFarm(runner=runner).run(graph)
    assert summary.ran == ["render-0003-0004"]
    assert runner.stale_seen == [], "stale temp files must be gone before the task runs"
    assert not any(p.exists() for p in stale)
    assert not list(tmp_path.rglob(".*tmp*"))
    assert_outputs_read_back(task)


# --- write_frame: atomic replacement ------------------------------------------------------------


def test_a_failed_overwrite_keeps_the_old_file_byte_for_byte(tmp_path, monkeypatch):
    path = tmp_path / "a.exr"
    write_frame(path, tiny_frame(1.0))
    before = path.read_bytes()

    def fail(self, *args, **kwargs):
        return False

    monkeypatch.setattr(oiio.ImageOutput, "write_image", fail)
    with pytest.raises(ImageError, match="write failed"):
        write_frame(path, tiny_frame(2.0))
    assert path.read_bytes() == before
    np.testing.assert_array_equal(read_frame(path).parts[0].pixels, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]


def test_an_overwrite_interrupted_by_an_exception_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.exr"
    write_frame(path, tiny_frame(1.0))
    before = path.read_bytes()

    def killed(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(oiio.ImageOutput, "write_image", killed)
    with pytest.raises(KeyboardInterrupt):
        write_frame(path, tiny_frame(2.0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]


def test_the_destination_holds_the_old_file_until_the_new_one_is_complete(tmp_path, monkeypatch):
    path = tmp_path / "a.exr"
    write_frame(path, tiny_frame(1.0))
    before = path.read_bytes()
    seen: list[bytes | None] = []
    real_write_image = oiio.ImageOutput.write_image

    def observing(self, *args, **kwargs):
        seen.append(path.read_bytes() if path.exists() else None)
        return real_write_image(self, *args, **kwargs)

    monkeypatch.setattr(oiio.ImageOutput, "write_image", observing)
    write_frame(path, tiny_frame(2.0))
    assert seen == [before], "while write_frame writes, the destination must still hold the old file"
    np.testing.assert_array_equal(read_frame(path).parts[0].pixels, 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.exr"]
