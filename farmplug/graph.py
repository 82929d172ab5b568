"""The job graph: a plan compiled into tasks (render chunks, then stage chunks) with dependencies.

Every task is a ``farmplug`` command line (an argument list, never a shell string), its output
files and its timing record, so any farm backend can run it and the report can be built from
what the tasks leave behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from farmplug.errors import ConfigError
from farmplug.frames import chunk, format_frames
from farmplug.models import Plan, Shot
from farmplug.render.base import frame_path
from farmplug.schema import StrictModel, load_model, save_model
from farmplug.timing import TIMING_SUFFIX

GRAPH_FILE = "graph.json"


class Task(StrictModel):
    """One unit of farm work over a chunk of frames."""

    id: str
    kind: Literal["render", "stage", "fallback"]
    stage: str = Field(description="render, or the stage kind (denoise, ...)")
    role: Literal["plan", "reference"]
    frames: list[int]
    depends_on: list[str] = Field(default_factory=list)
    argv: list[str] = Field(description="arguments after the 'farmplug' executable")
    outputs: list[str]
    timing: str = Field(description="path of the timing record this task writes")
    cores: int = Field(default=0, ge=0, description="CPU cores wanted (0 = all)")
    gpus: int = Field(default=0, ge=0)


class JobGraph(StrictModel):
    """Every task of one plan run, in a valid execution order."""

    schema_version: Literal[1] = 1
    name: str
    run_dir: str
    plan_file: str
    shot_file: str
    tasks: list[Task]

    def task(self, task_id: str) -> Task:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def topological(self) -> list[Task]:
        """Tasks in dependency order.

        Raises:
            ConfigError: a dependency names no task, or the dependencies form a cycle.
        """
        by_id = {t.id: t for t in self.tasks}
        order: list[Task] = []
        state: dict[str, int] = {}

        def visit(t: Task, trail: tuple[str, ...]) -> None:
            if state.get(t.id) == 2:
                return
            if state.get(t.id) == 1:
                raise ConfigError(f"job graph has a dependency cycle: {' -> '.join(trail + (t.id,))}")
            state[t.id] = 1
            for dep in t.depends_on:
                if dep not in by_id:
                    raise ConfigError(f"task {t.id} depends on unknown task {dep}")
                visit(by_id[dep], trail + (t.id,))
            state[t.id] = 2
            order.append(t)

        for t in self.tasks:
            visit(t, ())
        return order


def run_layout(run_dir: Path, shot: Shot) -> dict[str, str]:
    """Output patterns of a run: reduced render, full-quality reference, and the delivered frames."""
    name = shot.name.replace("/", "_")
    return {
        "render": str(run_dir / "work" / "render" / f"{name}.####.exr"),
        "reference": str(run_dir / "work" / "reference" / f"{name}.####.exr"),
        "final": str(run_dir / shot.output),
        "guide": str(run_dir / "work" / "guide" / f"{name}.####.exr"),
        "fallback": str(run_dir / "work" / "fallback" / f"{name}.####.exr"),
        "rejected": str(run_dir / "work" / "inbetween" / "rejected" / f"{name}.####.exr"),
    }


def _chunk_id(prefix: str, frames: list[int]) -> str:
    return f"{prefix}-{frames[0]:04d}-{frames[-1]:04d}"


def compile_plan(plan: Plan, shot: Shot, *, plan_file: Path, shot_file: Path, run_dir: Path) -> JobGraph:
    """Compile a plan into its job graph (no I/O).

    The frames rendered for real (every frame, or the keyframes when the plan has a frame step)
    go in render chunks of ``plan.chunk_size``; each per-frame stage (denoise) chunk depends on
    its render chunk only, so post work on a chunk starts as soon as its render is done. With an
    inbetween stage, each inbetween chunk fills the frames from its render chunk's first keyframe
    up to the next chunk's first keyframe, so it also depends on that next chunk (a one-keyframe
    offset); a fallback task after it re-renders whatever frames the inbetween could not vouch
    for. The check frames are rendered at full quality as reference tasks.
    """
    run_dir = Path(run_dir).absolute()
    layout = run_layout(run_dir, shot)
    scene = str(shot.scene_path(shot_file).absolute())
    passes = ",".join(sorted(plan.passes()))
    plan_abs = str(Path(plan_file).absolute())
    inbetween = plan.stage("inbetween")
    frame_stages = [s for s in plan.stages if s.kind != "inbetween"]
    tasks: list[Task] = []

    def timing_beside(pattern: str, tid: str) -> str:
        return str(Path(pattern).parent / f"{tid}{TIMING_SUFFIX}")

    def render_task(prefix: str, role: str, frames: list[int], samples: int, pattern: str, with_passes: str) -> Task:
        tid = _chunk_id(prefix, frames)
        argv = [
            "run", "render",
            "--scene", scene,
            "--output", pattern,
            "--frames", format_frames(frames),
            "--samples", str(samples),
            "--resolution-percentage", str(round(plan.resolution_scale * 100)),
            "--task", tid,
            "--role", role,
            "--timing", timing_beside(pattern, tid),
        ]
        if with_passes:
            argv += ["--passes", with_passes]
        if plan.threads:
            argv += ["--threads", str(plan.threads)]
        return Task(
            id=tid, kind="render", stage="render", role=role, frames=frames, argv=argv,
            outputs=[str(frame_path(pattern, f)) for f in frames],
            timing=timing_beside(pattern, tid),
            cores=plan.threads or 0,
        )

    def stage_task(stage, frames: list[int], source: str, target: str, depends_on: list[str], extra: list[str]) -> Task:
        tid = _chunk_id(stage.kind, frames)
        return Task(
            id=tid, kind="stage", stage=stage.kind, role="plan", frames=frames, depends_on=depends_on,
            argv=[
                "run", stage.kind,
                "--plan", plan_abs,
                "--input", source,
                "--output", target,
                "--frames", format_frames(frames),
                "--task", tid,
                "--timing", timing_beside(target, tid),
                *extra,
            ],
            outputs=[str(frame_path(target, f)) for f in frames],
            timing=timing_beside(target, tid),
            gpus=0 if stage.device == "cpu" else 1,
        )

    rendered = plan.keyframes(shot) if inbetween else shot.frames.frames
    render_chunks = chunk(rendered, plan.chunk_size)
    last_of_chunk: list[Task] = []
    for frames in render_chunks:
        upstream = render_task("render", "plan", frames, plan.samples_for(shot), layout["render"], passes)
        tasks.append(upstream)
        source = layout["render"]
        for index, stage in enumerate(frame_stages):
            last = index == len(frame_stages) - 1
            target = layout["final"] if last else str(run_dir / "work" / stage.kind / Path(layout["render"]).name)
            tasks.append(stage_task(stage, frames, source, target, [upstream.id], []))
            upstream, source = tasks[-1], target
        last_of_chunk.append(upstream)

    if inbetween is not None:
        keyed = layout["final"] if frame_stages else layout["render"]
        keys = set(rendered)
        for index, frames in enumerate(render_chunks):
            if index + 1 < len(render_chunks):
                span_end = render_chunks[index + 1][0]
                depends = [last_of_chunk[index].id, last_of_chunk[index + 1].id]
            else:
                span_end = frames[-1]
                depends = [last_of_chunk[index].id]
            targets = [f for f in range(frames[0], span_end + 1) if f not in keys]
            if not targets:
                continue
            extra = [
                "--step", str(plan.frame_step),
                "--confidence", _confidence_file(run_dir, targets),
                "--rejected", layout["rejected"],
            ]
            if inbetween.guided:
                guide = render_task("guide", "plan", targets, inbetween.guide_samples, layout["guide"], "albedo,depth,motion,normal")
                guide.stage = "guide"
                tasks.append(guide)
                depends = [*depends, guide.id]
                extra += ["--guide", layout["guide"]]
            span = list(range(frames[0], span_end + 1))
            task = stage_task(inbetween, span, keyed, layout["final"], depends, extra)
            # The in-between frames that pass go to the final pattern; the record lists the rest.
            task.outputs = [_confidence_file(run_dir, targets)]
            tasks.append(task)
            tid = _chunk_id("fallback", targets)
            tasks.append(
                Task(
                    id=tid, kind="fallback", stage="fallback", role="plan", frames=targets, depends_on=[task.id],
                    argv=[
                        "run", "fallback",
                        "--plan", plan_abs,
                        "--confidence", _confidence_file(run_dir, targets),
                        "--run-dir", str(run_dir),
                        "--task", tid,
                        "--timing", timing_beside(layout["fallback"], tid),
                    ],
                    outputs=[str(frame_path(layout["final"], f)) for f in targets],
                    timing=timing_beside(layout["fallback"], tid),
                    cores=plan.threads or 0,
                )
            )

    # Full-quality reference renders of the check frames: the evidence behind the report.
    for frames in chunk(sorted(plan.check_frames), plan.chunk_size):
        tasks.append(render_task("reference", "reference", frames, shot.samples, layout["reference"], ""))

    return JobGraph(
        name=shot.name, run_dir=str(run_dir), plan_file=plan_abs, shot_file=str(Path(shot_file).absolute()), tasks=tasks
    )


def _confidence_file(run_dir: Path, targets: list[int]) -> str:
    return str(run_dir / "work" / "inbetween" / f"{_chunk_id('confidence', targets)}.json")


def save_graph(graph: JobGraph, run_dir: Path) -> Path:
    path = Path(run_dir) / GRAPH_FILE
    save_model(graph, path)
    return path


def load_graph(run_dir: Path) -> JobGraph:
    """Read a run folder's job graph.

    Raises:
        ConfigError: no graph.json there, or it is corrupt.
    """
    return load_model(JobGraph, Path(run_dir) / GRAPH_FILE)

