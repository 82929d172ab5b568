"""``farmplug demo``: a real Blender shot, rendered cheaply, denoised, measured and reported.

It builds a small animated Cycles scene in code, writes its ``shot.yaml`` and a ``plan.yaml``,
runs the plan on the embedded local farm (reduced render, OIDN denoise, full-quality reference
renders of the check frames) and writes ``report.json`` and ``report.html``. Run it again in the
same folder and finished tasks are skipped.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, fields
from pathlib import Path

from farmplug.cli.common import print_headline
from farmplug.errors import FarmplugError
from farmplug.graph import compile_plan, save_graph
from farmplug.models import FrameRangeModel, Plan, QualityTarget, Resolution, Shot, default_check_frames
from farmplug.schema import save_model
from farmplug.stages.registry import default_stages, keyframe_stage
from farmplug.worker import add_common, help_formatter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo; the defaults finish in a few minutes on 2 cores.

    With ``calibrate`` (the default) the plan is chosen by :mod:`farmplug.calibrate` among
    ``calibration_factors`` (at ``frame_step``); ``samples_factor`` is the fixed plan used
    without calibration, or when no candidate meets the target.

    1024 full samples against 32 for the plan (factor 1/32) with OIDN at high quality and
    prefiltered aux: chosen from bench/denoise_modes.py (docs/benchmarks.md), where it keeps
    the mean HDR-FLIP near 0.08 on this scene, with margin under the 0.1 target.
    """

    frames: int = 24
    width: int = 320
    height: int = 180
    samples: int = 1024
    samples_factor: float = 1 / 32
    threads: int | None = None
    chunk_size: int = 8
    check_frames: int = 3
    flip_target: float = 0.1
    frame_step: int = 1
    guided: bool = False
    calibrate: bool = True
    calibration_factors: tuple[float, ...] = (1 / 64, 1 / 32)
    budget_share: float = 0.10


def write_demo_files(out: Path, settings: DemoSettings) -> tuple[Path, Path]:
    """Write the demo's shot.yaml and plan.yaml (the scene lives in ``scene/``)."""
    shot = Shot(
        name="demo",
        scene=f"scene/demo_{settings.width}x{settings.height}_{settings.frames}f.blend",
        frames=FrameRangeModel(start=1, end=settings.frames),
        resolution=Resolution(width=settings.width, height=settings.height),
        samples=settings.samples,
        output="frames/demo.####.exr",
    )
    stages = default_stages()
    if settings.frame_step > 1:
        maker = keyframe_stage()
        stages.append(maker.model_copy(update={"guided": True}) if settings.guided else maker)
    plan = Plan(
        shot="shot.yaml",
        samples_factor=settings.samples_factor,
        frame_step=settings.frame_step,
        stages=stages,
        chunk_size=settings.chunk_size,
        quality_target=QualityTarget(flip_mean_max=settings.flip_target),
        threads=settings.threads,
    )
    keys = frozenset(plan.keyframes(shot)) if settings.frame_step > 1 else frozenset()
    plan.check_frames = default_check_frames(shot, settings.check_frames, avoid=keys)
    shot_file, plan_file = out / "shot.yaml", out / "plan.yaml"
    save_model(shot, shot_file)
    save_model(plan, plan_file)
    return shot_file, plan_file


def _calibrated_plan(out: Path, shot_file: Path, default_plan: Path, settings: DemoSettings) -> Path:
    """Calibrate the demo shot (the reference renders are the run's own, so nothing renders twice).

    Candidates: the calibration factors with denoise, at the demo's frame step. When none meets
    the target, the fixed plan is used and the report says the target is missed.
    """
    from farmplug.calibrate import Candidate
    from farmplug.execute import run_calibration
    from farmplug.models import load_plan

    fixed, _shot, _ = load_plan(default_plan)
    candidates = [Candidate(f, frame_step=settings.frame_step) for f in settings.calibration_factors]
    result = run_calibration(
        shot_file, out, candidates=candidates, check_frames=settings.check_frames,
        target=QualityTarget(flip_mean_max=settings.flip_target), chunk_size=settings.chunk_size,
        threads=settings.threads, run_dir=out, budget_share=settings.budget_share,
    )
    if result.plan_file:
        plan_file = out / result.plan_file
        if settings.guided and settings.frame_step > 1:
            plan, _, _ = load_plan(plan_file)
            maker = plan.keyframe_stage()
            plan.stages = [s.model_copy(update={"guided": True}) if s is maker else s for s in plan.stages]
            save_model(plan, plan_file)
        log.info("calibration chose %s: %s", result.recommendation, result.reason)
        return plan_file
    log.warning("calibration found no plan meeting the target (%s); running the fixed plan", result.reason)
    # On the calibration's check frames: their reference renders are already in the run folder.
    save_model(fixed.model_copy(update={"check_frames": list(result.check_frames)}), default_plan)
    return default_plan


