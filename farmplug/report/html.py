"""Render the savings report as one self-contained HTML page, and write it with its JSON.

The page works offline and can be mailed as a single file: no network references, CSS inline,
thumbnails embedded as ``data:`` URIs, charts as inline SVG or CSS bars. All text from the report
goes through jinja2 autoescaping, so a shot called ``<script>`` is shown, not run.

A single run is the show report of one shot, so the two pages are built from the same blocks
(``templates/_blocks.html``: savings headline, projection, cost bars and table, timelines,
quality per check frame, assumptions, notes) in the same layout (``templates/_layout.html``):
``report.html``, the single-run page (:func:`render_html`, PNG thumbnails at full thumbnail
size), and ``show.html`` (:func:`render_show_html`), whose per-shot thumbnails are re-encoded as
small JPEGs so a page with many shots stays a few MB. The headline's words come from
:func:`headline` here, which :func:`savings_line` also uses, so the pages and the command line
say the same.
"""

from __future__ import annotations

import base64
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from farmplug.frames import format_frames as _format_frames
from farmplug.report.model import Report
from farmplug.schema import atomic_write_text

if TYPE_CHECKING:
    from farmplug.report.model import (
        CapacityInfo,
        Figures,
        PlanInfo,
        PricesInfo,
        Projection,
        QualityFigures,
        QualitySummary,
        ShotInfo,
        StageCost,
    )

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_NAME = "report.html"
SHOW_TEMPLATE_NAME = "show.html"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
THUMBNAIL_KEYS = ("reference", "before_post", "result", "flip")
#: Width of the JPEG thumbnails of the show page, and their JPEG quality.
SHOW_THUMBNAIL_WIDTH = 320
SHOW_JPEG_QUALITY = 82
SHOW_THUMBNAIL_KEYS = ("reference", "result", "flip")
# Colour-blind-friendly (Okabe-Ito) colour for a plan without stage costs.
PLAN_COLOUR = "#0072B2"
FULL_COLOUR = "#9aa3ad"
CHECKS_COLOUR = "#c9ced4"
# Bars shorter than this (percent of the track) are drawn at this width so they stay visible.
MIN_BAR_PERCENT = 0.4
PROJECTION_HINT = ("farmplug report RUN_DIR... --project-frames 2400 [--project-resolution 1920x1080] "
                   "applies these measured savings to a show of that size.")


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


def format_ratio(ratio: float | None, sign: str = "×") -> str:
    """A cost ratio like ``"23.4×"`` (``"123×"`` from 100 up, ``"—"`` when unknown or not finite).

    Args:
        ratio: The ratio.
        sign: What follows the number: ``×`` on pages, ``x`` on a terminal.
    """
    if ratio is None or not math.isfinite(ratio):
        return "—"
    return f"{ratio:,.0f}{sign}" if abs(ratio) >= 100 else f"{ratio:.1f}{sign}"


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


def format_money(amount: Decimal | None, currency: str | None) -> str:
    """Money rounded to cents with the currency (``"1,234.50 USD"``); ``"—"`` without prices.

    An amount under half a cent reads ``"< 0.01 USD"`` (``"> -0.01 USD"`` below zero) rather than
    a misleading ``0.00``.
    """
    if amount is None or currency is None:
        return "—"
    from farmplug.cost import format_money as _money

    if 0 < amount < Decimal("0.005"):
        return f"< 0.01 {currency}"
    if Decimal("-0.005") < amount < 0:
        return f"> -0.01 {currency}"
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


# ----------------------------------------------------------------------------- headline


def describe_prices(prices: PricesInfo | None) -> str:
    """What the money is at, for people: the rates, and whose prices they are."""
    if prices is None:
        return "none given: figures in core-hours only"
    if prices.cpu_core_hour is not None:
        rates = [f"CPU {prices.cpu_core_hour} per core-hour"]
    else:
        rates = [f"CPU {prices.ghz_hour} per GHz-hour at {prices.cpu_ghz} GHz per core"]
    if prices.gpu_hour is not None:
        rates.append(f"GPU {prices.gpu_hour} per GPU-hour")
    if prices.licence_node_hour:
        rates.append(f"render licence {prices.licence_node_hour} per node-hour")
    text = f"{prices.currency}: {' · '.join(rates)}"
    if prices.default:
        return (f"default example prices ({text}; {prices.source}, a copy of examples/prices.yaml), "
                "not this farm's: give --prices FILE for its own")
    return text if prices.source.startswith("<") else f"{text} (from {prices.source})"


