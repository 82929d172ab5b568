"""Render the savings report as one self-contained HTML page, and write it with its JSON.

The page works offline and can be mailed as a single file: no network references, CSS inline,
thumbnails embedded as ``data:`` URIs, charts as inline SVG or CSS bars. All text from the report
goes through jinja2 autoescaping, so a shot called ``<script>`` is shown, not run.

Two pages share the template ``report.html``: the single-run page (:func:`render_html`, PNG
thumbnails at full thumbnail size) and the show page (:func:`render_show_html`), whose per-shot
thumbnails are re-encoded as small JPEGs so a page with many shots stays a few MB.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import jinja2

from farmplug.frames import format_frames as _format_frames
from farmplug.report.model import FrameQuality, QualityFigures, Report, StageCost
from farmplug.schema import atomic_write_text

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_NAME = "report.html"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THUMBNAIL_KEYS = ("reference", "before_post", "result", "flip")
# Colour-blind-friendly (Okabe-Ito) colours for the plan's stages in the bar chart.
STAGE_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
FULL_COLOUR = "#9aa3ad"
CHECKS_COLOUR = "#c9ced4"
# Bars shorter than this (percent of the track) are drawn at this width so they stay visible.
MIN_BAR_PERCENT = 0.4


# ----------------------------------------------------------------------------- formatting


def format_core_time(seconds: float) -> str:
    """Core time for people: core-seconds, or core-hours from one core-hour up.

    Args:
        seconds: Core-seconds.

    Returns:
        E.g. ``"42.5 core-s"``, ``"1,234 core-s"``, ``"12.3 core-h"``; ``"—"`` when not finite.
    """
    if not math.isfinite(seconds):
        return "—"
    if abs(seconds) >= 3600:
        hours = seconds / 3600
        return f"{hours:,.1f} core-h" if abs(hours) >= 10 else f"{hours:,.2f} core-h"
    return f"{_number(seconds)} core-s"


def format_seconds(seconds: float) -> str:
    """Plain seconds with sensible precision (``"0.42"``, ``"12.3"``, ``"1,234"``)."""
    return _number(seconds) if math.isfinite(seconds) else "—"


def format_ratio(ratio: float) -> str:
    """A cost ratio like ``"23.4×"`` (``"123×"`` from 100 up, ``"—"`` when not finite)."""
    if not math.isfinite(ratio):
        return "—"
    return f"{ratio:,.0f}×" if abs(ratio) >= 100 else f"{ratio:.1f}×"


def format_psnr(psnr: float) -> str:
    """PSNR like ``"38.2 dB"``; identical images (infinite PSNR) read ``"∞ dB"``."""
    if math.isnan(psnr):
        return "—"
    if math.isinf(psnr):
        return "∞ dB" if psnr > 0 else "−∞ dB"
    return f"{psnr:.1f} dB"


def format_flip(value: float) -> str:
    """A FLIP error with three decimals (``"0.042"``)."""
    return f"{value:.3f}" if math.isfinite(value) else "—"


def format_ssim(value: float) -> str:
    """An SSIM with four decimals (``"0.9812"``)."""
    return f"{value:.4f}" if math.isfinite(value) else "—"


def format_frames(frames: list[int]) -> str:
    """Frame numbers as a short list with ranges: ``[1, 2, 3, 10]`` -> ``"1–3, 10"``."""
    return _format_frames(frames, sep=", ", dash="–") or "none"


def _number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# ----------------------------------------------------------------------------- view model


@dataclass(frozen=True)
class Thumbnail:
    """One thumbnail slot: a data URI, or a reason why there is none."""

    key: str
    caption: str
    data_uri: str | None
    missing_reason: str | None


@dataclass(frozen=True)
class Bar:
    """One bar of the cost chart, possibly split into coloured segments."""

    label: str
    value: float
    percent: float
    segments: tuple[tuple[str, float, str, float], ...]  # (name, percent of track, colour, value)


def _embed_png(run_dir: Path, name: str | None) -> tuple[str | None, str | None]:
    """Return ``(data_uri, None)`` or ``(None, reason)``; never raises for a bad file."""
    if not name:
        return None, "not produced"
    path = run_dir / name
    try:
        data = path.read_bytes()
    except OSError as err:
        log.warning("report thumbnail %s cannot be read: %s", path, err)
        return None, "missing"
    if not data.startswith(PNG_MAGIC):
        log.warning("report thumbnail %s is not a PNG; left out", path)
        return None, "not a PNG"
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii"), None


def _thumbnail_captions(report: Report) -> dict[str, str]:
    stages = ", ".join(report.plan.stages) or "no post"
    return {
        "reference": f"Reference · {report.shot.full_samples} spp",
        "before_post": f"Reduced render · {report.plan.samples} spp, before post",
        "result": f"Result · after {stages}",
        "flip": "FLIP error · result vs reference",
    }


def _frame_view(frame: FrameQuality, run_dir: Path, captions: dict[str, str]) -> dict[str, object]:
    thumbnails = []
    for key in THUMBNAIL_KEYS:
        uri, reason = _embed_png(run_dir, frame.thumbnails.get(key))
        thumbnails.append(Thumbnail(key, captions[key], uri, reason))
    rows: list[tuple[str, QualityFigures]] = [("Result", frame.result)]
    if frame.before_post is not None:
        rows.append(("Before post", frame.before_post))
    source = {
        "rendered": "rendered",
        "interpolated": "interpolated" + (f" · confidence {frame.confidence:.3f}" if frame.confidence is not None else ""),
        "fallback": "re-rendered: interpolation failed its confidence check"
        + (f" ({frame.confidence:.3f})" if frame.confidence is not None else ""),
    }[frame.source]
    return {"frame": frame.frame, "thumbnails": thumbnails, "rows": rows, "source": source, "kind": frame.source}


def _bars(report: Report) -> tuple[list[Bar], list[tuple[str, str]]]:
    """The cost chart: full, plan (split by stage) and checks, scaled to the largest."""
    savings = report.savings
    values = [savings.core_seconds_full, savings.core_seconds_plan, savings.core_seconds_checks]
    finite = [v for v in values if math.isfinite(v) and v > 0]
    scale = max(finite) if finite else 1.0

    def percent(value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            return 0.0
        return max(MIN_BAR_PERCENT, 100.0 * value / scale)

    plan_costs = [c for c in report.costs if c.role == "plan"]
    plan_total = savings.core_seconds_plan
    plan_percent = percent(plan_total)
    stage_sum = sum(c.core_seconds for c in plan_costs if c.core_seconds > 0)
    legend: list[tuple[str, str]] = []
    segments: list[tuple[str, float, str, float]] = []
    if stage_sum > 0:
        for index, cost in enumerate(c for c in plan_costs if c.core_seconds > 0):
            colour = STAGE_COLOURS[index % len(STAGE_COLOURS)]
            # Segments share the plan bar in proportion to their measured cost, so the bar's
            # length is always the headline plan figure even if the stage records miss a bit.
            segments.append((cost.stage, plan_percent * cost.core_seconds / stage_sum, colour, cost.core_seconds))
            legend.append((cost.stage, colour))
    else:
        segments.append(("plan", plan_percent, STAGE_COLOURS[0], plan_total))
        legend.append(("plan", STAGE_COLOURS[0]))
    full_bar = Bar(
        "Full render (traditional)",
        savings.core_seconds_full,
        percent(savings.core_seconds_full),
        (("full", percent(savings.core_seconds_full), FULL_COLOUR, savings.core_seconds_full),),
    )
    plan_bar = Bar("Plan (reduced + AI post)", plan_total, plan_percent, tuple(segments))
    checks_bar = Bar(
        "Check frames (evidence)",
        savings.core_seconds_checks,
        percent(savings.core_seconds_checks),
        (("checks", percent(savings.core_seconds_checks), CHECKS_COLOUR, savings.core_seconds_checks),),
    )
    legend = [("full render", FULL_COLOUR), *legend, ("check frames", CHECKS_COLOUR)]
    return [full_bar, plan_bar, checks_bar], legend


def _verdict(report: Report) -> dict[str, str]:
    quality = report.quality
    flip = format_flip(quality.flip_mean)
    if quality.flip_target is None:
        return {"state": "none", "label": "No quality target", "detail": f"FLIP mean {flip}"}
    target = format_flip(quality.flip_target)
    if quality.meets_target is True:
        return {"state": "pass", "label": "PASS · quality target met", "detail": f"FLIP mean {flip} ≤ target {target}"}
    if quality.meets_target is False:
        return {"state": "fail", "label": "FAIL · quality target missed", "detail": f"FLIP mean {flip} > target {target}"}
    return {"state": "none", "label": "Quality not judged", "detail": f"FLIP mean {flip}, target {target}"}


def _cost_rows(costs: list[StageCost]) -> list[dict[str, object]]:
    total = sum(c.core_seconds for c in costs if c.core_seconds > 0)
    rows = []
    for cost in costs:
        share = 100.0 * cost.core_seconds / total if total > 0 else 0.0
        per_frame = cost.core_seconds / cost.frames if cost.frames > 0 else float("nan")
        rows.append({"cost": cost, "share": share, "per_frame": per_frame})
    return rows


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        core_time=format_core_time,
        seconds=format_seconds,
        ratio=format_ratio,
        psnr=format_psnr,
        flip=format_flip,
        ssim=format_ssim,
        frames=format_frames,
        money=format_money,
        duration=format_duration,
        days=format_days,
        hours=format_core_hours,
        corehours=format_core_hours,
    )
    return env


# ----------------------------------------------------------------------------- public API


def render_html(report: Report, run_dir: Path) -> str:
    """Render ``report`` as one self-contained HTML page.

    Thumbnails named in ``report.quality.frames[].thumbnails`` are read from ``run_dir`` and
    embedded as base64 PNG data URIs; a missing or unreadable one becomes a labelled
    placeholder (and a logged warning), never an error.

    Args:
        report: The report to show.
        run_dir: Folder the thumbnail file names are relative to.

    Returns:
        The HTML text (UTF-8, no external references).

    Raises:
        jinja2.TemplateError: The packaged template is missing or broken (an install problem).
    """
    run_dir = Path(run_dir)
    savings = report.savings
    bars, legend = _bars(report)
    captions = _thumbnail_captions(report)
    context = {
        "report": report,
        "shot": report.shot,
        "plan": report.plan,
        "savings": savings,
        "quality": report.quality,
        "machine": report.machine,
        "saved_core_seconds": savings.core_seconds_full - savings.core_seconds_plan,
        "verdict": _verdict(report),
        "bars": bars,
        "legend": legend,
        "cost_rows": _cost_rows(report.costs),
        "frames": [_frame_view(f, run_dir, captions) for f in report.quality.frames],
        "shot_frames": report.shot.frame_end - report.shot.frame_start + 1,
        "page": "shot",
    }
    return _environment().get_template(TEMPLATE_NAME).render(context)


def write_report(report: Report, run_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and the self-contained ``report.html`` into ``out_dir``.

    Both files are written atomically (temp file + rename); ``out_dir`` is created.

    Args:
        report: The report to write.
        run_dir: Folder the thumbnail file names are relative to.
        out_dir: Destination folder.

    Returns:
        ``(json_path, html_path)``.

    Raises:
        OSError: A file cannot be written.
        jinja2.TemplateError: The packaged template is missing or broken.
    """
    out_dir = Path(out_dir)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    html = render_html(report, run_dir)
    atomic_write_text(json_path, report.model_dump_json(indent=2) + "\n")
    atomic_write_text(html_path, html)
    log.info("wrote report %s and %s", json_path, html_path)
    return json_path, html_path


