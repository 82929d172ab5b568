"""The Nuke menu: Read nodes to command lines (pure Python), and the menu against a STAND-IN of Nuke's API.

Nuke cannot run here. ``farmplug_nuke.commands`` is plain Python and tested directly; the part
that talks to Nuke (``farmplug_nuke.ui``, ``menu.py``) is tested against ``tests/nuke_stand_in.py``,
a stand-in of the documented ``nuke`` calls it uses, while the farmplug it runs is real: real
frames are denoised in a folder with a hostile name, and a real OpenJD bundle is written.
"""

from __future__ import annotations

import logging
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nuke_stand_in import StandIn

FARMPLUG = Path(sys.executable).with_name("farmplug")
MENU_FOLDER = Path(__file__).resolve().parents[2] / "integrations" / "nuke_menu"


def _forget_menu_modules() -> None:
    for name in [m for m in sys.modules if m == "farmplug_nuke" or m.startswith("farmplug_nuke.") or m == "nuke"]:
        del sys.modules[name]


@pytest.fixture
def menu_path(monkeypatch):
    """The folder ``farmplug nuke path`` names, on sys.path as NUKE_PATH puts it."""
    done = subprocess.run([str(FARMPLUG), "nuke", "path"], capture_output=True, text=True, check=True)
    folder = Path(done.stdout.strip())
    assert folder.resolve() == MENU_FOLDER.resolve()
    monkeypatch.syspath_prepend(str(folder))
    _forget_menu_modules()
    yield folder
    _forget_menu_modules()


@pytest.fixture
def commands(menu_path):
    from farmplug_nuke import commands

    return commands


@pytest.fixture
def nuke(menu_path, monkeypatch):
    """A fresh stand-in of ``nuke``, and this venv's farmplug as the one the menu runs."""
    monkeypatch.setenv("FARMPLUG_EXECUTABLE", str(FARMPLUG))
    stand_in = StandIn()
    stand_in.install()
    return stand_in


# -- the pure half -------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("/shots/a/beauty.%04d.exr", "/shots/a/beauty.%04d.exr", id="printf"),
    pytest.param("/shots/a/beauty.####.exr", "/shots/a/beauty.####.exr", id="hashes"),
    pytest.param("/shots/a/beauty.%d.exr", "/shots/a/beauty.%d.exr", id="printf-unpadded"),
    pytest.param("/shots/a/beauty.#.exr", "/shots/a/beauty.#.exr", id="one-hash"),
    pytest.param("/shots/a/beauty.%04d.exr 1-24", "/shots/a/beauty.%04d.exr", id="file-browser-range"),
    pytest.param("/shots/a/beauty.####.exr -5--1", "/shots/a/beauty.####.exr", id="negative-range"),
    pytest.param("  /shots/a b/beauty.%04d.exr  ", "/shots/a b/beauty.%04d.exr", id="spaces"),
])
def test_frame_patterns_of_a_read_node(commands, value, expected):
    assert commands.clean_pattern(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("", "file knob is empty", id="empty"),
    pytest.param("/shots/a/beauty.0001.exr", "one file, not a frame sequence", id="one-file"),
    pytest.param("/shots/a/beauty.exr 1-24", "one file, not a frame sequence", id="range-but-no-token"),
    pytest.param("[value root.project]/beauty.%04d.exr", "Tcl expression", id="tcl"),
    pytest.param("/shots/a/beauty.%04d.exr\nrm -rf /", "control characters", id="newline"),
])
def test_read_nodes_that_make_no_command_are_refused_in_one_line(commands, value, message):
    with pytest.raises(commands.MenuError, match=message) as caught:
        commands.clean_pattern(value, "Read3")
    assert str(caught.value).startswith("Read3: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize(("first", "last", "frames"), [
    pytest.param(1.0, 24.0, "1-24", id="floats-from-knobs"),
    pytest.param(1001, 1001, "1001-1001", id="one-frame"),
    pytest.param(-3, 2, "-3-2", id="negative-first"),
])
def test_frame_ranges(commands, first, last, frames):
    assert commands.read_facts("Read1", "/a/b.%04d.exr", first, last).frames == frames


def test_a_reversed_or_broken_range_is_refused(commands):
    with pytest.raises(commands.MenuError, match="last frame 1 is before first frame 5"):
        commands.read_facts("Read1", "/a/b.%04d.exr", 5, 1)
    with pytest.raises(commands.MenuError, match="not whole numbers"):
        commands.read_facts("Read1", "/a/b.%04d.exr", "one", 2)


