"""A small animated Cycles shot that is a fair test of a denoiser, built in a child process.

The shot has procedural textures (checker, brick, noise, wave), glossy and metallic surfaces,
objects that move and rotate (a rolling metal ball, a spinning Suzanne, a tumbling torus), a
slowly dollying camera, and one of Blender's bundled studio-light HDRIs as the only light. The
HDRI is packed into the .blend, so the file renders anywhere.

Callers use :func:`build_demo_scene`, which runs ``python -m farmplug.render.demo_scene OUT.blend
--frames N --width W --height H --samples S`` so that they never import ``bpy`` themselves.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farmplug.errors import ConfigError, RenderError

log = logging.getLogger(__name__)

#: Preferred world HDRIs, first one found wins (all ship with Blender). Courtyard comes first
#: because it has no small, very bright sun: lit without importance sampling (see below), a sun
#: would leave fireflies even in the 512-sample reference.
HDRI_CHOICES = ("courtyard.exr", "forest.exr", "sunset.exr", "city.exr", "interior.exr", "studio.exr")
_TAIL_LINES = 15


def demo_scene_command(
    out_blend: str | Path,
    *,
    frames: int = 24,
    resolution: tuple[int, int] = (320, 180),
    samples: int = 512,
    python_executable: str | Path | None = None,
) -> list[str]:
    """Argument list that builds the demo scene in a child ``bpy`` process.

    Args:
        out_blend: The .blend file to write.
        frames: Length of the shot; the scene's frame range becomes ``1..frames``.
        resolution: Width and height in pixels (at 100 %).
        samples: Cycles samples per pixel of the full-quality render.
        python_executable: Interpreter with the ``bpy`` module (default: this one).

    Returns:
        The command as a list of arguments.

    Raises:
        ConfigError: a non-positive frame count, resolution or sample count.
    """
    width, height = resolution
    if frames < 1:
        raise ConfigError(f"demo scene needs at least 1 frame (got {frames})")
    if width < 1 or height < 1:
        raise ConfigError(f"demo scene resolution must be positive (got {width}x{height})")
    if samples < 1:
        raise ConfigError(f"demo scene samples must be >= 1 (got {samples})")
    return [
        str(python_executable or sys.executable),
        "-m",
        __name__,
        str(Path(out_blend).expanduser().resolve()),
        "--frames",
        str(frames),
        "--width",
        str(width),
        "--height",
        str(height),
        "--samples",
        str(samples),
    ]


def build_demo_scene(
    out_blend: str | Path,
    *,
    frames: int = 24,
    resolution: tuple[int, int] = (320, 180),
    samples: int = 512,
    python_executable: str | Path | None = None,
) -> None:
    """Write the demo shot to ``out_blend`` (atomically), building it in a child process.

    Args:
        out_blend: The .blend file to write; its folder is created if needed.
        frames: Length of the shot; the scene's frame range becomes ``1..frames``.
        resolution: Width and height in pixels (at 100 %).
        samples: Cycles samples per pixel of the full-quality render.
        python_executable: Interpreter with the ``bpy`` module (default: this one).

    Raises:
        ConfigError: a non-positive frame count, resolution or sample count.
        RenderError: the child failed; the message quotes its last output lines.
    """
    command = demo_scene_command(
        out_blend, frames=frames, resolution=resolution, samples=samples, python_executable=python_executable
    )
    log.debug("building demo scene: %s", command)
    run_builder(command, out_blend, "the demo scene")


def builder_status(build: Callable[[], None], what: str) -> int:
    """Child side of :func:`run_builder`: run ``build``; a failure becomes one line on stderr
    (which ``run_builder`` quotes) and status 1."""
    try:
        build()
    except Exception as err:  # noqa: BLE001 - process boundary: report one line, exit non-zero
        sys.stderr.write(f"{what}: {type(err).__name__}: {' '.join(str(err).split())}\n")
        return 1
    return 0


def exit_child(main: Callable[[], int]) -> None:
    """Run a bpy child's ``main`` and leave with its status through ``os._exit``, with both
    streams flushed (bpy's interpreter teardown can hang or crash after the work is done)."""
    sys.stdout.flush()
    sys.stderr.flush()
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_builder(command: list[str], out_blend: Path, what: str) -> None:
    """Run a scene-builder child process; its output goes to the debug log.

    Raises:
        RenderError: the child cannot start or fails (the message ends with its last lines).
    """
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except OSError as err:
        raise RenderError(f"cannot start the builder of {what} ({command[0]}): {err}", path=out_blend) from None
    lines = (done.stdout + done.stderr).splitlines()
    for line in lines:
        log.debug("blender: %s", line)
    if done.returncode != 0:
        tail = " | ".join(line for line in lines[-_TAIL_LINES:] if line.strip()) or "(no output)"
        raise RenderError(f"building {what} failed (status {done.returncode}): {tail}", path=out_blend)


# --- everything below runs inside the child, where bpy is importable -------------------------


def find_hdri(bpy: Any) -> Path:
    """The bundled studio-light HDRI to light with (sunless first, see ``HDRI_CHOICES``)."""
    folder = Path(bpy.utils.system_resource("DATAFILES", path="studiolights/world"))
    for name in HDRI_CHOICES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.exr"))
    if not found:
        raise FileNotFoundError(f"no studio-light HDRI in {folder}")
    return found[0]


def material(bpy: Any, name: str) -> tuple[Any, Any, Any]:
    """A node material with a Principled BSDF; returns (material, nodes, bsdf)."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5.0; 5.0 always gives new materials a node tree
        mat.use_nodes = True
    nodes = mat.node_tree.nodes
    bsdf = nodes.get("Principled BSDF") or nodes.new("ShaderNodeBsdfPrincipled")
    return mat, nodes, bsdf


def _ground_material(bpy: Any) -> Any:
    """Checker floor whose roughness varies with noise: sharp texture and blurred reflections."""
    mat, nodes, bsdf = material(bpy, "Ground")
    links = mat.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 12.0
    checker.inputs["Color1"].default_value = (0.8, 0.78, 0.72, 1.0)
    checker.inputs["Color2"].default_value = (0.08, 0.09, 0.12, 1.0)
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 6.0
    noise.inputs["Detail"].default_value = 4.0
    ramp = nodes.new("ShaderNodeMapRange")
    ramp.inputs["To Min"].default_value = 0.08
    ramp.inputs["To Max"].default_value = 0.6
    links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    links.new(noise.outputs["Fac"], ramp.inputs["Value"])
    links.new(ramp.outputs["Result"], bsdf.inputs["Roughness"])
    return mat


def wall_material(bpy: Any, scale: float = 6.0) -> Any:
    """Brick wall: fine high-contrast detail a denoiser must not smear (and that shows any motion)."""
    mat, nodes, bsdf = material(bpy, "Bricks")
    brick = nodes.new("ShaderNodeTexBrick")
    brick.inputs["Scale"].default_value = scale
    brick.inputs["Color1"].default_value = (0.45, 0.12, 0.06, 1.0)
    brick.inputs["Color2"].default_value = (0.3, 0.16, 0.1, 1.0)
    brick.inputs["Mortar"].default_value = (0.75, 0.74, 0.7, 1.0)
    mat.node_tree.links.new(brick.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.7
    return mat


def _ball_material(bpy: Any) -> Any:
    """Polished metal with a checker of two metals, so the roll is visible."""
    mat, nodes, bsdf = material(bpy, "RollingMetal")
    coords = nodes.new("ShaderNodeTexCoord")
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = 3.0
    checker.inputs["Color1"].default_value = (0.95, 0.7, 0.3, 1.0)
    checker.inputs["Color2"].default_value = (0.75, 0.78, 0.82, 1.0)
    links = mat.node_tree.links
    links.new(coords.outputs["Object"], checker.inputs["Vector"])
    links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Metallic"].default_value = 1.0
    bsdf.inputs["Roughness"].default_value = 0.12
    return mat


def _monkey_material(bpy: Any) -> Any:
    """Glossy dielectric coloured by noise: mid-frequency texture under sharp highlights."""
    mat, nodes, bsdf = material(bpy, "NoisyGloss")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 4.0
    noise.inputs["Detail"].default_value = 6.0
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.05, 0.2, 0.6, 1.0)
    ramp.color_ramp.elements[1].color = (0.9, 0.85, 0.2, 1.0)
    links = mat.node_tree.links
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.2
    return mat


def _torus_material(bpy: Any) -> Any:
    """Anisotropic-looking banded metal from a wave texture."""
    mat, nodes, bsdf = material(bpy, "BandedMetal")
    wave = nodes.new("ShaderNodeTexWave")
    wave.inputs["Scale"].default_value = 5.0
    wave.inputs["Distortion"].default_value = 3.0
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = (0.6, 0.1, 0.1, 1.0)
    ramp.color_ramp.elements[1].color = (0.9, 0.9, 0.92, 1.0)
    links = mat.node_tree.links
    links.new(wave.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Metallic"].default_value = 0.8
    bsdf.inputs["Roughness"].default_value = 0.25
    return mat


def _assign(obj: Any, material: Any, *, smooth: bool = True) -> None:
    obj.data.materials.append(material)
    if smooth:
        obj.data.shade_smooth()


def _key(obj: Any, frame: int, *, location: tuple[float, float, float], rotation: tuple[float, float, float]) -> None:
    obj.location = location
    obj.rotation_euler = rotation
    obj.keyframe_insert("location", frame=frame)
    obj.keyframe_insert("rotation_euler", frame=frame)


def _build_in_blender(out_blend: Path, *, frames: int, width: int, height: int, samples: int) -> None:
    """Build the shot in this process's ``bpy`` and save it atomically."""
    import bpy  # Only inside the child; importing farmplug never imports bpy.

    bpy.ops.wm.read_factory_settings(use_empty=True)
    # New keyframes interpolate linearly, so the motion is uniform and easy to reason about.
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene = bpy.context.scene
    first, last = 1, frames

    # Ground, and a low brick wall behind the objects with the HDRI visible above it (sky
    # pixels are cheap: a lower wall keeps 512 spp affordable).
    bpy.ops.mesh.primitive_plane_add(size=24.0, location=(0.0, 2.0, 0.0))
    _assign(bpy.context.active_object, _ground_material(bpy), smooth=False)
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 4.5, 1.1), rotation=(math.pi / 2, 0.0, 0.0))
    wall = bpy.context.active_object
    wall.scale = (7.0, 2.2, 1.0)
    _assign(wall, wall_material(bpy), smooth=False)

    # A metal ball rolling (without slipping) from left to right.
    radius = 0.6
    bpy.ops.mesh.primitive_uv_sphere_add(radius=radius, segments=48, ring_count=24)
    ball = bpy.context.active_object
    _assign(ball, _ball_material(bpy))
    start_x, end_x = -2.6, 1.2
    _key(ball, first, location=(start_x, 0.3, radius), rotation=(0.0, 0.0, 0.0))
    _key(ball, last, location=(end_x, 0.3, radius), rotation=(0.0, (end_x - start_x) / radius, 0.0))

    # Suzanne spinning on the spot, slightly raised.
    bpy.ops.mesh.primitive_monkey_add(size=1.2)
    monkey = bpy.context.active_object
    subsurf = monkey.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels = subsurf.render_levels = 1
    _assign(monkey, _monkey_material(bpy))
    _key(monkey, first, location=(2.0, 1.6, 0.9), rotation=(0.0, 0.0, -0.6))
    _key(monkey, last, location=(2.0, 1.6, 0.9), rotation=(0.0, 0.0, -0.6 + 2.0 * math.pi))

    # A torus tumbling and drifting upwards.
    bpy.ops.mesh.primitive_torus_add(major_radius=0.55, minor_radius=0.18, major_segments=48, minor_segments=16)
    torus = bpy.context.active_object
    _assign(torus, _torus_material(bpy))
    _key(torus, first, location=(-1.4, 2.2, 0.7), rotation=(0.3, 0.0, 0.0))
    _key(torus, last, location=(-1.4, 2.2, 1.3), rotation=(0.3 + math.pi, 0.0, math.pi / 2))

    # A camera dollying slowly sideways, always aimed at the middle of the set.
    target = bpy.data.objects.new("CameraTarget", None)
    target.location = (0.0, 1.2, 0.7)
    scene.collection.objects.link(target)
    camera_data = bpy.data.cameras.new("Camera")
    camera_data.lens = 32.0
    camera = bpy.data.objects.new("Camera", camera_data)
    scene.collection.objects.link(camera)
    camera.location = (-0.6, -6.0, 2.2)
    camera.keyframe_insert("location", frame=first)
    camera.location = (0.6, -6.0, 2.2)
    camera.keyframe_insert("location", frame=last)
    aim = camera.constraints.new("TRACK_TO")
    aim.target = target
    aim.track_axis = "TRACK_NEGATIVE_Z"
    aim.up_axis = "UP_Y"
    scene.camera = camera

    # The world: a bundled HDRI, packed so the .blend is self-contained.
    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # Blender < 5.0
        world.use_nodes = True
    scene.world = world
    wnodes = world.node_tree.nodes
    background = wnodes.get("Background") or wnodes.new("ShaderNodeBackground")
    environment = wnodes.new("ShaderNodeTexEnvironment")
    environment.image = bpy.data.images.load(str(find_hdri(bpy)))
    environment.image.pack()
    world.node_tree.links.new(environment.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = 1.0
    # No importance sampling of the world: on CPU its shadow rays cost about half of each sample,
    # and the sunless HDRI converges well without it. Keeps 512 spp within ~15 s on 2 cores.
    world.cycles.sampling_method = "NONE"

    # Render settings: the shot's full-quality setting; cheap renders override samples only.
    render_settings(scene, first=first, last=last, width=width, height=height, samples=samples)
    scene.frame_set(first)
    save_blend(bpy, out_blend)


def render_settings(scene: Any, *, first: int, last: int, width: int, height: int, samples: int) -> None:
    """Cycles on the CPU at a fixed sample count, Cycles' own denoiser off, modest bounces."""
    render = scene.render
    render.engine = "CYCLES"
    render.resolution_x, render.resolution_y = width, height
    render.resolution_percentage = 100
    render.fps = 24
    scene.frame_start, scene.frame_end = first, last
    cycles = scene.cycles
    cycles.device = "CPU"
    cycles.samples = samples
    cycles.use_denoising = False
    # A fixed sample count, so cost scales with samples and the noise level is honest.
    cycles.use_adaptive_sampling = False
    cycles.seed = 0
    cycles.use_animated_seed = True
    cycles.max_bounces = 4
    cycles.diffuse_bounces = 2
    cycles.glossy_bounces = 3
    cycles.transmission_bounces = 2
    cycles.transparent_max_bounces = 2
    cycles.volume_bounces = 0
    cycles.caustics_reflective = False
    cycles.caustics_refractive = False


def save_blend(bpy: Any, out_blend: Path) -> None:
    """Save the open scene to ``out_blend`` through a temp file in the same folder and a rename."""
    out_blend.parent.mkdir(parents=True, exist_ok=True)
    temp = out_blend.with_name(f".{out_blend.stem}.{os.getpid()}.tmp.blend")
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(temp), compress=False, relative_remap=False)
        os.replace(temp, out_blend)
    finally:
        temp.unlink(missing_ok=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m farmplug.render.demo_scene", description=__doc__)
    parser.add_argument("out_blend", type=Path)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args(argv)
    return builder_status(
        lambda: _build_in_blender(
            args.out_blend, frames=args.frames, width=args.width, height=args.height, samples=args.samples
        ),
        "farmplug demo scene",
    )


if __name__ == "__main__":
    exit_child(_main)
