"""Benchmark: temporal denoise (neighbours gathered along the Vector pass, then OIDN) against per-frame OIDN.

For each test sequence (farmplug.render.sequences: a camera pan, a camera dolly, moving objects,
a disocclusion, glossy reflections) every frame is rendered at --samples with a new noise pattern
per frame (the sequences use Cycles' animated seed) and the passes the temporal backend reads,
and again at --reference-samples with another seed and Cycles' own OIDN (albedo + normal, as
bench/inbetween.py renders its references): an independent reference whose own frame-to-frame
noise is far below the test renders' (without the denoiser, a 512 spp reference's flicker alone
was larger than the temporal result's on the camera pan, and the metric measured the reference). Both denoise
backends run through farmplug's own stage runner at equal samples: ``oidn`` (per frame) and
``temporal`` (--window neighbours each side). Scored against the references: mean HDR-FLIP and
PSNR per frame (every frame, the shot's ends included), and temporal instability
(farmplug.quality.temporal_instability: mean |Δresult − Δreference| over consecutive pairs,
plain and reprojected along the reference's Vector pass).

Speed: the temporal step's cost per --speed-size frame (default 1920x1080) on this machine, from
the stage runner's own timing records on a real render of the camera pan at 1 spp (2 x reach + 1
frames, the reach being window + stabilize, so the middle frame has all it reads): each backend's
task time over its frames, and their difference per frame (the gathering and the blend).

    .venv/bin/python bench/temporal_denoise.py --out /tmp/bench-temporal [--sequences all]
        [--resolution 160x90] [--frames 9] [--samples 8] [--reference-samples 256] [--window 2]
        [--speed-size 1920x1080 | --no-speed] [--json FILE]

Renders are cached in --out; rerunning re-denoises and re-scores only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from farmplug.denoise.config import DenoiseConfig, TemporalDenoiseConfig
from farmplug.imageio import read_frame
from farmplug.quality import measure, temporal_instability
from farmplug.render import BlenderRenderer, RenderRequest
from farmplug.render.base import frame_path
from farmplug.render.sequences import SEQUENCES, build_sequence
from farmplug.runner import frame_jobs, run_stage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inbetween import DenoisedRenderer  # noqa: E402 - bench/inbetween.py: Cycles' OIDN on, for references only

PASSES = frozenset({"albedo", "normal", "depth", "motion", "object_index"})
REFERENCE_SEED = 977  # the references' seed: their noise is independent of the test renders' (seed 0)
DEFAULT_SEQUENCES = ("camera_pan", "camera_dolly", "translate_rotate", "occlusion", "glossy")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def render_missing(scene: Path, pattern: str, frames: list[int], samples: int, passes: frozenset[str],
                   seed: int | None, what: str, *, denoised: bool = False) -> None:
    missing = [f for f in frames if not frame_path(pattern, f).is_file()]
    if not missing:
        return
    log(f"{what}: rendering {len(missing)} frame(s) at {samples} spp")
    record = (DenoisedRenderer() if denoised else BlenderRenderer()).render(RenderRequest(scene=scene, frames=missing, output_pattern=pattern,
                                                    samples=samples, passes=passes, seed=seed))
    log(f"{what}: {statistics.median(f.wall_s for f in record.frames):.2f} s/frame (median wall)")


def denoise(config, source: str, target: str, frames: list[int], task: str) -> list[float]:
    """Run one denoise backend over the frames with the stage runner; the per-frame wall seconds."""
    for f in frames:
        frame_path(target, f).unlink(missing_ok=True)
    record = run_stage(config, frame_jobs(source, target, frames), task=task)
    return [f.wall_s for f in record.frames]


def score(pattern: str, references: list[np.ndarray], motion: list[np.ndarray], frames: list[int]) -> dict[str, Any]:
    results = [read_frame(frame_path(pattern, f)).feature("color") for f in frames]
    per_frame = [measure(r, t) for r, t in zip(references, results, strict=True)]
    plain = temporal_instability(results, references)
    warped = temporal_instability(results, references, motion=motion)
    return {
        "flip": [q.flip_mean for q in per_frame],
        "psnr": [q.psnr for q in per_frame],
        "flip_mean": statistics.fmean(q.flip_mean for q in per_frame),
        "psnr_mean": statistics.fmean(q.psnr for q in per_frame),
        "instability": plain.mean,
        "instability_warped": warped.mean,
        "result_change_warped": warped.result_change,
        "reference_change_warped": warped.reference_change,
        "instability_pairs": list(plain.pairs),
        "instability_warped_pairs": list(warped.pairs),
    }


def run_sequence(name: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.out) / f"{name}-{args.resolution[0]}x{args.resolution[1]}-{args.frames}"
    scene = folder / "scene.blend"
    if not scene.is_file():
        log(f"{name}: building")
        build_sequence(name, scene, frames=args.frames, resolution=args.resolution, samples=args.reference_samples)
    frames = list(range(1, args.frames + 1))
    noisy = str(folder / f"s{args.samples}" / "f.####.exr")
    reference = str(folder / f"ref{args.reference_samples}-denoised" / "f.####.exr")
    render_missing(scene, noisy, frames, args.samples, PASSES, None, f"{name} test")
    render_missing(scene, reference, frames, args.reference_samples, frozenset({"albedo", "normal", "motion"}),
                   REFERENCE_SEED, f"{name} reference", denoised=True)
    refs = [read_frame(frame_path(reference, f)) for f in frames]
    ref_color = [r.feature("color") for r in refs]
    ref_motion = [r.feature("motion") for r in refs]
    out: dict[str, Any] = {"name": name, "what": SEQUENCES[name]}
    noisy_frames = [read_frame(frame_path(noisy, f)).feature("color") for f in frames]
    out["noisy"] = {"psnr_mean": statistics.fmean(measure(r, t).psnr for r, t in zip(ref_color, noisy_frames,
                                                                                        strict=True))}
    methods = {
        "oidn": DenoiseConfig(device="cpu"),
        "temporal": TemporalDenoiseConfig(device="cpu", window=args.window),
    }
    for method, config in methods.items():
        target = str(folder / f"{method}-s{args.samples}-w{args.window}" / "f.####.exr")
        walls = denoise(config, noisy, target, frames, f"{method}-{name}")
        out[method] = score(target, ref_color, ref_motion, frames)
        out[method]["wall_s_per_frame"] = statistics.median(walls)
        log(f"{name} {method}: FLIP {out[method]['flip_mean']:.4f}  PSNR {out[method]['psnr_mean']:.2f} dB  "
            f"instability {out[method]['instability']:.4f} (warped {out[method]['instability_warped']:.4f})")
    o, t = out["oidn"], out["temporal"]
    out["ratio_instability"] = t["instability"] / o["instability"] if o["instability"] else None
    out["ratio_instability_warped"] = t["instability_warped"] / o["instability_warped"] if o["instability_warped"] else None
    out["psnr_gain_db"] = t["psnr_mean"] - o["psnr_mean"]
    out["flip_change"] = t["flip_mean"] - o["flip_mean"]
    return out


def measure_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Both backends on real 1-spp renders of the camera pan at --speed-size (5 frames; the middle
    frame has its full window of neighbours): seconds per frame from the runner's records."""
    width, height = args.speed_size
    folder = Path(args.out) / f"speed-{width}x{height}"
    scene = folder / "scene.blend"
    reach = TemporalDenoiseConfig(window=args.window).window_reach()
    count = 2 * reach + 1
    if not scene.is_file():
        build_sequence("camera_pan", scene, frames=count, resolution=(width, height), samples=1)
    frames = list(range(1, count + 1))
    noisy = str(folder / "s1" / "f.####.exr")
    render_missing(scene, noisy, frames, 1, PASSES, None, f"speed {width}x{height}")
    timing: dict[str, Any] = {"size": f"{width}x{height}", "threads": os.cpu_count()}
    for method, config in (("oidn", DenoiseConfig(device="cpu")),
                           ("temporal", TemporalDenoiseConfig(device="cpu", window=args.window))):
        target = str(folder / method / "f.####.exr")
        for f in frames:
            frame_path(target, f).unlink(missing_ok=True)
        started = time.perf_counter()
        record = run_stage(config, frame_jobs(noisy, target, frames), task=f"speed-{method}")
        by_frame = {f.frame: f for f in record.frames}
        middle = by_frame[reach + 1]
        timing[method] = {
            "middle_frame_wall_s": middle.wall_s, "middle_frame_cpu_s": middle.cpu_s,
            "median_wall_s": statistics.median(f.wall_s for f in record.frames),
            "task_wall_s": time.perf_counter() - started, "open_wall_s": record.overhead_wall_s,
            "per_frame_wall_s": sum(f.wall_s for f in record.frames) / count,
            "per_frame_cpu_s": sum(f.cpu_s for f in record.frames) / count,
        }
        log(f"speed {method}: {timing[method]['per_frame_wall_s']:.2f} s wall a frame over {count} frames")
    timing["frames"] = count
    timing["temporal_step_wall_s"] = timing["temporal"]["per_frame_wall_s"] - timing["oidn"]["per_frame_wall_s"]
    timing["temporal_step_cpu_s"] = timing["temporal"]["per_frame_cpu_s"] - timing["oidn"]["per_frame_cpu_s"]
    return timing


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| sequence | method | mean FLIP | mean PSNR (dB) | instability | warped instability |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for seq in results["sequences"]:
        for method in ("oidn", "temporal"):
            m = seq[method]
            lines.append(f"| {seq['name']} | {method} | {m['flip_mean']:.4f} | {m['psnr_mean']:.2f} | "
                         f"{m['instability']:.4f} | {m['instability_warped']:.4f} |")
        lines.append(f"| {seq['name']} | **temporal / oidn** | {seq['flip_change']:+.4f} | "
                     f"{seq['psnr_gain_db']:+.2f} | {seq['ratio_instability']:.2f}x | "
                     f"{seq['ratio_instability_warped']:.2f}x |")
    speed = results.get("speed")
    if speed:
        lines.append("")
        lines.append(f"Speed at {speed['size']} ({speed['threads']} CPU threads), a task of {speed['frames']} frames: "
                     f"oidn {speed['oidn']['per_frame_wall_s']:.2f} s a frame, temporal "
                     f"{speed['temporal']['per_frame_wall_s']:.2f} s, the temporal step "
                     f"{speed['temporal_step_wall_s']:.2f} s wall ({speed['temporal_step_cpu_s']:.2f} core-s) per frame.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sequences", default=",".join(DEFAULT_SEQUENCES), help="comma list, or all")
    parser.add_argument("--resolution", type=parse_size, default=(160, 90))
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--samples", type=int, default=8, help="samples of the test renders (both backends)")
    parser.add_argument("--reference-samples", type=int, default=256)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--speed-size", type=parse_size, default=(1920, 1080))
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = list(SEQUENCES) if args.sequences == "all" else [n.strip() for n in args.sequences.split(",") if n.strip()]
    results: dict[str, Any] = {
        "settings": {"resolution": list(args.resolution), "frames": args.frames, "samples": args.samples,
                     "reference_samples": args.reference_samples, "window": args.window},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load": os.getloadavg()[0]},
        "sequences": [run_sequence(name, args) for name in names],
    }
    if not args.no_speed:
        results["speed"] = measure_speed(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))


if __name__ == "__main__":
    main()
