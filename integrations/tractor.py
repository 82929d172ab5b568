"""Tractor: the job graph as an Alfred job script, spooled to the engine over HTTP.

Tractor runs a task after its subtasks, so each graph task is a ``Task`` whose ``-subtasks`` are
the tasks it depends on: written in full the first time, as ``Instance {title}`` afterwards
(a denoise chunk holds its render chunk; an inbetween chunk holds both keyframe chunks and its
guide chunk). The job's top-level subtasks are the tasks nothing depends on. Task titles are
the graph's task ids, which are unique.

Quoting: a launch expression (``RemoteCmd {...}``) is a Tcl list that Tractor splits into the
argv it passes to execvp, no shell. Every value is written as one Tcl word with each character
outside ``[A-Za-z0-9_./:=,+@%-]`` backslash-escaped (newline as ``\\n``), which is the same word
as a bare Tcl argument and as a list element inside the braces, with no brace to balance.
"""

from __future__ import annotations

import getpass
import logging
import re
import socket
from urllib.parse import quote

import requests

from farmplug.errors import ConfigError
from farmplug.graph import JobGraph, Task
from farmplug.integrations.base import (
    CompileOptions,
    FarmConnection,
    NativeSubmission,
    SubmitError,
    SubmitResult,
    base_url,
    endpoint,
    http_request,
    redacted_line,
    shown_address,
)

log = logging.getLogger(__name__)

JOB_FILE = "tractor/job.alf"
SPOOL_PATH = "/Tractor/spool"
SAFE = re.compile(r"[A-Za-z0-9_./:=,+@%-]+")
CONTROL_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def tcl_word(value: str) -> str:
    """``value`` as one Tcl word that substitution and list splitting turn back into ``value``."""
    if not value:
        return "{}"
    if SAFE.fullmatch(value):
        return value
    out = []
    for char in value:
        if SAFE.fullmatch(char) or (ord(char) > 0x7F and char.isprintable()):
            out.append(char)
        elif char in CONTROL_ESCAPES:
            out.append(CONTROL_ESCAPES[char])
        elif not char.isprintable():
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append("\\" + char)
    return "".join(out)


def launch_expression(argv: list[str]) -> str:
    """The ``RemoteCmd`` launch expression of ``argv``.

    Raises:
        ConfigError: an argument starts with ``~``, which Tractor tilde-expands.
    """
    for arg in argv:
        if arg.startswith("~"):
            raise ConfigError(f"argument {arg!r} starts with ~, which Tractor would expand; give an absolute path")
    return " ".join(tcl_word(a) for a in argv)


class TractorFarm:
    """Compiles the graph into an Alfred job script and spools it to a Tractor engine."""

    name = "tractor"

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """The Alfred job script: one Task per graph task, nested by dependency.

        Raises:
            ConfigError: an argument Tractor would rewrite (see :func:`launch_expression`).
        """
        ordered = graph.topological()
        by_id = {t.id: t for t in ordered}
        needed = {d for t in ordered for d in t.depends_on}
        written: set[str] = set()

        def emit(task: Task, depth: int) -> list[str]:
            pad = "  " * depth
            if task.id in written:
                return [f"{pad}Instance {tcl_word(task.id)}"]
            written.add(task.id)
            service = options.gpu_pool if task.gpus else options.cpu_pool
            argv = [*options.farmplug_command, *task.argv]
            head = f"{pad}Task {tcl_word(task.id)} -service {tcl_word(service)}"
            lines = [head + " -subtasks {"] if task.depends_on else []
            for dep in task.depends_on:
                lines += emit(by_id[dep], depth + 1)
            lines += [
                f"{pad}}} -cmds {{" if task.depends_on else head + " -cmds {",
                f"{pad}  RemoteCmd {{{launch_expression(argv)}}} -service {tcl_word(service)}",
                f"{pad}}}",
            ]
            return lines

        title = options.job_name or graph.name
        body = [
            "##AlfredToDo 3.0",
            f"Job -title {tcl_word(title)} -priority {options.priority} -service {tcl_word(options.cpu_pool)} "
            f"-comment {tcl_word('farmplug run ' + graph.run_dir)} -subtasks {{",
        ]
        for task in ordered:
            if task.id not in needed:
                body += emit(task, 1)
        body.append("}")
        return NativeSubmission(
            farm=self.name, files={JOB_FILE: "\n".join(body) + "\n"},
            summary=f"Tractor job {title!r}: {len(ordered)} tasks",
        )

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """Spool the job script to the engine: ``POST http://ENGINE/Tractor/spool`` (what tractor-spool does).

        Raises:
            SubmitError: no address, the engine unreachable, or the script rejected (with its answer).
        """
        base = base_url(connection, "no Tractor engine address: set the farm's url, e.g. http://tractor-engine:80")
        shown = shown_address(base)
        secrets = connection.secrets()
        user, _secret = connection.credentials()
        owner = user or getpass.getuser()
        params = {
            "spvers": "2.0", "hnm": socket.gethostname(), "jobOwner": owner,
            "jobFile": JOB_FILE, "jobcwd": "/", "blocking": "spool",
        }
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        try:
            response = http_request(
                "POST", endpoint(base, SPOOL_PATH, query), data=submission.files[JOB_FILE].encode("utf-8"),
                headers={"Content-Type": "application/tractor-spool"}, timeout_s=connection.timeout_s,
            )
        except requests.Timeout as err:
            raise SubmitError(f"Tractor engine {shown} gave {redacted_line(err, secrets)} "
                              "(the connection's timeout_s); the job may or may not be spooled") from None
        except requests.RequestException as err:
            raise SubmitError(f"Tractor engine {shown} unreachable: {redacted_line(err, secrets)}; "
                              "nothing spooled") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        message = redacted_line(str(answer.get("msg") or response.text or response.reason), secrets)
        if response.status_code >= 300 or answer.get("rc", 0) != 0:
            raise SubmitError(f"Tractor engine {shown} rejected the job (HTTP {response.status_code}): {message}")
        jid = answer.get("jid")
        if jid is None:
            found = re.search(r"jid[:= ]+(\d+)", message)
            jid = found.group(1) if found else None
        if jid is None:
            raise SubmitError(f"Tractor engine {shown} answered without a job id: {message}")
        log.info("spooled Tractor job %s to %s", jid, shown)
        return SubmitResult(farm=self.name, job_ids=(str(jid),), message=f"Tractor job {jid} spooled: {message}")
