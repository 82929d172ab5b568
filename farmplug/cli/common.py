"""What several verbs print: the report's headline, and JSON for scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def print_headline(report, html: Path) -> None:
    """Money and projection (when the report has them), savings, quality and the report's path, in
    the same words as the report pages (the same helpers make both)."""
    from farmplug.report.html import money_line, projection_line, savings_line

    q = report.quality
    verdict = "" if q.meets_target is None else ("  (meets target)" if q.meets_target else "  (MISSES target)")
    for line in (money_line(report), projection_line(report)):
        if line:
            print(line)
    print(savings_line(report))
    print(f"quality: mean FLIP {q.flip_mean:.4f}, PSNR {q.psnr_mean:.1f} dB, SSIM {q.ssim_mean:.3f}{verdict}")
    print(f"report: {html}")


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
