"""The job graph: a plan compiled into tasks (render chunks, then stage chunks) with dependencies.

Every task is a ``farmplug`` command line (an argument list, never a shell string), its output
files and its timing record, so any farm backend can run it and the report can be built from
what the tasks leave behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import chunk, format_frame_set, keys_around
from farmplug.models import Plan, Shot
from farmplug.render.base import frame_path
from farmplug.schema import StrictModel, load_model, save_model
from farmplug.stages.base import StageConfig, StageDescriptor
from farmplug.stages.registry import descriptor_of
from farmplug.timing import TIMING_SUFFIX

GRAPH_FILE = "graph.json"


class Task(StrictModel):
    """One unit of farm work over a chunk of frames."""

    id: str
    layer: str = Field(description="tasks of one layer run the same command on different frames")
    kind: Literal["render", "stage", "fallback", "setup"] = Field(
        description="setup: work a stage's tasks wait for that makes no frame (building its inference engine)")
    stage: str = Field(description="render, or the stage kind (denoise, ...); engine for an engine build")
    role: Literal["plan", "reference"]
    frames: list[int]
    depends_on: list[str] = Field(default_factory=list)
    argv: list[str] = Field(description="arguments after the 'farmplug' executable")
    outputs: list[str]
    timing: str = Field(description="path of the timing record this task writes")
    cores: int = Field(default=0, ge=0, description="CPU cores wanted (0 = all)")
    gpus: int = Field(default=0, ge=0)
    reads: Literal["frame", "window", "keyframes"] = Field(
        default="frame", description="how it reads the chain's frames: the same frame, a window around it, or keyframes")
    window: int = Field(default=0, ge=0, description="frames each side it reads, when reads is window")
    aux_layer: str | None = Field(default=None, description="the aux render layer it reads frame by frame, if any")
    verdicts: str | None = Field(default=None, description="the confidence record it writes (stages that withhold frames)")
    delivers: list[str] = Field(
        default_factory=list, description="frames it writes when they pass its check (one per frame of the task)")
    inputs: list[str] = Field(default_factory=list, description="files it reads: scene, plan, its dependencies' outputs")


class JobGraph(StrictModel):
    """Every task of one plan run, in a valid execution order."""

    schema_version: Literal[1] = 1
    name: str
    run_dir: str
    plan_file: str
    shot_file: str
    tasks: list[Task]
    plan: Plan | None = Field(default=None, description="the plan the run was made from (the run folder needs no other file)")
    shot: Shot | None = Field(default=None, description="the shot the run was made from")

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


@dataclass(frozen=True)
class RunLayout:
    """Where everything of a run goes, under its run folder (one object used everywhere).

    Patterns hold ``####``. ``work/<layer>/`` holds each layer's intermediate frames and timing
    records; the delivered frames follow the shot's ``output`` pattern.
    """

    root: Path
    stem: str
    output: str

    def _work(self, *parts: str) -> str:
        return str(self.root.joinpath("work", *parts, f"{self.stem}.####.exr"))

    @property
    def render(self) -> str:
        """The reduced render."""
        return self._work("render")

    @property
    def reference(self) -> str:
        """Full-quality renders of the check frames."""
        return self._work("reference")

    @property
    def final(self) -> str:
        """The delivered frames."""
        return str(self.root / self.output)

    @property
    def fallback(self) -> str:
        """Frames rendered for real because a stage withheld them."""
        return self._work("fallback")

    def stage(self, kind: str) -> str:
        """A stage's output when another stage follows it."""
        return self._work(kind)

    def aux(self, layer: str) -> str:
        """An aux render (e.g. guide passes) of the frames a stage makes."""
        return self._work(layer)

    def rejected(self, kind: str) -> str:
        """Frames a stage withheld, kept for inspection."""
        return self._work(kind, "rejected")

    def verdicts_dir(self, kind: str) -> Path:
        """Where a withholding stage's tasks write their confidence records."""
        return self.root / "work" / kind

    @property
    def engine_dir(self) -> Path:
        """Where the engine-building tasks write their records (and timing records)."""
        return self.root / "work" / "engine"

    def fallback_stage(self, kind: str) -> str:
        """A stage's output inside a fallback task, when another stage follows it."""
        return self._work(f"fallback-{kind}")