@pytest.mark.parametrize(("pattern", "kind", "expected"), [
    pytest.param("/s/beauty.%04d.exr", "denoise", "/s/beauty_denoise.%04d.exr", id="printf"),
    pytest.param("/s/beauty.####.exr", "denoise", "/s/beauty_denoise.####.exr", id="hashes"),
    pytest.param("/s/plate_####.dpx", "denoise", "/s/plate_denoise_####.exr", id="dpx-becomes-exr"),
    pytest.param("/s/%04d.exr", "inbetween", "/s/inbetween.%04d.exr", id="token-only"),
    pytest.param("/s v1/it's.%04d.EXR", "denoise", "/s v1/it's_denoise.%04d.EXR", id="hostile-name"),
])
def test_where_the_results_go(commands, pattern, kind, expected):
    assert commands.output_pattern(pattern, kind) == expected


def test_command_lines_are_argument_lists_for_both_pattern_styles(commands):
    printf = commands.read_facts("Read1", "/shots/a/beauty.%04d.exr", 1, 24)
    hashes = commands.read_facts("Read2", "/shots/a/beauty.####.exr", 1001, 1010)
    assert commands.run_command("denoise", printf) == [
        "run", "denoise", "--input", "/shots/a/beauty.%04d.exr", "--output", "/shots/a/beauty_denoise.%04d.exr",
        "--frames", "1-24"]
    assert commands.run_command("inbetween", hashes, step=2) == [
        "run", "inbetween", "--input", "/shots/a/beauty.####.exr", "--output", "/shots/a/beauty_inbetween.####.exr",
        "--frames", "1001-1010", "--step", "2"]
    with pytest.raises(commands.MenuError, match="step must be 2 or more"):
        commands.run_command("inbetween", hashes, step=1)
    assert commands.submit_command("denoise", printf, "openjd", dry_run=True, out="/tmp/b") == [
        "nuke", "submit", "--stage", "denoise", "--input", "/shots/a/beauty.%04d.exr",
        "--output", "/shots/a/beauty_denoise.%04d.exr", "--frames", "1-24", "--chunk-size", "8", "--farm", "openjd",
        "--json", "--dry-run", "--out", "/tmp/b"]
    with pytest.raises(commands.MenuError, match="unknown farm 'renderman'; farms: local, openjd"):
        commands.submit_command("denoise", printf, "renderman")


def test_a_hostile_path_stays_one_argument(commands):
    hostile = "/shots/$(touch pwned); rm -rf ~ `id` \"q\" 'a'/beauty.%04d.exr"
    argv = commands.run_command("denoise", commands.read_facts("Read1", hostile, 1, 2))
    assert argv[3] == hostile and len(argv) == 8
    assert shlex.split(commands.shown(argv)) == argv  # what the log shows is exactly what runs


def test_the_farmplug_executable_is_found_from_the_environment_then_path(commands, tmp_path):
    with pytest.raises(commands.MenuError, match="farmplug executable not found: .*nowhere.*FARMPLUG_EXECUTABLE"):
        commands.find_executable({"FARMPLUG_EXECUTABLE": str(tmp_path / "nowhere")})
    with pytest.raises(commands.MenuError, match="set FARMPLUG_EXECUTABLE or put farmplug on PATH"):
        commands.find_executable({"PATH": str(tmp_path)})
    fake = tmp_path / "farmplug"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert commands.find_executable({"PATH": str(tmp_path)}) == [str(fake)]
    assert commands.find_executable({"FARMPLUG_EXECUTABLE": f"{FARMPLUG} -v"}) == [str(FARMPLUG), "-v"]


def test_progress_and_errors_are_read_from_farmplugs_output(commands):
    bar = "denoise denoise-0001-0004:  25%|##5       | 1/4 [00:01<00:03]\rdenoise denoise-0001-0004:  50%|#####     | 2/4"
    assert commands.parse_progress(bar, "denoise") == (2, 4)
    assert commands.parse_progress("render render-0001-0004: 50%| | 2/4", "denoise") is None
    assert commands.error_line("INFO x\nfarmplug: error: /a.exr: file not found\n", 1) == "/a.exr: file not found"
    assert commands.error_line("", 3) == "farmplug exited with status 3"
    assert commands.last_json('[1/1] x: y\n{\n  "submitted": false\n}\n') == {"submitted": False}