def run_demo(out: Path, settings: DemoSettings = DemoSettings()):
    """Build, plan, run and report the demo shot in ``out``; returns (report, report.html path).

    Raises:
        FarmplugError: a step failed (its message names the file or task).
    """
    from farmplug.integrations.local import LocalFarm
    from farmplug.render.demo_scene import build_demo_scene
    from farmplug.report.build import build_report

    if settings.frames < 2:
        raise FarmplugError("the demo needs at least 2 frames")
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    shot_file, plan_file = write_demo_files(out, settings)
    scene = out / "scene" / f"demo_{settings.width}x{settings.height}_{settings.frames}f.blend"
    if not scene.is_file():
        log.info("building the demo scene %s", scene)
        build_demo_scene(scene, frames=settings.frames, resolution=(settings.width, settings.height), samples=settings.samples)
    from farmplug.models import load_plan

    if settings.calibrate:
        plan_file = _calibrated_plan(out, shot_file, plan_file, settings)
    plan, shot, _ = load_plan(plan_file)
    graph = compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=out)
    save_graph(graph, out)
    summary = LocalFarm().run(graph)
    log.info("local farm: ran %d tasks, skipped %d, %.1f s", len(summary.ran), len(summary.skipped), summary.wall_s)
    return build_report(out, out)


def add_parser(verbs: argparse._SubParsersAction) -> None:
    d = DemoSettings()
    p = verbs.add_parser("demo", help="build a Blender shot, render it cheaply, denoise, measure, report",
                         formatter_class=help_formatter)
    add_common(p)
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="run folder")
    p.add_argument("--frames", type=int, default=None, help=f"frames in the demo shot (default {d.frames})")
    p.add_argument("--width", type=int, default=None, help=f"width in pixels (default {d.width})")
    p.add_argument("--height", type=int, default=None, help=f"height in pixels (default {d.height})")
    p.add_argument("--samples", type=int, default=None, help=f"full-quality samples per pixel (default {d.samples})")
    p.add_argument("--samples-factor", type=float, default=None,
                   help="use this fixed plan (samples = full x this) instead of calibrating")
    p.add_argument("--threads", type=int, default=None, help="render threads (default: all cores)")
    p.add_argument("--frame-step", type=int, default=None, help="render every Nth frame, make the rest between them")
    p.add_argument("--guided", action="store_true", default=None, help="frame step: guide with cheap aux renders")
    p.add_argument("--budget-share", type=float, default=None,
                   help=f"the share of the full render calibration may spend (default {d.budget_share:g})")


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(DemoSettings)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.samples_factor is not None:
        overrides["calibrate"] = False
    report, html = run_demo(args.out, DemoSettings(**overrides))
    print_headline(report, html)
    line = prediction_line(Path(args.out), report)
    if line:
        print(line)
    return 0


def prediction_line(out: Path, report) -> str | None:
    """The calibration's predicted plan cost beside the run's measured one (None without a chosen plan)."""
    from farmplug.calibrate import CALIBRATION_FILE, CalibrationResult
    from farmplug.errors import ConfigError
    from farmplug.schema import load_model

    try:
        result = load_model(CalibrationResult, out / CALIBRATION_FILE)
    except ConfigError:
        return None
    if not result.plan_file:
        return None
    predicted = result.candidate(result.recommendation).cost.total_core_s
    measured = report.savings.core_seconds_plan - report.savings.core_seconds_calibration
    return (f"cost: calibration predicted {predicted:,.1f} core-s for the plan ({result.recommendation}), "
            f"the run measured {measured:,.1f} ({measured / predicted:.2f}x the prediction)")
