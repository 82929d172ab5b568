"""The temporal denoise backend on small synthetic sequences (real OIDN, real EXR files where a file is read)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farmplug.denoise.config import DenoiseConfig, TemporalDenoiseConfig
from farmplug.errors import FarmplugError, ImageError, MissingPassError
from farmplug.imageio import Frame, Part, read_frame, write_frame
from farmplug.motion import join_blender_vectors
from farmplug.quality import psnr_tonemapped

H, W = 32, 48
CHANNELS = (
    [f"ViewLayer.Combined.{c}" for c in "RGBA"]
    + [f"ViewLayer.Denoising Albedo.{c}" for c in "RGB"]
    + [f"ViewLayer.Denoising Normal.{c}" for c in "XYZ"]
    + ["ViewLayer.Depth.Z"]
    + [f"ViewLayer.Vector.{c}" for c in "XYZW"]
    + ["ViewLayer.IndexOB.X"]
)


def texture(shift: float = 0.0) -> np.ndarray:
    """A smooth colourful pattern, moved ``shift`` pixels right."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    xs = xs - shift
    return np.stack([0.6 + 0.4 * np.sin(xs * 0.35), 0.5 + 0.3 * np.cos(ys * 0.3), 0.4 + 0.2 * np.sin((xs + ys) * 0.2)],
                    axis=-1).astype(np.float32)


def make_frame(color: np.ndarray, *, dx: float = 0.0, depth: float = 5.0, ids: float = 1.0, motion: bool = True,
               path: Path | None = None) -> Frame:
    """A Blender-like single-part frame; the image moves ``dx`` pixels right per frame."""
    to_prev = np.zeros((H, W, 2), np.float32)
    to_prev[..., 0] = -dx
    to_next = np.zeros((H, W, 2), np.float32)
    to_next[..., 0] = dx
    layers = [color, np.ones((H, W, 1)), np.full((H, W, 3), 0.8), np.dstack([np.zeros((H, W, 2)), np.ones((H, W, 1))]),
              np.full((H, W, 1), depth)]
    names = CHANNELS
    if motion:
        layers.append(join_blender_vectors(to_prev, to_next))
    else:
        names = [c for c in CHANNELS if ".Vector." not in c]
    layers.append(np.full((H, W, 1), ids))
    pixels = np.concatenate([np.asarray(x, np.float32) for x in layers], axis=-1)
    spec = oiio.ImageSpec(W, H, len(names), oiio.FLOAT)
    spec.channelnames = tuple(names)
    return Frame((Part(spec, pixels),), path=path)


def noisy_sequence(n: int, *, dx: float = 0.0, sigma: float = 0.25, seed: int = 0, **kw) -> tuple[list[Frame], list]:
    rng = np.random.default_rng(seed)
    truth = [texture(dx * t) for t in range(n)]
    frames = [make_frame(np.maximum(c + rng.normal(0, sigma, c.shape).astype(np.float32), 0), dx=dx,
                         path=Path(f"/seq/f.{t + 1:04d}.exr"), **kw) for t, c in enumerate(truth)]
    return frames, truth


def stage(**settings):
    from farmplug.denoise.temporal import TemporalDenoiseStage

    s = TemporalDenoiseStage(TemporalDenoiseConfig(device="cpu", **settings))
    s.open()
    return s


def around(frames: list[Frame], index: int, window: int = 2) -> dict[int, Frame]:
    return {o: frames[index + o] for o in range(-window, window + 1) if o and 0 <= index + o < len(frames)}


def gain_of_the_middle_frame(frames: list[Frame], truth: np.ndarray) -> float:
    """PSNR of the temporal result of the middle one of 5 frames over its per-frame OIDN denoise (dB)."""
    s = stage()
    try:
        temporal, _ = s.process_window(frames[2], around(frames, 2))
        alone, _ = s.process(frames[2])
    finally:
        s.close()
    return psnr_tonemapped(truth, temporal.feature("color")) - psnr_tonemapped(truth, alone.feature("color"))


@pytest.mark.parametrize("dx", [pytest.param(0.0, id="static"), pytest.param(2.0, id="pan-2px"),
                                pytest.param(1.5, id="pan-subpixel")])
def test_gathering_the_neighbours_beats_per_frame_oidn_at_equal_samples(dx):
    frames, truth = noisy_sequence(5, dx=dx)
    gain = gain_of_the_middle_frame(frames, truth[2])
    assert gain > 1.0, f"{gain:.2f} dB"


def test_the_result_keeps_every_other_layer():
    frames, _ = noisy_sequence(3)
    s = stage()
    try:
        out, _ = s.process_window(frames[1], around(frames, 1))
    finally:
        s.close()
    original = frames[1].parts[0].pixels
    np.testing.assert_array_equal(out.parts[0].pixels[..., 3:], original[..., 3:])


