"""Benchmark: OIDN modes on the demo shot's check frames — quality against cost.

Renders the demo scene's check frames at full samples (reference) and at the plan's reduced
samples, then denoises them with each OIDN mode and prints mean HDR-FLIP, PSNR and CPU
core-seconds per frame. Used to choose the denoise stage's defaults (docs/benchmarks.md).

    .venv/bin/python bench/denoise_modes.py --out /tmp/bench-denoise [--samples 512 --low 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from farmplug.denoise.oidn import OidnDenoiser, OidnOptions
from farmplug.imageio import read_frame
from farmplug.quality import measure
from farmplug.render import BlenderRenderer, RenderRequest, build_demo_scene
from farmplug.render.base import frame_path
from farmplug.timing import Stopwatch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-denoise"))
    parser.add_argument("--frames", default="1,12,24")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--low", type=int, default=16)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    args = parser.parse_args()
    frames = tuple(int(f) for f in args.frames.split(","))
    scene = args.out / f"demo_{args.width}x{args.height}.blend"
    if not scene.exists():
        build_demo_scene(scene, frames=24, resolution=(args.width, args.height), samples=args.samples)
    renderer = BlenderRenderer()
    ref_pattern = str(args.out / f"ref{args.samples}" / "f.####.exr")
    low_pattern = str(args.out / f"low{args.low}" / "f.####.exr")
    costs = {}
    for pattern, samples, passes in ((ref_pattern, args.samples, frozenset()), (low_pattern, args.low, frozenset({"albedo", "normal"}))):
        if all(frame_path(pattern, f).exists() for f in frames):
            continue
        record = renderer.render(RenderRequest(scene=scene, frames=frames, output_pattern=pattern, samples=samples, passes=passes))
        costs[samples] = sum(f.cpu_s for f in record.frames) / len(frames)
    refs = {f: read_frame(frame_path(ref_pattern, f)).feature("color") for f in frames}
    lows = {f: read_frame(frame_path(low_pattern, f)) for f in frames}
    rows = []
    noisy = [measure(refs[f], lows[f].feature("color")) for f in frames]
    rows.append(("none (noisy render)", sum(q.flip_mean for q in noisy) / 3, sum(q.psnr for q in noisy) / 3, 0.0))
    modes = []
    for quality in ("high", "balanced", "fast"):
        modes += [
            (f"{quality}, prefiltered aux", OidnOptions(quality=quality, prefilter_aux=True), True),
            (f"{quality}, noisy aux", OidnOptions(quality=quality, prefilter_aux=False), True),
            (f"{quality}, clean aux", OidnOptions(quality=quality, clean_aux=True), True),
            (f"{quality}, colour only", OidnOptions(quality=quality), False),
        ]
    for name, options, use_aux in modes:
        with OidnDenoiser(options) as den:
            den.denoise(lows[frames[0]].feature("color"))  # warm up (filter commit) outside the timing
            qs, cpu = [], 0.0
            for f in frames:
                aux = {"albedo": lows[f].feature("albedo"), "normal": lows[f].feature("normal")} if use_aux else {}
                with Stopwatch() as sw:
                    out = den.denoise(lows[f].feature("color"), **aux)
                cpu += sw.cpu_s
                qs.append(measure(refs[f], out))
        rows.append((name, sum(q.flip_mean for q in qs) / len(qs), sum(q.psnr for q in qs) / len(qs), cpu / len(frames)))
    print(f"# {args.width}x{args.height}, reference {args.samples} spp, plan {args.low} spp, frames {frames}")
    print(f"# machine: {platform.node()}, {os.cpu_count()} cores; render core-s/frame: {costs}")
    print("| OIDN mode | mean FLIP | PSNR dB | denoise core-s/frame |")
    print("|---|---|---|---|")
    for name, flip, psnr, cpu in rows:
        print(f"| {name} | {flip:.4f} | {psnr:.2f} | {cpu:.2f} |")
    (args.out / "denoise_modes.json").write_text(json.dumps({"rows": rows, "render_cost": costs}, indent=2))


if __name__ == "__main__":
    main()
