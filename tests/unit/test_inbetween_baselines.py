"""The inbetween baselines: crossfade and colour-only optical-flow interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from farmplug.errors import FarmplugError
from farmplug.inbetween.baselines import crossfade, optical_flow_interpolate

SIZE = 64
SQUARE = 20
STEP_PX = 8  # the square moves this far right (and half of it down) from A to B


def _texture(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """Blobby random texture (noise smoothed by a box filter), so flow has something to track."""
    noise = rng.random((size + 4, size + 4, channels)).astype(np.float32)
    kernel = np.ones(5, dtype=np.float32) / 5
    for axis in (0, 1):
        noise = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="valid"), axis, noise)
    return noise


def _scene(offset_x: int, offset_y: int, channels: int = 4) -> np.ndarray:
    """A static textured background with a textured square whose corner is at (16 + dx, 16 + dy)."""
    rng = np.random.default_rng(7)
    background = 0.3 * _texture(rng, SIZE, channels)
    square = 2.0 * _texture(rng, SQUARE, channels) + 0.5  # HDR values above 1
    image = background.copy()
    y0, x0 = 16 + offset_y, 16 + offset_x
    image[y0 : y0 + SQUARE, x0 : x0 + SQUARE] = square
    if channels == 4:
        image[..., 3] = 1.0
    return image


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        pytest.param(0.0, "a", id="start"),
        pytest.param(1.0, "b", id="end"),
        pytest.param(0.5, "mid", id="midpoint"),
    ],
)
def test_crossfade_is_exact_at_ends_and_middle(s: float, expected: str) -> None:
    a = np.full((4, 5, 4), 1.0, dtype=np.float32)
    b = np.full((4, 5, 4), 3.0, dtype=np.float32)
    out = crossfade(a, b, s)
    want = {"a": a, "b": b, "mid": np.full_like(a, 2.0)}[expected]
    assert out.dtype == np.float32
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "s"),
    [
        pytest.param((4, 4, 3), (4, 5, 3), 0.5, id="shape-mismatch"),
        pytest.param((4, 4), (4, 4), 0.5, id="not-hxwxc"),
        pytest.param((4, 4, 3), (4, 4, 3), 1.5, id="time-outside-0-1"),
    ],
)
def test_crossfade_rejects_bad_input(a_shape: tuple[int, ...], b_shape: tuple[int, ...], s: float) -> None:
    with pytest.raises(FarmplugError):
        crossfade(np.zeros(a_shape, np.float32), np.zeros(b_shape, np.float32), s)


@pytest.fixture(scope="module")
def cv2_module():  # noqa: ANN201 - the optional module
    return pytest.importorskip("cv2", reason="OpenCV (pip install 'farmplug[bench]') runs the optical-flow baseline")


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_optical_flow_recovers_moving_square_far_better_than_crossfade(cv2_module, method: str) -> None:
    a = _scene(0, 0)
    b = _scene(STEP_PX, STEP_PX // 2)
    truth = _scene(STEP_PX // 2, STEP_PX // 4)
    flow = optical_flow_interpolate(a, b, 0.5, method=method)
    fade = crossfade(a, b, 0.5)
    # Judge well inside the image, away from the clamped border.
    inner = (slice(6, -6), slice(6, -6), slice(0, 3))
    flow_error = float(np.abs(flow - truth)[inner].mean())
    fade_error = float(np.abs(fade - truth)[inner].mean())
    assert flow_error < 0.4 * fade_error, (flow_error, fade_error)


@pytest.mark.parametrize("channels", [3, 4, 6])
def test_optical_flow_keeps_shape_and_channels(cv2_module, channels: int) -> None:
    a = _scene(0, 0, channels)
    b = _scene(4, 0, channels)
    out = optical_flow_interpolate(a, b, 0.25)
    assert out.shape == a.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_optical_flow_endpoints_return_the_keyframes(cv2_module) -> None:
    a = _scene(0, 0)
    b = _scene(6, 2)
    np.testing.assert_allclose(optical_flow_interpolate(a, b, 0.0), a, atol=1e-6)
    np.testing.assert_allclose(optical_flow_interpolate(a, b, 1.0), b, atol=1e-6)


def test_optical_flow_rejects_unknown_method(cv2_module) -> None:
    a = _scene(0, 0)
    with pytest.raises(FarmplugError, match="dis, farneback"):
        optical_flow_interpolate(a, a, 0.5, method="lucas-kanade")  # type: ignore[arg-type]