@pytest.mark.parametrize(
    "mismatch",
    [
        pytest.param({"ids": 2.0}, id="other-object"),
        pytest.param({"depth": 9.0}, id="other-depth"),
    ],
)
def test_neighbours_showing_another_surface_contribute_nothing(mismatch):
    """Every neighbour pixel fails the ID or depth check: the result is the per-frame denoise, exactly."""
    frames, _ = noisy_sequence(3)
    others, _ = noisy_sequence(3, seed=5, **mismatch)
    neighbours = {-1: others[0], 1: others[2]}
    s = stage()
    try:
        temporal, _ = s.process_window(frames[1], neighbours)
        alone, _ = s.process(frames[1])
    finally:
        s.close()
    np.testing.assert_array_equal(temporal.feature("color"), alone.feature("color"))


def test_a_surface_moving_in_depth_is_still_gathered_but_an_occluder_in_it_is_not():
    """A dolly: every depth changes by 10% per frame (beyond the 3% tolerance of a raw check), which
    is the surface moving, not another surface; a patch nearer the camera in the neighbours (an
    occluder the vectors do not know) still fails the check there."""
    rng = np.random.default_rng(3)
    truth = texture()
    frames = [make_frame(np.maximum(truth + rng.normal(0, 0.25, truth.shape).astype(np.float32), 0),
                         depth=5.0 * (1 + 0.1 * t), path=Path(f"/dolly/f.{t + 1:04d}.exr")) for t in range(5)]
    gain = gain_of_the_middle_frame(frames, truth)
    assert gain > 1.0, f"{gain:.2f} dB"
    # An occluder in the middle of the neighbours: nearer by half, black.
    occluded = []
    for f in frames:
        pixels = f.parts[0].pixels.copy()
        depth = CHANNELS.index("ViewLayer.Depth.Z")
        pixels[8:24, 16:32, depth] *= 0.5
        pixels[8:24, 16:32, :3] = 0.0
        occluded.append(Frame((Part(f.parts[0].spec, pixels),), path=Path(str(f.path).replace("dolly", "occluded"))))
    s = stage(color_tolerance=1.0)  # only the depth check can keep the black occluder out
    try:
        out, _ = s.process_window(frames[2], {o: occluded[2 + o] for o in (-2, -1, 1, 2)})
    finally:
        s.close()
    inside = out.feature("color")[12:20, 20:28]
    assert float(inside.mean()) > 0.8 * float(truth[12:20, 20:28].mean()), "the occluder was gathered"


def test_a_neighbour_whose_shading_changed_drops_out():
    """Same surface, but the neighbours are much brighter (a light or reflection that does not follow
    the vectors): the colour check keeps them out, so the frame is not brightened."""
    frames, truth = noisy_sequence(3, sigma=0.05)
    bright = [make_frame(f.feature("color") * 3.0, path=Path(f"/other/f.{i}.exr")) for i, f in enumerate(frames)]
    s = stage()
    try:
        out, _ = s.process_window(frames[1], {-1: bright[0], 1: bright[2]})
    finally:
        s.close()
    assert abs(float(out.feature("color").mean()) - float(truth[1].mean())) < 0.05


def test_a_frame_without_vectors_is_denoised_on_its_own_with_a_warning():
    frames, _ = noisy_sequence(3, motion=False)
    s = stage()
    try:
        temporal, info = s.process_window(frames[1], around(frames, 1))
        alone, _ = s.process(frames[1])
    finally:
        s.close()
    np.testing.assert_array_equal(temporal.feature("color"), alone.feature("color"))
    assert any("no Vector pass" in w and "on its own" in w for w in info.warnings)


def test_require_motion_makes_a_missing_vector_pass_an_error():
    frames, _ = noisy_sequence(3, motion=False)
    s = stage(missing_motion="error")
    try:
        with pytest.raises(MissingPassError, match="no Vector pass"):
            s.process_window(frames[1], around(frames, 1))
    finally:
        s.close()


def test_the_first_frame_uses_the_neighbours_it_has():
    frames, truth = noisy_sequence(4)
    s = stage()
    try:
        first, _ = s.process_window(frames[0], around(frames, 0))
        alone, _ = s.process(frames[0])
    finally:
        s.close()
    assert psnr_tonemapped(truth[0], first.feature("color")) > psnr_tonemapped(truth[0], alone.feature("color")) + 0.5


def test_the_oidn_backend_is_unchanged_by_the_temporal_one():
    from farmplug.denoise.config import DESCRIPTOR, TEMPORAL_DESCRIPTOR

    assert DESCRIPTOR.mode == "frame" and DESCRIPTOR.backend == "oidn" and DESCRIPTOR.default
    # Its default reach: the gathering window (2) and the blend of the neighbours' results after OIDN (1).
    assert TEMPORAL_DESCRIPTOR.mode == "window" and TEMPORAL_DESCRIPTOR.window == 3 and not TEMPORAL_DESCRIPTOR.default
    assert DenoiseConfig().passes() == {"albedo", "normal"}
    assert {"motion", "depth"} <= TemporalDenoiseConfig().passes()


# --- the runner and the command line -----------------------------------------------------------


def write_sequence(folder: Path, frames: list[Frame]) -> str:
    pattern = str(folder / "in" / "f.####.exr")
    for index, frame in enumerate(frames, start=1):
        write_frame(folder / "in" / f"f.{index:04d}.exr", frame)
    return pattern


