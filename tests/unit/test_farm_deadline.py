"""The Deadline backend and its FarmPlug application plugin.

Deadline 10 cannot run here. The job info / plugin info files and REST bodies are compared with
golden files written against Thinkbox's documentation (see docs/farms/deadline.md), and checked
the way a wrangler would read them. The plugin is loaded with stand-ins for ``Deadline.Plugins``
and ``Deadline.Scripting`` that imitate the documented API shape (callbacks, stdout handlers,
``GetRegexMatch``, ``FailRender``...): a test of our code against that shape, not of Deadline.
``submit`` talks to a local HTTP server that answers like the Web Service's ``POST /api/jobs``.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
import types
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from farmplug.errors import ConfigError
from farmplug.frames import chunk, format_frame_set, parse_frames
from farmplug.graph import FRAMES_TOKEN, JobGraph, Task, farm_layers
from farmplug.integrations.base import CompileOptions, FarmBackend, FarmConnection, SubmitError, write_submission
from farmplug.integrations.deadline import DeadlineFarm, plugin_folder
from farmplug.integrations.registry import create_farm
from tests.farm_cases import HOSTILE, cases
from tests.golden_util import check_golden
from tests.stand_ins import QuietHandler

CASES = cases()
OPTIONS = CompileOptions()
KEY_VALUE_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9]*=[^\x00-\x1f\x7f]*$")


def _compile(case: str, options: CompileOptions = OPTIONS):
    return DeadlineFarm().compile(CASES[case], options)


def _jobs(submission) -> dict[str, tuple[dict, dict]]:
    """Job key -> (JobInfo, PluginInfo), read back from the Key=Value files as Deadline would."""
    jobs = {}
    for rel in submission.files:
        if rel.endswith("/job_info.job"):
            folder = rel.rsplit("/", 1)[0]
            jobs[folder.split("/")[-1]] = (
                _read_key_value(submission.files[rel]), _read_key_value(submission.files[f"{folder}/plugin_info.job"])
            )
    return jobs


def _read_key_value(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        assert key not in pairs, f"key {key} twice"
        pairs[key] = value
    return pairs


# ---------------------------------------------------------------------------------------------
# compile: golden files and a wrangler's checks


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden_files(case, tmp_path):
    write_submission(_compile(case), tmp_path)
    files = {str(p.relative_to(tmp_path)): p.read_text(encoding="utf-8") for p in sorted(tmp_path.rglob("*"))
             if p.is_file()}
    check_golden("deadline", case, files)


def test_backend_is_registered():
    farm = create_farm("deadline")
    assert isinstance(farm, DeadlineFarm) and isinstance(farm, FarmBackend) and farm.name == "deadline"


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_job_per_layer_with_the_graph_frames_and_chunks(case):
    layers = farm_layers(CASES[case])
    jobs = _jobs(_compile(case))
    assert list(jobs) == [f"{i:02d}-{layer.name}" for i, layer in enumerate(layers, 1)]
    for layer, (info, _) in zip(layers, jobs.values(), strict=True):
        assert info["Plugin"] == "FarmPlug"
        assert info["Frames"] == layer.frame_set
        assert int(info["ChunkSize"]) == layer.chunk_size
        # Deadline splits the frame list into tasks of ChunkSize frames, in order.
        assert chunk(parse_frames(info["Frames"]), int(info["ChunkSize"])) == layer.chunks


def test_inbetween_waits_frame_by_frame_with_a_one_keyframe_offset():
    jobs = _jobs(_compile("inbetween"))
    render, denoise, guide, inbetween, fallback, reference = (jobs[k][0] for k in jobs)
    assert denoise["JobDependencies"] == "<JOB_ID:01-render>"
    assert (denoise["IsFrameDependent"], denoise["FrameDependencyOffsetStart"], denoise["FrameDependencyOffsetEnd"]) == (
        "true", "0", "0")
    assert inbetween["JobDependencies"] == "<JOB_ID:02-denoise>,<JOB_ID:03-guide>"
    assert (inbetween["IsFrameDependent"], inbetween["FrameDependencyOffsetStart"],
            inbetween["FrameDependencyOffsetEnd"]) == ("true", "-1", "1")
    assert fallback["JobDependencies"] == "<JOB_ID:04-inbetween>"
    assert "JobDependencies" not in render and "JobDependencies" not in guide and "JobDependencies" not in reference


def test_gpu_post_jobs_go_to_the_gpu_pool_and_renders_to_the_cpu_pool():
    options = CompileOptions(cpu_pool="blender", gpu_pool="cuda", gpu_group="a100", cpu_group="farm")
    jobs = _jobs(_compile("inbetween", options))
    pools = {key.split("-", 1)[1]: (info["Pool"], info.get("Group")) for key, (info, _) in jobs.items()}
    assert pools == {
        "render": ("blender", "farm"), "denoise": ("cuda", "a100"), "guide": ("blender", "farm"),
        "inbetween": ("cuda", "a100"), "fallback": ("blender", "farm"), "reference": ("blender", "farm"),
    }
    assert "Group" not in _jobs(_compile("denoise"))["01-render"][0]


def test_priorities_retries_names_and_progress_environment():
    jobs = _jobs(_compile("denoise", CompileOptions(priority=70, job_name="show sh010 v2", max_retries=4)))
    for key, (info, _) in jobs.items():
        assert info["Priority"] == ("60" if key.endswith("reference") else "70")
        assert info["BatchName"] == "show sh010 v2"
        assert info["Name"] == f"show sh010 v2 {key.split('-', 1)[1]}"
        assert (info["OverrideTaskFailureDetection"], info["FailureDetectionTaskErrors"]) == ("true", "5")
        assert info["EnvironmentKeyValue0"] == "FARMPLUG_PROGRESS=1"
    assert _jobs(_compile("denoise", CompileOptions(priority=5)))["03-reference"][0]["Priority"] == "0"


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_task_runs_exactly_the_graph_command(case, farmplug_plugin):
    options = CompileOptions(farmplug_command=("/opt/farmplug/bin/python", "-m", "farmplug"))
    jobs = _jobs(_compile(case, options))
    for layer, (info, plugin_info) in zip(farm_layers(CASES[case]), jobs.values(), strict=True):
        assert plugin_info["Executable"] == "/opt/farmplug/bin/python"
        for frames, task in zip(chunk(parse_frames(info["Frames"]), int(info["ChunkSize"])), layer.tasks, strict=True):
            argv = farmplug_plugin.task_arguments(plugin_info["ArgumentsJson"], frames)
            assert argv == ["-m", "farmplug", *task.argv]


def test_rest_requests_carry_the_same_jobs_as_the_files():
    submission = _compile("inbetween")
    jobs = _jobs(submission)
    assert [r.name for r in submission.requests] == list(jobs)
    for request, (info, plugin_info) in zip(submission.requests, jobs.values(), strict=True):
        assert (request.method, request.path) == ("POST", "/api/jobs")
        assert request.body == {"JobInfo": info, "PluginInfo": plugin_info, "AuxFiles": [], "IdOnly": True}


def test_the_readme_lists_deadlinecommand_argument_lists_in_order():
    submission = _compile("denoise")
    lines = [line for line in submission.files["README.txt"].splitlines() if re.match(r"^\d\d-", line)]
    argvs = [json.loads(line.split(": ", 1)[1]) for line in lines]
    assert argvs == [["deadlinecommand", f"jobs/{k}/job_info.job", f"jobs/{k}/plugin_info.job"]
                     for k in ("01-render", "02-denoise", "03-reference")]


def test_hostile_names_stay_inert():
    submission = _compile("hostile")
    for rel, text in submission.files.items():
        if rel.endswith(".job"):
            assert text.endswith("\n")
            for line in text[:-1].split("\n"):
                assert KEY_VALUE_LINE.match(line), f"{rel}: {line!r}"
    jobs = _jobs(submission)
    render_info, render_plugin = jobs["01-render"]
    assert render_info["BatchName"] == HOSTILE.replace("\n", "_")
    template = json.loads(render_plugin["ArgumentsJson"])
    assert tuple(template) == farm_layers(CASES["hostile"])[0].command
    assert any("\n" in a and "`id`" in a and '"q"' in a for a in template)
    for request in submission.requests:
        for value in request.body["JobInfo"].values():
            assert not re.search(r"[\x00-\x1f\x7f]", value)


def test_no_credentials_in_the_submission(monkeypatch):
    monkeypatch.setenv("FARMPLUG_DEADLINE_USER", "wrangler")
    monkeypatch.setenv("FARMPLUG_DEADLINE_PASSWORD", "s3cr3t-pw")
    submission = _compile("denoise")
    everything = json.dumps([dict(submission.files), [r.body for r in submission.requests]])
    assert "s3cr3t-pw" not in everything and "wrangler" not in everything


def test_an_executable_with_a_newline_is_refused():
    with pytest.raises(ConfigError, match="cannot go in a Deadline plugin info file"):
        _compile("denoise", CompileOptions(farmplug_command=("farmplug\nPlugin=CommandLine",)))


def _task(layer: str, frames: list[int], depends_on: list[str] = ()) -> Task:
    return Task(id=f"{layer}-{min(frames):04d}-{max(frames):04d}", layer=layer, kind="render" if layer == "render" else "stage",
                stage=layer, role="plan", frames=frames, depends_on=list(depends_on),
                argv=["run", layer, "--layer", layer, "--frames", format_frame_set(frames)],
                outputs=[f"/out/{layer}.{f:04d}.exr" for f in frames], timing=f"/out/{layer}.json",
                gpus=0 if layer == "render" else 1)


def test_uneven_chunks_become_one_job_per_task_with_job_level_dependencies(farmplug_plugin):
    renders = [_task("render", [1, 2, 3]), _task("render", [4]), _task("render", [5, 6, 7])]
    denoises = [_task("denoise", r.frames, [r.id]) for r in renders]
    graph = JobGraph(name="sh", run_dir="/out", plan_file="/p.yaml", shot_file="/s.yaml", tasks=renders + denoises)
    jobs = _jobs(DeadlineFarm().compile(graph, OPTIONS))
    assert list(jobs) == ["01-render-0001-0003", "02-render-0004-0004", "03-render-0005-0007",
                          "04-denoise-0001-0003", "05-denoise-0004-0004", "06-denoise-0005-0007"]
    for task, (info, plugin_info) in zip(renders + denoises, jobs.values(), strict=True):
        assert (info["Frames"], info["ChunkSize"]) == (format_frame_set(task.frames), str(len(task.frames)))
        assert farmplug_plugin.task_arguments(plugin_info["ArgumentsJson"], task.frames) == task.argv
        assert "IsFrameDependent" not in info
    assert jobs["05-denoise-0004-0004"][0]["JobDependencies"] == "<JOB_ID:02-render-0004-0004>"


# ---------------------------------------------------------------------------------------------
# the FarmPlug plugin, against stand-ins with Deadline's documented API shape


class FailRender(Exception):
    """What Deadline's FailRender raises (FailRenderException) to end the task as failed."""


