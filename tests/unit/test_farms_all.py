"""Every farm backend, through the real command line: dry runs, hostile names, unreachable farms."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import yaml

from farmplug.cli import main
from farmplug.errors import FarmplugError
from farmplug.integrations.registry import BUILTIN_FARMS, available_farms, create_farm
from tests.farm_cases import HOSTILE

FARMS = [name for name in BUILTIN_FARMS if name != "local"]
SECRET = "s3cr3t-Pa55word"


@pytest.fixture
def hostile_plan(tmp_path: Path) -> Path:
    """A plan whose shot name and folder hold spaces, quotes, $, backticks, a semicolon and a newline."""
    folder = tmp_path / HOSTILE.replace("/", "_")
    folder.mkdir()
    shot = {"name": HOSTILE, "scene": "scene file.blend", "frames": {"start": 1, "end": 8},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/out put.####.exr"}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    plan = {"shot": "shot.yaml", "samples_factor": 0.25, "frame_step": 2, "check_frames": [2],
            "stages": [{"kind": "denoise"}, {"kind": "inbetween"}], "chunk_size": 2}
    (folder / "plan.yaml").write_text(yaml.safe_dump(plan))
    return folder / "plan.yaml"


def test_registry_lists_every_farm():
    assert available_farms() == sorted(BUILTIN_FARMS)
    for name in BUILTIN_FARMS:
        assert create_farm(name).name == name


@pytest.mark.parametrize("farm", FARMS)
def test_dry_run_of_hostile_names_for_every_farm(farm, hostile_plan, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(f"FARMPLUG_{farm.upper()}_PASSWORD", SECRET)
    monkeypatch.setenv(f"FARMPLUG_{farm.upper()}_URL", f"http://user:{SECRET}@farm.example:1234")
    out = tmp_path / "native"
    run_dir = hostile_plan.parent / "run"
    assert main(["submit", str(hostile_plan), "--farm", farm, "--dry-run", "--out", str(out), "--run-dir", str(run_dir)]) == 0
    assert "nothing submitted" in capsys.readouterr().out
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 1
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    assert SECRET not in text and "farm.example" not in text
    # The graph the farm runs is also in the run folder, for `farmplug report` afterwards.
    graph = json.loads((run_dir / "graph.json").read_text())
    assert graph["name"] == HOSTILE
    # No line-based file may hold the name's newline raw, where it would start a new key or command:
    # JSON, YAML, Tcl and Key=Value files carry it escaped. (OpenCue's XML holds a shell-quoted
    # command whose quoted newline is data; test_farm_opencue runs it through /bin/sh to prove it.)
    raw = HOSTILE.split("\n")[1]
    for path in files:
        if path.suffix == ".xml":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not line.startswith(raw), f"{path.name}: the newline in the shot name started a new line"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("farm", ["deadline", "flamenco", "tractor"])
def test_unreachable_farm_is_one_line_naming_it(farm, hostile_plan, monkeypatch, capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv(f"FARMPLUG_{farm.upper()}_URL", url)
    monkeypatch.setenv(f"FARMPLUG_{farm.upper()}_PASSWORD", SECRET)
    started = time.perf_counter()
    assert main(["submit", str(hostile_plan), "--farm", farm, "--run-dir", str(hostile_plan.parent / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("farmplug: error:")
    assert "127.0.0.1" in err and SECRET not in err
    assert time.perf_counter() - started < 30


def test_farm_without_an_address_says_how_to_configure_it(hostile_plan, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("FARMPLUG_DEADLINE_URL", raising=False)
    monkeypatch.setenv("FARMPLUG_FARMS", str(tmp_path / "none.yaml"))
    assert main(["submit", str(hostile_plan), "--farm", "deadline"]) == 1
    assert "FARMPLUG_DEADLINE_URL" in capsys.readouterr().err


def test_farm_config_file_is_validated(hostile_plan, tmp_path, capsys):
    config = tmp_path / "farms.yaml"
    config.write_text("farms:\n  deadline: {kind: deadline, url: 'http://x', password: plain}\n")
    assert main(["submit", str(hostile_plan), "--farm", "deadline", "--farm-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "farms.yaml" in err and "password: unknown field" in err


def test_farm_plugins_through_entry_points_shadowing_and_broken_ones(tmp_path, monkeypatch, caplog):
    """One registry for farms and stages: a third-party farm loads, one shadowing a built-in and a broken
    one are logged with both names and skipped, and FARMPLUG_NO_PLUGINS=1 leaves the built-ins."""
    import logging

    from farmplug.integrations.registry import FARMS

    site = tmp_path / "site"
    dist = site / "farm_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: farm-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[farmplug.farms]\n"
        "mine = farmplug.integrations.local:LocalFarm\n"
        "deadline = farmplug.integrations.local:LocalFarm\n"
        "broken = no_such_module_here:Farm\n"
    )
    monkeypatch.syspath_prepend(str(site))
    FARMS.forget()
    caplog.set_level(logging.WARNING)
    try:
        assert available_farms() == sorted([*BUILTIN_FARMS, "mine"])
        assert create_farm("mine").name == "local"
        assert type(create_farm("deadline")).__name__ == "DeadlineFarm"
        assert "farm plugin 'deadline' (farmplug.integrations.local:LocalFarm) shadows the built-in deadline" in caplog.text
        assert "farm plugin broken cannot be loaded from no_such_module_here:Farm" in caplog.text
        with pytest.raises(FarmplugError, match="farm plugin broken cannot be loaded"):
            create_farm("broken")
        monkeypatch.setenv("FARMPLUG_NO_PLUGINS", "1")
        assert available_farms() == sorted(BUILTIN_FARMS)
        with pytest.raises(FarmplugError, match=r"unknown farm 'mine'; available: deadline, flamenco, local"):
            create_farm("mine")
    finally:
        monkeypatch.delenv("FARMPLUG_NO_PLUGINS", raising=False)
        FARMS.forget()
