"""Step 1: forward splat of both keyframes into every target, through one soft z-buffer.

Keyframe A is splatted to each target ``t`` along ``(t - a) * A.to_next`` and keyframe B along
``(b - t) * B.to_prev`` (or along their eased paths, :mod:`~farmplug.inbetween.interpolate.paths`).
Every source pixel lands bilinearly on four target pixels (``index_add_``). Overlaps are
resolved by a soft z-buffer over both keyframes together: ``zmin`` per target pixel is the
nearest depth any contribution brings (``scatter_reduce(amin)``), and each contribution is
weighted by ``exp(-(z - zmin) / (depth_softness * zmin))``, so a background pixel never mixes
into a foreground one (no ghosts) while samples of the same surface blend smoothly. With partial
coverage, the surfaces behind show through where the nearest surface's footprints cover only
part of a pixel (:func:`_leak`). Id layers take the single highest-scoring contributor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from farmplug.inbetween.interpolate.keys import Batch, Plan, Sides, Source
from farmplug.inbetween.interpolate.types import InterpolationSettings

_EPS = 1e-4  # bilinear weights below this do not count as a contribution
HOLE = 1e-3  # total splat weight below this is a hole
COVER_DEPTH = 2.0  # samples within this many depth_softness of the nearest are front surface
# One side's nearest surface this far (relative) behind the other side's is hidden by it.
_HIDDEN_DEPTH = 0.3


@dataclass(frozen=True)
class Corner:
    """One of the four bilinear corners of every source pixel's footprint."""

    index: torch.Tensor  # T*HW padded target index
    weight: torch.Tensor  # T*HW bilinear weight (0 for masked-out sources)


def corners(source: Source, scale: torch.Tensor, h: int, w: int, *, use_valid: bool = True) -> list[Corner]:
    """Bilinear footprints of every source pixel moved by ``scale[t] * splat_vector`` (plus
    ``scale[t] * (scale[t] - 1) * accel`` where the source has an acceleration): of the valid
    source pixels, or with ``use_valid=False`` of the invalid ones.

    Targets are padded by a border ring (see :func:`padded`): positions are clamped into
    ``[-1, w] x [-1, h]`` first, so every footprint lies in the padded frame and anything
    outside the real frame lands, whole, in the ring that is cropped away. That needs no
    per-corner bounds test.
    """
    device = source.depth.device
    hw, wp = h * w, w + 3
    t = scale.shape[0]
    x = torch.arange(w, device=device, dtype=torch.float32).repeat(h)
    y = torch.arange(h, device=device, dtype=torch.float32).repeat_interleave(w)
    vector = source.splat_vector
    if t == 1:
        if source.accel is not None:
            vector = torch.addcmul(vector, source.accel, scale[0] - 1)
        x = torch.addcmul(x, vector[:, 0], scale[0])
        y = torch.addcmul(y, vector[:, 1], scale[0])
    else:
        k = scale[:, None, None]
        moved = k * vector[None] if source.accel is None else k * (vector[None] + (k - 1) * source.accel[None])
        x = (x[None, :] + moved[..., 0]).reshape(-1)
        y = (y[None, :] + moved[..., 1]).reshape(-1)
    x, y = x.clamp_(-1, w), y.clamp_(-1, h)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x.sub_(x0), y.sub_(y0)
    mask = (source.valid if use_valid else ~source.valid).float()
    if t > 1:
        mask = mask.repeat(t)
    base = (y0 + 1).mul_(wp).add_(x0 + 1).long()
    if t > 1:
        base += (torch.arange(t, device=device) * ((h + 3) * wp)).repeat_interleave(hw)
    gx, gy = 1 - fx, (1 - fy).mul_(mask)
    fy = fy.mul_(mask)
    return [
        Corner(index=base, weight=gx * gy),
        Corner(index=base + 1, weight=fx * gy),
        Corner(index=base + wp, weight=gx * fy),
        Corner(index=base + (wp + 1), weight=fx * fy),
    ]


