"""The farmplug menu in Nuke: Denoise, Upscale, Interpolate and Submit on the selected Read nodes.

Only documented Nuke calls are used: ``nuke.menu``, ``Menu.addMenu``/``addCommand``,
``nuke.selectedNodes``, a Read node's ``file``/``first``/``last`` knobs, ``nuke.nodes.Read``,
``nuke.toNode``, ``nuke.ProgressTask``, ``nuke.executeInMainThread``, ``nuke.message``,
``nuke.choice`` and ``nuke.getInput``. farmplug runs as a child process in a worker thread (the interface stays live);
the thread reports through a ProgressTask, which can cancel it, and the Read node for the result
is created back in Nuke's main thread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time

import nuke

from .commands import (
    FARMS,
    MenuError,
    ReadFacts,
    error_line,
    find_executable,
    last_json,
    parse_progress,
    read_facts,
    run_command,
    shown,
    submit_command,
)

log = logging.getLogger("farmplug_nuke")

MENU_NAME = "farmplug"
#: Menu entry -> the stage kind it runs (the menu offers a stage only when farmplug has it installed).
ENTRIES = (("Denoise", "denoise"), ("Upscale", "upscale"), ("Interpolate", "inbetween"))
#: Seconds a quick farmplug call (the stage list, a dry run) may take.
QUICK_TIMEOUT_S = 120
#: Seconds between the worker thread's looks at farmplug's progress and at Cancel.
POLL_S = 0.2


def add_menu(parent: str = "Nuke"):
    """Add the farmplug menu to Nuke's menu bar; returns it."""
    menu = nuke.menu(parent).addMenu(MENU_NAME)
    for label, kind in ENTRIES:
        menu.addCommand(label, lambda kind=kind: run_on_selected(kind))
    menu.addCommand("Submit", submit_selected)
    return menu


def installed_stages() -> dict[str, dict]:
    """The stages farmplug has, by kind (``farmplug nuke stages --json``): each kind's first backend,
    the one ``farmplug run KIND`` uses unless told otherwise.

    Raises:
        MenuError: farmplug is missing or failed.
    """
    done = _run_quick([*find_executable(), "nuke", "stages", "--json"])
    stages: dict[str, dict] = {}
    for stage in json.loads(done)["stages"]:
        stages.setdefault(stage["kind"], stage)
    return stages


