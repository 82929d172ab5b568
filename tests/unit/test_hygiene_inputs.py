"""Inputs that would break the one-line-error promise or the run folder: refused with one short line.

Validation errors never echo a secret-looking field's value nor more than the start of a long
one; a key twice in one YAML or JSON mapping is an error naming the file, the key and the line;
a shot's samples are bounded, its name makes a safe file name and a relative output stays
inside the run folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from farmplug.errors import ConfigError
from farmplug.graph import compile_plan, load_graph, save_graph
from farmplug.integrations.base import load_farm_config
from farmplug.models import Shot, load_plan, load_shot

SHOT = {
    "name": "sh010",
    "scene": "scene.blend",
    "frames": {"start": 1, "end": 4},
    "resolution": {"width": 64, "height": 36},
    "samples": 64,
    "output": "frames/sh010.####.exr",
}
HUGE = 50_000_000  # characters: a pasted file, a runaway generator
SHORT_ERROR = 600


def _one_short_line(err: ConfigError) -> str:
    text = str(err)
    assert "\n" not in text and len(text) < SHORT_ERROR, text[:2000]
    return text


def _write_shot(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shot.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# validation errors: no secret values, no megabytes


@pytest.mark.parametrize(
    "change, field",
    [
        pytest.param({"password": "plain-pw"}, "password", id="unknown-password-field"),
        pytest.param({"api_token": "plain-pw"}, "api_token", id="unknown-token-field"),
        pytest.param({"render_key": "plain-pw"}, "render_key", id="unknown-key-field"),
        pytest.param({"credential": "plain-pw"}, "credential", id="unknown-credential-field"),
    ],
)
def test_a_secret_looking_field_is_named_without_its_value(tmp_path, change, field):
    path = _write_shot(tmp_path, yaml.safe_dump({**SHOT, **change}))
    with pytest.raises(ConfigError) as caught:
        load_shot(path)
    text = _one_short_line(caught.value)
    assert f"{field}: unknown field" in text and "plain-pw" not in text


@pytest.mark.parametrize(
    "text, shown",
    [
        pytest.param(f"name: {'n' * HUGE}\n", "name: Value error, is 50,000,000 characters", id="shot-name"),
        pytest.param(f"renderer: {'r' * HUGE}\n", "renderer: Input should be 'blender' (got 'rrr", id="literal-field"),
        pytest.param(f"frames: {{start: 1, end: {'e' * HUGE}}}\n", "frames.end: Input should be a valid integer",
                     id="nested-field"),
        pytest.param(f"? {'k' * HUGE}\n: 1\n", "'kkkkkkkkkk", id="unknown-key"),
        pytest.param(f"output: \"{'a' * 1000}\\n{'b' * 1000}\"\n", "output: ", id="newline-in-a-long-value"),
        pytest.param(f"samples: {'9' * HUGE}\n", "cannot build a value: Exceeds the limit (4300 digits)",
                     id="integer-past-python-s-digit-limit"),
        pytest.param("name: 2024-13-45\n", "cannot build a value: month must be in 1..12", id="impossible-date"),
    ],
)
def test_a_huge_or_unbuildable_value_in_a_shot_gives_one_short_line(tmp_path, text, shown):
    rest = {k: v for k, v in SHOT.items() if not text.startswith(f"{k}:")}
    path = _write_shot(tmp_path, yaml.safe_dump(rest) + text)
    with pytest.raises(ConfigError) as caught:
        load_shot(path)
    message = _one_short_line(caught.value)
    assert message.startswith(f"{path}: ") and shown in message


@pytest.mark.parametrize(
    "field",
    [
        pytest.param("samples_factor", id="float-field"),
        pytest.param("shot", id="shot-path"),  # the file it names cannot even be opened
    ],
)
def test_a_huge_value_in_a_plan_gives_one_short_line(tmp_path, field):
    _write_shot(tmp_path, yaml.safe_dump(SHOT))
    plan = {k: v for k, v in {"shot": "shot.yaml", "samples_factor": 0.25}.items() if k != field}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan) + f"{field}: {'x' * HUGE}\n")
    with pytest.raises(ConfigError) as caught:
        load_plan(tmp_path / "plan.yaml")
    assert "characters)" in _one_short_line(caught.value)


def test_many_problems_are_counted_not_listed(tmp_path):
    path = _write_shot(tmp_path, yaml.safe_dump({**SHOT, **{f"extra{i}": i for i in range(5000)}}))
    with pytest.raises(ConfigError, match=r"unknown field .*; and 4990 more problems$") as caught:
        load_shot(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 2000


# ---------------------------------------------------------------------------------------------
# duplicate keys


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param(yaml.safe_dump(SHOT, sort_keys=False) + "samples: 4096\n",
                     r"shot\.yaml: duplicate key 'samples' at line 11 \(first at line 9\)", id="top-level"),
        pytest.param(yaml.safe_dump({k: v for k, v in SHOT.items() if k != "frames"}, sort_keys=False)
                     + "frames: {start: 1, end: 4, start: 2}\n",
                     r"duplicate key 'start' at line 8 \(first at line 8\)", id="flow-mapping"),
        pytest.param("name: sh010\nname: sh020\n", r"duplicate key 'name' at line 2 \(first at line 1\)",
                     id="before-any-validation"),
        pytest.param("1: a\n0x1: b\n", r"duplicate key 1 at line 2", id="same-value-different-spelling"),
    ],
)
def test_a_yaml_key_twice_names_the_file_the_key_and_the_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_shot(_write_shot(tmp_path, text))
    _one_short_line(caught.value)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    """A merge (``<<:``) then a key of its own is YAML's override, not a duplicate; a key twice of its own is."""
    rest = yaml.safe_dump({k: v for k, v in SHOT.items() if k != "frames"}, sort_keys=False)
    merged = "frames:\n  <<: {start: 1, end: 9}\n  end: 4\n" + rest
    assert load_shot(_write_shot(tmp_path, merged)).frames.end == 4
    with pytest.raises(ConfigError, match=r"duplicate key 'end' at line 4 \(first at line 3\)"):
        load_shot(_write_shot(tmp_path, merged.replace("  end: 4\n", "  end: 4\n  end: 5\n")))