def padded(t: int, h: int, w: int) -> int:
    """Pixels of ``t`` targets with a border ring (1 px left and top, 2 px right and bottom,
    where a footprint starting at the clamped ``w`` or ``h`` ends; see :func:`corners`)."""
    return t * (h + 3) * (w + 3)


def crop(flat: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Channel-major padded targets (C x T*(H+3)*(W+3)) -> T x C x H x W, ring cropped."""
    c = flat.shape[0]
    return flat.view(c, t, h + 3, w + 3)[:, :, 1 : h + 1, 1 : w + 1].permute(1, 0, 2, 3).contiguous()


class DepthParts(NamedTuple):
    """With partial coverage, the depth rows' sums over the nearest surface (plain soft z-buffer
    weights) and over what shows through behind it, with their weights (see :func:`select_depth`).
    Rows x pixels, any layout with pixels last."""

    front: torch.Tensor
    front_weight: torch.Tensor
    behind: torch.Tensor
    behind_weight: torch.Tensor


@dataclass(frozen=True)
class _Splat:
    """One keyframe's splat into the padded targets."""

    acc: torch.Tensor  # F x P weighted feature sums (P: padded target pixels, see padded)
    wsum: torch.Tensor  # P soft-z weight sums
    cover: torch.Tensor  # P bilinear weight sums of front-surface samples
    scores: list[torch.Tensor]  # per corner, contribution score (for id selection)
    depth_parts: DepthParts | None = None


def _splat_pair(
    sources: Sides[Source], footprints: Sides[list[Corner]], batch: Batch, plan: Plan, settings: InterpolationSettings
) -> tuple[Sides[_Splat], torch.Tensor | None]:
    """Soft z-buffered splat of both keyframes against one shared nearest depth.

    With ``settings.partial_coverage``, surfaces behind the nearest one show through the part of
    the pixel it does not cover (:func:`_leak`, returned as well; else None). Depths
    (``plan.depth_rows`` of the features) are never mixed across that: see :func:`select_depth`.
    Contribution scores for the id selection are kept where the plan has id layers.
    """
    device = sources[0].features.device
    t = batch.count
    n = padded(t, batch.h, batch.w)
    softness = settings.depth_softness
    keep_scores = bool(plan.ids)
    depth_rows = plan.depth_rows
    time_weights = (1 - batch.s, batch.s)
    depths = [source.depth.repeat(t) if t > 1 else source.depth for source in sources]
    side_zmin = []
    for z, cs in zip(depths, footprints, strict=True):
        zside = torch.full((n,), math.inf, device=device)
        for corner in cs:
            zside.scatter_reduce_(0, corner.index, torch.where(corner.weight > _EPS, z, math.inf), reduce="amin")
        # Pixels nobody reaches get a finite depth, so that zero-weight corners pointing there
        # stay exactly zero below without a mask.
        side_zmin.append(torch.where(torch.isfinite(zside), zside, 1e30))
    zmin = torch.minimum(*side_zmin)
    leak = _leak(depths, footprints, zmin, n, softness) if settings.partial_coverage else None
    splats = []
    for source, z, cs, tw, zside in zip(sources, depths, footprints, time_weights, side_zmin, strict=True):
        hw = source.depth.shape[0]
        features = source.features.repeat(1, t) if t > 1 else source.features
        acc = torch.zeros(source.features.shape[0], n, device=device)
        wsum = torch.zeros(n, device=device)
        cover = torch.zeros(n, device=device)
        if leak is not None:
            k = len(depth_rows)
            parts = DepthParts(torch.zeros(k, n, device=device), torch.zeros(n, device=device),
                               torch.zeros(k, n, device=device), torch.zeros(n, device=device))
            zfeatures = features[depth_rows]
        scores = []
        tw_full = tw.repeat_interleave(hw) if keep_scores else None
        # Coverage: bilinear weight of this side's own front surface, near its own nearest depth
        # (a surface's depth changes between keyframes when the camera dollies, so the other
        # side's depth is no reference), where that surface is not far behind the other side's.
        cover_limit = zside * (1 + COVER_DEPTH * softness)
        for corner in cs:
            cover.index_add_(0, corner.index, corner.weight * (z <= cover_limit[corner.index]))
            # exp(-(z - zmin) / (softness * zmin)), at most 1: the nearest surface keeps its weight.
            near = zmin[corner.index]
            rel = (z - near).clamp_min_(0).div_(near.mul_(softness))
            weight = rel.neg_().exp_().mul_(corner.weight)
            if leak is not None:
                through = (corner.weight - weight).mul_(leak[corner.index])
                parts.front.index_add_(1, corner.index, zfeatures * weight)
                parts.front_weight.index_add_(0, corner.index, weight)
                parts.behind.index_add_(1, corner.index, zfeatures * through)
                parts.behind_weight.index_add_(0, corner.index, through)
                weight = weight + through
            acc.index_add_(1, corner.index, features * weight)
            wsum.index_add_(0, corner.index, weight)
            if keep_scores:
                scores.append(weight * tw_full)
        if leak is not None:
            acc[depth_rows] = select_depth(parts, leak) * wsum
        cover = torch.where(zside <= zmin * (1 + _HIDDEN_DEPTH), cover, 0.0)
        depth_parts = parts if leak is not None else None
        splats.append(_Splat(acc=acc, wsum=wsum, cover=cover, scores=scores, depth_parts=depth_parts))
    return Sides(*splats), leak


