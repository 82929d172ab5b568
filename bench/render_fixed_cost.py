"""Fixed and per-sample cost of reduced renders, before and after issue 13's cuts.

A render frame costs ``fixed + samples x per-sample`` core-seconds, and a task adds its start-up
(process start, ``import bpy``, scene load). At 4 spp the fixed part is most of a frame, so this
measures each part on real Cycles renders at 320x180, at 4 and 256 spp, in two modes:

* ``before``: the renderer as it was: the child started with ``python -m`` (which imports the
  farmplug package first) and Cycles rebuilding its scene for every frame (persistent data off);
* ``after``: the renderer as it is: the child run by path, persistent data where the scene
  allows it.

Each task renders ``--frames`` frames with the albedo and normal passes a denoising plan asks for.
Modes alternate within each repeat, so the machine's load drifts over both alike; medians are
printed with their min-max spread. The split comes from the records themselves: per frame,
Blender's render stats separate sampling from the rest (``TimingRecord.render_cost``), and
``farmplug.timing.cost_split`` fits frame cost on samples across the 4 and 256 spp tasks.

Run:  .venv/bin/python bench/render_fixed_cost.py [--scenes bench,demo] [--frames 4] [--repeats 2]
      [--samples 4,256] [--modes before,after] [--chunk 8] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from farmplug.render import BlenderRenderer, RenderRequest, build_demo_scene
from farmplug.render.blender import CHILD_MODULE
from farmplug.timing import TimingRecord, cost_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scene import build_bench_scene  # noqa: E402 - bench/ is not a package

RESOLUTION = (320, 180)
PASSES = frozenset({"albedo", "normal"})


class BeforeRenderer(BlenderRenderer):
    """The child as it was started before issue 13: ``python -m`` (importing the farmplug package)."""

    def command(self, request_json: Path, result_json: Path) -> list[str]:
        if self.blender_executable is not None:
            return super().command(request_json, result_json)
        return [str(self.python_executable), "-m", CHILD_MODULE, str(request_json), str(result_json)]


def render_task(scene: Path, *, mode: str, samples: int, frames: int, out: Path) -> TimingRecord:
    renderer = BeforeRenderer() if mode == "before" else BlenderRenderer()
    request = RenderRequest(scene=scene, frames=tuple(range(1, frames + 1)), output_pattern=str(out / "f.####.exr"),
                            samples=samples, passes=PASSES, persistent_data=False if mode == "before" else None,
                            task=f"bench-{mode}-{samples}")
    return renderer.render(request)


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.3f}"
    return f"{median:.3f} ({min(values):.3f}-{max(values):.3f})"


def summarise(records: list[TimingRecord], *, chunk: int) -> dict[str, object]:
    """The parts of one (scene, mode): medians over tasks, and the fit across sample counts."""
    splits = [r.render_cost for r in records if r.render_cost is not None]
    overhead = [r.overhead_cpu_s for r in records]
    first = [s.fixed_cpu_s_first_frame for s in splits]
    later = [s.fixed_cpu_s_later_frames for s in splits if s.fixed_cpu_s_later_frames is not None]
    per_sample = [s.cpu_s_per_sample for s in splits if s.samples == max(x.samples for x in splits)]
    fit = cost_split(records)
    fit_with_start = cost_split(records, include_overhead=True)
    median_later = statistics.median(later) if later else statistics.median(first)
    median_first, median_overhead = statistics.median(first), statistics.median(overhead)
    # A task of `chunk` frames: one start-up, one first frame, chunk-1 later frames.
    chunk_fixed = (median_overhead + median_first + (chunk - 1) * median_later) / chunk
    return {
        "tasks": len(records),
        "overhead_cpu_s": overhead,
        "fixed_first_frame_cpu_s": first,
        "fixed_later_frames_cpu_s": later,
        "cpu_s_per_sample": per_sample,
        "fit_fixed_cpu_s_per_frame": fit.fixed_cpu_s_per_frame,
        "fit_cpu_s_per_sample": fit.cpu_s_per_sample,
        "fit_with_start_fixed_cpu_s_per_frame": fit_with_start.fixed_cpu_s_per_frame,
        "chunk": chunk,
        "chunk_fixed_cpu_s_per_frame": chunk_fixed,
        "persistent_data": sorted({str(r.settings.get("persistent_data_note")) for r in records}),
        "frame_wall_s": [f.wall_s for r in records for f in r.frames],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", default="bench,demo", help="bench (bench/bench_scene.py) and/or demo")
    parser.add_argument("--frames", type=int, default=4, help="frames per task")
    parser.add_argument("--samples", default="4,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", default="before,after")
    parser.add_argument("--chunk", type=int, default=8, help="frames per task for the per-frame fixed cost of a chunk")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args(argv)
    samples = [int(s) for s in args.samples.split(",")]
    modes = args.modes.split(",")
    results: dict[str, dict[str, object]] = {}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="farmplug-fixed-cost-") as scratch:
        root = Path(scratch)
        for name in args.scenes.split(","):
            blend = root / f"{name}.blend"
            if name == "bench":
                build_bench_scene(blend, frames=max(args.frames, 12), resolution=RESOLUTION, samples=256)
            elif name == "demo":
                build_demo_scene(blend, frames=max(args.frames, 24), resolution=RESOLUTION, samples=256)
            else:
                parser.error(f"unknown scene {name!r}; choose bench or demo")
            records: dict[str, list[TimingRecord]] = {mode: [] for mode in modes}
            for repeat in range(args.repeats):
                for spp in samples:
                    for mode in modes if repeat % 2 == 0 else reversed(modes):
                        out = root / f"{name}-{mode}-{spp}-{repeat}"
                        record = render_task(blend, mode=mode, samples=spp, frames=args.frames, out=out)
                        records[mode].append(record)
                        split = record.render_cost
                        print(f"{name} {mode:6s} {spp:4d} spp: start-up {record.overhead_cpu_s:.2f}, frames "
                              f"{[round(f.cpu_s, 2) for f in record.frames]} core-s; fixed first "
                              f"{split.fixed_cpu_s_first_frame:.3f}, later {split.fixed_cpu_s_later_frames:.3f}, "
                              f"per sample {split.cpu_s_per_sample:.4f}" if split else "no split", flush=True)
            for mode in modes:
                results[f"{name}/{mode}"] = summarise(records[mode], chunk=args.chunk)

    print(f"\n{args.frames} frames per task, {args.repeats} repeat(s), {RESOLUTION[0]}x{RESOLUTION[1]}, "
          f"{time.time() - started:.0f} s wall. CPU core-seconds; median (min-max) over tasks.\n")
    print(f"| scene | mode | start-up / task | fixed, first frame | fixed, later frames | per sample ({max(samples)} spp) "
          f"| fit: fixed / frame | fit: per sample | fixed / frame, chunk of {args.chunk} | fixed share at 4 spp |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, r in results.items():
        name, mode = key.split("/")
        per_sample = statistics.median(r["cpu_s_per_sample"])  # type: ignore[arg-type]
        chunk_fixed = float(r["chunk_fixed_cpu_s_per_frame"])  # type: ignore[arg-type]
        share = chunk_fixed / (chunk_fixed + 4 * per_sample)
        print(f"| {name} | {mode} | {_spread(r['overhead_cpu_s'])} | {_spread(r['fixed_first_frame_cpu_s'])} "  # type: ignore[arg-type]
              f"| {_spread(r['fixed_later_frames_cpu_s'])} | {_spread(r['cpu_s_per_sample'])} "  # type: ignore[arg-type]
              f"| {float(r['fit_fixed_cpu_s_per_frame']):.3f} | {float(r['fit_cpu_s_per_sample']):.4f} "  # type: ignore[arg-type]
              f"| {chunk_fixed:.3f} | {share:.0%} |")
    for name in args.scenes.split(","):
        if f"{name}/before" in results and f"{name}/after" in results:
            before = float(results[f"{name}/before"]["chunk_fixed_cpu_s_per_frame"])  # type: ignore[arg-type]
            after = float(results[f"{name}/after"]["chunk_fixed_cpu_s_per_frame"])  # type: ignore[arg-type]
            print(f"\n{name}: fixed cost per frame in a chunk of {args.chunk}: {before:.3f} -> {after:.3f} core-s "
                  f"({before / after:.1f}x less)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
