"""When the work finishes: a list-scheduling simulation of a job graph on a farm's capacity.

Capacity lives in a YAML file (``examples/capacity.yaml``) read into :class:`Capacity`:
``cpu_nodes`` nodes of ``cores_per_node`` cores, ``gpus`` GPU slots, and ``core_speed``, how fast
one core of the farm's nodes is against the machine the timings were measured on.

Policy of :func:`simulate` (deterministic, event-driven list scheduling):

* A task is **ready** when every task it depends on has finished (the graph's real
  dependencies: a denoise chunk waits for its own render chunk only, so chunks pipeline).
* **Resources.** A CPU task (``gpus == 0``) runs on one node and takes ``cores`` of it, or the
  whole node when ``cores`` is 0 (render tasks are whole-node jobs by default); a task asking for
  more cores than a node has takes the whole node. Several partial-node tasks may share a node.
  A GPU task (``gpus > 0``) takes that many GPU slots and **no CPU node**: a GPU slot stands for
  a GPU worker with its own host CPU, so post work never competes with renders for nodes.
* **Priority.** Whenever resources free up, ready tasks start in order of longest remaining path
  first (the task's duration plus the longest chain of work that depends on it: critical-path
  list scheduling), ties by the order the tasks were given. A ready task that does not fit does
  not hold back smaller ones behind it (greedy, no reservation).
* **Placement.** Best fit: the node with the fewest free cores that still fits (lowest index
  on ties), so whole nodes stay free for whole-node tasks; GPUs lowest index first.

Durations are wall seconds per task on the measuring machine: measured
(:func:`durations_from_records`, overhead included), or modelled per frame for the traditional
full render (:func:`full_render_tasks`). :func:`simulate` divides every CPU task's duration by
``capacity.core_speed`` (a farm core twice as fast halves it); GPU tasks keep their measured
durations, since a faster CPU core does not make the GPU faster.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol
from xml.sax.saxutils import escape, quoteattr

from pydantic import Field, PrivateAttr

from farmplug.errors import ConfigError, FarmplugError
from farmplug.frames import chunk
from farmplug.graph import task_id
from farmplug.schema import StrictModel, load_model
from farmplug.timing import TimingRecord


class Capacity(StrictModel):
    """What a farm can run at once.

    Attributes:
        cpu_nodes: CPU render nodes.
        cores_per_node: Cores of each node.
        gpus: GPU slots (GPU workers) for post jobs; 0 when the farm has none.
        core_speed: Speed of one core of the farm's nodes relative to the machine the timings
            were measured on (2.0: twice as fast, every CPU task takes half its measured time).
    """

    schema_version: Literal[1] = 1
    cpu_nodes: int = Field(ge=1)
    cores_per_node: int = Field(ge=1)
    gpus: int = Field(default=0, ge=0)
    core_speed: float = Field(
        default=1.0, gt=0, allow_inf_nan=False,
        description="per-core speed of the farm's nodes relative to the measuring machine (1 = as fast)",
    )

    _source: str = PrivateAttr(default="<capacity>")

    @property
    def source(self) -> str:
        """The file this capacity came from (``<capacity>`` when built in code)."""
        return self._source


def load_capacity(path: str | Path) -> Capacity:
    """Read a capacity YAML file.

    Raises:
        ConfigError: the file is missing or does not match the schema; a zero capacity
            (``cpu_nodes: 0``, ``cores_per_node: 0``) names the file and the field.
    """
    capacity = load_model(Capacity, path)
    capacity._source = str(path)
    return capacity


class Schedulable(Protocol):
    """What the simulation reads of a task: :class:`farmplug.graph.Task` and :class:`SimTask` fit."""

    id: str
    stage: str
    role: str
    depends_on: Sequence[str]
    cores: int
    gpus: int


@dataclass(frozen=True)
class SimTask:
    """A task to simulate that is not (yet) in a job graph, e.g. a full-render chunk."""

    id: str
    stage: str
    role: str = "plan"
    depends_on: tuple[str, ...] = ()
    cores: int = 0
    gpus: int = 0


@dataclass(frozen=True)
class ScheduledTask:
    """Where and when one task ran in the simulation.

    Attributes:
        resource: ``cpu-NN`` (a node) or ``gpu-NN`` (the first GPU slot it took).
        cores: Cores taken on the node (0 for a GPU task).
        gpus: GPU slots taken (0 for a CPU task).
        lane: First core (or GPU) index taken, for drawing partial-node tasks.
    """

    id: str
    stage: str
    role: str
    start: float
    end: float
    resource: str
    cores: int
    gpus: int
    lane: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Schedule:
    """The simulated run: every task placed in time, and when the last one ends.

    Attributes:
        tasks: Placed tasks in start order.
        resources: Every resource id of the capacity, CPU nodes first (idle ones too).
        makespan: Seconds from the first start to the last end.
        critical_path: Seconds of the longest dependency chain: no capacity can beat it.
    """

    tasks: tuple[ScheduledTask, ...]
    resources: tuple[str, ...]
    cores_per_node: int
    makespan: float
    critical_path: float

    def task(self, tid: str) -> ScheduledTask:
        for placed in self.tasks:
            if placed.id == tid:
                return placed
        raise KeyError(tid)

    def utilisation(self, kind: Literal["cpu", "gpu"]) -> float | None:
        """Busy fraction of the CPU cores or GPU slots over the makespan; None when there are none or it is 0 s."""
        units = [r for r in self.resources if r.startswith(kind)]
        if not units or self.makespan <= 0:
            return None
        if kind == "cpu":
            busy = sum(t.duration * t.cores for t in self.tasks if t.gpus == 0)
            return busy / (self.makespan * len(units) * self.cores_per_node)
        busy = sum(t.duration * t.gpus for t in self.tasks if t.gpus > 0)
        return busy / (self.makespan * len(units))


def _resource_id(kind: str, index: int, count: int) -> str:
    return f"{kind}-{index + 1:0{max(2, len(str(count)))}d}"


def _check_inputs(tasks: Sequence[Schedulable], durations: Mapping[str, float], capacity: Capacity) -> None:
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise ConfigError(f"two tasks have the id {t.id}")
        seen.add(t.id)
    for t in tasks:
        for dep in t.depends_on:
            if dep not in seen:
                raise ConfigError(f"task {t.id} depends on unknown task {dep}")
        if t.id not in durations:
            raise ConfigError(f"no duration for task {t.id} (no timing record, and no model for it)")
        d = durations[t.id]
        if not math.isfinite(d) or d < 0:
            raise ConfigError(f"duration of task {t.id} must be a finite number of seconds >= 0, got {d!r}")
    gpu_tasks = [t for t in tasks if t.gpus > 0]
    if gpu_tasks and capacity.gpus == 0:
        raise ConfigError(
            f"gpus: 0, but {len(gpu_tasks)} task(s) need a GPU (e.g. {gpu_tasks[0].id}); "
            "give the farm GPU slots or run the stage with device: cpu",
            path=capacity.source,
        )
    widest = max(gpu_tasks, key=lambda t: t.gpus, default=None)
    if widest is not None and widest.gpus > capacity.gpus:
        raise ConfigError(f"gpus: {capacity.gpus}, but task {widest.id} needs {widest.gpus} at once",
                          path=capacity.source)


def _priorities(tasks: Sequence[Schedulable], durations: Mapping[str, float]) -> list[float]:
    """Longest remaining path from each task (its duration included), via Kahn's order.

    Raises:
        ConfigError: the dependencies form a cycle.
    """
    index = {t.id: i for i, t in enumerate(tasks)}
    successors: list[list[int]] = [[] for _ in tasks]
    indegree = [0] * len(tasks)
    for i, t in enumerate(tasks):
        for dep in set(t.depends_on):
            successors[index[dep]].append(i)
            indegree[i] += 1
    order = [i for i, n in enumerate(indegree) if n == 0]
    remaining = indegree[:]
    for i in order:  # grows while iterating: a breadth-first topological order
        for s in successors[i]:
            remaining[s] -= 1
            if remaining[s] == 0:
                order.append(s)
    if len(order) != len(tasks):
        stuck = sorted(tasks[i].id for i, n in enumerate(remaining) if n > 0)
        raise ConfigError(f"the tasks' dependencies form a cycle through {', '.join(stuck[:5])}")
    level = [0.0] * len(tasks)
    for i in reversed(order):
        level[i] = durations[tasks[i].id] + max((level[s] for s in successors[i]), default=0.0)
    return level


class _Nodes:
    """Free cores of each CPU node, per core so partial-node tasks get a lane to draw in."""

    def __init__(self, count: int, cores: int) -> None:
        self.cores = cores
        self.busy = [[False] * cores for _ in range(count)]
        self.free = [cores] * count

    def widest_free(self) -> int:
        return max(self.free)

    def take(self, want: int) -> tuple[int, list[int]]:
        node = min((i for i, f in enumerate(self.free) if f >= want), key=lambda i: (self.free[i], i))
        busy = self.busy[node]
        if self.free[node] == want:  # the common case: whole-node tasks
            taken = [c for c in range(self.cores) if not busy[c]]
        else:
            taken = next(
                (list(range(s, s + want)) for s in range(self.cores - want + 1) if not any(busy[s:s + want])),
                None,
            ) or [c for c in range(self.cores) if not busy[c]][:want]
        for c in taken:
            busy[c] = True
        self.free[node] -= want
        return node, taken

    def give(self, node: int, taken: list[int]) -> None:
        for c in taken:
            self.busy[node][c] = False
        self.free[node] += len(taken)


class _Ready:
    """Ready tasks grouped by how much they need, each group a priority heap."""

    def __init__(self) -> None:
        self.groups: dict[int, list[tuple[float, int]]] = {}

    def push(self, want: int, priority: float, order: int) -> None:
        heapq.heappush(self.groups.setdefault(want, []), (-priority, order))

    def pop_best(self, fits: int) -> tuple[int, int] | None:
        """The most urgent ready task needing at most ``fits``: (want, order), or None."""
        best = None
        for want, heap in self.groups.items():
            if heap and want <= fits and (best is None or heap[0] < self.groups[best][0]):
                best = want
        if best is None:
            return None
        return best, heapq.heappop(self.groups[best])[1]


def simulate(tasks: Sequence[Schedulable], durations: Mapping[str, float], capacity: Capacity) -> Schedule:
    """Simulate running ``tasks`` on ``capacity`` (policy in the module docstring).

    Args:
        tasks: The tasks with their dependencies (a job graph's tasks, or :class:`SimTask`).
        durations: Wall seconds of each task by id, as measured (or modelled) on the measuring
            machine; CPU tasks' are divided by ``capacity.core_speed``.
        capacity: The farm.

    Returns:
        Each task's start, end and resource, the makespan and the critical path.

    Raises:
        ConfigError: a task needs a GPU and the capacity has none (or too few), names the
            capacity file and ``gpus``; a duration is missing or negative; a dependency names
            no task; the dependencies form a cycle.
    """
    tasks = list(tasks)
    _check_inputs(tasks, durations, capacity)
    durations = farm_durations(tasks, durations, capacity)
    priority = _priorities(tasks, durations)
    index = {t.id: i for i, t in enumerate(tasks)}
    successors: list[list[int]] = [[] for _ in tasks]
    waiting = [0] * len(tasks)
    for i, t in enumerate(tasks):
        for dep in set(t.depends_on):
            successors[index[dep]].append(i)
            waiting[i] += 1
    cpn = capacity.cores_per_node
    want = [t.gpus if t.gpus > 0 else (min(t.cores, cpn) if t.cores > 0 else cpn) for t in tasks]

    nodes = _Nodes(capacity.cpu_nodes, cpn)
    free_gpus = list(range(capacity.gpus))  # a heap: lowest index first
    cpu_ready, gpu_ready = _Ready(), _Ready()
    running: list[tuple[float, int]] = []
    held: dict[int, tuple[int, list[int]]] = {}
    placed: list[ScheduledTask] = []

    def make_ready(i: int) -> None:
        (gpu_ready if tasks[i].gpus > 0 else cpu_ready).push(want[i], priority[i], i)

    def start(i: int, now: float, resource: str, lane: int) -> None:
        t = tasks[i]
        end = now + durations[t.id]
        heapq.heappush(running, (end, i))
        placed.append(ScheduledTask(
            id=t.id, stage=t.stage, role=t.role, start=now, end=end, resource=resource,
            cores=0 if t.gpus else want[i], gpus=t.gpus, lane=lane,
        ))

    def start_ready(now: float) -> None:
        while (pick := cpu_ready.pop_best(nodes.widest_free())) is not None:
            w, i = pick
            node, taken = nodes.take(w)
            held[i] = (node, taken)
            start(i, now, _resource_id("cpu", node, capacity.cpu_nodes), taken[0])
        while (pick := gpu_ready.pop_best(len(free_gpus))) is not None:
            w, i = pick
            taken = [heapq.heappop(free_gpus) for _ in range(w)]
            held[i] = (-1, taken)
            start(i, now, _resource_id("gpu", taken[0], capacity.gpus), taken[0])

    for i, n in enumerate(waiting):
        if n == 0:
            make_ready(i)
    now = 0.0
    start_ready(now)
    while running:
        now = running[0][0]
        while running and running[0][0] == now:
            _, i = heapq.heappop(running)
            node, taken = held.pop(i)
            if node >= 0:
                nodes.give(node, taken)
            else:
                for g in taken:
                    heapq.heappush(free_gpus, g)
            for s in successors[i]:
                waiting[s] -= 1
                if waiting[s] == 0:
                    make_ready(s)
        start_ready(now)

    resources = tuple(_resource_id("cpu", n, capacity.cpu_nodes) for n in range(capacity.cpu_nodes)) + tuple(
        _resource_id("gpu", g, capacity.gpus) for g in range(capacity.gpus)
    )
    return Schedule(
        tasks=tuple(placed), resources=resources, cores_per_node=cpn,
        makespan=max((p.end for p in placed), default=0.0), critical_path=max(priority, default=0.0),
    )


def farm_durations(tasks: Sequence[Schedulable], durations: Mapping[str, float], capacity: Capacity) -> dict[str, float]:
    """Each task's wall seconds on the farm: CPU tasks' measured seconds divided by ``core_speed``.

    GPU tasks (``gpus > 0``) keep their measured seconds: a faster farm CPU core does not make the
    GPU faster.
    """
    speed = capacity.core_speed
    return {t.id: durations[t.id] if t.gpus > 0 else durations[t.id] / speed for t in tasks}


def durations_from_records(records: Iterable[TimingRecord]) -> dict[str, float]:
    """Measured wall seconds of each task (overhead included), by task id."""
    return {r.task: r.wall_s for r in records}


def reference_rates(records: Iterable[TimingRecord]) -> tuple[float, float]:
    """Full-quality wall seconds per frame and per-task overhead, from the ``reference`` records.

    Raises:
        FarmplugError: no reference record has frames (nothing to extrapolate from).
    """
    frame_s = overhead_s = 0.0
    frames = tasks = 0
    for r in records:
        if r.role != "reference" or not r.frames:
            continue
        frame_s += sum(f.wall_s for f in r.frames)
        frames += len(r.frames)
        overhead_s += r.overhead_wall_s
        tasks += 1
    if not frames:
        raise FarmplugError("no full-quality reference frames to extrapolate the full render from")
    return frame_s / frames, overhead_s / tasks


def full_render_tasks(
    frames: Sequence[int], *, chunk_size: int, seconds_per_frame: float, overhead_s: float,
    layer: str = "full", cores: int = 0,
) -> tuple[list[SimTask], dict[str, float]]:
    """The traditional schedule: every frame rendered at full quality in CPU chunks, no post work.

    A chunk of ``n`` frames takes ``overhead_s + n * seconds_per_frame`` (the farm pays the
    start-up and scene load once per task).

    Args:
        frames: Every frame of the shot.
        chunk_size: Frames per task.
        seconds_per_frame: Full-quality wall seconds per frame on one node (see :func:`reference_rates`).
        overhead_s: Wall seconds per task before the first frame.
        layer: Task id prefix (``full-0001-0008``).
        cores: Cores per task (0: a whole node).

    Returns:
        The tasks (no dependencies between them) and their durations by id.

    Raises:
        FarmplugError: no frames, a chunk size below 1, or a negative time.
    """
    if not frames:
        raise FarmplugError("full render: no frames")
    if chunk_size < 1:
        raise FarmplugError(f"full render: chunk_size must be >= 1, got {chunk_size}")
    if not (seconds_per_frame >= 0 and overhead_s >= 0):
        raise FarmplugError(f"full render: times must be >= 0 s, got {seconds_per_frame} s/frame, {overhead_s} s/task")
    tasks, durations = [], {}
    for part in chunk(sorted(set(frames)), chunk_size):
        tid = task_id(layer, part)
        tasks.append(SimTask(id=tid, stage="render", role="full", cores=cores))
        durations[tid] = overhead_s + len(part) * seconds_per_frame
    return tasks, durations


def namespaced(prefix: str, tasks: Iterable[Schedulable], durations: Mapping[str, float]) -> tuple[list[SimTask], dict[str, float]]:
    """The tasks with ids (and dependencies) prefixed ``prefix/``, to simulate several shots on one farm."""
    out = [
        SimTask(id=f"{prefix}/{t.id}", stage=t.stage, role=t.role,
                depends_on=tuple(f"{prefix}/{d}" for d in t.depends_on), cores=t.cores, gpus=t.gpus)
        for t in tasks
    ]
    return out, {f"{prefix}/{k}": v for k, v in durations.items()}


# --- timeline ---------------------------------------------------------------------------------


def compact_schedule(schedule: Schedule, *, used_rows_only: bool = False, gap_fraction: float = 1 / 1500) -> Schedule:
    """The schedule with back-to-back tasks of one stage on one lane merged into one bar.

    Gaps under ``gap_fraction`` of the makespan (below a pixel when drawn) are closed, so a
    show's thousands of chunks draw as a few hundred bars and the page stays small; the
    makespan and every resource's busy span are unchanged.

    Args:
        schedule: A simulated schedule.
        used_rows_only: Keep only the resources some task ran on (a small shot on a big farm).
        gap_fraction: Largest gap closed, as a fraction of the makespan.
    """
    tolerance = schedule.makespan * gap_fraction
    groups: dict[tuple, list] = defaultdict(list)
    for task in schedule.tasks:
        groups[(task.resource, task.lane, task.cores, task.gpus, task.stage, task.role)].append(task)
    merged = []
    for tasks in groups.values():
        tasks.sort(key=lambda t: t.start)
        current, count = tasks[0], 1
        for task in tasks[1:]:
            if task.start - current.end <= tolerance:
                current, count = replace(current, end=max(current.end, task.end)), count + 1
                continue
            merged.append(replace(current, id=f"{count} {current.stage} tasks") if count > 1 else current)
            current, count = task, 1
        merged.append(replace(current, id=f"{count} {current.stage} tasks") if count > 1 else current)
    merged.sort(key=lambda t: (t.start, t.resource))
    resources = schedule.resources
    if used_rows_only:
        used = {t.resource for t in merged}
        resources = tuple(r for r in resources if r in used)
    return replace(schedule, tasks=tuple(merged), resources=resources)


#: Colours in pipeline order (Tableau 10): the render first, fallback renders and calibration last.
_PALETTE = ("#4e79a7", "#76b7b2", "#f28e2b", "#59a14f", "#e15759", "#edc948", "#ff9da7", "#9c755f", "#bab0ac",
            "#86bcb6", "#d37295")
_LAST_COLOURS = {"fallback": "#b07aa1", "calibration": "#9c755f"}
_UNITS = (("s", 1.0), ("min", 60.0), ("h", 3600.0), ("d", 86400.0))


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds < 120:
        return _UNITS[0]
    if seconds < 2 * 3600:
        return _UNITS[1]
    if seconds < 3 * 86400:
        return _UNITS[2]
    return _UNITS[3]


def _tick_step(span: float, max_ticks: int = 10) -> float:
    raw = span / max_ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw:
            return m * magnitude
    return 10 * magnitude


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def stage_colours(stages: Iterable[str]) -> dict[str, str]:
    """The colour of each stage, from a palette in pipeline order (the same stages, the same colours)."""
    from farmplug.stages.registry import display_rank

    colours = {}
    ordered = [s for s in sorted(set(stages), key=display_rank) if s not in _LAST_COLOURS]
    for index, stage in enumerate(ordered):
        colours[stage] = _PALETTE[index % len(_PALETTE)]
    colours.update({s: c for s, c in _LAST_COLOURS.items() if s in set(stages)})
    return colours


def timeline_svg(schedule: Schedule, *, title: str, width: int = 960, row_height: int = 18) -> str:
    """A self-contained SVG Gantt chart of a schedule, to inline in the HTML report.

    One row per resource (CPU nodes, then GPU slots), one ``<rect class="task">`` per task
    coloured by stage (reference renders drawn lighter), a time axis in s/min/h/days chosen from
    the makespan, and a legend. Partial-node tasks are drawn in their share of the node's row.
    No scripts, no external fonts (generic ``sans-serif``); each bar has a ``<title>`` tooltip.
    """
    label_w, top, axis_h, legend_h, right = 64, 28, 26, 22, 12
    rows = schedule.resources
    plot_w = max(100, width - label_w - right)
    height = top + len(rows) * row_height + axis_h + legend_h
    span = schedule.makespan if schedule.makespan > 0 else 1.0
    unit, unit_s = _time_unit(span)
    step = _tick_step(span / unit_s)
    row_of = {r: i for i, r in enumerate(rows)}
    colours = stage_colours(t.stage for t in schedule.tasks)

    def x(seconds: float) -> float:
        return label_w + plot_w * seconds / span

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<text x="{label_w}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, r in enumerate(rows):
        y = top + i * row_height
        out.append(f'<text x="{label_w - 6}" y="{y + row_height * 0.7:.1f}" text-anchor="end">{escape(r)}</text>')
        out.append(f'<line x1="{label_w}" y1="{y + row_height}" x2="{label_w + plot_w}" y2="{y + row_height}" '
                   'stroke="#e4e4e4"/>')
    axis_y = top + len(rows) * row_height
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#444"/>')
    tick = 0.0
    while tick * unit_s <= span * (1 + 1e-9):
        tx = x(tick * unit_s)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y + 4}" stroke="#ccc"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 16}" text-anchor="middle">{_fmt(tick)} {unit}</text>')
        tick = round(tick + step, 9)
    for t in schedule.tasks:
        row = row_of.get(t.resource, 0)
        if t.gpus:
            share, offset = 1.0, 0.0
        else:
            share, offset = t.cores / schedule.cores_per_node, t.lane / schedule.cores_per_node
        y = top + row * row_height + 2 + offset * (row_height - 4)
        h = max(1.0, share * (row_height - 4))
        w = max(0.5, x(t.end) - x(t.start))
        opacity = "0.5" if t.role == "reference" else "0.95"
        tip = f"{t.id} ({t.stage}, {t.role}) on {t.resource}: {t.start:.1f}-{t.end:.1f} s"
        out.append(
            f'<rect class="task" data-task={quoteattr(t.id)} x="{x(t.start):.2f}" y="{y:.2f}" '
            f'width="{w:.2f}" height="{h:.2f}" fill="{colours[t.stage]}" fill-opacity="{opacity}" '
            f'stroke="#fff" stroke-width="0.5"><title>{escape(tip)}</title></rect>'
        )
    legend_y = axis_y + axis_h + 10
    lx = float(label_w)
    for stage, colour in colours.items():
        out.append(f'<circle cx="{lx + 5:.1f}" cy="{legend_y - 4}" r="5" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14:.1f}" y="{legend_y}">{escape(stage)}</text>')
        lx += 24 + 7 * len(stage)
    out.append(f'<text x="{label_w + plot_w}" y="{legend_y}" text-anchor="end">makespan '
               f'{_fmt(round(schedule.makespan / unit_s, 2))} {unit}</text>')
    out.append("</svg>")
    return "\n".join(out)
