"""The savings report: what the plan cost against a full render, and the quality it delivered.

``model`` holds the ``report.json`` schema, ``images`` writes the thumbnails, ``html`` renders
the self-contained page producers read.
"""

from farmplug.report.html import render_html, write_report
from farmplug.report.images import error_map_png, tonemap_png
from farmplug.report.model import (
    FrameQuality,
    MachineInfo,
    PlanInfo,
    QualityFigures,
    QualitySummary,
    Report,
    Savings,
    ShotInfo,
    StageCost,
)

__all__ = [
    "FrameQuality",
    "MachineInfo",
    "PlanInfo",
    "QualityFigures",
    "QualitySummary",
    "Report",
    "Savings",
    "ShotInfo",
    "StageCost",
    "error_map_png",
    "render_html",
    "tonemap_png",
    "write_report",
]
