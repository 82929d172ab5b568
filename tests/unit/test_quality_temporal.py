"""The temporal instability metric on hand-computed sequences."""

from __future__ import annotations

import numpy as np
import pytest

from farmplug.errors import FarmplugError
from farmplug.motion import join_blender_vectors
from farmplug.quality import temporal_instability, tonemap

#: tonemap(1.0): Reinhard 1 / (1 + 1) = 0.5, then sRGB 1.055 * 0.5 ** (1 / 2.4) - 0.055.
TM_ONE = 1.055 * 0.5 ** (1 / 2.4) - 0.055


def _frames(values, h=6, w=8):
    return [np.full((h, w, 3), v, dtype=np.float32) for v in values]


def _pan_vectors(n, h, w, dx):
    """Vector passes of a sequence whose image moves ``dx`` pixels right per frame."""
    to_prev = np.zeros((h, w, 2), np.float32)
    to_prev[..., 0] = -dx
    to_next = np.zeros((h, w, 2), np.float32)
    to_next[..., 0] = dx
    return [join_blender_vectors(to_prev, to_next) for _ in range(n)]


def test_the_tonemap_constant_is_what_the_hand_computation_says():
    assert tonemap(np.ones((1, 1, 3), np.float32))[0, 0, 0] == pytest.approx(TM_ONE, abs=1e-6)


def test_a_static_scene_with_a_stable_error_scores_zero():
    refs = _frames([1.0] * 4)
    results = _frames([2.0] * 4)  # wrong, but the same every frame
    score = temporal_instability(results, refs)
    assert score.pairs == (0.0, 0.0, 0.0)
    assert score.mean == 0.0
    assert not score.warped


def test_results_equal_to_the_references_score_zero_whatever_the_references_do():
    rng = np.random.default_rng(1)
    refs = [rng.uniform(0, 4, (6, 8, 3)).astype(np.float32) for _ in range(3)]
    assert temporal_instability(refs, refs).mean == 0.0


def test_injected_flicker_scores_its_known_value():
    """Half the pixels alternate between 0 and 1.0 (display 0 and TM_ONE) over a steady reference."""
    refs = _frames([1.0] * 4)
    results = []
    for t in range(4):
        frame = np.ones((6, 8, 3), np.float32)
        frame[:, :4] = 0.0 if t % 2 else 1.0
        results.append(frame)
    score = temporal_instability(results, refs)
    assert score.pairs == pytest.approx((TM_ONE / 2,) * 3, abs=1e-6)
    assert score.mean == pytest.approx(TM_ONE / 2, abs=1e-6)


def test_one_bad_pair_shows_in_its_pair_only():
    refs = _frames([1.0] * 4)
    results = _frames([1.0, 1.0, 0.0, 0.0])
    score = temporal_instability(results, refs)
    assert score.pairs == pytest.approx((0.0, TM_ONE, 0.0), abs=1e-6)
    assert score.mean == pytest.approx(TM_ONE / 3, abs=1e-6)


def _panned_texture(n, h, w, dx):
    """``n`` frames of a texture panning ``dx`` pixels right per frame, and of the same texture
    blurred (an error that moves with the image): ``(references, results)``."""
    xs = np.arange(w + n * dx, dtype=np.float32)
    texture = 1.0 + 0.8 * np.sin(xs * 0.9)
    blurred = np.convolve(texture, np.ones(3) / 3, mode="same").astype(np.float32)

    def frame(row, t):
        # Frame t shows the texture moved t * dx pixels right: pixel x shows texture[x - t*dx + n*dx].
        line = row[n * dx - t * dx : n * dx - t * dx + w]
        return np.repeat(np.repeat(line[None, :, None], h, axis=0), 3, axis=2)

    return [frame(texture, t) for t in range(n)], [frame(blurred, t) for t in range(n)]


def test_a_pure_camera_pan_is_not_flicker_once_warped():
    """An error that moves with the image (a blurred texture, panning 2 px a frame) changes every
    pixel from frame to frame, so the plain metric sees it; along the vectors it is the same error."""
    h, w, dx, n = 12, 40, 2, 4
    refs, results = _panned_texture(n, h, w, dx)
    plain = temporal_instability(results, refs)
    warped = temporal_instability(results, refs, motion=_pan_vectors(n, h, w, dx))
    assert warped.warped
    assert plain.mean > 0.01
    assert warped.mean < 1e-5
    assert len(warped.pairs) == n - 1


def test_warped_flicker_still_counts():
    h, w, dx, n = 6, 20, 1, 3
    refs = _frames([1.0] * n, h, w)
    results = _frames([1.0, 0.0, 1.0], h, w)
    score = temporal_instability(results, refs, motion=_pan_vectors(n, h, w, dx))
    assert score.pairs == pytest.approx((TM_ONE, TM_ONE), abs=1e-6)