class _Event:
    """A .NET event as Python.NET shows it: ``+=`` adds a handler."""

    def __init__(self):
        self.handlers = []

    def __iadd__(self, handler):
        self.handlers.append(handler)
        return self

    def __call__(self):
        for handler in self.handlers:
            handler()


class _StdoutHandler:
    def __init__(self, regex):
        self.regex = regex
        self.HandleCallback = _Event()


class FakeDeadlinePlugin:
    """The members of Deadline.Plugins.DeadlinePlugin the FarmPlug plugin uses, as documented."""

    plugin_info: dict = {}
    config: dict = {}
    task_frames = None
    start_frame = end_frame = 0

    def __getattr__(self, name):
        if name.endswith("Callback"):  # InitializeProcessCallback, RenderArgumentCallback, ...
            event = _Event()
            object.__setattr__(self, name, event)
            return event
        raise AttributeError(name)

    @property
    def StdoutHandlers(self):
        return self.__dict__.setdefault("_handlers", [])

    def AddStdoutHandlerCallback(self, regex):
        handler = _StdoutHandler(regex)
        self.StdoutHandlers.append(handler)
        return handler

    def GetPluginInfoEntry(self, key):
        return self.plugin_info[key]

    def GetPluginInfoEntryWithDefault(self, key, default):
        return self.plugin_info.get(key, default)

    def GetConfigEntryWithDefault(self, key, default):
        return self.config.get(key, default)

    def GetCurrentTask(self):
        return types.SimpleNamespace(TaskFrameList=self.task_frames)

    def GetStartFrame(self):
        return self.start_frame

    def GetEndFrame(self):
        return self.end_frame

    def GetRegexMatch(self, index):
        return self._match.group(index)

    def SetProgress(self, percent):
        self.progress = percent

    def SetStatusMessage(self, message):
        self.status = message

    def LogInfo(self, message):
        self.__dict__.setdefault("log", []).append(message)

    def FailRender(self, message):
        raise FailRender(message)

    def output(self, text):
        """Feed process output as the Worker does: line by line (\\r, \\n or \\r\\n end a line)."""
        for line in re.split(r"\r\n|\r|\n", text):
            for handler in self.StdoutHandlers:
                match = re.search(handler.regex, line)
                if match:
                    self._match = match
                    handler.HandleCallback()