def run_layout(run_dir: Path, shot: Shot) -> RunLayout:
    """The layout of the run of ``shot`` in ``run_dir``."""
    return RunLayout(root=Path(run_dir), stem=shot.stem, output=shot.output)


def default_run_dir(plan_file: Path, shot: Shot) -> Path:
    """Where a plan runs when no ``--run-dir`` is given: ``run-<shot>-<plan>`` beside the plan, so two
    plans of one shot never share a run folder."""
    return Path(plan_file).parent / f"run-{shot.stem}-{Path(plan_file).stem}"


def task_id(layer: str, frames: list[int]) -> str:
    """The id of the task of ``layer`` over ``frames``: ``render-0001-0008``.

    The CLI derives the same id from ``--layer`` and ``--frames``, so a farm can run a chunk
    knowing only its frames, and the timing record lands where the graph expects it.
    """
    return f"{layer}-{min(frames):04d}-{max(frames):04d}"


def timing_path(folder: str | Path, tid: str) -> str:
    """Where a task's timing record goes: beside its outputs."""
    return str(Path(folder) / f"{tid}{TIMING_SUFFIX}")


def confidence_path(folder: str | Path, targets: list[int]) -> str:
    """The confidence record of the inbetween task that made ``targets``."""
    return str(Path(folder) / f"{task_id('confidence', targets)}.json")


FRAMES_TOKEN = "{frames}"


