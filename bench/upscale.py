"""Benchmark of the guided upscaler on held-out renders: quality against the baselines, ONNX parity, CPU speed.

Held-out scenes (never in the training set): the demo shot, the ``glossy`` test sequence and a
procedural scene in the ``ink`` style (black outlines and hatching, a style the default training
set lacks). Each is rendered like a training example (``farmplug dataset``: half-resolution
colour and full-resolution target at the same samples, both OIDN-denoised, and a 2-spp guide).

Methods on whole frames, PSNR and HDR-FLIP of the tone-mapped result against the full-resolution
render: the model (guided), the model with its guide reduced to half resolution and blown up
again (``unguided``: what the full-resolution passes bring), albedo-demodulated upsampling,
bicubic and nearest. Then the ONNX export against torch on a 256x256 input, and seconds (and
frames/s) per output frame at each ``--speed-sizes`` (default 1080p and 4K) on ONNX Runtime CPU
and PyTorch CPU (``--threads``).

    .venv/bin/python bench/upscale.py --out bench-out/upscale   [--weights W] [--threads 1]
        [--speed-sizes 1920x1080,3840x2160]

Writes ``upscale.json`` and prints a markdown table (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def heldout(folder: Path, frames: int, samples: int) -> Path:
    """Render the held-out set into ``folder/data`` (resumable)."""
    from farmplug.nn.scenes import build_scene
    from farmplug.render.demo_scene import build_demo_scene
    from farmplug.render.sequences import build_sequence
    from farmplug.upscale.dataset import DatasetSettings, make_dataset

    scenes = folder / "scenes"
    demo, glossy, ink = scenes / "demo.blend", scenes / "glossy.blend", scenes / "ink.blend"
    if not demo.is_file():
        build_demo_scene(demo, frames=24, resolution=(128, 72), samples=samples)
    if not glossy.is_file():
        build_sequence("glossy", glossy, frames=9, resolution=(128, 72), samples=samples)
    if not ink.is_file():
        build_scene(ink, seed=70001, frames=frames, resolution=(128, 72), samples=samples, styles=("ink",))
    data = folder / "data"
    make_dataset(data, [demo, glossy, ink], settings=DatasetSettings(frames=frames, samples=samples))
    return data


def unguided(predict):
    from farmplug.upscale.resample import box_down, nearest

    def run(color: np.ndarray, guide: np.ndarray) -> np.ndarray:
        return predict(color, nearest(box_down(guide)))

    return run


def speed(weights, threads: int, repeats: int, size: tuple[int, int] = (1920, 1080)) -> dict[str, float]:
    """Median seconds per output frame of ``size`` (width, height) per CPU runtime."""
    from farmplug.nn.backends import BackendOptions, open_backend
    from farmplug.nn.export import example_inputs

    x = example_inputs(weights, size[1], size[0])
    out = {}
    for runtime in ("onnxruntime", "torch"):
        backend = open_backend(weights, runtime=runtime, device="cpu", options=BackendOptions(threads=threads))
        backend.run(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backend.run(x)
            times.append(time.perf_counter() - start)
        out[backend.name] = float(np.median(times))
        backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    from farmplug.nn.export import export_onnx
    from farmplug.nn.weights import load_weights
    from farmplug.upscale.dataset import load_shards
    from farmplug.upscale.train import _frames_of, _torch_predict, evaluate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=ROOT / "upscale" / "models" / "guided-sr-2x.safetensors")
    parser.add_argument("--out", type=Path, default=Path("bench-out/upscale"))
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--speed-sizes", default="1920x1080,3840x2160",
                        help="output sizes WxH to time, comma-separated (empty: no speed)")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in item.lower().split("x")) for item in args.speed_sizes.split(",") if item]

    import torch

    torch.set_num_threads(args.threads)
    weights = load_weights(args.weights)
    data = heldout(args.out, args.frames, args.samples)
    shards = load_shards(data)
    predict = _torch_predict(weights.module())
    per_scene = {}
    for name in sorted(shards):
        frames = _frames_of(shards, [name])
        scores = evaluate(predict, frames, flip=True)
        scores["unguided"] = evaluate(unguided(predict), frames, flip=True)["model"]
        per_scene[name] = scores
    parity = export_onnx(weights, args.out / "parity.onnx", check_shape=(256, 256)).max_abs_diff
    seconds = {f"{w}x{h}": speed(weights, args.threads, args.repeats, (w, h)) for w, h in sizes}
    result = {"weights": str(args.weights), "sha256": weights.sha256, "scenes": per_scene,
              "onnx_vs_torch_max_diff_256": parity, "cpu_seconds_per_frame": seconds, "threads": args.threads,
              "command": " ".join(["python", *sys.argv])}
    (args.out / "upscale.json").write_text(json.dumps(result, indent=1) + "\n")

    methods = ("model", "unguided", "demodulated", "bicubic", "nearest")
    print("| held-out scene | " + " | ".join(methods) + " |")
    print("| --- |" + " ---: |" * len(methods))
    for name, scores in per_scene.items():
        cells = [f"{scores[m]['psnr']:.2f} dB / {scores[m]['flip']:.3f}" for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nONNX vs torch, 256x256: max difference {parity:.2e}")
    for size, by_runtime in seconds.items():
        print(f"CPU seconds per {size} output frame ({args.threads} thread(s)): "
              + ", ".join(f"{k} {v:.2f} s ({1 / v:.3f} frames/s)" for k, v in by_runtime.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