@pytest.fixture
def farmplug_plugin(monkeypatch):
    """FarmPlug.py loaded with stand-ins for Deadline's modules in sys.modules."""
    deadline = types.ModuleType("Deadline")
    plugins = types.ModuleType("Deadline.Plugins")
    plugins.DeadlinePlugin = FakeDeadlinePlugin
    plugins.PluginType = types.SimpleNamespace(Simple="Simple", Advanced="Advanced")
    scripting = types.ModuleType("Deadline.Scripting")
    scripting.RepositoryUtils = types.SimpleNamespace(CheckPathMapping=lambda path: path)
    scripting.FileUtils = types.SimpleNamespace(
        SearchFileList=lambda paths: next((p for p in paths.split(";") if p and Path(p).is_file()), ""))
    deadline.Plugins, deadline.Scripting = plugins, scripting
    for name, module in {"Deadline": deadline, "Deadline.Plugins": plugins, "Deadline.Scripting": scripting}.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("FarmPlug_under_test", plugin_folder() / "FarmPlug.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _plugin(module, case="inbetween", layer_index=3, frames=(2, 4, 6, 8)):
    plugin = module.GetDeadlinePlugin()
    info, plugin_info = list(_jobs(_compile(case)).values())[layer_index]
    plugin.plugin_info = plugin_info
    plugin.task_frames = list(frames)
    plugin.InitializeProcessCallback()
    return plugin


def test_plugin_builds_and_registers_its_callbacks(farmplug_plugin):
    plugin = _plugin(farmplug_plugin)
    assert isinstance(plugin, FakeDeadlinePlugin)
    assert plugin.PluginType == "Simple" and plugin.SingleFramesOnly is False and plugin.StdoutHandling is True
    assert len(plugin.StdoutHandlers) == 2
    farmplug_plugin.CleanupDeadlinePlugin(plugin)
    assert "RenderArgumentCallback" not in plugin.__dict__


@pytest.mark.parametrize("case, layer_index", [("inbetween", 3), ("inbetween", 0), ("hostile", 0), ("hostile", 2)])
def test_plugin_argument_string_splits_back_to_the_task_argv(farmplug_plugin, case, layer_index):
    layer = farm_layers(CASES[case])[layer_index]
    for task in layer.tasks:
        plugin = _plugin(farmplug_plugin, case, layer_index, task.frames)
        line = plugin.RenderArgumentCallback.handlers[0]()
        assert farmplug_plugin.split_arguments(line) == task.argv
        assert "\n" not in line or case == "hostile"
        # Python's own implementation of the same Windows rules agrees with ours.
        assert farmplug_plugin.split_arguments(subprocess.list2cmdline(task.argv)) == task.argv


def test_plugin_falls_back_to_start_and_end_frames(farmplug_plugin):
    plugin = _plugin(farmplug_plugin, "denoise", 0, frames=())
    plugin.task_frames = None
    plugin.start_frame, plugin.end_frame = 5, 8
    argv = farmplug_plugin.split_arguments(plugin.RenderArgumentCallback.handlers[0]())
    assert argv[argv.index("--frames") + 1] == "5-8"


@pytest.mark.parametrize("argument", ["", "plain", "a b", 'say "hi"', "C:\\dir\\", 'C:\\dir\\"x', "\\\\server\\share",
                                      "tab\there", "new\nline", "$HOME `id`; rm -rf /", "'single'", '""', "\\"])
def test_plugin_quoting_round_trips(farmplug_plugin, argument):
    argv = [argument, "next", argument]
    assert farmplug_plugin.split_arguments(farmplug_plugin.join_arguments(argv)) == argv


@pytest.mark.parametrize("frames", [[1], [1, 2], [1, 3], [1, 3, 5], [1, 3, 5, 7, 9, 11, 12], [2, 4, 6, 8], [10, 12, 20],
                                    list(range(1, 25)), [5, 1, 3], [-3, -2, -1, 0]])
def test_plugin_frame_sets_match_farmplug(farmplug_plugin, frames):
    assert farmplug_plugin.format_frame_set(frames) == format_frame_set(frames)


def test_plugin_reports_progress_from_farmplug_bars(farmplug_plugin):
    plugin = _plugin(farmplug_plugin)
    plugin.output("\rinbetween inbetween-0002-0008:   0%|          | 0/4 [00:00<?, ?frame/s]"
                  "\rinbetween inbetween-0002-0008:  38%|███▊      | 3/8 [00:05<00:08,  1.6s/frame]")
    assert plugin.progress == 38.0 and plugin.status == "inbetween-0002-0008 38%"
    plugin.output("render render-0001-0004: 100%|██████████| 4/4 [00:09<00:00,  2.3s/frame]\n")
    assert plugin.progress == 100.0


def test_plugin_fails_the_task_on_a_farmplug_error(farmplug_plugin):
    plugin = _plugin(farmplug_plugin)
    plugin.output("loading model\n")
    with pytest.raises(FailRender, match="^farmplug: /in/a.exr: missing pass albedo$"):
        plugin.output("farmplug: error: /in/a.exr: missing pass albedo\n")


def test_plugin_finds_the_executable(farmplug_plugin, tmp_path, monkeypatch):
    installed = tmp_path / "farmplug"
    installed.write_text("#!/bin/sh\n")
    installed.chmod(0o755)
    plugin = _plugin(farmplug_plugin)
    run = plugin.RenderExecutableCallback.handlers[0]
    plugin.plugin_info = {**plugin.plugin_info, "Executable": str(installed)}
    assert run() == str(installed)
    plugin.plugin_info = {**plugin.plugin_info, "Executable": "farmplug"}
    plugin.config = {"FarmPlugExecutable": f"C:\\farmplug\\farmplug.exe;{installed}"}
    assert run() == str(installed)
    plugin.config = {}
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run() == str(installed)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FailRender, match="not found on this worker"):
        run()


