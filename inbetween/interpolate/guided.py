"""Step 4, guided mode: a cheap render of the target (a :class:`Guide`) checks and corrects the splat.

A and B are also backward-warped into ``t`` along the guide's ``(t - a) * to_prev`` /
``(b - t) * to_next`` (exact when ``t - a == 1`` / ``b - t == 1``; farther, on an eased path).
A warped keyframe counts where its depth agrees with the guide's, the splat counts where its
depth agrees with the guide's and its two sides agree with each other, and a warp whose
surroundings hold other geometry than the guide's gives way to the other (the shading context:
shadows and reflections left behind). The guide's depth, vectors, albedo and normal become the
output's (:func:`apply_guide_passes`), and its colour fills holes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.inbetween.interpolate.confidence import (
    Coverage,
    Terms,
    agreement_term,
    tone_difference,
    visibility_term,
    window_pixels,
)
from farmplug.inbetween.interpolate.fuse import Fusion
from farmplug.inbetween.interpolate.keys import Batch, KeyPair, Plan, Sides, Source, as_image, to_tensor
from farmplug.inbetween.interpolate.output import FrameTensors
from farmplug.inbetween.interpolate.paths import eased_guide_reach
from farmplug.inbetween.interpolate.sampler import Resampler, gather
from farmplug.inbetween.interpolate.splat import HOLE
from farmplug.inbetween.interpolate.types import Guide, InterpolationSettings

# A warp whose surroundings hold this share more pixels unlike the guide's geometry than the other
# warp's has no weight (linear fade in between; _shading_context).
_CONTEXT_MARGIN = 0.1


class GuideFill(NamedTuple):
    """The guides' colour for the holes."""

    color: torch.Tensor  # (T,C,H,W), 0 where a target has no guide colour
    has_color: torch.Tensor  # (T,1,1,1) whether it has one


@dataclass(frozen=True)
class _Guides:
    """The guides of a batch, stacked (targets without a guide hold neutral values)."""

    reach: Sides[torch.Tensor]  # (T,H,W,2) from each target to keyframe A and to B along the guide's vectors
    depth: torch.Tensor  # (T,1,H,W)
    color: torch.Tensor  # (T,C,H,W)
    has_color: torch.Tensor  # (T,1,1,1) bool
    guided: torch.Tensor  # (T,1,1,1) bool


class _Warp(NamedTuple):
    """One keyframe backward-warped into the targets along the guides' vectors (each T,.,H,W)."""

    sampled: torch.Tensor  # (T,F,H,W) the keyframe's packed features there
    match: torch.Tensor  # its depth's match with the guide's
    outside: torch.Tensor  # 1 where the warped point lies outside the keyframe's frame
    depth: torch.Tensor
    valid: torch.Tensor  # inside the frame and finite under the kernel
    seen: torch.Tensor  # the depth match after the camera's depth change (_depth_offset)


class _Checks(NamedTuple):
    """The guide's depth checks of the two predictions that are not a single warp."""

    splat: torch.Tensor  # the fused splat's depth matches the guide's
    pair: torch.Tensor  # both warps' depths, interpolated in time, match the guide's (camera dollies)


class _Blend(NamedTuple):
    combined: torch.Tensor  # (T,F,H,W) the splat and the warps mixed by their weights
    covered: torch.Tensor
    warp: torch.Tensor  # (T,F,H,W) the two warps mixed
    warp_weight: torch.Tensor
    splat_weight: torch.Tensor


def guide_depth(guide: Guide, device: torch.device) -> torch.Tensor:
    """A guide's depth on the device, non-finite values as far background, positive."""
    return torch.nan_to_num(to_tensor(guide.depth, device), nan=1e10, posinf=1e10).clamp_min(1e-6)


def depth_match(z: torch.Tensor, reference: torch.Tensor, tol: float, mask: torch.Tensor) -> torch.Tensor:
    """``exp(-|z - reference| / (tol * reference))`` where ``mask``, else 0: how far a depth is
    the reference surface's (guided mode's depth checks)."""
    return torch.where(mask, torch.exp(-(z - reference).abs() / (tol * reference)), 0.0)


