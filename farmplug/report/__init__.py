"""The savings report: what the plan cost against a full render, and the quality it delivered.

``model`` holds the ``report.json`` schemas, ``html`` renders the self-contained pages producers
read (thumbnails come from :mod:`farmplug.imageio.thumbnails`). ``build.build_report`` reports one
run and ``show.build_show_report`` many runs (shots) rolled up per sequence and show: the same
report, one shot or many, with the same ``report.csv`` rows, money (the given prices or the
default example ones), farm time on a capacity and a projection to a show size (both builders
are imported from their modules, not here, to keep ``import farmplug.report`` light).
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
