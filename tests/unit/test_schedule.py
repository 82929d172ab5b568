"""Schedule simulation against hand-computed makespans, capacity errors, and the SVG timeline."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from farmplug.errors import ConfigError, FarmplugError
from farmplug.schedule import (
    Capacity,
    SimTask,
    durations_from_records,
    full_render_tasks,
    load_capacity,
    namespaced,
    reference_rates,
    simulate,
    timeline_svg,
)
from farmplug.timing import FrameTiming, TimingRecord

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "capacity.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def cpu(tid: str, *deps: str, cores: int = 0, stage: str = "render") -> SimTask:
    return SimTask(id=tid, stage=stage, depends_on=deps, cores=cores)


def gpu(tid: str, *deps: str) -> SimTask:
    return SimTask(id=tid, stage="denoise", depends_on=deps, gpus=1)


def farm(nodes: int = 1, cores: int = 8, gpus: int = 0, core_speed: float = 1.0) -> Capacity:
    return Capacity(cpu_nodes=nodes, cores_per_node=cores, gpus=gpus, core_speed=core_speed)


def test_example_capacity_loads() -> None:
    capacity = load_capacity(EXAMPLE)
    assert capacity.cpu_nodes >= 1 and capacity.gpus >= 1
    assert capacity.core_speed == 1.0 and "core_speed" in EXAMPLE.read_text()  # documented in the example
    assert Capacity(cpu_nodes=1, cores_per_node=1).core_speed == 1.0  # the default: as fast as measured


def test_core_speed_divides_cpu_task_times_and_leaves_gpu_tasks_as_measured() -> None:
    tasks = [cpu("R1"), gpu("D1", "R1"), cpu("R2", "R1")]
    durations = {"R1": 10, "D1": 4, "R2": 6}
    same = simulate(tasks, durations, farm(gpus=1))
    assert same.makespan == 16 == same.critical_path  # R1 0-10, then R2 10-16 beside D1 10-14
    fast = simulate(tasks, durations, farm(gpus=1, core_speed=2))
    assert (fast.task("R1").start, fast.task("R1").end) == (0, 5)
    assert (fast.task("D1").start, fast.task("D1").end) == (5, 9)  # the GPU task keeps its 4 s
    assert (fast.task("R2").start, fast.task("R2").end) == (5, 8)
    assert fast.makespan == 9 == fast.critical_path
    slow = simulate(tasks, durations, farm(gpus=1, core_speed=0.5))
    assert slow.makespan == 32


def test_core_speed_2_halves_a_cpu_only_farm_time() -> None:
    tasks, durations = full_render_tasks(list(range(1, 21)), chunk_size=8, seconds_per_frame=100, overhead_s=30)
    assert simulate(tasks, durations, farm(nodes=2, core_speed=2)).makespan == (830 + 430) / 2


def test_chain_on_one_node_is_the_sum() -> None:
    s = simulate([cpu("A"), cpu("B", "A")], {"A": 3, "B": 5}, farm())
    assert (s.task("A").start, s.task("A").end, s.task("B").start, s.task("B").end) == (0, 3, 3, 8)
    assert s.makespan == 8 == s.critical_path


def test_two_independent_tasks_on_two_nodes_is_the_max() -> None:
    s = simulate([cpu("A"), cpu("B")], {"A": 3, "B": 5}, farm(nodes=2))
    assert s.makespan == 5
    assert {s.task("A").resource, s.task("B").resource} == {"cpu-01", "cpu-02"}


def test_three_tasks_on_two_nodes() -> None:
    # Longest first: 4 and 3 start at 0; 2 starts when the 3 ends: 3 + 2 = 5.
    s = simulate([cpu("C"), cpu("B"), cpu("A")], {"A": 4, "B": 3, "C": 2}, farm(nodes=2))
    assert (s.task("A").start, s.task("B").start, s.task("C").start) == (0, 0, 3)
    assert s.task("C").resource == s.task("B").resource
    assert s.makespan == 5
    assert s.utilisation("cpu") == pytest.approx(9 / 10)


def test_critical_path_first_beats_given_order() -> None:
    # In the given order X and Y would start first and A->B would end at 3 + 1 + 10 = 14;
    # longest-remaining-path first starts A (1 + 10) at once: B ends at 11, Y runs 3..6 beside it.
    tasks = [cpu("X"), cpu("Y"), cpu("A"), cpu("B", "A")]
    s = simulate(tasks, {"X": 3, "Y": 3, "A": 1, "B": 10}, farm(nodes=2))
    assert s.task("A").start == 0 and s.task("B").start == 1 and s.task("Y").start == 3
    assert s.makespan == 11 == s.critical_path


def test_gpu_post_waits_for_its_render_while_the_gpu_idles() -> None:
    # One node, one GPU. R1 0-10, D1 10-12 (the GPU idles 0-10), R2 10-20, D2 20-22.
    tasks = [cpu("R1"), gpu("D1", "R1"), cpu("R2"), gpu("D2", "R2")]
    s = simulate(tasks, {"R1": 10, "D1": 2, "R2": 10, "D2": 2}, farm(gpus=1))
    assert [(s.task(t).start, s.task(t).end) for t in ("R1", "D1", "R2", "D2")] == [(0, 10), (10, 12), (10, 20), (20, 22)]
    assert s.task("D1").resource == "gpu-01" and s.task("D1").cores == 0
    assert s.makespan == 22
    assert s.utilisation("gpu") == pytest.approx(4 / 22)
    assert s.utilisation("cpu") == pytest.approx(20 / 22)


def test_per_chunk_pipelining_beats_whole_step_dependency() -> None:
    durations = {"R1": 10, "R2": 10, "R3": 10, "D1": 4, "D2": 4, "D3": 4}
    renders = [cpu("R1"), cpu("R2"), cpu("R3")]
    # Per chunk: D1 denoises 10-14 while R2 renders; D3 ends 30 + 4 = 34.
    piped = simulate(renders + [gpu("D1", "R1"), gpu("D2", "R2"), gpu("D3", "R3")], durations, farm(gpus=1))
    assert piped.task("D1").start == 10 and piped.task("R2").start == 10
    assert piped.makespan == 34
    # Whole step: every denoise waits for the last render (30), then 3 x 4 on one GPU: 42.
    all_r = ("R1", "R2", "R3")
    stepped = simulate(renders + [gpu("D1", *all_r), gpu("D2", *all_r), gpu("D3", *all_r)], durations, farm(gpus=1))
    assert stepped.task("D1").start == 30
    assert stepped.makespan == 42


def test_partial_node_tasks_share_a_node_and_whole_node_tasks_wait() -> None:
    tasks = [cpu("half1", cores=4), cpu("half2", cores=4), cpu("whole")]
    s = simulate(tasks, {"half1": 5, "half2": 5, "whole": 5}, farm(cores=8))
    assert s.task("half1").start == s.task("half2").start == 0
    assert {s.task("half1").lane, s.task("half2").lane} == {0, 4}
    assert s.task("whole").start == 5 and s.task("whole").cores == 8
    assert s.makespan == 10


def test_more_cores_than_a_node_takes_the_whole_node() -> None:
    s = simulate([cpu("big", cores=64), cpu("other")], {"big": 2, "other": 2}, farm(cores=8))
    assert s.task("big").cores == 8 and s.makespan == 4


def test_zero_duration_and_empty_graph() -> None:
    assert simulate([], {}, farm()).makespan == 0
    s = simulate([cpu("A"), cpu("B", "A")], {"A": 0, "B": 2}, farm())
    assert s.makespan == 2


def test_graph_tasks_schedule_directly() -> None:
    from farmplug.graph import Task

    def task(tid: str, stage: str, deps: list[str], gpus: int = 0) -> Task:
        return Task(id=tid, layer=stage, kind="render" if stage == "render" else "stage", stage=stage, role="plan",
                    frames=[1], depends_on=deps, argv=[], outputs=[], timing=f"{tid}.timing.json", gpus=gpus)

    s = simulate([task("r", "render", []), task("d", "denoise", ["r"], gpus=1)], {"r": 7, "d": 1}, farm(gpus=1))
    assert s.makespan == 8


def test_full_render_chunks_and_durations() -> None:
    tasks, durations = full_render_tasks(list(range(1, 21)), chunk_size=8, seconds_per_frame=100, overhead_s=30)
    assert [t.id for t in tasks] == ["full-0001-0008", "full-0009-0016", "full-0017-0020"]
    assert durations == {"full-0001-0008": 830, "full-0009-0016": 830, "full-0017-0020": 430}
    s = simulate(tasks, durations, farm(nodes=2))
    assert s.makespan == 830 + 430  # the 430 goes on whichever node frees first
    with pytest.raises(FarmplugError, match="chunk_size"):
        full_render_tasks([1], chunk_size=0, seconds_per_frame=1, overhead_s=0)


def record(task: str, role: str, overhead: float, walls: list[float]) -> TimingRecord:
    return TimingRecord(task=task, stage="render", role=role, backend="t", started_at=0, finished_at=1,
                        overhead_wall_s=overhead, frames=[FrameTiming(frame=i, wall_s=w, cpu_s=w) for i, w in enumerate(walls)])


def test_rates_and_durations_from_records() -> None:
    records = [record("ref-1", "reference", 20, [100, 110]), record("ref-2", "reference", 40, [120]),
               record("render-1", "plan", 5, [3, 3])]
    assert reference_rates(records) == pytest.approx((110, 30))
    assert durations_from_records(records) == {"ref-1": 230, "ref-2": 160, "render-1": 11}
    with pytest.raises(FarmplugError, match="reference"):
        reference_rates(records[2:])


def test_namespaced_shots_share_one_farm() -> None:
    tasks = [cpu("R1"), gpu("D1", "R1")]
    durations = {"R1": 10, "D1": 2}
    a, da = namespaced("sh010", tasks, durations)
    b, db = namespaced("sh020", tasks, durations)
    assert a[1].depends_on == ("sh010/R1",)
    s = simulate(a + b, da | db, farm(nodes=2, gpus=1))
    assert s.makespan == 14  # both renders 0-10 side by side, the two denoises queue on the one GPU


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param("cpu_nodes: 0\ncores_per_node: 8\ngpus: 1\n", "cpu_nodes", id="no-nodes"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 0\n", "cores_per_node", id="no-cores"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\ngpus: -1\n", "gpus", id="negative-gpus"),
        pytest.param("cores_per_node: 8\n", "cpu_nodes", id="missing-nodes"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\nnodes: 3\n", "nodes", id="unknown-field"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\ncore_speed: 0\n", "core_speed", id="zero-core-speed"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\ncore_speed: -1.5\n", "core_speed", id="negative-core-speed"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\ncore_speed: fast\n", "core_speed", id="core-speed-not-a-number"),
        pytest.param("cpu_nodes: 2\ncores_per_node: 8\ncore_speed: .inf\n", "core_speed", id="infinite-core-speed"),
    ],
)
def test_rejected_capacity_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "capacity.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_capacity(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_gpu_work_without_gpus_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "capacity.yaml"
    path.write_text("schema_version: 1\ncpu_nodes: 4\ncores_per_node: 8\ngpus: 0\n")
    with pytest.raises(ConfigError) as err:
        simulate([cpu("R1"), gpu("D1", "R1")], {"R1": 1, "D1": 1}, load_capacity(path))
    assert str(path) in str(err.value) and "gpus: 0" in str(err.value) and "D1" in str(err.value)
    wide = SimTask(id="W", stage="upscale", gpus=2)
    with pytest.raises(ConfigError, match="needs 2"):
        simulate([wide], {"W": 1}, farm(gpus=1))


@pytest.mark.parametrize(
    ("tasks", "durations", "message"),
    [
        pytest.param([cpu("A", "B"), cpu("B", "A")], {"A": 1, "B": 1}, "cycle", id="cycle"),
        pytest.param([cpu("A", "Z")], {"A": 1}, "unknown task Z", id="unknown-dependency"),
        pytest.param([cpu("A")], {}, "no duration for task A", id="missing-duration"),
        pytest.param([cpu("A")], {"A": -1}, ">= 0", id="negative-duration"),
        pytest.param([cpu("A"), cpu("A")], {"A": 1}, "two tasks", id="duplicate-id"),
    ],
)
def test_bad_graphs_are_config_errors(tasks, durations, message) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(tasks, durations, farm())


@pytest.mark.parametrize("scale", [pytest.param(1, id="seconds"), pytest.param(3600, id="hours"),
                                   pytest.param(86400 * 2, id="days")])
def test_timeline_svg_is_xml_with_one_rect_per_task(scale: int) -> None:
    tasks = [cpu("R1"), gpu("D1", "R1"), cpu("R2"), gpu("D2", "R2"), cpu("half", cores=4), SimTask("ref<&>", "render", role="reference")]
    durations = {"R1": 10 * scale, "D1": 2 * scale, "R2": 10 * scale, "D2": 2 * scale, "half": 3 * scale, "ref<&>": 4 * scale}
    schedule = simulate(tasks, durations, farm(nodes=2, gpus=2))
    svg = timeline_svg(schedule, title="shot <sh010> & co")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    rects = root.iter(f"{SVG}rect")
    assert sorted(r.get("data-task") for r in rects) == sorted(t.id for t in tasks)
    rows = [t.text for t in root.iter(f"{SVG}text")]
    assert {"cpu-01", "cpu-02", "gpu-01", "gpu-02"} <= set(rows)  # idle rows are drawn too
    assert "shot <sh010> & co" in rows and "render" in rows and "denoise" in rows
    assert "<script" not in svg and "@import" not in svg and "href" not in svg
