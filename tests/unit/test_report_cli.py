"""``farmplug report`` on synthetic runs: one run is the show report of one shot, options and errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from farmplug.cli import main
from tests.unit.test_report_rollup import EXAMPLES, make_run


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs", "sq010_sh010", 4)


def test_one_run_prints_money_projection_and_headline_and_writes_the_csv(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out), "--capacity", str(EXAMPLES / "capacity.yaml"),
                 "--project-frames", "2400", "--project-resolution", "1920x1080"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["money", "projected for 2,400 frames at 1920×1080", "savings",
                                                     "quality", "report", "  data"]
    assert "default example prices" in lines[0]
    # 4 frames of 64x36 measured (full 4 core-h, plan 0.4): 1920x1080 is 900x the pixels, 600x the frames.
    assert "full 2,160,000 core-h / 25,920.00 USD" in lines[1] and "saved 1,944,000 core-h / 23,328.00 USD" in lines[1]
    assert lines[2].startswith("savings: 10.0x fewer CPU core-seconds")
    assert lines[-2:] == [f"report: {out / 'report.html'}", f"  data: {out / 'report.json'}, {out / 'report.csv'}"]
    rows = list(csv.DictReader(io.StringIO((out / "report.csv").read_text())))
    assert [r["level"] for r in rows] == ["shot", "sequence", "show"] and rows[0]["currency"] == "USD"
    report = json.loads((out / "report.json").read_text())
    assert report["assumptions"]["capacity"]["core_speed"] == 1.0 and report["projection"]["frames"] == 2400


def test_json_output_and_no_prices(run: Path, tmp_path: Path, capsys) -> None:
    assert main(["report", str(run), "--out", str(tmp_path / "out"), "--no-prices", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["csv"] == str(tmp_path / "out" / "report.csv") and Path(printed["csv"]).is_file()
    assert printed["figures"]["currency"] is None and printed["projection"] is None
    assert printed["savings"]["ratio"] == pytest.approx(10.0)


def test_several_runs_print_the_same_headline(tmp_path: Path, capsys) -> None:
    runs = [make_run(tmp_path / "runs", name, 4) for name in ("sq1_a", "sq1_b")]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "show"), "--project-frames", "800"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("money: saves ") and lines[1].startswith("projected for 800 frames at 64×36")
    assert lines[2] == "savings: 10.0x fewer CPU core-seconds (28,800 full vs 2,880 plan, 8 frames)"
    assert (tmp_path / "show" / "report.csv").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--project-resolution", "1920"], "not a resolution WIDTHxHEIGHT: '1920'", id="resolution-no-x"),
        pytest.param(["--project-resolution", "0x1080"], "not a resolution WIDTHxHEIGHT", id="resolution-zero"),
        pytest.param(["--project-frames", "0"], "not a number of frames >= 1: '0'", id="zero-frames"),
        pytest.param(["--project-frames", "many"], "not a number of frames >= 1", id="frames-not-a-number"),
    ],
)
def test_bad_projection_options_are_usage_errors(argv: list[str], message: str, run: Path, capsys) -> None:
    with pytest.raises(SystemExit) as bad:
        main(["report", str(run), *argv])
    assert bad.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--project-resolution", "1920x1080"], "--project-resolution needs --project-frames", id="resolution-alone"),
        pytest.param(["--no-prices", "--prices", "p.yaml"], "--prices FILE or --no-prices, not both", id="prices-and-no-prices"),
    ],
)
def test_conflicting_options_are_one_line_errors(argv: list[str], message: str, run: Path, capsys) -> None:
    assert main(["report", str(run), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_bad_core_speed_names_the_file_and_field(run: Path, tmp_path: Path, capsys) -> None:
    capacity = tmp_path / "capacity.yaml"
    capacity.write_text("cpu_nodes: 2\ncores_per_node: 8\ncore_speed: 0\n")
    assert main(["report", str(run), "--capacity", str(capacity)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(capacity) in err and "core_speed" in err and err.count("\n") == 0