def describe_capacity(capacity: CapacityInfo) -> str:
    """The simulated farm for people, its per-core speed included."""
    gpus = f"{capacity.gpus} GPU slot{'s' if capacity.gpus != 1 else ''}"
    text = (f"{capacity.cpu_nodes} CPU nodes × {capacity.cores_per_node} cores, {gpus}, "
            f"core speed {capacity.core_speed:g}× that of the measuring machine")
    return text if capacity.source.startswith("<") else f"{text} (from {capacity.source})"


@dataclass(frozen=True)
class Headline:
    """The headline of a report in words, the same on both pages and on the command line.

    Attributes:
        ratio: Full render over plan CPU core-seconds, calibration included (``"21.1×"``).
        without_calibration: The ratio without the one-off calibration, or None when there was none.
        with_checks: The ratio counting the check frames rendered as evidence.
        saved: Core time saved (or lost), full render and plan.
        money_saved: Money saved (or, with ``money_lost``, lost), or None without prices.
        money_lost: The plan costs more money than the full render.
        money_flow: Full render and plan in money, and the money ratio.
        prices: What the money is at (:func:`describe_prices`).
        farm_saved: Farm time saved, or None without a capacity.
        farm_flow: Full render and plan farm time.
        farm_on: The simulated farm (:func:`describe_capacity`).
    """

    ratio: str
    without_calibration: str | None
    with_checks: str
    saved: str
    money_saved: str | None
    money_lost: bool
    money_flow: str | None
    prices: str
    farm_saved: str | None
    farm_flow: str | None
    farm_on: str | None


def _calibration_phrase(f: Figures, sign: str) -> str | None:
    if f.ratio_without_calibration is None:
        return None
    return (f"{format_ratio(f.ratio_without_calibration, sign)} without the one-off calibration "
            f"({format_core_time(f.calibration_core_hours * 3600)})")


def headline(f: Figures, prices: PricesInfo | None = None, capacity: CapacityInfo | None = None) -> Headline:
    """The headline of the figures ``f`` (a shot's, or a show's row) in words.

    Args:
        f: The figures.
        prices: The prices the money is at (None: no money).
        capacity: The farm the farm time was simulated on (None: not simulated).
    """
    full_s, plan_s, check_s = f.full_core_hours * 3600, f.plan_core_hours * 3600, f.check_core_hours * 3600
    saved_s = full_s - plan_s
    flow = f"full render {format_core_time(full_s)} → plan {format_core_time(plan_s)}"
    checks = f"{f.check_frames} full-quality check frame{'s' if f.check_frames != 1 else ''}"
    money = f.currency is not None and f.saved_cost is not None
    farm = f.full_makespan_s is not None and f.plan_makespan_s is not None
    return Headline(
        ratio=format_ratio(f.ratio),
        without_calibration=_calibration_phrase(f, "×"),
        with_checks=(f"{format_ratio(full_s / (plan_s + check_s))} including the {checks} rendered as evidence "
                     f"({format_core_time(check_s)})"),
        saved=(f"Saves {format_core_time(saved_s)}: {flow}" if saved_s >= 0
               else f"Costs {format_core_time(-saved_s)} more: {flow}"),
        money_saved=format_money(abs(f.saved_cost), f.currency) if money else None,
        money_lost=money and f.saved_cost < 0,
        money_flow=(f"full render {format_money(f.full_cost, f.currency)} → plan {format_money(f.plan_cost, f.currency)}"
                    f" · {format_ratio(f.cost_ratio)} cheaper") if money else None,
        prices=describe_prices(prices),
        farm_saved=format_days(f.saved_days) if farm else None,
        farm_flow=f"full render {format_duration(f.full_makespan_s)} → plan {format_duration(f.plan_makespan_s)}" if farm else None,
        farm_on=describe_capacity(capacity) if farm and capacity is not None else None,
    )


def _row(report) -> Figures:
    """The headline row of a single-run report (:meth:`Report.row`) or of a show report."""
    return report.row() if isinstance(report, Report) else report.show


def savings_line(report, *, sign: str = "x") -> str:
    """The command line's savings headline of a single-run or show report, in the pages' words.

    ``savings: 21.1x fewer CPU core-seconds (1,723 full vs 81 plan, 24 frames); 28.4x without the
    one-off calibration (20.0 core-s)``.
    """
    f = _row(report)
    line = (f"savings: {format_ratio(f.ratio, sign)} fewer CPU core-seconds ({f.full_core_hours * 3600:,.0f} full "
            f"vs {f.plan_core_hours * 3600:,.0f} plan, {f.frames} frames)")
    calibration = _calibration_phrase(f, sign)
    return f"{line}; {calibration}" if calibration else line


