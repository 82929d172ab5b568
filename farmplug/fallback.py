"""Fallback renders: frames the inbetween stage could not vouch for are rendered for real.

A fallback task reads its inbetween task's confidence record, renders the failed frames with the
plan's reduced settings and passes, runs the per-frame stages (denoise) on them, and writes them
to the delivered frames, so the sequence never holds a frame nobody vouched for. Its cost is part
of the plan's cost in the report.
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


def render_fallback_frames(plan_file: Path, confidence_file: Path, run_dir: Path, *, task: str) -> TimingRecord:
    """Render and post-process the frames listed as failed in ``confidence_file``.

    Raises:
        FarmplugError: the plan or record is invalid, or a render or stage fails.
    """
    from farmplug.render import BlenderRenderer, RenderRequest
    from farmplug.runner import frame_jobs, run_stage

    plan, shot, shot_file = load_plan(plan_file)
    verdicts = load_model(ConfidenceRecord, confidence_file)
    failed = verdicts.failed
    started = time.time()
    if not failed:
        log.info("%s: every in-between frame passed; nothing to render", task)
        return TimingRecord(task=task, stage="fallback", role="plan", backend="blender-cycles", started_at=started,
                            finished_at=time.time(), settings={"frames_rendered": 0})
    layout = run_layout(Path(run_dir).absolute(), shot)
    stages = [s for s in plan.stages if s.kind != "inbetween"]
    passes = frozenset().union(*(s.needs for s in stages)) if stages else frozenset()
    log.info("%s: rendering %d frames the inbetween stage could not vouch for: %s", task, len(failed), failed)
    render = BlenderRenderer().render(
        RenderRequest(
            scene=shot.scene_path(shot_file), frames=tuple(failed), output_pattern=layout["fallback"],
            samples=plan.samples_for(shot), resolution_percentage=round(plan.resolution_scale * 100),
            passes=passes, threads=plan.threads, task=task, role="plan",
        )
    )
    records = [render]
    source = layout["fallback"]
    for index, stage in enumerate(stages):
        last = index == len(stages) - 1
        work = Path(run_dir).absolute() / "work" / f"fallback-{stage.kind}" / Path(layout["fallback"]).name
        target = layout["final"] if last else str(work)
        records.append(run_stage(stage, frame_jobs(source, target, failed), task=task, plan=str(plan_file)))
        source = target
    per_frame = {f: FrameTiming(frame=f, wall_s=0.0, cpu_s=0.0, output=str(frame_path(layout["final"], f))) for f in failed}
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
