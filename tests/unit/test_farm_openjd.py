"""The OpenJD / Deadline Cloud backend: golden job bundles, validated by openjd-model and the openjd
CLI, run through the real OpenJD runtime with a stand-in farmplug that records what it was given."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from farmplug.errors import ConfigError
from farmplug.frames import parse_frames
from farmplug.graph import JobGraph, Task, farm_layers
from farmplug.integrations.base import CompileOptions, FarmConnection, SubmitError, write_submission
from farmplug.integrations.openjd import CHAIN_SCRIPT, OpenJDFarm, job_name, plan_steps, range_expression
from farmplug.integrations.registry import create_farm
from tests.farm_cases import HOSTILE, cases
from tests.golden_util import check_golden

openjd_model = pytest.importorskip("openjd.model", reason="openjd-model is not installed")

CASES = cases()
OPENJD = shutil.which("openjd", path=str(Path(sys.executable).parent)) or shutil.which("openjd")
needs_openjd_cli = pytest.mark.skipif(OPENJD is None, reason="the openjd CLI (openjd-cli) is not installed")
PARAM_REF = re.compile(r"^\{\{(Param|Task\.Param|Task\.File)\.([A-Za-z_][A-Za-z0-9_]*)\}\}$")


def bundle(case: str, **options) -> dict[str, str]:
    return dict(OpenJDFarm().compile(CASES[case], CompileOptions(**options)).files)


def template_of(files) -> dict:
    return yaml.safe_load(files["template.yaml"])


def values_of(files) -> dict[str, object]:
    return {v["name"]: v["value"] for v in yaml.safe_load(files["parameter_values.yaml"])["parameterValues"]}


def job_params(files) -> dict[str, str]:
    """The job parameters as ``openjd run`` takes them (Deadline's own ``deadline:*`` settings left out)."""
    return {k: v for k, v in values_of(files).items() if not k.startswith("deadline:")}


def create_job(files):
    template = openjd_model.decode_job_template(template=template_of(files), supported_extensions=["TASK_CHUNKING"])
    values = openjd_model.preprocess_job_parameters(
        job_template=template, job_parameter_values=job_params(files), environment_templates=[],
        job_template_dir=Path("/"), current_working_dir=Path("/"),
    )
    return openjd_model.create_job(job_template=template, job_parameter_values=values)


def commands_of(on_run: dict) -> list[list[str]]:
    """The commands one task runs: a single command, or the chain script's count-prefixed list."""
    if on_run["command"] != "bash":
        return [[on_run["command"], *on_run["args"]]]
    args = on_run["args"][1:]
    assert on_run["args"][0] == "{{Task.File.Chain}}"
    commands = []
    while args:
        count = int(args[0])
        commands.append(args[1 : 1 + count])
        args = args[1 + count :]
    return commands


def resolve(arg: str, params: dict[str, str], frames: str) -> str:
    match = PARAM_REF.match(arg)
    if not match:
        assert "{{" not in arg and "}}" not in arg, arg
        return arg
    scope, name = match.groups()
    return frames if scope == "Task.Param" else params[name]


def step_layers(case: str) -> dict[str, list[str]]:
    """Each step's layers, in order (a layer's own name may hold "-", as ``engine-upscale`` does)."""
    return {step.name: [layer.name for layer in step.layers] for step in plan_steps(farm_layers(CASES[case]))}


def normalised(argv: list[str]) -> list[str]:
    """``--frames`` as the frame list it names ("1-7:2" and "1-7x2" are the same frames)."""
    return [str(parse_frames(a)) if i and argv[i - 1] == "--frames" else a for i, a in enumerate(argv)]


# --- golden files and validation -------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_bundle(case):
    files = bundle(case)
    assert sorted(files) == ["asset_references.yaml", "parameter_values.yaml", "template.yaml"]
    check_golden("openjd", case, files)


@pytest.mark.parametrize("case", sorted(CASES))
def test_template_validates_and_creates_a_job_with_openjd_model(case):
    job = create_job(bundle(case))
    assert [s.name for s in job.steps] == [s["name"] for s in template_of(bundle(case))["steps"]]


@needs_openjd_cli
@pytest.mark.parametrize("case", sorted(CASES))
def test_openjd_check_passes(case, tmp_path):
    write_submission(OpenJDFarm().compile(CASES[case], CompileOptions()), tmp_path)
    proc = subprocess.run([OPENJD, "check", str(tmp_path / "template.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passes validation" in proc.stdout


def test_registered_as_openjd():
    assert create_farm("openjd").name == "openjd"


# --- what a wrangler checks ------------------------------------------------------------------

STEPS = {
    "denoise": {"render-denoise": [], "reference": []},
    "inbetween": {
        "render-denoise": [], "guide": [], "inbetween": ["render-denoise", "guide"], "fallback": ["inbetween"],
        "reference": [],
    },
    "hostile": {"render-denoise": [], "inbetween": ["render-denoise"], "fallback": ["inbetween"], "reference": []},
    # A window of neighbours needs other chunks' renders: OpenJD's step dependency waits for the whole render.
    "temporal": {"render": [], "denoise": ["render"], "reference": []},
    # The engine build is a step of its own: only the upscale step waits for it, never the renders.
    "upscale": {"engine-upscale": [], "fullres": [], "render-denoise": [],
                "upscale": ["engine-upscale", "fullres", "render-denoise"], "reference": []},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_steps_and_dependencies(case):
    steps = template_of(bundle(case))["steps"]
    assert {s["name"]: [d["dependsOn"] for d in s.get("dependencies", [])] for s in steps} == STEPS[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_chunks_are_exactly_the_graph_tasks(case):
    """OpenJD's own chunking of each step gives the graph's chunks, so every task id and timing
    record the CLI derives from ``--frames`` is the one the graph (and the report) expects."""
    graph = CASES[case]
    layers = {layer.name: layer for layer in farm_layers(graph)}
    job = create_job(bundle(case))
    for step in job.steps:
        chunks = [parse_frames(t["Frames"].value)
                  for t in openjd_model.StepParameterSpaceIterator(space=step.parameterSpace)]
        for layer_name in step_layers(case)[step.name]:
            assert chunks == layers[layer_name].chunks, (step.name, layer_name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_chunk_sizes_and_frame_ranges(case):
    """Even chunks use OpenJD task chunking; a step with a short chunk lists its chunks (OpenJD would
    even them out, changing the tasks)."""
    layers = {layer.name: layer for layer in farm_layers(CASES[case])}
    for step in template_of(bundle(case))["steps"]:
        (param,) = step["parameterSpace"]["taskParameterDefinitions"]
        head = layers[step_layers(case)[step["name"]][0]]
        if param["type"] == "CHUNK[INT]":
            assert all(len(c) == head.chunk_size for c in head.chunks)
            assert parse_frames(param["range"].replace(":", "x")) == head.frames
            assert param["chunks"]["defaultTaskCount"] == head.chunk_size
            assert "targetRuntimeSeconds" not in param["chunks"]  # adaptive chunks would not match the graph's tasks
        else:
            assert param["type"] == "STRING"
            assert [parse_frames(r.replace(":", "x")) for r in param["range"]] == head.chunks
            assert any(len(c) != len(head.chunks[0]) for c in head.chunks)


def test_which_steps_use_task_chunking():
    kinds = {case: {s["name"]: s["parameterSpace"]["taskParameterDefinitions"][0]["type"]
                    for s in template_of(bundle(case))["steps"]} for case in CASES}
    assert kinds["denoise"] == {"render-denoise": "CHUNK[INT]", "reference": "CHUNK[INT]"}
    # 7 keyframes in chunks of 4 (4+3), 5 in-betweens (4+1): listed; the 2 check frames: chunked.
    assert kinds["inbetween"] == {"render-denoise": "STRING", "guide": "STRING", "inbetween": "STRING",
                                  "fallback": "STRING", "reference": "CHUNK[INT]"}
    assert template_of(bundle("inbetween"))["extensions"] == ["TASK_CHUNKING"]


def test_denoise_case_chunks_are_contiguous_intervals():
    steps = {s["name"]: s for s in template_of(bundle("denoise"))["steps"]}
    (param,) = steps["render-denoise"]["parameterSpace"]["taskParameterDefinitions"]
    assert param["range"] == "1-12" and param["chunks"] == {"defaultTaskCount": 4, "rangeConstraint": "CONTIGUOUS"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_steps_ask_for_a_gpu_and_cpu_steps_do_not(case):
    layers = {layer.name: layer for layer in farm_layers(CASES[case])}
    for step in template_of(bundle(case), )["steps"]:
        gpus = max(layers[name].gpus for name in step_layers(case)[step["name"]])
        amounts = {a["name"]: a["min"] for a in step.get("hostRequirements", {}).get("amounts", [])}
        if gpus:
            assert amounts["amount.worker.gpu"] == gpus
            assert amounts["amount.worker.gpu.memory"] == CompileOptions().gpu_memory_mb
        else:
            assert "amount.worker.gpu" not in amounts
    steps = {s["name"]: s for s in template_of(bundle("inbetween"))["steps"]}
    assert "hostRequirements" not in steps["reference"] and "hostRequirements" not in steps["fallback"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_task_runs_exactly_the_graph_commands(case):
    """Resolve every task of every step against the parameter values: the commands are the graph
    tasks' argument lists, in order (render then denoise for a chunk), after the worker's farmplug."""
    graph, files = CASES[case], bundle(case, farmplug_command=("/opt/farmplug/bin/farmplug",))
    params = job_params(files)
    by_layer_frames = {(t.layer, tuple(t.frames)): t for t in graph.tasks}
    job = create_job(files)
    seen = set()
    for step_doc, step in zip(template_of(files)["steps"], job.steps, strict=True):
        layers = step_layers(case)[step_doc["name"]]
        for task in openjd_model.StepParameterSpaceIterator(space=step.parameterSpace):
            frames = task["Frames"].value
            commands = [[resolve(a, params, frames) for a in c] for c in commands_of(step_doc["script"]["actions"]["onRun"])]
            assert len(commands) == len(layers)
            for layer, command in zip(layers, commands, strict=True):
                expected = by_layer_frames[(layer, tuple(parse_frames(frames)))]
                assert command[0] == "/opt/farmplug/bin/farmplug"
                assert normalised(command[1:]) == normalised(expected.argv)
                seen.add(expected.id)
    assert seen == {t.id for t in graph.tasks}


def test_render_then_denoise_in_one_task_per_chunk():
    steps = {s["name"]: s for s in template_of(bundle("denoise"))["steps"]}
    commands = commands_of(steps["render-denoise"]["script"]["actions"]["onRun"])
    assert [c[1:3] for c in commands] == [["run", "render"], ["run", "denoise"]]
    assert steps["render-denoise"]["script"]["embeddedFiles"][0]["data"] == CHAIN_SCRIPT


def test_chain_script_stops_at_the_first_failure(tmp_path):
    made = tmp_path / "made"
    script = tmp_path / "chain.sh"
    script.write_text(CHAIN_SCRIPT)
    ok = subprocess.run(["bash", str(script), "2", "touch", str(made), "1", "true"], timeout=10)
    assert ok.returncode == 0 and made.is_file()
    made.unlink()
    failed = subprocess.run(["bash", str(script), "1", "false", "2", "touch", str(made)], timeout=10)
    assert failed.returncode != 0 and not made.exists()


# --- hostile names and paths -----------------------------------------------------------------


def test_hostile_values_are_exact_parameter_values_and_never_in_the_template():
    graph, files = CASES["hostile"], bundle("hostile")
    params = job_params(files)
    task = next(t for t in graph.tasks if t.layer == "render")
    scene = task.argv[task.argv.index("--scene") + 1]
    assert params["SceneFile"] == scene and HOSTILE in scene
    # Nothing of the shot's name reaches the template but its sanitised job name.
    template = template_of(files)
    del template["name"]
    text = json.dumps(template)
    for piece in ("$HOME", "`id`", "rm -rf", "'x'", '\\"q', "next", "sh 010"):
        assert piece not in text
    assert template_of(files)["name"] == job_name(graph, CompileOptions())
    assert re.fullmatch(r"[A-Za-z0-9 ._+-]{1,64}", template_of(files)["name"])


@pytest.mark.parametrize("name, expected", [
    pytest.param("sh010", "sh010", id="plain"),
    pytest.param(HOSTILE, "sh 010 _q_ _x_ _HOME _id_ rm -rf _next", id="hostile"),
    pytest.param("{{Param.X}}", "Param.X", id="braces"),
    pytest.param("$$$", "farmplug", id="nothing-left"),
    pytest.param("x" * 200, "x" * 64, id="long"),
])
def test_job_name_is_sanitised(name, expected):
    assert job_name(CASES["denoise"], CompileOptions(job_name=name)) == expected


def test_no_credentials_in_the_bundle(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-value")
    monkeypatch.setenv("FARMPLUG_OPENJD_PASSWORD", "sentinel-password")
    for case in CASES:
        text = "\n".join(bundle(case).values())
        assert "sentinel" not in text
        assert not re.search(r"password|secret|credential|token|aws_access", text, re.IGNORECASE)


@needs_openjd_cli
def test_openjd_runtime_passes_hostile_paths_as_single_arguments(tmp_path):
    """The real OpenJD runtime runs every step of the hostile bundle with a stand-in farmplug that
    logs its arguments: each is exactly the graph task's argument list (no shell, no re-parsing)."""
    log = tmp_path / "argv.jsonl"
    recorder = tmp_path / "record.py"
    recorder.write_text(f"import json, sys\nwith open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n")
    graph = CASES["hostile"]
    submission = OpenJDFarm().compile(graph, CompileOptions(farmplug_command=(sys.executable, str(recorder))))
    write_submission(submission, tmp_path / "bundle")
    (tmp_path / "params.json").write_text(json.dumps(job_params(submission.files)))
    for step in template_of(submission.files)["steps"]:
        proc = subprocess.run(
            [OPENJD, "run", str(tmp_path / "bundle" / "template.yaml"), "--step", step["name"],
             "--job-param", f"file://{tmp_path / 'params.json'}", "--no-run-dependencies"],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = [normalised(json.loads(line)) for line in log.read_text().splitlines()]
    assert sorted(map(json.dumps, ran)) == sorted(json.dumps(normalised(t.argv)) for t in graph.tasks)


# --- chunks no single size gives, options -----------------------------------------------------


def test_uneven_chunks_fall_back_to_listed_frame_sets():
    def task(frames):
        argv = ["run", "render", "--layer", "render", "--frames", f"{frames[0]}-{frames[-1]}"]
        return Task(id=f"render-{frames[0]:04d}-{frames[-1]:04d}", layer="render", kind="render", stage="render",
                    role="plan", frames=frames, argv=argv, outputs=[], timing="/t")

    graph = JobGraph(name="uneven", run_dir="/r", plan_file="/p.yaml", shot_file="/s.yaml",
                     tasks=[task([1, 2]), task([3, 4, 5])])
    files = dict(OpenJDFarm().compile(graph, CompileOptions()).files)
    template = template_of(files)
    assert "extensions" not in template
    (param,) = template["steps"][0]["parameterSpace"]["taskParameterDefinitions"]
    assert param == {"name": "Frames", "type": "STRING", "range": ["1-2", "3-5"]}
    job = create_job(files)
    chunks = [t["Frames"].value for t in openjd_model.StepParameterSpaceIterator(space=job.steps[0].parameterSpace)]
    assert [parse_frames(c) for c in chunks] == [[1, 2], [3, 4, 5]]


@pytest.mark.parametrize("frames", [
    pytest.param([1, 2, 3], id="run"), pytest.param([1, 3, 5, 7, 8], id="step-then-last"),
    pytest.param([2, 12], id="pair"), pytest.param([5], id="one"), pytest.param([1, 4, 7, 8, 9, 20], id="mixed"),
])
def test_range_expression_is_read_back_by_openjd(frames):
    assert list(openjd_model.IntRangeExpr.from_str(range_expression(frames))) == frames


def test_priority_and_retries_go_to_deadline_settings():
    values = values_of(bundle("denoise", priority=80, max_retries=4))
    assert values["deadline:priority"] == 80 and values["deadline:maxRetriesPerTask"] == 4
    with pytest.raises(ConfigError, match="priority"):
        bundle("denoise", priority=101)


def test_asset_references_list_inputs_and_the_run_folder():
    graph = CASES["inbetween"]
    refs = yaml.safe_load(bundle("inbetween")["asset_references.yaml"])["assetReferences"]
    scene = json.dumps(refs)
    assert refs["outputs"]["directories"] == [graph.run_dir]
    assert sorted(refs["inputs"]["filenames"]) == sorted(
        [graph.plan_file, graph.shot_file, "/shows/demo/sh020/scene/sh020.blend"])
    assert "####" not in scene  # frame patterns are outputs, never inputs to upload


def test_worker_command_with_extra_arguments():
    files = bundle("denoise", farmplug_command=("/usr/bin/python3", "-m", "farmplug.cli"))
    steps = {s["name"]: s for s in template_of(files)["steps"]}
    on_run = steps["reference"]["script"]["actions"]["onRun"]
    assert on_run["command"] == "{{Param.Farmplug}}" and on_run["args"][:4] == ["-m", "farmplug.cli", "run", "render"]
    assert job_params(files)["Farmplug"] == "/usr/bin/python3"


# --- submit ------------------------------------------------------------------------------------


def fake_deadline(folder: Path, body: str) -> Path:
    exe = folder / "deadline"
    exe.write_text(f"#!{sys.executable}\nimport sys, json, os, pathlib\n{body}\n")
    exe.chmod(0o755)
    return exe


def connection(**options) -> FarmConnection:
    return FarmConnection(kind="openjd", options={"farm_id": "farm-1", "queue_id": "queue-2", **options})


def test_submit_runs_deadline_bundle_submit(tmp_path):
    record = tmp_path / "argv.json"
    exe = fake_deadline(tmp_path, (
        f"bundle = pathlib.Path(sys.argv[3])\n"
        f"json.dump({{'argv': sys.argv[1:], 'files': sorted(p.name for p in bundle.iterdir())}}, open({str(record)!r}, 'w'))\n"
        "print('Submitting to Queue: queue-2')\nprint('job-0123456789abcdef0123456789abcdef')"
    ))
    submission = OpenJDFarm().compile(CASES["denoise"], CompileOptions())
    result = OpenJDFarm().submit(submission, connection(deadline_command=str(exe)))
    assert result.job_ids == ("job-0123456789abcdef0123456789abcdef",)
    seen = json.loads(record.read_text())
    assert seen["argv"][:2] == ["bundle", "submit"]
    assert seen["argv"][3:] == ["--farm-id", "farm-1", "--queue-id", "queue-2", "--yes"]
    assert seen["files"] == ["asset_references.yaml", "parameter_values.yaml", "template.yaml"]


def test_submit_failure_is_one_line(tmp_path):
    exe = fake_deadline(tmp_path, "sys.stderr.write('Traceback...\\nError: queue not found\\n'); sys.exit(2)")
    with pytest.raises(SubmitError) as err:
        OpenJDFarm().submit(OpenJDFarm().compile(CASES["denoise"], CompileOptions()),
                            connection(deadline_command=str(exe)))
    assert "\n" not in str(err.value) and "queue not found" in str(err.value) and "exit 2" in str(err.value)


def test_submit_without_the_deadline_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SubmitError, match="deadline CLI is not installed"):
        OpenJDFarm().submit(OpenJDFarm().compile(CASES["denoise"], CompileOptions()), connection())


def test_submit_needs_farm_and_queue():
    with pytest.raises(SubmitError, match="farm_id and queue_id"):
        OpenJDFarm().submit(OpenJDFarm().compile(CASES["denoise"], CompileOptions()), FarmConnection(kind="openjd"))


# That compile does no I/O is tested for every backend, this one included, with an audit hook in
# tests/unit/test_farm_compile_no_io.py (monkeypatching a few functions missed open()).


def test_submit_failure_never_shows_a_presigned_url_s_secrets(tmp_path):
    """The deadline CLI's last line can quote the S3 URL it failed on, signed credentials and all."""
    url = ("https://bucket.s3.amazonaws.com/Data/x?X-Amz-Credential=AKIAEXAMPLE%2F20260101&X-Amz-Security-Token=IQoJb3JpZ2lu"
           "&X-Amz-Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7&X-Amz-Expires=900")
    exe = fake_deadline(tmp_path, f"sys.stderr.write('Error: upload failed: 403 Forbidden for {url}\\n'); sys.exit(1)")
    with pytest.raises(SubmitError) as err:
        OpenJDFarm().submit(OpenJDFarm().compile(CASES["denoise"], CompileOptions()),
                            connection(deadline_command=str(exe)))
    message = str(err.value)
    assert "403 Forbidden" in message and "X-Amz-Credential=***" in message and "X-Amz-Expires=900" in message
    assert "AKIAEXAMPLE" not in message and "IQoJb3JpZ2lu" not in message and "5d672d79" not in message


def test_an_absolute_delivery_path_is_declared_as_an_output_folder():
    """A shot delivering into a show's own folder (outside the run folder): job attachments must
    bring those frames back too, so their folder is an output beside the run folder."""
    from farmplug.graph import compile_plan
    from farmplug.models import Plan

    graph = CASES["denoise"]
    shot = graph.shot.model_copy(update={"output": "/shows/demo/deliver/sh010/sh010.####.exr"})
    plan = Plan.model_validate(graph.plan.model_dump())
    moved = compile_plan(plan, shot, plan_file=Path(graph.plan_file), shot_file=Path(graph.shot_file),
                         run_dir=Path(graph.run_dir))
    files = OpenJDFarm().compile(moved, CompileOptions()).files
    refs = yaml.safe_load(files["asset_references.yaml"])["assetReferences"]
    assert refs["outputs"]["directories"] == [graph.run_dir, "/shows/demo/deliver/sh010"]
