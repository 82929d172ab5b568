"""The show report: per-shot figures rolled up per sequence and show, files, and bad input.

Runs are synthetic but complete: a real plan compiled to a real job graph, a timing record per
task with chosen costs, and tiny real EXR frames for the check frames, so the report code reads
them exactly as it reads a local run or a finished farm job. Costs are chosen so every total can
be worked out by hand (see ``COSTS``).
"""

from __future__ import annotations

import csv
import io
import json
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import yaml

from farmplug.cost import DEFAULT_PRICES_SOURCE, load_prices
from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import compile_plan, run_layout
from farmplug.models import load_plan
from farmplug.render.base import frame_path
from farmplug.report.build import build_report
from farmplug.report.html import money_line, projection_line, savings_line
from farmplug.report.model import (
    MachineInfo,
    PlanInfo,
    QualityFigures,
    QualitySummary,
    Report,
    Savings,
    ShotInfo,
    ShowReport,
)
from farmplug.report.show import CSV_COLUMNS, ShowSize, build_show_report, compact_schedule, sequence_from_name
from farmplug.schedule import Capacity, SimTask, simulate
from farmplug.timing import FrameTiming, TimingRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# (cpu core-seconds, wall seconds) per frame of each kind of task.
COSTS = {"render": (270.0, 10.0), "denoise": (90.0, 5.0), "reference": (3600.0, 100.0)}
SHOTS = {"sq010_sh010": 4, "sq010_sh020": 4, "sq020_sh010": 6}


