"""Procedural training scenes: random objects, textured, glossy and toon materials, Blender's HDRIs, camera moves.

Every scene is made from a seed alone, so a training set is reproducible from ``--seed`` and the
count. A scene is a ground plane, an optional back wall, 3 to 7 random primitives with random
materials of the chosen styles, one of the studio-light HDRIs bundled with Blender (rotated and
scaled at random; packed into the .blend) and a camera that orbits or dollies over the frames.

Styles: ``textured`` (procedural checker, brick, noise, wave and Voronoi colours), ``glossy``
(metals and polished dielectrics), ``toon`` (Toon BSDF with posterised colour bands) and
``ink`` (toon with black outlines and hatching; not in the default set, kept for testing a
style the shipped weights never saw and for fine-tuning).

Callers use :func:`build_scene`, which runs ``python -m farmplug.nn.scenes OUT.blend --seed S``
in a child process so that they never import ``bpy`` themselves.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path
from typing import Any

from farmplug.errors import ConfigError
from farmplug.render.demo_scene import builder_status, exit_child, material, render_settings, run_builder, save_blend

STYLES = ("textured", "glossy", "toon", "ink")
DEFAULT_STYLES = ("textured", "glossy", "toon")


def scene_command(out_blend: str | Path, *, seed: int, frames: int = 4, resolution: tuple[int, int] = (128, 72),
                  samples: int = 128, styles: tuple[str, ...] = DEFAULT_STYLES) -> list[str]:
    """Argument list that builds scene ``seed`` in a child ``bpy`` process.

    Raises:
        ConfigError: an unknown style, or a non-positive frame count, size or sample count.
    """
    unknown = sorted(set(styles) - set(STYLES))
    if unknown or not styles:
        raise ConfigError(f"unknown scene styles {unknown}; allowed: {', '.join(STYLES)}")
    if frames < 1 or min(resolution) < 1 or samples < 1:
        raise ConfigError(f"scene needs frames, size and samples >= 1 (got {frames}, {resolution}, {samples})")
    return [sys.executable, "-m", __name__, str(Path(out_blend).expanduser().resolve()), "--seed", str(seed),
            "--frames", str(frames), "--width", str(resolution[0]), "--height", str(resolution[1]),
            "--samples", str(samples), "--styles", ",".join(styles)]


def build_scene(out_blend: str | Path, *, seed: int, frames: int = 4, resolution: tuple[int, int] = (128, 72),
                samples: int = 128, styles: tuple[str, ...] = DEFAULT_STYLES) -> Path:
    """Write procedural scene ``seed`` to ``out_blend`` (atomically, in a child process).

    Raises:
        ConfigError: bad arguments; RenderError: the child failed (its last lines quoted).
    """
    out_blend = Path(out_blend)
    command = scene_command(out_blend, seed=seed, frames=frames, resolution=resolution, samples=samples, styles=styles)
    run_builder(command, out_blend, f"procedural scene {seed}")
    return out_blend


# --- everything below runs inside the child, where bpy is importable -------------------------


def _textured(bpy: Any, rng: random.Random, name: str) -> Any:
    mat, nodes, bsdf = material(bpy, name)
    links = mat.node_tree.links
    coords = nodes.new("ShaderNodeTexCoord")
    kind = rng.choice(["checker", "brick", "noise", "wave", "voronoi"])
    scale = rng.uniform(2.0, 14.0)

    def colour() -> tuple[float, float, float, float]:
        return (rng.random() ** 1.5, rng.random() ** 1.5, rng.random() ** 1.5, 1.0)

    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = colour()
    ramp.color_ramp.elements[1].color = colour()
    if kind == "checker":
        tex = nodes.new("ShaderNodeTexChecker")
        tex.inputs["Color1"].default_value = colour()
        tex.inputs["Color2"].default_value = colour()
        tex.inputs["Scale"].default_value = scale
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    elif kind == "brick":
        tex = nodes.new("ShaderNodeTexBrick")
        tex.inputs["Color1"].default_value = colour()
        tex.inputs["Color2"].default_value = colour()
        tex.inputs["Mortar"].default_value = colour()
        tex.inputs["Scale"].default_value = scale / 2
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    else:
        tex = nodes.new({"noise": "ShaderNodeTexNoise", "wave": "ShaderNodeTexWave",
                         "voronoi": "ShaderNodeTexVoronoi"}[kind])
        tex.inputs["Scale"].default_value = scale
        out = tex.outputs["Fac"] if "Fac" in tex.outputs else tex.outputs["Distance"]
        links.new(out, ramp.inputs["Fac"])
        links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    links.new(coords.outputs["Object"], tex.inputs["Vector"])
    bsdf.inputs["Roughness"].default_value = rng.uniform(0.3, 0.9)
    return mat


def _glossy(bpy: Any, rng: random.Random, name: str) -> Any:
    mat, nodes, bsdf = material(bpy, name)
    hue = (rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), 1.0)
    bsdf.inputs["Base Color"].default_value = hue if rng.random() < 0.7 else (0.05, 0.05, 0.06, 1.0)
    bsdf.inputs["Metallic"].default_value = 1.0 if rng.random() < 0.5 else 0.0
    bsdf.inputs["Roughness"].default_value = rng.uniform(0.02, 0.3)
    if rng.random() < 0.4:
        checker = nodes.new("ShaderNodeTexChecker")
        checker.inputs["Scale"].default_value = rng.uniform(2, 8)
        checker.inputs["Color1"].default_value = hue
        checker.inputs["Color2"].default_value = (0.8, 0.8, 0.82, 1.0)
        mat.node_tree.links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def _toon(bpy: Any, rng: random.Random, name: str, *, ink: bool) -> Any:
    """Toon BSDF with a posterised (constant-interpolated) colour ramp; ``ink`` adds black outlines
    from the facing ratio and a hatching of thin stripes."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for node in list(nodes):
        if node.type != "OUTPUT_MATERIAL":
            nodes.remove(node)
    output = next(n for n in nodes if n.type == "OUTPUT_MATERIAL")
    toon = nodes.new("ShaderNodeBsdfToon")
    toon.inputs["Size"].default_value = rng.uniform(0.5, 0.9)
    toon.inputs["Smooth"].default_value = 0.0
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = rng.uniform(1.0, 5.0)
    bands = nodes.new("ShaderNodeValToRGB")
    bands.color_ramp.interpolation = "CONSTANT"
    bands.color_ramp.elements[0].color = (rng.random(), rng.random(), rng.random(), 1.0)
    bands.color_ramp.elements[1].position = 0.5
    bands.color_ramp.elements[1].color = (rng.random(), rng.random(), rng.random(), 1.0)
    links.new(noise.outputs["Fac"], bands.inputs["Fac"])
    links.new(bands.outputs["Color"], toon.inputs["Color"])
    shader = toon.outputs["BSDF"]
    if ink:
        black = nodes.new("ShaderNodeBsdfDiffuse")
        black.inputs["Color"].default_value = (0.0, 0.0, 0.0, 1.0)
        facing = nodes.new("ShaderNodeLayerWeight")
        facing.inputs["Blend"].default_value = rng.uniform(0.25, 0.45)
        edge = nodes.new("ShaderNodeMath")
        edge.operation = "GREATER_THAN"
        edge.inputs[1].default_value = 0.6
        links.new(facing.outputs["Facing"], edge.inputs[0])
        hatch = nodes.new("ShaderNodeTexWave")
        hatch.inputs["Scale"].default_value = rng.uniform(20, 40)
        hatch_edge = nodes.new("ShaderNodeMath")
        hatch_edge.operation = "GREATER_THAN"
        hatch_edge.inputs[1].default_value = 0.85
        links.new(hatch.outputs["Fac"], hatch_edge.inputs[0])
        lines = nodes.new("ShaderNodeMath")
        lines.operation = "MAXIMUM"
        links.new(edge.outputs[0], lines.inputs[0])
        links.new(hatch_edge.outputs[0], lines.inputs[1])
        mix = nodes.new("ShaderNodeMixShader")
        links.new(lines.outputs[0], mix.inputs["Fac"])
        links.new(shader, mix.inputs[1])
        links.new(black.outputs["BSDF"], mix.inputs[2])
        shader = mix.outputs["Shader"]
    links.new(shader, output.inputs["Surface"])
    return mat


