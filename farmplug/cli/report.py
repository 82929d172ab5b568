"""``farmplug report RUN_DIR...``: the savings report of finished runs (one shot, or a show).

One run and several are the same report (one shot, or many rolled up per sequence): each writes
``report.html``, ``report.json`` and ``report.csv``, with money at the given prices (or the
default example prices, said so), farm time on a given capacity, and a labelled projection to a
show size when one is asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import print_headline, print_json
from farmplug.errors import FarmplugError
from farmplug.worker import add_common, help_formatter, width_by_height

resolution = width_by_height("resolution")


def frame_count(text: str) -> int:
    """A number of frames, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a number of frames >= 1: {text!r}")
    return value


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("report", help="build the savings report of finished run folders (one shot or a show)",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folders")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write report.html/json/csv (default: the run folder for one run; required for several)")
    p.add_argument("--prices", type=Path, default=None,
                   help="prices YAML (currency, per core-hour, per GPU-hour...); without it, money is at farmplug's "
                        "default example prices (a copy of examples/prices.yaml), said so on the page")
    p.add_argument("--no-prices", action="store_true", help="no money at all: every figure in core-hours")
    p.add_argument("--capacity", type=Path, default=None,
                   help="farm capacity YAML (CPU nodes x cores, GPUs, core_speed); without it, no farm time")
    p.add_argument("--project-frames", type=frame_count, default=None, metavar="N",
                   help="project the measured savings to a show of N frames (a labelled projection)")
    p.add_argument("--project-resolution", type=resolution, default=None, metavar="WxH",
                   help="with --project-frames: at this resolution (cost assumed proportional to pixel count)")
    p.add_argument("--json", action="store_true", help="print the report's files and headline figures as JSON")


def run(args: argparse.Namespace) -> int:
    from farmplug.report.html import money_line, projection_line, savings_line
    from farmplug.report.show import ShowSize

    if args.no_prices and args.prices is not None:
        raise FarmplugError("give --prices FILE or --no-prices, not both")
    if args.project_resolution is not None and args.project_frames is None:
        raise FarmplugError("--project-resolution needs --project-frames (how many frames to project to)")
    project = None
    if args.project_frames is not None:
        width, height = args.project_resolution or (None, None)
        project = ShowSize(frames=args.project_frames, width=width, height=height)
    inputs = {"prices_file": args.prices, "capacity_file": args.capacity, "default_prices": not args.no_prices,
              "project": project}
    if len(args.run_dirs) == 1:
        from farmplug.report.build import build_report

        report, html = build_report(args.run_dirs[0], args.out or args.run_dirs[0], **inputs)
        if args.json:
            print_json({"report": str(html), "json": str(html.with_suffix(".json")), "csv": str(html.with_suffix(".csv")),
                        "savings": report.savings.model_dump(mode="json"),
                        "quality": report.quality.model_dump(mode="json", exclude={"frames"}),
                        "figures": report.figures.model_dump(mode="json"),
                        "projection": report.projection.model_dump(mode="json") if report.projection else None})
            return 0
        print_headline(report, html)
        print(f"  data: {html.with_suffix('.json')}, {html.with_suffix('.csv')}")
        return 0
    from farmplug.report.show import build_show_report

    if args.out is None:
        raise FarmplugError("--out is required when reporting several run folders")
    show, html, json_path, csv_path = build_show_report(args.run_dirs, args.out, **inputs)
    if args.json:
        print_json({"shots": len(show.shots), "report": str(html), "json": str(json_path), "csv": str(csv_path),
                    "figures": show.show.model_dump(mode="json"),
                    "projection": show.projection.model_dump(mode="json") if show.projection else None})
        return 0
    for line in (money_line(show), projection_line(show), savings_line(show)):
        if line:
            print(line)
    print(f"{len(show.shots)} shots: report {html}")
    print(f"  data: {json_path}, {csv_path}")
    return 0
