"""Quality metrics (HDR-FLIP, tone-mapped PSNR and SSIM) on small synthetic HDR images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from farmplug.errors import FarmplugError
from farmplug.quality import (
    PSNR_CAP_DB,
    QualityResult,
    flip_hdr,
    measure,
    psnr_tonemapped,
    ssim_tonemapped,
    tonemap,
)

H, W = 40, 56


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    image = np.stack([0.1 + 2 * x / W, 0.2 + y / H, 0.5 * np.ones_like(x)], axis=-1)
    image[10:25, 30:45] = [8.0, 6.0, 2.0]  # an HDR highlight
    image[25:35, 5:20] = [0.02, 0.03, 0.05]
    return image.astype(np.float32)


def _with_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = image + rng.normal(0, sigma, image.shape) * np.sqrt(image)
    return np.maximum(noisy, 0).astype(np.float32)


def test_tonemap_known_values() -> None:
    linear = np.array([0.0, 1.0, 3.0, np.inf, -2.0, np.nan], np.float32)
    # 1.0 -> Reinhard 0.5 -> sRGB 1.055 * 0.5^(1/2.4) - 0.055; 3.0 -> 0.75 -> ...
    srgb = lambda v: 1.055 * v ** (1 / 2.4) - 0.055  # noqa: E731
    expected = [0.0, srgb(0.5), srgb(0.75), 1.0, 0.0, 0.0]
    np.testing.assert_allclose(tonemap(linear), expected, atol=1e-6)
    small = np.float32(0.001)  # in the linear segment of the sRGB curve
    np.testing.assert_allclose(tonemap(np.array([small])), [12.92 * small / (1 + small)], rtol=1e-5)
    assert tonemap(np.full((2, 2, 3), 1e6, np.float32)).max() <= 1.0


def test_identical_images(reference: np.ndarray) -> None:
    result = measure(reference, reference.copy())
    assert isinstance(result, QualityResult)
    assert result.flip_mean == pytest.approx(0.0, abs=1e-6)
    assert result.flip_p95 == pytest.approx(0.0, abs=1e-6)
    assert result.psnr == PSNR_CAP_DB
    assert result.ssim == pytest.approx(1.0)
    assert result.as_dict() == {
        "flip_mean": result.flip_mean,
        "flip_p95": result.flip_p95,
        "psnr": PSNR_CAP_DB,
        "ssim": result.ssim,
    }


def test_more_noise_is_monotonically_worse(reference: np.ndarray) -> None:
    results = [measure(reference, _with_noise(reference, sigma)) for sigma in (0.02, 0.1, 0.4)]
    for better, worse in zip(results, results[1:], strict=False):
        assert better.flip_mean < worse.flip_mean
        assert better.flip_p95 < worse.flip_p95
        assert better.psnr > worse.psnr
        assert better.ssim > worse.ssim
    assert all(0 < r.flip_mean < 1 and r.psnr < PSNR_CAP_DB and r.ssim < 1 for r in results)


def test_psnr_of_uniform_offset_matches_hand_computation() -> None:
    reference = np.full((16, 16, 3), 1.0, np.float32)
    test = np.full((16, 16, 3), 3.0, np.float32)
    srgb = lambda v: 1.055 * v ** (1 / 2.4) - 0.055  # noqa: E731
    difference = srgb(0.75) - srgb(0.5)  # Reinhard: 1 -> 0.5, 3 -> 0.75
    expected = 10 * math.log10(1 / difference**2)
    assert psnr_tonemapped(reference, test) == pytest.approx(expected, abs=1e-3)
    # By hand: sRGB(0.75) = 0.8811, sRGB(0.5) = 0.7354, so -20 log10(0.1457) = 16.74 dB.
    assert expected == pytest.approx(16.74, abs=0.01)


def test_psnr_is_capped_for_nearly_identical_images(reference: np.ndarray) -> None:
    nudged = reference * np.float32(1 + 1e-7)
    assert psnr_tonemapped(reference, nudged) <= PSNR_CAP_DB


def test_flip_returns_error_map_consistent_with_pooled_values(reference: np.ndarray) -> None:
    test = _with_noise(reference, 0.1)
    mean, p95, error = flip_hdr(reference, test)
    assert error.shape == (H, W) and error.dtype == np.float32
    assert mean == pytest.approx(float(error.mean()))
    assert p95 == pytest.approx(float(np.percentile(error, 95)))
    assert 0 <= error.min() and error.max() <= 1
    result, error_from_measure = measure(reference, test, error_map=True)
    np.testing.assert_array_equal(error_from_measure, error)
    assert result.flip_mean == pytest.approx(mean)


def test_flip_matches_flip_evaluator_pooled_mean(reference: np.ndarray) -> None:
    import flip_evaluator

    test = _with_noise(reference, 0.1)
    _, library_mean, _ = flip_evaluator.evaluate(reference, test, "HDR", applyMagma=False)
    assert flip_hdr(reference, test)[0] == pytest.approx(library_mean, rel=1e-4)


def test_individual_functions_agree_with_measure(reference: np.ndarray) -> None:
    test = _with_noise(reference, 0.1)
    result = measure(reference, test)
    assert psnr_tonemapped(reference, test) == result.psnr
    assert ssim_tonemapped(reference, test) == result.ssim


@pytest.mark.parametrize("size", [(3, 3), (4, 9), (6, 6)], ids=["3x3", "4x9", "6x6"])
def test_ssim_adapts_window_to_tiny_images(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    reference = rng.random((*size, 3)).astype(np.float32)
    assert ssim_tonemapped(reference, reference) == pytest.approx(1.0)
    assert ssim_tonemapped(reference, reference * 2) < 1.0


def test_ssim_rejects_images_below_3px() -> None:
    tiny = np.ones((2, 8, 3), np.float32)
    with pytest.raises(FarmplugError, match="3x3"):
        ssim_tonemapped(tiny, tiny)


def test_non_finite_test_pixels_count_as_maximal_error(reference: np.ndarray) -> None:
    test = _with_noise(reference, 0.02)
    clean_result = measure(reference, test)
    test[5, 7, 0] = np.nan
    test[30, 50] = np.inf
    result, error = measure(reference, test, error_map=True)
    assert error[5, 7] == 1.0 and error[30, 50] == 1.0
    assert all(math.isfinite(v) for v in result.as_dict().values())
    assert result.flip_mean > clean_result.flip_mean
    assert result.psnr < clean_result.psnr
    assert result.ssim < clean_result.ssim


def test_negative_values_are_clamped(reference: np.ndarray) -> None:
    negative = reference.copy()
    negative[0, 0] = -1.0
    zeroed = reference.copy()
    zeroed[0, 0] = 0.0
    assert measure(reference, negative) == measure(reference, zeroed)


def test_accepts_other_dtypes_and_strides(reference: np.ndarray) -> None:
    test = _with_noise(reference, 0.1)
    strided = np.repeat(test, 2, axis=1)[:, ::2]
    assert not strided.flags.c_contiguous
    assert measure(reference.astype(np.float64), strided) == measure(reference, test)


@pytest.mark.parametrize(
    ("reference_shape", "test_shape", "message"),
    [
        pytest.param((H, W, 3), (H, W + 1, 3), "reference is", id="width"),
        pytest.param((H, W, 3), (W, H, 3), "reference is", id="transposed"),
        pytest.param((H, W, 4), (H, W, 4), "HxWx3", id="rgba"),
        pytest.param((H, W), (H, W), "HxWx3", id="grey"),
        pytest.param((0, W, 3), (0, W, 3), "HxWx3", id="empty"),
    ],
)
def test_bad_shapes_raise(reference_shape, test_shape, message: str) -> None:
    with pytest.raises(FarmplugError, match=message):
        measure(np.ones(reference_shape, np.float32), np.ones(test_shape, np.float32))


def test_non_finite_reference_raises(reference: np.ndarray) -> None:
    broken = reference.copy()
    broken[1, 1, 1] = np.nan
    for function in (measure, flip_hdr, psnr_tonemapped, ssim_tonemapped):
        with pytest.raises(FarmplugError, match="reference image has 1 non-finite"):
            function(broken, reference)
