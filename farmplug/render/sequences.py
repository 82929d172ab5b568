"""Short, cheap Cycles sequences that each isolate one kind of motion, built in a child process.

They are the test material of the inbetween stage: each is a few frames of a simple set (a
checker floor, a brick wall, one or two textured objects) lit only by one of Blender's bundled
studio-light HDRIs, so the motion is visible everywhere and a frame renders in a couple of
seconds at 160x90 and 256 spp on two cores.

Motion is linear and defined per frame (so its size in pixels does not depend on the length of
the sequence) and centred on the middle frame. Every animation is keyed one frame before the
first and one after the last frame, so the renderer's motion vectors are uniform on the first
and last frames as well. Each mesh object has its own ``pass_index`` for object-ID checks.

Callers use :func:`build_sequence`, which runs ``python -m farmplug.render.sequences NAME
OUT.blend --frames N --width W --height H --samples S`` so that they never import ``bpy``.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farmplug.errors import ConfigError
from farmplug.render.demo_scene import (
    builder_status,
    exit_child,
    find_hdri,
    material,
    render_settings,
    run_builder,
    save_blend,
    wall_material,
)

log = logging.getLogger(__name__)

#: The built-in sequences, name -> what it tests. One per line; the child maps each to a builder.
SEQUENCES: dict[str, str] = {
    "translate_rotate": "objects translating and rotating in front of a static camera",
    "camera_pan": "static set, the camera pans (rotates about its vertical axis)",
    "camera_dolly": "static set, the camera moves forward",
    "occlusion": "a fast pillar passes in front of a sphere, leaving a large disocclusion behind it",
    "glossy": "a polished metal sphere and a glossy Suzanne rotating (view-dependent reflections)",
}



def sequence_command(
    name: str,
    out_blend: str | Path,
    *,
    frames: int = 9,
    resolution: tuple[int, int] = (160, 90),
    samples: int = 256,
    python_executable: str | Path | None = None,
) -> list[str]:
    """Argument list that builds one test sequence in a child ``bpy`` process.

    Args:
        name: One of :data:`SEQUENCES`.
        out_blend: The .blend file to write.
        frames: Length of the sequence; the scene's frame range becomes ``1..frames``.
        resolution: Width and height in pixels (at 100 %).
        samples: Cycles samples per pixel of the full-quality render.
        python_executable: Interpreter with the ``bpy`` module (default: this one).

    Returns:
        The command as a list of arguments.

    Raises:
        ConfigError: an unknown sequence name (the message lists the valid ones), or a
            non-positive frame count, resolution or sample count.
    """
    if name not in SEQUENCES:
        raise ConfigError(f"unknown sequence {name!r}; valid: {', '.join(SEQUENCES)}")
    width, height = resolution
    if frames < 1:
        raise ConfigError(f"sequence needs at least 1 frame (got {frames})")
    if width < 1 or height < 1:
        raise ConfigError(f"sequence resolution must be positive (got {width}x{height})")
    if samples < 1:
        raise ConfigError(f"sequence samples must be >= 1 (got {samples})")
    return [
        str(python_executable or sys.executable),
        "-m",
        __name__,
        name,
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


def build_sequence(
    name: str,
    out_blend: str | Path,
    *,
    frames: int = 9,
    resolution: tuple[int, int] = (160, 90),
    samples: int = 256,
    python_executable: str | Path | None = None,
) -> None:
    """Write one test sequence to ``out_blend`` (atomically), building it in a child process.

    Args:
        name: One of :data:`SEQUENCES`.
        out_blend: The .blend file to write; its folder is created if needed.
        frames: Length of the sequence; the scene's frame range becomes ``1..frames``.
        resolution: Width and height in pixels (at 100 %).
        samples: Cycles samples per pixel of the full-quality render.
        python_executable: Interpreter with the ``bpy`` module (default: this one).

    Raises:
        ConfigError: an unknown sequence name (the message lists the valid ones), or a
            non-positive frame count, resolution or sample count.
        RenderError: the child failed; the message quotes its last output lines.
    """
    command = sequence_command(
        name, out_blend, frames=frames, resolution=resolution, samples=samples, python_executable=python_executable
    )
    log.debug("building sequence %s: %s", name, command)
    run_builder(command, out_blend, f"sequence {name!r}")


# --- everything below runs inside the child, where bpy is importable -------------------------

# Where a static camera stands and what it looks at; the set is built around this view.
_CAMERA_LOCATION = (0.0, -6.0, 1.6)
_CAMERA_PITCH = math.radians(80.0)  # 90 degrees looks level along +Y; 80 looks slightly down
_LENS_MM = 32.0
Vec3 = tuple[float, float, float]


class _Shot:
    """The frame range and the helpers every sequence builder needs, inside the child."""

    def __init__(self, bpy: Any, first: int, last: int) -> None:
        self.bpy = bpy
        self.first = first
        self.last = last
        self.middle = (first + last) / 2.0
        self._next_index = 1

    def animate(self, obj: Any, *, location: Callable[[float], Vec3], rotation: Callable[[float], Vec3]) -> None:
        """Key ``location(frame)`` and ``rotation(frame)`` one frame outside each end of the range.

        Keys are linear, so the motion between them is uniform and the vector pass of the first
        and last frames sees the same motion as the others.
        """
        for frame in (self.first - 1, self.last + 1):
            obj.location = location(frame)
            obj.rotation_euler = rotation(frame)
            obj.keyframe_insert("location", frame=frame)
            obj.keyframe_insert("rotation_euler", frame=frame)

    def add(self, obj: Any, material: Any | None, *, smooth: bool = True) -> Any:
        """Give a new mesh object its material and the next object index."""
        if material is not None:
            obj.data.materials.append(material)
        if smooth:
            obj.data.shade_smooth()
        obj.pass_index = self._next_index
        self._next_index += 1
        return obj


def _checker_material(
    bpy: Any, name: str, *, scale: float, colors: tuple[tuple[float, ...], tuple[float, ...]],
    roughness: float = 0.6, metallic: float = 0.0, object_space: bool = False,
) -> Any:
    """Checker-textured surface; in object space the pattern turns with the object."""
    mat, nodes, bsdf = material(bpy, name)
    links = mat.node_tree.links
    checker = nodes.new("ShaderNodeTexChecker")
    checker.inputs["Scale"].default_value = scale
    checker.inputs["Color1"].default_value = colors[0]
    checker.inputs["Color2"].default_value = colors[1]
    if object_space:
        coords = nodes.new("ShaderNodeTexCoord")
        links.new(coords.outputs["Object"], checker.inputs["Vector"])
    links.new(checker.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Metallic"].default_value = metallic
    return mat


def _noise_material(bpy: Any, name: str, *, low: tuple[float, ...], high: tuple[float, ...], roughness: float) -> Any:
    """Two colours mixed by object-space noise: mid-frequency texture that moves with the object."""
    mat, nodes, bsdf = material(bpy, name)
    links = mat.node_tree.links
    coords = nodes.new("ShaderNodeTexCoord")
    noise = nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 4.0
    noise.inputs["Detail"].default_value = 6.0
    ramp = nodes.new("ShaderNodeValToRGB")
    ramp.color_ramp.elements[0].color = low
    ramp.color_ramp.elements[1].color = high
    links.new(coords.outputs["Object"], noise.inputs["Vector"])
    links.new(noise.outputs["Fac"], ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = roughness
    return mat


def _set(shot: _Shot) -> None:
    """The static set shared by every sequence: a checker floor and a wide brick wall."""
    bpy = shot.bpy
    bpy.ops.mesh.primitive_plane_add(size=30.0, location=(0.0, 4.0, 0.0))
    floor_mat = _checker_material(
        bpy, "Floor", scale=30.0, colors=((0.8, 0.78, 0.72, 1.0), (0.08, 0.09, 0.12, 1.0)), roughness=0.45
    )
    shot.add(bpy.context.active_object, floor_mat, smooth=False)
    bpy.ops.mesh.primitive_plane_add(size=1.0, location=(0.0, 4.5, 2.0), rotation=(math.pi / 2, 0.0, 0.0))
    wall = bpy.context.active_object
    wall.scale = (16.0, 4.0, 1.0)
    shot.add(wall, wall_material(bpy, scale=5.0), smooth=False)


def _static_camera(shot: _Shot) -> Any:
    bpy = shot.bpy
    camera_data = bpy.data.cameras.new("Camera")
    camera_data.lens = _LENS_MM
    camera = bpy.data.objects.new("Camera", camera_data)
    bpy.context.scene.collection.objects.link(camera)
    camera.location = _CAMERA_LOCATION
    camera.rotation_euler = (_CAMERA_PITCH, 0.0, 0.0)
    bpy.context.scene.camera = camera
    return camera


def _still(value: Vec3) -> Callable[[float], Vec3]:
    return lambda _frame: value


def _build_translate_rotate(shot: _Shot) -> None:
    """A cube sliding right while it turns, a ball rising and rolling, Suzanne spinning."""
    bpy = shot.bpy
    _set(shot)
    _static_camera(shot)
    mid = shot.middle

    bpy.ops.mesh.primitive_cube_add(size=0.9)
    cube = shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "CubeChecker", scale=4.0, colors=((0.9, 0.6, 0.15, 1.0), (0.1, 0.25, 0.6, 1.0)),
                          object_space=True),
        smooth=False,
    )
    # About 3 px/frame to the right, 6 degrees/frame about z.
    shot.animate(
        cube,
        location=lambda f: (-1.2 + 0.13 * (f - mid), 0.5, 0.45),
        rotation=lambda f: (0.0, 0.0, math.radians(6.0) * (f - mid)),
    )

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, segments=48, ring_count=24)
    ball = shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "BallChecker", scale=3.0, colors=((0.85, 0.85, 0.8, 1.0), (0.6, 0.08, 0.08, 1.0)),
                          object_space=True),
    )
    # Drifting left and up while it spins: about 2-3 px/frame on both axes.
    shot.animate(
        ball,
        location=lambda f: (1.4 - 0.08 * (f - mid), 1.0, 0.9 + 0.08 * (f - mid)),
        rotation=lambda f: (math.radians(9.0) * (f - mid), 0.0, 0.0),
    )

    bpy.ops.mesh.primitive_monkey_add(size=1.0)
    monkey = bpy.context.active_object
    subsurf = monkey.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels = subsurf.render_levels = 1
    shot.add(monkey, _noise_material(bpy, "MonkeyNoise", low=(0.05, 0.35, 0.1, 1.0), high=(0.9, 0.85, 0.2, 1.0),
                                     roughness=0.5))
    shot.animate(
        monkey,
        location=_still((0.2, 2.0, 0.9)),
        rotation=lambda f: (0.0, 0.0, math.radians(8.0) * (f - mid)),
    )


def _props(shot: _Shot) -> None:
    """A few still objects for the camera-motion sequences to move past."""
    bpy = shot.bpy
    bpy.ops.mesh.primitive_cube_add(size=0.9, location=(-1.6, 0.8, 0.45), rotation=(0.0, 0.0, 0.5))
    shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "CubeChecker", scale=4.0, colors=((0.9, 0.6, 0.15, 1.0), (0.1, 0.25, 0.6, 1.0)),
                          object_space=True),
        smooth=False,
    )
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.55, segments=48, ring_count=24, location=(1.3, 0.2, 0.55))
    shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "BallChecker", scale=3.0, colors=((0.85, 0.85, 0.8, 1.0), (0.6, 0.08, 0.08, 1.0)),
                          object_space=True),
    )
    bpy.ops.mesh.primitive_cylinder_add(radius=0.35, depth=2.0, location=(0.1, 2.6, 1.0))
    shot.add(
        bpy.context.active_object,
        _noise_material(bpy, "PillarNoise", low=(0.05, 0.35, 0.1, 1.0), high=(0.9, 0.85, 0.2, 1.0), roughness=0.5),
    )


def _build_camera_pan(shot: _Shot) -> None:
    """The camera turns right at about 1.1 degrees (3 px) per frame; nothing else moves."""
    _set(shot)
    _props(shot)
    camera = _static_camera(shot)
    mid = shot.middle
    shot.animate(
        camera,
        location=_still(_CAMERA_LOCATION),
        rotation=lambda f: (_CAMERA_PITCH, 0.0, -math.radians(1.1) * (f - mid)),
    )


def _build_camera_dolly(shot: _Shot) -> None:
    """The camera moves straight ahead 0.25 m per frame; nothing else moves."""
    _set(shot)
    _props(shot)
    camera = _static_camera(shot)
    mid = shot.middle
    x, y, z = _CAMERA_LOCATION
    shot.animate(
        camera,
        location=lambda f: (x, y + 0.25 * (f - mid), z),
        rotation=_still((_CAMERA_PITCH, 0.0, 0.0)),
    )


def _build_occlusion(shot: _Shot) -> None:
    """A pillar near the camera sweeps across (about 12 px/frame) in front of a turning sphere."""
    bpy = shot.bpy
    _set(shot)
    _static_camera(shot)
    mid = shot.middle

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.9, segments=48, ring_count=24)
    sphere = shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "SphereChecker", scale=4.0, colors=((0.85, 0.85, 0.8, 1.0), (0.1, 0.3, 0.55, 1.0)),
                          object_space=True),
    )
    shot.animate(
        sphere,
        location=_still((0.0, 1.2, 0.9)),
        rotation=lambda f: (0.0, 0.0, math.radians(3.0) * (f - mid)),
    )

    bpy.ops.mesh.primitive_cube_add(size=1.0)
    pillar = bpy.context.active_object
    pillar.scale = (0.45, 0.45, 3.0)
    shot.add(
        pillar,
        _checker_material(bpy, "PillarChecker", scale=6.0, colors=((0.95, 0.85, 0.3, 1.0), (0.15, 0.1, 0.1, 1.0)),
                          object_space=True),
        smooth=False,
    )
    # 3.5 m from the camera: 0.3 m/frame is about 12 px/frame at 160 px wide.
    shot.animate(
        pillar,
        location=lambda f: (0.3 * (f - mid), -2.5, 1.2),
        rotation=_still((0.0, 0.0, 0.0)),
    )


def _build_glossy(shot: _Shot) -> None:
    """A polished metal sphere and a glossy Suzanne turning: reflections do not follow the texture."""
    bpy = shot.bpy
    _set(shot)
    _static_camera(shot)
    mid = shot.middle

    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.8, segments=64, ring_count=32)
    sphere = shot.add(
        bpy.context.active_object,
        _checker_material(bpy, "PolishedMetal", scale=3.0, colors=((0.95, 0.75, 0.4, 1.0), (0.7, 0.72, 0.78, 1.0)),
                          roughness=0.05, metallic=1.0, object_space=True),
    )
    shot.animate(
        sphere,
        location=_still((-1.0, 0.8, 0.8)),
        rotation=lambda f: (0.0, 0.0, math.radians(8.0) * (f - mid)),
    )

    bpy.ops.mesh.primitive_monkey_add(size=1.1)
    monkey = bpy.context.active_object
    subsurf = monkey.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels = subsurf.render_levels = 1
    shot.add(monkey, _noise_material(bpy, "GlossyNoise", low=(0.05, 0.2, 0.6, 1.0), high=(0.9, 0.85, 0.2, 1.0),
                                     roughness=0.08))
    shot.animate(
        monkey,
        location=_still((1.3, 1.2, 0.9)),
        rotation=lambda f: (0.0, 0.0, math.radians(-7.0) * (f - mid)),
    )


# Name -> builder, one per line; must list exactly the names of SEQUENCES.
_BUILDERS: dict[str, Callable[[_Shot], None]] = {
    "translate_rotate": _build_translate_rotate,
    "camera_pan": _build_camera_pan,
    "camera_dolly": _build_camera_dolly,
    "occlusion": _build_occlusion,
    "glossy": _build_glossy,
}


#: Brightest radiance kept in the world HDRI. Without world importance sampling (too slow on the
#: CPU: ~3x per sample) the HDRI's small bright patches are the main noise source; clamped at 2
#: (its mean is ~0.8) a 256 spp frame reaches ~37 dB PSNR against another seed instead of ~31,
#: so the benchmark's references measure interpolation error rather than render noise.
_HDRI_CLAMP = 2.0


def _load_tamed_hdri(bpy: Any, path: Path) -> Any:
    """Load the HDRI with its radiance clamped to :data:`_HDRI_CLAMP`, and pack it."""
    import numpy as np  # bpy ships numpy

    image = bpy.data.images.load(str(path))
    pixels = np.empty(len(image.pixels), dtype=np.float32)
    image.pixels.foreach_get(pixels)
    rgba = pixels.reshape(-1, 4)
    np.minimum(rgba[:, :3], _HDRI_CLAMP, out=rgba[:, :3])
    image.pixels.foreach_set(pixels)
    image.pack()
    return image


def _world(bpy: Any, scene: Any) -> None:
    """A bundled HDRI (tamed) as the only light, packed so the .blend is self-contained."""
    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # Blender < 5.0
        world.use_nodes = True
    scene.world = world
    nodes = world.node_tree.nodes
    background = nodes.get("Background") or nodes.new("ShaderNodeBackground")
    environment = nodes.new("ShaderNodeTexEnvironment")
    environment.image = _load_tamed_hdri(bpy, find_hdri(bpy))
    world.node_tree.links.new(environment.outputs["Color"], background.inputs["Color"])
    background.inputs["Strength"].default_value = 1.0
    # As in the demo scene: no world importance sampling, which costs about half of each CPU
    # sample and is not needed with a sunless HDRI.
    world.cycles.sampling_method = "NONE"


def _build_in_blender(name: str, out_blend: Path, *, frames: int, width: int, height: int, samples: int) -> None:
    """Build sequence ``name`` in this process's ``bpy`` and save it atomically."""
    import bpy  # Only inside the child; importing farmplug never imports bpy.

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.preferences.edit.keyframe_new_interpolation_type = "LINEAR"
    scene = bpy.context.scene
    first, last = 1, frames
    _BUILDERS[name](_Shot(bpy, first, last))
    _world(bpy, scene)
    render_settings(scene, first=first, last=last, width=width, height=height, samples=samples)
    # The vector pass needs motion blur off, and interpolation is judged on sharp frames.
    scene.render.use_motion_blur = False
    scene.frame_set(first)
    save_blend(bpy, out_blend)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m farmplug.render.sequences", description=__doc__)
    parser.add_argument("name", choices=sorted(_BUILDERS))
    parser.add_argument("out_blend", type=Path)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=90)
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args(argv)
    return builder_status(
        lambda: _build_in_blender(
            args.name, args.out_blend, frames=args.frames, width=args.width, height=args.height, samples=args.samples
        ),
        f"farmplug sequence {args.name}",
    )


if __name__ == "__main__":
    exit_child(_main)
