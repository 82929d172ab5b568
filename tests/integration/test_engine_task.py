"""The job graph's engine task (``farmplug run engine``): the TensorRT engine of a GPU stage, built
once before the stage's tasks, on a real (tiny) model exported to ONNX here.

No development machine has TensorRT, so the path that matters here is the node without it: the
task records why it built nothing, warns once and succeeds, so the farm job goes on (the GPU tasks
then run on CUDA). The build itself runs only where ONNX Runtime has its TensorRT provider.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from farmplug.cli import main
from farmplug.nn.prebuild import EngineRecord
from farmplug.schema import load_model
from farmplug.timing import read_timing

torch = pytest.importorskip("torch", reason="torch not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install farmplug[models])")

HAS_TRT = "TensorrtExecutionProvider" in ort.get_available_providers()
without_trt = pytest.mark.skipif(HAS_TRT, reason="TensorRT is here: the engine is built, nothing to refuse")
needs_trt = pytest.mark.skipif(not HAS_TRT, reason="ONNX Runtime has no TensorRT execution provider here "
                                                   "(onnxruntime-gpu and TensorRT are not installable on the "
                                                   "development machines)")
BIN = Path(sys.executable).parent
OPENJD = shutil.which("openjd", path=str(BIN)) or shutil.which("openjd")
WORKER_FARMPLUG = shutil.which("farmplug", path=str(BIN))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("FARMPLUG_MODEL_CACHE", str(folder))
    return folder


def engine_argv(model: Path, record: Path, shape: str = "128x128") -> list[str]:
    return ["run", "engine", "--layer", "engine-upscale", "--frames", "1-10", "--model", str(model),
            "--shape", shape, "--output", str(record)]


def cuda_upscale_graph(folder: Path, model: Path):
    """A real plan (denoise, then the upscaler on CUDA) compiled into its run folder."""
    from farmplug.graph import compile_plan, save_graph
    from farmplug.models import load_plan

    shot = {"name": "sh060", "scene": "scene.blend", "frames": {"start": 1, "end": 10},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/sh060.####.exr"}
    plan = {"shot": "shot.yaml", "samples_factor": 0.25, "resolution_scale": 0.5, "chunk_size": 4,
            "check_frames": [1], "stages": [{"kind": "denoise"},
                                            {"kind": "upscale", "device": "cuda", "model": str(model)}]}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan))
    loaded, shot_model, shot_file = load_plan(folder / "plan.yaml")
    graph = compile_plan(loaded, shot_model, plan_file=folder / "plan.yaml", shot_file=shot_file,
                         run_dir=folder / "run")
    save_graph(graph, folder / "run")
    return graph


@without_trt
def test_without_tensorrt_the_engine_task_records_why_warns_once_and_succeeds(tiny_model, cache, tmp_path, caplog):
    from farmplug.nn.weights import load_weights

    record_file = tmp_path / "run" / "work" / "engine" / "engine-upscale-0001-0010.json"
    argv = engine_argv(tiny_model, record_file)
    caplog.set_level(logging.WARNING)
    assert main(argv) == 0
    record = load_model(EngineRecord, record_file)
    assert record.built is False and record.engine is None and record.backend is None
    assert "no TensorRT execution provider" in record.reason
    assert record.shape == "128x128" and record.model == str(tiny_model)
    assert record.model_sha256 == load_weights(tiny_model).sha256
    # The ONNX graph is exported into the cache all the same (the GPU tasks' CUDA session loads it).
    onnx = Path(record.onnx)
    assert onnx.parent == cache and onnx.is_file() and onnx.stat().st_size > 0
    # One warning line, naming the model and the reason.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("farmplug")]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert str(tiny_model) in warnings[0].getMessage() and "no TensorRT execution provider" in warnings[0].getMessage()
    # Its timing record: where the graph expects it, the exact command, no frames (it makes none).
    timing = read_timing(record_file.parent / "engine-upscale-0001-0010.timing.json")
    assert (timing.task, timing.stage, timing.role, timing.backend) == ("engine-upscale-0001-0010", "engine", "plan",
                                                                        "none")
    assert timing.frames == [] and timing.cpu_s == timing.overhead_cpu_s > 0
    assert timing.command == argv and timing.settings["built"] is False
    assert not list(record_file.parent.glob(".*tmp*")), "nothing half-written is left beside the record"


@without_trt
def test_build_engine_still_exits_1_without_tensorrt_from_the_same_build_code(tiny_model, cache, tmp_path, capsys):
    """``farmplug build-engine`` runs the engine task's build: by hand, no engine is an error."""
    assert main(["build-engine", str(tiny_model), "--shape", "64x64"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no TensorRT execution provider" in err and str(cache) in err
    assert main(["build-engine", str(tiny_model), "--onnx-only", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["built"] is False and Path(printed["onnx"]).parent == cache


@pytest.mark.parametrize("shape", [pytest.param("127x128", id="odd"), pytest.param("12", id="no-x")])
def test_a_shape_the_network_cannot_take(tiny_model, cache, tmp_path, shape, capsys):
    record_file = tmp_path / "engine.json"
    if "x" not in shape:
        with pytest.raises(SystemExit):
            main(engine_argv(tiny_model, record_file, shape))
        assert "not a tile shape WIDTHxHEIGHT" in capsys.readouterr().err
        return
    assert main(engine_argv(tiny_model, record_file, shape)) == 0
    record = load_model(EngineRecord, record_file)
    assert record.built is False and "not a multiple of 2 pixels" in record.reason


def test_a_missing_model_fails_the_task_naming_the_file(cache, tmp_path, capsys):
    missing = tmp_path / "nowhere.safetensors"
    assert main(engine_argv(missing, tmp_path / "engine.json")) == 1
    err = capsys.readouterr().err
    assert err.startswith("farmplug: error:") and err.count("\n") == 1 and str(missing) in err
    assert not (tmp_path / "engine.json").exists()


@without_trt
def test_the_compiled_engine_task_runs_on_the_local_farm_engine_and_is_then_done(tiny_model, cache, tmp_path):
    """The graph's own engine task, run by the local farm's engine (key handed over) and as a farm
    worker runs it (key from graph.json): done afterwards, and not done once its output is damaged."""
    from farmplug.execute import remove_stale_temp_files, run_graph, task_is_done
    from farmplug.graph import JobGraph

    graph = cuda_upscale_graph(tmp_path, tiny_model)
    (engine,) = [t for t in graph.tasks if t.kind == "setup"]
    assert engine.frames == list(range(1, 11)) and engine.gpus == 1
    assert all(engine.id in t.depends_on for t in graph.tasks if t.layer == "upscale")
    # The other tasks need Blender and CUDA; the engine task alone is a graph the local farm runs.
    alone = JobGraph.model_validate({**graph.model_dump(), "tasks": [engine.model_dump()]})
    assert not task_is_done(engine, graph.run_dir)
    summary = run_graph(alone)
    assert summary.ran == [engine.id]
    assert task_is_done(engine, graph.run_dir)
    assert load_model(EngineRecord, engine.outputs[0]).built is False
    assert run_graph(alone).skipped == [engine.id]
    # A farm worker runs the bare command: its key comes from the run's graph.json, so it is trusted too.
    Path(engine.timing).unlink()
    assert main(engine.argv) == 0
    assert read_timing(engine.timing).key and task_is_done(engine, graph.run_dir)
    # A killed rerun: a half-written record beside it is cleaned up, a damaged record is not trusted.
    record = Path(engine.outputs[0])
    stale = record.with_name(f".{record.name}.abc.tmp")
    stale.write_text('{"half')
    assert remove_stale_temp_files(engine) == [stale]
    record.write_text('{"schema_version": 1, "model"')
    assert not task_is_done(engine, graph.run_dir)
    assert run_graph(alone).ran == [engine.id] and task_is_done(engine, graph.run_dir)


@without_trt
@pytest.mark.slow
@pytest.mark.skipif(OPENJD is None or WORKER_FARMPLUG is None,
                    reason="the openjd CLI or this environment's farmplug executable is missing")
def test_openjd_runs_the_engine_step_of_a_cuda_upscale_bundle(tiny_model, cache, tmp_path):
    """The real OpenJD runtime runs the bundle's engine step with this environment's farmplug: the
    record and the timing record land where the graph expects them, with the graph's key."""
    from farmplug.execute import task_is_done
    from farmplug.integrations.base import CompileOptions, write_submission
    from farmplug.integrations.openjd import OpenJDFarm

    graph = cuda_upscale_graph(tmp_path, tiny_model)
    (engine,) = [t for t in graph.tasks if t.kind == "setup"]
    submission = OpenJDFarm().compile(graph, CompileOptions(farmplug_command=(WORKER_FARMPLUG,)))
    write_submission(submission, tmp_path / "bundle")
    values = yaml.safe_load(submission.files["parameter_values.yaml"])["parameterValues"]
    params = {v["name"]: v["value"] for v in values if not v["name"].startswith("deadline:")}
    (tmp_path / "params.json").write_text(json.dumps(params))
    proc = subprocess.run(
        [OPENJD, "run", str(tmp_path / "bundle" / "template.yaml"), "--step", "engine-upscale",
         "--job-param", f"file://{tmp_path / 'params.json'}", "--no-run-dependencies"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert load_model(EngineRecord, engine.outputs[0]).built is False
    assert task_is_done(engine, graph.run_dir)


@needs_trt
def test_with_tensorrt_the_engine_task_builds_and_caches_the_engine(tiny_model, cache, tmp_path):
    record_file = tmp_path / "engine.json"
    assert main(engine_argv(tiny_model, record_file)) == 0
    record = load_model(EngineRecord, record_file)
    assert record.built is True and record.backend == "onnxruntime-tensorrt" and record.reason is None
    folder = Path(record.engine)
    assert folder.parent == cache / "trt" and any(folder.iterdir())
