"""Running the farmplug command line from Blender: finding it, one-shot calls, background jobs.

No ``bpy`` here and nothing heavy: the add-on never imports farmplug itself (Blender's Python
may not have it, and farmplug's core pulls pydantic and numpy), it runs the ``farmplug``
executable as an argument list, never through a shell. Which executable: the add-on's
preference, else ``$FARMPLUG_EXECUTABLE``, else ``farmplug`` on ``PATH``.

Errors are one line: the farmplug CLI prints ``farmplug: error: ...`` as its last stderr line,
and that line is what the artist sees.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger("farmplug_blender")

EXECUTABLE_ENV = "FARMPLUG_EXECUTABLE"
#: Seconds a quick command (plan, passes, a dry run) may take before it is given up.
QUICK_TIMEOUT_S = 300.0
#: Seconds between SIGTERM and SIGKILL when a background job is cancelled.
CANCEL_GRACE_S = 20.0

# The engine's log line before each task, and a tqdm bar's count.
_LOG_STEP = re.compile(r"\[(\d+)/(\d+)\]\s+(\S+?):\s")
_BAR_COUNT = re.compile(r"\|\s*(\d+)/(\d+)(?=\s|$)")


class CliError(Exception):
    """farmplug could not be found or run, or it failed; the message is one line for the artist."""


def find_executable(preference: str = "", environ: Mapping[str, str] | None = None) -> list[str]:
    """The argument list that starts farmplug: the preference, ``$FARMPLUG_EXECUTABLE``, or ``PATH``.

    A preference or variable may hold a command with arguments (``/opt/py/bin/python -m farmplug.cli``);
    it is split like a shell would, never run through one.

    Raises:
        CliError: none of the three names an executable file.
    """
    environ = os.environ if environ is None else environ
    for origin, value in (("the add-on preference", preference), (EXECUTABLE_ENV, environ.get(EXECUTABLE_ENV, ""))):
        value = (value or "").strip()
        if not value:
            continue
        argv = shlex.split(value)
        program = shutil.which(os.path.expanduser(argv[0]))
        if program is None:
            raise CliError(f"farmplug executable not found: {argv[0]} (set by {origin})")
        return [program, *argv[1:]]
    program = shutil.which("farmplug")
    if program is None:
        raise CliError("farmplug executable not found: set its path in the add-on's preferences, "
                       f"or ${EXECUTABLE_ENV}, or put farmplug on PATH")
    return [program]


def error_line(stderr: str, returncode: int) -> str:
    """The one line that says why farmplug failed (its own ``farmplug: error:`` line when there is one)."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr or "") if line.strip()]
    for line in reversed(lines):
        if line.startswith("farmplug: error:"):
            return line.removeprefix("farmplug: error:").strip()
    for line in reversed(lines):
        if line.startswith("farmplug:") or "error" in line.lower():
            return line.removeprefix("farmplug:").strip()
    return lines[-1] if lines else f"farmplug exited with status {returncode}"


def parse_json_output(stdout: str) -> object:
    """The JSON document farmplug's ``--json`` printed last (anything a task printed before it is skipped).

    Raises:
        CliError: there is no JSON document in the output.
    """
    text = stdout or ""
    starts = [m.start() for m in re.finditer(r"(?m)^[{\[]", text)]
    for start in reversed(starts):
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    raise CliError("farmplug printed no JSON result" + (f": {text.strip().splitlines()[-1]}" if text.strip() else ""))


def run_json(executable: Sequence[str], argv: Sequence[str], *, cwd: str | None = None,
             timeout: float = QUICK_TIMEOUT_S, env: Mapping[str, str] | None = None) -> object:
    """Run ``farmplug ARGV --json`` to the end and return its JSON result.

    Raises:
        CliError: farmplug could not start, timed out, failed (its error line) or printed no JSON.
    """
    command = [*executable, *argv, "--json"]
    log.info("farmplug_blender: running %s", shlex.join(command))
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CliError(f"farmplug executable not found: {command[0]}") from None
    except subprocess.TimeoutExpired:
        raise CliError(f"farmplug {argv[0] if argv else ''} took longer than {timeout:.0f} s and was stopped") from None
    except OSError as err:
        raise CliError(f"cannot run {command[0]}: {err.strerror or err}") from None
    if done.returncode != 0:
        raise CliError(error_line(done.stderr, done.returncode))
    return parse_json_output(done.stdout)


def parse_progress(text: str, bar: str | None = None) -> tuple[int, int, str] | None:
    """The latest ``(done, total, label)`` in a piece of farmplug's stderr, or None.

    Two things say how far a job is: the engine's log line before each task
    (``[3/9] render-0001-0008: render frames 1-8``: two done, the third running) and, when
    ``bar`` names it, farmplug's progress bar (``calibrate:  33%|###3  | 3/9 [00:05<00:10, label]``).
    Other progress bars (a task's own frames) are ignored.

    >>> parse_progress("[3/9] render-0001-0008: render frames 1-8")
    (2, 9, 'render-0001-0008')
    >>> parse_progress("calibrate:  33%|###3      | 3/9 [00:05<00:10, 1.20task/s, measure]", bar="calibrate")
    (3, 9, 'measure')
    """
    for piece in reversed([p for p in re.split(r"[\r\n]+", text or "") if p.strip()]):
        step = _LOG_STEP.search(piece)
        if step and 0 < int(step[1]) <= int(step[2]):
            return int(step[1]) - 1, int(step[2]), step[3]
        if bar and piece.lstrip().startswith(f"{bar}:"):
            count = _BAR_COUNT.search(piece)
            if count and int(count[1]) <= int(count[2]) and int(count[2]) > 0:
                tail = piece[count.end():]
                label = tail.rsplit(",", 1)[-1].strip().rstrip("]").strip() if "," in tail else ""
                if re.fullmatch(r"[\d.?]+\w*/s", label):
                    label = ""
                return int(count[1]), int(count[2]), label
    return None