def test_a_flickering_sequence_scores_worse_than_a_stable_noisy_one():
    rng = np.random.default_rng(7)
    refs = _frames([0.5] * 5, 16, 16)
    noise = rng.normal(0, 0.1, (16, 16, 3)).astype(np.float32)
    stable = [r + noise for r in refs]
    flicker = [r + rng.normal(0, 0.1, (16, 16, 3)).astype(np.float32) for r in refs]
    assert temporal_instability(flicker, refs).mean > 10 * temporal_instability(stable, refs).mean


def test_fewer_than_two_frames_have_no_pairs():
    score = temporal_instability(_frames([1.0]), _frames([1.0]))
    assert score.pairs == () and score.mean == 0.0
    assert score.as_dict() == {"pairs": [], "mean": 0.0, "warped": False, "result_change": 0.0,
                               "reference_change": 0.0}


def test_the_score_says_how_much_result_and_reference_change_on_their_own():
    refs = _frames([1.0, 0.0, 1.0])
    results = _frames([1.0] * 3)
    score = temporal_instability(results, refs)
    assert score.result_change == 0.0
    assert score.reference_change == pytest.approx(TM_ONE, abs=1e-6)
    assert score.mean == pytest.approx(TM_ONE, abs=1e-6)


@pytest.mark.parametrize(
    ("results", "references", "motion", "message"),
    [
        pytest.param(_frames([1, 1]), _frames([1, 1, 1]), None, "2 results but 3 references", id="counts"),
        pytest.param(_frames([1, 1]), _frames([1, 1], 6, 9), None, "results are 8x6 but references are 9x6", id="size"),
        pytest.param([np.ones((6, 8, 3)), np.ones((6, 9, 3))], _frames([1, 1]), None, "result frame 1 is 9x6",
                     id="frame-size"),
        pytest.param(_frames([1, 1]), [np.ones((6, 8, 3)), np.full((6, 8, 3), np.nan)], None, "reference frame 1 has",
                     id="nan-reference"),
        pytest.param(_frames([1, 1]), _frames([1, 1]), [np.zeros((6, 8, 4))], "2 frames but 1 Vector", id="motion-count"),
        pytest.param(_frames([1, 1]), _frames([1, 1]), [np.zeros((6, 8, 4)), np.zeros((6, 8, 2))],
                     "Vector pass of frame 1 must be 8x6x4", id="motion-shape"),
        pytest.param([np.ones((6, 8))] * 2, _frames([1, 1]), None, "must have shape HxWx3", id="not-rgb"),
    ],
)
def test_bad_input_is_one_clear_error(results, references, motion, message):
    with pytest.raises(FarmplugError, match=message):
        temporal_instability(results, references, motion=motion)


def test_non_finite_results_count_as_change_without_crashing():
    refs = _frames([1.0] * 3)
    results = _frames([1.0] * 3)
    results[1][0, 0] = np.nan
    score = temporal_instability(results, refs)
    assert np.isfinite(score.mean) and score.mean > 0


def test_calibration_scores_every_candidate_along_the_references_vectors(tmp_path):
    """Calibration's flicker (``farmplug.calibrate.flicker_of``) reprojects along the references'
    Vector pass: a candidate whose frames carry no Vector pass and one whose frames carry a wrong
    one score alike, and both see a pure pan as no flicker."""
    import OpenImageIO as oiio

    from farmplug.calibrate import flicker_of
    from farmplug.imageio import Frame, Part, write_frame

    h, w, dx, n = 12, 40, 2, 2
    refs, results = _panned_texture(n, h, w, dx)

    def write(pattern: str, t: int, rgb: np.ndarray, vectors: np.ndarray | None) -> None:
        names = ["ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B"]
        layers = [rgb]
        if vectors is not None:
            names += [f"ViewLayer.Vector.{c}" for c in "XYZW"]
            layers.append(vectors)
        spec = oiio.ImageSpec(w, h, len(names), oiio.FLOAT)
        spec.channelnames = tuple(names)
        write_frame(tmp_path / pattern.format(t), Frame((Part(spec, np.concatenate(layers, axis=-1)),)))

    right, wrong = _pan_vectors(n, h, w, dx), _pan_vectors(n, h, w, -3 * dx)
    for t in range(1, n + 1):
        write("ref.{:04d}.exr", t, refs[t - 1], right[t - 1])
        write("plain.{:04d}.exr", t, results[t - 1], None)
        write("vectors.{:04d}.exr", t, results[t - 1], wrong[t - 1])
    ref = str(tmp_path / "ref.####.exr")
    plain = flicker_of(ref, str(tmp_path / "plain.####.exr"), [2])
    carried = flicker_of(ref, str(tmp_path / "vectors.####.exr"), [2])
    assert plain == carried
    assert plain[0] < 1e-5
