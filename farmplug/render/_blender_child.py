"""The script that renders inside Blender: ``bpy`` as a module, or a ``blender -b --python`` run.

Run as ``python -m farmplug.render._blender_child REQUEST.json RESULT.json`` or as
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
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, TextIO

SCHEMA_VERSION = 1
FRAME_DONE = "FARMPLUG_FRAME_DONE"
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
    }
)


class ChildError(Exception):
    """A problem with the request or the scene, reported as one line."""


def cpu_self_s() -> float:
    """CPU core-seconds of this process so far (all threads: Cycles renders in-process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def render_frames(bpy: Any, scene: Any, request: dict[str, Any], marker_out: TextIO) -> list[dict[str, Any]]:
    """Render each frame to its temp file, announce it for the parent to check and publish, and time it."""
    timings = []
    for item in request["frames"]:
        frame = int(item["frame"])
        final = Path(item["output"])
        wall0, cpu0 = time.perf_counter(), cpu_self_s()
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_output(final)
        scene.frame_set(frame)
        scene.render.filepath = str(temp)
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
                "output": str(final),
            }
        )
        marker_out.write(f"{FRAME_DONE} {frame}\n")
        marker_out.flush()
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
