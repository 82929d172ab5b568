"""The script that renders inside Blender: ``bpy`` as a module, or a ``blender -b --python`` run.

Run as ``python -P _blender_child.py REQUEST.json RESULT.json`` (the ``bpy`` module; by path, so
the child never imports the farmplug package: that would cost ~0.15 core-s per task), as
``python -m farmplug.render._blender_child REQUEST.json RESULT.json``, or as
``blender -b --factory-startup --python _blender_child.py -- REQUEST.json RESULT.json``.
Blender's bundled Python has neither farmplug nor pydantic, so this file uses only the standard
library and ``bpy``; the parent (:mod:`farmplug.render.blender`) writes the request and validates
the result with pydantic models that mirror the dictionaries here.

Protocol with the parent:

* stdout carries only ``FARMPLUG_FRAME_DONE <frame>`` lines, one per finished frame. Blender's own
  chatter (render progress, warnings) is moved to stderr, so a C-level ``printf`` can never split
  a marker line.
* On success the result JSON is written (atomically) and the exit status is 0; on failure one line
  ``farmplug render child: <error>`` goes to stderr and the exit status is 1.
* Each frame is rendered to a hidden temp file beside its final path
  (``.NAME.<child pid>.tmp.exr``) and announced with its marker; the **parent** reads it back,
  checks it, and renames it into place. The child never publishes a frame itself, so a frame
  Blender could not write whole (a full disk) is never delivered, and a child that outlives its
  parent has nothing it could publish.

What a task pays once, it pays once: the scene is loaded and configured (samples, passes, output
format) before the first frame, and Cycles keeps its scene data between the task's frames
(``render.use_persistent_data``) where the scene allows it (:func:`persistent_data_blockers`):
later frames then re-sync only what moved, and keep the BVH of static objects, loaded images and
the world's importance map. Frames rendered so are bit-identical to fresh renders on the scenes
measured (animated objects, camera, lens, depth of field, lights, world, materials, deformation,
shape keys, geometry nodes, visibility, motion blur, animated samples); particle systems are the
exception found, so scenes with one render without it, and so, as a precaution, do scenes with
scripts run per frame (handlers).

Each frame's CPU time is split at Blender's render-stats updates: ``sampling_cpu_s`` runs from
Cycles' first ``Sample 0/N`` status to ``Finished``; the rest of the frame (scene sync, BVH, light
and world importance maps, image loads, film and EXR write) is its fixed part. The same updates
name every object Cycles synchronises (``synced_objects``: with persistent data, after the first
frame, only the objects that changed).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

SCHEMA_VERSION = 2
FRAME_DONE = "FARMPLUG_FRAME_DONE"
# Cycles' status while path tracing: "Sample 3/16" (and "Sample 0/16" as sampling starts).
_SAMPLE_STATUS = re.compile(r"^Sample \d+/\d+")
REQUEST_KEYS = frozenset(
    {
        "schema_version",
        "scene",
        "frames",
        "samples",
        "resolution_percentage",
        "passes",
        "threads",
        "exr_layout",
        "seed",
        "persistent_data",
    }
)


class ChildError(Exception):
    """A problem with the request or the scene, reported as one line."""


def cpu_self_s() -> float:
    """CPU core-seconds of this process so far (all threads: Cycles renders in-process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def template_literal(bpy: Any, path: str) -> str:
    """``path`` as Blender must be given it to write there: from 4.5 on, render output paths are
    path templates (``{blend_name}``), so a literal brace is written doubled."""
    if tuple(bpy.app.version[:2]) >= (4, 5):
        return path.replace("{", "{{").replace("}", "}}")
    return path


def temp_output_for_pid(final: Path, pid: int) -> Path:
    """Hidden temp file of process ``pid`` in the final file's folder (the rename is atomic)."""
    return final.with_name(f".{final.name}.{pid}.tmp.exr")


def temp_output(final: Path) -> Path:
    """This process's temp file for ``final``."""
    return temp_output_for_pid(final, os.getpid())


def parse_args(argv: list[str]) -> tuple[Path, Path]:
    """Request and result paths: the arguments after ``--`` if present, else all of them."""
    args = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    if len(args) != 2:
        raise ChildError(f"expected REQUEST.json RESULT.json, got {args!r}")
    return Path(args[0]), Path(args[1])


def load_request(path: Path) -> dict[str, Any]:
    """Read the request and check its keys (the parent's pydantic model is the real schema)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ChildError(f"cannot read request {path}: {err}") from None
    if not isinstance(data, dict):
        raise ChildError(f"request {path} is not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ChildError(f"request {path}: unsupported schema_version {data.get('schema_version')!r}")
    unknown = sorted(set(data) - REQUEST_KEYS)
    missing = sorted(REQUEST_KEYS - set(data))
    if unknown or missing:
        raise ChildError(f"request {path}: unknown keys {unknown}, missing keys {missing}")
    return data


def configure_scene(bpy: Any, request: dict[str, Any]) -> Any:
    """Apply the request's settings to the open scene and return it."""
    scene = bpy.context.scene
    render = scene.render
    render.engine = "CYCLES"
    cycles = scene.cycles
    cycles.device = "CPU"
    # Never let Cycles denoise: the denoise stage does it, and its cost is measured there.
    cycles.use_denoising = False
    if request["samples"] is not None:
        cycles.samples = int(request["samples"])
    if request["seed"] is not None:
        cycles.seed = int(request["seed"])
    render.resolution_percentage = int(request["resolution_percentage"])
    if request["threads"] is not None:
        render.threads_mode = "FIXED"
        render.threads = int(request["threads"])
    else:
        render.threads_mode = "AUTO"
    # Write the raw render layers, not a composite or sequencer result.
    render.use_compositing = False
    render.use_sequencer = False

    passes = set(request["passes"])
    for layer in scene.view_layers:
        if {"albedo", "normal"} & passes:
            layer.cycles.denoising_store_passes = True
        if "depth" in passes:
            layer.use_pass_z = True
        if "motion" in passes:
            layer.use_pass_vector = True
        if "object_index" in passes:
            layer.use_pass_object_index = True
        if "material_index" in passes:
            layer.use_pass_material_index = True
    if "motion" in passes:
        # Cycles only writes the vector pass when motion blur is off.
        render.use_motion_blur = False

    image = render.image_settings
    image.media_type = "MULTI_LAYER_IMAGE"
    image.file_format = "OPEN_EXR_MULTILAYER"
    image.color_depth = "32"
    image.exr_codec = "ZIP"
    # False: one EXR part per pass ("multipart"); True: all channels in one part.
    image.use_exr_interleave = request["exr_layout"] == "singlepart"
    render.use_file_extension = True
    return scene


#: Handlers through which a script can change the scene between frames.
_PER_FRAME_HANDLERS = ("frame_change_pre", "frame_change_post", "render_pre", "render_init",
                       "depsgraph_update_pre", "depsgraph_update_post")


def persistent_data_blockers(bpy: Any, scene: Any) -> list[str]:
    """Why this scene must not keep Cycles' data between frames (empty: it may).

    Particle systems were measured: their frames with persistent data differ from fresh renders
    of the same frames and seed. Scripts run per frame are excluded as a precaution, not from a
    measured error: what they change is outside what was verified (a kept session did take a
    handler's per-frame sample count, but ignores a setting changed without a later scene update).
    """
    reasons = []
    handlers = sorted(name for name in _PER_FRAME_HANDLERS if len(getattr(bpy.app.handlers, name, ())) > 0)
    if handlers:
        reasons.append(f"scripts run per frame ({', '.join(handlers)} handlers), outside what was verified")
    with_particles = sorted(obj.name for obj in scene.objects if len(obj.particle_systems) > 0)
    if with_particles:
        reasons.append(f"particle systems ({', '.join(with_particles[:3])}) render differently with persistent data")
    return reasons


def persistent_data_choice(bpy: Any, scene: Any, request: dict[str, Any]) -> tuple[bool, str]:
    """Whether to keep Cycles' data between this task's frames, and why."""
    asked = request["persistent_data"]
    if asked is False:
        return False, "off: asked"
    blockers = persistent_data_blockers(bpy, scene)
    if asked is True:
        return True, "on: asked" + (f" (despite: {'; '.join(blockers)})" if blockers else "")
    if len(request["frames"]) < 2:
        return False, "off: one frame, nothing to keep"
    if blockers:
        return False, "off: " + "; ".join(blockers)
    return True, "on: the scene allows it"


class RenderClock:
    """CPU clock at Blender's render-stats updates of one frame (fed by a ``render_stats`` handler)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sampling_from: float | None = None
        self.sampling_to: float | None = None
        self.synced: set[str] = set()

    def update(self, stats: str) -> None:
        fields = [field.strip() for field in stats.split("|")]
        status = fields[-1]
        if len(fields) >= 2 and fields[-2] == "Synchronizing object":
            self.synced.add(status)
            return
        if _SAMPLE_STATUS.match(status) is not None:
            if self.sampling_from is None:
                self.sampling_from = cpu_self_s()
        elif status.startswith("Finished") and self.sampling_from is not None and self.sampling_to is None:
            self.sampling_to = cpu_self_s()

    @property
    def sampling_cpu_s(self) -> float | None:
        if self.sampling_from is None or self.sampling_to is None:
            return None
        return self.sampling_to - self.sampling_from


def render_frames(bpy: Any, scene: Any, request: dict[str, Any], marker_out: TextIO) -> list[dict[str, Any]]:
    """Render each frame to its temp file, announce it for the parent to check and publish, and time it.

    ``scene.render.use_persistent_data`` is set by the caller. Setting ``render.filepath`` after
    ``frame_set`` also matters with it: that update makes a kept session take settings a script
    changed on the frame (measured: without it, a frame-change handler's new sample count is ignored).
    """
    timings = []
    clock = RenderClock()

    def on_stats(stats: str) -> None:  # Blender calls plain functions only, not callable objects
        clock.update(stats)

    bpy.app.handlers.render_stats.append(on_stats)
    try:
        for item in request["frames"]:
            frame = int(item["frame"])
            final = Path(item["output"])
            wall0, cpu0 = time.perf_counter(), cpu_self_s()
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = temp_output(final)
            scene.frame_set(frame)
            scene.render.filepath = template_literal(bpy, str(temp))
            clock.reset()
            try:
                bpy.ops.render.render(write_still=True)
                if not temp.is_file():
                    raise ChildError(f"Blender wrote no file for frame {frame} (expected {temp})")
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
            timings.append(
                {
                    "frame": frame,
                    "wall_s": time.perf_counter() - wall0,
                    "cpu_s": cpu_self_s() - cpu0,
                    "sampling_cpu_s": clock.sampling_cpu_s,
                    "synced_objects": len(clock.synced),
                    "output": str(final),
                }
            )
            marker_out.write(f"{FRAME_DONE} {frame}\n")
            marker_out.flush()
    finally:
        bpy.app.handlers.render_stats.remove(on_stats)
    return timings


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Write the result JSON through a temp file and a rename."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(temp, path)


def run(argv: list[str], marker_out: TextIO) -> None:
    """Render the request named on the command line and write its result."""
    request_path, result_path = parse_args(argv)
    request = load_request(request_path)

    import bpy  # Imported here so the argument checks above fail fast and cheaply.

    scene_path = Path(request["scene"])
    if not scene_path.is_file():
        raise ChildError(f"{scene_path}: scene file not found")
    bpy.ops.wm.open_mainfile(filepath=str(scene_path), load_ui=False)
    scene = configure_scene(bpy, request)
    persistent, persistent_note = persistent_data_choice(bpy, scene, request)
    scene.render.use_persistent_data = persistent
    loaded_at = time.time()
    loaded_cpu_s = cpu_self_s()

    frames = render_frames(bpy, scene, request, marker_out)
    write_result(
        result_path,
        {
            "schema_version": SCHEMA_VERSION,
            "blender_version": ".".join(str(v) for v in bpy.app.version),
            "samples": int(scene.cycles.samples),
            "resolution": [
                scene.render.resolution_x * scene.render.resolution_percentage // 100,
                scene.render.resolution_y * scene.render.resolution_percentage // 100,
            ],
            "persistent_data": persistent,
            "persistent_data_note": persistent_note,
            "loaded_at": loaded_at,
            "loaded_cpu_s": loaded_cpu_s,
            "total_cpu_s": cpu_self_s(),
            "frames": frames,
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    # Keep the real stdout for the frame markers and send everything else written to fd 1
    # (Blender's C-level progress output included) to stderr.
    sys.stdout.flush()
    marker_out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    try:
        run(sys.argv if argv is None else argv, marker_out)
    except Exception as err:  # noqa: BLE001 - process boundary: report one line, exit non-zero
        message = " ".join(str(err).split()) or type(err).__name__
        sys.stderr.write(f"farmplug render child: {type(err).__name__}: {message}\n")
        sys.stderr.flush()
        return 1
    finally:
        marker_out.flush()
    return 0


if __name__ == "__main__":
    # os._exit skips bpy's slow and sometimes noisy interpreter teardown; everything is written.
    status = main()
    sys.stderr.flush()
    os._exit(status)
