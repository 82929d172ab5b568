"""Fallback renders: frames a stage withheld (it could not vouch for them) are rendered for real.

A fallback task reads the withholding task's confidence record, renders the failed frames with
the plan's reduced settings and passes, runs the rest of the plan's chain on them (every stage
that works on rendered frames, in order), and writes them to the delivered frames, so the
sequence never holds a frame nobody vouched for. Its cost is part of the plan's cost in the report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from farmplug.errors import ConfigError
from farmplug.graph import run_layout
from farmplug.models import ConfidenceRecord, load_plan
from farmplug.render.base import frame_path
from farmplug.schema import load_model
from farmplug.timing import FrameTiming, TimingRecord

log = logging.getLogger(__name__)


def fallback_timing_folder(plan_file: Path, run_dir: Path) -> Path:
    """Where fallback tasks write their timing records (beside the fallback renders)."""
    _plan, shot, _ = load_plan(plan_file)
    return Path(run_layout(Path(run_dir).absolute(), shot).fallback).parent


def failed_frames(confidence_dir: Path, frames: list[int]) -> list[int]:
    """The frames of ``frames`` that a withholding task did not deliver, from every record in the folder.

    Raises:
        FarmplugError: a frame has no verdict (its task has not run) or a record is corrupt.
    """
    verdicts = {}
    for path in sorted(Path(confidence_dir).glob("confidence-*.json")):
        verdicts.update({v.frame: v for v in load_model(ConfidenceRecord, path).frames})
    missing = [f for f in frames if f not in verdicts]
    if missing:
        raise ConfigError(f"no verdict for frames {missing}; has the task that makes them run?", path=confidence_dir)
    return [f for f in frames if not verdicts[f].passed]


def render_fallback_frames(plan_file: Path, confidence_dir: Path, run_dir: Path, *, frames: list[int], task: str,
                           key: str = "") -> TimingRecord:
    """Render and post-process the frames of ``frames`` that the plan's withholding stage did not deliver.

    Raises:
        FarmplugError: the plan or a record is invalid, or a render or stage fails.
    """
    from farmplug.render import BlenderRenderer, RenderRequest
    from farmplug.runner import frame_jobs, run_stage

    plan, shot, shot_file = load_plan(plan_file)
    failed = failed_frames(confidence_dir, frames)
    started = time.time()
    if not failed:
        log.info("%s: every frame passed its check; nothing to render", task)
        return TimingRecord(task=task, stage="fallback", role="plan", backend="blender-cycles", started_at=started,
                            finished_at=time.time(), settings={"frames_rendered": 0})
    layout = run_layout(Path(run_dir).absolute(), shot)
    stages = plan.frame_stages()
    passes = frozenset().union(*(s.passes() for s in stages))
    log.info("%s: rendering %d frames that could not be vouched for: %s", task, len(failed), failed)
    render = BlenderRenderer().render(
        RenderRequest(
            scene=shot.scene_path(shot_file), frames=tuple(failed),
            # With no stage after the render, the render is what is delivered.
            output_pattern=layout.fallback if stages else layout.final,
            samples=plan.samples_for(shot), resolution_percentage=round(plan.resolution_scale * 100),
            passes=passes, threads=plan.threads, task=task, role="plan",
        )
    )
    records = [render]
    source = layout.fallback
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        target = layout.final if last else layout.fallback_stage(stage.kind)
        records.append(run_stage(stage, frame_jobs(source, target, failed), task=task, plan=str(plan_file), key=key))
        source = target
    per_frame = {f: FrameTiming(frame=f, wall_s=0.0, cpu_s=0.0, output=str(frame_path(layout.final, f))) for f in failed}
    for rec in records:
        for ft in rec.frames:
            if ft.frame not in per_frame:
                raise ConfigError(f"fallback stage reported an unexpected frame {ft.frame}")
            acc = per_frame[ft.frame]
            acc.wall_s += ft.wall_s
            acc.cpu_s += ft.cpu_s
            acc.gpu_s += ft.gpu_s
    return TimingRecord(
        task=task, stage="fallback", role="plan", backend="+".join(r.backend for r in records),
        started_at=started, finished_at=time.time(),
        overhead_wall_s=sum(r.overhead_wall_s for r in records), overhead_cpu_s=sum(r.overhead_cpu_s for r in records),
        frames=[per_frame[f] for f in failed],
        settings={"frames_rendered": len(failed), "samples": plan.samples_for(shot)},
    )
