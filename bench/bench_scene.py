"""A bench shot that looks like a user's scene rather than farmplug's own: built in a bpy child.

Unlike the demo shot (five objects, world importance sampling off), this is what a new user's
small scene tends to be: a subdivided hero mesh (Suzanne at render level 3), a scatter of 120
separate rock objects, a ground with a 1024x1024 image texture, a sun and an area light (light
tree on), and the bundled HDRI *with* world importance sampling (Blender's default). A metal ball
rolls across the set and the camera dollies, so every frame moves an object and the camera.
Sampling is fixed (adaptive sampling off) so a frame's cost is linear in its samples.

Used by ``bench/render_fixed_cost.py`` (the fixed/per-sample cost of reduced renders) and
available to the calibration benchmarks of issue 13::

    python bench/bench_scene.py OUT.blend --frames 12 --width 320 --height 180 --samples 256

or from Python, :func:`build_bench_scene` (which runs that in a child, so the caller never imports
``bpy``).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Any

from farmplug.render.demo_scene import (
    builder_status,
    exit_child,
    find_hdri,
    material,
    render_settings,
    run_builder,
    save_blend,
)

ROCKS = 120


def build_bench_scene(
    out_blend: str | Path,
    *,
    frames: int = 12,
    resolution: tuple[int, int] = (320, 180),
    samples: int = 256,
    python_executable: str | Path | None = None,
) -> Path:
    """Write the bench shot to ``out_blend`` (atomically), building it in a child ``bpy`` process.

    Raises:
        RenderError: the child failed; the message quotes its last output lines.
    """
    out = Path(out_blend).expanduser().resolve()
    command = [
        str(python_executable or sys.executable), str(Path(__file__).resolve()), str(out),
        "--frames", str(frames), "--width", str(resolution[0]), "--height", str(resolution[1]),
        "--samples", str(samples),
    ]
    run_builder(command, out, "bench scene")
    return out


# --- everything below runs inside the child, where bpy is importable -------------------------


def _ground(bpy: Any) -> Any:
    """A ground material with a generated (and packed) 1024x1024 image texture."""
    import numpy as np  # bpy ships numpy

    size = 1024
    image = bpy.data.images.new("GroundTexture", size, size, float_buffer=False)
    rng = np.random.default_rng(3)
    coarse = rng.random((size // 32, size // 32)).astype(np.float32)
    value = np.kron(coarse, np.ones((32, 32), np.float32)) * 0.6 + rng.random((size, size), dtype=np.float32) * 0.4
    rgba = np.stack([value * 0.55, value * 0.45, value * 0.35, np.ones_like(value)], axis=-1)
    image.pixels.foreach_set(rgba.ravel())
    image.pack()
    mat, nodes, bsdf = material(bpy, "Ground")
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    mat.node_tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.8
    return mat


def _simple(bpy: Any, name: str, color: tuple[float, float, float], *, metallic: float, roughness: float) -> Any:
    mat, _nodes, bsdf = material(bpy, name)
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def _build_in_blender(out_blend: Path, *, frames: int, width: int, height: int, samples: int) -> None:
    import bpy  # Only inside the child.

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene = bpy.context.scene
    first, last = 1, frames

    bpy.ops.mesh.primitive_plane_add(size=30.0)
    bpy.context.active_object.data.materials.append(_ground(bpy))

    bpy.ops.mesh.primitive_monkey_add(size=1.6, location=(1.6, 1.8, 1.0))
    hero = bpy.context.active_object
    subsurf = hero.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels, subsurf.render_levels = 1, 3
    hero.data.materials.append(_simple(bpy, "Hero", (0.8, 0.25, 0.1), metallic=0.0, roughness=0.35))
    hero.data.shade_smooth()

    rock = _simple(bpy, "Rock", (0.35, 0.33, 0.3), metallic=0.0, roughness=0.9)
    rng = random.Random(7)
    for _ in range(ROCKS):
        bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=rng.uniform(0.08, 0.25),
                                              location=(rng.uniform(-6, 6), rng.uniform(-1, 9), 0.05))
        obj = bpy.context.active_object
        obj.scale = (1.0, rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.9))
        obj.rotation_euler = (0.0, 0.0, rng.uniform(0, math.pi))
        obj.data.materials.append(rock)

    radius = 0.5
    bpy.ops.mesh.primitive_uv_sphere_add(radius=radius, segments=48, ring_count=24)
    ball = bpy.context.active_object
    ball.data.materials.append(_simple(bpy, "Ball", (0.9, 0.9, 0.92), metallic=1.0, roughness=0.15))
    ball.data.shade_smooth()
    for frame, x in ((first, -2.4), (last, 1.0)):
        ball.location = (x, 0.4, radius)
        ball.rotation_euler = (0.0, (x + 2.4) / radius, 0.0)
        ball.keyframe_insert("location", frame=frame)
        ball.keyframe_insert("rotation_euler", frame=frame)

    sun = bpy.data.objects.new("Sun", bpy.data.lights.new("Sun", "SUN"))
    sun.data.energy, sun.data.angle = 3.0, math.radians(3.0)
    sun.rotation_euler = (math.radians(50), 0.0, math.radians(30))
    scene.collection.objects.link(sun)
    area = bpy.data.objects.new("Area", bpy.data.lights.new("Area", "AREA"))
    area.data.energy, area.data.size = 300.0, 2.0
    area.location, area.rotation_euler = (-3.0, -2.0, 4.0), (math.radians(40), 0.0, math.radians(-40))
    scene.collection.objects.link(area)

    target = bpy.data.objects.new("CameraTarget", None)
    target.location = (0.0, 1.5, 0.6)
    scene.collection.objects.link(target)
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = 30.0
    scene.collection.objects.link(camera)
    for frame, x in ((first, -0.8), (last, 0.8)):
        camera.location = (x, -6.0, 2.4)
        camera.keyframe_insert("location", frame=frame)
    aim = camera.constraints.new("TRACK_TO")
    aim.target, aim.track_axis, aim.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    scene.camera = camera

    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # Blender < 5.0
        world.use_nodes = True
    scene.world = world
    background = world.node_tree.nodes.get("Background") or world.node_tree.nodes.new("ShaderNodeBackground")
    environment = world.node_tree.nodes.new("ShaderNodeTexEnvironment")
    environment.image = bpy.data.images.load(str(find_hdri(bpy)))
    environment.image.pack()
    world.node_tree.links.new(environment.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = 0.6
    world.cycles.sampling_method = "AUTOMATIC"  # Blender's default, unlike the demo shot

    render_settings(scene, first=first, last=last, width=width, height=height, samples=samples)
    scene.frame_set(first)
    save_blend(bpy, out_blend)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_scene.py", description=__doc__)
    parser.add_argument("out_blend", type=Path)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args(argv)
    return builder_status(
        lambda: _build_in_blender(args.out_blend, frames=args.frames, width=args.width, height=args.height,
                                  samples=args.samples),
        "farmplug bench scene",
    )


if __name__ == "__main__":
    exit_child(_main)
