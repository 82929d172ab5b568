"""Per-pixel confidence and the frame score.

All terms are in [0, 1]; the measurements behind the formula are in ``docs/inbetween.md``::

    confidence = visibility * agreement * motion * (1 - invalid)
    visibility = seen * (o + (1 - o) * checked)
    seen       = max(tol_A, tol_B)          tol_X = 3x3 maximum of cov_X (bridges cracks)
    checked    = max(min(cov_A, cov_B), tol_A * outside_B, tol_B * outside_A)
    agreement  = 1 - min(cov_A, cov_B) * (1 - exp(-(d / 0.1) ** 2)),  d = mean |tm(pred_A) - tm(pred_B)|
    motion     = clip(2 - step_motion_px / max_motion_px, 0, 1)

with ``cov_X`` one side's coverage of its own front surface, ``outside_X`` whether the pixel,
moved along its velocity, lies outside keyframe X's frame (one-sided for that reason is as safe
as two-sided), ``o`` the confidence of a pixel seen by one side only because the other side's
view of it is occluded (``settings.one_sided_confidence``, or ``guided_one_sided_confidence``
where the guide's depth confirms the surface), ``tm`` the Reinhard curve ``x / (1 + x)`` and
``invalid`` the share of non-finite source pixels that would have landed there. Guided mode and
the static appearance replace visibility, agreement and difference where they apply.

The frame **score** is ``1 -`` the largest mean of ``1 - confidence`` over square windows
``score_window`` x the shorter image side wide: one compact bad region fails a frame however
good the rest is.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.inbetween.interpolate.keys import Batch, Sides
from farmplug.inbetween.interpolate.types import InterpolationSettings

_AGREEMENT_SCALE = 0.1  # tone-mapped colour difference that drops agreement to exp(-1)
# A side covers a pixel fully from a splat weight of 1 / _FULL_COVERAGE: samples of one surface
# at slightly different depths (a floor at a grazing angle) weigh less than 1 in the soft
# z-buffer, and a magnified surface's bilinear footprints sum to less than 1 between samples.
_FULL_COVERAGE = 2.0


class Coverage(NamedTuple):
    """One side's coverage of its own front surface (T,1,H,W), see :func:`side_coverage`."""

    raw: torch.Tensor
    tolerant: torch.Tensor  # the best of each 3x3 window


class Terms(NamedTuple):
    """The per-pixel confidence terms (T,1,H,W) that the steps after the splat refine.

    Attributes:
        visibility: How well the pixel is seen, and checked by a second view.
        agreement: How well the predictions of the pixel agree.
        difference: Their tone-mapped difference, for the ``disagreement`` statistic.
        coverage: Each side's splat coverage.
    """

    visibility: torch.Tensor
    agreement: torch.Tensor
    difference: torch.Tensor
    coverage: Sides[Coverage]


