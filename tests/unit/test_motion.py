"""The shared motion-vector convention and warps (farmplug.motion)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from farmplug import motion
from farmplug.errors import FarmplugError


def test_importing_the_module_does_not_import_torch():
    code = "import sys, farmplug.motion; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_the_inbetween_stage_uses_the_core_s_convention_not_a_copy():
    from farmplug.inbetween import vectors
    from farmplug.inbetween.interpolate import sampler

    assert vectors.split_blender_vectors is motion.split_blender_vectors
    assert vectors.join_blender_vectors is motion.join_blender_vectors
    assert sampler.gather is motion.gather


def test_split_follows_the_measured_cycles_convention():
    vector = np.zeros((2, 3, 4), np.float32)
    vector[..., :] = (1.5, 2.0, -3.0, 0.5)  # X, Y to the previous frame; Z, W to the next
    to_prev, to_next = motion.split_blender_vectors(vector)
    np.testing.assert_array_equal(to_prev[0, 0], [1.5, -2.0])  # (x + X, y - Y)
    np.testing.assert_array_equal(to_next[0, 0], [3.0, 0.5])  # (x - Z, y + W)
    np.testing.assert_array_equal(motion.join_blender_vectors(to_prev, to_next), vector)


def test_backward_warp_by_whole_pixels_is_exact_and_marks_the_outside():
    image = np.arange(4 * 5 * 2, dtype=np.float32).reshape(4, 5, 2)
    shift = np.zeros((4, 5, 2), np.float32)
    shift[..., 0] = -2  # each pixel reads two pixels to its left
    warped, inside = motion.backward_warp(image, shift)
    np.testing.assert_array_equal(warped[:, 2:], image[:, :3])
    np.testing.assert_array_equal(inside[:, :2], False)
    np.testing.assert_array_equal(inside[:, 2:], True)


def test_backward_warp_interpolates_half_pixels_and_takes_2d_images():
    image = np.array([[0.0, 2.0, 4.0]], np.float32)
    shift = np.full((1, 3, 2), 0.0, np.float32)
    shift[..., 0] = 0.5
    warped, inside = motion.backward_warp(image, shift)
    assert warped.shape == (1, 3)
    np.testing.assert_allclose(warped[0, :2], [1.0, 3.0])
    assert inside.tolist() == [[True, True, False]]
    nearest, _ = motion.backward_warp(image, shift - 0.2, mode="nearest")
    np.testing.assert_array_equal(nearest[0], [0.0, 2.0, 4.0])


def test_compose_follows_the_surface_along_each_frame_s_own_vectors():
    """Frame t moves its content 1 px right of t-1; frame t-1's content was, at columns >= 3, 2 px
    right of t-2's and elsewhere 0 px: the chained path reads frame t-1's field where the surface was."""
    h, w = 3, 10
    step0 = np.zeros((h, w, 2), np.float32)
    step0[..., 0] = -1
    step1 = np.zeros((h, w, 2), np.float32)
    step1[:, 3:, 0] = -2
    total, inside = motion.compose_displacements([step0, step1])
    # Pixel x of frame t was at x - 1 in t-1; from there, -2 more where x - 1 >= 3.
    expected = np.where(np.arange(w) - 1 >= 3, -3.0, -1.0)
    np.testing.assert_allclose(total[0, :, 0], expected)
    np.testing.assert_array_equal(total[..., 1], 0)
    assert not inside[:, 0].any()  # x = 0 left the frame at the first step
    assert inside[:, 1:].all()


def test_compose_of_one_step_is_that_step():
    step = np.random.default_rng(0).normal(0, 0.3, (4, 6, 2)).astype(np.float32)
    total, _ = motion.compose_displacements([step])
    np.testing.assert_array_equal(total, step)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: motion.compose_displacements([]), "at least one step", id="no-steps"),
        pytest.param(lambda: motion.compose_displacements([np.zeros((3, 4, 2)), np.zeros((3, 5, 2))]),
                     "step 1 must be 3x4x2", id="mismatched-steps"),
        pytest.param(lambda: motion.backward_warp(np.zeros((3, 4, 3)), np.zeros((3, 4, 3))),
                     "displacement must be 3x4x2", id="bad-field"),
        pytest.param(lambda: motion.split_blender_vectors(np.zeros((3, 4, 3))), "must be ...xHxWx4", id="bad-vector"),
    ],
)
def test_bad_shapes_are_one_clear_error(call, message):
    with pytest.raises(FarmplugError, match=message):
        call()
