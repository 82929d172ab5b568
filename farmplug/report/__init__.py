"""The savings report: what the plan cost against a full render, and the quality it delivered.

``model`` holds the ``report.json`` schema, ``images`` writes the thumbnails, ``html`` renders
the self-contained page producers read. ``build.build_report`` reports one run;
``show.build_show_report`` reports many runs (shots) rolled up per sequence and show, with money
and farm time when prices and capacity are given (imported from its module, not here, to keep
``import farmplug.report`` light).
"""

from farmplug.imageio.thumbnails import error_map_png, tonemap_png
from farmplug.report.html import render_html, write_report
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
