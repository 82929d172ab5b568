"""OpenCue: the job graph as an outline built with OpenCue's own pyoutline, serialised to a job spec.

One ``Shell`` layer per farm layer, over the layer's frame set in the layer's chunks. Cuebot
replaces ``#FRAMESPEC#`` with the frames of the chunk it dispatches ("1-7x2", "9,11,12"), so
``--frames #FRAMESPEC#`` gives farmplug exactly the frames of its graph task, stepped frame sets
included (``#FRAME_START#-#FRAME_END#`` would add the frames between keyframes).

RQD writes a layer's command into a file that a shell runs, so every argument is quoted with
:func:`shlex.quote`; pyoutline joins the list with spaces.

Dependencies: frame-by-frame where a layer needs the same frames of another layer in the same
chunks; otherwise (the inbetween layer, which needs the keyframes on both sides, an offset that
OpenCue's frame-by-frame dependency cannot express) the whole layer waits for the other one.

Requires the optional extra ``farmplug[opencue]`` (``opencue-pyoutline``).
"""

from __future__ import annotations

import logging
import re
import shlex
from urllib.parse import urlsplit

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import FRAMES_TOKEN, FarmLayer, JobGraph, farm_layers
from farmplug.integrations.base import (
    CompileOptions,
    FarmConnection,
    NativeSubmission,
    SubmitError,
    SubmitResult,
    redacted_line,
    shown_address,
)

log = logging.getLogger(__name__)

SPEC_FILE = "opencue/job.xml"
FRAMESPEC = "#FRAMESPEC#"
# Cuebot replaces these anywhere in a command; data that contains one would be rewritten.
CUE_TOKENS = re.compile(r"#(ZFRAME|IFRAME|FRAME_START|FRAME_END|FRAME_CHUNK|FRAMESPEC|LAYER|JOB|FRAME)#")
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _pyoutline():
    try:
        import outline
        import outline.backend.cue
        import outline.cuerun
        import outline.depend
        import outline.modules.shell
    except ImportError as err:
        raise FarmplugError(f"the OpenCue backend needs pyoutline: pip install 'farmplug[opencue]' ({err})") from err
    return outline


def cue_name(text: str) -> str:
    """A job or layer name Cuebot accepts: letters, digits, ``_ . -`` (anything else becomes ``_``)."""
    return NAME_UNSAFE.sub("_", text).strip("_") or "farmplug"


def layer_command(layer: FarmLayer, options: CompileOptions) -> str:
    """The shell command line of a layer's frames, ``#FRAMESPEC#`` where the chunk's frames go.

    Raises:
        ConfigError: an argument holds a Cuebot token (``#JOB#`` ...) that Cuebot would rewrite.
    """
    argv = [*options.farmplug_command, *layer.command]
    for arg in argv:
        if CUE_TOKENS.search(arg):
            raise ConfigError(f"argument {arg!r} of layer {layer.name} contains an OpenCue token that Cuebot would replace")
    return " ".join(FRAMESPEC if a == FRAMES_TOKEN else shlex.quote(a) for a in argv)


class OpenCueFarm:
    """Compiles the graph into an OpenCue job spec with pyoutline and launches it on a Cuebot."""

    name = "opencue"

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """The job spec XML (pyoutline's own serializer), one Shell layer per farm layer.

        The spec's show, shot and user come from pyoutline (``$SHOW``, ``$SHOT``, the login),
        as for any pyoutline submission.

        Raises:
            ConfigError: a layer's chunks are uneven, or an argument holds a Cuebot token.
            FarmplugError: pyoutline is not installed.
        """
        outline = _pyoutline()
        job_name = cue_name(options.job_name or graph.name)
        ol = outline.Outline(job_name)
        layers = farm_layers(graph)
        by_name: dict[str, object] = {}
        for layer in layers:
            if layer.chunk_size is None:
                raise ConfigError(f"layer {layer.name}: its chunks {layer.chunks} are not one chunk size; OpenCue needs one")
            args = {
                "command": [layer_command(layer, options)],
                "range": layer.frame_set,
                "chunk": layer.chunk_size,
                "cores": layer.cores,  # 0: every core of the host, as in the graph
                "threadable": layer.cores != 1,
                "service": options.gpu_pool if layer.gpus else options.cpu_pool,
            }
            if layer.gpus:
                args.update(gpus=layer.gpus, gpu_memory=f"{options.gpu_memory_mb}m")
            shell = outline.modules.shell.Shell(cue_name(layer.name), **args)
            ol.add_layer(shell)
            by_name[layer.name] = (shell, layer)
        for layer in layers:
            shell = by_name[layer.name][0]
            for dep in sorted(layer.depends_on, key=lambda d: d.layer):  # farm_layers' order is a set's
                other, other_layer = by_name[dep.layer]
                frame_by_frame = dep.same_frame and other_layer.chunks == layer.chunks
                shell.depend_on(other, outline.depend.DependType.FrameByFrame if frame_by_frame
                                else outline.depend.DependType.LayerOnLayer)
        launcher = outline.cuerun.OutlineLauncher(
            ol, priority=options.priority, maxretries=options.max_retries, nomail=True, pause=False,
        )
        # serialize_simple: the layer commands themselves, not a pycuerun wrapper that would need
        # the outline on shared storage; calling it directly skips launcher.setup(), which writes a
        # session folder (compile does no I/O).
        spec = outline.backend.cue.serialize_simple(launcher)
        return NativeSubmission(
            farm=self.name, files={SPEC_FILE: spec + "\n"},
            summary=f"OpenCue job {job_name}: {len(layers)} layers, {len(graph.tasks)} chunks",
        )

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """Launch the spec on the Cuebot at ``connection.url`` (``host[:port]``).

        Uses ``opencue.api.launchSpecAndWait``, the call pyoutline's cue backend makes to launch.

        Raises:
            SubmitError: no address, Cuebot unreachable, or the spec rejected (nothing was launched).
        """
        _pyoutline()
        import grpc
        import opencue
        from opencue.cuebot import Cuebot

        if not connection.url or not connection.url.strip():
            raise SubmitError("no Cuebot address: set the farm's url to HOST[:PORT]")
        host = cuebot_host(connection.url)
        shown = shown_address(host)
        spec = submission.files[SPEC_FILE]
        try:
            Cuebot.setTimeout(int(connection.timeout_s * 1000))
            Cuebot.setHosts([host])
            jobs = opencue.api.launchSpecAndWait(spec)
        except (opencue.exception.CueException, grpc.RpcError, OSError, ValueError) as err:
            answer = redacted_line(err, connection.secrets())
            raise SubmitError(f"OpenCue at {shown} did not take the job (nothing launched): {answer}") from None
        names = tuple(job.name() for job in jobs)
        log.info("launched %s on Cuebot %s", ", ".join(names), shown)
        return SubmitResult(farm=self.name, job_ids=names, message=f"launched {', '.join(names)} on {shown}")


def cuebot_host(url: str) -> str:
    """The ``host[:port]`` gRPC dials, from ``host[:port]`` or a URL (a user or password in it is dropped:
    Cuebot takes none)."""
    url = url.strip()
    netloc = urlsplit(url).netloc if "//" in url else url.split("/", 1)[0]
    return netloc.rsplit("@", 1)[-1]