class BackgroundJob:
    """One farmplug command run in the background, its progress read from its progress bar.

    The interface never waits on it: a timer calls :meth:`poll` and shows :attr:`progress`;
    :meth:`cancel` stops it the way a farm cancels a task (SIGTERM: farmplug stops its children,
    removes temp files and keeps finished outputs), then kills it if it does not stop.

    Attributes:
        name: What the job does (``calibrate``, ``submit``), for the interface.
        argv: The full command (executable and arguments).
    """

    def __init__(self, name: str, executable: Sequence[str], argv: Sequence[str], *, cwd: str | None = None,
                 env: Mapping[str, str] | None = None, bar: str | None = None,
                 on_done: Callable[[BackgroundJob], None] | None = None) -> None:
        self.name = name
        self.argv = [*executable, *argv]
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        # The progress bar is what the job's progress is read from: keep it on.
        self.env["FARMPLUG_PROGRESS"] = "1"
        self.bar = bar
        self.on_done = on_done
        self.done = 0
        self.total = 0
        self.label = ""
        self.started_at: float | None = None
        self.cancelled = False
        self._process: subprocess.Popen | None = None
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._finished_reported = False

    # -- running ----------------------------------------------------------------------------
    def start(self) -> BackgroundJob:
        """Start the command; returns the job.

        Raises:
            CliError: it could not be started.
        """
        if self._process is not None:
            raise CliError(f"the {self.name} job has already been started")
        log.info("farmplug_blender: starting %s", shlex.join(self.argv))
        try:
            self._process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True,
            )
        except FileNotFoundError:
            raise CliError(f"farmplug executable not found: {self.argv[0]}") from None
        except OSError as err:
            raise CliError(f"cannot run {self.argv[0]}: {err.strerror or err}") from None
        self.started_at = time.monotonic()
        for stream, sink, parse in ((self._process.stdout, self._stdout, False), (self._process.stderr, self._stderr, True)):
            reader = threading.Thread(target=self._read, args=(stream, sink, parse), daemon=True,
                                      name=f"farmplug-{self.name}-reader")
            reader.start()
            self._readers.append(reader)
        return self

    def _read(self, stream, sink: list[str], parse: bool) -> None:
        # Read in chunks, not lines: tqdm redraws its bar with "\r" and no newline.
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            text = chunk.decode("utf-8", errors="replace")
            with self._lock:
                sink.append(text)
                if parse:
                    found = parse_progress("".join(self._stderr[-4:]), self.bar)
                    if found is not None:
                        self.done, self.total, label = found
                        self.label = label or self.label
        stream.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def progress(self) -> float:
        """0..1 from the last count farmplug printed (0 before the first)."""
        if self.returncode == 0:
            return 1.0
        return self.done / self.total if self.total else 0.0

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._stdout)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._stderr)

    def poll(self) -> bool:
        """Whether the job has finished; the first time it has, ``on_done`` is called (in the caller's thread)."""
        if self._process is None or self._process.poll() is None:
            return False
        for reader in self._readers:
            reader.join(timeout=5)
        if not self._finished_reported:
            self._finished_reported = True
            if self.on_done is not None:
                self.on_done(self)
        return True

    def wait(self, timeout: float | None = None) -> int:
        """Block until the job ends (scripts and tests); returns its exit status.

        Raises:
            CliError: it was not started, or it is still running after ``timeout`` seconds.
        """
        if self._process is None:
            raise CliError(f"the {self.name} job was never started")
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CliError(f"the {self.name} job is still running after {timeout:.0f} s") from None
        self.poll()
        return self._process.returncode

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the job as a farm cancels a task: SIGTERM to its process group, SIGKILL after ``grace_s``."""
        if not self.running:
            return
        self.cancelled = True
        log.info("farmplug_blender: cancelling the %s job (pid %d)", self.name, self._process.pid)
        try:
            os.killpg(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=grace_s)
        except ProcessLookupError:
            pass
        self.poll()

    # -- results ----------------------------------------------------------------------------
    def error(self) -> str | None:
        """Why the job failed, in one line; None while it runs or when it succeeded."""
        code = self.returncode
        if code in (None, 0):
            return None
        if self.cancelled:
            return f"the {self.name} job was cancelled; finished outputs are kept, run it again to continue"
        return error_line(self.stderr, code)

    def result(self) -> object:
        """The JSON result of a finished, successful job.

        Raises:
            CliError: the job has not finished, failed, or printed no JSON.
        """
        code = self.returncode
        if code is None:
            raise CliError(f"the {self.name} job is still running")
        if code != 0:
            raise CliError(self.error() or f"the {self.name} job failed")
        return parse_json_output(self.stdout)
