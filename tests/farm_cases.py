"""The same small plans compiled for every farm backend (golden-file cases).

Paths are fixed strings (compile does no I/O), so the golden files are the same on every machine.
"""

from __future__ import annotations

from pathlib import Path

from farmplug.denoise.config import DenoiseConfig, TemporalDenoiseConfig
from farmplug.graph import JobGraph, compile_plan
from farmplug.inbetween.config import InbetweenConfig
from farmplug.models import FrameRangeModel, Plan, Resolution, Shot
from farmplug.upscale.config import UpscaleConfig

HOSTILE = "sh 010 \"q\" 'x' $HOME `id`; rm -rf /\nnext"


def _graph(name: str, root: str, *, frames: int, step: int, guided: bool = False, temporal: bool = False,
           upscale: bool = False) -> JobGraph:
    shot = Shot(
        name=name, scene=f"{root}/scene/{name}.blend", frames=FrameRangeModel(start=1, end=frames),
        resolution=Resolution(width=320, height=180), samples=1024, output=f"frames/{name}.####.exr",
    )
    # The frame-step case asks for CUDA, so the GPU requests of every farm are in the golden files;
    # the others run where they land (``auto``), asking for no GPU.
    device = "cuda" if step > 1 else "auto"
    denoise = TemporalDenoiseConfig(device=device) if temporal else DenoiseConfig(device=device)
    stages = [denoise] + ([InbetweenConfig(guided=guided, device=device)] if step > 1 else [])
    if upscale:
        # On CUDA with ONNX Runtime: its TensorRT engine is built once, before the upscale tasks.
        # Named weights, so no path of this machine's install goes into the golden files.
        stages.append(UpscaleConfig(device="cuda", model=f"{root}/models/guided-sr-2x.safetensors"))
    plan = Plan(shot="shot.yaml", samples_factor=1 / 32, frame_step=step, stages=stages, chunk_size=4,
                check_frames=[2, frames] if step > 1 else [1, frames], resolution_scale=0.5 if upscale else 1.0)
    return compile_plan(plan, shot, plan_file=Path(f"{root}/plan.yaml"), shot_file=Path(f"{root}/shot.yaml"),
                        run_dir=Path(f"{root}/run"))


def cases() -> dict[str, JobGraph]:
    """``denoise``: 12 frames, chunks of 4, render -> denoise. ``inbetween``: 12 frames, step 2, guided.
    ``hostile``: a shot name and paths with spaces, quotes, $, backticks, a semicolon and a newline.
    ``temporal``: 10 frames, chunks of 4, render -> temporal denoise reading 2 frames each side, so
    each denoise chunk also waits for the render chunks before and after it (frame offsets -2..2).
    ``upscale``: 10 frames, chunks of 4, a half-resolution render -> denoise -> upscale on CUDA with
    its full-resolution guide render; the upscaler's TensorRT engine is built by one GPU task over
    all 10 frames (layer ``engine-upscale``) that every upscale chunk waits for."""
    return {
        "denoise": _graph("sh010", "/shows/demo/sh010", frames=12, step=1),
        "inbetween": _graph("sh020", "/shows/demo/sh020", frames=12, step=2, guided=True),
        "hostile": _graph(HOSTILE, f"/shows/demo/{HOSTILE}", frames=8, step=2),
        "temporal": _graph("sh030", "/shows/demo/sh030", frames=10, step=1, temporal=True),
        "upscale": _graph("sh050", "/shows/demo/sh050", frames=10, step=1, upscale=True),
    }
