"""Tractor backend: the Alfred job script, parsed back twice (a small parser here, and real Tcl)."""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from farmplug.errors import ConfigError
from farmplug.integrations.base import CompileOptions, FarmConnection, SubmitError
from farmplug.integrations.tractor import JOB_FILE, TractorFarm, tcl_word
from tests.farm_cases import HOSTILE, cases
from tests.golden_util import check_golden
from tests.stand_ins import QuietHandler

OPTIONS = CompileOptions()
NASTY = ["", " ", "{", "}", "{}", "}{", "\\", "a\\", "\\{", "\n", "a\nb", "\t", "$HOME", "[exec rm -rf /]", '"', "'",
         ";", "#", "#FRAME#", "é ü", "\x01", "x\r\n", "\\n", "-- --x", HOSTILE]


def script(case: str, options: CompileOptions = OPTIONS) -> str:
    return TractorFarm().compile(cases()[case], options).files[JOB_FILE]


# --- a small parser for the Alfred subset the backend writes -----------------------------------

ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def words(text: str) -> list[list[str]]:
    """Commands (lists of words) of a Tcl script: braced words are literal, bare words unescaped."""
    commands, current, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\n" or c == ";":
            if current:
                commands.append(current)
            current, i = [], i + 1
        elif c in " \t":
            i += 1
        elif c == "#" and not current:
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif c == "{":
            depth, j = 1, i + 1
            while depth:
                if text[j] == "\\":
                    j += 2
                    continue
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            current.append(text[i + 1:j - 1])
            i = j
        else:
            out = []
            while i < len(text) and text[i] not in " \t\n;":
                if text[i] == "\\":
                    nxt = text[i + 1]
                    if nxt == "u":
                        out.append(chr(int(text[i + 2:i + 6], 16)))
                        i += 6
                        continue
                    out.append(ESCAPES.get(nxt, nxt))
                    i += 2
                else:
                    out.append(text[i])
                    i += 1
            current.append("".join(out))
    if current:
        commands.append(current)
    return commands


def list_elements(expr: str) -> list[str]:
    """A Tcl list's elements (a launch expression's argv): the same word rules, any whitespace separates."""
    return [w for command in words(expr.replace("\n", " ")) for w in command]


def parse_job(text: str) -> tuple[dict, dict]:
    """(job options, tasks by title: {service, children, argv, cmd_service})."""
    (job,), tasks = words(text), {}

    def walk(body: str, parent: str | None) -> list[str]:
        children = []
        for command in words(body):
            if command[0] == "Instance":
                children.append(command[1])
                continue
            assert command[0] == "Task"
            title, opts = command[1], dict(zip(command[2::2], command[3::2], strict=True))
            assert title not in tasks, f"task {title} written twice"
            tasks[title] = {"service": opts["-service"]}
            tasks[title]["children"] = walk(opts.get("-subtasks", ""), title)
            (cmd,) = words(opts["-cmds"])
            assert cmd[0] == "RemoteCmd" and cmd[2] == "-service"
            tasks[title].update(argv=list_elements(cmd[1]), cmd_service=cmd[3])
            children.append(title)
        return children

    assert job[0] == "Job"
    opts = dict(zip(job[1::2], job[2::2], strict=True))
    opts["top"] = walk(opts.pop("-subtasks"), None)
    return opts, tasks


# --- the same with the Tcl interpreter Tractor's job format comes from ----------------------------

TCL_PROCS = r"""
set ::stack {}; set ::edges {}; set ::cmds {}; set ::services [dict create]
proc Job {args} { set ::job $args; lappend ::stack {}; uplevel #0 [dict get $args -subtasks] }
proc Task {title args} {
    lappend ::edges [list [lindex $::stack end] $title]
    dict set ::services $title [dict get $args -service]
    lappend ::stack $title
    if {[dict exists $args -subtasks]} { uplevel #0 [dict get $args -subtasks] }
    uplevel #0 [dict get $args -cmds]
    set ::stack [lrange $::stack 0 end-1]
}
proc Instance {title} { lappend ::edges [list [lindex $::stack end] $title] }
proc RemoteCmd {expr args} { lappend ::cmds [list [lindex $::stack end] $expr [dict get $args -service]] }
"""


@pytest.fixture
def tcl():
    tkinter = pytest.importorskip("tkinter", reason="no Tcl interpreter (tkinter) here")
    try:
        interp = tkinter.Tcl()
    except tkinter.TclError as err:
        pytest.skip(f"Tcl is not usable: {err}")
    interp.eval(TCL_PROCS)
    return interp


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_golden(case):
    check_golden("tractor", case, TractorFarm().compile(cases()[case], OPTIONS).files)


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_each_task_runs_its_argv_after_exactly_its_dependencies(case):
    graph = cases()[case]
    job, tasks = parse_job(script(case))
    assert job["-title"] == graph.name
    assert set(tasks) == {t.id for t in graph.tasks}
    for task in graph.tasks:
        parsed = tasks[task.id]
        assert parsed["argv"] == ["farmplug", *task.argv]
        assert sorted(parsed["children"]) == sorted(task.depends_on)
        assert parsed["service"] == parsed["cmd_service"] == ("gpu" if task.gpus else "cpu")
    assert set(job["top"]) == {t.id for t in graph.tasks} - {d for t in graph.tasks for d in t.depends_on}