def money_line(report) -> str | None:
    """``money: saves 0.15 USD (full render 0.17 USD → plan 0.02 USD) at ...`` (``costs ... more`` for a
    loss), or None without prices."""
    f = _row(report)
    if f.currency is None or f.saved_cost is None:
        return None
    prices = report.assumptions.prices if report.assumptions is not None else None
    flow = f"full render {format_money(f.full_cost, f.currency)} → plan {format_money(f.plan_cost, f.currency)}"
    saved = (f"saves {format_money(f.saved_cost, f.currency)}" if f.saved_cost >= 0
             else f"costs {format_money(-f.saved_cost, f.currency)} more")
    return f"money: {saved} ({flow}) at {describe_prices(prices)}"


def projection_line(report) -> str | None:
    """``projected for 2,400 frames at 1920×1080: full ..., plan ..., saved ...``, or None."""
    view = _projection_view(report.projection, _resolutions(report))
    return view["sentence"] if view else None


def _resolutions(report) -> set[tuple[int, int]]:
    shots = [report.shot] if isinstance(report, Report) else [e.shot for e in report.shots]
    return {(s.width, s.height) for s in shots}


def _projection_view(p: Projection | None, measured: set[tuple[int, int]]) -> dict[str, object] | None:
    if p is None:
        return None
    if p.width is not None:
        at = f"{p.width}×{p.height}"
    elif len(measured) == 1:
        (w, h), = measured
        at = f"{w}×{h} (as measured)"
    else:
        at = "the measured resolutions"

    def both(hours: float, money: Decimal | None) -> str:
        return format_core_hours(hours) + (f" / {format_money(money, p.currency)}" if p.currency else "")

    return {
        "title": f"Projected for {p.frames:,} frames at {at}",
        "sentence": (f"projected for {p.frames:,} frames at {at}: full {both(p.full_core_hours, p.full_cost)}, "
                     f"plan {both(p.plan_core_hours, p.plan_cost)}, saved {both(p.saved_core_hours, p.saved_cost)}"),
        "rows": [("Full render (traditional)", p.full_core_hours, p.full_cost),
                 ("Plan (reduced + AI post)", p.plan_core_hours, p.plan_cost),
                 ("Saved", p.saved_core_hours, p.saved_cost)],
        "p": p,
    }


def _verdict(f: Figures, targets: list[float | None], ssim: float | None = None) -> dict[str, str]:
    """The quality card: pass / fail / no target, and the figures over the check frames."""
    flip = format_flip(f.flip_mean)
    known = sorted({t for t in targets if t is not None})
    over = (f"Over {f.check_frames} check frame{'s' if f.check_frames != 1 else ''}: FLIP p95 {format_flip(f.flip_p95)}"
            f" · PSNR {format_psnr(f.psnr_mean)}" + (f" · SSIM {format_ssim(ssim)}" if ssim is not None else "")
            + (f" · {f.fallback_frames} fallback frame{'s' if f.fallback_frames != 1 else ''} re-rendered"
               if f.fallback_frames else ""))
    if not known:
        return {"state": "none", "label": "No quality target", "detail": f"FLIP mean {flip}", "over": over}
    targets = ("target " if len(known) == 1 else "targets ") + ", ".join(format_flip(t) for t in known)
    if f.shots_failing_target:
        where = f" on {f.shots_failing_target} of {f.shots} shots" if f.shots > 1 else ""
        detail = f"FLIP mean {flip} > {targets}" if f.shots == 1 else f"FLIP mean {flip}; {targets}"
        return {"state": "fail", "label": f"FAIL · quality target missed{where}", "detail": detail, "over": over}
    where = " on every shot" if f.shots > 1 else ""
    detail = f"FLIP mean {flip} ≤ {targets}" if len(known) == 1 else f"FLIP mean {flip}; {targets}"
    return {"state": "pass", "label": f"PASS · quality target met{where}", "detail": detail, "over": over}


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
    money: str | None = None


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


def _captions(shot: ShotInfo, plan: PlanInfo) -> dict[str, str]:
    stages = ", ".join(plan.stages) or "no post"
    return {
        "reference": f"Reference · {shot.full_samples} spp",
        "before_post": f"Reduced render · {plan.samples} spp, before post",
        "result": f"Result · {plan.samples} spp + {stages}",
        "flip": "FLIP error · result vs reference (black = none)",
    }


