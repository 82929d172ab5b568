"""``farmplug report RUN_DIR...``: the savings report of finished runs (one shot, or a show)."""

from __future__ import annotations

import argparse
from pathlib import Path

from farmplug.cli.common import formatter, print_headline, print_json
from farmplug.errors import FarmplugError
from farmplug.worker import add_common


def add_parser(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser("report", help="build the savings report of finished run folders (one shot or a show)",
                         formatter_class=formatter)
    add_common(p)
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="finished run folders")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write report.html/json/csv (default: the run folder for one run; required for several)")
    p.add_argument("--prices", type=Path, default=None, help="prices YAML (currency, per core-hour, per GPU-hour...)")
    p.add_argument("--capacity", type=Path, default=None, help="farm capacity YAML (CPU nodes x cores, GPUs)")
    p.add_argument("--json", action="store_true", help="print the report's files and headline figures as JSON")


def run(args: argparse.Namespace) -> int:
    if len(args.run_dirs) == 1 and args.prices is None and args.capacity is None:
        from farmplug.report.build import build_report

        report, html = build_report(args.run_dirs[0], args.out or args.run_dirs[0])
        if args.json:
            print_json({"report": str(html), "json": str(html.with_suffix(".json")),
                        "savings": report.savings.model_dump(mode="json"),
                        "quality": report.quality.model_dump(mode="json", exclude={"frames"})})
        else:
            print_headline(report, html)
        return 0
    from farmplug.report.show import build_show_report

    if args.out is None:
        if len(args.run_dirs) > 1:
            raise FarmplugError("--out is required when reporting several run folders")
        args.out = args.run_dirs[0] / "show-report"
    show, html, json_path, csv_path = build_show_report(
        args.run_dirs, args.out, prices_file=args.prices, capacity_file=args.capacity
    )
    if args.json:
        print_json({"shots": len(show.shots), "report": str(html), "json": str(json_path), "csv": str(csv_path)})
        return 0
    print(f"{len(show.shots)} shots: report {html}")
    print(f"  data: {json_path}, {csv_path}")
    return 0
