"""The savings report: models round-trip, thumbnails are real PNGs, the page is self-contained."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from pydantic import ValidationError

from farmplug.errors import ImageError
from farmplug.report import (
    FrameQuality,
    MachineInfo,
    PlanInfo,
    QualityFigures,
    QualitySummary,
    Report,
    Savings,
    ShotInfo,
    StageCost,
    error_map_png,
    render_html,
    tonemap_png,
    write_report,
)
from farmplug.report.html import (
    format_core_time,
    format_frames,
    format_money,
    format_psnr,
    format_ratio,
    savings_line,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHECK_FRAMES = (7, 42)


def _png_size(path: Path) -> tuple[int, int, int]:
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    spec = inp.spec()
    pixels = inp.read_image(oiio.UINT8)
    inp.close()
    assert pixels is not None
    return spec.width, spec.height, spec.nchannels


def _write_thumbnails(run_dir: Path, frame: int) -> dict[str, str]:
    rng = np.random.default_rng(frame)
    reference = np.linspace(0.0, 4.0, 32 * 48 * 3, dtype=np.float32).reshape(32, 48, 3)
    noisy = reference + rng.normal(0.0, 0.5, reference.shape).astype(np.float32)
    result = reference + rng.normal(0.0, 0.05, reference.shape).astype(np.float32)
    names = {key: f"thumbs/{frame:04d}_{key}.png" for key in ("reference", "before_post", "result", "flip")}
    tonemap_png(reference, run_dir / names["reference"])
    tonemap_png(noisy, run_dir / names["before_post"])
    tonemap_png(result, run_dir / names["result"])
    error_map_png(np.abs(result - reference).mean(axis=2), run_dir / names["flip"])
    return names


def _report(run_dir: Path | None, *, name: str = "sh010_lighting") -> Report:
    frames = [
        FrameQuality(
            frame=frame,
            result=QualityFigures(flip_mean=0.031, flip_p95=0.089, psnr=38.24, ssim=0.9812),
            before_post=QualityFigures(flip_mean=0.214, flip_p95=0.503, psnr=21.7, ssim=0.612),
            thumbnails=_write_thumbnails(run_dir, frame) if run_dir is not None else {},
        )
        for frame in CHECK_FRAMES
    ]
    return Report(
        generated_at="2025-06-01T12:00:00+00:00",
        farmplug_version="0.1.0",
        shot=ShotInfo(name=name, scene="classroom", frame_start=1, frame_end=120, width=1920, height=1080, full_samples=1024),
        plan=PlanInfo(samples=32, samples_factor=32 / 1024, resolution_scale=1.0, frame_step=1, stages=["denoise:oidn"], check_frames=list(CHECK_FRAMES)),
        savings=Savings(
            frames=120,
            core_seconds_full=120 * 1500.0,
            core_seconds_plan=7692.3,
            ratio=180000.0 / 7692.3,
            core_seconds_checks=3000.0,
            ratio_including_checks=180000.0 / 10692.3,
            full_core_seconds_per_frame=1500.0,
            plan_core_seconds_per_frame=64.1,
            measured_frames_full=list(CHECK_FRAMES),
            method="Full cost measured on 2 check frames and multiplied by 120 frames; plan cost measured on every frame.",
        ),
        quality=QualitySummary(flip_mean=0.031, flip_p95=0.089, psnr_mean=38.24, ssim_mean=0.9812, flip_target=0.05, meets_target=True, frames=frames),
        costs=[
            StageCost(stage="render", role="plan", backend="local", tasks=12, frames=120, core_seconds=6900.0, wall_seconds=480.0, overhead_core_seconds=210.0),
            StageCost(stage="denoise:oidn", role="plan", backend="local", tasks=12, frames=120, core_seconds=792.3, wall_seconds=55.0, overhead_core_seconds=40.0),
            StageCost(stage="render-reference", role="reference", backend="local", tasks=2, frames=2, core_seconds=3000.0, wall_seconds=200.0, overhead_core_seconds=20.0),
        ],
        machine=MachineInfo(host="ws01", cores=16, cpu="AMD EPYC 9654", platform="Linux-6.8-x86_64"),
        notes=["Reference frames rendered with the same seed.", "Tone mapping: Reinhard x/(1+x) + sRGB."],
    )


@pytest.fixture()
def report_and_run_dir(tmp_path: Path) -> tuple[Report, Path]:
    run_dir = tmp_path / "run"
    return _report(run_dir), run_dir


def test_html_shows_headline_frames_and_embedded_pngs(report_and_run_dir: tuple[Report, Path]) -> None:
    report, run_dir = report_and_run_dir
    html = render_html(report, run_dir)
    assert format_ratio(report.savings.ratio) == "23.4×"
    assert "23.4×" in html
    assert "PASS" in html
    assert "38.2 dB" in html
    assert "50.0 core-h" in html  # the full render, 180,000 core-s
    for frame in CHECK_FRAMES:
        assert f"Frame {frame}" in html
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == 4 * len(CHECK_FRAMES)
    assert base64.b64decode(uris[0]).startswith(PNG_MAGIC)
    assert "denoise:oidn" in html


def test_headline_reads_the_same_on_the_page_and_the_command_line(tmp_path: Path) -> None:
    report = _report(None)
    report.savings.core_seconds_calibration = 1692.3  # plan without it: 6,000 core-s, so 30x
    html = render_html(report, tmp_path)
    assert "23.4× <small>fewer CPU core-seconds than a full render</small>" in html
    assert "30.0× without the one-off calibration (1,692 core-s)" in html
    assert "16.8× including the 2 full-quality check frames rendered as evidence (3,000 core-s)" in html
    assert savings_line(report) == ("savings: 23.4x fewer CPU core-seconds (180,000 full vs 7,692 plan, 120 frames); "
                                    "30.0x without the one-off calibration (1,692 core-s)")
    assert format_ratio(123.4, sign="x") == "123x" and format_ratio(None) == "—"
    # A report written before reports carried figures and assumptions still renders, and says so.
    assert report.figures is None and "written before reports recorded their prices" in html
    assert "Not priced" in html and "Not simulated" in html


def test_html_is_self_contained(report_and_run_dir: tuple[Report, Path]) -> None:
    html = render_html(*report_and_run_dir)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r'<(link|script)\b', html)
    assert not re.search(r'src="(?!data:)', html)


def test_html_escapes_report_text(tmp_path: Path) -> None:
    report = _report(None, name="<script>alert(1)</script>")
    report.notes = ['note with <b>"quotes"</b> & ampersand']
    html = render_html(report, tmp_path)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;" in html and "&amp; ampersand" in html


def test_missing_and_broken_thumbnails_show_placeholders(report_and_run_dir: tuple[Report, Path]) -> None:
    report, run_dir = report_and_run_dir
    first = report.quality.frames[0]
    (run_dir / first.thumbnails["reference"]).unlink()
    (run_dir / first.thumbnails["flip"]).write_bytes(b"not a png")
    del report.quality.frames[1].thumbnails["before_post"]
    html = render_html(report, run_dir)
    assert "image missing" in html
    assert "image not a PNG" in html
    assert "image not produced" in html
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4 * len(CHECK_FRAMES) - 3


def test_failed_target_and_no_target(tmp_path: Path) -> None:
    report = _report(None)
    report.quality.meets_target = False
    assert "FAIL" in render_html(report, tmp_path)
    report.quality.flip_target = None
    report.quality.meets_target = None
    assert "No quality target" in render_html(report, tmp_path)


def test_write_report_round_trips(report_and_run_dir: tuple[Report, Path], tmp_path: Path) -> None:
    report, run_dir = report_and_run_dir
    json_path, html_path = write_report(report, run_dir, tmp_path / "out")
    assert json_path == tmp_path / "out" / "report.json"
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert Report.model_validate_json(json_path.read_text(encoding="utf-8")) == report
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.html", "report.json"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.update(surprise=1), id="unknown-top-level-field"),
        pytest.param(lambda d: d["savings"].update(speedup=2.0), id="unknown-nested-field"),
        pytest.param(lambda d: d.update(schema_version=2), id="future-schema-version"),
        pytest.param(lambda d: d["costs"][0].update(role="bogus"), id="bad-role"),
        pytest.param(lambda d: d.pop("machine"), id="missing-section"),
    ],
)
def test_report_json_rejects_bad_input(mutate, tmp_path: Path) -> None:
    data = json.loads(_report(None).model_dump_json())
    mutate(data)
    with pytest.raises(ValidationError):
        Report.model_validate_json(json.dumps(data))


def test_tonemap_png_downscales_and_handles_nan(tmp_path: Path) -> None:
    rgb = np.full((100, 1000, 3), 1.0, dtype=np.float32)
    rgb[0, 0] = np.nan
    rgb[1, 1] = -5.0
    path = tmp_path / "a" / "t.png"
    tonemap_png(rgb, path, max_width=480)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert _png_size(path) == (480, 48, 3)
    small = tmp_path / "small.png"
    tonemap_png(rgb[:20, :30], small)
    assert _png_size(small) == (30, 20, 3)
    # Scene value 1.0 -> Reinhard 0.5 -> sRGB ~0.735 -> 8-bit ~188.
    pixels = oiio.ImageBuf(str(small)).get_pixels(oiio.UINT8)
    assert abs(int(pixels[10, 10, 0]) - 188) <= 1
    assert not list(tmp_path.glob("**/*.tmp*"))


def test_error_map_png_uses_magma(tmp_path: Path) -> None:
    err = np.tile(np.linspace(0.0, 1.0, 600, dtype=np.float32), (40, 1))
    path = tmp_path / "flip.png"
    error_map_png(err, path, max_width=300)
    assert _png_size(path) == (300, 20, 3)
    pixels = oiio.ImageBuf(str(path)).get_pixels(oiio.UINT8).astype(int)
    assert pixels[10, 0].sum() < 30  # magma starts near black
    assert pixels[10, -1, 0] > 230 and pixels[10, -1, 2] < 200  # and ends pale yellow


@pytest.mark.parametrize(
    ("func", "array"),
    [
        pytest.param(tonemap_png, np.zeros((4, 4)), id="tonemap-2d"),
        pytest.param(error_map_png, np.zeros((4, 4, 3)), id="error-map-rgb"),
    ],
)
def test_image_writers_reject_wrong_shapes(func, array: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(ImageError):
        func(array, tmp_path / "x.png")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(42.5, "42.5 core-s", id="small"),
        pytest.param(1234.0, "1,234 core-s", id="hundreds"),
        pytest.param(7200.0, "2.00 core-h", id="hours"),
        pytest.param(180000.0, "50.0 core-h", id="many-hours"),
    ],
)
def test_format_core_time(value: float, text: str) -> None:
    assert format_core_time(value) == text


def test_other_formatters() -> None:
    assert format_ratio(123.4) == "123×"
    assert format_ratio(float("inf")) == "—"
    assert format_psnr(float("inf")) == "∞ dB"
    assert format_frames([10, 1, 2, 3]) == "1–3, 10"
    assert format_money(Decimal("0.001"), "USD") == "< 0.01 USD" and format_money(Decimal("-0.001"), "USD") == "> -0.01 USD"
    assert format_money(Decimal("-12.345"), "EUR") == "-12.35 EUR" and format_money(None, None) == "—"
