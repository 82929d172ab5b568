"""Benchmark: render-aware frame interpolation against crossfade and colour-only optical flow.

For each test sequence (farmplug.render.sequences) every frame is rendered at full settings with
depth, motion, albedo and normal (cached in --out). For each keyframe step, every frame between
two keyframes is interpolated by farmplug (unguided, and guided by a cheap render of the target's
depth and vectors at --guide-samples, as the plan's guide task renders it), by a crossfade and by
DIS optical flow, and scored against the real render with mean
HDR-FLIP and PSNR. The references are rendered cleanly (1024 spp and Cycles' OIDN denoiser,
switched on for these renders only). A second render of one frame with another seed gives the
render-noise floor: no interpolation can score much better than that against its reference.
Each farmplug frame's score is listed beside its measured error, and frames scoring under
--threshold count as sent back to render. Interpolation speed is measured on synthetic
1920x1080 inputs.

    .venv/bin/python bench/inbetween.py --out /tmp/bench-inbetween [--sequences all] [--steps 2,3]
        [--resolution 160x90] [--samples 1024] [--frames 9] [--frames-used N] [--threshold 0.5] [--no-denoise]
        [--guide-samples 2]

--frames-used renders and judges only the first N frames of each sequence (the motion stays
that of the --frames long shot): a cheaper run at higher resolutions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farmplug.imageio import read_frame
from farmplug.inbetween.baselines import crossfade, optical_flow_interpolate
from farmplug.inbetween.vectors import split_blender_vectors
from farmplug.quality import measure
from farmplug.render import BlenderRenderer, RenderRequest
from farmplug.render.base import frame_path
from farmplug.render.sequences import SEQUENCES, build_sequence

PASSES = frozenset({"albedo", "normal", "depth", "motion"})
SCORE_THRESHOLD = 0.5  # default --threshold: frames scoring below this go back to the render queue
NOISE_SEED = 977  # the noise-floor render's seed (the sequences use seed 0)
SPEED_SIZE = (1920, 1080)
SPEED_REPEATS = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_interpolate() -> Any | None:
    """The render-aware interpolation module, or None (with a message) when it is not usable."""
    try:
        from farmplug.inbetween import interpolate as module
    except Exception as err:  # noqa: BLE001 - a bench: report any import failure and go on
        log(f"farmplug.inbetween.interpolate is not usable ({type(err).__name__}: {err}); running baselines only")
        return None
    missing = [n for n in ("Keyframe", "Guide", "InterpolationSettings", "interpolate") if not hasattr(module, n)]
    if missing:
        log(f"farmplug.inbetween.interpolate lacks {missing}; running baselines only")
        return None
    return module


@dataclass
class Rendered:
    """One rendered frame's colour (RGBA), depth and image-space vectors."""

    color: np.ndarray
    depth: np.ndarray
    to_prev: np.ndarray
    to_next: np.ndarray


def load_rendered(path: Path) -> Rendered:
    frame = read_frame(path)
    color = np.concatenate([frame.feature("color"), frame.feature("alpha")], axis=2)
    to_prev, to_next = split_blender_vectors(frame.feature("motion"))
    return Rendered(color=color, depth=frame.feature("depth")[:, :, 0], to_prev=to_prev, to_next=to_next)


# The bench's references must be far cleaner than the errors it measures: Cycles' own OIDN
# denoiser (albedo + normal guided) is switched on in the render child for these renders only.
# farmplug's renderer keeps it off everywhere else (the denoise stage owns denoising).
_DENOISED_CHILD = """
import sys
from farmplug.render import _blender_child as child
plain = child.configure_scene
def configure(bpy, request):
    scene = plain(bpy, request)
    cycles = scene.cycles
    cycles.use_denoising = True
    cycles.denoiser = "OPENIMAGEDENOISE"
    cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    cycles.denoising_prefilter = "ACCURATE"
    cycles.denoising_quality = "HIGH"
    return scene
child.configure_scene = configure
status = child.main([sys.argv[0], *sys.argv[1:]])
sys.stderr.flush()
import os
os._exit(status)
"""


class DenoisedRenderer(BlenderRenderer):
    """The farmplug Blender renderer with Cycles' denoiser on (bench references only)."""

    def command(self, request_json: Path, result_json: Path) -> list[str]:
        return [str(self.python_executable), "-c", _DENOISED_CHILD, str(request_json), str(result_json)]


def noise_frame(frames_used: int) -> int:
    """The frame rendered a second time, with another seed, for the noise floor: the middle one."""
    return (1 + frames_used) // 2


