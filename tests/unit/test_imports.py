"""Importing farmplug (and its CLI) stays cheap: no torch, bpy, OIDN or FLIP at import time."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "bpy", "pyoidn", "flip_evaluator", "skimage")


@pytest.mark.parametrize(
    "module",
    ["farmplug", "farmplug.cli", "farmplug.models", "farmplug.graph", "farmplug.integrations.local", "farmplug.stages"],
)
def test_import_does_not_pull_heavy_packages(module):
    pytest.importorskip("torch", reason="torch not installed: nothing to check")
    code = f"import sys, json, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_stage_registry_lists_builtins_and_rejects_unknown():
    from farmplug.denoise.config import DenoiseConfig
    from farmplug.errors import FarmplugError
    from farmplug.stages import available_stages, create_stage

    assert {"denoise:oidn", "inbetween:splat"} <= set(available_stages())
    bad = DenoiseConfig.model_construct(kind="denoise", backend="optix")
    with pytest.raises(FarmplugError, match=r"unknown stage denoise:optix; available: denoise:oidn, denoise:temporal, upscale:guided, inbetween:splat"):
        create_stage(bad)


@pytest.mark.parametrize("argv", [["-v", "report", "nowhere"], ["report", "nowhere", "-v"]], ids=["before", "after"])
def test_verbose_flag_shows_the_traceback_wherever_it_is_placed(argv, tmp_path):
    from farmplug.cli import main
    from farmplug.errors import FarmplugError

    with pytest.raises(FarmplugError, match="graph.json: file not found"):
        main([a if a != "nowhere" else str(tmp_path / "nowhere") for a in argv])


def test_without_verbose_an_error_is_one_line(tmp_path, capsys):
    from farmplug.cli import main

    assert main(["report", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "graph.json: file not found" in err