def select_depth(parts: DepthParts, leak: torch.Tensor) -> torch.Tensor:
    """Depth of the surface that covers most of each pixel, never a mix of two surfaces.

    The nearest surface's depth where it covers at least half the pixel (or nothing shows
    through the ``leak`` it leaves), else the depth behind it.
    """
    use_behind = (leak > 0.5) & (parts.behind_weight > _EPS)
    behind = parts.behind / parts.behind_weight.clamp_min(1e-30)
    return torch.where(use_behind, behind, parts.front / parts.front_weight.clamp_min(1e-30))


def _leak(
    depths: list[torch.Tensor], footprints: Sides[list[Corner]], zmin: torch.Tensor, n: int, softness: float
) -> torch.Tensor:
    """Per padded target pixel, the share (0-1) that the nearest surface leaves uncovered.

    The soft z-buffer gives the nearest surface at a pixel all the weight, however little of the
    pixel its footprints cover. Where an outline moves by a fraction of a pixel, or does not
    follow its surface's vectors at all (an object turning in place: its silhouette stays while
    the surface at it slides along), a footprint grazing the pixel then replaces a background
    that both keyframes see whole. The nearest surface's coverage is the larger of the two
    sides' bilinear weight within ``COVER_DEPTH`` softness of it (the larger, not the mean: a
    side whose view of that surface is occluded must not let its background through), and
    surfaces behind weigh ``w * (e + (1 - e) * leak)`` instead of ``w * e`` (``e`` the soft
    z-buffer's factor). Behind a whole surface the leak is 0 and nothing changes; inside a
    magnified surface, whose footprints sum to less than 1 between samples, nothing lands from
    behind to leak through.
    """
    front_limit = zmin * (1 + COVER_DEPTH * softness)
    front = torch.zeros(n, device=zmin.device)
    for z, cs in zip(depths, footprints, strict=True):
        side = torch.zeros(n, device=zmin.device)
        for corner in cs:
            side.index_add_(0, corner.index, corner.weight * (z <= front_limit[corner.index]))
        front = torch.maximum(front, side)
    return front.neg_().add_(1).clamp_(0, 1)