def test_plugin_files_agree_with_the_plugin_and_the_jobs():
    folder = plugin_folder()
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        "FarmPlug.dlinit", "FarmPlug.options", "FarmPlug.param", "FarmPlug.py"]
    source = (folder / "FarmPlug.py").read_text(encoding="utf-8")
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.M))
    assert imported <= {"json", "os", "re", "shutil", "Deadline.Plugins", "Deadline.Scripting"}

    def sections(text):
        found, current = {}, None
        for line in text.splitlines():
            if line.startswith("["):
                current = found.setdefault(line.strip("[]"), {})
            elif line.strip():
                key, _, value = line.partition("=")
                current[key] = value
        return found

    param = sections((folder / "FarmPlug.param").read_text(encoding="utf-8"))
    assert param["FarmPlugExecutable"]["Type"] == "multilinemultifilename"
    dlinit = _read_key_value((folder / "FarmPlug.dlinit").read_text(encoding="utf-8"))
    assert "FarmPlugExecutable" in dlinit and "About" in dlinit
    options = sections((folder / "FarmPlug.options").read_text(encoding="utf-8"))
    _, plugin_info = _jobs(_compile("denoise"))["01-render"]
    assert set(options) == set(plugin_info) == {"Executable", "ArgumentsJson"}
    assert '"FarmPlugExecutable"' in source and FRAMES_TOKEN in source


