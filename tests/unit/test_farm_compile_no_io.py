"""Compiling a job graph for any farm backend does no I/O: no file opened, moved or listed, no process, no socket.

The guard is a Python audit hook (``sys.addaudithook``): every ``open`` of any kind (builtins,
``io``, ``os.open``, ``pathlib``), every file rename/removal/mkdir/listing, every process start
and every socket raise an audit event, so nothing slips past the way it can past monkeypatching
a few functions. Audit hooks cannot be removed, so one is installed per session and switched on
only while :func:`no_io` is active. ``os.stat`` and friends raise no audit event and are not seen.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from farmplug.integrations.base import CompileOptions
from farmplug.integrations.registry import BUILTIN_FARMS, create_farm
from tests.farm_cases import cases

FORBIDDEN_EVENTS = frozenset({
    "open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.listdir", "os.scandir", "os.chmod", "os.chown",
    "os.truncate", "os.utime", "os.link", "os.symlink", "os.chdir", "os.system", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "os.startfile", "mmap.__new__", "pty.spawn", "glob.glob", "glob.glob/2",
})
FORBIDDEN_PREFIXES = ("subprocess.", "socket.", "shutil.", "tempfile.", "os.exec", "os.spawn", "os.posix_spawn",
                      "urllib.", "http.", "ftplib.", "smtplib.", "sqlite3.", "webbrowser.")


class ForbiddenIO(AssertionError):
    """Raised inside the guarded call by the audit hook; the event is aborted."""


class _Guard:
    active = False
    seen: list[tuple[str, tuple]] = []
    installed = False


def _forbidden(event: str) -> bool:
    return event in FORBIDDEN_EVENTS or event.startswith(FORBIDDEN_PREFIXES)


def _hook(event: str, args: tuple) -> None:
    if _Guard.active and _forbidden(event):
        _Guard.seen.append((event, args))
        raise ForbiddenIO(f"I/O inside a no-I/O call: {event} {args!r}")


@contextmanager
def no_io() -> Iterator[list[tuple[str, tuple]]]:
    """Forbid I/O in the block: a forbidden event raises ForbiddenIO and is listed in the yielded list."""
    if not _Guard.installed:
        sys.addaudithook(_hook)
        _Guard.installed = True
    seen: list[tuple[str, tuple]] = []
    _Guard.seen, _Guard.active = seen, True
    try:
        yield seen
    finally:
        _Guard.active = False


GRAPHS = cases()


@pytest.mark.parametrize("case", sorted(GRAPHS))
@pytest.mark.parametrize("farm", list(BUILTIN_FARMS))
def test_compile_does_no_io(farm, case):
    backend = create_farm(farm)
    graph = GRAPHS[case]
    # Unguarded first: lazy imports inside compile open .py files, which is not the compile's I/O.
    warm = backend.compile(graph, CompileOptions())
    with no_io() as seen:
        try:
            native = backend.compile(graph, CompileOptions())
        except ForbiddenIO:
            pass
    assert seen == [], f"{farm} compile of {case} did I/O: {seen}"
    assert native == warm, "compile is a pure function of the graph and options"
    assert native.files or native.requests


def _socket_connect() -> None:
    with socket.socket() as s:
        s.connect(("127.0.0.1", 9))


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda d: open(os.devnull, "rb"), id="builtins.open"),
        pytest.param(lambda d: io.open(os.devnull, "rb"), id="io.open"),  # noqa: UP020 - io.open is the spelling under test
        pytest.param(lambda d: os.open(os.devnull, os.O_RDONLY), id="os.open"),
        pytest.param(lambda d: Path(os.devnull).read_bytes(), id="Path.read_bytes"),
        pytest.param(lambda d: (d / "new.txt").write_text("x"), id="Path.write_text"),
        pytest.param(lambda d: (d / "old.txt").open(), id="Path.open"),
        pytest.param(lambda d: os.replace(d / "old.txt", d / "new.txt"), id="os.replace"),
        pytest.param(lambda d: (d / "old.txt").rename(d / "new.txt"), id="Path.rename"),
        pytest.param(lambda d: os.remove(d / "old.txt"), id="os.remove"),
        pytest.param(lambda d: (d / "old.txt").unlink(), id="Path.unlink"),
        pytest.param(lambda d: os.mkdir(d / "sub"), id="os.mkdir"),
        pytest.param(lambda d: (d / "sub").mkdir(parents=True), id="Path.mkdir"),
        pytest.param(lambda d: os.listdir(d), id="os.listdir"),
        pytest.param(lambda d: list(d.iterdir()), id="Path.iterdir"),
        pytest.param(lambda d: list(os.scandir(d)), id="os.scandir"),
        pytest.param(lambda d: shutil.copyfile(d / "old.txt", d / "new.txt"), id="shutil.copyfile"),
        pytest.param(lambda d: tempfile.mkstemp(dir=d), id="tempfile.mkstemp"),
        pytest.param(lambda d: subprocess.run(["true"], check=False), id="subprocess.run"),
        pytest.param(lambda d: os.system("true"), id="os.system"),
        pytest.param(lambda d: socket.socket(), id="socket.socket"),
    ],
)
def test_the_guard_catches_every_kind_of_io(tmp_path, action):
    (tmp_path / "old.txt").write_text("old")
    before = sorted(p.name for p in tmp_path.iterdir())
    with no_io() as seen, pytest.raises(ForbiddenIO):
        action(tmp_path)
    assert seen, "the forbidden call was not seen"
    # The event was aborted: nothing changed on disk.
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "old.txt").read_text() == "old"


def test_the_guard_catches_an_open_that_the_code_swallows():
    def careless() -> None:
        try:
            open(os.devnull, "rb").close()
        except Exception:  # code that hides the failure must still be caught
            pass

    with no_io() as seen:
        careless()
    assert [event for event, _ in seen] == ["open"]


def test_the_guard_is_off_outside_the_block(tmp_path):
    with no_io():
        pass
    (tmp_path / "after.txt").write_text("fine")
    assert (tmp_path / "after.txt").read_text() == "fine"
    with socket.socket():
        pass