def _run_quick(argv: list[str]) -> str:
    log.info("farmplug_nuke: running %s", shown(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=QUICK_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MenuError(f"cannot run farmplug: {err}") from None
    if done.returncode != 0:
        raise MenuError(error_line(done.stderr, done.returncode))
    return done.stdout


def selected_reads() -> list[ReadFacts]:
    """The selected Read nodes' facts.

    Raises:
        MenuError: no Read node is selected, or one has no frame sequence.
    """
    nodes = nuke.selectedNodes("Read")
    if not nodes:
        raise MenuError("select one or more Read nodes first")
    return [read_facts(n.name(), n["file"].value(), n["first"].value(), n["last"].value()) for n in nodes]


def _tell(message: str) -> None:
    log.info("farmplug_nuke: %s", message)
    nuke.message(f"farmplug: {message}")


def _stage_or_refuse(kind: str) -> dict | None:
    stages = installed_stages()
    if kind not in stages:
        _tell(f"no {kind} stage is installed (installed: {', '.join(sorted(stages)) or 'none'})")
        return None
    return stages[kind]


def run_on_selected(kind: str) -> list[threading.Thread]:
    """Run stage ``kind`` here on each selected Read's frames, in the background; returns the worker threads."""
    try:
        stage = _stage_or_refuse(kind)
        if stage is None:
            return []
        reads = selected_reads()
        step = None
        if stage["mode"] == "keyframes":
            answer = nuke.getInput("farmplug: the Read holds keyframes every N frames; N =", "2")
            if answer is None:
                return []
            try:
                step = int(answer)
            except ValueError:
                raise MenuError(f"keyframe step {answer!r} is not a whole number") from None
        jobs = [(read, run_command(kind, read, step=step)) for read in reads]
        executable = find_executable()
    except MenuError as err:
        _tell(str(err))
        return []
    threads = []
    for read, argv in jobs:
        output = argv[argv.index("--output") + 1]
        threads.append(start_worker(f"farmplug {kind} {read.name}", [*executable, *argv], kind, read, output))
    return threads


def submit_selected() -> list[threading.Thread]:
    """Submit a per-frame stage over each selected Read's frames to a farm (or write the farm's files)."""
    try:
        stages = installed_stages()
        per_frame = [k for k, s in stages.items() if s["mode"] == "frame"]
        if not per_frame:
            raise MenuError("no per-frame stage is installed to submit")
        reads = selected_reads()
        kind_index = 0
        if len(per_frame) > 1:
            kind_index = nuke.choice("farmplug", "Which stage?", per_frame, 0)
            if kind_index is None:
                return []
        kind = per_frame[kind_index]
        options = [*FARMS, *(f"{farm} (write files only)" for farm in FARMS if farm != "local")]
        choice = nuke.choice("farmplug", f"Submit {kind} of {len(reads)} Read node(s) to:", options, 1)
        if choice is None:
            return []
        farm = options[choice].split(" ")[0]
        dry_run = options[choice].endswith("(write files only)")
        executable = find_executable()
        jobs = [(read, submit_command(kind, read, farm, dry_run=dry_run)) for read in reads]
    except MenuError as err:
        _tell(str(err))
        return []
    threads = []
    for read, argv in jobs:
        output = argv[argv.index("--output") + 1]
        threads.append(start_worker(f"farmplug submit {kind} {read.name}", [*executable, *argv], kind, read,
                                    output, submitted=True))
    return threads


def start_worker(title: str, argv: list[str], kind: str, read: ReadFacts, output: str, *,
                 submitted: bool = False) -> threading.Thread:
    thread = threading.Thread(target=_work, args=(title, argv, kind, read, output, submitted), daemon=True,
                              name=title)
    thread.start()
    return thread


def _work(title: str, argv: list[str], kind: str, read: ReadFacts, output: str, submitted: bool) -> None:
    """The worker thread: run farmplug, show its progress, honour Cancel, then hand the result to the main thread."""
    task = nuke.ProgressTask(title)
    task.setMessage(f"{read.name}: frames {read.frames}")
    log.info("farmplug_nuke: starting %s", shown(argv))
    env = {**os.environ, "FARMPLUG_PROGRESS": "1"}
    try:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env=env, start_new_session=True)
    except OSError as err:
        nuke.executeInMainThread(_tell, args=(f"cannot run farmplug: {err}",))
        return
    stdout: list[str] = []
    stderr: list[str] = []
    readers = [threading.Thread(target=_drain, args=(stream, sink), daemon=True)
               for stream, sink in ((process.stdout, stdout), (process.stderr, stderr))]
    for reader in readers:
        reader.start()
    cancelled = False
    while process.poll() is None:
        found = parse_progress("".join(stderr[-8:]), kind)
        if found:
            task.setProgress(int(100 * found[0] / found[1]))
        if not cancelled and task.isCancelled():
            cancelled = True
            # As a farm cancels a task: farmplug stops its children and keeps finished frames.
            os.killpg(process.pid, signal.SIGTERM)
        time.sleep(POLL_S)
    for reader in readers:
        reader.join(timeout=10)
    code = process.returncode
    if cancelled:
        nuke.executeInMainThread(_tell, args=(f"{title} cancelled; finished frames are kept",))
        return
    if code != 0:
        nuke.executeInMainThread(_tell, args=(f"{title} failed: {error_line(''.join(stderr), code)}",))
        return
    task.setProgress(100)
    if submitted:
        done = last_json("".join(stdout))
        if not done.get("submitted", True):
            nuke.executeInMainThread(_tell, args=(f"wrote the {done.get('farm')} files to {done.get('out')} "
                                                   "(nothing submitted)",))
            return
    nuke.executeInMainThread(create_result_read, args=(output, read))


def _drain(stream, sink: list[str]) -> None:
    while True:
        chunk = stream.read1(4096)
        if not chunk:
            break
        sink.append(chunk.decode("utf-8", "replace"))
    stream.close()


def create_result_read(output: str, read: ReadFacts):
    """A Read node for the result (in the main thread), beside the source Read."""
    node = nuke.nodes.Read(file=output, first=read.first, last=read.last)
    source = nuke.toNode(read.name)
    if source is not None:
        node.setXYpos(source.xpos() + 120, source.ypos())
    log.info("farmplug_nuke: created %s for %s", node.name(), output)
    return node