def compile_plan(plan: Plan, shot: Shot, *, plan_file: Path, shot_file: Path, run_dir: Path,
                 frames: Sequence[int] | None = None, layer_prefix: str = "") -> JobGraph:
    """Compile a plan into its job graph (no I/O).

    The frames rendered for real (every frame, or the keyframes when the plan has a frame step)
    go in render chunks of ``plan.chunk_size``; each per-frame stage (denoise) chunk depends on
    its render chunk only, so post work on a chunk starts as soon as its render is done. With an
    inbetween stage, each inbetween chunk makes the frames from its render chunk's first keyframe
    up to the next chunk's first keyframe, so it also depends on that next chunk (a one-keyframe
    offset); a fallback task after it re-renders whatever frames the inbetween could not vouch
    for. The check frames are rendered at full quality as reference tasks.

    A stage whose config asks for an engine (:meth:`StageConfig.engine_build`: TensorRT for a GPU
    stage) gets one ``setup`` task, layer ``engine-KIND``, over all the frames of the stage's
    tasks, which all depend on it: on every farm the stage's layer then waits for it frame for
    frame (offset 0), with no other machinery, and no GPU task builds the engine itself.

    Every task of a layer runs the same command but for ``--frames``: the layer's command has
    :data:`FRAMES_TOKEN` where a chunk's frames go (see :func:`farm_layers`).

    ``frames`` restricts the graph to delivering those frames (calibration measures a plan on a
    few): only the keyframes they need are rendered. ``layer_prefix`` goes in front of every
    layer name (and so every task id), so several plans' graphs can be one job.
    """
    run_dir = Path(run_dir).absolute()
    layout = run_layout(run_dir, shot)
    scene = str(shot.scene_path(shot_file).absolute())
    plan_abs = str(Path(plan_file).absolute())
    maker = plan.keyframe_stage()
    frame_stages = plan.frame_stages()
    tasks: list[Task] = []

    def make(layer: str, kind: str, stage: str, role: str, template: list[str], frames: list[int], *,
             outputs: list[str], timing_dir: str, depends_on: list[str] = (), cores: int = 0, gpus: int = 0,
             **extra) -> Task:
        layer = layer_prefix + layer
        template = [layer if i > 0 and template[i - 1] == "--layer" else a for i, a in enumerate(template)]
        tid = task_id(layer, frames)
        argv = [format_frame_set(frames) if a == FRAMES_TOKEN else a for a in template]
        return Task(
            id=tid, layer=layer, kind=kind, stage=stage, role=role, frames=frames, depends_on=list(depends_on),
            argv=argv, outputs=outputs, timing=timing_path(timing_dir, tid), cores=cores, gpus=gpus, **extra,
        )

    def engine_task(config: StageConfig, stage_frames: list[int]) -> Task | None:
        """The task building the engine ``config``'s tasks load (None when they load none)."""
        build = config.engine_build()
        if build is None or not stage_frames:
            return None
        layer = f"engine-{config.kind}"
        record = str(layout.engine_dir / f"{task_id(layer_prefix + layer, stage_frames)}.json")
        width, height = build.shape
        template = ["run", "engine", "--layer", layer, "--frames", FRAMES_TOKEN, "--model", build.model,
                    "--shape", f"{width}x{height}", "--output", record]
        task = make(layer, "setup", "engine", "plan", template, stage_frames, outputs=[record],
                    timing_dir=str(layout.engine_dir), gpus=1, inputs=[build.model])
        tasks.append(task)
        return task

    def render_template(layer: str, role: str, samples: int, pattern: str, with_passes: frozenset[str],
                        percentage: int) -> list[str]:
        argv = [
            "run", "render", "--layer", layer, "--role", role,
            "--scene", scene, "--output", pattern, "--frames", FRAMES_TOKEN,
            "--samples", str(samples), "--resolution-percentage", str(percentage),
        ]
        if with_passes:
            argv += ["--passes", ",".join(sorted(with_passes))]
        if plan.threads:
            argv += ["--threads", str(plan.threads)]
        return argv

    def render_task(layer: str, role: str, frames: list[int], samples: int, pattern: str, passes: frozenset[str],
                    stage: str = "render", *, full_resolution: bool = True) -> Task:
        # The plan's render is at its resolution_scale; the references (the shot as it would be
        # delivered) and aux renders (guides for stages working at the delivered resolution) at 100%.
        percentage = 100 if full_resolution else round(plan.resolution_scale * 100)
        return make(
            layer, "render", stage, role, render_template(layer, role, samples, pattern, passes, percentage), frames,
            outputs=[str(frame_path(pattern, f)) for f in frames], timing_dir=str(Path(pattern).parent),
            cores=plan.threads or 0, inputs=[scene],
        )

    delivered = sorted(set(frames)) if frames is not None else shot.frames.frames
    outside = [f for f in delivered if not shot.frames.start <= f <= shot.frames.end]
    if outside:
        raise ConfigError(f"frames {outside} are outside the shot's frames {shot.frames.start}-{shot.frames.end}")
    # Frames each window stage needs of the stage before it, beyond the frames it makes: the
    # windows of the stages after it add up (each one reads its predecessor's neighbours).
    windows = [stage_window(s, descriptor_of(s)) for s in frame_stages]
    reaches = [sum(windows[i + 1:]) for i in range(len(windows))]
    if maker:
        rendered = _rendered(plan.keyframes(shot), delivered)
    else:
        # A shot's first and last frames have fewer neighbours: the stage uses the ones there are.
        rendered = _around(delivered, sum(windows), shot.frames.start, shot.frames.end)
    render_chunks = chunk(rendered, plan.chunk_size)
    # Per chain level, the task of each render chunk (level 0: the render itself).
    # With no stage working on rendered frames, the render itself is delivered.
    source = layout.render if frame_stages else layout.final
    levels: list[list[Task | None]] = [[]]
    for frames in render_chunks:
        levels[0].append(render_task("render", "plan", frames, plan.samples_for(shot), source, plan.passes(),
                                     full_resolution=False))
    for index, stage in enumerate(frame_stages):
        last = index == len(frame_stages) - 1
        target = layout.final if last else layout.stage(stage.kind)
        template = [
            "run", stage.kind, "--layer", stage.kind, "--plan", plan_abs,
            "--input", source, "--output", target, "--frames", FRAMES_TOKEN,
        ]
        window = windows[index]
        aux = stage.aux_render()
        if aux is not None:
            flag = descriptor_of(stage).aux_flag
            if flag is None:
                raise ConfigError(f"stage {stage.kind} asks for an aux render but declares no aux_flag")
            template += [flag, layout.aux(aux.layer)]
        # Restricted to some frames, a stage makes only those and the neighbours the stages after it read.
        needed = set(rendered) if maker else set(_around(delivered, reaches[index], shot.frames.start, shot.frames.end))
        stage_chunks = [[f for f in chunk_frames if f in needed] for chunk_frames in render_chunks]
        engine = engine_task(stage, sorted({f for frames in stage_chunks for f in frames}))
        level: list[Task | None] = []
        for position, frames in enumerate(stage_chunks):
            if not frames:
                level.append(None)
                continue
            depends = [levels[-1][position].id]
            aux_task = None
            if aux is not None:
                # The stage's guide over its frames (e.g. full-resolution passes for an upscaler).
                aux_task = render_task(aux.layer, "plan", frames, aux.samples, layout.aux(aux.layer), aux.passes,
                                       stage=aux.layer)
                tasks.append(aux_task)
                depends.append(aux_task.id)
            if window:
                # A window of neighbours reaches into the chunks around this one.
                lo, hi = frames[0] - window, frames[-1] + window
                depends += [t.id for other, t in enumerate(levels[-1])
                            if t is not None and other != position and t.frames[-1] >= lo and t.frames[0] <= hi]
            if engine is not None:
                depends.append(engine.id)
            level.append(make(
                stage.kind, "stage", stage.kind, "plan", template, frames, depends_on=depends,
                outputs=[str(frame_path(target, f)) for f in frames], timing_dir=str(Path(target).parent),
                gpus=1 if stage.uses_gpu() else 0, reads="window" if window else "frame", window=window,
                inputs=[plan_abs, *_outputs_of(depends, [t for t in levels[-1] if t is not None]),
                        *(aux_task.outputs if aux_task else [])],
                aux_layer=aux.layer if aux else None,
            ))
        levels.append(level)
        source = target
    # Chunk by chunk, so each chunk's chain is listed together (the farms' files keep this order).
    for position in range(len(render_chunks)):
        tasks += [level[position] for level in levels if level[position] is not None]
    last_of_chunk = levels[-1]

    if maker is not None:
        keyed = source
        keys = set(rendered)
        wanted = set(delivered)
        key_set = format_frame_set(rendered)
        verdicts_dir = str(layout.verdicts_dir(maker.kind))
        aux = maker.aux_render()
        maker_descriptor = descriptor_of(maker)
        withholds = maker_descriptor.withholds
        spans = []
        for index, frames in enumerate(render_chunks):
            has_next = index + 1 < len(render_chunks)
            span_end = render_chunks[index + 1][0] if has_next else frames[-1]
            spans.append([f for f in range(frames[0], span_end + 1) if f not in keys and f in wanted])
        engine = engine_task(maker, sorted({f for targets in spans for f in targets}))
        for index, targets in enumerate(spans):
            if not targets:
                continue
            has_next = index + 1 < len(render_chunks)
            depends = [last_of_chunk[index].id] + ([last_of_chunk[index + 1].id] if has_next else [])
            template = [
                "run", maker.kind, "--layer", maker.kind, "--plan", plan_abs,
                "--input", keyed, "--output", layout.final, "--frames", FRAMES_TOKEN, "--keys", key_set,
            ]
            if withholds:
                template += ["--confidence-dir", verdicts_dir, "--rejected", layout.rejected(maker.kind)]
            if aux is not None:
                aux_task = render_task(aux.layer, "plan", targets, aux.samples, layout.aux(aux.layer), aux.passes,
                                       stage=aux.layer)
                tasks.append(aux_task)
                depends.append(aux_task.id)
                if maker_descriptor.aux_flag is None:
                    raise ConfigError(f"stage {maker_descriptor.key} asks for an aux render but declares no aux_flag")
                template += [maker_descriptor.aux_flag, layout.aux(aux.layer)]
            # Frames that pass go to the final pattern; the confidence record lists the others.
            verdicts = confidence_path(verdicts_dir, targets) if withholds else None
            finals = [str(frame_path(layout.final, f)) for f in targets]
            # The engine is a cache the task loads, not an input of its frames (as for the frame stages).
            waits = depends + ([engine.id] if engine is not None else [])
            made = make(maker.kind, "stage", maker.kind, "plan", template, targets, depends_on=waits,
                        outputs=[verdicts] if verdicts else finals, delivers=finals if verdicts else [],
                        timing_dir=str(Path(layout.final).parent), gpus=1 if maker.uses_gpu() else 0,
                        reads="keyframes", aux_layer=aux.layer if aux else None, verdicts=verdicts,
                        inputs=[plan_abs, *_outputs_of(depends, tasks)])
            tasks.append(made)
            if not withholds:
                continue
            fallback_template = [
                "run", "fallback", "--layer", "fallback", "--plan", plan_abs, "--run-dir", str(run_dir),
                "--frames", FRAMES_TOKEN, "--confidence-dir", verdicts_dir,
            ]
            tasks.append(make(
                "fallback", "fallback", "fallback", "plan", fallback_template, targets, depends_on=[made.id],
                outputs=[str(frame_path(layout.final, f)) for f in targets],
                timing_dir=str(Path(layout.fallback).parent), cores=plan.threads or 0,
                inputs=[plan_abs, scene, verdicts],
            ))

    # Full-quality reference renders of the check frames: the evidence behind the report. With a
    # flicker target they carry the Vector pass: every candidate's flicker is then reprojected
    # along the same vectors, whatever passes its own frames carry.
    reference_passes = frozenset({"motion"}) if plan.quality_target.flicker_max is not None else frozenset()
    for frames in chunk(sorted(plan.check_frames), plan.chunk_size):
        tasks.append(render_task("reference", "reference", frames, shot.samples, layout.reference, reference_passes))

    return JobGraph(
        name=shot.name, run_dir=str(run_dir), plan_file=plan_abs, shot_file=str(Path(shot_file).absolute()), tasks=tasks,
        plan=plan, shot=shot,
    )


