"""Flamenco backend: the job type script and the SubmittedJob payload, read back as a wrangler would."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from farmplug.integrations.base import CompileOptions, FarmConnection, SubmitError
from farmplug.integrations.flamenco import JOB_TYPE_FILE, FlamencoFarm
from tests.farm_cases import cases
from tests.golden_util import check_golden
from tests.stand_ins import QuietHandler

OPTIONS = CompileOptions()


def compiled(case: str, options: CompileOptions = OPTIONS):
    return FlamencoFarm().compile(cases()[case], options)


def payload(case: str) -> dict:
    return compiled(case).requests[0].body


def specs(case: str) -> list[dict]:
    return json.loads(payload(case)["settings"]["tasks"])


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_golden(case):
    submission = compiled(case)
    files = dict(submission.files)
    files["requests/01-submit-job.json"] = json.dumps(submission.requests[0].body, indent=2, sort_keys=True) + "\n"
    check_golden("flamenco", case, files)


@pytest.mark.parametrize("case", ["denoise", "inbetween", "hostile", "temporal", "upscale"])
def test_one_task_per_chunk_with_its_exact_argv_and_dependencies(case):
    graph = cases()[case]
    body = payload(case)
    assert (body["type"], body["submitter_platform"], body["priority"]) == ("farmplug", "linux", 50)
    by_id = {s["id"]: s for s in specs(case)}
    assert set(by_id) == {t.id for t in graph.tasks}
    for task in graph.tasks:
        spec = by_id[task.id]
        assert [spec["exe"], *spec["args"]] == ["farmplug", *task.argv]
        assert spec["depends_on"] == task.depends_on
        assert spec["type"] == ("gpu" if task.gpus else "cpu")
    seen = set()
    for spec in specs(case):  # dependencies come first, as compileJob needs
        assert set(spec["depends_on"]) <= seen
        seen.add(spec["id"])


def test_inbetween_chunk_waits_for_both_keyframe_chunks_and_its_guide():
    by_id = {s["id"]: s for s in specs("inbetween")}
    assert by_id["inbetween-0002-0008"]["depends_on"] == ["denoise-0001-0007", "denoise-0009-0012", "guide-0002-0008"]
    assert by_id["inbetween-0010-0010"]["depends_on"] == ["denoise-0009-0012", "guide-0010-0010"]
    assert by_id["denoise-0009-0012"]["depends_on"] == ["render-0009-0012"]


def test_hostile_names_stay_single_arguments_and_no_credentials():
    graph = cases()["hostile"]
    by_id = {s["id"]: s for s in specs("hostile")}
    for task in graph.tasks:
        assert by_id[task.id]["args"] == task.argv  # exec: no shell, no splitting
    text = json.dumps(payload("hostile"))
    assert "password" not in text.lower() and "token" not in text.lower()


NODE_HARNESS = r"""
const fs = require("fs");
const [script, settings] = [fs.readFileSync(process.argv[2], "utf8"), JSON.parse(fs.readFileSync(0, "utf8"))];
const made = [];
const author = {
  Task(name, type) { const t = {name, type, commands: [], deps: [],
    addCommand(c) { this.commands.push(c); }, addDependency(d) { this.deps.push(d.name); } }; return t; },
  Command(name, params) { return {name, params}; },
};
const job = {settings, addTask(t) { made.push({name: t.name, type: t.type, commands: t.commands, deps: t.deps}); }};
const compileJob = new Function("author", script + "\nreturn {JOB_TYPE, compileJob};")(author);
compileJob.compileJob(job);
process.stdout.write(JSON.stringify({jobType: compileJob.JOB_TYPE, tasks: made}));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed to run the job compiler script")
@pytest.mark.parametrize("case", ["inbetween", "hostile"])
def test_job_type_script_compiles_the_payload_into_the_graph(case, tmp_path):
    """Runs farmplug.js under node with a stand-in for Flamenco's ``author`` API."""
    submission = compiled(case)
    script = tmp_path / "farmplug.js"
    script.write_text(submission.files[JOB_TYPE_FILE], encoding="utf-8")
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS, encoding="utf-8")
    result = subprocess.run(["node", str(harness), str(script)], input=json.dumps(submission.requests[0].body["settings"]),
                            capture_output=True, text=True, check=True)
    out = json.loads(result.stdout)
    assert [s["key"] for s in out["jobType"]["settings"]] == ["tasks"]
    graph = cases()[case]
    made = {t["name"]: t for t in out["tasks"]}
    assert set(made) == {t.id for t in graph.tasks}
    for task in graph.tasks:
        assert made[task.id]["commands"] == [{"name": "exec", "params": {"exe": "farmplug", "args": task.argv}}]
        assert made[task.id]["deps"] == task.depends_on
        assert made[task.id]["type"] == ("gpu" if task.gpus else "cpu")


class FakeManager(QuietHandler):
    """Answers ``POST /api/v3/jobs`` like Flamenco Manager: the job, or an error object."""

    status = 200
    answer: dict = {"id": "0d5b1a7e-job"}
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((self.path, body))
        self.reply(type(self).status, "application/json", json.dumps(type(self).answer))


@pytest.fixture
def manager():
    FakeManager.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeManager)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    FakeManager.status, FakeManager.answer = 200, {"id": "0d5b1a7e-job"}


def test_submit_posts_the_payload(manager):
    submission = compiled("denoise")
    url = f"http://127.0.0.1:{manager.server_address[1]}"
    result = FlamencoFarm().submit(submission, FarmConnection(kind="flamenco", url=url, options={"worker_tag": "t-1"}))
    assert result.job_ids == ("0d5b1a7e-job",)
    (path, body), = FakeManager.received
    assert path == "/api/v3/jobs"
    assert body == {**submission.requests[0].body, "worker_tag": "t-1"}


def test_submit_rejected_reports_the_managers_answer(manager):
    FakeManager.status, FakeManager.answer = 400, {"code": 400, "message": "job type farmplug unknown"}
    url = f"http://127.0.0.1:{manager.server_address[1]}"
    with pytest.raises(SubmitError, match="HTTP 400.*job type farmplug unknown.*nothing"):
        FlamencoFarm().submit(compiled("denoise"), FarmConnection(kind="flamenco", url=url))


def test_submit_unreachable_fails_fast():
    started = time.monotonic()
    with pytest.raises(SubmitError, match="unreachable"):
        FlamencoFarm().submit(compiled("denoise"), FarmConnection(kind="flamenco", url="127.0.0.1:9", timeout_s=2))
    assert time.monotonic() - started < 5
