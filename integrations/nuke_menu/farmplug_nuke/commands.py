"""Read nodes to farmplug command lines (pure Python: no ``nuke`` here, so all of it is tested without Nuke).

A Read node's ``file`` knob is a frame pattern (``%04d`` or ``####``; Nuke's file browser may add
`` 1-24`` after it) and its ``first``/``last`` knobs the frame range; farmplug takes both pattern
styles as they are. Commands are argument lists, never shell strings, so a path with spaces,
quotes or ``;`` is one argument and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EXECUTABLE_ENV = "FARMPLUG_EXECUTABLE"
#: The farm backends farmplug ships (``farmplug submit --help``).
FARMS = ("local", "openjd", "deadline", "opencue", "flamenco", "tractor")

_TOKEN = re.compile(r"#+|%0?\d*d")
# What Nuke's file browser appends to a sequence: " 1-24" (negative frames: " -5--1").
_BROWSER_RANGE = re.compile(r"\s+-?\d+--?\d+\s*$")


class MenuError(Exception):
    """A Read node or an answer that makes no farmplug command; the message is one line for the artist."""


@dataclass(frozen=True)
class ReadFacts:
    """What a Read node says about its frames.

    Attributes:
        name: The node's name (for messages).
        file: The frame pattern (``%04d`` or ``####``), as farmplug reads it.
        first: First frame.
        last: Last frame.
    """

    name: str
    file: str
    first: int
    last: int

    @property
    def frames(self) -> str:
        return f"{self.first}-{self.last}"


def clean_pattern(value: str, node: str = "Read") -> str:
    """The frame pattern of a ``file`` knob's value.

    Raises:
        MenuError: empty, a Tcl expression (``[...]``), control characters, or no frame token.
    """
    text = (value or "").strip()
    if not text:
        raise MenuError(f"{node}: its file knob is empty")
    if any(ord(c) < 32 for c in text):
        raise MenuError(f"{node}: its file path holds control characters")
    if "[" in text and "]" in text:
        raise MenuError(f"{node}: its file is a Tcl expression ({text}); give farmplug a plain path")
    trimmed = _BROWSER_RANGE.sub("", text)
    if trimmed != text and _TOKEN.search(trimmed):
        text = trimmed
    if not _TOKEN.search(text):
        raise MenuError(f"{node}: {text} is one file, not a frame sequence (needs %04d or ####)")
    return text


def read_facts(name: str, file_value: str, first, last) -> ReadFacts:
    """A Read node's facts from its knob values.

    Raises:
        MenuError: the pattern is not a sequence, or the range is not whole numbers in order.
    """
    try:
        first_frame, last_frame = int(float(first)), int(float(last))
    except (TypeError, ValueError):
        raise MenuError(f"{name}: frame range {first!r}-{last!r} is not whole numbers") from None
    if last_frame < first_frame:
        raise MenuError(f"{name}: last frame {last_frame} is before first frame {first_frame}")
    return ReadFacts(name=name, file=clean_pattern(file_value, name), first=first_frame, last=last_frame)


def output_pattern(pattern: str, kind: str) -> str:
    """Where a stage's results go: beside the input, the stage's name before the frame token, always EXR.

    ``/shots/a/beauty.%04d.exr`` -> ``/shots/a/beauty_denoise.%04d.exr``;
    ``plate.####.dpx`` -> ``plate_denoise.####.exr``.
    """
    folder, name = os.path.split(pattern)
    match = list(_TOKEN.finditer(name))
    if not match:
        raise MenuError(f"{pattern} has no frame token")
    token = match[-1]
    head, tail = name[:token.start()], name[token.end():]
    separator = head[-1] if head and head[-1] in "._-" else ""
    stem = head[:-1] if separator else head
    new_head = f"{stem}_{kind}{separator}" if stem else f"{kind}{separator or '.'}"
    extension = re.search(r"\.[A-Za-z0-9]+$", tail)
    if extension is None:
        new_tail = tail + ".exr"
    elif extension[0].lower() == ".exr":
        new_tail = tail
    else:
        new_tail = tail[:extension.start()] + ".exr"
    return os.path.join(folder, new_head + token.group(0) + new_tail)


def run_command(kind: str, read: ReadFacts, *, step: int | None = None) -> list[str]:
    """``farmplug run KIND`` over the Read's frames (the arguments after the executable)."""
    argv = ["run", kind, "--input", read.file, "--output", output_pattern(read.file, kind), "--frames", read.frames]
    if step is not None:
        if step < 2:
            raise MenuError(f"a keyframe step must be 2 or more, got {step}")
        argv += ["--step", str(step)]
    return argv


def submit_command(kind: str, read: ReadFacts, farm: str, *, dry_run: bool = False, out: str | None = None,
                   chunk_size: int = 8) -> list[str]:
    """``farmplug nuke submit``: the stage over the Read's frames as a farm job (arguments after the executable)."""
    if farm not in FARMS:
        raise MenuError(f"unknown farm {farm!r}; farms: {', '.join(FARMS)}")
    argv = ["nuke", "submit", "--stage", kind, "--input", read.file, "--output", output_pattern(read.file, kind),
            "--frames", read.frames, "--chunk-size", str(chunk_size), "--farm", farm, "--json"]
    if dry_run:
        argv.append("--dry-run")
        if out:
            argv += ["--out", out]
    return argv


def find_executable(environ: Mapping[str, str] | None = None) -> list[str]:
    """farmplug's argument list: ``$FARMPLUG_EXECUTABLE`` (a command, split like a shell would), else PATH.

    Raises:
        MenuError: neither names an executable.
    """
    environ = os.environ if environ is None else environ
    value = (environ.get(EXECUTABLE_ENV) or "").strip()
    if value:
        argv = shlex.split(value)
        program = shutil.which(os.path.expanduser(argv[0]))
        if program is None:
            raise MenuError(f"farmplug executable not found: {argv[0]} (set by {EXECUTABLE_ENV})")
        return [program, *argv[1:]]
    program = shutil.which("farmplug", path=environ.get("PATH"))
    if program is None:
        raise MenuError(f"farmplug executable not found: set {EXECUTABLE_ENV} or put farmplug on PATH")
    return [program]


def shown(argv: Sequence[str]) -> str:
    """A command as a person would type it (for messages and logs only; it is never run through a shell)."""
    return shlex.join(argv)


def error_line(stderr: str, returncode: int) -> str:
    """farmplug's own one-line error from its stderr, else its last line."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", stderr or "") if line.strip()]
    for line in reversed(lines):
        if line.startswith("farmplug: error:"):
            return line.removeprefix("farmplug: error:").strip()
    return lines[-1] if lines else f"farmplug exited with status {returncode}"


def parse_progress(text: str, kind: str) -> tuple[int, int] | None:
    """The latest ``(done, total)`` of the stage's progress bar (``denoise denoise-0001-0010: 40%|... | 4/10``)."""
    for piece in reversed([p for p in re.split(r"[\r\n]+", text or "") if p.strip()]):
        if not piece.lstrip().startswith(f"{kind} "):
            continue
        count = re.search(r"\|\s*(\d+)/(\d+)(?=\s|$)", piece)
        if count and 0 < int(count[2]) and int(count[1]) <= int(count[2]):
            return int(count[1]), int(count[2])
    return None


def last_json(stdout: str) -> dict:
    """The JSON object farmplug's ``--json`` printed last ({} when there is none)."""
    text = stdout or ""
    for start in reversed([m.start() for m in re.finditer(r"(?m)^\{", text)]):
        try:
            value = json.loads(text[start:])
        except ValueError:
            continue
        return value if isinstance(value, dict) else {}
    return {}
