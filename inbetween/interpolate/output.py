"""The targets' outputs: motion vectors re-derived from the fused velocity, and the unpacked results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from farmplug.inbetween.interpolate.confidence import Terms
from farmplug.inbetween.interpolate.fuse import Fusion
from farmplug.inbetween.interpolate.keys import Plan
from farmplug.inbetween.interpolate.types import Interpolated, Layer
from farmplug.inbetween.interpolate.validate import shape
from farmplug.motion import join_blender_vectors


@dataclass(frozen=True)
class FrameTensors:
    """The targets' images on the device (guided mode overwrites guided targets' in place).

    Attributes:
        features: (T,F,H,W) packed as the :class:`~farmplug.inbetween.interpolate.keys.Plan` lays them out.
        to_prev: (T,2,H,W) displacement to the previous frame.
        to_next: (T,2,H,W) displacement to the next frame.
        ids: (T,K,H,W) the id layers, side by side.
    """

    features: torch.Tensor
    to_prev: torch.Tensor
    to_next: torch.Tensor
    ids: torch.Tensor


def motion_vectors(fusion: Fusion, plan: Plan) -> tuple[torch.Tensor, torch.Tensor]:
    """``to_prev`` and ``to_next`` (T,2,H,W) from the fused velocity (and acceleration)."""
    velocity = fusion.fused[:, plan.velocity]
    to_next, to_prev = velocity.clone(), -velocity
    if fusion.accel is not None:
        # An eased path's one-frame steps either side of the target differ by its acceleration.
        to_next += fusion.accel
        to_prev += fusion.accel
    return to_prev, to_next


@dataclass(frozen=True)
class BatchOutput:
    """Everything a target's :class:`~farmplug.inbetween.interpolate.types.Interpolated` is made of.

    Attributes:
        frames: The targets' images.
        confidence: (T,1,H,W) per-pixel confidence.
        scores: (T,) frame scores.
        terms: The confidence terms (for the statistics).
        covered: (T,1,H,W) whether any prediction reached the pixel.
        step_motion: (T,1,H,W) motion over the keyframe step, pixels.
        guided: Whether each target had a guide.
        invalid_sources: Non-finite source pixels in both keyframes.
    """

    frames: FrameTensors
    confidence: torch.Tensor
    scores: torch.Tensor
    terms: Terms
    covered: torch.Tensor
    step_motion: torch.Tensor
    guided: tuple[bool, ...]
    invalid_sources: int


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(torch.nan_to_num(x, nan=0.0, posinf=1e10, neginf=-1e10).cpu().numpy(), dtype=np.float32)


def unpack(
    output: BatchOutput, i: int, *, frame: int, plan: Plan, layers: Mapping[str, Layer], threshold: float
) -> Interpolated:
    """Target ``i`` of the batch as an :class:`Interpolated` of finite numpy arrays.

    ``layers`` are the keyframe's (names, kinds and widths), ``threshold`` the confidence under
    which a pixel counts as low for the ``low_confidence`` statistic.
    """
    hwc = output.frames.features[i].permute(1, 2, 0)
    to_prev = _numpy(output.frames.to_prev[i].permute(1, 2, 0))
    to_next = _numpy(output.frames.to_next[i].permute(1, 2, 0))
    arrays: dict[str, np.ndarray] = {}
    id_offset = 0
    for name, layer in layers.items():
        if name in plan.continuous:
            value = hwc[..., plan.continuous[name]]
            if name in plan.normals:
                length = value.norm(dim=-1, keepdim=True)
                value = torch.where(length > 1e-6, value / length.clamp_min(1e-6), value)
            arrays[name] = _numpy(value)
        elif name in plan.blender_vectors:
            arrays[name] = join_blender_vectors(to_prev, to_next)
        else:
            width = shape(layer.data)[2]
            arrays[name] = _numpy(output.frames.ids[i].permute(1, 2, 0)[..., id_offset : id_offset + width])
            id_offset += width
    confidence = output.confidence[i, 0]
    cov_a, cov_b = output.terms.coverage.a.raw[i, 0], output.terms.coverage.b.raw[i, 0]
    difference = output.terms.difference[i, 0]
    vmax = torch.maximum(cov_a, cov_b)
    two_sided = torch.minimum(cov_a, cov_b) > 0.5
    stats = {
        "coverage": float((vmax > 0.5).float().mean()),
        "disoccluded": float(((vmax > 0.5) & ~two_sided).float().mean()),
        "holes": float((~output.covered[i, 0]).float().mean()),
        "disagreement": float(difference[two_sided].mean()) if bool(two_sided.any()) else 0.0,
        "max_motion_px": float(output.step_motion[i, 0].max()),
        "invalid_sources": float(output.invalid_sources),
        "mean_confidence": float(confidence.mean()),
        "low_confidence": float((confidence < threshold).float().mean()),
        "guided": 1.0 if output.guided[i] else 0.0,
    }
    return Interpolated(
        frame=frame,
        color=_numpy(hwc[..., plan.color]),
        depth=_numpy(hwc[..., plan.depth]),
        to_prev=to_prev,
        to_next=to_next,
        layers=arrays,
        confidence=_numpy(confidence),
        score=float(output.scores[i]),
        stats=stats,
    )
