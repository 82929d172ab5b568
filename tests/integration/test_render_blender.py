"""Real Cycles renders of a tiny demo scene through the Blender child process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from farmplug.errors import RenderError
from farmplug.render import BlenderRenderer, RenderRequest, build_demo_scene

oiio = pytest.importorskip("OpenImageIO")
pytest.importorskip("bpy", reason="the bpy module renders these tests")

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 64, 36
ALL_PASSES = frozenset({"albedo", "normal", "depth", "motion"})
EXPECTED_CHANNELS = {
    "ViewLayer.Combined.R",
    "ViewLayer.Combined.G",
    "ViewLayer.Combined.B",
    "ViewLayer.Combined.A",
    "ViewLayer.Denoising Albedo.R",
    "ViewLayer.Denoising Albedo.G",
    "ViewLayer.Denoising Albedo.B",
    "ViewLayer.Denoising Normal.X",
    "ViewLayer.Denoising Normal.Y",
    "ViewLayer.Denoising Normal.Z",
    "ViewLayer.Depth.Z",
    "ViewLayer.Vector.X",
    "ViewLayer.Vector.Y",
    "ViewLayer.Vector.Z",
    "ViewLayer.Vector.W",
}


@pytest.fixture(scope="session")
def render_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo shot at 64x36, 3 frames, 8 samples."""
    blend = tmp_path_factory.mktemp("scene") / "tiny.blend"
    build_demo_scene(blend, frames=3, resolution=(WIDTH, HEIGHT), samples=8)
    return blend


def _read_parts(path: Path) -> list[tuple[int, int, tuple[str, ...], np.ndarray]]:
    """(width, height, channel names, pixels) of every part of an EXR file."""
    image = oiio.ImageInput.open(str(path))
    assert image is not None, oiio.geterror()
    parts = []
    try:
        index = 0
        while image.seek_subimage(index, 0):
            spec = image.spec()
            parts.append((spec.width, spec.height, tuple(spec.channelnames), image.read_image(format="float")))
            index += 1
    finally:
        image.close()
    return parts


def test_build_demo_scene_writes_blend(render_scene: Path) -> None:
    assert render_scene.is_file()
    assert render_scene.read_bytes()[:7] == b"BLENDER"
    assert not [p for p in render_scene.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("layout", "parts"), [pytest.param("multipart", "many", id="multipart"), pytest.param("singlepart", "one", id="singlepart")])
