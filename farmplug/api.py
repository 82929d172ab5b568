"""The Python API for pipeline scripts: load a shot, make a plan, compile it, submit it, report on it.

Everything here is what the command line does, as functions (see ``docs/api.md``)::

    from farmplug import api

    shot = api.load_shot("shots/sh010/shot.yaml")
    plan = api.make_plan(shot, "shots/sh010/shot.yaml", "shots/sh010/plan.yaml", samples_factor=1 / 32)
    api.save_plan(plan, "shots/sh010/plan.yaml")
    graph = api.compile_graph("shots/sh010/plan.yaml", run_dir="shots/sh010/run")
    result = api.submit(graph, farm="local")            # runs it here; other farms: their job ids
    report, html = api.report("shots/sh010/run")

This module sits above the core, the stages and the farm backends (like the CLI); nothing in the
core imports it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from farmplug.errors import FarmplugError
from farmplug.graph import JobGraph, compile_plan, default_run_dir, save_graph
from farmplug.models import Plan, QualityTarget, Shot, default_check_frames, load_plan, load_shot
from farmplug.schema import save_model
from farmplug.stages.base import StageConfig
from farmplug.stages.registry import default_stages, descriptor_of, keyframe_stage, upscale_stage

__all__ = ["compile_graph", "load_plan", "load_shot", "make_plan", "plan_stages", "report", "save_plan", "submit"]


def plan_stages(*, frame_step: int = 1, guided: bool = False, resolution_scale: float = 1.0) -> list[StageConfig]:
    """The stages a plan gets by default: the default per-frame stages, the upscaler a
    ``resolution_scale`` below 1 needs, and with a frame step the stage that makes the frames
    between keyframes (``guided`` when asked), in chain order.

    Raises:
        ConfigError: no stage upscales by that factor, or none makes frames between keyframes.
        FarmplugError: ``guided`` asked of a stage that cannot be guided.
    """
    stages = default_stages()
    if resolution_scale != 1.0:
        stages = sorted([*stages, upscale_stage(resolution_scale)], key=lambda c: descriptor_of(c).order)
    if frame_step > 1:
        maker = keyframe_stage()
        if guided:
            if "guided" not in type(maker).model_fields:
                raise FarmplugError(f"the {maker.kind} stage cannot be guided")
            maker = maker.model_copy(update={"guided": True})
        stages.append(maker)
    return stages


def make_plan(
    shot: Shot,
    shot_file: str | Path,
    plan_file: str | Path,
    *,
    samples_factor: float = 1 / 32,
    frame_step: int = 1,
    guided: bool = False,
    chunk_size: int = 8,
    flip_target: float = 0.1,
    check_frames: str | Sequence[int] | None = None,
    check_count: int = 3,
    resolution_scale: float = 1.0,
) -> Plan:
    """A plan of ``shot`` with the registry's default stages (and, with a frame step, the stage that
    makes the frames between keyframes). ``shot`` is named relative to the plan file's folder.

    Raises:
        ConfigError: a setting makes no valid plan (the message names the field).
        FarmplugError: a check frame list does not parse.
    """
    from pydantic import ValidationError

    from farmplug.errors import ConfigError
    from farmplug.frames import parse_frames
    from farmplug.schema import describe_validation_error

    stages = plan_stages(frame_step=frame_step, guided=guided, resolution_scale=resolution_scale)
    shot_ref = os.path.relpath(Path(shot_file).absolute(), Path(plan_file).absolute().parent)
    try:
        plan = Plan(shot=shot_ref, samples_factor=samples_factor, frame_step=frame_step, stages=stages,
                    chunk_size=chunk_size, quality_target=QualityTarget(flip_mean_max=flip_target),
                    resolution_scale=resolution_scale)
    except ValidationError as err:
        raise ConfigError(f"invalid Plan: {describe_validation_error(err)}", path=plan_file) from None
    keys = frozenset(plan.keyframes(shot)) if frame_step > 1 else frozenset()
    if isinstance(check_frames, str):
        check_frames = parse_frames(check_frames)
    plan.check_frames = list(check_frames) if check_frames else default_check_frames(shot, check_count, avoid=keys)
    return plan


def save_plan(plan: Plan, path: str | Path) -> Path:
    """Write a plan YAML atomically."""
    save_model(plan, path)
    return Path(path)


def compile_graph(plan_file: str | Path, *, run_dir: str | Path | None = None) -> JobGraph:
    """The job graph of a plan file (default run folder: ``run-<shot>-<plan>`` beside the plan).

    Raises:
        ConfigError: the plan or its shot is invalid.
    """
    plan_file = Path(plan_file)
    plan, shot, shot_file = load_plan(plan_file)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(plan_file, shot)
    return compile_plan(plan, shot, plan_file=plan_file, shot_file=shot_file, run_dir=run_dir)


def submit(graph: JobGraph, *, farm: str = "local", options=None, connection=None):
    """Compile ``graph`` for ``farm`` and submit it (the local farm runs it here, to the end).

    ``graph.json`` is saved in the run folder first, so ``farmplug report RUN_DIR`` works once the
    farm has finished. Returns the backend's ``SubmitResult``.

    Raises:
        FarmplugError: unknown farm (lists the valid ones), no address configured, or the farm refused.
    """
    from farmplug.integrations.base import CompileOptions, connection_for, load_farm_config
    from farmplug.integrations.registry import create_farm

    backend = create_farm(farm)
    submission = backend.compile(graph, options or CompileOptions())
    if connection is None and not getattr(backend, "runs_here", False):
        connection = connection_for(farm, load_farm_config(None), f"FARMPLUG_{farm.upper()}")
    save_graph(graph, Path(graph.run_dir))
    return backend.submit(submission, connection)


def report(run_dir: str | Path, out_dir: str | Path | None = None):
    """Build ``report.json`` and ``report.html`` of a finished run; returns (Report, html path).

    Raises:
        FarmplugError: the run folder has no graph, or a record or frame is missing or corrupt.
    """
    from farmplug.report.build import build_report

    return build_report(run_dir, out_dir)
