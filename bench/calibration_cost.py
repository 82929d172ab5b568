"""Calibration benchmark (issue 13): is the saving real on an ordinary shot, calibration included?

On a shot farmplug never saw (bench/bench_scene.py: a subdivided hero, 120 rocks, an image
texture, an HDRI with importance sampling, a rolling metal ball and a dollying camera; 320x180,
256 spp, Cycles CPU), for 12 and 48 frames, each in its own folder and with nothing reused:

1. ``farmplug calibrate SHOT --run-dir RUN`` with the default candidates (samples factors 1/64 to
   1/8, with and without a frame step), the default budget (10% of the full render) and the
   default target (mean HDR-FLIP 0.1): the search, its rounds and what it spent;
2. ``farmplug submit PLAN --run-dir RUN`` on the local farm (the calibration's reference renders
   are the run's check frames), then the run's report;
3. the 48-frame shot again, planned with ``farmplug plan --reuse`` from the 12-frame shot's
   calibration (a sequence sharing one calibration), each run charged its share.

It prints the report's figures: the ratio with and without calibration, calibration's cost and
share of the full render, the fixed share of a reduced frame, and the report's labelled
projection to longer shots. Every figure is read from the runs' own ``report.json`` and
``calibration.json``.

Run:  .venv/bin/python bench/calibration_cost.py --out /tmp/calbench [--frames 12,48] [--docs docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_scene import build_bench_scene  # noqa: E402

FARMPLUG = [sys.executable, "-m", "farmplug.cli"]


def farmplug(*args: str | Path, log: Path) -> float:
    """Run a farmplug command (its output appended to ``log``); returns its wall seconds."""
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ farmplug {' '.join(map(str, args))}\n")
        out.flush()
        done = subprocess.run([*FARMPLUG, *map(str, args)], stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "FARMPLUG_PROGRESS": "0"})
    if done.returncode != 0:
        raise SystemExit(f"farmplug {args[0]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - started


def write_shot(folder: Path, scene: Path, name: str, frames: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shot = {"name": name, "scene": str(scene), "frames": {"start": 1, "end": frames},
            "resolution": {"width": 320, "height": 180}, "samples": 256, "output": f"frames/{name}.####.exr"}
    (folder / "shot.yaml").write_text(yaml.safe_dump(shot))
    return folder / "shot.yaml"


def figures(run_dir: Path, calibration: Path | None) -> dict:
    report = json.loads((run_dir / "report.json").read_text())
    s = report["savings"]
    row = {
        "frames": s["frames"], "ratio": s["ratio"], "ratio_without_calibration": s.get("ratio_without_calibration"),
        "core_s_full": s["core_seconds_full"], "core_s_plan": s["core_seconds_plan"],
        "core_s_calibration": s["core_seconds_calibration"], "fixed_share": s.get("render_fixed_share"),
        "longer": [(p["frames"], p["ratio"]) for p in s.get("longer_shots", [])],
        "flip": report["quality"]["flip_mean"], "plan": f"x{report['plan']['samples_factor']:.4g}",
    }
    if calibration is not None:
        c = json.loads(calibration.read_text())
        row |= {"chosen": c["recommendation"], "tried": [x["name"] for x in c["candidates"]],
                "skipped": len(c["skipped"]), "rounds": c["budget"]["rounds"],
                "spent_share": c["budget"]["spent_core_s"] / c["budget"]["full_render_core_s"],
                "check_frames": c["check_frames"]}
    return row


def run_shot(root: Path, frames: int, log: Path, calibrate_args: list[str]) -> tuple[dict, Path]:
    scene = root / "scene" / f"bench_{frames}f.blend"
    if not scene.is_file():
        build_bench_scene(scene, frames=frames, resolution=(320, 180), samples=256)
    folder = root / f"sh{frames:03d}"
    shot = write_shot(folder, scene, f"bench{frames}", frames)
    run_dir = folder / "run"
    wall = farmplug("calibrate", shot, "--out", folder, "--run-dir", run_dir, *calibrate_args, log=log)
    if not (folder / "plan.yaml").is_file():
        raise SystemExit(f"calibration of {frames} frames recommends the full render; see {folder / 'calibration.json'}")
    wall += farmplug("submit", folder / "plan.yaml", "--run-dir", run_dir, log=log)
    return figures(run_dir, folder / "calibration.json") | {"wall_s": wall}, folder / "calibration.json"


def run_reused(root: Path, frames: int, calibration: Path, log: Path) -> dict:
    scene = root / "scene" / f"bench_{frames}f.blend"
    folder = root / f"sh{frames:03d}-reuse"
    shot = write_shot(folder, scene, f"bench{frames}r", frames)
    wall = farmplug("plan", shot, "--reuse", calibration, log=log)
    wall += farmplug("submit", folder / "plan.yaml", "--run-dir", folder / "run", log=log)
    return figures(folder / "run", None) | {"wall_s": wall}


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| shot | plan chosen | tried (rounds) | check frames | calibration spent | ratio | without calibration | "
             "fixed share of a reduced render | FLIP | projection (frames → ratio) |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, r in rows:
        tried = f"{', '.join(r['tried'])} ({r['rounds']})" if "tried" in r else "reused"
        spent = f"{r['core_s_calibration']:.1f} core-s" + (f" ({r['spent_share']:.1%} of full)" if "spent_share" in r else "")
        fixed = f"{r['fixed_share']:.0%}" if r["fixed_share"] is not None else "-"
        without = f"{r['ratio_without_calibration']:.1f}x" if r["ratio_without_calibration"] else "-"
        longer = ", ".join(f"{n} → {x:.1f}x" for n, x in r["longer"]) or "-"
        lines.append(f"| {label} | {r.get('chosen', r['plan'])} | {tried} | {r.get('check_frames', '-')} | {spent} | "
                     f"{r['ratio']:.1f}x | {without} | {fixed} | {r['flip']:.4f} | {longer} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder (scenes, shots, runs, log)")
    parser.add_argument("--frames", default="12,48", help="shot lengths to calibrate and run")
    parser.add_argument("--no-reuse", action="store_true", help="skip the reused-calibration run")
    parser.add_argument("--budget-share", default=None, help="farmplug calibrate --budget-share (default: its default)")
    parser.add_argument("--docs", type=Path, default=None, help="append the results to this Markdown file")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "bench.log"
    lengths = [int(x) for x in args.frames.split(",")]
    rows, first_calibration = [], None
    for frames in lengths:
        row, calibration = run_shot(args.out, frames, log,
                                    ["--budget-share", args.budget_share] if args.budget_share else [])
        first_calibration = first_calibration or calibration
        rows.append((f"{frames} frames, calibrated", row))
        print(json.dumps(rows[-1], default=str), flush=True)
    if not args.no_reuse and len(lengths) > 1 and first_calibration is not None:
        frames = lengths[-1]
        rows.append((f"{frames} frames, {lengths[0]}-frame calibration reused", run_reused(args.out, frames,
                                                                                           first_calibration, log)))
        print(json.dumps(rows[-1], default=str), flush=True)
    text = table(rows)
    print(text)
    if args.docs:
        machine = f"{platform.node()}, {platform.processor() or platform.machine()}"
        with args.docs.open("a") as docs:
            docs.write(f"\n\nMeasured {time.strftime('%Y-%m-%d')} on {machine} with "
                       f"`.venv/bin/python bench/calibration_cost.py --out {args.out} --frames {args.frames}"
                       f"{' --budget-share ' + args.budget_share if args.budget_share else ''}`:\n\n"
                       f"{text}\n")


if __name__ == "__main__":
    main()
