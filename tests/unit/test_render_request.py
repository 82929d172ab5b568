"""Render requests, output frame patterns and the Blender child command (no rendering)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from farmplug.errors import ConfigError, FarmplugError, RenderError
from farmplug.render import (
    BlenderRenderer,
    Renderer,
    RenderRequest,
    _blender_child,
    frame_path,
    frame_paths,
)


@pytest.mark.parametrize(
    ("pattern", "frame", "expected"),
    [
        pytest.param("out/beauty.####.exr", 12, "out/beauty.0012.exr", id="hash4"),
        pytest.param("out/beauty.#.exr", 12, "out/beauty.12.exr", id="hash1"),
        pytest.param("out/beauty.##.exr", 1234, "out/beauty.1234.exr", id="hash-run-shorter-than-number"),
        pytest.param("out/beauty.%04d.exr", 7, "out/beauty.0007.exr", id="printf-04d"),
        pytest.param("out/beauty.%d.exr", 7, "out/beauty.7.exr", id="printf-d"),
        pytest.param("out/beauty.%4d.exr", 7, "out/beauty.   7.exr", id="printf-4d-space-padded"),
        pytest.param("out/####/beauty.####.exr", 3, "out/0003/beauty.0003.exr", id="every-token-expanded"),
        pytest.param("out/beauty.####.exr", -5, "out/beauty.-005.exr", id="negative-frame"),
        pytest.param("out/still.exr", 1, "out/still.exr", id="no-token-single-frame"),
    ],
)
def test_frame_path_expands_tokens(pattern: str, frame: int, expected: str) -> None:
    assert frame_path(pattern, frame) == Path(expected)


def test_frame_paths_rejects_pattern_without_token_for_many_frames() -> None:
    with pytest.raises(FarmplugError, match="no frame token"):
        frame_paths("out/still.exr", [1, 2])


def test_frame_paths_keeps_order() -> None:
    assert frame_paths("f.####.exr", [3, 1]) == (Path("f.0003.exr"), Path("f.0001.exr"))


def test_frame_path_rejects_empty_pattern() -> None:
    with pytest.raises(FarmplugError, match="empty"):
        frame_path("", 1)


def _request(**changes: object) -> RenderRequest:
    values: dict[str, object] = {"scene": Path("shot.blend"), "frames": (1, 2), "output_pattern": "out/b.####.exr"}
    values.update(changes)
    return RenderRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"frames": ()}, "no frames", id="no-frames"),
        pytest.param({"frames": (1, 1)}, "repeats frames", id="repeated-frame"),
        pytest.param({"passes": {"albedo", "shadow"}}, r"unknown render passes \['shadow'\]; allowed:", id="unknown-pass"),
        pytest.param({"samples": 0}, "samples must be >= 1", id="zero-samples"),
        pytest.param({"resolution_percentage": 0}, "1..100", id="percentage-zero"),
        pytest.param({"resolution_percentage": 101}, "1..100", id="percentage-over-100"),
        pytest.param({"threads": 0}, "threads", id="zero-threads"),
        pytest.param({"seed": -1}, "seed", id="negative-seed"),
        pytest.param({"exr_layout": "tiled"}, "exr_layout", id="unknown-layout"),
        pytest.param({"output_pattern": "out/still.exr"}, "no frame token", id="pattern-without-token"),
        pytest.param({"output_pattern": "out/b.exr", "frames": (1, 2)}, "no frame token", id="two-frames-one-file"),
    ],
)
def test_render_request_rejects(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _request(**changes)


def test_unknown_pass_error_lists_allowed_passes() -> None:
    with pytest.raises(ConfigError) as info:
        _request(passes={"shadow"})
    for name in ("albedo", "normal", "depth", "motion"):
        assert name in str(info.value)


def test_render_request_normalises_containers() -> None:
    request = _request(scene="shot.blend", frames=[3, 4], passes=["normal", "albedo"])
    assert request.scene == Path("shot.blend")
    assert request.frames == (3, 4)
    assert request.passes == frozenset({"albedo", "normal"})
    assert request.outputs() == (Path("out/b.0003.exr"), Path("out/b.0004.exr"))
    assert request == _request(frames=(3, 4), passes=frozenset({"albedo", "normal"}))


def test_render_request_single_frame_without_token_is_allowed() -> None:
    assert _request(frames=(5,), output_pattern="still.exr").outputs() == (Path("still.exr"),)


def test_blender_renderer_is_a_renderer() -> None:
    renderer = BlenderRenderer()
    assert isinstance(renderer, Renderer)
    assert renderer.name == "blender-cycles"


def test_default_child_is_bpy_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FARMPLUG_BLENDER", raising=False)
    command = BlenderRenderer(python_executable="/opt/py/bin/python").command(Path("req.json"), Path("res.json"))
    from farmplug.render import blender

    # The script by path (-P: its folder off sys.path), so the child never imports the farmplug package.
    assert command == ["/opt/py/bin/python", "-P", str(blender.child_script_path()), "req.json", "res.json"]


def _fake_blender(tmp_path: Path) -> Path:
    blender = tmp_path / "blender"
    blender.write_text("#!/bin/sh\nexit 0\n")
    blender.chmod(blender.stat().st_mode | stat.S_IXUSR)
    return blender


def test_blender_executable_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blender = _fake_blender(tmp_path)
    monkeypatch.setenv("FARMPLUG_BLENDER", str(blender))
    command = BlenderRenderer().command(Path("req.json"), Path("res.json"))
    assert command[0] == str(blender)
    assert command[1:3] == ["-b", "--factory-startup"]
    script = Path(command[command.index("--python") + 1])
    assert script.name == "_blender_child.py" and script.is_file()
    assert command[command.index("--") + 1 :] == ["req.json", "res.json"]


def test_missing_blender_executable_is_a_render_error(tmp_path: Path) -> None:
    renderer = BlenderRenderer(blender_executable=tmp_path / "no-such-blender")
    with pytest.raises(RenderError, match="no-such-blender"):
        renderer.command(Path("req.json"), Path("res.json"))


def test_missing_scene_is_reported_before_starting_a_child(tmp_path: Path) -> None:
    request = _request(scene=tmp_path / "missing.blend", output_pattern=str(tmp_path / "b.####.exr"))
    with pytest.raises(RenderError, match="missing.blend"):
        BlenderRenderer(python_executable=tmp_path / "never-run").render(request)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["child.py", "req.json", "res.json"], ("req.json", "res.json"), id="bpy-module"),
        pytest.param(
            ["blender", "-b", "--python", "child.py", "--", "req.json", "res.json"],
            ("req.json", "res.json"),
            id="blender-executable",
        ),
    ],
)
def test_child_parses_both_command_lines(argv: list[str], expected: tuple[str, str]) -> None:
    assert _blender_child.parse_args(argv) == (Path(expected[0]), Path(expected[1]))


def test_child_rejects_wrong_argument_count() -> None:
    with pytest.raises(_blender_child.ChildError, match="REQUEST.json RESULT.json"):
        _blender_child.parse_args(["child.py", "only-one.json"])


def test_child_protocol_matches_parent() -> None:
    from farmplug.render import blender

    assert set(blender.ChildRequest.model_fields) == _blender_child.REQUEST_KEYS
    assert blender.CHILD_SCHEMA_VERSION == _blender_child.SCHEMA_VERSION
    assert blender.FRAME_DONE_MARKER == _blender_child.FRAME_DONE
    assert blender.CHILD_MODULE == _blender_child.__name__
    assert blender.child_script_path() == Path(_blender_child.__file__).resolve()
    final = Path("/renders/b.0001.exr")
    assert blender.child_temp_output(final, 4242) == _blender_child.temp_output_for_pid(final, 4242)


def test_package_import_does_not_import_the_child_or_bpy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, farmplug.render; "
        "print('farmplug.render._blender_child' in sys.modules, 'bpy' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
