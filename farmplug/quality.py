"""Image quality of a cheap render (few samples + denoise) against a full-sample reference.

All inputs are HxWx3 linear HDR float images (scene-referred, as Cycles writes them).

Metrics:
    * HDR-FLIP (NVIDIA's perceptual error, via ``flip_evaluator``): mean and 95th percentile of
      the per-pixel error map; 0 is identical, 1 the largest error.
    * PSNR and SSIM on :func:`tonemap`-ped values, so that bright highlights do not dominate
      and the numbers read like the familiar display-referred ones.

Temporal instability (flicker), over a sequence of consecutive frames:
    * :func:`temporal_instability`: for each pair of consecutive frames, the mean over pixels of
      ``|Δresult − Δreference|`` on :func:`tonemap`-ped values (``Δ`` is frame ``t`` minus frame
      ``t − 1``): how much more (or differently) the result changes from frame to frame than the
      reference does. A stable error that moves with the image scores 0; noise or a denoiser's
      blotches that change every frame score their frame-to-frame change. With the renderer's
      Vector passes (``motion``), frame ``t − 1`` is first reprojected to ``t`` along them, so an
      error that sticks to a moving surface does not count as flicker either.

Policy for bad values:
    * A non-finite value in the *reference* is an error (a broken reference cannot be scored).
    * A non-finite value in the *test* image (a NaN/Inf firefly) counts as the maximal error at
      that pixel: FLIP error 1 there, and for PSNR/SSIM the tone-mapped test pixel is set to the
      display value farthest from the reference (0 or 1 per channel). The metrics stay defined
      and clearly worse, so one bad pixel is visible in the report without crashing a batch.
    * Negative values (possible in denoised or filtered HDR images) are clamped to 0, since
      HDR-FLIP and the tone mapping are defined for non-negative radiance.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, overload

import numpy as np

from farmplug.errors import FarmplugError

__all__ = [
    "PSNR_CAP_DB",
    "QualityResult",
    "TemporalScore",
    "flip_hdr",
    "measure",
    "psnr_tonemapped",
    "ssim_tonemapped",
    "temporal_instability",
    "tonemap",
]

logger = logging.getLogger(__name__)

PSNR_CAP_DB = 100.0
"""PSNR reported for identical images (and the ceiling for nearly identical ones)."""

_SSIM_MAX_WINDOW = 7  # scikit-image's default uniform window


@dataclass(frozen=True)
class QualityResult:
    """Quality of one test frame against its reference.

    Attributes:
        flip_mean: Mean HDR-FLIP error (0 = identical; lower is better).
        flip_p95: 95th percentile of the per-pixel HDR-FLIP error.
        psnr: PSNR in dB of the tone-mapped images, capped at :data:`PSNR_CAP_DB`.
        ssim: Mean SSIM of the tone-mapped RGB images (1 = identical).
    """

    flip_mean: float
    flip_p95: float
    psnr: float
    ssim: float

    def as_dict(self) -> dict[str, float]:
        """Return the metrics as a plain ``{name: value}`` dict (JSON-ready)."""
        return {key: float(value) for key, value in asdict(self).items()}


def tonemap(rgb: np.ndarray) -> np.ndarray:
    """Map linear HDR RGB to display values in [0, 1].

    Per channel: negatives and NaN clamp to 0, then Reinhard ``x / (1 + x)`` at exposure 1
    (scene value 1.0 maps to 0.5, +Inf to 1), then the sRGB OETF (IEC 61966-2-1: ``12.92 v``
    below 0.0031308, else ``1.055 v^(1/2.4) - 0.055``). The exposure is fixed rather than
    normalised per image, so the reference and the test go through the same curve and an
    overall brightness error is measured, not hidden. Used for PSNR, SSIM and thumbnails.

    Args:
        rgb: Array of linear values, any shape (usually HxWx3).

    Returns:
        float32 array of the same shape with values in [0, 1].
    """
    linear = np.nan_to_num(np.asarray(rgb, dtype=np.float32), nan=0.0, posinf=np.inf, neginf=0.0)
    linear = np.maximum(linear, 0.0)
    with np.errstate(invalid="ignore"):
        compressed = np.where(np.isinf(linear), np.float32(1.0), linear / (1.0 + linear))
    encoded = np.where(
        compressed <= 0.0031308,
        12.92 * compressed,
        1.055 * np.power(compressed, 1.0 / 2.4) - 0.055,
    )
    return np.clip(encoded, 0.0, 1.0).astype(np.float32)


def _check_pair(
    reference: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a reference/test pair.

    Returns:
        ``(reference, test, bad)``: float32 C-contiguous copies and the HxW mask of test
        pixels holding a non-finite value in any channel.

    Raises:
        FarmplugError: If the arrays are not HxWx3 of the same size or the reference holds
            non-finite values.
    """
    ref = np.asarray(reference)
    tst = np.asarray(test)
    for name, image in (("reference", ref), ("test", tst)):
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise FarmplugError(f"quality: {name} image must have shape HxWx3, not {image.shape}")
        if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
            raise FarmplugError(f"quality: {name} image must be numeric, not {image.dtype}")
    if ref.shape != tst.shape:
        raise FarmplugError(
            f"quality: test image is {tst.shape[1]}x{tst.shape[0]}x{tst.shape[2]} but the "
            f"reference is {ref.shape[1]}x{ref.shape[0]}x{ref.shape[2]}"
        )
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    tst = np.ascontiguousarray(tst, dtype=np.float32)
    bad_ref = int(np.count_nonzero(~np.isfinite(ref)))
    if bad_ref:
        raise FarmplugError(f"quality: reference image has {bad_ref} non-finite values")
    bad = ~np.isfinite(tst).all(axis=-1)
    if bad.any():
        logger.warning(
            "quality: test image has %d pixels with non-finite values; scored as maximal error",
            int(bad.sum()),
        )
    return ref, tst, bad


