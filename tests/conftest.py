"""Shared fixtures: the third-party EXR collection and tiny real Blender renders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FARMPLUG_TEST_DATA", ROOT.parent / "shared" / "data"))
EXR_IMAGES = SHARED_DATA / "openexr-images"

os.environ.setdefault("FARMPLUG_PROGRESS", "0")


@pytest.fixture(scope="session")
def exr_images() -> Path:
    """The public OpenEXR test images (../shared/data/openexr-images); skip when absent."""
    if not EXR_IMAGES.is_dir():
        pytest.skip(f"test data not found at {EXR_IMAGES} (set FARMPLUG_TEST_DATA to the shared data folder)")
    return EXR_IMAGES


def damaged_files() -> list[Path]:
    folder = EXR_IMAGES / "Damaged"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".rst")


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> Path:
    """The demo scene at 64x36, 4 frames, built once per test session with real Blender (bpy)."""
    pytest.importorskip("bpy", reason="bpy (Blender as a Python module) is not installed")
    from farmplug.render.demo_scene import build_demo_scene

    path = tmp_path_factory.mktemp("scene") / "tiny.blend"
    build_demo_scene(path, frames=4, resolution=(64, 36), samples=64)
    return path


@pytest.fixture(scope="session")
def tiny_renders(tiny_scene, tmp_path_factory) -> dict[str, Path]:
    """Frames 1-2 of the tiny scene at 4 spp with every pass, in both EXR layouts, plus 256 spp references of both."""
    from farmplug.render import BlenderRenderer, RenderRequest

    out = tmp_path_factory.mktemp("renders")
    renderer = BlenderRenderer()
    patterns = {}
    for layout in ("multipart", "singlepart"):
        pattern = str(out / layout / "tiny.####.exr")
        renderer.render(
            RenderRequest(
                scene=tiny_scene, frames=(1, 2), output_pattern=pattern, samples=4,
                passes=frozenset({"albedo", "normal", "depth", "motion"}), exr_layout=layout,
            )
        )
        patterns[layout] = Path(pattern)
    reference = str(out / "reference" / "tiny.####.exr")
    renderer.render(RenderRequest(scene=tiny_scene, frames=(1, 2), output_pattern=reference, samples=256))
    patterns["reference"] = Path(reference)
    return patterns