def stage_window(config: StageConfig, described: StageDescriptor) -> int:
    """Frames each side a stage reads: 0 unless its mode is ``window``; then its config's
    ``window_reach()`` or ``window`` field where it has one (a setting of the stage), else the
    descriptor's ``window``."""
    if described.mode != "window":
        return 0
    value = config.window_reach()
    if value is None:
        value = getattr(config, "window", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else described.window


def _outputs_of(ids: Sequence[str], tasks: Sequence[Task]) -> list[str]:
    """The outputs of the tasks ``ids`` names (a task's inputs are its dependencies' outputs)."""
    wanted = set(ids)
    return list(dict.fromkeys(out for t in tasks if t.id in wanted for out in t.outputs))


def _around(frames: Sequence[int], reach: int, first: int, last: int) -> list[int]:
    """``frames`` and the frames within ``reach`` of them, inside ``first..last``."""
    if reach <= 0:
        return sorted(set(frames))
    return sorted({g for f in frames for g in range(max(first, f - reach), min(last, f + reach) + 1)})


def _rendered(keyframes: list[int], delivered: list[int]) -> list[int]:
    """The keyframes to render to deliver ``delivered``: those among them, and the two around each other frame."""
    keys = set(keyframes)
    needed = set()
    for frame in delivered:
        if frame in keys:
            needed.add(frame)
        else:
            needed |= set(keys_around(keyframes, frame))
    return sorted(needed)


@dataclass(frozen=True)
class LayerDependency:
    """Frame ``f`` of the dependent layer waits for frames ``f + start .. f + end`` of ``layer``."""

    layer: str
    start: int
    end: int

    @property
    def same_frame(self) -> bool:
        return self.start == 0 and self.end == 0


@dataclass(frozen=True)
class FarmLayer:
    """The tasks of one layer, as a farm manager sees them: one command, many frame chunks.

    ``command`` holds :data:`FRAMES_TOKEN` where a chunk's frames go (``--frames 1-8``); the
    CLI derives the task id and the timing record's path from ``--layer`` and the frames.
    """

    name: str
    kind: str
    stage: str
    role: str
    command: tuple[str, ...]
    tasks: tuple[Task, ...]
    depends_on: tuple[LayerDependency, ...]
    cores: int
    gpus: int

    @property
    def chunks(self) -> list[list[int]]:
        return [t.frames for t in self.tasks]

    @property
    def frames(self) -> list[int]:
        return sorted(f for t in self.tasks for f in t.frames)

    @property
    def frame_set(self) -> str:
        return format_frame_set(self.frames)

    @property
    def chunk_size(self) -> int | None:
        """The size that splits ``frames`` into exactly ``chunks``, or None when no single size does."""
        size = len(self.tasks[0].frames)
        return size if chunk(self.frames, size) == self.chunks else None


def _needed(dependency_frames: list[int], reads: str, window: int, frame: int) -> list[int]:
    """The frames of a dependency layer that ``frame`` needs: the same frame (when the dependency
    has it), the frames within ``window`` of it, or the keyframes around it."""
    if reads == "keyframes":
        before = [f for f in dependency_frames if f <= frame]
        after = [f for f in dependency_frames if f >= frame]
        return ([max(before)] if before else []) + ([min(after)] if after else [])
    if reads == "window":
        return [f for f in dependency_frames if abs(f - frame) <= window]
    return [frame] if frame in dependency_frames else []


def farm_layers(graph: JobGraph) -> list[FarmLayer]:
    """Group the graph's tasks into layers, dependencies first, with frame offsets between layers.

    Raises:
        ConfigError: the tasks of a layer do not share one command template.
    """
    by_id = {t.id: t for t in graph.tasks}
    setup_layers = {t.layer for t in graph.tasks if t.kind == "setup"}
    order: list[str] = []
    grouped: dict[str, list[Task]] = {}
    for task in graph.topological():
        if task.layer not in grouped:
            order.append(task.layer)
        grouped.setdefault(task.layer, []).append(task)
    layers = []
    for name in order:
        tasks = grouped[name]
        templates = {tuple(FRAMES_TOKEN if i > 0 and t.argv[i - 1] == "--frames" else a for i, a in enumerate(t.argv))
                     for t in tasks}
        if len(templates) != 1:
            raise ConfigError(f"the tasks of layer {name} do not share one command")
        offsets: dict[str, list[int]] = {}
        for task in tasks:
            for dep_layer in {by_id[d].layer for d in task.depends_on}:
                dep_frames = sorted(f for d in task.depends_on if by_id[d].layer == dep_layer for f in by_id[d].frames)
                # An aux render and a setup task (over all the frames) are waited for frame for frame.
                reads = "frame" if dep_layer == task.aux_layer or dep_layer in setup_layers else task.reads
                for frame in task.frames:
                    for needed in _needed(dep_frames, reads, task.window, frame):
                        lo_hi = offsets.setdefault(dep_layer, [needed - frame, needed - frame])
                        lo_hi[0], lo_hi[1] = min(lo_hi[0], needed - frame), max(lo_hi[1], needed - frame)
        layers.append(FarmLayer(
            name=name, kind=tasks[0].kind, stage=tasks[0].stage, role=tasks[0].role, command=templates.pop(),
            tasks=tuple(tasks),
            depends_on=tuple(LayerDependency(layer, lo, hi) for layer, (lo, hi) in offsets.items()),
            cores=max(t.cores for t in tasks), gpus=max(t.gpus for t in tasks),
        ))
    return layers


#: How ``graph.json`` spells the run folder: every path inside it is written relative to this
#: token, so the file names no absolute path of the machine that made it.
RUN_DIR_TOKEN = "{run_dir}"


def save_graph(graph: JobGraph, run_dir: Path) -> Path:
    """Write ``graph`` as ``RUN_DIR/graph.json``, every path inside its run folder relative to it
    (``{run_dir}/work/render/...``); :func:`load_graph` resolves them where the folder lies."""
    path = Path(run_dir) / GRAPH_FILE
    save_model(rebase_graph(graph, Path(RUN_DIR_TOKEN)), path)
    return path


def load_graph(run_dir: Path) -> JobGraph:
    """Read a run folder's job graph, its paths inside the run folder rebased onto where it is now.

    A run folder moved, copied or synced from a farm is read where it lies: every path of the
    graph inside the run folder (written relative to it; absolute in files older versions wrote)
    points into this folder, so ``farmplug report`` reports this folder's records and frames,
    never the original's.

    Raises:
        ConfigError: no graph.json there, or it is corrupt.
    """
    graph = load_model(JobGraph, Path(run_dir) / GRAPH_FILE)
    return rebase_graph(graph, Path(run_dir).absolute())


def find_task(near: Path, tid: str, argv: Sequence[str]) -> tuple[JobGraph, Task] | None:
    """The run graph above ``near`` (the nearest ``graph.json`` among its parents) and its task
    ``tid``, when that task's command is ``argv``; else None (a command run by hand, a graph it is
    not in, or one that does not read back)."""
    import logging

    here = Path(near).absolute()
    for folder in (here, *here.parents):
        if not (folder / GRAPH_FILE).is_file():
            continue
        try:
            graph = load_graph(folder)
        except ConfigError as err:
            logging.getLogger(__name__).warning("%s; this task's record will not be trusted by a rerun", err)
            return None
        for task in graph.tasks:
            if task.id == tid and _same_command(task.argv, argv):
                return graph, task
        return None
    return None


def _same_command(ours: Sequence[str], theirs: Sequence[str]) -> bool:
    """The same command, where a farm may spell ``--frames`` its own way (``4`` for ``4-4``)."""
    from farmplug.frames import parse_frames

    if len(ours) != len(theirs):
        return False
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a == b:
            continue
        if i == 0 or ours[i - 1] != "--frames":
            return False
        try:
            if parse_frames(a) != parse_frames(b):
                return False
        except FarmplugError:
            return False
    return True


def rebase_graph(graph: JobGraph, run_dir: Path) -> JobGraph:
    """``graph`` with every path under its ``run_dir`` moved under ``run_dir`` (paths outside stay)."""
    old = Path(graph.run_dir)
    if old == run_dir:
        return graph

    def move(value: str) -> str:
        path = Path(value)
        if path == old:
            return str(run_dir)
        try:
            return str(run_dir / path.relative_to(old))
        except ValueError:
            return value

    tasks = [
        t.model_copy(update={
            "argv": [move(a) for a in t.argv], "outputs": [move(o) for o in t.outputs], "timing": move(t.timing),
            "inputs": [move(i) for i in t.inputs], "delivers": [move(d) for d in t.delivers],
            "verdicts": move(t.verdicts) if t.verdicts else None,
        })
        for t in graph.tasks
    ]
    return graph.model_copy(update={"run_dir": str(run_dir), "tasks": tasks, "plan_file": move(graph.plan_file),
                                    "shot_file": move(graph.shot_file)})