@pytest.mark.parametrize(
    "change, key",
    [
        pytest.param(lambda t: t.replace('"name": ', '"name": "x", "name": ', 1), "name", id="top-level"),
        pytest.param(lambda t: t.replace('"kind": ', '"kind": "render",\n      "kind": ', 1), "kind", id="inside-a-task"),
    ],
)
def test_a_json_key_twice_names_the_file_the_key_and_the_line(tmp_path, change, key):
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(SHOT))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"shot": "shot.yaml", "samples_factor": 0.25}))
    plan, shot, shot_file = load_plan(tmp_path / "plan.yaml")
    graph = compile_plan(plan, shot, plan_file=tmp_path / "plan.yaml", shot_file=shot_file, run_dir=tmp_path / "run")
    path = save_graph(graph, tmp_path / "run")
    path.write_text(change(path.read_text()))
    with pytest.raises(ConfigError, match=rf"graph\.json: duplicate key '{key}' at line (\d+) \(first at line (\d+)\)$") as caught:
        load_graph(tmp_path / "run")
    _one_short_line(caught.value)
    lines = path.read_text().splitlines()
    line, first = (int(n) for n in re.search(r"line (\d+) \(first at line (\d+)", str(caught.value)).groups())
    assert lines[line - 1].count(f'"{key}"') >= (2 if line == first else 1) and f'"{key}"' in lines[first - 1]


def test_a_farm_twice_in_the_farm_config_is_an_error(tmp_path):
    path = tmp_path / "farms.yaml"
    path.write_text("farms:\n  deadline: {kind: deadline, url: 'http://a'}\n  deadline: {kind: deadline, url: 'http://b'}\n")
    with pytest.raises(ConfigError, match=r"farms\.yaml: duplicate key 'deadline' at line 3 \(first at line 2\)"):
        load_farm_config(path)


