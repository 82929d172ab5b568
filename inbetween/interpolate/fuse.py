"""Steps 2 and 3: each side's splat sharpened by resampling its keyframe, then both fused in time.

The splat also carries each side's own motion to every target pixel, so each side's keyframe is
resampled (``settings.resample``) where the target pixel's surface was, which undoes the bilinear
splat's half-pixel blur (same-surface depth check; depth and velocity stay with the splat). Each
side is then normalised by its own splat weight and the two are mixed with ``(1 - s) * weight_A``
and ``s * weight_B`` (``s = (t - a) / (b - a)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from farmplug.inbetween.interpolate.keys import Batch, KeyPair, Plan, Sides
from farmplug.inbetween.interpolate.sampler import Resampler, gather
from farmplug.inbetween.interpolate.splat import COVER_DEPTH, HOLE, DepthParts, SideSplat, Splats, select_depth
from farmplug.inbetween.interpolate.types import InterpolationSettings

# A resampled side replaces the other side's plain splat where its own splat weight is above this
# (a real footprint, not a neighbour's grazing corner).
_SHARP_COVER = 0.25
_REFINE_TOLERANCE = 0.1  # pixels: a refined displacement must be this stable (_refine_displacement)


@dataclass(frozen=True)
class Fusion:
    """The targets' packed features, fused from both sides.

    Attributes:
        fused: (T,F,H,W) features (the later steps refine them in place, and fill the holes).
        total: (T,1,H,W) the fused splat weight.
        covered: (T,1,H,W) whether any weight arrived (not a hole).
        accel: On eased paths, half the surface's per-frame change of velocity (T,2,H,W, see
            :func:`resample_side`); None at constant velocity.
    """

    fused: torch.Tensor
    total: torch.Tensor
    covered: torch.Tensor
    accel: torch.Tensor | None


class Resampled(NamedTuple):
    """What :func:`resample_side` did at each target pixel."""

    use: torch.Tensor  # (T,1,H,W) how much of the pixel was resampled, 0-1
    accel: torch.Tensor | None  # (T,2,H,W) half the per-frame change of velocity; None at constant velocity


def fuse(
    pair: KeyPair, splats: Splats, batch: Batch, settings: InterpolationSettings
) -> tuple[Fusion, Sides[torch.Tensor]]:
    """Resample each side (unless ``settings.resample`` is ``splat``) and fuse the two in time.

    Returns:
        The fusion, and each side's own colour prediction (T,C,H,W) for their agreement.
    """
    plan = pair.plan
    side_a, side_b = splats.sides
    acc_a, acc_b = side_a.acc, side_b.acc
    wa, wb = side_a.weight, side_b.weight
    tw_a, tw_b = batch.time_weights()
    mix_a, mix_b = tw_a, tw_b
    accel = accel_a = accel_b = None
    if settings.resample != "splat":
        backs = (-batch.scale_a, batch.scale_b)
        (use_a, accel_a), (use_b, accel_b) = (
            resample_side(resampler, side, back, plan, settings)
            for resampler, side, back in zip(pair.resamplers, splats.sides, backs, strict=True)
        )
        # A side that could not be resampled at a pixel (its sampling point lies outside its
        # frame, or on another surface) is only a bilinear splat there: half a pixel soft, and
        # at a frame border it is the border row pushed in, a fraction of a pixel off. Where
        # the other side was resampled over a real footprint, it drops out of the mix.
        # (Each side's own prediction, for the agreement, keeps it.)
        mix_a = tw_a * (1 - (1 - use_a) * use_b * (wb > _SHARP_COVER))
        mix_b = tw_b * (1 - (1 - use_b) * use_a * (wa > _SHARP_COVER))
    # Each side normalised by its own weight, then mixed by (1 - s) * w_A and s * w_B.
    total = mix_a * wa + mix_b * wb
    fused = (acc_a * mix_a).add_(acc_b * mix_b).div_(total.clamp_min(1e-8))
    if accel_a is not None and accel_b is not None:
        accel = (accel_a * (mix_a * wa)).add_(accel_b * (mix_b * wb)).div_(total.clamp_min(1e-8))
    if splats.leak is not None:
        # Depth across both sides: the surface covering most of the pixel (splat.select_depth).
        parts = DepthParts(
            *(pa * tw_a + pb * tw_b for pa, pb in zip(side_a.depth_parts, side_b.depth_parts, strict=True))
        )
        fused[:, plan.depth_rows] = select_depth(parts, splats.leak)
    predictions = Sides(acc_a[:, plan.color] / wa.clamp_min(1e-8), acc_b[:, plan.color] / wb.clamp_min(1e-8))
    return Fusion(fused=fused, total=total, covered=total > HOLE, accel=accel), predictions


def resample_side(
    resampler: Resampler, side: SideSplat, back: torch.Tensor, plan: Plan, settings: InterpolationSettings
) -> Resampled:
    """Sharpen one side's splat in place: resample its keyframe where the splat says it came from.

    A bilinear splat is a bilinear resampling, twice over where footprints overlap: edges and
    texture lose about half a pixel of sharpness. The splat also carries the side's own motion
    to every target pixel (forward-splatting the vectors reverses them), so each target pixel
    knows where in the keyframe its surface was: ``p + back * velocity`` (``back``: (T,) frames
    from the target to the keyframe, negative for A). The keyframe is sampled there
    (:class:`~farmplug.inbetween.interpolate.sampler.Resampler`) and the result replaces
    ``side.acc``'s colour and blended layers wherever the keyframe's depth there matches the
    splat's depth (the same surface, not one that covers it there) and every source pixel under
    the kernel is finite.

    Returns:
        How much of each target pixel was resampled, and, on eased paths, half the surface's
        per-frame change of velocity there (``to_next`` is the velocity plus it, ``to_prev``
        minus the velocity minus it).
    """
    acc, wsum = side.acc, side.weight
    normalised = acc / wsum.clamp_min(1e-8)
    velocity = normalised[:, plan.velocity]
    disp = (velocity * back[:, None, None, None]).permute(0, 2, 3, 1)
    disp = _refine_displacement(resampler, disp, back)
    channels = resampler.channels
    sampled, probe, inside = resampler.sample(disp)
    z_side = normalised[:, plan.depth : plan.depth + 1]
    tolerance = COVER_DEPTH * settings.depth_softness
    same = torch.exp(-(probe[:, :1] - z_side).abs() / (tolerance * z_side.clamp_min(1e-6)))
    use = same * (probe[:, 3:4] < 1e-3) * inside * (wsum > HOLE)
    current = normalised[:, channels]
    acc[:, channels] = (current + use * (sampled - current)) * wsum
    if probe.shape[1] == 4:
        return Resampled(use, None)
    # On an eased path the surface's velocity at the target is not the keyframe's: over the two
    # frames around it, v + (2k - 1) * a, k frames from the keyframe, with v and a as the probe
    # holds them (forward in time; paths.path_acceleration). The one-frame steps either side of
    # the target differ from that by the path's c, which is a for A and -a for B (its path runs
    # backwards in time, and a second difference keeps its sign).
    k = back.abs()[:, None, None, None]
    current = normalised[:, plan.velocity]
    moving = probe[:, 1:3] + (2 * k - 1) * probe[:, 4:6]
    acc[:, plan.velocity] = (current + use * (moving - current)) * wsum
    return Resampled(use, use * probe[:, 4:6] * -back.sign()[:, None, None, None])


def _refine_displacement(resampler: Resampler, disp: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
    """Where each target pixel's surface was in the keyframe, from the keyframe's own vectors.

    The splat's velocity at a target pixel is a soft-z-weighted mean, so where another surface
    lands close behind (a floor at an object's foot, the background at a silhouette) it is pulled
    towards that surface's motion, and a textured object is then sampled a pixel or more off.
    Each pixel's displacement is re-derived from the keyframe's vector at the point it leads to
    (one fixed-point step, ``d1 = back * v(p + d0)``) and kept where a second step moves it by
    less than ``_REFINE_TOLERANCE`` pixels: the point is on a surface that moves that way. Elsewhere
    (the point is at a motion boundary) the splat's displacement stays.
    """
    scale = back[:, None, None, None]
    frames = scale.abs() - 1  # with an acceleration, the velocity over k frames is v + (k - 1) * a

    def along(probe: torch.Tensor) -> torch.Tensor:
        velocity = probe[:, 1:3] if probe.shape[1] == 4 else probe[:, 1:3] + frames * probe[:, 4:6]
        return (velocity * scale).permute(0, 2, 3, 1)

    probe, _ = gather(resampler.probe, disp, "bilinear")
    refined = along(probe)
    probe, _ = gather(resampler.probe, refined, "bilinear")
    again = along(probe)
    step = again - refined
    converged = (step[..., :1].square() + step[..., 1:].square()) < _REFINE_TOLERANCE**2
    return torch.where(converged, refined, disp)