def _flip(ref: np.ndarray, tst: np.ndarray, bad: np.ndarray) -> np.ndarray:
    import flip_evaluator

    ref = np.maximum(ref, 0.0)
    tst = np.where(bad[..., None], np.float32(0.0), np.maximum(tst, 0.0))
    # FLIP's Python wrapper prints (and exits) only on bad arguments, which are fixed here;
    # the redirect keeps any chatter out of worker logs that scripts parse.
    with contextlib.redirect_stdout(io.StringIO()):
        error_map, _mean, _params = flip_evaluator.evaluate(
            np.ascontiguousarray(ref), np.ascontiguousarray(tst), "HDR", applyMagma=False
        )
    error = np.asarray(error_map, dtype=np.float32).reshape(ref.shape[:2])
    error[bad] = 1.0
    return error


def flip_hdr(reference: np.ndarray, test: np.ndarray) -> tuple[float, float, np.ndarray]:
    """HDR-FLIP error of ``test`` against ``reference``.

    Uses ``flip_evaluator.evaluate(..., "HDR")`` with its defaults (67 pixels per degree, ACES
    tone mapper, exposure range computed from the reference).

    Args:
        reference: HxWx3 linear HDR reference.
        test: HxWx3 linear HDR image to score.

    Returns:
        ``(mean, p95, error_map)``: the mean and 95th percentile of the per-pixel error and
        the HxW float32 error map itself (values in [0, 1]).

    Raises:
        FarmplugError: If the shapes differ or are not HxWx3, or the reference is not finite.
    """
    ref, tst, bad = _check_pair(reference, test)
    error = _flip(ref, tst, bad)
    return float(error.mean()), float(np.percentile(error, 95)), error


def _tonemapped_pair(
    ref: np.ndarray, tst: np.ndarray, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    ref_tm = tonemap(ref)
    tst_tm = tonemap(tst)
    if bad.any():
        farthest = np.where(ref_tm < 0.5, np.float32(1.0), np.float32(0.0))
        tst_tm[bad] = farthest[bad]
    return ref_tm, tst_tm


def _psnr(ref_tm: np.ndarray, tst_tm: np.ndarray) -> float:
    mse = float(np.mean((ref_tm.astype(np.float64) - tst_tm.astype(np.float64)) ** 2))
    if mse <= 0.0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / mse))


