"""The public types of :func:`farmplug.inbetween.interpolate.interpolate`: its inputs, settings and results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch

from farmplug.errors import FarmplugError

LayerKind = Literal["color", "normal", "depth", "vector", "id", "scalar"]
LAYER_KINDS: tuple[str, ...] = ("color", "normal", "depth", "vector", "id", "scalar")


@dataclass(frozen=True)
class Layer:
    """One image layer of a keyframe.

    Attributes:
        data: ``HxWxC`` float32 pixels.
        kind: How the layer may be interpolated: ``color`` and ``scalar`` blend; ``normal``
            blends then renormalises; ``depth`` keeps the nearest surface; ``vector`` with 4
            channels is a Blender Vector pass and is re-derived (2 channels blend); ``id``
            (object/material index, Cryptomatte ids) is never blended.
    """

    data: np.ndarray
    kind: LayerKind


@dataclass(frozen=True)
class Keyframe:
    """A fully rendered frame with the AOVs interpolation needs.

    Attributes:
        frame: Frame number.
        color: ``HxWx4`` premultiplied RGBA (as Cycles writes Combined) or ``HxWx3``.
        depth: ``HxW`` distance (Cycles Depth; background about 1e10).
        to_prev: ``HxWx2`` image-space displacement to the previous frame.
        to_next: ``HxWx2`` image-space displacement to the next frame.
        layers: Every other layer (albedo, normal, object index, ...) by name.
    """

    frame: int
    color: np.ndarray
    depth: np.ndarray
    to_prev: np.ndarray
    to_next: np.ndarray
    layers: Mapping[str, Layer] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Guide:
    """A cheap render of the target frame itself (aux passes at 1-4 spp).

    Attributes:
        depth: ``HxW`` depth of the target frame.
        to_prev: ``HxWx2`` displacement to the target's previous frame.
        to_next: ``HxWx2`` displacement to the target's next frame.
        color: Optional cheap (e.g. denoised low-spp) colour used to fill disocclusions.
        albedo: Optional ``HxWx3`` albedo; replaces a keyframe layer named ``albedo``.
        normal: Optional ``HxWx3`` normal; replaces a keyframe layer named ``normal``.
    """

    depth: np.ndarray
    to_prev: np.ndarray
    to_next: np.ndarray
    color: np.ndarray | None = None
    albedo: np.ndarray | None = None
    normal: np.ndarray | None = None


@dataclass(frozen=True)
class InterpolationSettings:
    """Tuning of :func:`interpolate`.

    Attributes:
        depth_softness: Soft z-buffer temperature, relative to the nearest depth: a surface
            ``depth_softness * zmin`` behind the nearest one weighs ``exp(-1)``.
        max_motion_px: Motion over the keyframe step (pixels) above which confidence falls;
            it reaches 0 at twice this.
        confidence_threshold: Per-pixel confidence counted as good by the ``low_confidence``
            statistic (the frame score does not use it).
        one_sided_confidence: Confidence of a pixel seen by one keyframe only (outside the
            other's frame or occluded in it): predicted from the side that sees it, but with no
            second prediction to check it against.
        guided_one_sided_confidence: The same for a guided target, where the guide's depth
            confirms that the one side brings the right surface.
        score_window: Side of the square window of the frame score, as a share of the
            image's shorter side.
        guide_depth_tolerance: Relative depth difference (guided mode) at which a warped
            keyframe or the splat is trusted ``exp(-1)``.
        resample: How a keyframe is sampled where the splat (or the guide) says a target pixel's
            surface was: ``bicubic`` (Keys, the default), ``spline`` (a prefiltered cubic
            B-spline: sharper, and slower), ``bilinear``, or ``splat`` (no resampling: the
            bilinear splat alone, about half a pixel softer; guided warps then sample
            bilinearly).
        static_appearance: Also consider, per pixel, that the colour stays put on screen while
            the surface moves (reflections on a turning object), and use it where it explains
            the two keyframes clearly better than the vectors.
        partial_coverage: Where the nearest surface's splat covers only part of a pixel (an
            outline moving by a fraction of a pixel, or not with its surface: an object turning
            in place), the surfaces behind show through the rest instead of being hidden by
            the soft z-buffer; the depth stays the nearest surface's.
        shading_context: Guided mode: a keyframe's colour counts less where the geometry
            around the pixel (within this share of the shorter image side) differs from the
            guide's, as where a moving object's shadow or reflection stays behind on the floor
            it left. 0 switches it off.
        acceleration: At a keyframe step above 2, move each surface on a path of constant
            acceleration that starts with its vector in one keyframe and ends with its vector
            in the other (eased animation), instead of at constant velocity.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    depth_softness: float = 0.05
    max_motion_px: float = 48.0
    confidence_threshold: float = 0.5
    one_sided_confidence: float = 0.5
    guided_one_sided_confidence: float = 0.8
    score_window: float = 0.1
    guide_depth_tolerance: float = 0.05
    resample: Literal["bicubic", "spline", "bilinear", "splat"] = "bicubic"
    static_appearance: bool = True
    partial_coverage: bool = True
    shading_context: float = 0.1
    acceleration: bool = True
    device: str = "auto"


@dataclass(frozen=True)
class Interpolated:
    """One in-between frame.

    Attributes:
        frame: Frame number.
        color: Same channels as the keyframe colour (premultiplied if it was).
        depth: ``HxW`` depth (the guide's in guided mode).
        to_prev: ``HxWx2`` displacement to the previous frame (re-derived, or the guide's).
        to_next: ``HxWx2`` displacement to the next frame.
        layers: Same names and channels as the keyframe layers.
        confidence: ``HxW`` in [0, 1].
        score: Frame score in [0, 1]: 1 - the worst windowed mean of ``1 - confidence``
            (see :mod:`farmplug.inbetween.interpolate`).
        stats: ``coverage`` (share seen by at least one keyframe), ``disoccluded`` (seen by one
            only), ``holes`` (by none), ``disagreement`` (mean tone-mapped difference where two
            predictions exist), ``max_motion_px``, ``invalid_sources`` (non-finite source
            pixels), ``mean_confidence``, ``guided`` (1 or 0).
    """

    frame: int
    color: np.ndarray
    depth: np.ndarray
    to_prev: np.ndarray
    to_next: np.ndarray
    layers: dict[str, np.ndarray]
    confidence: np.ndarray
    score: float
    stats: dict[str, float]


def resolve_device(name: str) -> torch.device:
    """The torch device for a settings name.

    Args:
        name: ``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Returns:
        The device.

    Raises:
        FarmplugError: an unknown name, or CUDA asked for but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise FarmplugError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name)
    raise FarmplugError(f"unknown device {name!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