# ----------------------------------------------------------------------------- show page

#: Width of the JPEG thumbnails of the show page, and their JPEG quality.
SHOW_THUMBNAIL_WIDTH = 320
SHOW_JPEG_QUALITY = 82
SHOW_THUMBNAIL_KEYS = ("reference", "result", "flip")


def format_money(amount: Decimal | None, currency: str | None) -> str:
    """Money rounded to cents with the currency (``"1,234.50 USD"``); ``"—"`` without prices.

    A positive amount under half a cent reads ``"< 0.01 USD"`` rather than a misleading ``0.00``.
    """
    if amount is None or currency is None:
        return "—"
    from farmplug.cost import format_money as _money

    if 0 < amount < Decimal("0.005"):
        return f"< 0.01 {currency}"
    return _money(amount, currency)


def format_core_hours(hours: float | None) -> str:
    """Core-hours in one unit for tables: ``"1,234 core-h"``, ``"12.3 core-h"``, ``"0.60 core-h"``."""
    if hours is None or not math.isfinite(hours):
        return "—"
    if 0 < abs(hours) < 0.005:
        return "< 0.01 core-h"
    return f"{_number(hours)} core-h"


def format_duration(seconds: float | None) -> str:
    """Farm time for people: ``"45 s"``, ``"12.5 min"``, ``"3.2 h"``, ``"2.4 days"``; ``"—"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    magnitude = abs(seconds)
    if magnitude < 120:
        return f"{seconds:.0f} s" if magnitude >= 10 else f"{seconds:.1f} s"
    if magnitude < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if magnitude < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_days(days: float | None) -> str:
    """Days saved: ``"10.9 days"``, or hours/minutes when under a day."""
    return "—" if days is None else format_duration(days * 86400)


def _jpeg_uri(path: Path, width: int = SHOW_THUMBNAIL_WIDTH) -> tuple[str | None, str | None]:
    """A small JPEG data URI of an image file, or ``(None, reason)``; never raises for a bad file."""
    import OpenImageIO as oiio

    if not path.is_file():
        return None, "missing"
    buf = oiio.ImageBuf(str(path))
    if buf.has_error or buf.spec().width <= 0:
        log.warning("report thumbnail %s cannot be read: %s", path, buf.geterror())
        return None, "unreadable"
    spec = buf.spec()
    if spec.width > width:
        height = max(1, round(spec.height * width / spec.width))
        buf = oiio.ImageBufAlgo.resize(buf, roi=oiio.ROI(0, width, 0, height, 0, 1, 0, spec.nchannels))
    if buf.spec().nchannels > 3:
        buf = oiio.ImageBufAlgo.channels(buf, (0, 1, 2))
    fd, tmp = tempfile.mkstemp(suffix=".jpg")
    os.close(fd)
    try:
        buf.specmod().attribute("Compression", f"jpeg:{SHOW_JPEG_QUALITY}")
        if not buf.write(tmp, "uint8"):
            log.warning("report thumbnail %s cannot be re-encoded: %s", path, buf.geterror())
            return None, "unreadable"
        data = Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), None


def _anchor(name: str) -> str:
    return "shot-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _show_bars(report) -> tuple[list[Bar], list[tuple[str, str]]]:
    """The show's cost bars (core-hours): full, plan split by stage, checks."""
    show = report.show
    full_s, plan_s, check_s = (show.full_core_hours * 3600, show.plan_core_hours * 3600, show.check_core_hours * 3600)
    scale = max(v for v in (full_s, plan_s, check_s, 1e-12) if math.isfinite(v))

    def percent(value: float) -> float:
        return max(MIN_BAR_PERCENT, 100.0 * value / scale) if math.isfinite(value) and value > 0 else 0.0

    from farmplug.schedule import stage_colours

    plan_costs = [c for c in report.costs if c.role == "plan" and c.core_seconds > 0]
    stage_sum = sum(c.core_seconds for c in plan_costs)
    segments, legend = [], []
    by_stage: dict[str, float] = {}
    from farmplug.stages.registry import display_rank

    for cost in sorted(plan_costs, key=lambda c: display_rank(c.stage)):
        by_stage[cost.stage] = by_stage.get(cost.stage, 0.0) + cost.core_seconds
    # The timelines' colours, so a stage is the same colour in every chart of the page.
    colours = stage_colours(by_stage)
    for stage, seconds in by_stage.items():
        colour = colours[stage]
        segments.append((stage, percent(plan_s) * seconds / stage_sum, colour, seconds))
        legend.append((stage, colour))
    if not segments:
        segments, legend = [("plan", percent(plan_s), STAGE_COLOURS[0], plan_s)], [("plan", STAGE_COLOURS[0])]
    bars = [
        Bar("Full render (traditional)", full_s, percent(full_s), (("full", percent(full_s), FULL_COLOUR, full_s),)),
        Bar("Plan (reduced + AI post)", plan_s, percent(plan_s), tuple(segments)),
        Bar("Check frames (evidence)", check_s, percent(check_s), (("checks", percent(check_s), CHECKS_COLOUR, check_s),)),
    ]
    return bars, [("full render", FULL_COLOUR), *legend, ("check frames", CHECKS_COLOUR)]


