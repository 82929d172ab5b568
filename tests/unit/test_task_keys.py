"""Task records keyed by what made them: a task is done only for the same command, inputs and versions.

The graphs are real ``compile_plan`` graphs (render, denoise, and for a frame step inbetween and
fallback); their tasks are run by the stand-in runner of test_local_farm.py, which does what a
real task does with the key the engine hands it (writes real EXRs with provenance, then its
timing record). Each scenario was a way to deliver a stale or foreign frame before keys existed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from farmplug.denoise.config import DenoiseConfig
from farmplug.errors import FarmplugError
from farmplug.execute import run_graph, task_is_done, task_key
from farmplug.graph import compile_plan
from farmplug.imageio import write_frame
from farmplug.inbetween.config import InbetweenConfig
from farmplug.models import ConfidenceRecord, FrameConfidence, FrameRangeModel, Plan, Resolution, Shot
from farmplug.schema import save_model
from farmplug.timing import TASK_KEY_ENV
from tests.unit.test_local_farm import FakeTaskRunner, tiny_frame


def shot_and_plan(folder: Path, *, step: int = 1, samples_factor: float = 0.25, frames: int = 4):
    (folder / "scene.blend").write_bytes(b"a scene")
    shot = Shot(name="sh", scene="scene.blend", frames=FrameRangeModel(start=1, end=frames),
                resolution=Resolution(width=8, height=8), samples=64, output="frames/sh.####.exr")
    stages = [DenoiseConfig()] + ([InbetweenConfig()] if step > 1 else [])
    plan = Plan(shot="shot.yaml", samples_factor=samples_factor, frame_step=step, stages=stages, chunk_size=2)
    save_model(shot, folder / "shot.yaml")
    save_model(plan, folder / "plan.yaml")
    return shot, plan


def graph_of(folder: Path, shot: Shot, plan: Plan):
    return compile_plan(plan, shot, plan_file=folder / "plan.yaml", shot_file=folder / "shot.yaml", run_dir=folder / "run")


class KeyframeAwareRunner(FakeTaskRunner):
    """The stand-in runner, plus what a withholding task writes: its verdicts, and the frames that pass."""

    def __init__(self, failing: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.failing = failing

    def __call__(self, task) -> None:
        if not task.verdicts:
            return super().__call__(task)
        self.ran.append(task.id)
        key = os.environ.get(TASK_KEY_ENV, "")
        for frame, out in zip(task.frames, task.delivers, strict=True):
            if frame not in self.failing:
                write_frame(out, tiny_frame(float(frame)), provenance={"stage": task.stage, "task": task.id, "key": key})
        save_model(ConfidenceRecord(task=task.id, threshold=0.6, frames=[
            FrameConfidence(frame=f, keyframes=[f - 1, f + 1], score=0.9, passed=f not in self.failing) for f in task.frames
        ]), task.verdicts)
        from farmplug.timing import TimingRecord, write_timing

        write_timing(TimingRecord(task=task.id, stage=task.stage, backend="test", started_at=time.time(),
                                  finished_at=time.time(), command=list(task.argv), key=key), task.timing)


def run(graph, runner=None, **kwargs) -> list[str]:
    runner = runner or KeyframeAwareRunner()
    run_graph(graph, runner=runner, **kwargs)
    return runner.ran


def test_the_same_inputs_give_the_same_key_and_a_rerun_does_nothing(tmp_path):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    keys = [task_key(t, graph.run_dir) for t in graph.tasks]
    assert len(set(keys)) == len(keys) and keys == [task_key(t, graph.run_dir) for t in graph.tasks]
    assert run(graph) == [t.id for t in graph.topological()]
    assert all(task_is_done(t, graph.run_dir) for t in graph.tasks)
    assert run(graph) == []


def test_a_changed_render_re_runs_the_tasks_that_read_it(tmp_path):
    """Before keys, a plan change re-rendered the chunk but its denoise task, whose command had not
    changed, was skipped and delivered frames denoised from the old render."""
    folder = tmp_path
    run(graph_of(folder, *shot_and_plan(folder)))
    changed = graph_of(folder, *shot_and_plan(folder, samples_factor=0.5))
    ran = run(changed)
    assert ran == ["render-0001-0002", "denoise-0001-0002", "render-0003-0004", "denoise-0003-0004"]
    assert run(changed) == []


def test_an_input_rewritten_after_its_reader_ran_re_runs_the_reader(tmp_path):
    """An interrupted --force run leaves outputs older than their inputs; a plain rerun must not trust them."""
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    run(graph)
    render = graph.task("render-0003-0004")
    write_frame(render.outputs[0], tiny_frame(3.0), provenance={"stage": "render"})  # rewritten, as by a --force run
    assert not task_is_done(graph.task("denoise-0003-0004"), graph.run_dir)
    assert run(graph) == ["denoise-0003-0004"]
    assert run(graph) == []


def test_a_changed_plan_file_re_runs_its_stage_tasks_and_a_new_scene_its_renders(tmp_path):
    shot, plan = shot_and_plan(tmp_path)
    graph = graph_of(tmp_path, shot, plan)
    run(graph)
    save_model(plan.model_copy(update={"stages": [DenoiseConfig(quality="fast")]}), tmp_path / "plan.yaml")
    assert run(graph) == ["denoise-0001-0002", "denoise-0003-0004"]
    (tmp_path / "scene.blend").write_bytes(b"another scene")
    # The renders run again (their denoise tasks follow when the rendered bytes differ), then it converges.
    ran = run(graph)
    assert {"render-0001-0002", "render-0003-0004"} <= set(ran)
    assert run(graph) == []


def test_another_farmplug_version_re_runs_everything(tmp_path, monkeypatch):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    run(graph)
    monkeypatch.setattr("farmplug.__version__", "99.0.0")
    assert run(graph) == [t.id for t in graph.topological()]


def test_a_frame_with_this_tasks_name_but_another_key_is_not_trusted(tmp_path):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    run(graph)
    denoise = graph.task("denoise-0001-0002")
    write_frame(denoise.outputs[1], tiny_frame(2.0), provenance={"stage": "denoise", "task": denoise.id, "key": "stale"})
    assert not task_is_done(denoise, graph.run_dir)
    assert run(graph) == [denoise.id]


def test_a_deleted_interpolated_frame_is_made_again(tmp_path):
    """Before, the inbetween task listed only its confidence record, so a deleted frame it had
    delivered was never made again (and the fallback renders only frames that failed)."""
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path, step=2, frames=5))
    runner = KeyframeAwareRunner(failing=frozenset({4}))
    run(graph, runner)
    inbetween = next(t for t in graph.tasks if t.verdicts)
    assert inbetween.frames == [2, 4] and len(inbetween.delivers) == 2
    assert run(graph, KeyframeAwareRunner(failing=frozenset({4}))) == []
    Path(inbetween.delivers[0]).unlink()  # frame 2, which passed
    assert not task_is_done(inbetween, graph.run_dir)
    # The inbetween task makes it again; its verdicts are the same, so the fallback (whose rendered
    # frame 4 is still there) stays done.
    assert run(graph, KeyframeAwareRunner(failing=frozenset({4}))) == [inbetween.id]
    assert Path(inbetween.delivers[0]).is_file() and all(task_is_done(t, graph.run_dir) for t in graph.tasks)


def test_frames_another_run_made_at_the_delivery_pattern_are_refused_unless_forced(tmp_path):
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    final = Path(graph.task("denoise-0001-0002").outputs[0])
    write_frame(final, tiny_frame(7.0), provenance={"stage": "denoise", "task": "denoise-0001-0002", "plan": "/elsewhere/plan.yaml"})
    before = final.read_bytes()
    with pytest.raises(FarmplugError, match=r"task denoise-0001-0002 would overwrite .*sh\.0001\.exr, which this run did not make"):
        run(graph)
    assert final.read_bytes() == before
    write_frame(final, tiny_frame(7.0))  # no provenance at all: not ours either
    with pytest.raises(FarmplugError, match="--force"):
        run(graph)
    assert "denoise-0001-0002" in run(graph, force=True)
    assert run(graph) == []


def test_a_moved_or_copied_run_folder_is_read_where_it_lies(tmp_path):
    """Paths inside the run folder follow it: a moved or copied folder is its own, not the original's."""
    import shutil

    from farmplug.graph import load_graph, save_graph

    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    run(graph)
    save_graph(graph, Path(graph.run_dir))
    # graph.json names no absolute path inside the run folder: every one is relative to it.
    written = (Path(graph.run_dir) / "graph.json").read_text()
    assert graph.run_dir not in written and "{run_dir}/work/" in written
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(graph.run_dir, moved)
    again = load_graph(moved)
    assert again.run_dir == str(moved)
    assert all(str(moved) in t.timing for t in again.tasks)
    assert all(Path(o).is_file() for t in again.tasks for o in t.outputs)
    assert again.plan_file == graph.plan_file  # outside the run folder: unchanged
    copy = tmp_path / "copy"
    shutil.copytree(moved, copy)
    assert all(str(copy) in t.timing for t in load_graph(copy).tasks)
    # Keys count paths inside the run folder relative to it: the moved and the copied folder
    # (or a farm worker's view of it under another mount) keep every task done.
    assert run(again) == [] and run(load_graph(copy)) == []