def guided_fusion(
    pair: KeyPair,
    guides: Mapping[int, Guide],
    batch: Batch,
    fusion: Fusion,
    terms: Terms,
    settings: InterpolationSettings,
) -> tuple[Fusion, Terms, GuideFill]:
    """Backward-warp both keyframes along the guides' vectors and fuse them with the splat by depth.

    Targets without a guide keep the splat's fusion and terms. Needs ``pair.resamplers``.

    Returns:
        The fusion (features and coverage), the confidence terms and the guides' colour.
    """
    plan = pair.plan
    tol = settings.guide_depth_tolerance
    stacked = _stack_guides(guides, batch, plan.color.stop)
    reach = stacked.reach
    if settings.acceleration:
        # Targets two or more frames from a keyframe: the guide's one-frame vector starts the
        # path, the keyframe's vector where it lands ends it (paths.path_acceleration).
        valid = stacked.guided[:, 0].expand(-1, batch.h, batch.w)
        depth = stacked.depth[:, 0]
        reach = Sides(
            eased_guide_reach(reach.a, batch.scale_a, pair.resamplers.a, sign=1.0, depth=depth, valid=valid),
            eased_guide_reach(reach.b, batch.scale_b, pair.resamplers.b, sign=-1.0, depth=depth, valid=valid),
        )
    warps = Sides(
        *(_warp(sampler, disp, stacked.depth, plan, tol) for sampler, disp in zip(pair.resamplers, reach, strict=True))
    )
    tw_a, tw_b = batch.time_weights()
    checks = _Checks(
        splat=depth_match(fusion.fused[:, plan.depth : plan.depth + 1], stacked.depth, tol, fusion.covered),
        # When the camera dollies, a surface's depth changes a lot between frames; then the depths
        # both warps bring, interpolated in time, still match the guide's.
        pair=depth_match(
            tw_a * warps.a.depth + tw_b * warps.b.depth, stacked.depth, tol, warps.a.valid & warps.b.valid
        ),
    )
    blend = _blend(warps, checks, fusion, terms.agreement, batch, settings)
    visibility = _guided_visibility(warps, checks, terms.coverage, settings.guided_one_sided_confidence)
    agreement, difference = _guided_agreement(warps, blend, fusion.fused, plan.color)

    guided = stacked.guided
    all_guided = bool(guided.all())

    def pick(with_guide: torch.Tensor, without: torch.Tensor) -> torch.Tensor:
        return with_guide if all_guided else torch.where(guided, with_guide, without)

    return (
        replace(fusion, fused=pick(blend.combined, fusion.fused), covered=pick(blend.covered, fusion.covered)),
        Terms(
            visibility=pick(visibility, terms.visibility),
            agreement=pick(agreement, terms.agreement),
            difference=pick(difference, terms.difference),
            coverage=terms.coverage,
        ),
        GuideFill(color=stacked.color, has_color=stacked.has_color & guided),
    )


def _reach(guide: Guide, t: int, batch: Batch) -> Sides[torch.Tensor]:
    """Displacements (H,W,2) from target ``t`` to keyframe A and to B along the guide's vectors, at
    constant velocity."""
    return Sides(
        torch.nan_to_num(to_tensor(guide.to_prev, batch.device)) * (t - batch.a_frame),
        torch.nan_to_num(to_tensor(guide.to_next, batch.device)) * (batch.b_frame - t),
    )