def test_the_runner_reads_each_frame_s_neighbours_from_the_input_pattern(tmp_path):
    from farmplug.runner import frame_jobs, run_stage

    frames, truth = noisy_sequence(5)
    pattern = write_sequence(tmp_path, frames)
    out = str(tmp_path / "out" / "f.####.exr")
    record = run_stage(TemporalDenoiseConfig(device="cpu"), frame_jobs(pattern, out, [2, 3]), task="denoise-0002-0003")
    assert [f.frame for f in record.frames] == [2, 3]
    assert record.backend == "temporal"
    oidn_out = str(tmp_path / "oidn" / "f.####.exr")
    run_stage(DenoiseConfig(device="cpu"), frame_jobs(pattern, oidn_out, [3]), task="denoise-0003-0003")
    temporal = read_frame(tmp_path / "out" / "f.0003.exr").feature("color")
    alone = read_frame(tmp_path / "oidn" / "f.0003.exr").feature("color")
    assert psnr_tonemapped(truth[2], temporal) > psnr_tonemapped(truth[2], alone) + 1.0


def test_a_neighbour_of_another_size_is_an_error_naming_both_files(tmp_path):
    from farmplug.runner import frame_jobs, run_stage

    frames, _ = noisy_sequence(3)
    pattern = write_sequence(tmp_path, frames)
    spec = oiio.ImageSpec(W // 2, H // 2, 3, oiio.FLOAT)
    spec.channelnames = ("R", "G", "B")
    write_frame(tmp_path / "in" / "f.0003.exr", Frame((Part(spec, np.ones((H // 2, W // 2, 3), np.float32)),)))
    with pytest.raises(ImageError, match=r"f\.0003\.exr does not match .*f\.0002\.exr: 24x16 against 48x32"):
        run_stage(TemporalDenoiseConfig(device="cpu"), frame_jobs(pattern, str(tmp_path / "o" / "f.####.exr"), [2]),
                  task="t")


def test_the_command_line_chooses_the_backend_and_its_window():
    from farmplug.denoise.config import TEMPORAL_DESCRIPTOR
    from farmplug.stages.registry import descriptor
    from farmplug.worker import parse, stage_config

    args = parse(["run", "denoise", "--backend", "temporal", "--window", "3", "--require-motion",
                  "--input", "a.####.exr", "--output", "b.####.exr", "--frames", "1-4"])
    config = stage_config(args, descriptor("denoise"))
    assert isinstance(config, TemporalDenoiseConfig)
    assert (config.window, config.missing_motion) == (3, "error")
    assert TEMPORAL_DESCRIPTOR.key == "denoise:temporal"
    plain = stage_config(parse(["run", "denoise", "--input", "a", "--output", "b"]), descriptor("denoise"))
    assert type(plain) is DenoiseConfig
    wrong = parse(["run", "denoise", "--window", "3", "--input", "a", "--output", "b"])
    with pytest.raises(FarmplugError, match="--window is not a setting of denoise:oidn"):
        stage_config(wrong, descriptor("denoise"))


def test_the_graph_waits_for_the_neighbouring_chunks_and_renders_the_neighbours_of_restricted_frames():
    from farmplug.graph import compile_plan
    from farmplug.models import FrameRangeModel, Plan, Resolution, Shot

    shot = Shot(name="sh", scene="/s/sh.blend", frames=FrameRangeModel(start=1, end=12),
                resolution=Resolution(width=64, height=36), samples=64, output="frames/sh.####.exr")
    plan = Plan(shot="shot.yaml", samples_factor=1 / 8, stages=[TemporalDenoiseConfig(window=3)], chunk_size=4,
                check_frames=[1])
    graph = compile_plan(plan, shot, plan_file=Path("/s/plan.yaml"), shot_file=Path("/s/shot.yaml"),
                         run_dir=Path("/s/run"))
    denoise = {t.id: t for t in graph.tasks if t.layer == "denoise"}
    assert denoise["denoise-0005-0008"].depends_on == ["render-0005-0008", "render-0001-0004", "render-0009-0012"]
    assert denoise["denoise-0001-0004"].depends_on == ["render-0001-0004", "render-0005-0008"]
    # A frame's result reads its window (3) and, through the neighbours' results it blends in, one more.
    assert {t.window for t in denoise.values()} == {4} and {t.reads for t in denoise.values()} == {"window"}
    # Restricted to frame 6 (as calibration measures a check frame), frames 2-10 are rendered.
    for stabilize, reach in ((1, 4), (0, 3)):
        restricted = plan.model_copy(update={"stages": [TemporalDenoiseConfig(window=3, stabilize=stabilize)]})
        some = compile_plan(restricted, shot, plan_file=Path("/s/plan.yaml"), shot_file=Path("/s/shot.yaml"),
                            run_dir=Path("/s/run"), frames=[6])
        rendered = sorted(f for t in some.tasks if t.layer == "render" for f in t.frames)
        assert rendered == list(range(6 - reach, 7 + reach))
        assert [t.frames for t in some.tasks if t.layer == "denoise"] == [[6]]
