"""What several verbs print: the report's headline, and JSON for scripts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help that shows every option's default."""
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def print_headline(report, html: Path) -> None:
    s, q = report.savings, report.quality
    verdict = "" if q.meets_target is None else ("  (meets target)" if q.meets_target else "  (MISSES target)")
    print(
        f"savings: {s.ratio:.1f}x fewer CPU core-seconds "
        f"({s.core_seconds_full:,.0f} full vs {s.core_seconds_plan:,.0f} plan, {s.frames} frames)"
    )
    print(f"quality: mean FLIP {q.flip_mean:.4f}, PSNR {q.psnr_mean:.1f} dB, SSIM {q.ssim_mean:.3f}{verdict}")
    print(f"report: {html}")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
