"""GPU benchmark of the guided upscaler (guided-sr-2x): torch CUDA fp32/fp16 (channels-last, torch.compile) and
ONNX Runtime, at 1080p and 4K output, with the network's compute floor. Prepared for a lent GPU machine.

Runs on a machine with torch (+CUDA), onnx and onnxruntime but without OpenImageIO, pydantic or bpy
(see ../shared/GPU.md): it imports only ``farmplug.nn`` from the source tree, generates its inputs
procedurally and, without ``safetensors``, times randomly initialised weights of the same shape
(speed does not depend on the values). Also runs on a CPU (it then times what is there).

    PYTHONPATH=$PWD python3 bench/gpu_upscale.py --out $OUT/gpu_upscale.json

Prints a table; writes every figure as JSON.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from farmplug.nn.registry import architecture  # noqa: E402

SIZES = {"1080p": (1080, 1920), "4k": (2160, 3840)}
#: Dense fp16 / fp32 tensor throughput of known GPUs (vendor figures, TFLOP/s) for the compute floor.
PEAK_TFLOPS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5), "L40S": (362.0, 91.6),
               "RTX 4090": (330.0, 82.6)}


def weights_object(path: str | None):
    """The shipped (or given) weights when safetensors is installed, else random weights of the same shape."""
    from farmplug.nn.weights import Weights

    arch = architecture("guided-sr-2x")
    if path:
        try:
            from farmplug.nn.weights import load_weights

            return load_weights(path), "file"
        except ImportError:
            pass
    import torch

    torch.manual_seed(0)
    net = arch.build()
    tensors = {k: v.numpy() for k, v in net.state_dict().items()}
    return Weights(arch=arch, hparams=dict(arch.hparams), tensors=tensors, metadata={"version": "random"},
                   sha256="0" * 64), "random"


def macs_per_output_pixel(weights) -> float:
    """Multiply-accumulates of the convolutions per output pixel (the low-res body counts a quarter)."""
    h = weights.hparams
    f, b, hf = h["features"], h["blocks"], h["head_features"]
    low = 34 * f * 9 + b * 2 * f * f * 9 + f * hf * 4 * 9
    high = (hf + 13) * hf * 9 + hf * hf * 9 + hf * 3 * 9
    return low / 4 + high


def inputs_for(height: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    color = rng.gamma(1.0, 0.5, (1, 3, height // 2, width // 2)).astype(np.float32)
    normal = rng.normal(size=(1, 3, height, width))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    guide = np.concatenate([rng.uniform(0, 1, (1, 3, height, width)), normal, rng.uniform(1, 30, (1, 1, height, width))],
                           axis=1).astype(np.float32)
    return {"color": color, "guidance": guide}


def time_it(fn, repeats: int, sync=lambda: None) -> dict[str, float]:
    fn()
    sync()
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def torch_cases(weights, size_name: str, repeats: int, compile_: bool) -> list[dict]:
    import torch

    if not torch.cuda.is_available():
        return []
    height, width = SIZES[size_name]
    x = inputs_for(height, width)
    rows = []
    for dtype_name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        for channels_last in (False, True):
            for compiled in ((False, True) if compile_ and dtype_name == "fp16" and channels_last else (False,)):
                net = weights.module().to("cuda", dtype)
                if channels_last:
                    net = net.to(memory_format=torch.channels_last)
                run_net = torch.compile(net, mode="max-autotune") if compiled else net
                c = torch.from_numpy(x["color"]).to("cuda", dtype)
                g = torch.from_numpy(x["guidance"]).to("cuda", dtype)
                if channels_last:
                    c, g = c.contiguous(memory_format=torch.channels_last), g.contiguous(memory_format=torch.channels_last)

                def step(run_net=run_net, c=c, g=g):
                    with torch.inference_mode():
                        run_net(c, g)

                try:
                    timing = time_it(step, repeats, torch.cuda.synchronize)
                except Exception as err:  # a compile failure is a row with the reason, not a lost run
                    rows.append({"backend": "torch-cuda", "precision": dtype_name, "channels_last": channels_last,
                                 "compiled": compiled, "size": size_name, "error": str(err).splitlines()[0][:200]})
                    continue
                rows.append({"backend": "torch-cuda", "precision": dtype_name, "channels_last": channels_last,
                             "compiled": compiled, "size": size_name, **timing})
                del net, run_net
                torch.cuda.empty_cache()
    return rows


def ort_cases(weights, size_name: str, repeats: int, cache: Path) -> list[dict]:
    from farmplug.nn.backends import FACTORIES, BackendOptions, probe

    machine = probe()
    rows = []
    for name in ("onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"):
        if not machine.has(name):
            continue
        height, width = SIZES[size_name]
        try:
            backend = FACTORIES[name](weights, BackendOptions(cache=cache, tile_shape=(height, width)))
        except Exception as err:  # record why a provider did not start
            rows.append({"backend": name, "size": size_name, "error": str(err).splitlines()[0][:200]})
            continue
        x = inputs_for(height, width)
        reps = repeats if backend.device == "cuda" else max(1, repeats // 5)
        rows.append({"backend": name, "precision": backend.precision, "size": size_name,
                     **time_it(lambda backend=backend, x=x: backend.run(x), reps)})
        backend.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(Path(__file__).resolve().parents[1] / "upscale" / "models"
                                                 / "guided-sr-2x.safetensors"))
    parser.add_argument("--sizes", default="1080p,4k")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_upscale.json")
    args = parser.parse_args(argv)

    import torch

    weights, source = weights_object(args.weights if Path(args.weights).is_file() else None)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    peak = next((v for k, v in PEAK_TFLOPS.items() if gpu and k in gpu), None)
    macs = macs_per_output_pixel(weights)
    rows = []
    for size in args.sizes.split(","):
        rows += torch_cases(weights, size, args.repeats, not args.no_compile)
        if not args.no_ort:
            rows += ort_cases(weights, size, args.repeats, args.out.parent / "cache")
    for row in rows:
        if "median_s" not in row:
            continue
        h, w = SIZES[row["size"]]
        row["megapixels_per_s"] = h * w / 1e6 / row["median_s"]
        row["frames_per_s"] = 1 / row["median_s"]
        row["tflops"] = 2 * macs * h * w / row["median_s"] / 1e12
        if peak and row["backend"] != "onnxruntime-cpu":
            row["fraction_of_peak"] = row["tflops"] / peak[0 if row.get("precision") == "fp16" else 1]
    result = {
        "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
        "driver": _driver(), "python": platform.python_version(), "weights": source,
        "macs_per_output_pixel": macs, "peak_tflops_fp16_fp32": peak, "command": " ".join(sys.argv), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"GPU: {gpu}  torch {torch.__version__}  weights: {source}  {macs / 1e3:.1f} kMAC/output pixel")
    print(f"{'backend':22s} {'prec':5s} {'cl':3s} {'comp':4s} {'size':6s} {'ms':>9s} {'fps':>8s} {'MP/s':>8s} {'TFLOP/s':>8s}")
    for r in rows:
        if "median_s" not in r:
            print(f"{r['backend']:22s} {r.get('precision', ''):5s} {'':3s} {'':4s} {r['size']:6s}  error: {r['error']}")
            continue
        print(f"{r['backend']:22s} {r.get('precision', ''):5s} {'y' if r.get('channels_last') else '':3s} "
              f"{'y' if r.get('compiled') else '':4s} {r['size']:6s} {1000 * r['median_s']:9.1f} {r['frames_per_s']:8.2f} "
              f"{r['megapixels_per_s']:8.1f} {r['tflops']:8.2f}")
    return 0


def _driver() -> str | None:
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        return subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