def test_the_stage_list_comes_from_the_descriptors():
    import json

    from farmplug.stages.registry import descriptors

    done = subprocess.run([str(FARMPLUG), "nuke", "stages", "--json"], capture_output=True, text=True, check=True)
    listed = json.loads(done.stdout)["stages"]
    assert [(s["kind"], s["mode"]) for s in listed] == [(d.kind, d.mode) for d in descriptors()]


# -- menu.py never stops Nuke from starting ---------------------------------------------------------

def test_menu_py_adds_the_farmplug_menu(nuke, menu_path):
    runpy.run_path(str(menu_path / "menu.py"))
    menu = nuke.menus["Nuke"].items["farmplug"]
    assert list(menu.items) == ["Denoise", "Upscale", "Interpolate", "Submit"]
    assert all(callable(c) for c in menu.items.values())


@pytest.mark.parametrize("breakage", ["no-package", "menu-raises", "no-nuke"])
def test_a_broken_menu_is_logged_and_never_raised(menu_path, monkeypatch, caplog, breakage):
    stand_in = StandIn()
    if breakage == "no-package":
        stand_in.install()
        monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p).resolve() != menu_path.resolve()])
    elif breakage == "menu-raises":
        stand_in.install()

        def broken(name):
            raise RuntimeError("menu bar is gone")

        stand_in.module.menu = broken
    else:
        monkeypatch.setitem(sys.modules, "nuke", None)  # import nuke fails
    with caplog.at_level(logging.ERROR, logger="farmplug_nuke"):
        runpy.run_path(str(menu_path / "menu.py"))  # must not raise
    assert any("the Nuke menu was not loaded" in r.getMessage() and r.exc_info for r in caplog.records)


# -- the menu against the stand-in, running the real farmplug -------------------------------------

@pytest.fixture
def hostile_frames(tiny_renders, tmp_path) -> Path:
    """Two real rendered frames (colour, albedo, normal) in a folder no shell string would survive."""
    folder = tmp_path / "take 2; $(echo no) 'q' \"x\""
    folder.mkdir()
    source = Path(tiny_renders["multipart"])
    for frame in (1, 2):
        for name in ("plate", "alt"):
            shutil.copy(source.parent / source.name.replace("####", f"{frame:04d}"), folder / f"{name}.{frame:04d}.exr")
    return folder


def _join(threads, timeout: float = 300) -> None:
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), f"{thread.name} did not finish"


def _menu(nuke):
    from farmplug_nuke import add_menu

    return add_menu().items


def test_denoise_runs_farmplug_on_each_selected_read_and_creates_a_read_for_the_result(nuke, hostile_frames):
    from farmplug.imageio import read_frame

    nuke.read(str(hostile_frames / "plate.%04d.exr"), 1, 2)
    nuke.read(str(hostile_frames / "alt.####.exr"), 2, 2)
    nuke.read(str(hostile_frames / "other.%04d.exr"), 1, 2, selected=False)
    threads = _menu(nuke)["Denoise"]()
    assert len(threads) == 2
    _join(threads)
    created = nuke.run_main_thread()
    assert sorted((n["file"].value(), n["first"].value(), n["last"].value()) for n in created) == [
        (str(hostile_frames / "alt_denoise.####.exr"), 2, 2), (str(hostile_frames / "plate_denoise.%04d.exr"), 1, 2)]
    assert {n.xpos() for n in created} == {nuke.dag[0].xpos() + 120}
    for name, frame in (("plate", 1), ("plate", 2), ("alt", 2)):
        denoised = read_frame(hostile_frames / f"{name}_denoise.{frame:04d}.exr")
        assert denoised.feature("color").shape[:2] == (36, 64)
        assert denoised.header.get("farmplug:stage") == "denoise"  # made by the denoise stage
    assert not (hostile_frames / "alt_denoise.0001.exr").exists()  # only the Read's range
    assert nuke.messages == []
    assert all(t.progress and t.progress[-1] == 100 for t in nuke.tasks)
    assert not (hostile_frames.parent / "no").exists()