def render_missing(
    renderer: BlenderRenderer, scene: Path, pattern: str, count: int, samples: int, what: str, unit: str
) -> Any | None:
    """Render frames 1..count of ``pattern`` that are not on disk yet (with the bench's passes);
    returns the render record, or None when every frame was cached."""
    missing = [f for f in range(1, count + 1) if not frame_path(pattern, f).is_file()]
    if not missing:
        return None
    log(f"{what} {len(missing)} {unit} at {samples} spp")
    return renderer.render(
        RenderRequest(scene=scene, frames=missing, output_pattern=pattern, samples=samples, passes=PASSES)
    )


def render_sequence(name: str, folder: Path, args: argparse.Namespace) -> tuple[str, str, str | None]:
    """Build and render one sequence unless cached; returns the frame, noise-floor and guide
    patterns (no guide pattern with ``--guide-samples 0``: guides then come from the frames)."""
    scene = folder / "scene.blend"
    if not scene.is_file():
        log(f"{name}: building")
        build_sequence(name, scene, frames=args.frames, resolution=args.resolution, samples=args.samples)
    renderer = DenoisedRenderer() if args.denoise else BlenderRenderer()
    pattern = str(folder / "frames" / "f.####.exr")
    record = render_missing(renderer, scene, pattern, args.frames_used, args.samples, f"{name}: rendering", "frame(s)")
    if record is not None:
        walls = [f.wall_s for f in record.frames]
        log(f"{name}: {statistics.median(walls):.2f} s/frame (median wall)")
    noise_pattern = str(folder / "noise" / "f.####.exr")
    middle = noise_frame(args.frames_used)
    if not frame_path(noise_pattern, middle).is_file():
        renderer.render(
            RenderRequest(scene=scene, frames=(middle,), output_pattern=noise_pattern, samples=args.samples,
                          seed=NOISE_SEED)
        )
    if not args.guide_samples:
        return pattern, noise_pattern, None
    # The guides as the plan's guide task renders them: a few samples, no denoiser, aux passes.
    guide_pattern = str(folder / f"guide{args.guide_samples}" / "f.####.exr")
    render_missing(BlenderRenderer(), scene, guide_pattern, args.frames_used, args.guide_samples,
                   f"{name}: rendering", "guide frame(s)")
    return pattern, noise_pattern, guide_pattern


@dataclass
class Scores:
    """Per-frame scores of one method on one sequence and step."""

    flip: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)  # farmplug frames only
    frames: list[int] = field(default_factory=list)

    def add(self, frame: int, reference: np.ndarray, test: np.ndarray, score: float | None = None) -> None:
        quality = measure(reference[:, :, :3], test[:, :, :3])
        self.frames.append(frame)
        self.flip.append(quality.flip_mean)
        self.psnr.append(quality.psnr)
        if score is not None:
            self.score.append(score)

    def summary(self, threshold: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "frames": len(self.frames),
            "flip_mean": float(np.mean(self.flip)) if self.flip else None,
            "psnr": float(np.mean(self.psnr)) if self.psnr else None,
            "per_frame": [
                {"frame": f, "flip_mean": fl, "psnr": p, **({"score": self.score[i]} if self.score else {})}
                for i, (f, fl, p) in enumerate(zip(self.frames, self.flip, self.psnr, strict=True))
            ],
        }
        if self.score:
            passing = [i for i, s in enumerate(self.score) if s >= threshold]
            out["passing_frames"] = len(passing)
            out["sent_back_share"] = 1.0 - len(passing) / len(self.score)
            out["passing_flip_mean"] = float(np.mean([self.flip[i] for i in passing])) if passing else None
            out["passing_psnr"] = float(np.mean([self.psnr[i] for i in passing])) if passing else None
            out["mean_score"] = float(np.mean(self.score))
        return out


def evaluate_step(
    frames: dict[int, Rendered], step: int, count: int, module: Any | None, threshold: float,
    guide_frames: dict[int, Rendered] | None = None,
) -> dict[str, dict]:
    """Interpolate every non-key frame of one step with each method and score it (guided by
    ``guide_frames``' depth and vectors, or by the target frames' own when there are none)."""
    guide_frames = guide_frames or frames
    methods: dict[str, Scores] = {"crossfade": Scores(), "optical flow (DIS)": Scores()}
    if module is not None:
        methods = {"farmplug unguided": Scores(), "farmplug guided": Scores(), **methods}
    for a_frame in range(1, count + 1 - step, step):
        b_frame = a_frame + step
        targets = list(range(a_frame + 1, b_frame))
        a, b = frames[a_frame], frames[b_frame]
        if module is not None:
            key_a, key_b = (
                module.Keyframe(frame=f, color=r.color, depth=r.depth, to_prev=r.to_prev, to_next=r.to_next, layers={})
                for f, r in ((a_frame, a), (b_frame, b))
            )
            guides = {
                t: module.Guide(depth=guide_frames[t].depth, to_prev=guide_frames[t].to_prev,
                                to_next=guide_frames[t].to_next)
                for t in targets
            }
            settings = module.InterpolationSettings()
            for label, guide_map in (("farmplug unguided", None), ("farmplug guided", guides)):
                for result in module.interpolate(key_a, key_b, targets, guides=guide_map, settings=settings):
                    methods[label].add(result.frame, frames[result.frame].color, result.color, float(result.score))
        for t in targets:
            s = (t - a_frame) / step
            methods["crossfade"].add(t, frames[t].color, crossfade(a.color, b.color, s))
            methods["optical flow (DIS)"].add(t, frames[t].color, optical_flow_interpolate(a.color, b.color, s))
    return {label: scores.summary(threshold) for label, scores in methods.items()}


