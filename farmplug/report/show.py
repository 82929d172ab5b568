"""The report over many runs (shots): per shot, rolled up per sequence, and for the whole show.

The figures, CSV rows, assumptions and projection are the ones a single run gets
(:func:`farmplug.report.build.collect`, which also says what is measured and what extrapolated);
this module puts them on the show page: headline, cost bars and farm timelines for the show (idle
farm nodes not drawn, and back-to-back chunks merged so thousands of tasks draw as a few hundred
bars), a table per sequence and per shot (every shot), then thumbnails (small JPEGs) and per-shot
timelines inside a ``<details>`` for the first ``detail_shots`` shots only (the first one open), so
the single HTML file stays a few MB for any show size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from farmplug import __version__
from farmplug.cost import Prices
from farmplug.report.build import (
    CSV_COLUMNS,
    DETAIL_SHOTS,
    ShowSize,
    collect,
    figures_csv,
    report_inputs,
    sequence_from_name,
    write_csv,
)
from farmplug.report.model import ShowReport
from farmplug.schedule import Capacity, compact_schedule


@dataclass(frozen=True)
class ShowExtras:
    """What the page draws but ``report.json`` does not keep: inline SVG timelines.

    Attributes:
        show_timelines: ``(full, plan)`` SVGs for the whole show, or None without capacity.
        shot_timelines: ``(full, plan)`` SVGs per shot name, for the detail shots.
    """

    show_timelines: tuple[str, str] | None
    shot_timelines: dict[str, tuple[str, str]]


def build_show_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    prices: Prices | None = None,
    prices_file: str | Path | None = None,
    capacity: Capacity | None = None,
    capacity_file: str | Path | None = None,
    sequence_of: Callable[[str], str] | None = None,
    detail_shots: int = DETAIL_SHOTS,
    default_prices: bool = True,
    project: ShowSize | None = None,
) -> tuple[ShowReport, Path, Path, Path]:
    """Build ``report.html``, ``report.json`` and ``report.csv`` over the runs (one shot each).

    Args:
        run_dirs: Finished run folders (local runs or farm jobs), one shot each, in display order.
        out_dir: Where to write the report files and thumbnails (created).
        prices: The farm's prices.
        prices_file: Or a prices YAML to read (:func:`farmplug.cost.load_prices`).
        capacity: The farm's capacity; with none, no makespans and no timelines.
        capacity_file: Or a capacity YAML to read (:func:`farmplug.schedule.load_capacity`).
        sequence_of: Shot name -> sequence name (default :func:`sequence_from_name`).
        detail_shots: Shots (the first ones) shown with thumbnails and their own timelines.
        default_prices: With no prices given, money at farmplug's default example prices (named
            as such); False: every figure in core-hours only.
        project: A show size to project the measured savings to (a labelled projection).

    Returns:
        ``(report, html_path, json_path, csv_path)``.

    Raises:
        FarmplugError: no run folders; two runs of one shot; a run's graph, timing or
            confidence record is missing or corrupt (names the file); a prices file is bad or
            a price the work needs is missing or the prices make a cost zero (names the file and
            field); a capacity file is bad, e.g. ``cpu_nodes: 0`` or ``core_speed: 0``, or has no
            GPU for GPU tasks (names the file and field); a measured cost is zero.
    """
    from farmplug.report.html import write_show_report

    out_dir = Path(out_dir)
    prices, capacity = report_inputs(prices, prices_file, capacity, capacity_file, default_prices=default_prices)
    collected = collect([Path(d) for d in run_dirs], out_dir, prices=prices, capacity=capacity,
                        sequence_of=sequence_of, detail_shots=detail_shots, project=project)
    report = ShowReport(
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        farmplug_version=__version__,
        show=collected.show,
        sequences=collected.sequences,
        shots=[w.entry for w in collected.works],
        costs=collected.costs,
        assumptions=collected.assumptions,
        notes=collected.notes,
        projection=collected.projection,
    )
    extras = ShowExtras(show_timelines=collected.timelines, shot_timelines=collected.shot_timelines)
    json_path, html_path = write_show_report(report, extras, out_dir)
    return report, html_path, json_path, write_csv(out_dir, collected)


__all__ = ["CSV_COLUMNS", "DETAIL_SHOTS", "ShowExtras", "ShowSize", "build_show_report", "compact_schedule",
           "figures_csv", "sequence_from_name"]