def _shot_detail(entry, extras, out_dir: Path) -> dict[str, object]:
    stages = ", ".join(entry.plan.stages) or "no post"
    captions = {
        "reference": f"Reference · {entry.shot.full_samples} spp",
        "result": f"Result · {entry.plan.samples} spp + {stages}",
        "flip": "FLIP error (black = none)",
    }
    frames = []
    for frame in entry.quality.frames:
        thumbs = []
        for key in SHOW_THUMBNAIL_KEYS:
            name = frame.thumbnails.get(key)
            uri, reason = _jpeg_uri(out_dir / name) if name else (None, "not produced")
            thumbs.append(Thumbnail(key, captions[key], uri, reason))
        frames.append({"frame": frame.frame, "thumbnails": thumbs, "figures": frame.result, "kind": frame.source,
                       "source": frame.source})
    return {
        "entry": entry, "anchor": _anchor(entry.shot.name), "frames": frames,
        "timelines": extras.shot_timelines.get(entry.shot.name),
    }


def _verdict_of(figures) -> dict[str, str]:
    if figures.shots_failing_target:
        return {"state": "fail", "label": f"{figures.shots_failing_target} shot{'s' if figures.shots_failing_target != 1 else ''} miss the quality target"}
    return {"state": "pass", "label": "Quality target met" + (" on every shot" if figures.shots > 1 else "")}


