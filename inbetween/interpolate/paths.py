"""Eased motion: each surface's path between the keyframes as one of constant acceleration.

A Vector pass holds each surface's displacement to the neighbouring frames, exact for one frame.
Farther than that, constant velocity is a guess, and animation rarely keeps it (Blender's default
keyframe interpolation eases in and out). Both keyframes know one end of each surface's path: the
path of constant acceleration that starts with one keyframe's vector and ends with the other's
replaces constant velocity at a keyframe step above 2, for the splat (:func:`with_acceleration`)
and for the guided warps (:func:`eased_guide_reach`).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from farmplug.inbetween.interpolate.keys import Source
from farmplug.inbetween.interpolate.sampler import Resampler, gather

# A surface's depth at both ends of its path may differ by this share (camera moves) and still count
# as the same surface for its acceleration.
_ACCEL_DEPTH = 0.15


def with_acceleration(own: Source, other: Source, step: int, h: int, w: int) -> Source:
    """``own`` with its per-pixel acceleration towards ``other``, the keyframe ``step`` frames
    away (:func:`path_acceleration`); unchanged for a step of 2 or less, where every target is
    one frame from each keyframe."""
    if step <= 2:
        return own
    image = torch.cat([other.splat_vector.t(), other.depth[None], (~other.valid).float()[None]]).view(1, 4, h, w)
    accel = path_acceleration(
        own.splat_vector.view(1, h, w, 2), torch.tensor([float(step)], device=image.device), image,
        own.depth.view(1, h, w), own.valid.view(1, h, w),
    )
    return replace(own, accel=accel.reshape(-1, 2))


def eased_guide_reach(
    reach: torch.Tensor, frames: torch.Tensor, end: Resampler, *, sign: float, depth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """A guided warp's displacement (T,H,W,2) to a keyframe ``frames`` away (T,), on an eased path.

    ``reach`` is the guide's one-frame vector times ``frames``: that vector starts the path, the
    keyframe's own vector where the path lands ends it (``end``'s probe; ``sign`` turns it to point
    back towards the target). ``depth`` (T,H,W) is the guide's, ``valid`` (T,H,W) marks guided
    targets. Unchanged where every target is one frame from the keyframe.
    """
    if not bool((frames > 1).any()):
        return reach
    probe = end.probe[:, :4]
    other = torch.cat([probe[:, 1:3] * sign, probe[:, :1], probe[:, 3:4]], dim=1)
    k = frames[:, None, None, None]
    first = reach / k
    accel = path_acceleration(first, frames, other, depth, valid)
    return reach + k * (k - 1) * accel


def path_acceleration(
    first: torch.Tensor, frames: torch.Tensor, other: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per pixel, the acceleration of a surface's path to a keyframe ``frames`` away.

    One end of the path gives its first step ``v`` (``first``, T,H,W,2); the keyframe at the
    other end gives its last, ``u`` (``other``: 1,4,H,W holding that keyframe's vectors pointing
    back, depth and invalidity), read where the path ends. The path of constant acceleration
    ``x(k) = k * v + k * (k - 1) * c`` that ends with ``u`` has ``c = -(u + v) / (2 * n - 2)``
    (``n = frames``, per target); the end is found again with ``c`` once. Where the end is
    outside the other keyframe, on a surface more than ``_ACCEL_DEPTH`` away in depth
    (``depth``: T,H,W, of this end), or ``u`` and ``-v`` differ by more than half the larger
    of the two (a different surface: an occlusion), or ``n`` is 1, ``c`` is 0: constant
    velocity.
    """
    n = frames[:, None, None, None]
    accel = torch.zeros_like(first)
    for _ in range(2):
        probe, inside = gather(other, n * first + n * (n - 1) * accel, "bilinear")
        last = probe[:, :2].permute(0, 2, 3, 1)
        accel = -(last + first) / (2 * n - 2).clamp_min(1)
    mismatch = (last + first).square().sum(dim=-1)
    larger = torch.maximum(last.square().sum(dim=-1), first.square().sum(dim=-1))
    ok = (
        inside[:, 0] & (probe[:, 3] < 1e-3) & valid & (n[..., 0] > 1)
        & ((probe[:, 2] - depth).abs() <= _ACCEL_DEPTH * depth)
        & (mismatch <= 0.25 * larger)
    )
    return torch.where(ok[..., None], accel, 0.0)
