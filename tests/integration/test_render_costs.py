"""What a render frame's cost is made of, and persistent data across a task's frames (real bpy renders).

Tiny renders (32x18, 2-4 spp, 3 frames) of the demo shot: a rolling ball, a spinning Suzanne, a
tumbling torus and a dollying camera, so every frame moves three objects and the camera. No
timing thresholds here (speed lives in ``bench/render_fixed_cost.py``): these check that the split
is recorded, that Cycles keeps its scene data where the scene allows it (it re-synchronises only
the moving objects), and that the pixels are the ones a fresh render of the frame gives.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from farmplug.render import BlenderRenderer, RenderRequest, build_demo_scene
from farmplug.render.blender import child_script_path
from farmplug.timing import TimingRecord, cost_split, read_timing, write_timing

oiio = pytest.importorskip("OpenImageIO")
pytest.importorskip("bpy", reason="the bpy module renders these tests")

pytestmark = pytest.mark.slow

FRAMES = (1, 2, 3)
MESHES = 5  # ground, wall, ball, Suzanne, torus
MOVING = 3  # ball, Suzanne, torus


# Counts come from Blender's render-stats updates, which Blender may coalesce when the machine is
# busy (a CI run measured [5, 2, 3] where a quiet one gives [5, 3, 3]): they are lower bounds, so
# the checks tell "every mesh synced" (more than the moving ones) from "only the moving ones".
def kept_static(counts: list[int | None]) -> bool:
    """The first frame synced more than the moving meshes; every later frame at most those."""
    return counts[0] is not None and MOVING < counts[0] <= MESHES and all(c is not None and c <= MOVING for c in counts[1:])


def synced_every_mesh(counts: list[int | None]) -> bool:
    return all(c is not None and MOVING < c <= MESHES for c in counts)
PASSES = frozenset({"albedo", "normal", "depth", "motion"})


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    blend = tmp_path_factory.mktemp("costs") / "shot.blend"
    build_demo_scene(blend, frames=3, resolution=(32, 18), samples=8)
    return blend


def _variant(shot: Path, out: Path, code: str) -> Path:
    """``shot`` changed by ``code`` (bpy, with ``scene`` bound), saved as ``out`` by a bpy child."""
    script = (
        "import sys, bpy\n"
        "bpy.ops.wm.open_mainfile(filepath=sys.argv[1], load_ui=False)\n"
        "scene = bpy.context.scene\n"
        f"{code}\n"
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2])\n"
        "import os; os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(shot), str(out)], check=True, capture_output=True)
    return out


def _render(scene: Path, out: Path, frames: tuple[int, ...] = FRAMES, *, renderer: BlenderRenderer | None = None,
            **options: object) -> TimingRecord:
    options.setdefault("samples", 4)
    request = RenderRequest(scene=scene, frames=frames, output_pattern=str(out / "f.####.exr"), seed=5,
                            passes=PASSES, threads=2, **options)  # type: ignore[arg-type]
    return (renderer or BlenderRenderer()).render(request)


def _pixels(path: Path) -> dict[str, np.ndarray]:
    """Every channel of every part of an EXR file, by name."""
    image = oiio.ImageInput.open(str(path))
    assert image is not None, oiio.geterror()
    channels = {}
    try:
        index = 0
        while image.seek_subimage(index, 0):
            names = image.spec().channelnames
            pixels = image.read_image(format="float")
            channels.update({name: pixels[..., i] for i, name in enumerate(names)})
            index += 1
    finally:
        image.close()
    return channels


def _fresh(scene: Path, out: Path, *, renderer: BlenderRenderer | None = None,
           **options: object) -> dict[int, dict[str, np.ndarray]]:
    """Each frame rendered by a task of its own: a fresh Blender, nothing kept from another frame."""
    fresh = {}
    for frame in FRAMES:
        record = _render(scene, out / str(frame), frames=(frame,), renderer=renderer, **options)
        assert record.settings["persistent_data"] is False
        fresh[frame] = _pixels(out / str(frame) / f"f.{frame:04d}.exr")
    return fresh


def _assert_same_pixels(out: Path, fresh: dict[int, dict[str, np.ndarray]]) -> None:
    for frame, expected in fresh.items():
        got = _pixels(out / f"f.{frame:04d}.exr")
        assert set(got) == set(expected)
        for name, pixels in expected.items():
            assert np.array_equal(got[name], pixels), f"frame {frame} {name}: differs from a fresh render"


def test_the_split_is_recorded_and_persistent_data_keeps_the_static_objects(shot: Path, tmp_path: Path) -> None:
    record = _render(shot, tmp_path / "kept")

    assert record.settings["persistent_data"] is True
    assert record.settings["persistent_data_note"] == "on: the scene allows it"
    # Cycles synchronised every mesh for the first frame, then only the three that move.
    assert kept_static([f.synced_objects for f in record.frames]), [f.synced_objects for f in record.frames]

    split = record.render_cost
    assert split is not None
    assert (split.samples, split.frames, split.persistent_data, split.method) == (4, 3, True, "render-stats")
    for frame in record.frames:
        assert frame.sampling_cpu_s is not None and 0 < frame.sampling_cpu_s < frame.cpu_s
    fixed = [f.cpu_s - (f.sampling_cpu_s or 0.0) for f in record.frames]
    assert split.fixed_cpu_s_first_frame == pytest.approx(fixed[0])
    assert split.fixed_cpu_s_later_frames == pytest.approx((fixed[1] + fixed[2]) / 2)
    assert split.fixed_cpu_s_per_frame == pytest.approx(sum(fixed) / 3)
    assert split.cpu_s_per_sample == pytest.approx(sum(f.sampling_cpu_s or 0.0 for f in record.frames) / 12)
    # Fixed plus sampling is the whole frame: nothing is counted twice or lost.
    assert 3 * split.fixed_cpu_s_per_frame + 12 * split.cpu_s_per_sample == pytest.approx(sum(f.cpu_s for f in record.frames))

    write_timing(record, tmp_path / "r.timing.json")
    assert read_timing(tmp_path / "r.timing.json") == record


def test_persistent_data_off_synchronises_every_object_every_frame(shot: Path, tmp_path: Path) -> None:
    record = _render(shot, tmp_path, persistent_data=False)
    assert record.settings["persistent_data"] is False
    assert record.settings["persistent_data_note"] == "off: asked"
    assert synced_every_mesh([f.synced_objects for f in record.frames]), [f.synced_objects for f in record.frames]
    assert record.render_cost is not None and record.render_cost.persistent_data is False


def test_a_one_frame_task_keeps_nothing(shot: Path, tmp_path: Path) -> None:
    record = _render(shot, tmp_path, frames=(2,))
    assert record.settings["persistent_data"] is False
    assert record.settings["persistent_data_note"] == "off: one frame, nothing to keep"
    assert record.render_cost is not None and record.render_cost.fixed_cpu_s_later_frames is None


def test_frames_with_persistent_data_are_the_fresh_renders_of_those_frames(shot: Path, tmp_path: Path) -> None:
    record = _render(shot, tmp_path / "kept")
    assert record.settings["persistent_data"] is True
    fresh = _fresh(shot, tmp_path / "fresh")
    # The comparison means something: the ball, Suzanne, torus and camera move between frames.
    assert not np.array_equal(fresh[1]["ViewLayer.Combined.R"], fresh[3]["ViewLayer.Combined.R"])
    assert np.abs(fresh[2]["ViewLayer.Vector.X"]).max() > 0
    _assert_same_pixels(tmp_path / "kept", fresh)


def test_a_scene_with_a_particle_system_renders_without_persistent_data(shot: Path, tmp_path: Path) -> None:
    hairy = _variant(shot, tmp_path / "hairy.blend", (
        "ball = bpy.data.objects['Sphere']\n"
        "settings = ball.modifiers.new('Hair', 'PARTICLE_SYSTEM').particle_system.settings\n"
        "settings.type = 'HAIR'; settings.count = 200; settings.hair_length = 0.3"
    ))
    record = _render(hairy, tmp_path / "auto")
    assert record.settings["persistent_data"] is False
    assert "particle systems (Sphere)" in str(record.settings["persistent_data_note"])
    assert synced_every_mesh([f.synced_objects for f in record.frames]), [f.synced_objects for f in record.frames]
    _assert_same_pixels(tmp_path / "auto", _fresh(hairy, tmp_path / "fresh"))

    forced = _render(hairy, tmp_path / "forced", persistent_data=True)
    assert forced.settings["persistent_data"] is True
    assert "despite: particle systems" in str(forced.settings["persistent_data_note"])


def test_animated_samples_are_taken_by_a_kept_session(shot: Path, tmp_path: Path) -> None:
    animated = _variant(shot, tmp_path / "animated.blend", (
        "for frame, samples in ((1, 2), (3, 4)):\n"
        "    scene.cycles.samples = samples\n"
        "    scene.cycles.keyframe_insert('samples', frame=frame)"
    ))
    record = _render(animated, tmp_path / "kept", samples=None)
    assert record.settings["persistent_data"] is True
    _assert_same_pixels(tmp_path / "kept", _fresh(animated, tmp_path / "fresh", samples=None))


class PerFrameScriptRenderer(BlenderRenderer):
    """The real render child with a script that sets the sample count every frame (``1 + frame``),
    as a pipeline's frame-change handler might."""

    def command(self, request_json: Path, result_json: Path) -> list[str]:
        code = (
            "import importlib.util, os, sys\n"
            f"spec = importlib.util.spec_from_file_location('child', {str(child_script_path())!r})\n"
            "child = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(child)\n"
            "plain = child.configure_scene\n"
            "def per_frame(scene, depsgraph=None):\n"
            "    scene.cycles.samples = 1 + scene.frame_current\n"
            "def configure(bpy, request):\n"
            "    scene = plain(bpy, request)\n"
            "    bpy.app.handlers.frame_change_post.append(per_frame)\n"
            "    return scene\n"
            "child.configure_scene = configure\n"
            "status = child.main([sys.argv[0], *sys.argv[1:]])\n"
            "sys.stderr.flush()\n"
            "os._exit(status)\n"
        )
        return [sys.executable, "-c", code, str(request_json), str(result_json)]