def _ssim(ref_tm: np.ndarray, tst_tm: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    smallest = min(ref_tm.shape[0], ref_tm.shape[1])
    win_size = min(_SSIM_MAX_WINDOW, smallest if smallest % 2 else smallest - 1)
    if win_size < 3:
        raise FarmplugError(
            f"quality: SSIM needs images of at least 3x3 pixels, not "
            f"{ref_tm.shape[1]}x{ref_tm.shape[0]}"
        )
    return float(
        structural_similarity(
            ref_tm, tst_tm, channel_axis=-1, data_range=1.0, win_size=win_size
        )
    )


def psnr_tonemapped(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of the :func:`tonemap`-ped images (peak 1.0, MSE over all channels).

    Args:
        reference: HxWx3 linear HDR reference.
        test: HxWx3 linear HDR image to score.

    Returns:
        PSNR in dB, at most :data:`PSNR_CAP_DB` (identical images give exactly the cap).

    Raises:
        FarmplugError: If the shapes differ or are not HxWx3, or the reference is not finite.
    """
    ref, tst, bad = _check_pair(reference, test)
    return _psnr(*_tonemapped_pair(ref, tst, bad))


def ssim_tonemapped(reference: np.ndarray, test: np.ndarray) -> float:
    """Mean SSIM of the :func:`tonemap`-ped RGB images.

    scikit-image ``structural_similarity`` with ``channel_axis=-1``, ``data_range=1.0`` and a
    uniform 7x7 window, shrunk to the largest odd size that fits images smaller than 7 px.

    Args:
        reference: HxWx3 linear HDR reference.
        test: HxWx3 linear HDR image to score.

    Returns:
        SSIM in [-1, 1]; 1 for identical images.

    Raises:
        FarmplugError: If the shapes differ or are not HxWx3, the reference is not finite,
            or the images are smaller than 3x3 pixels.
    """
    ref, tst, bad = _check_pair(reference, test)
    return _ssim(*_tonemapped_pair(ref, tst, bad))


@overload
def measure(
    reference: np.ndarray, test: np.ndarray, *, error_map: Literal[False] = False
) -> QualityResult: ...


@overload
def measure(
    reference: np.ndarray, test: np.ndarray, *, error_map: Literal[True]
) -> tuple[QualityResult, np.ndarray]: ...


def measure(
    reference: np.ndarray, test: np.ndarray, *, error_map: bool = False
) -> QualityResult | tuple[QualityResult, np.ndarray]:
    """Compute every metric of ``test`` against ``reference`` in one pass.

    Args:
        reference: HxWx3 linear HDR reference (full-sample render).
        test: HxWx3 linear HDR image to score (cheap render, denoised).
        error_map: Also return the HxW HDR-FLIP error map (for heat-map thumbnails).

    Returns:
        The :class:`QualityResult`, or ``(result, flip_error_map)`` when ``error_map`` is True.

    Raises:
        FarmplugError: If the shapes differ or are not HxWx3, the reference is not finite,
            or the images are smaller than 3x3 pixels.
    """
    ref, tst, bad = _check_pair(reference, test)
    flip_map = _flip(ref, tst, bad)
    ref_tm, tst_tm = _tonemapped_pair(ref, tst, bad)
    result = QualityResult(
        flip_mean=float(flip_map.mean()),
        flip_p95=float(np.percentile(flip_map, 95)),
        psnr=_psnr(ref_tm, tst_tm),
        ssim=_ssim(ref_tm, tst_tm),
    )
    if error_map:
        return result, flip_map
    return result


@dataclass(frozen=True)
class TemporalScore:
    """Temporal instability of a sequence of results against their references.

    Attributes:
        pairs: One value per pair of consecutive frames ``(t - 1, t)``, in order: the mean over
            the pixels (and colour channels) of ``|Δresult − Δreference|`` in tone-mapped display
            values, so 0 is as stable as the reference and 0.01 means the result changes by one
            percent of the display range more than the reference does, on average.
        mean: The mean of ``pairs``.
        warped: Whether frame ``t - 1`` was reprojected to ``t`` along the Vector pass first
            (only the pixels whose reprojection stays inside the frame count).
        result_change: The mean over pairs of the mean ``|Δresult|``: how much the result itself
            changes from frame to frame.
        reference_change: The same for the references. Their own noise changes every frame too,
            so a score near this value means the references are too noisy to tell more.
    """

    pairs: tuple[float, ...]
    mean: float
    warped: bool
    result_change: float = 0.0
    reference_change: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """The score as plain JSON-ready values."""
        return {"pairs": [float(p) for p in self.pairs], "mean": float(self.mean), "warped": self.warped,
                "result_change": float(self.result_change), "reference_change": float(self.reference_change)}


def _tonemapped_frames(name: str, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    for index, frame in enumerate(frames):
        image = np.asarray(frame)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
            raise FarmplugError(f"temporal instability: {name} frame {index} must have shape HxWx3, not {image.shape}")
        if out and image.shape != out[0].shape:
            raise FarmplugError(
                f"temporal instability: {name} frame {index} is {image.shape[1]}x{image.shape[0]} but frame 0 is "
                f"{out[0].shape[1]}x{out[0].shape[0]}"
            )
        out.append(tonemap(image))
    return out


def temporal_instability(
    results: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    *,
    motion: Sequence[np.ndarray] | None = None,
) -> TemporalScore:
    """How much a sequence of results flickers beyond its references (lower is better; 0 is as stable).

    For each pair of consecutive frames ``(t - 1, t)``: ``Δ = tonemap(frame_t) - tonemap(frame_t-1)``
    for the results and for the references, and the pair's score is the mean over pixels and
    channels of ``|Δresult - Δreference|``. The tone mapping is :func:`tonemap`'s, as for PSNR.

    With ``motion`` (the Vector pass of each frame, ``HxWx4`` as
    :func:`farmplug.imageio.read_frame` gives ``feature("motion")``), frame ``t - 1`` of both
    sequences is first reprojected to ``t`` along frame ``t``'s vectors to the previous frame
    (:func:`farmplug.motion.backward_warp`, bilinear): the difference is then taken on the same
    surface point rather than the same pixel, so camera and object motion do not count, only
    change. Pixels whose reprojection falls outside the frame are left out.

    Args:
        results: The frames to score, in frame order (HxWx3 linear HDR).
        references: The reference frames, the same count and size.
        motion: Optional Vector pass of every frame (``motion[0]`` is not read).

    Returns:
        The :class:`TemporalScore` (no pairs and a mean of 0 for fewer than two frames).

    Raises:
        FarmplugError: the counts or sizes differ, a frame is not HxWx3 (the motion HxWx4), or a
            reference is not finite.
    """
    if len(results) != len(references):
        raise FarmplugError(f"temporal instability: {len(results)} results but {len(references)} references")
    if motion is not None and len(motion) != len(results):
        raise FarmplugError(f"temporal instability: {len(results)} frames but {len(motion)} Vector passes")
    for index, reference in enumerate(references):
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(reference, dtype=np.float32))))
        if bad:
            raise FarmplugError(f"temporal instability: reference frame {index} has {bad} non-finite values")
    res = _tonemapped_frames("result", results)
    ref = _tonemapped_frames("reference", references)
    if res and ref and res[0].shape != ref[0].shape:
        raise FarmplugError(
            f"temporal instability: results are {res[0].shape[1]}x{res[0].shape[0]} but references are "
            f"{ref[0].shape[1]}x{ref[0].shape[0]}"
        )
    pairs, result_change, reference_change = [], [], []
    for t in range(1, len(res)):
        res_prev, ref_prev = res[t - 1], ref[t - 1]
        keep = None
        if motion is not None:
            from farmplug.motion import backward_warp, split_blender_vectors

            vectors = np.asarray(motion[t], dtype=np.float32)
            if vectors.shape != res[t].shape[:2] + (4,):
                raise FarmplugError(
                    f"temporal instability: the Vector pass of frame {t} must be {res[t].shape[1]}x{res[t].shape[0]}x4, "
                    f"not shape {vectors.shape}"
                )
            to_prev, _ = split_blender_vectors(vectors)
            both, keep = backward_warp(np.concatenate([res_prev, ref_prev], axis=-1), to_prev)
            res_prev, ref_prev = both[..., :3], both[..., 3:]
        d_res, d_ref = res[t] - res_prev, ref[t] - ref_prev
        if keep is None:
            keep = np.ones(d_res.shape[:2], dtype=bool)
        for values, into in ((d_res - d_ref, pairs), (d_res, result_change), (d_ref, reference_change)):
            into.append(float(np.abs(values).mean(axis=-1, dtype=np.float64)[keep].mean()) if keep.any() else 0.0)
    return TemporalScore(
        pairs=tuple(pairs), mean=float(np.mean(pairs)) if pairs else 0.0, warped=motion is not None,
        result_change=float(np.mean(result_change)) if pairs else 0.0,
        reference_change=float(np.mean(reference_change)) if pairs else 0.0,
    )