def _stack_guides(guides: Mapping[int, Guide], batch: Batch, channels: int) -> _Guides:
    """The batch's guides on the device; ``channels`` is the keyframes' colour channels."""
    h, w, device = batch.h, batch.w, batch.device
    zeros2 = torch.zeros(h, w, 2, device=device)
    reach_a, reach_b, z_guide, g_color, has_color, is_guided = [], [], [], [], [], []
    for t in batch.targets:
        g = guides.get(t)
        if g is None:
            reach_a.append(zeros2)
            reach_b.append(zeros2)
            z_guide.append(torch.ones(h, w, device=device))
            g_color.append(torch.zeros(h, w, channels, device=device))
            has_color.append(False)
            is_guided.append(False)
            continue
        reach = _reach(g, t, batch)
        reach_a.append(reach.a)
        reach_b.append(reach.b)
        z_guide.append(guide_depth(g, device))
        color = torch.zeros(h, w, channels, device=device)
        if g.color is not None:
            gc = torch.nan_to_num(to_tensor(g.color, device), nan=0.0, posinf=0.0, neginf=0.0)
            color[..., : gc.shape[-1]] = gc
            if gc.shape[-1] < channels:
                color[..., 3] = 1.0  # an RGB guide is opaque
        g_color.append(color)
        has_color.append(g.color is not None)
        is_guided.append(True)
    return _Guides(
        reach=Sides(torch.stack(reach_a), torch.stack(reach_b)),
        depth=torch.stack(z_guide)[:, None],
        color=torch.stack(g_color).permute(0, 3, 1, 2),
        has_color=torch.tensor(has_color, device=device)[:, None, None, None],
        guided=torch.tensor(is_guided, device=device)[:, None, None, None],
    )


def _warp(resampler: Resampler, reach: torch.Tensor, z_guide: torch.Tensor, plan: Plan, tol: float) -> _Warp:
    """One keyframe sampled at ``(x, y) + reach`` (T,H,W,2) and checked against the guide's depth."""
    t, h, w = reach.shape[:3]
    colour, probe, inside = resampler.sample(reach)
    sampled = torch.zeros(t, plan.channels, h, w, device=reach.device)
    sampled[:, resampler.channels] = colour
    sampled[:, plan.depth : plan.depth + 1] = probe[:, :1]
    sampled[:, plan.velocity] = probe[:, 1:3]
    z = probe[:, :1]
    valid = (probe[:, 3:4] < 1e-3) & inside
    match = depth_match(z, z_guide, tol, valid)
    # For confidence: the same check after the camera's depth change (_depth_offset).
    seen = depth_match(z - _depth_offset(z, z_guide, valid), z_guide, tol, valid)
    return _Warp(sampled=sampled, match=match, outside=(~inside).float(), depth=z, valid=valid, seen=seen)


def _blend(
    warps: Sides[_Warp],
    checks: _Checks,
    fusion: Fusion,
    agreement: torch.Tensor,
    batch: Batch,
    settings: InterpolationSettings,
) -> _Blend:
    """The warps mixed in time by their depth match (and shading context), then mixed with the
    splat, whose weight is its own coverage, depth match and A/B ``agreement``."""
    tw_a, tw_b = batch.time_weights()
    mix_a, mix_b = tw_a * warps.a.match, tw_b * warps.b.match
    if settings.shading_context > 0:
        context_a, context_b = _shading_context((warps.a.match, warps.b.match), checks.pair, settings.shading_context)
        mix_a, mix_b = mix_a * context_a, mix_b * context_b
    w_warp = mix_a + mix_b
    warp = (mix_a * warps.a.sampled + mix_b * warps.b.sampled) / w_warp.clamp_min(1e-8)
    # The splat is a mix of the two keyframes' predictions: where those disagree (a surface
    # eased off its path, a reflection) it is only as good as their agreement, and the warps
    # along the guide's exact one-frame vectors carry the pixel.
    w_splat = fusion.total.clamp(0, 1) * checks.splat * agreement
    combined = (w_splat * fusion.fused + w_warp * warp) / (w_splat + w_warp).clamp_min(1e-8)
    covered = (w_splat + w_warp) > HOLE
    return _Blend(combined=combined, covered=covered, warp=warp, warp_weight=w_warp, splat_weight=w_splat)