def _synthetic_frame(rng: np.random.Generator, width: int, height: int) -> Rendered:
    """A 1080p-sized frame: random colour, a depth ramp and smooth motion of a few pixels."""
    color = rng.random((height, width, 4), dtype=np.float32)
    color[..., 3] = 1.0
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = 5.0 + 10.0 * y / height + 0.5 * np.sin(x / 37.0)
    motion = np.stack([3.0 + np.sin(y / 50.0), 1.0 + np.cos(x / 70.0)], axis=-1).astype(np.float32)
    return Rendered(color=color, depth=depth.astype(np.float32), to_prev=-motion, to_next=motion.copy())


def _median_time(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up: allocator, thread pools, OpenCV/torch kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_speed(module: Any | None, repeats: int = SPEED_REPEATS) -> dict[str, float]:
    """Frames per second at 1920x1080 (one inbetween between two keyframes, median of repeats)."""
    width, height = SPEED_SIZE
    rng = np.random.default_rng(0)
    a, b, t = (_synthetic_frame(rng, width, height) for _ in range(3))
    speeds = {}
    if module is not None:
        key_a, key_b = (
            module.Keyframe(frame=f, color=r.color, depth=r.depth, to_prev=r.to_prev, to_next=r.to_next, layers={})
            for f, r in ((1, a), (3, b))
        )
        guide = {2: module.Guide(depth=t.depth, to_prev=t.to_prev, to_next=t.to_next)}
        settings = module.InterpolationSettings(device="cpu")
        speeds["farmplug unguided"] = 1.0 / _median_time(
            lambda: module.interpolate(key_a, key_b, [2], settings=settings), repeats
        )
        speeds["farmplug guided"] = 1.0 / _median_time(
            lambda: module.interpolate(key_a, key_b, [2], guides=guide, settings=settings), repeats
        )
    speeds["crossfade"] = 1.0 / _median_time(lambda: crossfade(a.color, b.color, 0.5), repeats)
    speeds["optical flow (DIS)"] = 1.0 / _median_time(lambda: optical_flow_interpolate(a.color, b.color, 0.5), repeats)
    return speeds


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# inbetween benchmark: {meta['resolution']} px, frames 1-{meta.get('frames_used', meta['frames'])} of {meta['frames']}; "
        f"machine {meta['machine']}, {meta['cores']} cores, {meta['date']}",
        f"# guided = {meta['guides']}.",
        f"# passing = frames with score >= {meta['score_threshold']}; sent back = share of frames re-rendered instead.",
        f"# references: {meta['references']}",
        "",
        "| sequence | step | method | frames | mean FLIP | PSNR dB | passing FLIP | passing PSNR dB | sent back |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seq in results["sequences"].items():
        noise = seq["noise_floor"]
        lines.append(
            f"| {name} | - | render noise floor (2nd seed) | 1 | {noise['flip_mean']:.4f} | {noise['psnr']:.2f} | | | |"
        )
        for step, methods in seq["steps"].items():
            for label, m in methods.items():
                passing = (
                    f"{_fmt(m.get('passing_flip_mean'), '.4f')} | {_fmt(m.get('passing_psnr'), '.2f')} | "
                    f"{m['sent_back_share']:.0%}"
                    if "sent_back_share" in m
                    else " | | "
                )
                lines.append(
                    f"| {name} | {step} | {label} | {m['frames']} | {_fmt(m['flip_mean'], '.4f')} | "
                    f"{_fmt(m['psnr'], '.2f')} | {passing} |"
                )
    lines += ["", "Per frame: farmplug's score against the measured error (u = unguided, g = guided).", "",
              "| sequence | step | frame | score u | FLIP u | PSNR u | score g | FLIP g | PSNR g |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, seq in results["sequences"].items():
        for step, methods in seq["steps"].items():
            un, gd = methods.get("farmplug unguided"), methods.get("farmplug guided")
            if not un or not gd:
                continue
            for u, g in zip(un["per_frame"], gd["per_frame"], strict=True):
                lines.append(
                    f"| {name} | {step} | {u['frame']} | {u['score']:.3f} | {u['flip_mean']:.4f} | {u['psnr']:.2f} | "
                    f"{g['score']:.3f} | {g['flip_mean']:.4f} | {g['psnr']:.2f} |"
                )
    load = ", ".join(f"{x:.2f}" for x in meta.get("load_average_before_speed", []))
    lines += ["", f"Speed at {SPEED_SIZE[0]}x{SPEED_SIZE[1]} on this CPU (median of {SPEED_REPEATS}; load average "
              f"before: {load}):", "",
              "| method | frames/s |", "|---|---|"]
    for label, fps in results["speed_fps"].items():
        lines.append(f"| {label} | {fps:.2f} |")
    return "\n".join(lines)


def parse_resolution(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-inbetween"))
    parser.add_argument("--sequences", default="all", help=f"comma-separated, or all: {', '.join(SEQUENCES)}")
    parser.add_argument("--steps", default="2,3")
    parser.add_argument("--resolution", type=parse_resolution, default=(160, 90))
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--frames-used", type=int, default=None,
                        help="render and judge only frames 1..N of each sequence (default: all)")
    parser.add_argument("--no-denoise", dest="denoise", action="store_false",
                        help="raw references (Cycles' denoiser off); noisier than the errors measured")
    parser.add_argument("--threshold", type=float, default=SCORE_THRESHOLD, help="frame score a frame needs to pass")
    parser.add_argument("--no-speed", action="store_true", help="skip the 1080p speed measurement")
    parser.add_argument("--guide-samples", type=int, default=2,
                        help="samples of the guide renders (the plan's default); 0: guide with the real frames' passes")
    args = parser.parse_args()
    names = list(SEQUENCES) if args.sequences == "all" else [n.strip() for n in args.sequences.split(",")]
    unknown = [n for n in names if n not in SEQUENCES]
    if unknown:
        parser.error(f"unknown sequences {unknown}; valid: {', '.join(SEQUENCES)}")
    steps = [int(s) for s in args.steps.split(",")]
    args.frames_used = args.frames if args.frames_used is None else args.frames_used
    if not 1 <= args.frames_used <= args.frames:
        parser.error(f"--frames-used must be 1..{args.frames} (got {args.frames_used})")
    module = load_interpolate()

    width, height = args.resolution
    results: dict[str, Any] = {
        "meta": {
            "resolution": f"{width}x{height}",
            "samples": args.samples,
            "frames": args.frames,
            "frames_used": args.frames_used,
            "steps": steps,
            "machine": platform.node(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cores": os.cpu_count(),
            "score_threshold": args.threshold,
            "references": (
                f"{args.samples} spp with Cycles' OIDN denoiser (albedo+normal)" if args.denoise
                else f"{args.samples} spp, not denoised"
            ),
            "farmplug_method": module is not None,
            "guides": (
                f"guide depth/vectors from a {args.guide_samples}-spp render of each target (as the plan's guide task)"
                if args.guide_samples else "guide depth/vectors taken from the real target render"
            ),
        },
        "sequences": {},
    }
    for name in names:
        clean = "_dn" if args.denoise else ""
        folder = args.out / f"{name}_{width}x{height}_{args.samples}spp{clean}_{args.frames}f"
        pattern, noise_pattern, guide_pattern = render_sequence(name, folder, args)
        frames = {f: load_rendered(frame_path(pattern, f)) for f in range(1, args.frames_used + 1)}
        guide_frames = (
            {f: load_rendered(frame_path(guide_pattern, f)) for f in range(1, args.frames_used + 1)}
            if guide_pattern else None
        )
        middle = noise_frame(args.frames_used)
        noise = measure(frames[middle].color[:, :, :3], read_frame(frame_path(noise_pattern, middle)).feature("color"))
        seq: dict[str, Any] = {"noise_floor": {"frame": middle, **noise.as_dict()}, "steps": {}}
        for step in steps:
            if step < 2 or step >= args.frames_used:
                log(f"{name}: step {step} leaves nothing to interpolate in {args.frames_used} frames; skipped")
                continue
            log(f"{name}: step {step}")
            seq["steps"][str(step)] = evaluate_step(frames, step, args.frames_used, module, args.threshold, guide_frames)
        results["sequences"][name] = seq

    results["meta"]["load_average_before_speed"] = list(os.getloadavg())
    results["speed_fps"] = {} if args.no_speed else measure_speed(module)
    table = markdown(results)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "inbetween.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (args.out / "inbetween.md").write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