def _material(bpy: Any, rng: random.Random, styles: list[str], name: str) -> Any:
    style = rng.choice(styles)
    if style == "textured":
        return _textured(bpy, rng, name)
    if style == "glossy":
        return _glossy(bpy, rng, name)
    return _toon(bpy, rng, name, ink=style == "ink")


def _hdris(bpy: Any) -> list[Path]:
    folder = Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world"))
    found = sorted(folder.glob("*.exr"))
    if not found:
        raise FileNotFoundError(f"no studio-light HDRI in {folder}")
    return found


def _build_in_blender(out_blend: Path, *, seed: int, frames: int, width: int, height: int, samples: int,
                      styles: list[str]) -> None:
    import bpy  # Only inside the child.

    rng = random.Random(seed)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene = bpy.context.scene

    bpy.ops.mesh.primitive_plane_add(size=30.0, location=(0.0, 0.0, 0.0))
    bpy.context.active_object.data.materials.append(_material(bpy, rng, [s for s in styles if s != "glossy"] or styles,
                                                              "Ground"))
    if rng.random() < 0.6:
        bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, rng.uniform(3, 6), 1.5),
                                         rotation=(math.pi / 2, 0.0, rng.uniform(-0.4, 0.4)))
        wall = bpy.context.active_object
        wall.scale = (10.0, 3.0, 1.0)
        wall.data.materials.append(_material(bpy, rng, styles, "Wall"))

    adders = [
        lambda s: bpy.ops.mesh.primitive_uv_sphere_add(radius=s, segments=40, ring_count=20),
        lambda s: bpy.ops.mesh.primitive_cube_add(size=1.6 * s),
        lambda s: bpy.ops.mesh.primitive_cylinder_add(radius=0.7 * s, depth=2 * s, vertices=40),
        lambda s: bpy.ops.mesh.primitive_cone_add(radius1=s, depth=2 * s, vertices=40),
        lambda s: bpy.ops.mesh.primitive_torus_add(major_radius=s, minor_radius=0.3 * s, major_segments=48),
        lambda s: bpy.ops.mesh.primitive_monkey_add(size=1.6 * s),
        lambda s: bpy.ops.mesh.primitive_ico_sphere_add(radius=s, subdivisions=2),
    ]
    for index in range(rng.randint(3, 7)):
        size = rng.uniform(0.3, 1.0)
        adders[rng.randrange(len(adders))](size)
        obj = bpy.context.active_object
        obj.location = (rng.uniform(-3, 3), rng.uniform(-1.5, 3), size * rng.uniform(0.7, 1.3))
        obj.rotation_euler = (rng.uniform(0, 0.5), rng.uniform(0, 0.5), rng.uniform(0, math.tau))
        obj.data.materials.append(_material(bpy, rng, styles, f"Object{index}"))
        if rng.random() < 0.7:
            obj.data.shade_smooth()

    target = bpy.data.objects.new("CameraTarget", None)
    target.location = (rng.uniform(-0.5, 0.5), rng.uniform(0, 1.5), rng.uniform(0.3, 1.0))
    scene.collection.objects.link(target)
    camera_data = bpy.data.cameras.new("Camera")
    camera_data.lens = rng.uniform(24, 60)
    camera = bpy.data.objects.new("Camera", camera_data)
    scene.collection.objects.link(camera)
    angle, distance, elevation = rng.uniform(-0.8, 0.8), rng.uniform(5, 10), rng.uniform(0.8, 4)
    sweep = rng.uniform(-0.6, 0.6)
    for frame in (1, frames):
        a = angle + (sweep if frame == frames and frames > 1 else 0)
        d = distance * (0.85 if frame == frames and frames > 1 and rng.random() < 0.5 else 1)
        camera.location = (d * math.sin(a), -d * math.cos(a), elevation)
        camera.keyframe_insert("location", frame=frame)
    aim = camera.constraints.new("TRACK_TO")
    aim.target = target
    aim.track_axis = "TRACK_NEGATIVE_Z"
    aim.up_axis = "UP_Y"
    scene.camera = camera

    world = bpy.data.worlds.new("World")
    if world.node_tree is None:
        world.use_nodes = True
    scene.world = world
    wnodes = world.node_tree.nodes
    background = wnodes.get("Background") or wnodes.new("ShaderNodeBackground")
    environment = wnodes.new("ShaderNodeTexEnvironment")
    environment.image = bpy.data.images.load(str(rng.choice(_hdris(bpy))))
    environment.image.pack()
    mapping = wnodes.new("ShaderNodeMapping")
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, rng.uniform(0, math.tau))
    coords = wnodes.new("ShaderNodeTexCoord")
    world.node_tree.links.new(coords.outputs["Generated"], mapping.inputs["Vector"])
    world.node_tree.links.new(mapping.outputs["Vector"], environment.inputs["Vector"])
    world.node_tree.links.new(environment.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = rng.uniform(0.6, 1.5)
    world.cycles.sampling_method = "NONE"

    render_settings(scene, first=1, last=frames, width=width, height=height, samples=samples)
    scene.frame_set(1)
    save_blend(bpy, out_blend)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m farmplug.nn.scenes", description=__doc__)
    parser.add_argument("out_blend", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=72)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--styles", default=",".join(DEFAULT_STYLES))
    args = parser.parse_args(argv)
    return builder_status(
        lambda: _build_in_blender(args.out_blend, seed=args.seed, frames=args.frames, width=args.width,
                                  height=args.height, samples=args.samples, styles=args.styles.split(",")),
        f"farmplug procedural scene {args.seed}",
    )


if __name__ == "__main__":
    exit_child(_main)