def _guided_visibility(
    warps: Sides[_Warp], checks: _Checks, coverage: Sides[Coverage], one_sided: float
) -> torch.Tensor:
    """Visibility of guided targets: a side sees a pixel where its splat covers it and the splat's
    depth is the guide's, or where its warp's depth is the guide's."""
    # For confidence, depth is checked 3x more loosely than for blending: a surface's depth
    # changes between frames when the camera moves or turns, and that is no sign of a wrong surface.
    (cov_a, tol_a), (cov_b, tol_b) = coverage
    seen_a, seen_b = (torch.maximum(warp.seen, checks.pair) for warp in warps)
    loose_ok, loose_a, loose_b = (x.pow(1 / 3) for x in (checks.splat, seen_a, seen_b))
    g_vis_a = torch.maximum(tol_a * loose_ok, loose_a)
    g_vis_b = torch.maximum(tol_b * loose_ok, loose_b)
    g_both = torch.minimum(torch.maximum(cov_a * loose_ok, loose_a), torch.maximum(cov_b * loose_ok, loose_b))
    # One-sided because the guide's vectors lead out of the other keyframe's frame: not a risk.
    g_checked = torch.maximum(g_both, torch.maximum(g_vis_a * warps.b.outside, g_vis_b * warps.a.outside))
    return visibility_term(torch.maximum(g_vis_a, g_vis_b), g_checked, one_sided)


def _guided_agreement(
    warps: Sides[_Warp], blend: _Blend, fused: torch.Tensor, color: slice
) -> tuple[torch.Tensor, torch.Tensor]:
    """Agreement and difference of guided targets: between the two warped keyframes where both
    see the pixel, and between the splat (``fused``) and the warp where both exist."""
    d_warp = tone_difference(warps.a.sampled[:, color], warps.b.sampled[:, color])
    d_splat = tone_difference(fused[:, color], blend.warp[:, color])
    both_warp = torch.minimum(warps.a.match, warps.b.match)
    both_splat = torch.minimum(blend.splat_weight, blend.warp_weight.clamp(0, 1))
    agreement = agreement_term(d_warp, both_warp) * agreement_term(d_splat, both_splat)
    difference = torch.maximum(d_warp * (both_warp > 0.5), d_splat * (both_splat > 0.5))
    return agreement, difference


