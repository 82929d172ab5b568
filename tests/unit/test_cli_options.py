"""The command line means one thing per option: shared spellings, defaults in --help, one-line errors."""

from __future__ import annotations

import pytest
import yaml

from farmplug.cli import main

SHOT = {"name": "sh010", "scene": "sh010.blend", "frames": {"start": 1, "end": 24},
        "resolution": {"width": 64, "height": 36}, "samples": 256, "output": "frames/sh010.####.exr"}


@pytest.fixture
def shot_file(tmp_path):
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(SHOT))
    return tmp_path / "shot.yaml"


def test_a_shot_where_a_plan_is_expected_says_to_plan_it_first(shot_file, capsys):
    assert main(["submit", str(shot_file), "--dry-run", "--farm", "openjd"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "is a shot file, not a plan" in err and f"farmplug plan {shot_file}" in err


@pytest.mark.parametrize("factor, value", [pytest.param("1/32", 1 / 32, id="fraction"), pytest.param("0.125", 0.125, id="decimal")])
def test_plan_takes_fractions_like_calibrate(shot_file, factor, value, capsys):
    import json

    assert main(["plan", str(shot_file), "--samples-factor", factor, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["plan"]["samples_factor"] == pytest.approx(value)
    assert yaml.safe_load((shot_file.parent / "plan.yaml").read_text())["samples_factor"] == pytest.approx(value)
    with pytest.raises(SystemExit) as bad:
        main(["plan", str(shot_file), "--samples-factor", "1/0"])
    assert bad.value.code == 2 and "not a number or fraction: '1/0'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["plan", "calibrate"])
def test_check_frames_is_a_list_and_check_count_a_number_in_both_verbs(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = capsys.readouterr().out
    assert "--check-frames" in text and "1,12,24" in text
    assert "--check-count" in text and "(default: 3)" in text


def test_plan_check_frames_list_and_count(shot_file):
    assert main(["plan", str(shot_file), "--check-frames", "2,7"]) == 0
    assert yaml.safe_load((shot_file.parent / "plan.yaml").read_text())["check_frames"] == [2, 7]
    assert main(["plan", str(shot_file), "--check-count", "2"]) == 0
    assert yaml.safe_load((shot_file.parent / "plan.yaml").read_text())["check_frames"] == [1, 24]


@pytest.mark.parametrize("argv", [["run", "denoise", "--help"], ["run", "inbetween", "--help"], ["submit", "--help"],
                                  ["report", "--help"], ["demo", "--help"]])
def test_help_shows_defaults(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "(default:" in capsys.readouterr().out


def test_stage_options_come_from_the_config_models(capsys):
    with pytest.raises(SystemExit):
        main(["run", "denoise", "--help"])
    denoise = capsys.readouterr().out
    for option in ("--quality", "{default,fast,balanced,high}", "--clean-aux", "--no-prefilter-aux", "--require-aux",
                   "--missing-aux"):
        assert option in denoise
    with pytest.raises(SystemExit):
        main(["run", "inbetween", "--help"])
    inbetween = capsys.readouterr().out
    for option in ("--confidence-threshold", "--threshold", "--guide", "--keys", "--step", "--confidence-dir", "--rejected"):
        assert option in inbetween


def test_a_bad_stage_option_value_is_one_line(tmp_path, capsys):
    assert main(["run", "inbetween", "--input", "a.####.exr", "--output", "b.####.exr", "--frames", "1-3", "--step", "2",
                 "--threshold", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "confidence_threshold: Input should be less than or equal to 1" in err