def test_a_scene_with_per_frame_scripts_renders_without_persistent_data(shot: Path, tmp_path: Path) -> None:
    renderer = PerFrameScriptRenderer()
    auto = _render(shot, tmp_path / "auto", renderer=renderer)
    assert auto.settings["persistent_data"] is False
    assert "frame_change_post handlers" in str(auto.settings["persistent_data_note"])
    assert synced_every_mesh([f.synced_objects for f in auto.frames]), [f.synced_objects for f in auto.frames]
    fresh = _fresh(shot, tmp_path / "fresh", renderer=renderer)
    _assert_same_pixels(tmp_path / "auto", fresh)
    # The precaution costs speed, not pixels: forced on, the kept session takes the script's
    # per-frame sample count (2, 3, 4) and gives the fresh renders' pixels too.
    forced = _render(shot, tmp_path / "forced", renderer=renderer, persistent_data=True)
    assert forced.settings["persistent_data"] is True
    assert kept_static([f.synced_objects for f in forced.frames]), [f.synced_objects for f in forced.frames]
    _assert_same_pixels(tmp_path / "forced", fresh)


def test_the_split_fits_across_tasks_of_different_sample_counts(shot: Path, tmp_path: Path) -> None:
    records = [_render(shot, tmp_path / str(samples), samples=samples) for samples in (2, 16)]
    split = cost_split(records)
    assert split.method == "fit" and split.sample_counts == (2, 16) and split.frames == 6
    assert split.cpu_s_per_sample > 0
    # The fit passes through each sample count's mean frame cost (two counts: exactly).
    for record in records:
        samples = int(record.settings["samples"])  # type: ignore[arg-type]
        mean = sum(f.cpu_s for f in record.frames) / len(record.frames)
        assert split.cpu_s(samples) == pytest.approx(mean, rel=1e-6)
