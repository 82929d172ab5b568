"""Step 5: holes nobody covers.

Filled by the guide's colour where there is one, else by push-pull (a weighted image pyramid)
for continuous layers, by the farthest neighbouring depth for depths (a disocclusion reveals
background) and by the nearest contributor for id layers. Depth and ids are selected, never
averaged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.inbetween.interpolate.confidence import Terms
from farmplug.inbetween.interpolate.fuse import Fusion
from farmplug.inbetween.interpolate.guided import GuideFill
from farmplug.inbetween.interpolate.keys import Plan


def fill_holes(fusion: Fusion, plan: Plan, guide_fill: GuideFill | None, terms: Terms) -> Terms:
    """Fill the holes of ``fusion.fused`` in place.

    Returns:
        The terms, with the visibility of holes filled from a guide's colour at 0.5.
    """
    fused, covered = fusion.fused, fusion.covered
    holes = ~covered
    if not bool(holes.any()):
        return terms
    depth = fused[:, plan.depth : plan.depth + 1]
    for sl in (plan.color, plan.velocity, *plan.blended_layers):
        fused[:, sl] = push_pull(torch.where(covered, fused[:, sl], 0.0), covered)
    if guide_fill is not None:
        use_guide = holes & guide_fill.has_color
        fused[:, plan.color] = torch.where(use_guide, guide_fill.color, fused[:, plan.color])
        visibility = torch.where(use_guide, torch.full_like(terms.visibility, 0.5), terms.visibility)
        terms = terms._replace(visibility=visibility)
    # Depth: nearest surface where covered (the soft z-buffer), farthest neighbour in holes.
    depth = select_fill(torch.where(covered, depth, 0.0), torch.where(covered, depth, -math.inf))
    fused[:, plan.depth : plan.depth + 1] = depth
    for name in plan.depths:
        sl = plan.continuous[name]
        fused[:, sl] = select_fill(
            torch.where(covered, fused[:, sl], 0.0), torch.where(covered, depth, -math.inf).expand(-1, 1, -1, -1)
        )
    return terms


def fill_ids(ids: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Ids (T,K,H,W) where no contributor landed (``score`` 0) from the best-scoring neighbour."""
    return select_fill(ids, torch.where(score > 0, score, -math.inf))


def push_pull(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels of ``values`` (N,C,H,W) from a weighted pyramid of the known ones."""
    h, w = values.shape[-2:]
    if bool(known.all()) or (h <= 1 and w <= 1):
        return values
    weight = known.to(values.dtype)
    padded_v = F.pad(values * weight, (0, w % 2, 0, h % 2))
    padded_w = F.pad(weight, (0, w % 2, 0, h % 2))
    sum_v = F.avg_pool2d(padded_v, 2) * 4
    sum_w = F.avg_pool2d(padded_w, 2) * 4
    coarse = push_pull(sum_v / sum_w.clamp_min(1e-8), sum_w > 0)
    up = F.interpolate(coarse, size=(coarse.shape[-2] * 2, coarse.shape[-1] * 2), mode="bilinear", align_corners=False)[
        ..., :h, :w
    ]
    return torch.where(known, values, up)


def select_fill(values: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """Fill pixels with ``priority == -inf`` with the value of the highest-priority neighbour."""
    h, w = values.shape[-2:]
    known = priority > -math.inf
    if bool(known.all()) or (h <= 1 and w <= 1):
        return values
    pad = (0, w % 2, 0, h % 2)
    padded_p = F.pad(priority, pad, value=-math.inf)
    padded_v = F.pad(values, pad)
    pooled, index = F.max_pool2d(padded_p, 2, return_indices=True)
    flat = padded_v.flatten(2)
    coarse_v = torch.gather(flat, 2, index.flatten(2).expand(-1, values.shape[1], -1)).reshape(
        values.shape[0], values.shape[1], *pooled.shape[-2:]
    )
    coarse = select_fill(coarse_v, pooled)
    up = F.interpolate(coarse, scale_factor=2, mode="nearest")[..., :h, :w]
    return torch.where(known, values, up)