def _frame_views(quality: QualitySummary, captions: dict[str, str], keys: tuple[str, ...],
                 embed: Callable[[str | None], tuple[str | None, str | None]]) -> list[dict[str, object]]:
    views = []
    for frame in quality.frames:
        thumbnails = [Thumbnail(key, captions[key], *embed(frame.thumbnails.get(key))) for key in keys]
        rows: list[tuple[str, QualityFigures]] = [("Result", frame.result)]
        if frame.before_post is not None:
            rows.append(("Before post", frame.before_post))
        score = f"{frame.confidence:.3f}" if frame.confidence is not None else None
        source = {
            "rendered": "rendered",
            "interpolated": "interpolated" + (f" · confidence {score}" if score else ""),
            "fallback": "re-rendered: interpolation failed its confidence check" + (f" ({score})" if score else ""),
        }[frame.source]
        views.append({"frame": frame.frame, "thumbnails": thumbnails, "rows": rows, "source": source,
                      "kind": frame.source})
    return views


def _bars(f: Figures, costs: list[StageCost]) -> tuple[list[Bar], list[tuple[str, str]]]:
    """The cost chart: full, plan (split by stage, in the timelines' colours) and checks, scaled to the largest."""
    from farmplug.schedule import stage_colours
    from farmplug.stages.registry import display_rank

    full_s, plan_s, check_s = f.full_core_hours * 3600, f.plan_core_hours * 3600, f.check_core_hours * 3600
    scale = max(v for v in (full_s, plan_s, check_s, 1e-12) if math.isfinite(v))

    def percent(value: float) -> float:
        return max(MIN_BAR_PERCENT, 100.0 * value / scale) if math.isfinite(value) and value > 0 else 0.0

    by_stage: dict[str, float] = {}
    for cost in sorted((c for c in costs if c.role == "plan" and c.core_seconds > 0), key=lambda c: display_rank(c.stage)):
        by_stage[cost.stage] = by_stage.get(cost.stage, 0.0) + cost.core_seconds
    stage_sum = sum(by_stage.values())
    # The timelines' colours, so a stage is the same colour in every chart of the page; segments
    # share the plan bar in proportion to their cost, so its length is always the headline figure.
    colours = stage_colours(by_stage)
    segments = [(stage, percent(plan_s) * seconds / stage_sum, colours[stage], seconds) for stage, seconds in by_stage.items()]
    legend = [(stage, colours[stage]) for stage in by_stage]
    if not segments:
        segments, legend = [("plan", percent(plan_s), PLAN_COLOUR, plan_s)], [("plan", PLAN_COLOUR)]
    money = [format_money(v, f.currency) if f.currency else None for v in (f.full_cost, f.plan_cost, f.check_cost)]
    bars = [
        Bar("Full render (traditional)", full_s, percent(full_s), (("full", percent(full_s), FULL_COLOUR, full_s),), money[0]),
        Bar("Plan (reduced + AI post)", plan_s, percent(plan_s), tuple(segments), money[1]),
        Bar("Check frames (evidence)", check_s, percent(check_s), (("checks", percent(check_s), CHECKS_COLOUR, check_s),),
            money[2]),
    ]
    return bars, [("full render", FULL_COLOUR), *legend, ("check frames", CHECKS_COLOUR)]


def _cost_rows(costs: list[StageCost]) -> list[dict[str, object]]:
    total = sum(c.core_seconds for c in costs if c.core_seconds > 0)
    rows = []
    for cost in costs:
        share = 100.0 * cost.core_seconds / total if total > 0 else 0.0
        per_frame = cost.core_seconds / cost.frames if cost.frames > 0 else float("nan")
        rows.append({"cost": cost, "share": share, "per_frame": per_frame})
    return rows