def _write_exr(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w, _ = rgb.shape
    buf = oiio.ImageBuf(oiio.ImageSpec(w, h, 3, oiio.FLOAT))
    buf.set_pixels(oiio.ROI(0, w, 0, h), rgb.astype(np.float32))
    assert buf.write(str(path)), buf.geterror()


def _test_image(seed: int, w: int = 64, h: int = 36) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w * 2.0, y / h * 1.5, 0.4 + 0.3 * np.sin(x / 5 + seed)], axis=2)
    img[h // 4: h // 2, w // 3: w // 2] = (2.5, 0.6, 0.2)  # a bright block, so thumbnails show something
    return img


def make_run(
    root: Path, name: str, frames: int, *, plan_cpu_scale: float = 1.0, write_frames: bool = True,
    cached_quality: QualityFigures | None = None,
) -> Path:
    """A finished run of shot ``name`` (frames 1..``frames``, chunk 2, check frame 1, CPU denoise)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "shot.yaml").write_text(yaml.safe_dump({
        "name": name, "scene": "scene.blend", "frames": {"start": 1, "end": frames},
        "resolution": {"width": 64, "height": 36}, "samples": 64, "output": f"frames/{name}.####.exr",
    }))
    (folder / "plan.yaml").write_text(yaml.safe_dump({
        "shot": "shot.yaml", "samples_factor": 0.125, "chunk_size": 2, "check_frames": [1],
        "stages": [{"kind": "denoise", "device": "cpu"}],
    }))
    plan, shot, shot_file = load_plan(folder / "plan.yaml")
    run_dir = folder / "run"
    graph = compile_plan(plan, shot, plan_file=folder / "plan.yaml", shot_file=shot_file, run_dir=run_dir)
    run_dir.mkdir()
    _save(graph, run_dir / "graph.json")
    for task in graph.tasks:
        cpu, wall = COSTS["reference" if task.role == "reference" else task.stage]
        scale = plan_cpu_scale if task.role == "plan" else 1.0
        record = TimingRecord(
            task=task.id, stage=task.stage, role=task.role, backend="local", host="ws01", cores=32,
            started_at=0.0, finished_at=wall * len(task.frames),
            frames=[FrameTiming(frame=f, cpu_s=cpu * scale, wall_s=wall) for f in task.frames],
        )
        _save(record, task.timing)
    layout = run_layout(run_dir, shot)
    if write_frames:
        ref = _test_image(len(name))
        noise = np.random.default_rng(frames).normal(0, 0.05, ref.shape)
        _write_exr(frame_path(layout.reference, 1), ref)
        _write_exr(frame_path(layout.final, 1), ref + noise * 0.3)
        _write_exr(frame_path(layout.render, 1), ref + noise * 4)
    if cached_quality is not None:
        q = cached_quality
        _save(Report(
            generated_at="2025-01-01T00:00:00+00:00", farmplug_version="test",
            shot=ShotInfo(name=name, scene="scene.blend", frame_start=1, frame_end=frames, width=64, height=36, full_samples=64),
            plan=PlanInfo(samples=8, samples_factor=0.125, resolution_scale=1.0, frame_step=1, stages=["denoise:oidn"], check_frames=[1]),
            savings=Savings(frames=frames, core_seconds_full=1.0, core_seconds_plan=1.0, ratio=1.0, core_seconds_checks=1.0,
                            ratio_including_checks=1.0, full_core_seconds_per_frame=1.0, plan_core_seconds_per_frame=1.0,
                            measured_frames_full=[1], method="cached"),
            quality=QualitySummary(flip_mean=q.flip_mean, flip_p95=q.flip_p95, psnr_mean=q.psnr, ssim_mean=q.ssim,
                                   flip_target=0.1, meets_target=True,
                                   frames=[{"frame": 1, "result": q}]),
            costs=[], machine=MachineInfo(host="ws01", cores=32, cpu="x", platform="y"),
        ), run_dir / "report.json")
    return run_dir


def _save(model, path) -> None:
    # Plain writes: the library's atomic write fsyncs, which would dominate making 500 runs.
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(model.model_dump_json())


@pytest.fixture()
def show_runs(tmp_path: Path) -> list[Path]:
    return [make_run(tmp_path / "runs", name, frames) for name, frames in SHOTS.items()]


CAPACITY = Capacity(cpu_nodes=2, cores_per_node=32, gpus=0)


def test_rollup_by_hand(show_runs: list[Path], tmp_path: Path) -> None:
    report, html, json_path, csv_path = build_show_report(
        show_runs, tmp_path / "out", prices_file=EXAMPLES / "prices.yaml", capacity=CAPACITY,
    )
    shots = {e.shot.name: e.figures for e in report.shots}
    # Per shot: full = 1 core-h per frame (3600 core-s check frame); plan = 360 core-s per frame.
    for name, frames in SHOTS.items():
        f = shots[name]
        assert f.sequence == name.split("_")[0]
        assert f.frames == frames
        assert f.full_core_hours == pytest.approx(frames)
        assert f.plan_core_hours == pytest.approx(frames * 0.1)
        assert f.check_core_hours == pytest.approx(1.0)
        assert f.ratio == pytest.approx(10.0)
        assert f.full_cost == Decimal("0.012") * frames  # USD 0.012 per core-hour, exact
        assert f.plan_cost == Decimal("0.0012") * frames
        assert f.check_cost == Decimal("0.012")
        assert f.cost_ratio == pytest.approx(10.0)
    # Farm time on 2 nodes: full chunks of 2 frames take 200 s; a plan chunk 20 s render + 10 s denoise.
    assert (shots["sq010_sh010"].full_makespan_s, shots["sq010_sh010"].plan_makespan_s) == (200.0, 30.0)
    assert (shots["sq020_sh010"].full_makespan_s, shots["sq020_sh010"].plan_makespan_s) == (400.0, 50.0)
    seqs = {f.name: f for f in report.sequences}
    assert list(seqs) == ["sq010", "sq020"]
    assert seqs["sq010"].shots == 2 and seqs["sq010"].frames == 8
    assert seqs["sq010"].full_cost == Decimal("0.096") and seqs["sq010"].plan_cost == Decimal("0.0096")
    assert seqs["sq010"].saved_cost == Decimal("0.0864")
    assert (seqs["sq010"].full_makespan_s, seqs["sq010"].plan_makespan_s) == (400.0, 60.0)
    assert (seqs["sq020"].full_makespan_s, seqs["sq020"].plan_makespan_s) == (400.0, 50.0)
    show = report.show
    assert show.shots == 3 and show.frames == 14
    assert show.full_core_hours == pytest.approx(14.0) and show.plan_core_hours == pytest.approx(1.4)
    assert show.saved_core_hours == pytest.approx(12.6) and show.ratio == pytest.approx(10.0)
    assert show.full_cost == Decimal("0.168") and show.plan_cost == Decimal("0.0168")
    assert show.saved_cost == Decimal("0.1512") and show.check_cost == Decimal("0.036")
    # 7 full chunks of 200 s on 2 nodes: 4 rounds. Plan: 7 renders first (critical path), then the denoises.
    assert (show.full_makespan_s, show.plan_makespan_s) == (800.0, 110.0)
    assert show.saved_days == pytest.approx(690 / 86400)
    assert show.check_frames == 3
    assert show.flip_mean == pytest.approx(np.mean([f.flip_mean for f in shots.values()]))
    assert 0 < show.flip_mean < 0.2 and show.fallback_frames == 0
    # The files: JSON round-trips, the page is one self-contained file.
    assert ShowReport.model_validate_json(json_path.read_text()) == report
    page = html.read_text()
    assert "0.15 USD" in page and "By sequence" in page and "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert len([u for u in page.split('src="')[1:] if not u.startswith("data:")]) == 0
    assert page.count("data:image/jpeg;base64,") == 3 * 3  # reference, result, FLIP per check frame


def test_csv_columns_and_rows(show_runs: list[Path], tmp_path: Path) -> None:
    *_, csv_path = build_show_report(show_runs, tmp_path / "out", prices_file=EXAMPLES / "prices.yaml",
                                     capacity=CAPACITY)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["level"], r["name"]) for r in rows] == [
        ("shot", "sq010_sh010"), ("shot", "sq010_sh020"), ("shot", "sq020_sh010"),
        ("sequence", "sq010"), ("sequence", "sq020"), ("show", "show"),
    ]
    show = rows[-1]
    assert show["frames"] == "14" and show["currency"] == "USD"
    assert (show["full_cost"], show["plan_cost"], show["saved_cost"]) == ("0.17", "0.02", "0.15")
    assert float(show["full_core_hours"]) == pytest.approx(14) and float(show["savings_ratio"]) == pytest.approx(10)
    assert float(show["full_makespan_hours"]) == pytest.approx(800 / 3600)
    assert float(show["saved_days"]) == pytest.approx(690 / 86400)
    assert rows[0]["sequence"] == "sq010" and rows[0]["fallback_frames"] == "0"


def test_without_prices_or_capacity_says_so(show_runs: list[Path], tmp_path: Path) -> None:
    report, html, _, csv_path = build_show_report(show_runs[:1], tmp_path / "out", default_prices=False)
    assert report.show.full_cost is None and report.show.full_makespan_s is None and report.show.saved_days is None
    page = html.read_text()
    assert "no prices given: core-hours only" in page
    assert "No farm capacity was given" in page
    assert "USD" not in page and "<svg" not in page
    row = list(csv.DictReader(io.StringIO(csv_path.read_text())))[-1]
    assert row["full_cost"] == "" and row["saved_days"] == "" and float(row["saved_core_hours"]) == pytest.approx(3.6)


def test_sequence_callback_and_default_rule(show_runs: list[Path], tmp_path: Path) -> None:
    assert sequence_from_name("sq010_sh020_v2") == "sq010"
    assert sequence_from_name("tiny") == "tiny" and sequence_from_name("_x") == "_x"
    report, *_ = build_show_report(show_runs, tmp_path / "out", sequence_of=lambda name: "all")
    assert [s.name for s in report.sequences] == ["all"] and report.sequences[0].shots == 3


def test_single_run_report_still_works(show_runs: list[Path], tmp_path: Path) -> None:
    report, html = build_report(show_runs[0], tmp_path / "single")
    assert report.savings.ratio == pytest.approx(10.0)
    assert html.read_text().count("data:image/png;base64,") == 4
    # The fields other code reads are still there, beside the new ones.
    data = json.loads((tmp_path / "single" / "report.json").read_text())
    assert {"savings", "quality", "costs", "inbetween", "notes", "figures", "assumptions", "projection"} <= set(data)
    assert data["savings"]["ratio"] == pytest.approx(10.0) and data["kind"] == "shot"
    assert Report.model_validate_json((tmp_path / "single" / "report.json").read_text()) == report


# ----------------------------------------------------------------------------- one run = a show of one shot


def test_single_run_csv_is_the_show_csv_of_that_run(show_runs: list[Path], tmp_path: Path) -> None:
    report, _ = build_report(show_runs[2], tmp_path / "single", capacity=CAPACITY)
    _, _, _, show_csv = build_show_report(show_runs[2:], tmp_path / "show", capacity=CAPACITY)
    single_csv = tmp_path / "single" / "report.csv"
    assert single_csv.read_text() == show_csv.read_text()
    rows = list(csv.DictReader(io.StringIO(single_csv.read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["level"], r["name"]) for r in rows] == [("shot", "sq020_sh010"), ("sequence", "sq020"), ("show", "show")]
    shot = rows[0]
    # 6 frames: full 6 core-h, plan 0.6 core-h, at the default USD 0.012 per core-hour.
    assert float(shot["full_core_hours"]) == pytest.approx(6) and float(shot["plan_core_hours"]) == pytest.approx(0.6)
    assert (shot["currency"], shot["full_cost"], shot["plan_cost"], shot["saved_cost"]) == ("USD", "0.07", "0.01", "0.06")
    assert float(shot["full_makespan_hours"]) == pytest.approx(400 / 3600)
    assert report.figures.plan_makespan_s == 50.0


def test_single_run_uses_and_names_the_default_prices(show_runs: list[Path], tmp_path: Path) -> None:
    report, html = build_report(show_runs[0], tmp_path / "default")
    # 4 frames: full 4 core-h, plan 0.4 core-h, at examples/prices.yaml's 0.012 per core-hour, exact.
    assert report.figures.currency == "USD"
    assert report.figures.full_cost == Decimal("0.048") and report.figures.plan_cost == Decimal("0.0048")
    prices = report.assumptions.prices
    assert prices.default and prices.source == DEFAULT_PRICES_SOURCE and prices.cpu_core_hour == Decimal("0.012")
    page = html.read_text()
    assert "prices: default example prices (USD: CPU 0.012 per core-hour" in page
    assert "0.04 USD" in page  # saved: 0.048 - 0.0048
    assert any("default example prices" in note for note in report.notes)
    assert money_line(report).startswith("money: saves 0.04 USD") and "default example prices" in money_line(report)
    # A prices file replaces them, and is named instead.
    given, html = build_report(show_runs[0], tmp_path / "given", prices_file=EXAMPLES / "prices.yaml")
    assert not given.assumptions.prices.default and given.figures.full_cost == Decimal("0.048")
    assert f"(from {EXAMPLES / 'prices.yaml'})" in html.read_text() and "default example prices" not in html.read_text()
    # Or no money at all.
    bare, html = build_report(show_runs[0], tmp_path / "bare", default_prices=False)
    assert bare.figures.full_cost is None and bare.assumptions.prices is None
    assert "USD" not in html.read_text() and "Not priced" in html.read_text()
    assert money_line(bare) is None


def test_show_without_prices_uses_the_default_prices_too(show_runs: list[Path], tmp_path: Path) -> None:
    report, html, *_ = build_show_report(show_runs, tmp_path / "out")
    assert report.assumptions.prices.default and report.show.full_cost == Decimal("0.168")
    assert "prices: default example prices (" in html.read_text()


def test_core_speed_2_halves_the_farm_time_and_is_on_the_page(show_runs: list[Path], tmp_path: Path) -> None:
    base, _ = build_report(show_runs[2], tmp_path / "x1", capacity=CAPACITY)
    fast_capacity = Capacity(cpu_nodes=2, cores_per_node=32, gpus=0, core_speed=2.0)
    fast, html = build_report(show_runs[2], tmp_path / "x2", capacity=fast_capacity)
    # 6 frames on 2 nodes: full 400 s -> 200 s, plan 50 s -> 25 s.
    assert (base.figures.full_makespan_s, base.figures.plan_makespan_s) == (400.0, 50.0)
    assert (fast.figures.full_makespan_s, fast.figures.plan_makespan_s) == (200.0, 25.0)
    assert fast.figures.saved_days == pytest.approx(base.figures.saved_days / 2)
    assert fast.assumptions.capacity.core_speed == 2.0 and base.assumptions.capacity.core_speed == 1.0
    page = html.read_text()
    assert "core speed 2× that of the measuring machine" in page and "<svg" in page
    # Money is still billed on the measured core-hours.
    assert fast.figures.full_cost == base.figures.full_cost
    show, show_html, *_ = build_show_report(show_runs, tmp_path / "show", capacity=fast_capacity)
    assert (show.show.full_makespan_s, show.show.plan_makespan_s) == (400.0, 55.0)  # 800 and 110 halved
    assert "core speed 2× that of the measuring machine" in show_html.read_text()


@pytest.mark.parametrize(
    ("size", "scale", "at"),
    [
        pytest.param(ShowSize(2400), 2400 / 4, "2,400 frames at 64×36 (as measured)", id="frames"),
        # 1920x1080 is 900x the 64x36 pixels: 2400 frames at 900x the cost per frame.
        pytest.param(ShowSize(2400, 1920, 1080), 2400 / 4 * 900, "2,400 frames at 1920×1080", id="frames-and-resolution"),
    ],
)
def test_projection_is_the_measured_figures_scaled_to_the_show_size(
    size: ShowSize, scale: float, at: str, show_runs: list[Path], tmp_path: Path,
) -> None:
    report, html = build_report(show_runs[0], tmp_path / "single", project=size)
    p = report.projection
    f = report.figures  # 4 frames: full 4 core-h, plan 0.4 core-h, USD 0.048 and 0.0048
    assert p.frames == 2400 and p.measured_frames == 4 and (p.width, p.height) == (size.width, size.height)
    assert p.pixel_scale == (900.0 if size.width else 1.0)
    assert p.full_core_hours == pytest.approx(4 * scale) and p.plan_core_hours == pytest.approx(0.4 * scale)
    assert p.saved_core_hours == pytest.approx(3.6 * scale) and p.ratio == pytest.approx(f.ratio)
    exact = Decimal(str(int(scale)))
    assert (p.full_cost, p.plan_cost, p.saved_cost) == (Decimal("0.048") * exact, Decimal("0.0048") * exact,
                                                        Decimal("0.0432") * exact)
    page = html.read_text()
    assert "Projection · not a measurement" in page and f"Projected for {at}" in page
    assert ("Cost assumed proportional to pixel count" in page) == (size.width is not None)
    money = f"{Decimal('0.0432') * exact:,.2f} USD"
    assert money in page and projection_line(report) == (
        f"projected for {at}: full {4 * scale:,.0f} core-h / {Decimal('0.048') * exact:,.2f} USD, "
        f"plan {0.4 * scale:,.0f} core-h / {Decimal('0.0048') * exact:,.2f} USD, saved {3.6 * scale:,.0f} core-h / {money}"
    )
    assert Report.model_validate_json((tmp_path / "single" / "report.json").read_text()).projection == p


def test_show_projection_and_no_projection_hint(show_runs: list[Path], tmp_path: Path) -> None:
    report, html, *_ = build_show_report(show_runs, tmp_path / "show", project=ShowSize(2800))
    # 14 frames measured: full 14 core-h, plan 1.4 core-h, USD 0.168 and 0.0168; x200.
    p = report.projection
    assert p.full_core_hours == pytest.approx(2800) and p.plan_core_hours == pytest.approx(280)
    assert (p.full_cost, p.saved_cost) == (Decimal("33.6"), Decimal("30.24"))
    assert "Projected for 2,800 frames at 64×36 (as measured)" in html.read_text()
    assert ShowReport.model_validate_json((tmp_path / "show" / "report.json").read_text()).projection == p
    plain, html = build_report(show_runs[0], tmp_path / "plain")
    assert plain.projection is None and projection_line(plain) is None
    page = html.read_text()
    assert "Projection · not a measurement" not in page
    assert "Projection: none asked for" in page and "--project-frames" in page
    with pytest.raises(ConfigError, match="both width and height"):
        ShowSize(10, 1920)
    with pytest.raises(ConfigError, match="frames must be >= 1"):
        ShowSize(0)


def _add_calibration(run: Path, cpu_s: float) -> None:
    """A calibration's timing record beside the run's plan, as calibration leaves it."""
    record = TimingRecord(task="calibrate-x1-8", stage="render", role="plan", backend="local", host="ws01", cores=32,
                          started_at=0.0, finished_at=10.0, frames=[FrameTiming(frame=1, cpu_s=cpu_s, wall_s=10.0)])
    _save(record, run.parent / "calibration" / "work" / "render" / "calibrate.timing.json")


def test_ratio_with_and_without_calibration_reads_the_same_everywhere(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "sq1_cal", 4)
    _add_calibration(run, 1440.0)
    single, single_html = build_report(run, tmp_path / "single")
    show, show_html, _, csv_path = build_show_report([run], tmp_path / "show")
    # Full 14,400 core-s; plan 1,440 + the calibration's 1,440: 5x with it, 10x without it.
    assert single.savings.ratio == pytest.approx(5.0) and single.savings.ratio_without_calibration == pytest.approx(10.0)
    assert single.figures.ratio_without_calibration == pytest.approx(10.0) == show.show.ratio_without_calibration
    phrase = "10.0× without the one-off calibration (1,440 core-s)"
    assert phrase in single_html.read_text() and phrase in show_html.read_text()
    line = "savings: 5.0x fewer CPU core-seconds (14,400 full vs 2,880 plan, 4 frames); " \
           "10.0x without the one-off calibration (1,440 core-s)"
    assert savings_line(single) == savings_line(show) == line
    row = list(csv.DictReader(io.StringIO(csv_path.read_text())))[-1]
    assert float(row["calibration_core_hours"]) == pytest.approx(0.4)
    assert float(row["savings_ratio_without_calibration"]) == pytest.approx(10.0)
    # Without calibration there is no second ratio, and nothing says there was one.
    plain, plain_html = build_report(make_run(tmp_path / "runs", "sq1_plain", 4), tmp_path / "plain")
    assert plain.savings.ratio_without_calibration is None and "one-off calibration" not in plain_html.read_text()
    assert savings_line(plain) == "savings: 10.0x fewer CPU core-seconds (14,400 full vs 1,440 plan, 4 frames)"


# ----------------------------------------------------------------------------- bad input


def test_missing_timing_record_names_the_file(show_runs: list[Path], tmp_path: Path) -> None:
    record = show_runs[1] / "work" / "render" / "render-0003-0004.timing.json"
    record.unlink()
    with pytest.raises(FarmplugError, match="no timing record") as err:
        build_show_report(show_runs, tmp_path / "out")
    assert str(record) in str(err.value)


def test_corrupt_timing_record_names_the_file(show_runs: list[Path], tmp_path: Path) -> None:
    record = show_runs[2] / "frames" / "denoise-0001-0002.timing.json"
    record.write_text('{"task": "denoise-0001-0002", "stage": ')
    with pytest.raises(FarmplugError, match="corrupt timing record") as err:
        build_show_report(show_runs, tmp_path / "out")
    assert str(record) in str(err.value)


def test_missing_graph_names_the_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FarmplugError, match="graph.json"):
        build_show_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(FarmplugError, match="no run folders"):
        build_show_report([], tmp_path / "out")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("currency: USD\ncpu_core_hour: -0.01\n", "cpu_core_hour", id="negative-price"),
        pytest.param("currency: USD\ngpu_hour: 1.0\n", "cpu_core_hour", id="missing-cpu-price"),
        pytest.param("currency: usd\ncpu_core_hour: 0.01\n", "currency", id="bad-currency"),
        pytest.param("currency: USD\ncpu_core_hour: lots\n", "cpu_core_hour", id="not-a-number"),
    ],
)
def test_bad_prices_name_file_and_field(text: str, field: str, show_runs: list[Path], tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(text)
    with pytest.raises(ConfigError) as err:
        build_show_report(show_runs, tmp_path / "out", prices_file=prices)
    assert str(prices) in str(err.value) and field in str(err.value)


def test_zero_prices_are_an_error_not_zero_savings(show_runs: list[Path], tmp_path: Path) -> None:
    prices = tmp_path / "free.yaml"
    prices.write_text("currency: EUR\ncpu_core_hour: 0\n")
    with pytest.raises(FarmplugError, match="costs 0 EUR") as err:
        build_show_report(show_runs, tmp_path / "out", prices_file=prices)
    assert str(prices) in str(err.value) and "cpu_core_hour" in str(err.value)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("cpu_nodes: 0\ncores_per_node: 32\n", "cpu_nodes", id="zero-nodes"),
        pytest.param("cpu_nodes: 4\ncores_per_node: 0\n", "cores_per_node", id="zero-cores"),
        pytest.param("cpu_nodes: 4\n", "cores_per_node", id="missing-cores"),
    ],
)
def test_bad_capacity_names_file_and_field(text: str, field: str, show_runs: list[Path], tmp_path: Path) -> None:
    capacity = tmp_path / "capacity.yaml"
    capacity.write_text(text)
    with pytest.raises(ConfigError) as err:
        build_show_report(show_runs, tmp_path / "out", capacity_file=capacity)
    assert str(capacity) in str(err.value) and field in str(err.value)


def test_gpu_work_without_gpu_price_or_slots(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "sq1_a", 2)
    record = run / "frames" / "denoise-0001-0002.timing.json"
    data = json.loads(record.read_text())
    data["frames"][0]["gpu_s"] = 1.0
    record.write_text(json.dumps(data))
    prices = tmp_path / "p.yaml"
    prices.write_text("currency: USD\ncpu_core_hour: 0.01\n")
    with pytest.raises(ConfigError, match="gpu_hour") as err:
        build_show_report([run], tmp_path / "out", prices_file=prices)
    assert str(prices) in str(err.value)


def test_zero_plan_cost_is_an_error_not_infinity(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "sq1_free", 4, plan_cpu_scale=0.0)
    with pytest.raises(FarmplugError, match="zero"):
        build_show_report([run], tmp_path / "out", prices_file=EXAMPLES / "prices.yaml")


def test_same_shot_twice_is_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", "sq1_x", 2)
    b = make_run(tmp_path / "b", "sq1_x", 2)
    with pytest.raises(FarmplugError, match="both shot sq1_x"):
        build_show_report([a, b], tmp_path / "out")


def test_giving_prices_and_a_prices_file_is_refused(show_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(FarmplugError, match="not both"):
        build_show_report(show_runs, tmp_path / "out", prices=load_prices(EXAMPLES / "prices.yaml"),
                          prices_file=EXAMPLES / "prices.yaml")


# ----------------------------------------------------------------------------- scale


def test_compact_schedule_merges_back_to_back_chunks() -> None:
    tasks = [SimTask(id=f"t{i}", stage="render") for i in range(100)]
    schedule = simulate(tasks, {t.id: 10.0 for t in tasks}, Capacity(cpu_nodes=4, cores_per_node=8))
    compact = compact_schedule(schedule)
    assert len(compact.tasks) == 4 and compact.makespan == schedule.makespan == 250.0
    assert {t.id for t in compact.tasks} == {"25 render tasks"}


def test_show_of_500_shots_stays_fast_and_small(tmp_path: Path) -> None:
    quality = QualityFigures(flip_mean=0.03, flip_p95=0.09, psnr=38.0, ssim=0.98)
    runs = [make_run(tmp_path / "runs", f"sq{i // 25:03d}_sh{i:04d}", 8, write_frames=False, cached_quality=quality)
            for i in range(500)]
    started = time.perf_counter()
    report, html, _, csv_path = build_show_report(
        runs, tmp_path / "out", prices_file=EXAMPLES / "prices.yaml", capacity_file=EXAMPLES / "capacity.yaml",
    )
    elapsed = time.perf_counter() - started
    assert elapsed < 30, f"500 shots took {elapsed:.1f} s"
    assert report.show.shots == 500 and len(report.sequences) == 20
    assert report.show.frames == 4000 and report.show.flip_mean == pytest.approx(0.03)
    assert report.show.full_makespan_s > report.show.plan_makespan_s > 0
    assert html.stat().st_size < 3_000_000
    assert len(csv_path.read_text().splitlines()) == 1 + 500 + 20 + 1


def test_a_plan_dearer_than_the_full_render_reads_as_a_loss(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "sq1_dear", 4, plan_cpu_scale=20.0)  # plan 7,200 core-s a frame, full 3,600
    report, html = build_report(run, tmp_path / "out")
    assert report.figures.ratio == pytest.approx(0.5) and report.figures.saved_cost == Decimal("-0.048")
    page = html.read_text()
    assert "Costs 4.00 core-h more: full render 4.00 core-h → plan 8.00 core-h" in page
    assert "0.05 USD <small>more</small>" in page
    assert money_line(report).startswith("money: costs 0.05 USD more (full render 0.05 USD → plan 0.10 USD)")


@pytest.mark.parametrize("name", ["=HYPERLINK(x)", "+1", "-2", "@SUM(A1)"])
def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(tmp_path: Path, name: str) -> None:
    """A shot named like a formula reads as text in a spreadsheet (a leading apostrophe); its numbers stay numbers."""
    run = make_run(tmp_path / "runs", name, 4)
    *_, csv_path = build_show_report([run], tmp_path / "out", prices_file=EXAMPLES / "prices.yaml")
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    shot_row = next(r for r in rows if r["level"] == "shot")
    assert shot_row["name"] == "'" + name
    assert not any(v.startswith(("=", "+", "@")) for r in rows for v in r.values())
    float(shot_row["savings_ratio"])


def test_a_run_folder_copied_without_its_plan_reports_its_own_figures(tmp_path: Path) -> None:
    """The plan and shot travel in graph.json and the paths follow the folder: a copy reports itself."""
    import shutil

    from farmplug.report.build import build_report

    run = make_run(tmp_path / "runs", "sh010", 4)
    original, _html = build_report(run, tmp_path / "first")
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(tmp_path / "runs")  # the plan, the shot and the original run folder are gone
    again, html = build_report(copy, copy)
    assert again.savings.core_seconds_full == pytest.approx(original.savings.core_seconds_full)
    assert again.savings.core_seconds_plan == pytest.approx(original.savings.core_seconds_plan)
    assert [f.frame for f in again.quality.frames] == [f.frame for f in original.quality.frames]
    assert html.is_file() and str(copy) in str(html)
