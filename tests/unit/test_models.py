"""Shot/plan YAML models, frame ranges and the job graph."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import chunk, format_frames, parse_frames
from farmplug.graph import LayerDependency, compile_plan, farm_layers
from farmplug.models import Plan, Shot, default_check_frames, load_plan, load_shot
from farmplug.schema import save_model

SHOT = {
    "schema_version": 1,
    "name": "sh010",
    "scene": "scene.blend",
    "renderer": "blender",
    "frames": {"start": 1, "end": 20},
    "resolution": {"width": 320, "height": 180},
    "samples": 512,
    "output": "frames/sh010.####.exr",
}


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "text, frames",
    [
        pytest.param("7", [7], id="single"),
        pytest.param("1-4", [1, 2, 3, 4], id="range"),
        pytest.param("1-9x4", [1, 5, 9], id="stepped"),
        pytest.param("1-3,10,2", [1, 2, 3, 10], id="list"),
        pytest.param("-2-1", [-2, -1, 0, 1], id="negative"),
    ],
)
def test_parse_frames(text, frames):
    assert parse_frames(text) == frames


@pytest.mark.parametrize("text", ["", "a-b", "5-1", "1-5x0", "1..5"])
def test_parse_frames_rejects(text):
    with pytest.raises(FarmplugError, match="bad frame range"):
        parse_frames(text)


def test_format_frames_and_chunk():
    assert format_frames([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert parse_frames(format_frames([1, 2, 3, 5, 7, 8])) == [1, 2, 3, 5, 7, 8]
    assert chunk(list(range(1, 11)), 4) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_shot_yaml_round_trip(tmp_path):
    shot = load_shot(write_yaml(tmp_path / "shot.yaml", SHOT))
    assert shot.frames.frames[-1] == 20
    save_model(shot, tmp_path / "again.yaml")
    assert load_shot(tmp_path / "again.yaml") == shot


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param({"renderer": "arnold"}, r"renderer: Input should be 'blender'", id="renderer-allowed-values"),
        pytest.param({"samples": 0}, r"samples: Input should be greater than or equal to 1", id="samples"),
        pytest.param({"colour": "red"}, r"colour: unknown field", id="unknown-key"),
        pytest.param({"output": "frames/out.exr"}, r"output: .*frame number token", id="no-frame-token"),
        pytest.param({"frames": {"start": 9, "end": 1}}, r"frames: .*before start", id="backwards"),
        pytest.param({"schema_version": 2}, r"schema_version: Input should be 1", id="schema-version"),
    ],
)
def test_bad_shot_fields_name_the_field_and_allowed_values(tmp_path, change, message):
    path = write_yaml(tmp_path / "shot.yaml", {**SHOT, **change})
    with pytest.raises(ConfigError, match=message) as info:
        load_shot(path)
    assert str(path) in str(info.value)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_shot(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_shot(tmp_path / "missing.yaml")
    scalar = write_yaml(tmp_path / "scalar.yaml", "just text")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_shot(scalar)


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param({"stages": [{"kind": "denoise", "backend": "optix"}]}, r"stages\.0\.backend: Value error, 'optix' is not a backend of denoise; allowed: oidn", id="backend"),
        pytest.param({"stages": [{"kind": "sharpen"}]}, r"stages\.0\.kind: Value error, 'sharpen' is not a known stage; allowed: denoise, upscale, inbetween", id="stage-kind"),
        pytest.param({"stages": [{"kind": "denoise", "quality": "ultra"}]}, r"'default', 'fast', 'balanced' or 'high'", id="quality"),
        pytest.param({"samples_factor": 0}, r"samples_factor: Input should be greater than 0", id="factor"),
        pytest.param({"frame_step": 2}, r"frame_step above 1 needs a stage that makes the frames between keyframes \(kind: inbetween\)", id="frame-step-needs-inbetween"),
        pytest.param({"resolution_scale": 0.5}, r"resolution_scale 0.5 needs a stage that upscales", id="scale-needs-upscale"),
        pytest.param({"check_frames": [99]}, r"check_frames \[99\] are outside", id="check-outside"),
    ],
)
def test_bad_plan_fields(tmp_path, change, message):
    write_yaml(tmp_path / "shot.yaml", SHOT)
    path = write_yaml(tmp_path / "plan.yaml", {"shot": "shot.yaml", "samples_factor": 0.05, **change})
    with pytest.raises(ConfigError, match=message):
        load_plan(path)


def test_plan_defaults_and_graph(tmp_path):
    write_yaml(tmp_path / "shot.yaml", SHOT)
    plan_file = write_yaml(tmp_path / "plan.yaml", {"shot": "shot.yaml", "samples_factor": 1 / 32, "check_frames": [1, 20], "chunk_size": 8})
    plan, shot, shot_file = load_plan(plan_file)
    assert plan.samples_for(shot) == 16
    assert plan.passes() == {"albedo", "normal"}
    graph = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=tmp_path / "run")
    ids = [t.id for t in graph.tasks]
    assert ids == [
        "render-0001-0008", "denoise-0001-0008", "render-0009-0016", "denoise-0009-0016",
        "render-0017-0020", "denoise-0017-0020", "reference-0001-0020",
    ]
    den = graph.task("denoise-0009-0016")
    assert den.depends_on == ["render-0009-0016"]
    assert den.frames == list(range(9, 17))
    assert den.outputs[0].endswith("frames/sh010.0009.exr")
    render = graph.task("render-0001-0008")
    assert render.argv[:2] == ["run", "render"]
    assert render.argv[render.argv.index("--samples") + 1] == "16"
    assert render.argv[render.argv.index("--passes") + 1] == "albedo,normal"
    ref = graph.task("reference-0001-0020")
    assert ref.frames == [1, 20] and ref.role == "reference"
    assert ref.argv[ref.argv.index("--samples") + 1] == "512"
    assert "--passes" not in ref.argv
    assert [t.id for t in graph.topological()].index("render-0001-0008") < ids.index("denoise-0001-0008")


def test_default_check_frames_spread_over_the_shot():
    shot = Shot.model_validate(SHOT)
    assert default_check_frames(shot, 3) == [1, 11, 20]
    assert default_check_frames(shot, 2) == [1, 20]
    assert default_check_frames(shot, 1) == [11]  # one: the middle frame (it divided by zero)
    assert default_check_frames(shot, 0) == []


def test_graph_cycle_is_reported(tmp_path):
    write_yaml(tmp_path / "shot.yaml", SHOT)
    plan_file = write_yaml(tmp_path / "plan.yaml", {"shot": "shot.yaml", "samples_factor": 0.1})
    plan, shot, shot_file = load_plan(plan_file)
    graph = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=tmp_path)
    graph.tasks[0].depends_on = [graph.tasks[1].id]
    with pytest.raises(ConfigError, match="cycle"):
        graph.topological()


@pytest.mark.parametrize("name", ["shot", "plan", "graph", "timing"])
def test_json_schemas_are_checked_in(name):
    import json

    from farmplug.graph import JobGraph
    from farmplug.models import plan_json_schema
    from farmplug.timing import TimingRecord

    current = {"shot": Shot.model_json_schema, "plan": plan_json_schema, "graph": JobGraph.model_json_schema,
               "timing": TimingRecord.model_json_schema}[name]()
    schema = Path(__file__).resolve().parents[2] / "docs" / "schemas" / f"{name}.schema.json"
    assert json.loads(schema.read_text()) == current, "regenerate with: python scripts/write_schemas.py"


def test_plan_schema_lists_every_stage_config():
    from farmplug.models import plan_json_schema

    items = plan_json_schema()["properties"]["stages"]["items"]
    defs = plan_json_schema()["$defs"]
    kinds = {defs[ref.rsplit("/", 1)[1]]["properties"]["kind"]["const"]
             for choice in items["oneOf"] for ref in [choice.get("$ref") or choice["allOf"][0]["$ref"]]}
    assert kinds == {"denoise", "upscale", "inbetween"}
    assert defs["DenoiseConfig"]["properties"]["quality"]["enum"] == ["default", "fast", "balanced", "high"]


@pytest.mark.parametrize("stage", [
    {"kind": "denoise"}, {"kind": "denoise", "backend": "oidn", "quality": "fast"},
    {"kind": "denoise", "backend": "temporal"}, {"kind": "denoise", "backend": "temporal", "window": 3},
    {"kind": "denoise", "window": 3},  # window is the temporal backend's; no backend named means oidn
    {"kind": "denoise", "backend": "guided"}, {"kind": "upscale"}, {"kind": "upscale", "backend": "guided"},
    {"kind": "inbetween", "guided": True}, {"kind": "denoise", "quality": "best"}, {"kind": "sharpen"}, {},
])
def test_plan_schema_accepts_exactly_what_the_plan_accepts(stage):
    """The published schema and the plan's own validation agree on every stage item (one oneOf choice
    each: a kind with two backends must not make a valid item match both)."""
    import jsonschema
    from pydantic import ValidationError

    from farmplug.models import plan_json_schema

    frame_step = 2 if stage.get("kind") == "inbetween" else 1
    scale = 0.5 if stage.get("kind") == "upscale" else 1
    data = {"shot": "shot.yaml", "stages": [stage], "frame_step": frame_step, "resolution_scale": scale}
    try:
        Plan.model_validate(data)
        valid = True
    except ValidationError:
        valid = False
    errors = list(jsonschema.Draft202012Validator(plan_json_schema()).iter_errors(data))
    assert (not errors) == valid, [e.message for e in errors]


def test_frame_step_graph_chains_inbetween_with_a_keyframe_offset_and_a_fallback(tmp_path):
    write_yaml(tmp_path / "shot.yaml", SHOT)
    plan_file = write_yaml(tmp_path / "plan.yaml", {
        "shot": "shot.yaml", "samples_factor": 0.1, "frame_step": 2, "chunk_size": 4, "check_frames": [2, 20],
        "stages": [{"kind": "denoise"}, {"kind": "inbetween", "guided": True}],
    })
    plan, shot, shot_file = load_plan(plan_file)
    assert plan.keyframes(shot) == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 20]
    assert plan.passes() == {"albedo", "normal", "depth", "motion"}
    graph = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=tmp_path / "run")
    renders = [t for t in graph.tasks if t.kind == "render" and t.id.startswith("render")]
    assert [t.frames for t in renders] == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19, 20]]
    first = graph.task("inbetween-0002-0008")
    # It needs keyframe 9 from the next chunk: the one-keyframe offset.
    assert first.depends_on == ["denoise-0001-0007", "denoise-0009-0015", "guide-0002-0008"]
    argv = first.argv
    assert argv[argv.index("--frames") + 1] == "2-8x2" and argv[argv.index("--keys") + 1] == "1-19x2,20"
    assert argv[argv.index("--input") + 1].endswith("frames/sh010.####.exr")
    assert first.outputs == [str(tmp_path / "run" / "work" / "inbetween" / "confidence-0002-0008.json")]
    guide = graph.task("guide-0002-0008")
    assert guide.argv[guide.argv.index("--samples") + 1] == "2"
    assert guide.frames == [2, 4, 6, 8]
    fallback = graph.task("fallback-0002-0008")
    assert fallback.depends_on == ["inbetween-0002-0008"]
    assert [Path(p).name for p in fallback.outputs] == [f"sh010.{f:04d}.exr" for f in (2, 4, 6, 8)]
    last = graph.task("inbetween-0018-0018")
    assert last.depends_on == ["denoise-0017-0020", "guide-0018-0018"]
    assert graph.task("fallback-0018-0018").frames == [18]
    # Every frame of the shot is delivered by exactly one task (denoise for keys, fallback for the rest).
    delivered = [Path(o).name for t in graph.tasks if t.stage in ("denoise", "fallback") for o in t.outputs]
    assert sorted(delivered) == sorted(f"sh010.{f:04d}.exr" for f in range(1, 21))
    assert [t.id for t in graph.topological()].index("fallback-0002-0008") > [t.id for t in graph.topological()].index(
        "denoise-0009-0015"
    )
    # The farm view: one command per layer, chunks, and frame offsets between layers.
    layers = {layer.name: layer for layer in farm_layers(graph)}
    assert list(layers) == ["render", "denoise", "guide", "inbetween", "fallback", "reference"]
    assert layers["render"].frame_set == "1-19x2,20" and layers["render"].chunk_size == 4
    assert layers["denoise"].depends_on == (LayerDependency("render", 0, 0),)
    assert set(layers["inbetween"].depends_on) == {LayerDependency("denoise", -1, 1), LayerDependency("guide", 0, 0)}
    assert layers["fallback"].depends_on == (LayerDependency("inbetween", 0, 0),)
    assert layers["inbetween"].chunks == [[2, 4, 6, 8], [10, 12, 14, 16], [18]]
    command = layers["denoise"].command
    assert command[command.index("--frames") + 1] == "{frames}" and "--task" not in command


def test_default_check_frames_avoid_keyframes():
    shot = Shot.model_validate(SHOT)
    checks = default_check_frames(shot, 3, avoid=frozenset(range(1, 21, 2)))
    assert all(f % 2 == 0 for f in checks) and len(checks) == 3