def test_another_renderer_re_runs_everything(tmp_path, monkeypatch):
    """FARMPLUG_BLENDER names the renderer that runs; its frames are not the bpy module's."""
    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    monkeypatch.delenv("FARMPLUG_BLENDER", raising=False)
    run(graph)
    assert run(graph) == []
    monkeypatch.setenv("FARMPLUG_BLENDER", "/opt/blender-4.5/blender")
    assert run(graph) == [t.id for t in graph.topological()]


def test_a_task_a_farm_runs_alone_computes_the_key_the_engine_would_give_it(tmp_path, monkeypatch):
    """On a farm no engine hands the key over: the worker finds the run's graph.json and computes it."""
    from farmplug import worker
    from farmplug.graph import save_graph

    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    save_graph(graph, Path(graph.run_dir))
    monkeypatch.delenv(TASK_KEY_ENV, raising=False)
    for task in graph.tasks:
        assert worker.task_key(task.id, Path(task.timing), task.argv) == task_key(task, graph.run_dir) != ""
    task = graph.tasks[-1]
    assert worker.task_key(task.id, Path(task.timing), [*task.argv, "--samples", "1"]) == ""  # not the graph's command
    assert worker.task_key("render-9999-9999", Path(task.timing), task.argv) == ""  # not a task of this graph
    assert worker.task_key(task.id, tmp_path / "by-hand" / "x.timing.json", task.argv) == ""  # outside any run folder
    (Path(graph.run_dir) / "graph.json").write_text("{ not json")
    assert worker.task_key(task.id, Path(task.timing), task.argv) == ""  # a graph that does not read back


def test_a_stage_task_run_by_a_farm_worker_is_trusted_by_the_next_run(tmp_path, monkeypatch):
    """The real denoise task, run as a farm runs it (the command alone, no key handed over): its
    record and frames carry the key, so the local engine skips it; a changed input re-runs it."""
    from farmplug.graph import save_graph
    from farmplug.worker import run_task

    graph = graph_of(tmp_path, *shot_and_plan(tmp_path))
    save_graph(graph, Path(graph.run_dir))
    renders = [t for t in graph.tasks if t.kind == "render" and t.role == "plan"]
    for t in renders:
        KeyframeAwareRunner()(t)
    denoise = next(t for t in graph.tasks if t.stage == "denoise")
    monkeypatch.delenv(TASK_KEY_ENV, raising=False)
    assert run_task(denoise.argv) == 0
    assert task_is_done(denoise, graph.run_dir)
    write_frame(denoise.inputs[1], tiny_frame(9.0))  # the render it read was made again: new inputs, new key
    assert not task_is_done(denoise, graph.run_dir)
