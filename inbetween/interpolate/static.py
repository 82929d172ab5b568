"""Static appearance: a second motion hypothesis for the colour, that it stays put on screen.

Reflections of the surroundings on a turning object, light moving over it and similar
view-dependent shading do not move with the surface, so the vectors carry them wrongly and the
two keyframes' predictions disagree. Where the same surface is at a pixel in A, B and the target
and the pixel's own colour explains A and B clearly better than the vectors, the colour is taken
from the pixel (``settings.static_appearance``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.inbetween.interpolate.confidence import Terms, agreement_term, tone_difference
from farmplug.inbetween.interpolate.guided import guide_depth
from farmplug.inbetween.interpolate.keys import Batch, KeyPair
from farmplug.inbetween.interpolate.types import Guide

# The same surface is at a pixel in A, B and the target when the target's depth is within
# _STATIC_DEPTH (A's and B's within _STATIC_KEY_DEPTH) of the other images' 3x3 depth range, and
# the static hypothesis takes over fully when its A/B difference is _STATIC_MARGIN (tone-mapped)
# below the vectors'.
_STATIC_DEPTH = 0.02
_STATIC_KEY_DEPTH = 0.005
_STATIC_MARGIN = 0.05


def static_appearance(
    pair: KeyPair,
    guides: Mapping[int, Guide],
    batch: Batch,
    fused: torch.Tensor,
    terms: Terms,
    *,
    vector_agreement: torch.Tensor,
) -> Terms:
    """Take the colour from the pixel itself where that explains both keyframes clearly better.

    Where the same surface sits at the pixel in both keyframes and in the target (depths within
    ``_STATIC_DEPTH``; the target's is the guide's where there is one), the pixel's own colour
    in A and B, mixed in time, is a second prediction, and its own A/B disagreement says how
    good it is. Per pixel, the static prediction takes over to the degree that it agrees clearly
    better (by ``_STATIC_MARGIN``, both averaged over 5x5); where both agree (a static
    background) nothing changes. Only colour and alpha switch, in ``fused`` (T,F,H,W) in place:
    depth, normals, ids and albedo keep following the surface. ``vector_agreement`` (the
    splat's own A/B agreement, which differs from ``terms.agreement`` for guided targets)
    counts against the vectors as well where it is the lower.

    Returns:
        The terms with difference, agreement and visibility blended as the colour is.
    """
    plan, (src_a, src_b) = pair.plan, pair.sources
    h, w = batch.h, batch.w
    z_target = fused[:, plan.depth : plan.depth + 1].clone()
    for i, t in enumerate(batch.targets):
        g = guides.get(t)
        if g is not None:
            z_target[i, 0] = guide_depth(g, batch.device)
    at_a = src_a.features[plan.color].view(1, -1, h, w)
    at_b = src_b.features[plan.color].view(1, -1, h, w)
    z_a, z_b = src_a.depth.view(1, 1, h, w), src_b.depth.view(1, 1, h, w)
    # Depths are compared with the other image's 3x3 depth range: a silhouette pixel's depth
    # mixes the object's and the background's, and a fraction of a pixel of outline motion
    # changes it a lot while the colour there barely moves.
    range_a, range_b = _depth_range(z_a), _depth_range(z_b)
    same = (
        src_a.valid.view(1, 1, h, w)
        & src_b.valid.view(1, 1, h, w)
        & _within(z_target, range_a, _STATIC_DEPTH)
        & _within(z_target, range_b, _STATIC_DEPTH)
        & _within(z_a, range_b, _STATIC_KEY_DEPTH)
        & _within(z_b, range_a, _STATIC_KEY_DEPTH)
    ).float()
    if not bool(same.any()):
        return terms
    tw_b = batch.s[:, None, None, None]
    static = at_a + tw_b * (at_b - at_a)
    d_static = tone_difference(at_a, at_b).expand(batch.count, -1, -1, -1)
    # Risks in [0, 1]: the vectors' from their (coverage-weighted) agreement, so pixels seen by
    # one keyframe only (nothing to compare) never count against them.
    static_agreement = agreement_term(d_static, torch.ones_like(d_static))
    # Guided, the warps along the guide's vectors and the splat along the keyframes' own both
    # test whether the colour moves with the surface; either failing counts. (The warps of a
    # turning metal sphere agree with each other while its reflections stay put.)
    agreement_v = torch.minimum(terms.agreement, vector_agreement)
    risk_v = F.avg_pool2d(1 - agreement_v, 5, stride=1, padding=2, count_include_pad=False)
    risk_s = F.avg_pool2d(1 - static_agreement, 5, stride=1, padding=2, count_include_pad=False)
    take = same * ((risk_v - risk_s) / _STATIC_MARGIN).clamp(0, 1)
    take = F.avg_pool2d(take, 3, stride=1, padding=1, count_include_pad=False) * same
    fused[:, plan.color] += take * (static - fused[:, plan.color])
    return terms._replace(
        difference=terms.difference + take * (d_static - terms.difference),
        agreement=terms.agreement + take * (static_agreement - terms.agreement),
        visibility=terms.visibility + take * (1 - terms.visibility),
    )


def _depth_range(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest depth (N,1,H,W) in each pixel's 3x3 neighbourhood."""
    return -F.max_pool2d(-depth, 3, stride=1, padding=1), F.max_pool2d(depth, 3, stride=1, padding=1)


def _within(depth: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor], tolerance: float) -> torch.Tensor:
    """Whether ``depth`` lies in ``bounds`` widened by ``tolerance`` (relative)."""
    low, high = bounds
    return (depth >= low * (1 - tolerance)) & (depth <= high * (1 + tolerance))