@pytest.mark.parametrize("case", ["inbetween", "hostile"])
def test_real_tcl_reads_the_same_job(case, tcl):
    graph = cases()[case]
    tcl.eval(script(case))
    assert tcl.eval("dict get $::job -title") == graph.name
    edges = {}
    for edge in tcl.splitlist(tcl.eval("set ::edges")):
        parent, child = tcl.splitlist(edge)
        edges.setdefault(parent, []).append(child)
    commands = {}
    for entry in tcl.splitlist(tcl.eval("set ::cmds")):
        title, expr, service = tcl.splitlist(entry)
        commands[title] = (list(tcl.splitlist(expr)), service)
    for task in graph.tasks:
        assert commands[task.id] == (["farmplug", *task.argv], "gpu" if task.gpus else "cpu")
        assert sorted(edges.get(task.id, [])) == sorted(task.depends_on)


def test_inbetween_chunk_holds_both_keyframe_chunks_once_and_instances_after():
    text = script("inbetween")
    _job, tasks = parse_job(text)
    assert sorted(tasks["inbetween-0002-0008"]["children"]) == ["denoise-0001-0007", "denoise-0009-0012", "guide-0002-0008"]
    assert text.count("Task denoise-0009-0012 ") == 1
    assert text.count("Instance denoise-0009-0012") == 1
    assert text.index("Task denoise-0009-0012 ") < text.index("Instance denoise-0009-0012")


@pytest.mark.parametrize("value", NASTY, ids=[repr(v)[:20] for v in NASTY])
def test_tcl_word_round_trips(value, tcl):
    word = tcl_word(value)
    assert "\n" not in word
    assert words("x " + word) == [["x", value]]
    tcl.eval(f"set ::bare {word}")  # as a bare argument (Job -title ...)
    assert tcl.eval("set ::bare") == value
    tcl.eval(f"set ::braced {{a {word} b}}")  # as a list element inside RemoteCmd {...}
    assert tcl.splitlist(tcl.eval("set ::braced")) == ("a", value, "b")
    assert list_elements(f"a {word} b") == ["a", value, "b"]


def test_hostile_job_has_no_unescaped_specials_and_no_credentials():
    text = script("hostile")
    assert HOSTILE not in text and "\nnext" not in text
    assert "password" not in text.lower()


def test_argument_starting_with_tilde_is_refused():
    graph = cases()["denoise"]
    graph = graph.model_copy(update={"tasks": [t.model_copy(update={"argv": [*t.argv, "~bob"]}) for t in graph.tasks]})
    with pytest.raises(ConfigError, match="tilde|~"):
        TractorFarm().compile(graph, OPTIONS)


class FakeEngine(QuietHandler):
    """Answers ``POST /Tractor/spool`` like tractor-engine: ``{"rc": 0, "msg": ..., "jid": N}``."""

    answer: dict = {"rc": 0, "msg": "job script accepted, jid: 1042", "jid": 1042}
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        type(self).received.append((self.path, self.headers["Content-Type"], body))
        self.reply(200, "application/json", json.dumps(type(self).answer))


@pytest.fixture
def engine():
    FakeEngine.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    FakeEngine.answer = {"rc": 0, "msg": "job script accepted, jid: 1042", "jid": 1042}


def test_submit_spools_the_script(engine, monkeypatch):
    monkeypatch.setenv("FARMPLUG_TRACTOR_USER", "wrangler")
    submission = TractorFarm().compile(cases()["denoise"], OPTIONS)
    result = TractorFarm().submit(submission, FarmConnection(kind="tractor", url=engine, username_env="FARMPLUG_TRACTOR_USER"))
    assert result.job_ids == ("1042",)
    (path, content_type, body), = FakeEngine.received
    url = urlsplit(path)
    assert url.path == "/Tractor/spool" and content_type == "application/tractor-spool"
    query = parse_qs(url.query)
    assert query["jobOwner"] == ["wrangler"] and query["blocking"] == ["spool"]
    assert body == submission.files[JOB_FILE]


def test_submit_rejected_reports_the_engines_answer(engine):
    FakeEngine.answer = {"rc": 1, "msg": "job parse error: unknown option -bogus"}
    with pytest.raises(SubmitError, match="unknown option -bogus"):
        TractorFarm().submit(TractorFarm().compile(cases()["denoise"], OPTIONS), FarmConnection(kind="tractor", url=engine))


def test_submit_unreachable_fails_fast():
    started = time.monotonic()
    with pytest.raises(SubmitError, match="unreachable"):
        TractorFarm().submit(TractorFarm().compile(cases()["denoise"], OPTIONS),
                             FarmConnection(kind="tractor", url="http://127.0.0.1:9", timeout_s=2))
    assert time.monotonic() - started < 5