# ---------------------------------------------------------------------------------------------
# submit: a local stand-in for the Web Service


class _WebService(QuietHandler):
    received: list
    reject_at: int | None = None

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.reject_at == len(self.received):
            self.reply(400, "text/plain", b"Error: pool 'gpu' does not exist")
            return
        self.reply(200, "application/json", json.dumps({"_id": f"64f0{len(self.received):020d}"}))


@pytest.fixture
def web_service():
    def start(reject_at=None):
        handler = type("Handler", (_WebService,), {"received": [], "reject_at": reject_at})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", handler.received

    servers = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _connection(url, monkeypatch):
    monkeypatch.setenv("FARMPLUG_DEADLINE_USER", "wrangler")
    monkeypatch.setenv("FARMPLUG_DEADLINE_PASSWORD", "s3cr3t-pw")
    return FarmConnection(kind="deadline", url=url, username_env="FARMPLUG_DEADLINE_USER",
                          password_env="FARMPLUG_DEADLINE_PASSWORD", timeout_s=5)


def test_submit_fills_dependencies_with_real_ids_and_logs_in(web_service, monkeypatch):
    url, received = web_service()
    result = DeadlineFarm().submit(_compile("inbetween"), _connection(url + "/", monkeypatch))
    assert result.job_ids == tuple(f"64f0{n:020d}" for n in range(1, 7))
    assert "s3cr3t-pw" not in result.message
    assert [r["path"] for r in received] == ["/api/jobs"] * 6
    expected_auth = "Basic " + base64.b64encode(b"wrangler:s3cr3t-pw").decode()
    assert all(r["auth"] == expected_auth for r in received)
    infos = [r["body"]["JobInfo"] for r in received]
    assert infos[1]["JobDependencies"] == result.job_ids[0]
    assert infos[3]["JobDependencies"] == f"{result.job_ids[1]},{result.job_ids[2]}"
    assert infos[3]["FrameDependencyOffsetStart"] == "-1" and infos[3]["FrameDependencyOffsetEnd"] == "1"
    assert infos[4]["JobDependencies"] == result.job_ids[3]
    assert all("<JOB_ID" not in json.dumps(r["body"]) for r in received)
    assert all(r["body"]["IdOnly"] is True and r["body"]["AuxFiles"] == [] for r in received)


