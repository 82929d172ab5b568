"""Training data for the guided upscaler, rendered with Blender: ``farmplug dataset SCENE.blend... --out DIR``.

For each scene and frame three renders are made with the same renderer farmplug plans use:

- ``low``: the colour at half resolution (with albedo/normal), at ``samples`` spp, then denoised
  with OIDN (the upscaler runs after denoise in a plan, so this is what it sees);
- ``guide``: albedo, normal and depth at full resolution and ``guide_samples`` spp (cheap);
- ``target``: the colour at full resolution and ``samples`` spp, denoised the same way.

Each scene's frames are packed into ``frames/NAME.npz`` (plain float arrays, no pickle):
``color`` (F, 3, h, w), ``guide`` (F, 7, H, W), ``target`` (F, 3, H, W). Training cuts random
``crop``-pixel crops from them; the manifest lists the fixed crop grid used for validation.
``manifest.json`` records the settings, the command, the versions and each scene's files and
hash; it is rewritten after each scene, so a killed run carries on where it stopped. Without
scenes, ``count`` procedural scenes are generated (:mod:`farmplug.nn.scenes`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from farmplug import __version__
from farmplug.errors import FarmplugError
from farmplug.render.base import frame_path
from farmplug.schema import atomic_write_text

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DatasetSettings:
    """How the examples are rendered (recorded in the manifest; a resumed run must match)."""

    frames: int = 4
    resolution: tuple[int, int] = (128, 72)
    samples: int = 128
    guide_samples: int = 2
    crop: int = 48
    denoise: bool = True
    styles: tuple[str, ...] = ("textured", "glossy", "toon")
    threads: int | None = 1


@dataclass
class SceneEntry:
    """One scene of the dataset: where it came from and what it produced."""

    name: str
    blend: str
    seed: int | None
    frames: list[int]
    shard: str
    sha256: str
    render_s: float
    size: tuple[int, int]
    crops: list[tuple[int, int]] = field(default_factory=list)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_manifest(out: Path) -> dict:
    """The dataset's manifest (``{}`` when there is none yet).

    Raises:
        FarmplugError: the manifest is not valid JSON.
    """
    path = out / MANIFEST
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise FarmplugError(f"corrupt dataset manifest: {err}", path=path) from None


def crop_grid(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """Top-left corners of crops covering the frame with half-crop strides (even, inside the frame)."""
    step = max(2, crop // 2)
    ys = list(range(0, max(1, height - crop + 1), step)) or [0]
    xs = list(range(0, max(1, width - crop + 1), step)) or [0]
    return [(y - y % 2, x - x % 2) for y in ys for x in xs]


def _denoise(pattern: str, out_pattern: str, frames: Sequence[int]) -> None:
    from farmplug.worker import run_task

    run_task(["run", "denoise", "--input", pattern, "--output", out_pattern, "--frames",
              ",".join(str(f) for f in frames), "--no-timing", "--quality", "high"])


def render_scene(blend: Path, work: Path, settings: DatasetSettings, frames: Sequence[int]) -> float:
    """Render ``low``, ``guide`` and ``target`` of ``frames`` into ``work`` (skipping frames already there);
    returns the render seconds."""
    from farmplug.render import BlenderRenderer, RenderRequest

    renderer = BlenderRenderer()
    started = time.perf_counter()
    jobs = {
        "low": dict(samples=settings.samples, resolution_percentage=50, passes=frozenset({"albedo", "normal"})),
        "guide": dict(samples=settings.guide_samples, passes=frozenset({"albedo", "normal", "depth"})),
        "target": dict(samples=settings.samples, passes=frozenset({"albedo", "normal"})),
    }
    for tag, options in jobs.items():
        pattern = str(work / f"{tag}.####.exr")
        todo = tuple(f for f in frames if not frame_path(pattern, f).is_file())
        if todo:
            renderer.render(RenderRequest(scene=blend, frames=todo, output_pattern=pattern, threads=settings.threads,
                                          task=f"dataset-{tag}", **options))
    if settings.denoise:
        for tag in ("low", "target"):
            pattern, clean = str(work / f"{tag}.####.exr"), str(work / f"{tag}-denoised.####.exr")
            todo = [f for f in frames if not frame_path(clean, f).is_file()]
            if todo:
                _denoise(pattern, clean, todo)
    return time.perf_counter() - started


def pack_scene(work: Path, frames: Sequence[int], shard: Path, *, denoised: bool) -> tuple[int, int]:
    """Read the rendered frames and write them as one ``.npz`` shard; returns the full (height, width).

    Raises:
        FarmplugError: the renders do not have the expected sizes or passes.
    """
    from farmplug.imageio import read_frame
    from farmplug.upscale.stage import guide_array

    suffix = "-denoised" if denoised else ""
    colors, guides, targets = [], [], []
    for f in frames:
        low = read_frame(frame_path(str(work / f"low{suffix}.####.exr"), f))
        guide = read_frame(frame_path(str(work / "guide.####.exr"), f))
        target = read_frame(frame_path(str(work / f"target{suffix}.####.exr"), f))
        color = low.feature("color")
        planes = guide_array(guide, low)
        tgt = target.feature("color")
        h, w = color.shape[:2]
        if planes.shape[:2] != tgt.shape[:2] or (h * 2, w * 2) != tgt.shape[:2]:
            raise FarmplugError(f"the scene's size must be even: low {w}x{h}, full {tgt.shape[1]}x{tgt.shape[0]}",
                                path=target.path)
        colors.append(color.transpose(2, 0, 1))
        guides.append(planes.transpose(2, 0, 1))
        targets.append(tgt.transpose(2, 0, 1))
    shard.parent.mkdir(parents=True, exist_ok=True)
    tmp = shard.with_name(f".{shard.stem}.tmp.npz")
    np.savez(tmp, color=np.stack(colors).astype(np.float32), guide=np.stack(guides).astype(np.float32),
             target=np.stack(targets).astype(np.float32), frames=np.asarray(frames, dtype=np.int32))
    tmp.replace(shard)
    return targets[0].shape[1], targets[0].shape[2]


def make_dataset(
    out: Path,
    scenes: Sequence[Path] = (),
    *,
    count: int = 0,
    seed: int = 0,
    settings: DatasetSettings | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
    keep_renders: bool = True,
) -> dict:
    """Render the dataset into ``out``; scenes already in the manifest (shard present, hash matching) are kept.

    Args:
        out: The dataset folder.
        scenes: .blend files; with none, ``count`` procedural scenes from ``seed`` on.
        count: Procedural scenes to generate (added after ``scenes``).
        seed: First procedural scene's seed (scene i has seed ``seed + i``).
        settings: Render settings (must match a manifest already in ``out``).
        command: The command line, recorded in the manifest.
        progress: Called with each scene's name once it is done.
        keep_renders: Keep the EXR renders under ``renders/`` (for inspection and benchmarks).

    Raises:
        FarmplugError: a scene file is missing, settings differ from the existing manifest, a render fails.
    """
    from farmplug.nn.scenes import build_scene

    settings = settings or DatasetSettings()
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    wanted = json.loads(json.dumps(asdict(settings)))
    if manifest and manifest.get("settings") != wanted:
        raise FarmplugError(f"the dataset was made with other settings ({manifest.get('settings')}); use another "
                            "--out or the same options", path=out / MANIFEST)
    entries = {e["name"]: e for e in manifest.get("scenes", [])}
    for scene in scenes:
        if not Path(scene).is_file():
            raise FarmplugError("scene not found", path=scene)
    todo: list[tuple[str, Path | None, int | None]] = [(Path(s).stem, Path(s), None) for s in scenes]
    todo += [(f"proc-{seed + i:05d}", None, seed + i) for i in range(count)]
    frames = list(range(1, settings.frames + 1))
    for name, blend, scene_seed in todo:
        entry = entries.get(name)
        shard = out / "frames" / f"{name}.npz"
        if entry and shard.is_file() and _sha(shard) == entry["sha256"]:
            continue
        if blend is None:
            blend = build_scene(out / "scenes" / f"{name}.blend", seed=scene_seed, frames=settings.frames,
                                resolution=settings.resolution, samples=settings.samples, styles=settings.styles)
        work = out / "renders" / name
        seconds = render_scene(blend, work, settings, frames)
        height, width = pack_scene(work, frames, shard, denoised=settings.denoise)
        entries[name] = asdict(SceneEntry(
            name=name, blend=str(blend), seed=scene_seed, frames=frames, shard=str(shard.relative_to(out)),
            sha256=_sha(shard), render_s=round(seconds, 2), size=(width, height),
            crops=crop_grid(height, width, settings.crop)))
        if not keep_renders:
            shutil.rmtree(work, ignore_errors=True)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": "farmplug-dataset",
            "task": "guided-sr-2x",
            "farmplug": __version__,
            "python": sys.version.split()[0],
            "command": command,
            "settings": wanted,
            "scenes": sorted(entries.values(), key=lambda e: e["name"]),
        }
        atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if progress:
            progress(name)
    return manifest or load_manifest(out)


def load_shards(out: Path, names: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The packed frames of the dataset's scenes (all, or ``names``), as NumPy arrays (no pickle).

    Raises:
        FarmplugError: no manifest, or a shard missing or changed since the manifest was written.
    """
    manifest = load_manifest(out)
    if not manifest:
        raise FarmplugError("no dataset here (manifest.json missing); make one with `farmplug dataset`", path=out)
    shards = {}
    for entry in manifest["scenes"]:
        if names is not None and entry["name"] not in names:
            continue
        path = out / entry["shard"]
        if not path.is_file() or _sha(path) != entry["sha256"]:
            raise FarmplugError("dataset shard missing or changed since the manifest was written", path=path)
        with np.load(path, allow_pickle=False) as data:
            shards[entry["name"]] = {k: data[k] for k in data.files}
    return shards