def _common(report, f: Figures, costs: list[StageCost], verdict: dict[str, str]) -> dict[str, object]:
    """What both pages show the same way: headline, projection, bars, stage costs, assumptions, notes."""
    a = report.assumptions
    bars, legend = _bars(f, costs)
    return {
        "report": report,
        "figures": f,
        "headline": headline(f, a.prices if a else None, a.capacity if a else None),
        "verdict": verdict,
        "bars": bars,
        "legend": legend,
        "cost_rows": _cost_rows(costs),
        "assumptions": a,
        "prices_text": describe_prices(a.prices) if a else None,
        "capacity_text": describe_capacity(a.capacity) if a and a.capacity else None,
        "projection": _projection_view(report.projection, _resolutions(report)),
        "projection_hint": PROJECTION_HINT,
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update({
        "core_time": format_core_time, "seconds": format_seconds, "ratio": format_ratio, "psnr": format_psnr,
        "flip": format_flip, "ssim": format_ssim, "frames": format_frames, "money": format_money,
        "duration": format_duration, "days": format_days, "corehours": format_core_hours,
    })
    return env


def _write(model, html: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` atomically (temp file + rename) into ``out_dir``."""
    out_dir = Path(out_dir)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    atomic_write_text(json_path, model.model_dump_json(indent=2) + "\n")
    atomic_write_text(html_path, html)
    log.info("wrote report %s and %s", json_path, html_path)
    return json_path, html_path


# ----------------------------------------------------------------------------- single-run page


def render_html(report: Report, run_dir: Path, *, timelines: tuple[str, str] | None = None) -> str:
    """Render ``report`` as one self-contained HTML page.

    Thumbnails named in ``report.quality.frames[].thumbnails`` are read from ``run_dir`` and
    embedded as base64 PNG data URIs; a missing or unreadable one becomes a labelled
    placeholder (and a logged warning), never an error.

    Args:
        report: The report to show.
        run_dir: Folder the thumbnail file names are relative to.
        timelines: ``(full, plan)`` inline SVG timelines of the simulated farm, if any.

    Returns:
        The HTML text (UTF-8, no external references).

    Raises:
        jinja2.TemplateError: The packaged template is missing or broken (an install problem).
    """
    run_dir = Path(run_dir)
    f = _row(report)
    context = _common(report, f, report.costs, _verdict(f, [report.quality.flip_target], report.quality.ssim_mean))
    context.update(
        shot=report.shot,
        plan=report.plan,
        savings=report.savings,
        quality=report.quality,
        machine=report.machine,
        frames=_frame_views(report.quality, _captions(report.shot, report.plan), THUMBNAIL_KEYS,
                            lambda name: _embed_png(run_dir, name)),
        timelines=timelines,
    )
    return _environment().get_template(TEMPLATE_NAME).render(context)


def write_report(report: Report, run_dir: Path, out_dir: Path, *,
                 timelines: tuple[str, str] | None = None) -> tuple[Path, Path]:
    """Write ``report.json`` and the self-contained ``report.html`` into ``out_dir``.

    Both files are written atomically (temp file + rename); ``out_dir`` is created.

    Args:
        report: The report to write.
        run_dir: Folder the thumbnail file names are relative to.
        out_dir: Destination folder.
        timelines: ``(full, plan)`` inline SVG timelines for the page, if any.

    Returns:
        ``(json_path, html_path)``.

    Raises:
        OSError: A file cannot be written.
        jinja2.TemplateError: The packaged template is missing or broken.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return _write(report, render_html(report, run_dir, timelines=timelines), out_dir)


# ----------------------------------------------------------------------------- show page


def _anchor(name: str) -> str:
    return "shot-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def _shot_detail(entry, extras, out_dir: Path) -> dict[str, object]:
    def embed(name: str | None) -> tuple[str | None, str | None]:
        return _jpeg_uri(out_dir / name) if name else (None, "not produced")

    return {
        "entry": entry, "anchor": _anchor(entry.shot.name),
        "frames": _frame_views(entry.quality, _captions(entry.shot, entry.plan), SHOW_THUMBNAIL_KEYS, embed),
        "timelines": extras.shot_timelines.get(entry.shot.name),
    }


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
    details = [_shot_detail(e, extras, out_dir) for e in report.shots[:report.assumptions.detail_shots]]
    context = _common(report, report.show, report.costs,
                      _verdict(report.show, [e.quality.flip_target for e in report.shots]))
    context.update(
        show=report.show,
        money=report.show.currency is not None,
        schedule=report.show.full_makespan_s is not None,
        currency=report.show.currency,
        details=details,
        anchors={d["entry"].shot.name: d["anchor"] for d in details},
        timelines=extras.show_timelines,
        sequence_count=len(report.sequences),
    )
    return _environment().get_template(SHOW_TEMPLATE_NAME).render(context)


def write_show_report(report, extras, out_dir: Path) -> tuple[Path, Path]:
    """Write the show's ``report.json`` and self-contained ``report.html`` into ``out_dir``.

    Returns:
        ``(json_path, html_path)``.

    Raises:
        OSError: A file cannot be written.
        jinja2.TemplateError: The packaged template is missing or broken.
    """
    return _write(report, render_show_html(report, extras, out_dir), out_dir)