# ---------------------------------------------------------------------------------------------
# the shot: samples, name, output


@pytest.mark.parametrize(
    "change, accepted",
    [
        pytest.param({"samples": 65536}, True, id="samples-at-the-bound"),
        pytest.param({"samples": 65537}, False, id="samples-over-the-bound"),
        pytest.param({"samples": 4096000}, False, id="samples-typo"),
        pytest.param({"name": "x" * 120}, True, id="name-120-characters"),
        pytest.param({"name": "x" * 121}, False, id="name-121-characters"),
        pytest.param({"name": "x" * 300}, False, id="name-300-characters"),
        pytest.param({"name": "\U0001f3ac" * 60}, False, id="name-over-200-bytes"),
        pytest.param({"name": "sq01/sh010"}, True, id="name-with-a-slash"),
        pytest.param({"name": "sh 010 \"q\" 'x' $HOME `id`;\nnext"}, True, id="name-hostile-but-inert"),
        pytest.param({"name": "sh\x00010"}, False, id="name-with-nul"),
        pytest.param({"name": "../../etc/cron.d/x"}, False, id="name-climbing"),
        pytest.param({"name": "  "}, False, id="name-blank"),
        pytest.param({"output": "frames/../out.####.exr"}, True, id="output-normalises-inside"),
        pytest.param({"output": "/mnt/delivery/sh010/out.####.exr"}, True, id="output-absolute"),
        pytest.param({"output": "C:\\delivery\\out.####.exr"}, True, id="output-absolute-windows"),
        pytest.param({"output": "\\\\server\\share\\out.####.exr"}, True, id="output-unc"),
        pytest.param({"output": "../out.####.exr"}, False, id="output-climbs"),
        pytest.param({"output": "frames/../../out.####.exr"}, False, id="output-climbs-after-normalising"),
        pytest.param({"output": "..\\out.####.exr"}, False, id="output-climbs-windows"),
        pytest.param({"output": "frames/out\x00.####.exr"}, False, id="output-with-nul"),
    ],
)
def test_shot_bounds(change, accepted):
    data = {**SHOT, **change}
    if accepted:
        Shot.model_validate(data)
        return
    with pytest.raises(ValidationError) as caught:
        Shot.model_validate(data)
    assert [e["loc"] for e in caught.value.errors()] == [(next(iter(change)),)]


@pytest.mark.parametrize(
    "change, message",
    [
        pytest.param({"samples": 65537}, r"samples: Input should be less than or equal to 65536 \(got 65537\)",
                     id="samples"),
        pytest.param({"name": "x" * 300}, r"name: Value error, is 300 characters; names become file names, so at "
                     r"most 120 \(got 'x{39}… \(300 characters\)\)$", id="name-too-long"),
        pytest.param({"name": "a/../../b"}, r"name: Value error, has a '\.\.' path component", id="name-climbs"),
        pytest.param({"output": "../x.####.exr"}, r"output: Value error, a relative output must stay inside the run "
                     r"folder", id="output-climbs"),
    ],
)
def test_shot_bound_errors_are_one_line_naming_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_shot(_write_shot(tmp_path, yaml.safe_dump({**SHOT, **change})))
    _one_short_line(caught.value)


@pytest.mark.parametrize(
    "name, stem",
    [
        pytest.param("sh010", "sh010", id="plain"),
        pytest.param("sq01/sh010:v2", "sq01_sh010_v2", id="separator-and-colon"),
        pytest.param("sh 010 \"q\" 'x' $HOME `id`; rm -rf /\nnext", "sh 010 _q_ 'x' _HOME _id_; rm -rf __next",
                     id="hostile"),
    ],
)
def test_every_valid_shot_has_a_safe_file_stem(tmp_path, name, stem):
    shot = load_shot(_write_shot(tmp_path, yaml.safe_dump({**SHOT, "name": name})))
    assert shot.stem == stem
    (tmp_path / f"{shot.stem}.0001.reference.png").write_bytes(b"")  # a real file name, in this folder
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".png"] == [f"{stem}.0001.reference.png"]