def _tonemap(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.clamp_min(0)
    return rgb / (1 + rgb)


def tone_difference(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """Mean tone-mapped absolute RGB difference, (T,C,H,W) -> (T,1,H,W)."""
    return (_tonemap(c1[:, :3]) - _tonemap(c2[:, :3])).abs().mean(dim=1, keepdim=True)


def agreement_term(difference: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
    """Agreement of two predictions ``difference`` apart, counted as far as ``both`` sides see the pixel."""
    return 1 - both * (1 - torch.exp(-((difference / _AGREEMENT_SCALE) ** 2)))


def visibility_term(seen: torch.Tensor, both: torch.Tensor, one_sided: float) -> torch.Tensor:
    """``seen`` (by at least one side, crack-tolerant) scaled from ``one_sided`` up to 1 by ``both``."""
    return seen * (one_sided + (1 - one_sided) * both)


def side_coverage(weight: torch.Tensor) -> Coverage:
    """One side's coverage (T,1,H,W) from its front-surface splat weight: raw, and crack-tolerant.

    A magnified surface (camera dolly, object coming closer) spreads its source pixels apart,
    so its bilinear splat weighs less than 1 between them or leaves 1-px cracks; push-pull fills
    those from the surface around them. The tolerant coverage counts such pixels as seen.
    """
    raw = (weight * _FULL_COVERAGE).clamp(0, 1)
    return Coverage(raw, F.max_pool2d(raw, 3, stride=1, padding=1))


def _outside_other(velocity: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Whether each target pixel, moved along its velocity (T,2,H,W), lies outside keyframe A's
    frame (``scale_a`` frames back) and outside keyframe B's frame (``scale_b`` frames on)."""
    h, w = velocity.shape[-2:]
    device = velocity.device
    xs = torch.arange(w, device=device, dtype=torch.float32)[None, None, None, :]
    ys = torch.arange(h, device=device, dtype=torch.float32)[None, None, :, None]
    vx, vy = velocity[:, 0:1], velocity[:, 1:2]
    result = []
    for scale in (-scale_a, scale_b):
        k = scale[:, None, None, None]
        x, y = xs + k * vx, ys + k * vy
        result.append(((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)).float())
    return result[0], result[1]


def splat_terms(
    predictions: Sides[torch.Tensor], coverage: Sides[Coverage], velocity: torch.Tensor, batch: Batch, one_sided: float
) -> Terms:
    """The confidence terms of the fused splat, from each side's colour prediction and coverage.

    ``velocity`` (T,2,H,W) is the fused one; ``one_sided`` the visibility of a pixel one side sees.
    """
    (cov_a, tol_a), (cov_b, tol_b) = coverage
    both = torch.minimum(cov_a, cov_b)
    difference = tone_difference(*predictions)
    agreement = agreement_term(difference, both)
    # A pixel seen by one side because it is outside the other keyframe's frame (a pan
    # bringing new content in) is as safe as a two-sided one; one occluded in the other is not.
    outside_a, outside_b = _outside_other(velocity, batch.scale_a, batch.scale_b)
    checked = torch.maximum(both, torch.maximum(tol_a * outside_b, tol_b * outside_a))
    visibility = visibility_term(torch.maximum(tol_a, tol_b), checked, one_sided)
    return Terms(visibility=visibility, agreement=agreement, difference=difference, coverage=coverage)


def pixel_confidence(
    terms: Terms, step_motion: torch.Tensor, invalid: torch.Tensor, settings: InterpolationSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel confidence (T,1,H,W) and the frame scores (T,).

    ``step_motion`` (T,1,H,W) is the motion over the keyframe step in pixels, ``invalid`` the
    share of non-finite source pixels that would have landed at each pixel.
    """
    motion = (2 - step_motion / settings.max_motion_px).clamp(0, 1)
    confidence = (terms.visibility * terms.agreement * motion * (1 - invalid)).clamp(0, 1)
    confidence = torch.where(torch.isfinite(confidence), confidence, 0.0)
    return confidence, _frame_score(confidence, settings.score_window)


def window_pixels(share: float, h: int, w: int) -> int:
    """An odd window size (at least 3) that is ``share`` of the shorter image side."""
    return max(3, 2 * round(share * min(h, w) / 2) + 1)


def _box_max(image: torch.Tensor, size: int) -> torch.Tensor:
    """Per image of (T,1,H,W), the largest mean over ``size`` x ``size`` windows (windows are
    placed every ``size // 4`` pixels: a separable, strided box filter, cheap at 4K)."""
    h, w = image.shape[-2:]
    ky, kx = min(size, h), min(size, w)
    sy, sx = max(1, ky // 4), max(1, kx // 4)
    rows = F.avg_pool2d(image, (1, kx), stride=(1, sx))
    return F.avg_pool2d(rows, (ky, 1), stride=(sy, 1)).amax(dim=(1, 2, 3))


def _frame_score(confidence: torch.Tensor, window: float) -> torch.Tensor:
    """1 - the worst local risk, per target of (T,1,H,W): ``risk = 1 - confidence`` averaged over
    square windows ``window`` x the shorter side wide, and the worst window counts. One compact
    bad region fails the frame however good the rest is; isolated noisy pixels average out, but
    dense thin lines (edges jittering under a dolly) add up."""
    size = window_pixels(window, *confidence.shape[-2:])
    return (1 - _box_max(1 - confidence, size)).clamp(0, 1)