def _depth_offset(z: torch.Tensor, z_guide: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """How far (T,1,1,1) a warped keyframe's depths lie behind the guide's as a rule: the median
    of ``z - z_guide`` over its valid pixels (0 where there are none).

    A camera moving along its axis changes every depth by about the same amount between frames,
    a small share of a far surface's depth but a large one of a near surface's. Where only one
    warp sees a surface (near the frame's edge, where the other keyframe's view does not reach)
    there is no second depth to interpolate in time, and the near surface would fail the
    confidence's depth check; checked after this offset, it is confirmed. Objects moving on
    their own are a minority of the pixels and do not move the median.
    """
    diff = torch.where(valid, z - z_guide, torch.nan).flatten(1)
    return torch.nan_to_num(torch.nanmedian(diff, dim=1).values, nan=0.0)[:, None, None, None]


def _shading_context(
    matches: tuple[torch.Tensor, torch.Tensor], pair_ok: torch.Tensor, share: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Guided mode: how far each warped keyframe's surroundings hold the target's geometry.

    A moving object's contact shadow, its reflection in a glossy floor and its bounce light
    stay behind on the surfaces it left: the floor where a pillar stood in keyframe A still
    shows them in A, while B, and the target, do not. Both warps see the floor there (its
    depth matches the guide's), so mixed they leave a half-strength ghost. But around that
    pixel A's geometry differs from the guide's (the pillar), B's does not. Per side, the
    share of pixels matching the guide's depth (``matches``: each warp's depth match, 0 where
    it is invalid; or, under a dolly, ``pair_ok``: matching once both sides are interpolated in
    time) is averaged over a window ``share`` x the shorter image side.
    A side whose share is ``_CONTEXT_MARGIN`` below the other's drops out, fading linearly in
    between; where both surroundings match (almost everywhere) nothing changes.

    Returns:
        Each side's weight factor (T,1,H,W), 0-1; the better side's is 1.
    """
    size = window_pixels(share, *pair_ok.shape[-2:])
    # pair_ok is 0 wherever either warp is invalid, so an invalid warp counts as no match.
    context = [_box_mean(torch.maximum(match, pair_ok), size) for match in matches]
    best = torch.maximum(*context).clamp_min(1e-6)
    return tuple(((c - best) / _CONTEXT_MARGIN + 1).clamp(0, 1) for c in context)


def _box_mean(image: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of (N,1,H,W) over ``size`` x ``size`` windows centred on each pixel (clipped at the
    border), from summed-area tables: the cost does not grow with the window."""
    r = size // 2

    def along(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        c = F.pad(torch.cumsum(x.double(), dim=dim), (1, 0) if dim == 3 else (0, 0, 1, 0))
        idx = torch.arange(n, device=x.device)
        hi, lo = (idx + r + 1).clamp(max=n), (idx - r).clamp(min=0)
        return (c.index_select(dim, hi) - c.index_select(dim, lo)) / (hi - lo).to(c.dtype).view(
            *(n if d == dim else 1 for d in range(4))
        )

    return along(along(image, 3), 2).float()


def apply_guide_passes(
    frames: FrameTensors, pair: KeyPair, guides: Mapping[int, Guide], batch: Batch, tolerance: float
) -> None:
    """Guided targets take the guide's own depth, vectors, albedo and normal, and depth-checked
    ids, in place in ``frames``."""
    plan = pair.plan
    device = batch.device
    for i, t in enumerate(batch.targets):
        g = guides.get(t)
        if g is None:
            continue
        frames.features[i, plan.depth] = torch.nan_to_num(to_tensor(g.depth, device), nan=1e10, posinf=1e10, neginf=0.0)
        frames.to_prev[i] = torch.nan_to_num(to_tensor(g.to_prev, device)).permute(2, 0, 1)
        frames.to_next[i] = torch.nan_to_num(to_tensor(g.to_next, device)).permute(2, 0, 1)
        for name, value in (("albedo", g.albedo), ("normal", g.normal)):
            if value is not None and name in plan.continuous:
                sl = plan.continuous[name]
                if sl.stop - sl.start == value.shape[-1]:
                    frames.features[i, sl] = torch.nan_to_num(to_tensor(value, device)).permute(2, 0, 1)
        if plan.ids:
            frames.ids[i : i + 1] = _ids_from_guide(
                frames.features[i : i + 1, plan.depth : plan.depth + 1], frames.ids[i : i + 1], _reach(g, t, batch),
                pair.sources, batch.s[i], tolerance,
            )


def _ids_from_guide(
    z_guide: torch.Tensor,
    ids: torch.Tensor,
    reach: Sides[torch.Tensor],
    sources: Sides[Source],
    s: torch.Tensor,
    tol: float,
) -> torch.Tensor:
    """Ids (1,K,H,W) from the keyframe whose warped depth matches the guide's (nearest sample);
    ``ids`` where neither does clearly. ``s`` is the target's place between the keyframes."""
    h, w = z_guide.shape[-2:]
    best_vis = torch.zeros(1, 1, h, w, device=z_guide.device)
    chosen = ids.clone()
    for source, disp, tw in ((sources.a, reach.a, 1 - s), (sources.b, reach.b, s)):
        image = as_image(torch.cat([source.ids, source.depth[:, None], source.valid[:, None].float()], 1), 1, h, w)
        sampled, inside = gather(image, disp[None], "nearest")
        z = sampled[:, -2:-1]
        ok = inside & (sampled[:, -1:] > 0.5)
        vis = depth_match(z, z_guide, tol, ok) * tw
        better = vis > torch.maximum(best_vis, torch.full_like(best_vis, 0.3))
        chosen = torch.where(better, sampled[:, :-2], chosen)
        best_vis = torch.maximum(best_vis, vis)
    return chosen
