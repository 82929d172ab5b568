"""Sampling a keyframe at arbitrary points: bilinear, nearest, bicubic and cubic B-spline.

The splat sharpening (:mod:`~farmplug.inbetween.interpolate.fuse`), the guided warps
(:mod:`~farmplug.inbetween.interpolate.guided`) and the eased paths
(:mod:`~farmplug.inbetween.interpolate.paths`) all read a keyframe at ``(x, y) + displacement``;
:class:`Resampler` holds one keyframe prepared for that once per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.inbetween.interpolate.keys import Plan, Source
from farmplug.motion import gather, positions

_SPLINE_TAPS = 8  # the prefilter's half-width; its taps fall as 0.268^k, 8e-6 relative error


def _spline_coefficients(image: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline coefficients of ``image`` (1,C,H,W): the separable prefilter that makes the
    B-spline pass through the pixel values (Unser's ``sqrt(3) * z^|k|``, ``z = sqrt(3) - 2``,
    truncated at 8 taps, fewer on images under 9 pixels), with mirrored borders."""
    c = image.shape[1]
    pole = math.sqrt(3.0) - 2.0
    taps = torch.tensor(
        [math.sqrt(3.0) * pole ** abs(k) for k in range(-_SPLINE_TAPS, _SPLINE_TAPS + 1)],
        device=image.device,
        dtype=image.dtype,
    )
    h, w = image.shape[-2:]
    out = image
    for size, horizontal in ((w, True), (h, False)):
        n = min(_SPLINE_TAPS, size - 1)  # a mirrored pad must be shorter than the image
        if n == 0:
            continue  # one pixel wide: the spline is that constant
        kernel = taps[_SPLINE_TAPS - n : _SPLINE_TAPS + n + 1]
        pad, shape = ((n, n, 0, 0), (c, 1, 1, -1)) if horizontal else ((0, 0, n, n), (c, 1, -1, 1))
        out = F.conv2d(F.pad(out, pad, mode="reflect"), kernel.view(shape[2:]).expand(shape), groups=c)
    return out


