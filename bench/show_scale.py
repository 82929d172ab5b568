"""Show-scale benchmark: can the cost and schedule models handle a whole show?

Synthesises a show (default 500 shots x 200 frames, 20 sequences) as real job graphs
(``farmplug.graph.compile_plan``: render chunks of 8, a GPU denoise chunk per render chunk, one
full-quality reference chunk of 3 check frames) and writes one timing record per task with
``farmplug.timing.write_timing`` (25,500 files by default). Then it times, streaming shot by shot
so memory stays flat:

1. reading every record with ``read_timing`` (the path the report uses today);
2. reading every record as JSON (``TimingRecord.model_validate_json``), for comparison;
3. the per-shot pipeline: read, ``cost_of``, ``simulate`` of the plan graph and of the full
   render (extrapolated from the shot's reference chunk), and a roll-up per sequence (every shot
   of a sequence on one farm); then the whole show on one farm.

Run:  .venv/bin/python bench/show_scale.py [--shots 500] [--frames 200] [--docs docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import gc
import math
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from farmplug.cost import combine, cost_of, format_money, load_prices
from farmplug.graph import Task, compile_plan
from farmplug.models import Plan, Shot
from farmplug.schedule import (
    durations_from_records,
    full_render_tasks,
    load_capacity,
    namespaced,
    reference_rates,
    simulate,
)
from farmplug.timing import FrameTiming, TimingRecord, read_timing, write_timing

ROOT = Path(__file__).resolve().parents[1]
CORES = 32  # cores of a render node in the synthetic show


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def show_shots(shots: int, sequences: int, frames: int, root: Path):
    """(sequence, shot name, plan, shot, graph) for every shot, compiled in memory (no I/O)."""
    plan = Plan(shot="shot.yaml", samples_factor=1 / 32, chunk_size=8,
                check_frames=[1001, 1001 + frames // 2, 1000 + frames])
    per_seq = math.ceil(shots / sequences)
    for index in range(shots):
        seq = f"sq{index // per_seq + 1:02d}"
        name = f"{seq}_sh{(index % per_seq + 1) * 10:04d}"
        shot = Shot(name=name, scene=f"/show/{seq}/{name}.blend", frames={"start": 1001, "end": 1000 + frames},
                    resolution={"width": 2048, "height": 858}, samples=1024, output=f"frames/{name}.####.exr")
        run_dir = root / seq / name
        graph = compile_plan(plan, shot, plan_file=run_dir / "plan.yaml", shot_file=run_dir / "shot.yaml", run_dir=run_dir)
        yield seq, name, graph


def synthetic_record(task: Task, rng: np.random.Generator, complexity: float) -> TimingRecord:
    """A realistic record: plan renders ~1 min/frame on 32 cores, full quality ~20x, GPU denoise ~1.5 s."""
    if task.stage == "render":
        full = task.role == "reference"
        frame_wall = 55 * complexity * (20 if full else 1) * rng.uniform(0.9, 1.1, len(task.frames))
        frame_cpu = frame_wall * CORES * rng.uniform(0.88, 0.96, len(task.frames))
        frame_gpu = np.zeros(len(task.frames))
        overhead_wall = rng.uniform(25, 60)
        overhead_cpu = overhead_wall * rng.uniform(2, 6)
        backend = "blender-cycles"
    else:
        frame_wall = rng.uniform(1.2, 1.8, len(task.frames))
        frame_gpu = frame_wall * rng.uniform(0.3, 0.5, len(task.frames))
        frame_cpu = frame_wall * rng.uniform(0.8, 1.2, len(task.frames))
        overhead_wall = rng.uniform(6, 10)
        overhead_cpu = overhead_wall * 0.9
        backend = "oidn"
    frames = [FrameTiming(frame=f, wall_s=float(w), cpu_s=float(c), gpu_s=float(g), output=out)
              for f, w, c, g, out in zip(task.frames, frame_wall, frame_cpu, frame_gpu, task.outputs, strict=True)]
    start = 1.7e9
    return TimingRecord(
        task=task.id, stage=task.stage, role=task.role, backend=backend, host="node", cores=CORES,
        started_at=start, finished_at=start + overhead_wall + float(frame_wall.sum()),
        overhead_wall_s=float(overhead_wall), overhead_cpu_s=float(overhead_cpu), frames=frames,
        settings={"device": "cuda"} if task.gpus else {"samples": 1024 if task.role == "reference" else 32},
        command=task.argv,
    )


def write_show(shots, seed: int) -> int:
    """Write every task's record to where its graph expects it; returns how many."""
    rng = np.random.default_rng(seed)
    count = 0
    with ThreadPoolExecutor(max_workers=8) as pool:  # write_timing fsyncs: overlap the waits
        for _, _, graph in shots:
            complexity = float(rng.lognormal(0.0, 0.35))
            records = [(synthetic_record(t, rng, complexity), t.timing) for t in graph.tasks]
            list(pool.map(lambda pair: write_timing(*pair), records))
            count += len(records)
    return count


