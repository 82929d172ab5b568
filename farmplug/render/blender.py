"""Blender Cycles renderer: renders a task's frames in a child process and times them.

The child is ``python -P _blender_child.py`` (Blender as the ``bpy`` module; run by path so it
never imports the farmplug package) or, when a Blender executable is configured, ``blender -b
--factory-startup --python _blender_child.py --``. Running Blender in a child keeps ``bpy`` out of the caller, lets a
cancelled task be killed cleanly, and makes its CPU time the child's own.

Request and result cross the process boundary as JSON files checked by the pydantic models
below; the child (which may run in Blender's own Python, without pydantic) mirrors them with
plain dictionaries.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Literal

from pydantic import Field

from farmplug.errors import ConfigError, RenderError
from farmplug.render.base import RenderRequest
from farmplug.schema import StrictModel, load_model, save_model
from farmplug.timing import FrameTiming, RenderCostSplit, TimingRecord

log = logging.getLogger(__name__)

BACKEND_NAME = "blender-cycles"
BLENDER_ENV = "FARMPLUG_BLENDER"
_TAIL_LINES = 20

# The child's side of the protocol lives in _blender_child.py, which must stay importable by
# Blender's own Python (no farmplug, no pydantic). It is deliberately not imported here: this
# package's __init__ would then import it before ``python -m`` runs it (a runpy warning).
# tests/unit/test_render_request.py checks that both sides agree.
CHILD_MODULE = "farmplug.render._blender_child"
CHILD_SCHEMA_VERSION = 2
FRAME_DONE_MARKER = "FARMPLUG_FRAME_DONE"
_FRAME_DONE = re.compile(rf"{FRAME_DONE_MARKER} (-?\d+)")
_CHILD_ERROR_PREFIX = "farmplug render child:"


class ChildFrame(StrictModel):
    """One frame the child is asked to render, with its final output path."""

    frame: int
    output: str


class ChildRequest(StrictModel):
    """The request file handed to the render child."""

    schema_version: Literal[2] = CHILD_SCHEMA_VERSION
    scene: str
    frames: list[ChildFrame] = Field(min_length=1)
    samples: int | None = Field(default=None, ge=1)
    resolution_percentage: int = Field(default=100, ge=1, le=100)
    passes: list[str] = Field(default_factory=list)
    threads: int | None = Field(default=None, ge=1)
    exr_layout: Literal["multipart", "singlepart"] = "multipart"
    seed: int | None = Field(default=None, ge=0)
    persistent_data: bool | None = Field(default=None, description="None: where the scene allows it")


class ChildFrameTiming(StrictModel):
    """Cost of one frame as the child measured it."""

    frame: int
    wall_s: float = Field(ge=0)
    cpu_s: float = Field(ge=0)
    sampling_cpu_s: float | None = Field(default=None, ge=0, description="CPU s from Cycles' first sample to Finished")
    synced_objects: int = Field(ge=0, description="objects Cycles synchronised for the frame (render stats)")
    output: str


class ChildResult(StrictModel):
    """The result file the render child writes on success."""

    schema_version: Literal[2]
    blender_version: str
    samples: int
    resolution: tuple[int, int]
    persistent_data: bool = Field(description="Cycles kept its scene data between the task's frames")
    persistent_data_note: str = Field(description="why persistent data was on or off")
    loaded_at: float = Field(description="epoch seconds when the scene was loaded and configured")
    loaded_cpu_s: float = Field(ge=0, description="child CPU s from its start to scene loaded")
    total_cpu_s: float = Field(ge=0, description="child CPU s from its start to the result write")
    frames: list[ChildFrameTiming]


def child_script_path() -> Path:
    """Path of the script Blender runs (for ``blender --python``)."""
    return Path(__file__).resolve().with_name("_blender_child.py")


class BlenderRenderer:
    """Renders with Blender Cycles on the CPU, one child process per task.

    Args:
        blender_executable: A ``blender`` binary to run the child in. Defaults to the
            ``FARMPLUG_BLENDER`` environment variable; when neither is set, the child is this
            Python interpreter with the ``bpy`` module.
        python_executable: Interpreter for the ``bpy``-module child (default: this one).
    """

    name = BACKEND_NAME

    def __init__(
        self,
        blender_executable: str | Path | None = None,
        *,
        python_executable: str | Path | None = None,
    ) -> None:
        configured = blender_executable if blender_executable is not None else os.environ.get(BLENDER_ENV)
        self.blender_executable = Path(configured) if configured else None
        self.python_executable = Path(python_executable) if python_executable else Path(sys.executable)

    def command(self, request_json: Path, result_json: Path) -> list[str]:
        """The child's argument list (never a shell string).

        Raises:
            RenderError: the configured Blender executable cannot be found.
        """
        if self.blender_executable is None:
            # By path, not ``-m CHILD_MODULE``: ``-m`` would import the farmplug package (pydantic
            # and all) into every render child first. ``-P``: the script's folder stays off sys.path.
            return [str(self.python_executable), "-P", str(child_script_path()), str(request_json), str(result_json)]
        blender = shutil.which(str(self.blender_executable))
        if blender is None:
            raise RenderError("Blender executable not found or not executable", path=self.blender_executable)
        return [
            blender,
            "-b",
            "--factory-startup",
            "--python-exit-code",
            "1",
            "--python",
            str(child_script_path()),
            "--",
            str(request_json),
            str(result_json),
        ]

    def render(self, request: RenderRequest, *, progress: Callable[[int], None] | None = None) -> TimingRecord:
        """Render every frame of ``request`` and return what the task cost.

        Frames are written to ``request.output_pattern`` as multilayer 32-bit float EXR (ZIP),
        one part per pass (``multipart``) or one part with every channel (``singlepart``).
        Cycles' own denoiser is always off. Cycles keeps its scene data between the task's frames
        (persistent data) unless ``request.persistent_data`` is False or the scene does not
        allow it; the record's ``settings["persistent_data"]`` and ``render_cost`` say which.

        Args:
            request: The task to render.
            progress: Called with each frame number as soon as that frame's file is in place.

        Returns:
            The task's timing record: per-frame wall and CPU core-seconds, and the overhead of
            starting the child and loading the scene.

        Raises:
            RenderError: the scene file is missing, the child failed (the message names the
                scene and quotes the child's last output lines), or its result is malformed.
        """
        scene = request.scene.expanduser().resolve()
        if not scene.is_file():
            raise RenderError("scene file not found", path=request.scene)
        outputs = [p.expanduser().resolve() for p in request.outputs()]
        child_request = ChildRequest(
            scene=str(scene),
            frames=[ChildFrame(frame=f, output=str(p)) for f, p in zip(request.frames, outputs, strict=True)],
            samples=request.samples,
            resolution_percentage=request.resolution_percentage,
            passes=sorted(request.passes),
            threads=request.threads,
            exr_layout=request.exr_layout,
            seed=request.seed,
            persistent_data=request.persistent_data,
        )
        with tempfile.TemporaryDirectory(prefix="farmplug-render-") as workdir:
            request_json = Path(workdir) / "request.json"
            result_json = Path(workdir) / "result.json"
            save_model(child_request, request_json)
            started_at = time.time()
            self._run_child(self.command(request_json, result_json), scene, outputs, progress,
                            frames=request.frames, passes=request.passes)
            finished_at = time.time()
            try:
                result = load_model(ChildResult, result_json)
            except ConfigError as err:
                raise RenderError(f"render child wrote no valid result ({err})", path=scene) from None

        frames = [FrameTiming(frame=f.frame, wall_s=f.wall_s, cpu_s=f.cpu_s, sampling_cpu_s=f.sampling_cpu_s,
                              synced_objects=f.synced_objects, output=f.output) for f in result.frames]
        frames_wall = sum(f.wall_s for f in frames)
        frames_cpu = sum(f.cpu_s for f in frames)
        # Overhead is everything that is not a frame: spawning the child, importing Blender,
        # loading the scene, and shutting down, so that overhead + frames = the task's real cost.
        overhead_wall = max(0.0, (finished_at - started_at) - frames_wall)
        overhead_cpu = max(result.loaded_cpu_s, result.total_cpu_s - frames_cpu)
        log.debug(
            "rendered %d frame(s) of %s: startup+load %.2fs wall, %.2f s frames wall, %.2f cpu-s",
            len(frames),
            scene,
            result.loaded_at - started_at,
            frames_wall,
            frames_cpu,
        )
        return TimingRecord(
            task=request.task,
            stage="render",
            role=request.role,
            backend=self.name,
            started_at=started_at,
            finished_at=finished_at,
            overhead_wall_s=overhead_wall,
            overhead_cpu_s=overhead_cpu,
            frames=frames,
            render_cost=RenderCostSplit.from_frames(frames, samples=result.samples,
                                                    persistent_data=result.persistent_data),
            settings={
                "scene": str(scene),
                "samples": result.samples,
                "resolution_percentage": request.resolution_percentage,
                "width": result.resolution[0],
                "height": result.resolution[1],
                "passes": ",".join(sorted(request.passes)),
                "layout": request.exr_layout,
                "threads": request.threads,
                "seed": request.seed,
                "blender_version": result.blender_version,
                "persistent_data": result.persistent_data,
                "persistent_data_note": result.persistent_data_note,
            },
        )

    def _run_child(
        self,
        command: list[str],
        scene: Path,
        outputs: list[Path],
        progress: Callable[[int], None] | None,
        *,
        frames: Sequence[int],
        passes: frozenset[str],
    ) -> None:
        """Run the child, relaying frame markers to ``progress`` and its chatter to the log.

        Raises:
            RenderError: the child could not start or exited non-zero.
        """
        log.debug("starting render child: %s", command)
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, async-signal-safe
            )
        except OSError as err:
            raise RenderError(f"cannot start render child {command[0]}: {err}", path=scene) from None

        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        stderr_reader = threading.Thread(target=_relay_chatter, args=(proc.stderr, tail), daemon=True)
        stderr_reader.start()
        finished = False
        try:
            if proc.stdout is None:
                raise RenderError("render child has no stdout pipe", path=scene)
            by_frame = {f: out for f, out in zip(frames, outputs, strict=True)}
            published = []
            for line in proc.stdout:
                match = _FRAME_DONE.search(line)
                if match is None:
                    tail.append(line.rstrip())
                    log.debug("blender: %s", line.rstrip())
                    continue
                frame = int(match.group(1))
                final = by_frame[frame]
                publish_render(child_temp_output(final, proc.pid), final, passes=passes, like=published[0] if published else None)
                published.append(final)
                if progress is not None:
                    progress(frame)
            proc.wait()
            finished = True
            if proc.returncode == 0 and len(published) != len(outputs):
                missing = [str(p) for p in outputs if p not in published]
                raise RenderError(f"the render child finished without announcing {len(missing)} frame(s), "
                                  f"first {missing[0]}", path=scene)
        finally:
            if not finished:
                # Cancelled (KeyboardInterrupt, a failing progress callback): stop the child
                # and remove the temp file of the frame it was writing.
                proc.kill()
                proc.wait()
                _remove_child_temps(outputs, proc.pid)
            stderr_reader.join(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()
        if proc.returncode != 0:
            _remove_child_temps(outputs, proc.pid)
            lines = [line for line in tail if line.strip()]
            # The child's own one-line error, when it wrote one, leads the message.
            reason = next((line for line in reversed(lines) if line.startswith(_CHILD_ERROR_PREFIX)), None)
            headline = reason or f"render child exited with status {proc.returncode}"
            last = " | ".join(line for line in lines if line != reason) or "(no output)"
            raise RenderError(f"{headline} (status {proc.returncode}); last output: {last}", path=scene)


def _relay_chatter(stream: IO[str] | None, tail: collections.deque[str]) -> None:
    """Log Blender's stderr at DEBUG and keep its last lines for error messages."""
    if stream is None:
        return
    with stream:
        for line in stream:
            text = line.rstrip()
            tail.append(text)
            log.debug("blender: %s", text)


def _die_with_parent() -> None:
    """In the render child, before exec: be killed when the parent dies (Linux PR_SET_PDEATHSIG).

    A ``kill -9`` of ``farmplug run render`` or ``submit`` then takes Blender with it, instead of
    leaving it to run on for hours (it could not publish a frame anyway: the parent does that).
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the parent still publishes every frame itself


def publish_render(temp: Path, final: Path, *, passes: frozenset[str], like: Path | None = None) -> None:
    """Check a frame the render child wrote, then rename it into place.

    It must read back whole (every part, every pixel: a full disk leaves a short file), hold the
    colour and every pass asked for, and have the size of the task's other frames.

    Raises:
        RenderError: the frame is missing, incomplete, lacks a pass or has another size; it is
            removed and nothing is published.
    """
    from farmplug.errors import ImageError
    from farmplug.imageio import read_frame
    from farmplug.imageio.channels import FEATURES
    from farmplug.imageio.exr import disk_full_hint

    try:
        try:
            frame = read_frame(temp)
        except ImageError as err:
            raise RenderError(f"Blender's frame did not read back, nothing published: {err}{disk_full_hint(temp)}",
                              path=final) from None
        # Passes the channel vocabulary names (ID passes have no feature of their own to look for).
        missing = [p for p in ("color", *sorted(passes)) if p in FEATURES and not frame.has(p)]
        if missing:
            raise RenderError(f"Blender's frame lacks the {', '.join(missing)} pass(es), nothing published", path=final)
        if like is not None:
            size, expected = frame.parts[0].pixels.shape[:2], read_frame(like).parts[0].pixels.shape[:2]
            if size != expected:
                raise RenderError(f"Blender's frame is {size[1]}x{size[0]}, the task's others {expected[1]}x{expected[0]}",
                                  path=final)
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def child_temp_output(final: Path, pid: int) -> Path:
    """The temp file child ``pid`` renders ``final`` into (mirrors the child's naming)."""
    return final.with_name(f".{final.name}.{pid}.tmp.exr")


def _remove_child_temps(outputs: list[Path], pid: int) -> None:
    """Delete the temp frames a killed child left beside its outputs."""
    for final in outputs:
        child_temp_output(final, pid).unlink(missing_ok=True)