def test_render_writes_passes_and_timing(render_scene: Path, tmp_path: Path, layout: str, parts: str) -> None:
    done: list[int] = []
    request = RenderRequest(
        scene=render_scene,
        frames=(1, 3),
        output_pattern=str(tmp_path / "out" / "beauty.####.exr"),
        samples=4,
        resolution_percentage=50,
        passes=ALL_PASSES,
        threads=2,
        exr_layout=layout,  # type: ignore[arg-type]
        seed=7,
        task="render-test",
        role="plan",
    )
    record = BlenderRenderer().render(request, progress=done.append)

    assert done == [1, 3]
    outputs = [tmp_path / "out" / "beauty.0001.exr", tmp_path / "out" / "beauty.0003.exr"]
    assert sorted((tmp_path / "out").iterdir()) == outputs, "temp files left behind"
    for output in outputs:
        image_parts = _read_parts(output)
        assert (len(image_parts) > 1) == (parts == "many")
        channels = {name for _, _, names, _ in image_parts for name in names}
        assert EXPECTED_CHANNELS <= channels
        for width, height, names, pixels in image_parts:
            assert (width, height) == (WIDTH // 2, HEIGHT // 2)
            if "ViewLayer.Combined.R" in names:
                rgb = pixels[..., [names.index(f"ViewLayer.Combined.{c}") for c in "RGB"]]
                assert np.isfinite(rgb).all()
                assert rgb.mean() > 0.01

    assert record.stage == "render"
    assert record.backend == "blender-cycles"
    assert record.task == "render-test" and record.role == "plan"
    assert [f.frame for f in record.frames] == [1, 3]
    assert [Path(f.output or "") for f in record.frames] == outputs
    assert all(f.wall_s > 0 and f.cpu_s > 0 for f in record.frames)
    assert record.overhead_wall_s > 0 and record.overhead_cpu_s > 0
    assert record.finished_at - record.started_at == pytest.approx(record.wall_s, rel=1e-6)
    assert record.settings["samples"] == 4
    assert record.settings["resolution_percentage"] == 50
    assert record.settings["passes"] == "albedo,depth,motion,normal"
    assert record.settings["layout"] == layout
    # Two frames of an animated shot: Cycles kept its scene data between them, and every frame's
    # cost is split into its fixed part and its sampling (tests/integration/test_render_costs.py).
    assert record.settings["persistent_data"] is True
    assert record.render_cost is not None and record.render_cost.samples == 4 and record.render_cost.frames == 2
    assert all(f.sampling_cpu_s is not None and 0 < f.sampling_cpu_s < f.cpu_s for f in record.frames)


def test_frames_differ_in_noise_and_motion(render_scene: Path, tmp_path: Path) -> None:
    """Different frames of the shot are different images (animation and animated seed)."""
    request = RenderRequest(scene=render_scene, frames=(1, 3), output_pattern=str(tmp_path / "f.#.exr"), samples=2)
    BlenderRenderer().render(request)
    first, last = (_read_parts(tmp_path / f"f.{n}.exr")[0][3] for n in (1, 3))
    assert not np.array_equal(first, last)


def test_more_samples_cost_more_cpu(render_scene: Path, tmp_path: Path) -> None:
    def cpu_of(samples: int) -> float:
        request = RenderRequest(
            scene=render_scene, frames=(2,), output_pattern=str(tmp_path / f"s{samples}.####.exr"), samples=samples, threads=1
        )
        return BlenderRenderer().render(request).frames[0].cpu_s

    cheap, expensive = cpu_of(2), cpu_of(64)
    assert expensive > 1.5 * cheap, (cheap, expensive)


def test_missing_blend_is_a_render_error_naming_it(tmp_path: Path) -> None:
    request = RenderRequest(scene=tmp_path / "nowhere.blend", frames=(1,), output_pattern=str(tmp_path / "o.####.exr"))
    with pytest.raises(RenderError, match="nowhere.blend"):
        BlenderRenderer().render(request)


def test_corrupt_blend_reports_child_failure(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.blend"
    corrupt.write_text("not a blend file\n")
    request = RenderRequest(scene=corrupt, frames=(1, 2), output_pattern=str(tmp_path / "out" / "o.####.exr"), samples=1)
    with pytest.raises(RenderError) as info:
        BlenderRenderer().render(request)
    message = str(info.value)
    assert "corrupt.blend" in message
    assert "farmplug render child" in message
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_progress_callback_failure_stops_the_child(render_scene: Path, tmp_path: Path) -> None:
    class Cancelled(Exception):
        pass

    def cancel(frame: int) -> None:
        raise Cancelled(frame)

    out = tmp_path / "out"
    request = RenderRequest(scene=render_scene, frames=(1, 2, 3), output_pattern=str(out / "c.####.exr"), samples=1)
    with pytest.raises(Cancelled):
        BlenderRenderer().render(request, progress=cancel)
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_braces_in_an_output_path_are_literal_not_blender_path_templates(render_scene: Path, tmp_path: Path) -> None:
    """Blender 4.5+ expands ``{blend_name}`` in render output paths; a folder a studio named with
    braces must get the frames under its own name (the child doubles them for Blender)."""
    pattern = tmp_path / "take {blend_name} {x}" / "shot.####.exr"
    BlenderRenderer().render(RenderRequest(scene=render_scene, frames=(1,), output_pattern=pattern, samples=1))
    assert (tmp_path / "take {blend_name} {x}" / "shot.0001.exr").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["take {blend_name} {x}"]
