"""The resolution lever in the job graph: a half-resolution render, a full-resolution guide render
per chunk for the upscaler, and references at the shot's full resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from farmplug.denoise.config import DenoiseConfig
from farmplug.graph import compile_plan, farm_layers
from farmplug.inbetween.config import InbetweenConfig
from farmplug.models import FrameRangeModel, Plan, Resolution, Shot
from farmplug.upscale.config import UpscaleConfig

ROOT = Path("/shows/demo/sh040")


def graph(step: int = 1):
    shot = Shot(name="sh040", scene=f"{ROOT}/scene.blend", frames=FrameRangeModel(start=1, end=12),
                resolution=Resolution(width=320, height=180), samples=1024, output="frames/sh040.####.exr")
    stages = [DenoiseConfig(), UpscaleConfig()] + ([InbetweenConfig()] if step > 1 else [])
    plan = Plan(shot="shot.yaml", samples_factor=1 / 32, resolution_scale=0.5, frame_step=step, stages=stages,
                chunk_size=4, check_frames=[2, 11])
    return compile_plan(plan, shot, plan_file=ROOT / "plan.yaml", shot_file=ROOT / "shot.yaml", run_dir=ROOT / "run")


def percentage(task) -> int:
    return int(task.argv[task.argv.index("--resolution-percentage") + 1])


def test_the_plan_renders_at_half_resolution_its_guides_and_references_at_full():
    g = graph()
    by_layer = {}
    for t in g.tasks:
        by_layer.setdefault(t.layer, []).append(t)
    assert sorted(by_layer) == ["denoise", "fullres", "reference", "render", "upscale"]
    assert {percentage(t) for t in by_layer["render"]} == {50}
    assert {percentage(t) for t in by_layer["reference"]} == {100}
    assert {percentage(t) for t in by_layer["fullres"]} == {100}
    fullres = by_layer["fullres"][0]
    assert fullres.argv[fullres.argv.index("--samples") + 1] == "2"
    assert fullres.argv[fullres.argv.index("--passes") + 1] == "albedo,depth,normal"
    for up in by_layer["upscale"]:
        guide = next(t for t in by_layer["fullres"] if t.frames == up.frames)
        denoised = next(t for t in by_layer["denoise"] if t.frames == up.frames)
        assert set(up.depends_on) == {guide.id, denoised.id}
        assert up.argv[up.argv.index("--aux") + 1] == str(ROOT / "run" / "work" / "fullres" / "sh040.####.exr")
        assert up.argv[up.argv.index("--input") + 1] == str(ROOT / "run" / "work" / "denoise" / "sh040.####.exr")
        assert set(guide.outputs) <= set(up.inputs)
        assert up.outputs == [str(ROOT / "run" / "frames" / f"sh040.{f:04d}.exr") for f in up.frames]
    # On a farm: the upscale layer waits for the guide of its own frames.
    layers = {layer.name: layer for layer in farm_layers(g)}
    assert {d.layer for d in layers["upscale"].depends_on} == {"denoise", "fullres"}


def test_with_a_frame_step_the_inbetween_works_on_full_resolution_frames():
    g = graph(step=2)
    inbetween = [t for t in g.tasks if t.stage == "inbetween"]
    assert inbetween and all(t.argv[t.argv.index("--input") + 1].endswith("/run/frames/sh040.####.exr") for t in inbetween)
    assert {percentage(t) for t in g.tasks if t.layer == "render"} == {50}
    assert {percentage(t) for t in g.tasks if t.layer == "guide"} <= {100}


# --- the TensorRT engine, built once before the GPU upscale tasks ---------------------------------


def cuda_graph(*, frames=None, layer_prefix="", **upscale):
    shot = Shot(name="sh040", scene=f"{ROOT}/scene.blend", frames=FrameRangeModel(start=1, end=12),
                resolution=Resolution(width=320, height=180), samples=1024, output="frames/sh040.####.exr")
    config = UpscaleConfig(**{"device": "cuda", "model": f"{ROOT}/models/sr.safetensors", **upscale})
    plan = Plan(shot="shot.yaml", samples_factor=1 / 32, resolution_scale=0.5, stages=[DenoiseConfig(), config],
                chunk_size=5, check_frames=[2, 11])
    return compile_plan(plan, shot, plan_file=ROOT / "plan.yaml", shot_file=ROOT / "shot.yaml", run_dir=ROOT / "run",
                        frames=frames, layer_prefix=layer_prefix)


def option(task, flag: str) -> str:
    return task.argv[task.argv.index(flag) + 1]


def test_a_cuda_upscaler_builds_its_engine_once_on_a_gpu_before_every_upscale_task():
    g = cuda_graph()
    (engine,) = [t for t in g.tasks if t.kind == "setup"]
    upscales = [t for t in g.tasks if t.layer == "upscale"]
    assert (engine.id, engine.layer, engine.stage, engine.role, engine.gpus) == (
        "engine-upscale-0001-0012", "engine-upscale", "engine", "plan", 1)
    # One task over every frame the upscale tasks make, which all wait for it.
    assert engine.frames == sorted(f for t in upscales for f in t.frames) == list(range(1, 13))
    assert [len(t.frames) for t in upscales] == [5, 5, 2]
    assert all(engine.id in t.depends_on for t in upscales)
    assert not any(engine.id in t.depends_on for t in g.tasks if t.layer != "upscale")
    # The engine is a cache the upscaler loads, not an input of its frames.
    assert not any(set(engine.outputs) & set(t.inputs) for t in upscales)
    record = str(ROOT / "run" / "work" / "engine" / "engine-upscale-0001-0012.json")
    assert engine.argv == ["run", "engine", "--layer", "engine-upscale", "--frames", "1-12",
                           "--model", f"{ROOT}/models/sr.safetensors", "--shape", "1024x1024", "--output", record]
    assert engine.outputs == [record]
    assert engine.timing == str(ROOT / "run" / "work" / "engine" / "engine-upscale-0001-0012.timing.json")
    assert engine.inputs == [f"{ROOT}/models/sr.safetensors"]
    # On a farm: one GPU layer of one chunk, which the upscale layer waits for frame for frame.
    layers = {layer.name: layer for layer in farm_layers(g)}
    assert (layers["engine-upscale"].kind, layers["engine-upscale"].gpus) == ("setup", 1)
    assert layers["engine-upscale"].chunks == [list(range(1, 13))]
    waits = {d.layer: (d.start, d.end) for d in layers["upscale"].depends_on}
    assert waits == {"denoise": (0, 0), "fullres": (0, 0), "engine-upscale": (0, 0)}
    assert not any(d.layer == "engine-upscale" for name, layer in layers.items() if name != "upscale"
                   for d in layer.depends_on)


def test_the_engine_shape_is_the_tile_the_upscale_tasks_ask_for():
    from farmplug.nn.registry import architecture

    arch = architecture("guided-sr-2x")
    # memory_mb sets the tile: 2048 MB at 2048 bytes a pixel is a 1024-pixel window, the 28-pixel
    # overlap on both sides included; a given tile adds the overlap.
    assert option(next(t for t in cuda_graph().tasks if t.kind == "setup"), "--shape") == "1024x1024"
    assert option(next(t for t in cuda_graph(memory_mb=512).tasks if t.kind == "setup"), "--shape") == "512x512"
    assert option(next(t for t in cuda_graph(tile=256).tasks if t.kind == "setup"), "--shape") == "312x312"
    for settings in ({}, {"memory_mb": 512}, {"tile": 256}):
        config = UpscaleConfig(device="cuda", **settings)
        side = config.tile_window(arch)
        assert config.engine_build().shape == (side, side)


def test_without_a_model_the_engine_is_built_from_the_shipped_weights():
    from farmplug.upscale.stage import SHIPPED_WEIGHTS

    build = UpscaleConfig(device="cuda").engine_build()
    assert build.model == str(SHIPPED_WEIGHTS) and build.model.endswith("guided-sr-2x.safetensors")


def test_the_engine_task_of_a_graph_restricted_to_some_frames_and_prefixed():
    g = cuda_graph(frames=[7], layer_prefix="x1-32_")
    (engine,) = [t for t in g.tasks if t.kind == "setup"]
    upscales = [t for t in g.tasks if t.layer == "x1-32_upscale"]
    assert engine.layer == "x1-32_engine-upscale" and engine.id == "x1-32_engine-upscale-0007-0007"
    assert engine.frames == [7] == [f for t in upscales for f in t.frames]
    assert option(engine, "--layer") == "x1-32_engine-upscale"
    assert option(engine, "--output").endswith("/work/engine/x1-32_engine-upscale-0007-0007.json")
    assert all(engine.id in t.depends_on for t in upscales)


@pytest.mark.parametrize("settings", [
    pytest.param({"device": "cpu"}, id="cpu"),
    pytest.param({"device": "auto"}, id="auto-may-land-on-a-cpu"),
    pytest.param({"runtime": "torch"}, id="torch-has-no-engine"),
])
def test_no_engine_task_where_the_upscaler_builds_no_engine(settings):
    g = cuda_graph(**settings)
    assert not [t for t in g.tasks if t.kind == "setup" or t.layer.startswith("engine")]
    for up in (t for t in g.tasks if t.layer == "upscale"):
        assert all(d.startswith(("denoise-", "fullres-")) for d in up.depends_on)
    assert UpscaleConfig(**settings).engine_build() is None


def test_the_core_reads_the_engine_from_the_config_not_the_stage_name(monkeypatch):
    """Any stage whose config asks for an engine gets one, a keyframe stage too (inbetween here)."""
    from farmplug.stages.base import EngineBuild

    monkeypatch.setattr(InbetweenConfig, "engine_build", lambda self: EngineBuild(model="/m/ib.safetensors",
                                                                                  shape=(256, 128)))
    g = graph(step=2)
    (engine,) = [t for t in g.tasks if t.kind == "setup"]
    inbetween = [t for t in g.tasks if t.layer == "inbetween"]
    assert engine.layer == "engine-inbetween" and engine.gpus == 1
    assert engine.frames == sorted(f for t in inbetween for f in t.frames)
    assert option(engine, "--shape") == "256x128" and option(engine, "--model") == "/m/ib.safetensors"
    assert all(engine.id in t.depends_on and engine.outputs[0] not in t.inputs for t in inbetween)
    layers = {layer.name: layer for layer in farm_layers(g)}
    assert {d.layer: (d.start, d.end) for d in layers["inbetween"].depends_on}["engine-inbetween"] == (0, 0)


def test_a_setup_task_costs_its_time_once_per_task_never_per_frame():
    """Calibration's cost model: the engine build's measured time is a fixed cost of the plan (its
    record holds no frames), so a longer shot does not make it dearer."""
    from farmplug.calibrate import estimate_cost, measured_cost
    from farmplug.timing import FrameTiming, TimingRecord

    g = cuda_graph(frames=[7])
    records = []
    for t in g.tasks:
        if t.kind == "setup":
            record = TimingRecord(task=t.id, stage="engine", backend="none", started_at=0, finished_at=30,
                                  overhead_cpu_s=30.0)
        else:
            record = TimingRecord(task=t.id, stage=t.stage, backend="x", started_at=0, finished_at=1,
                                  frames=[FrameTiming(frame=f, wall_s=1.0, cpu_s=1.0) for f in t.frames])
        records.append((t, record))
    measured = measured_cost(records)
    assert measured.layers["engine"].core_s_per_frame == 0.0
    assert measured.layers["engine"].overhead_core_s == 30.0
    assert measured.layers["engine"].frames == 0
    plan = g.plan.model_copy(update={"check_frames": []})
    cost = estimate_cost(measured, plan, g.shot)
    # 12 frames of render, fullres, denoise and upscale at 1 core-s each, and one engine build.
    assert cost.fixed_core_s == 30.0
    assert cost.total_core_s == 12 * 4 * 1.0 + 30.0