def _installed() -> list[dict]:
    import json

    done = subprocess.run([str(FARMPLUG), "nuke", "stages", "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["stages"]


def test_a_stage_that_is_not_installed_is_said_so(nuke, hostile_frames):
    from farmplug_nuke import ui

    nuke.read(str(hostile_frames / "plate.%04d.exr"), 1, 2)
    kinds = sorted({s["kind"] for s in _installed()})
    assert ui.run_on_selected("retime") == []
    assert nuke.messages == [f"farmplug: no retime stage is installed (installed: {', '.join(kinds)})"]


def test_upscale_runs_the_upscale_stage_only_where_farmplug_has_one(nuke, hostile_frames, monkeypatch):
    from farmplug_nuke import ui

    started = []
    monkeypatch.setattr(ui, "start_worker", lambda title, argv, *rest, **kw: started.append(argv))
    nuke.read(str(hostile_frames / "plate.####.exr"), 1, 2)
    _menu(nuke)["Upscale"]()
    if "upscale" in {s["kind"] for s in _installed()}:
        assert nuke.messages == [] and started[0][1:] == [
            "run", "upscale", "--input", str(hostile_frames / "plate.####.exr"),
            "--output", str(hostile_frames / "plate_upscale.####.exr"), "--frames", "1-2"]
    else:
        assert started == [] and nuke.messages[0].startswith("farmplug: no upscale stage is installed")


def test_nothing_selected_says_so(nuke):
    assert _menu(nuke)["Denoise"]() == []
    assert nuke.messages == ["farmplug: select one or more Read nodes first"]


def test_interpolate_asks_for_the_keyframe_step(nuke, hostile_frames):
    nuke.read(str(hostile_frames / "plate.%04d.exr"), 1, 3)
    nuke.answers = [None]  # the artist cancels the dialog
    assert _menu(nuke)["Interpolate"]() == []
    assert nuke.messages == [] and nuke.asked[0][0] == "getInput"
    nuke.answers = ["two"]
    assert _menu(nuke)["Interpolate"]() == []
    assert nuke.messages == ["farmplug: keyframe step 'two' is not a whole number"]


def test_a_farmplug_failure_is_one_message(nuke, tmp_path):
    nuke.read(str(tmp_path / "missing.%04d.exr"), 1, 2)
    _join(_menu(nuke)["Denoise"]())
    assert nuke.run_main_thread() == [None]
    assert len(nuke.messages) == 1 and "failed: " in nuke.messages[0] and "missing.0001.exr" in nuke.messages[0]
    assert "\n" not in nuke.messages[0]


def test_cancel_in_the_progress_task_stops_farmplug(nuke, hostile_frames):
    nuke.read(str(hostile_frames / "plate.%04d.exr"), 1, 2)
    nuke.cancel_tasks = True
    _join(_menu(nuke)["Denoise"]())
    nuke.run_main_thread()
    assert nuke.messages == [f"farmplug: farmplug denoise {nuke.dag[0].name()} cancelled; finished frames are kept"]
    assert len(nuke.dag) == 1  # no Read for a result that was not made


def test_submit_writes_an_openjd_bundle_or_runs_on_the_local_farm(nuke, hostile_frames):
    nuke.read(str(hostile_frames / "plate.%04d.exr"), 1, 2)
    first = {}
    for s in _installed():
        first.setdefault(s["kind"], s)  # the menu offers each kind's first backend
    per_frame = [kind for kind, s in first.items() if s["mode"] == "frame"]
    # With several per-frame stages the artist picks one first (denoise here).
    stage = [per_frame.index("denoise")] if len(per_frame) > 1 else []
    nuke.answers = [*stage, None]
    assert _menu(nuke)["Submit"]() == []  # cancelled: nothing runs
    if stage:
        assert nuke.asked[0][:4] == ("choice", "farmplug", "Which stage?", per_frame)
    options = nuke.asked[-1][3]
    assert options[:6] == ["local", "openjd", "deadline", "opencue", "flamenco", "tractor"]
    nuke.answers = [*stage, options.index("openjd (write files only)")]
    _join(_menu(nuke)["Submit"]())
    nuke.run_main_thread()
    bundle = hostile_frames / "farmplug-denoise-run" / "openjd-submission"
    assert nuke.messages == [f"farmplug: wrote the openjd files to {bundle} (nothing submitted)"]
    assert (bundle / "template.yaml").is_file()
    openjd = shutil.which("openjd", path=str(FARMPLUG.parent))
    if openjd is not None:
        done = subprocess.run([openjd, "check", str(bundle / "template.yaml")], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    nuke.messages.clear()
    nuke.answers = [*stage, options.index("local")]
    _join(_menu(nuke)["Submit"]())
    created = nuke.run_main_thread()
    assert nuke.messages == [] and created[0]["file"].value() == str(hostile_frames / "plate_denoise.%04d.exr")
    assert sorted(p.name for p in hostile_frames.glob("plate_denoise.*.exr")) == ["plate_denoise.0001.exr",
                                                                                  "plate_denoise.0002.exr"]