def _select_ids(
    sources: Sides[Source], footprints: Sides[list[Corner]], splats: Sides[_Splat], n: int, t: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target pixel, the id values of the single highest-scoring contributor, and its score."""
    device = sources[0].ids.device
    k = sources[0].ids.shape[1]
    best = torch.zeros(n, device=device)
    for cs, splat in zip(footprints, splats, strict=True):
        for corner, score in zip(cs, splat.scores, strict=True):
            best.scatter_reduce_(0, corner.index, score, reduce="amax")
    out = torch.zeros(n, k, device=device)
    for source, cs, splat in zip(sources, footprints, splats, strict=True):
        ids = source.ids.repeat(t, 1)
        for corner, score in zip(cs, splat.scores, strict=True):
            win = (score > 0) & (score >= best[corner.index])
            out[corner.index[win]] = ids[win]
    return out, best


def _invalid_share(sources: Sides[Source], batch: Batch) -> torch.Tensor:
    """Where non-finite source pixels would have landed (T,1,H,W, 0-1): along their vectors if
    those are finite, else in place."""
    t, h, w = batch.count, batch.h, batch.w
    invalid = torch.zeros(padded(t, h, w), device=batch.device)
    for source, scale in zip(sources, (batch.scale_a, batch.scale_b), strict=True):
        if bool(source.valid.all()):
            continue
        for corner in corners(source, scale, h, w, use_valid=False):
            invalid.index_add_(0, corner.index, corner.weight)
    return crop(invalid[None].clamp(0, 1), t, h, w)


@dataclass(frozen=True)
class SideSplat:
    """One keyframe's splat into the targets, ring cropped.

    Attributes:
        acc: (T,F,H,W) weighted feature sums.
        weight: (T,1,H,W) soft z-buffer weight sums.
        cover: (T,1,H,W) bilinear weight sums of this side's own front surface.
        depth_parts: With partial coverage, the depth sums of :class:`DepthParts`, each (T,rows,H,W).
    """

    acc: torch.Tensor
    weight: torch.Tensor
    cover: torch.Tensor
    depth_parts: DepthParts | None


@dataclass(frozen=True)
class Splats:
    """Both keyframes splatted into the targets.

    Attributes:
        sides: Each keyframe's splat.
        leak: With partial coverage, the share of each target pixel (T,1,H,W) that the nearest
            surface leaves uncovered (:func:`_leak`); else None.
        ids: (T,K,H,W) the id values of each pixel's highest-scoring contributor (0 where none).
        id_score: (T,1,H,W) that contributor's score, 0 where none; None without id layers.
        invalid: (T,1,H,W) where non-finite source pixels would have landed, 0-1.
    """

    sides: Sides[SideSplat]
    leak: torch.Tensor | None
    ids: torch.Tensor
    id_score: torch.Tensor | None
    invalid: torch.Tensor


def splat_keyframes(sources: Sides[Source], batch: Batch, plan: Plan, settings: InterpolationSettings) -> Splats:
    """Splat both keyframes into every target of the batch."""
    t, h, w = batch.count, batch.h, batch.w
    n = padded(t, h, w)
    footprints = Sides(corners(sources.a, batch.scale_a, h, w), corners(sources.b, batch.scale_b, h, w))
    splats, leak = _splat_pair(sources, footprints, batch, plan, settings)
    ids = torch.zeros(t, 0, h, w, device=batch.device)
    id_score = None
    if plan.ids:
        flat_ids, flat_score = _select_ids(sources, footprints, splats, n, t)
        ids, id_score = crop(flat_ids.t(), t, h, w), crop(flat_score[None], t, h, w)
    del footprints
    sides = Sides(
        *(
            SideSplat(
                acc=crop(splat.acc, t, h, w),
                weight=crop(splat.wsum[None], t, h, w),
                cover=crop(splat.cover[None], t, h, w),
                depth_parts=None if splat.depth_parts is None
                else DepthParts(*(crop(part.view(-1, n), t, h, w) for part in splat.depth_parts)),
            )
            for splat in splats
        )
    )
    return Splats(
        sides=sides,
        leak=None if leak is None else crop(leak[None], t, h, w),
        ids=ids,
        id_score=id_score,
        invalid=_invalid_share(sources, batch),
    )