def test_a_rejected_job_names_the_jobs_already_submitted(web_service, monkeypatch):
    url, received = web_service(reject_at=2)
    with pytest.raises(SubmitError) as caught:
        DeadlineFarm().submit(_compile("denoise"), _connection(url, monkeypatch))
    message = str(caught.value)
    assert "rejected job 02-denoise" in message and "HTTP 400" in message and "pool 'gpu' does not exist" in message
    assert f"01-render=64f0{1:020d}" in message
    assert "\n" not in message and "s3cr3t-pw" not in message
    assert len(received) == 2


def test_an_unreachable_web_service_fails_fast(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SubmitError, match=rf"^cannot reach Deadline Web Service at http://127\.0\.0\.1:{port}: .*"
                                          "nothing was submitted$"):
        DeadlineFarm().submit(_compile("denoise"), _connection(f"http://127.0.0.1:{port}", monkeypatch))
    assert time.monotonic() - started < 2


def test_credentials_in_the_url_are_never_shown(monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SubmitError) as caught:
        DeadlineFarm().submit(_compile("denoise"), _connection(f"http://admin:hunter2@127.0.0.1:{port}", monkeypatch))
    assert "hunter2" not in str(caught.value) and f"http://admin:***@127.0.0.1:{port}" in str(caught.value)