def _spline_sample(coefficients: torch.Tensor, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cubic B-spline interpolation of prefiltered ``coefficients`` at ``(x, y) + displacement``,
    as four bilinear fetches (the B-spline weights are positive, so each pair of taps is one
    bilinear sample between them: Sigg and Hadwiger, GPU Gems 2, ch. 20)."""
    t, h, w = displacement.shape[:3]
    x, y, inside = positions(displacement)

    def axis(pos: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
        pos = pos.clamp(0, size - 1)
        base = torch.floor(pos)
        f = pos - base
        w0, w3 = (1 - f) ** 3 / 6, f**3 / 6
        w1 = (3 * f**3 - 6 * f**2 + 4) / 6
        g0, g1 = w0 + w1, 1 - (w0 + w1)
        p0 = base - 1 + w1 / g0
        p1 = base + 1 + w3 / g1.clamp_min(1e-8)
        scale = 2 / max(size - 1, 1)
        return p0 * scale - 1, p1 * scale - 1, g0, g1

    x0, x1, gx0, gx1 = axis(x, w)
    y0, y1, gy0, gy1 = axis(y, h)
    image = coefficients.expand(t, -1, -1, -1)
    out = torch.zeros(t, coefficients.shape[1], h, w, device=coefficients.device)
    for gx, gy, px, py in ((gx0, gy0, x0, y0), (gx1, gy0, x1, y0), (gx0, gy1, x0, y1), (gx1, gy1, x1, y1)):
        sample = F.grid_sample(
            image, torch.stack([px, py], dim=-1), mode="bilinear", padding_mode="reflection", align_corners=True
        )
        out += (gx * gy)[:, None] * sample
    return out, inside[:, None]


@dataclass(frozen=True)
class Resampler:
    """One keyframe prepared for resampling, once per call and shared by the splat sharpening
    (:func:`~farmplug.inbetween.interpolate.fuse.resample_side`) and the guided warps
    (:func:`~farmplug.inbetween.interpolate.guided.guided_fusion`).

    ``image`` holds the resampled channels (colour and blended layers, see
    :attr:`~farmplug.inbetween.interpolate.keys.Plan.resampled_channels`), sampled with
    ``mode``: ``spline`` (cubic B-spline), ``bicubic`` (Keys, a = -0.75) or ``bilinear`` (also
    for ``splat``). Cubic overshoot (ringing around bright edges, negative values in HDR) is
    clamped to the range of the 2x2 source pixels around each sample. ``probe`` (depth,
    velocity, footprint invalidity) is always sampled bilinearly: no overshoot, and a sample
    counts as valid only when every source pixel under the kernel is finite. The spline's
    prefilter reaches 8 pixels along rows and columns, so samples within that reach of a
    non-finite source pixel are taken bicubic instead: a bad pixel then touches only its 4x4
    footprint.
    """

    mode: str
    channels: list[int]
    image: torch.Tensor
    probe: torch.Tensor
    coefficients: torch.Tensor | None
    bounds: torch.Tensor | None
    spline_unsafe: torch.Tensor | None

    def sample(self, displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Resampled channels (T,C,H,W), probe (T,4,H,W: depth, velocity x/y, invalid share)
        and the in-frame mask (T,1,H,W) at ``(x, y) + displacement`` (T,H,W,2)."""
        probe, inside = gather(self.probe, displacement, "bilinear")
        if self.mode == "bilinear":
            sampled, _ = gather(self.image, displacement, "bilinear")
            return sampled, probe, inside
        if self.coefficients is not None:
            sampled, _ = _spline_sample(self.coefficients, displacement)
            if self.spline_unsafe is not None:
                near, _ = gather(self.spline_unsafe, displacement, "nearest")
                cubic, _ = gather(self.image, displacement, "bicubic")
                sampled = torch.where(near > 0, cubic, sampled)
        else:
            sampled, _ = gather(self.image, displacement, "bicubic")
        c = self.image.shape[1]
        # The 2x2 neighbourhood starting at floor(x, y): nearest sampling half a pixel up-left.
        bounds, _ = gather(self.bounds, displacement - 0.5, "nearest")
        return torch.minimum(torch.maximum(sampled, bounds[:, :c]), bounds[:, c:]), probe, inside


def make_resampler(source: Source, plan: Plan, mode: str, h: int, w: int) -> Resampler:
    """Prepare one keyframe for :class:`Resampler` sampling with ``mode`` (a ``settings.resample`` value)."""
    channels = plan.resampled_channels
    image = source.features[channels].view(1, len(channels), h, w)
    invalid = (~source.valid).float().view(1, 1, h, w)
    clean = bool(source.valid.all())
    mode = "bilinear" if mode in ("splat", "bilinear") else mode
    if mode == "spline" and min(h, w) <= _SPLINE_TAPS:
        mode = "bicubic"  # too small for the spline's prefilter
    footprint = invalid if clean or mode == "bilinear" else F.max_pool2d(invalid, 3, stride=1, padding=1)
    velocity = source.features[plan.velocity].view(1, 2, h, w)
    parts = [source.depth.view(1, 1, h, w), velocity, footprint]
    if source.accel is not None:
        # In the velocity's direction (forward in time), as the refinement reads it.
        sign = 1.0 if source.forward else -1.0
        parts.append((source.accel * sign).t().reshape(1, 2, h, w))
    probe = torch.cat(parts, dim=1)
    coefficients = bounds = unsafe = None
    if mode != "bilinear":
        padded = F.pad(image, (0, 1, 0, 1), mode="replicate")
        corners = (padded[..., :-1, :-1], padded[..., :-1, 1:], padded[..., 1:, :-1], padded[..., 1:, 1:])
        low = torch.minimum(torch.minimum(corners[0], corners[1]), torch.minimum(corners[2], corners[3]))
        high = torch.maximum(torch.maximum(corners[0], corners[1]), torch.maximum(corners[2], corners[3]))
        bounds = torch.cat([low, high], dim=1)
    if mode == "spline":
        coefficients = _spline_coefficients(image)
        if not clean:
            reach = 2 * (_SPLINE_TAPS + 2) + 1
            unsafe = F.max_pool2d(invalid, reach, stride=1, padding=reach // 2)
    return Resampler(
        mode=mode, channels=channels, image=image, probe=probe, coefficients=coefficients, bounds=bounds,
        spline_unsafe=unsafe,
    )