def render_show_html(report, extras, out_dir: Path) -> str:
    """Render a :class:`~farmplug.report.model.ShowReport` as one self-contained HTML page.

    Args:
        report: The show report.
        extras: Its inline SVG timelines (:class:`farmplug.report.show.ShowExtras`).
        out_dir: Folder the thumbnail names are relative to.

    Returns:
        The HTML text (UTF-8, no external references).

    Raises:
        jinja2.TemplateError: The packaged template is missing or broken (an install problem).
    """
    out_dir = Path(out_dir)
    bars, legend = _show_bars(report)
    detail_count = report.assumptions.detail_shots
    details = [_shot_detail(e, extras, out_dir) for e in report.shots[:detail_count]]
    context = {
        "page": "show",
        "report": report,
        "show": report.show,
        "money": report.show.currency is not None,
        "schedule": report.show.full_makespan_s is not None,
        "currency": report.show.currency,
        "bars": bars,
        "legend": legend,
        "verdict": _verdict_of(report.show),
        "details": details,
        "anchors": {d["entry"].shot.name: d["anchor"] for d in details},
        "show_timelines": extras.show_timelines,
        "sequence_count": len(report.sequences),
    }
    return _environment().get_template(TEMPLATE_NAME).render(context)


def write_show_report(report, extras, out_dir: Path) -> tuple[Path, Path]:
    """Write the show's ``report.json`` and self-contained ``report.html`` into ``out_dir``.

    Returns:
        ``(json_path, html_path)``.

    Raises:
        OSError: A file cannot be written.
        jinja2.TemplateError: The packaged template is missing or broken.
    """
    out_dir = Path(out_dir)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    html = render_show_html(report, extras, out_dir)
    atomic_write_text(json_path, report.model_dump_json(indent=2) + "\n")
    atomic_write_text(html_path, html)
    log.info("wrote show report %s and %s", json_path, html_path)
    return json_path, html_path
