"""OIDN backend on real Intel Open Image Denoise (CPU device), tiny synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from farmplug.denoise.oidn import (
    OidnDenoiser,
    OidnOptions,
    _check_device,
    available_devices,
)
from farmplug.errors import FarmplugError

H, W = 48, 64


def _clean_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth lighting times a blocky albedo texture, plus a flat normal with one tilted square."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    lighting = 0.5 + 1.5 * (x / W) + 0.5 * (y / H)
    albedo = np.full((H, W, 3), 0.2, np.float32)
    checker = ((y // 8 + x // 8) % 2).astype(bool)
    albedo[checker] = [0.9, 0.6, 0.3]
    albedo[12:30, 20:44] = [0.1, 0.8, 0.1]
    normal = np.zeros((H, W, 3), np.float32)
    normal[..., 2] = 1.0
    normal[12:30, 20:44] = [0.6, 0.0, 0.8]
    color = (albedo * lighting[..., None]).astype(np.float32)
    color[12:30, 20:44] *= 0.8  # the tilted square catches less light
    return color, albedo, normal


def _smooth_scene() -> np.ndarray:
    """HDR gradient with a bright disc and a dark box (anti-aliased edges, as a render has).

    No texture: all the structure is in the colour.
    """
    y, x = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
    color = np.stack([0.2 + x / W, 0.3 + y / H, 0.5 + 0.5 * (x + y) / (H + W)], axis=-1)
    disc = np.clip(8.5 - np.hypot(x - 44, y - 16), 0, 1)[..., None]
    color = color * (1 - disc) + disc * np.array([6.0, 5.0, 3.0])
    box_x = np.clip(np.minimum(x - 8, 26 - x) + 0.5, 0, 1)
    box_y = np.clip(np.minimum(y - 28, 42 - y) + 0.5, 0, 1)
    box = (box_x * box_y)[..., None]
    color = color * (1 - box) + box * np.array([0.05, 0.05, 0.08])
    return color.astype(np.float32)


def _noisy(color: np.ndarray, photons: float = 6.0, seed: int = 0) -> np.ndarray:
    """Unbiased, non-negative Poisson shot noise, like a path tracer at a few samples per pixel.

    ``photons`` is the expected photon count for a value of 1.0; fewer means noisier.
    """
    rng = np.random.default_rng(seed)
    return (rng.poisson(np.maximum(color, 0.0) * photons) / photons).astype(np.float32)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    color, albedo, normal = _clean_scene()
    return color, _noisy(color), albedo, normal


@pytest.fixture()
def denoiser():
    with OidnDenoiser(OidnOptions(device="cpu")) as instance:
        yield instance


def test_cpu_is_available() -> None:
    assert "cpu" in available_devices()


def test_denoising_lowers_mse_by_a_large_factor(denoiser: OidnDenoiser) -> None:
    clean = _smooth_scene()
    noisy = _noisy(clean, photons=3.0, seed=3)
    out = denoiser.denoise(noisy)
    assert out.shape == clean.shape and out.dtype == np.float32
    assert denoiser.device_name == "cpu"
    assert _mse(out, clean) < _mse(noisy, clean) / 8


def test_albedo_and_normal_help_when_structure_is_in_the_albedo(
    denoiser: OidnDenoiser, scene
) -> None:
    clean, noisy, albedo, normal = scene
    without_aux = _mse(denoiser.denoise(noisy), clean)
    with_aux = _mse(denoiser.denoise(noisy, albedo, normal), clean)
    assert with_aux <= without_aux
    assert with_aux < _mse(noisy, clean) / 10


def test_albedo_only_works(denoiser: OidnDenoiser, scene) -> None:
    clean, noisy, albedo, _ = scene
    assert _mse(denoiser.denoise(noisy, albedo), clean) < _mse(noisy, clean) / 5


@pytest.mark.parametrize("clean_aux", [True, False], ids=["clean-aux", "prefiltered-aux"])
@pytest.mark.parametrize("quality", ["fast", "balanced", "high", "default"])
def test_options_all_denoise(scene, clean_aux: bool, quality: str) -> None:
    clean, noisy, albedo, normal = scene
    if not clean_aux:
        # Noisy albedo, as a path tracer gives it with depth of field or motion blur.
        albedo = np.clip(_noisy(albedo, photons=50.0, seed=1), 0, 1)
    options = OidnOptions(quality=quality, clean_aux=clean_aux, device="cpu", threads=1)
    with OidnDenoiser(options) as d:
        out = d.denoise(noisy, albedo, normal)
    assert np.isfinite(out).all()
    assert _mse(out, clean) < _mse(noisy, clean) / 5


def test_prefiltering_noisy_aux_beats_trusting_it(scene) -> None:
    clean, noisy, albedo, normal = scene
    noisy_albedo = np.clip(_noisy(albedo, photons=50.0, seed=1), 0, 1)
    errors = {}
    for clean_aux in (True, False):
        with OidnDenoiser(OidnOptions(clean_aux=clean_aux, device="cpu")) as d:
            errors[clean_aux] = _mse(d.denoise(noisy, noisy_albedo, normal), clean)
    assert errors[False] < errors[True]


def test_output_is_not_clamped_in_hdr(denoiser: OidnDenoiser) -> None:
    bright = np.full((32, 32, 3), 40.0, np.float32)
    out = denoiser.denoise(bright)
    assert out.min() > 30.0
    assert abs(float(out.mean()) - 40.0) < 1.0


def test_other_dtypes_and_strides_are_converted(denoiser: OidnDenoiser, scene) -> None:
    _, noisy, albedo, normal = scene
    reference = denoiser.denoise(noisy, albedo, normal)
    as_f64 = denoiser.denoise(noisy.astype(np.float64), albedo.astype(np.float16), normal)
    np.testing.assert_allclose(as_f64, reference, atol=2e-3)
    # A strided view (every other row of a taller image) must read the right pixels.
    tall = np.repeat(noisy, 2, axis=0)
    strided = tall[::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_allclose(denoiser.denoise(strided, albedo, normal), reference, atol=1e-5)


def test_inputs_are_not_modified(denoiser: OidnDenoiser, scene) -> None:
    _, noisy, albedo, normal = scene
    color = noisy.copy()
    color[3, 4, 0] = np.nan
    before = color.copy()
    denoiser.denoise(color, albedo, normal)
    np.testing.assert_array_equal(color, before)


def test_filters_are_reused_for_same_size_and_rebuilt_on_change(
    denoiser: OidnDenoiser, scene
) -> None:
    _, noisy, albedo, normal = scene
    denoiser.denoise(noisy, albedo, normal)
    first = denoiser._pipeline
    denoiser.denoise(_noisy(scene[0], seed=5), albedo, normal)
    assert denoiser._pipeline is first
    small = denoiser.denoise(noisy[:32, :40], albedo[:32, :40], normal[:32, :40])
    assert small.shape == (32, 40, 3)
    assert denoiser._pipeline is not first
    assert denoiser.denoise(noisy).shape == noisy.shape  # aux set changed: rebuilt again


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_pixel_stays_confined(denoiser: OidnDenoiser, scene, bad_value: float) -> None:
    clean, noisy, albedo, normal = scene
    color = noisy.copy()
    color[20, 30, 1] = bad_value
    out = denoiser.denoise(color, albedo, normal)
    bad = ~np.isfinite(out)
    assert bad.sum() == 1 and bad[20, 30, 1]
    np.testing.assert_array_equal(out[20, 30, 1], bad_value)
    assert _mse(np.nan_to_num(out, posinf=0, neginf=0), clean) < _mse(noisy, clean) / 5


def test_non_finite_aux_values_do_not_spread(denoiser: OidnDenoiser, scene) -> None:
    _, noisy, albedo, normal = scene
    albedo = albedo.copy()
    albedo[5, 5] = np.nan
    assert np.isfinite(denoiser.denoise(noisy, albedo, normal)).all()


_GOOD = np.zeros((H, W, 3), np.float32)
_WIDER = np.zeros((H, W + 1, 3), np.float32)
_SHORTER = np.zeros((H - 1, W, 3), np.float32)


@pytest.mark.parametrize(
    ("color", "albedo", "normal", "message"),
    [
        pytest.param(_GOOD, _WIDER, None, "albedo image is", id="albedo-size"),
        pytest.param(_GOOD, _GOOD, _SHORTER, "normal image is", id="normal-size"),
        pytest.param(np.zeros((H, W, 4), np.float32), None, None, "HxWx3", id="rgba-color"),
        pytest.param(np.zeros((H, W), np.float32), None, None, "HxWx3", id="grey-color"),
        pytest.param(np.zeros((0, W, 3), np.float32), None, None, "HxWx3", id="empty"),
        pytest.param(np.zeros((H, W, 3), np.uint8), None, None, "floating point", id="uint8"),
        pytest.param(_GOOD, None, _GOOD, "albedo image when a normal", id="normal-without-albedo"),
    ],
)
def test_invalid_inputs_raise(denoiser: OidnDenoiser, color, albedo, normal, message: str) -> None:
    with pytest.raises(FarmplugError, match=message):
        denoiser.denoise(color, albedo, normal)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"quality": "ultra"}, id="quality"),
        pytest.param({"device": "metal"}, id="device"),
        pytest.param({"threads": 0}, id="threads"),
    ],
)
def test_invalid_options_raise(kwargs: dict) -> None:
    with pytest.raises(FarmplugError, match="OIDN"):
        OidnOptions(**kwargs)


def test_closed_denoiser_raises_and_close_is_idempotent(scene) -> None:
    d = OidnDenoiser(OidnOptions(device="cpu"))
    d.denoise(scene[1])
    d.close()
    d.close()
    with pytest.raises(FarmplugError, match="closed"):
        d.denoise(scene[1])


def test_oidn_errors_become_farmplug_errors(denoiser: OidnDenoiser) -> None:
    import pyoidn

    broken = pyoidn.Filter(denoiser._device, "NoSuchFilter")
    try:
        with pytest.raises(FarmplugError, match="unknown filter type"):
            _check_device(denoiser._device, "creating a filter")
    finally:
        broken.release()


def test_auto_device_matches_availability() -> None:
    with OidnDenoiser(OidnOptions(device="auto")) as d:
        assert d.device_name == ("cuda" if "cuda" in available_devices() else "cpu")


def test_cuda_request_without_cuda_raises() -> None:
    if "cuda" in available_devices():
        pytest.skip("a CUDA OIDN device is present here")
    with pytest.raises(FarmplugError, match="CUDA OIDN device not available"):
        OidnDenoiser(OidnOptions(device="cuda"))


@pytest.mark.gpu
def test_cuda_denoises_like_cpu(scene) -> None:
    if "cuda" not in available_devices():
        pytest.skip("no CUDA OIDN device on this machine")
    clean, noisy, albedo, normal = scene
    with OidnDenoiser(OidnOptions(device="cuda")) as d:
        assert d.device_name == "cuda"
        out = d.denoise(noisy, albedo, normal)
    assert _mse(out, clean) < _mse(noisy, clean) / 10
