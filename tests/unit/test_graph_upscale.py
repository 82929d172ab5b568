"""The resolution lever in the job graph: a half-resolution render, a full-resolution guide render
per chunk for the upscaler, and references at the shot's full resolution."""

from __future__ import annotations

from pathlib import Path

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