def read_json(path: str) -> TimingRecord:
    return TimingRecord.model_validate_json(Path(path).read_bytes())


def timed(label: str, rows: list, fn, *args):
    gc.collect()
    start = time.perf_counter()
    result = fn(*args)
    rows.append((label, time.perf_counter() - start, maxrss_mib()))
    return result


def read_all(shots, reader) -> int:
    count = 0
    for _, _, graph in shots:
        for task in graph.tasks:
            reader(task.timing)
            count += 1
    return count


class Pipeline:
    """Per shot: read, cost, simulate plan and full render; roll up per sequence and show."""

    def __init__(self, prices, capacity, reader) -> None:
        self.prices, self.capacity, self.reader = prices, capacity, reader
        self.cost_s = self.sim_shot_s = self.sim_seq_s = self.read_s = 0.0
        self.costs = []
        self.shot_makespans: list[tuple[float, float]] = []
        self.seq_makespans: dict[str, tuple[float, float, int]] = {}
        self.show_plan: tuple[list, dict] = ([], {})
        self.show_full: tuple[list, dict] = ([], {})

    def run(self, shots) -> None:
        current, seq_plan, seq_full = None, ([], {}), ([], {})
        for seq, name, graph in shots:
            if seq != current and current is not None:
                self.roll_up(current, seq_plan, seq_full)
                seq_plan, seq_full = ([], {}), ([], {})
            current = seq
            t0 = time.perf_counter()
            records = [self.reader(t.timing) for t in graph.tasks]
            t1 = time.perf_counter()
            self.costs.append(cost_of(records, self.prices))
            t2 = time.perf_counter()
            plan_tasks = [t for t in graph.tasks if t.role == "plan"]
            durations = durations_from_records(records)
            frame_s, overhead_s = reference_rates(records)
            full_tasks, full_durations = full_render_tasks(
                list(range(1001, 1001 + sum(len(t.frames) for t in plan_tasks if t.stage == "render"))),
                chunk_size=8, seconds_per_frame=frame_s, overhead_s=overhead_s)
            plan_run = simulate(plan_tasks, durations, self.capacity)
            full_run = simulate(full_tasks, full_durations, self.capacity)
            t3 = time.perf_counter()
            self.shot_makespans.append((plan_run.makespan, full_run.makespan))
            for acc, (tasks, durs) in ((seq_plan, namespaced(name, plan_tasks, durations)),
                                       (seq_full, namespaced(name, full_tasks, full_durations))):
                acc[0].extend(tasks)
                acc[1].update(durs)
            self.read_s += t1 - t0
            self.cost_s += t2 - t1
            self.sim_shot_s += t3 - t2
            del records
        if current is not None:
            self.roll_up(current, seq_plan, seq_full)

    def roll_up(self, seq: str, plan, full) -> None:
        t0 = time.perf_counter()
        plan_run = simulate(plan[0], plan[1], self.capacity)
        full_run = simulate(full[0], full[1], self.capacity)
        self.sim_seq_s += time.perf_counter() - t0
        self.seq_makespans[seq] = (plan_run.makespan, full_run.makespan, len(plan[0]) + len(full[0]))
        for acc, part in ((self.show_plan, plan), (self.show_full, full)):
            acc[0].extend(part[0])
            acc[1].update(part[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=500)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sequences", type=int, default=20)
    parser.add_argument("--prices", type=Path, default=ROOT / "examples" / "prices.yaml")
    parser.add_argument("--capacity", type=Path, default=ROOT / "examples" / "capacity.yaml")
    parser.add_argument("--dir", type=Path, help="where to write the records (default: a temp dir, removed)")
    parser.add_argument("--docs", type=Path, help="append the results as a section at the end of this markdown file")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    prices, capacity = load_prices(args.prices), load_capacity(args.capacity)
    work = args.dir or Path(tempfile.mkdtemp(prefix="farmplug-show-"))
    shots = lambda: show_shots(args.shots, args.sequences, args.frames, work)  # noqa: E731 - a re-iterable stream
    rows: list[tuple[str, float, float]] = []
    baseline = maxrss_mib()
    try:
        n = timed("write records (setup, write_timing)", rows, write_show, shots(), args.seed)
        timed("read all records: read_timing (YAML loader)", rows, read_all, shots(), read_timing)
        timed("read all records: JSON (model_validate_json)", rows, read_all, shots(), read_json)
        pipe = Pipeline(prices, capacity, read_json)
        timed("pipeline per shot + per sequence (JSON read)", rows, pipe.run, shots())
        rows.append(("  of which read", pipe.read_s, float("nan")))
        rows.append(("  of which cost_of", pipe.cost_s, float("nan")))
        rows.append(("  of which simulate per shot (plan + full)", pipe.sim_shot_s, float("nan")))
        rows.append(("  of which simulate per sequence (plan + full)", pipe.sim_seq_s, float("nan")))
        measured = pipe.read_s + pipe.cost_s + pipe.sim_shot_s + pipe.sim_seq_s
        rows.append(("  rest: compile_plan per shot, namespacing", rows[3][1] - measured, float("nan")))
        show_plan = timed(f"simulate whole show, plan ({len(pipe.show_plan[0])} tasks)", rows,
                          simulate, *pipe.show_plan, capacity)
        show_full = timed(f"simulate whole show, full render ({len(pipe.show_full[0])} tasks)", rows,
                          simulate, *pipe.show_full, capacity)
        tracemalloc.start()
        traced = Pipeline(prices, capacity, read_json)
        traced.run(shots())
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)

    total = combine(pipe.costs)
    command = "$ .venv/bin/python bench/show_scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"{args.shots} shots x {args.frames} frames in {args.sequences} sequences: {n} timing records "
        f"({n // args.shots} tasks per shot); farm {capacity.cpu_nodes} nodes x {capacity.cores_per_node} cores "
        f"+ {capacity.gpus} GPUs; prices {args.prices.name} ({prices.currency}).",
        "",
        "| step | wall s | peak RSS MiB |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {label} | {secs:.2f} | {'' if math.isnan(rss) else f'{rss:.0f}'} |" for label, secs, rss in rows]
    lines += [
        "",
        f"RSS before the run {baseline:.0f} MiB. Peak traced Python allocations of the streaming pipeline "
        f"(tracemalloc, second run): {peak / 2**20:.1f} MiB, most of it the show-wide roll-up lists.",
        "",
        f"Show cost: plan {format_money(total.total_for('plan'), total.currency)} "
        f"(+ reference frames {format_money(total.total_for('reference'), total.currency)}); "
        f"{total.core_hours:,.0f} core-hours, {total.gpu_hours:,.1f} GPU-hours.",
        f"Makespan: per shot on the whole farm, median plan {np.median([p for p, _ in pipe.shot_makespans]) / 3600:.2f} h "
        f"vs full {np.median([f for _, f in pipe.shot_makespans]) / 3600:.2f} h; "
        f"per sequence median plan {np.median([p for p, _, _ in pipe.seq_makespans.values()]) / 3600:.1f} h "
        f"vs full {np.median([f for _, f, _ in pipe.seq_makespans.values()]) / 3600:.1f} h; "
        f"whole show plan {show_plan.makespan / 86400:.1f} days vs full {show_full.makespan / 86400:.1f} days.",
    ]
    print(command)
    print("\n".join(lines))
    if args.docs:
        section = ["", "## Show scale (issue 5)", "", "```sh", command.removeprefix("$ "), "```", "", *lines]
        with args.docs.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(section) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
