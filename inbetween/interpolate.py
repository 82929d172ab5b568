"""Render-aware frame interpolation: in-between frames from two rendered keyframes and their AOVs.

Unlike colour-only optical flow, a renderer gives exact per-pixel motion (the Vector pass, see
:mod:`farmplug.inbetween.vectors`) and depth, so the in-between frame is built by moving pixels,
not by guessing their motion:

1. **Forward splat.** Keyframe A is splatted to each target ``t`` along ``(t - a) * A.to_next``
   and keyframe B along ``(b - t) * B.to_prev`` (constant velocity; exact for one frame; at a
   step above 2, a path of constant acceleration that ends with the other keyframe's vector,
   :func:`_path_acceleration`).
   Every source pixel lands bilinearly on four target pixels (``index_add_``). Overlaps are
   resolved by a **soft z-buffer over both keyframes together**: ``zmin`` per target pixel is
   the nearest depth any contribution brings (``scatter_reduce(amin)``), and each contribution is
   weighted by ``exp(-(z - zmin) / (depth_softness * zmin))``, so a background pixel never mixes
   into a foreground one (no ghosts) while samples of the same surface blend smoothly. Where
   the nearest surface's footprints cover only part of a pixel, the surfaces behind show
   through the rest (:func:`_leak`).
2. **Fuse in time.** Each side is normalised by its own splat weight and the two are mixed with
   ``(1 - s) * weight_A`` and ``s * weight_B`` (``s = (t - a) / (b - a)``).
3. **Resample** (``settings.resample``): the splat also carries each side's own motion to every
   target pixel, so each side's keyframe is resampled with a clamped cubic kernel where the
   target pixel's surface was, which undoes the bilinear splat's half-pixel blur (same-surface
   depth check; depth and velocity stay with the splat).
   **Static appearance** (after step 4): where the same surface is at a pixel in A, B and the target and the
   pixel's own colour explains A and B clearly better than the vectors (reflections on a
   turning object), the colour is taken from the pixel (:func:`_static_appearance`).
4. **Guided mode** (a :class:`Guide` gives the target's own cheap depth and vectors): A and B are
   also backward-warped into ``t`` along the guide's ``(t - a) * to_prev`` / ``(b - t) * to_next``
   (exact when ``t - a == 1`` / ``b - t == 1``). A warped keyframe counts where its depth agrees
   with the guide's, the splat counts where its depth agrees with the guide's, and the guide's
   depth and vectors become the output's.
5. **Holes** nobody covers are filled by the guide's colour when there is one, else by push-pull
   (a weighted image pyramid) for continuous layers, by the farthest neighbouring depth for
   depth (a disocclusion reveals background) and by the nearest contributor for id layers.

Per-pixel confidence (all terms in [0, 1]; the formula and the measurements behind it are in
``docs/inbetween.md``)::

    confidence = visibility * agreement * motion * (1 - invalid)
    visibility = seen * (o + (1 - o) * checked)
    seen       = max(tol_A, tol_B)          tol_X = 3x3 maximum of cov_X (bridges cracks)
    checked    = max(min(cov_A, cov_B), tol_A * outside_B, tol_B * outside_A)
    agreement  = 1 - min(cov_A, cov_B) * (1 - exp(-(d / 0.1) ** 2)),  d = mean |tm(pred_A) - tm(pred_B)|
    motion     = clip(2 - step_motion_px / max_motion_px, 0, 1)

with ``cov_X`` one side's coverage of its own front surface, ``outside_X`` whether the pixel,
moved along its velocity, lies outside keyframe X's frame (one-sided for that reason is as safe
as two-sided), ``o`` the confidence of a pixel seen by one side only because the other side's
view of it is occluded (0.5; 0.8 guided, where the guide's depth confirms the surface), ``tm``
the Reinhard curve ``x / (1 + x)`` and ``invalid`` the share of non-finite source pixels that
would have landed there. The frame **score** is ``1 - `` the largest mean of ``1 - confidence``
over square windows ``score_window`` x the shorter image side wide: one compact bad region
fails a frame however good the rest is.

torch is imported by this module only; ``import farmplug`` never loads it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias

from farmplug.errors import FarmplugError
from farmplug.inbetween.vectors import join_blender_vectors

log = logging.getLogger(__name__)

LayerKind = Literal["color", "normal", "depth", "vector", "id", "scalar"]
LAYER_KINDS: tuple[str, ...] = ("color", "normal", "depth", "vector", "id", "scalar")

_EPS = 1e-4  # bilinear weights below this do not count as a contribution
_HOLE = 1e-3  # total splat weight below this is a hole
_AGREEMENT_SCALE = 0.1  # tone-mapped colour difference that drops agreement to exp(-1)
# A side covers a pixel fully from a splat weight of 1 / _FULL_COVERAGE: samples of one surface
# at slightly different depths (a floor at a grazing angle) weigh less than 1 in the soft
# z-buffer, and a magnified surface's bilinear footprints sum to less than 1 between samples.
_FULL_COVERAGE = 2.0
_COVER_DEPTH = 2.0  # samples within this many depth_softness of the nearest are front surface
# One side's nearest surface this far (relative) behind the other side's is hidden by it.
_HIDDEN_DEPTH = 0.3
# The static-appearance hypothesis (see _static_appearance): the same surface at a pixel in A, B and
# the target when depths agree within this share, and it takes over fully when its A/B difference
# is this much (tone-mapped) below the vectors'.
_STATIC_DEPTH = 0.02
_STATIC_KEY_DEPTH = 0.005
_STATIC_MARGIN = 0.05
# A resampled side replaces the other side's plain splat where its own splat weight is above this
# (a real footprint, not a neighbour's grazing corner).
_SHARP_COVER = 0.25
# A warp whose surroundings hold this share more pixels unlike the guide's geometry than the other
# warp's has no weight (linear fade in between; _shading_context).
_CONTEXT_MARGIN = 0.1
# A surface's depth at both ends of its path may differ by this share (camera moves) and still count
# as the same surface for its acceleration (_with_acceleration).
_ACCEL_DEPTH = 0.15
_REFINE_TOLERANCE = 0.1  # pixels: a refined displacement must be this stable (_refine_displacement)


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
            surface was: ``bicubic`` (the default), ``spline`` (cubic B-spline: 0.2-0.3 dB
            better on the benchmark, 1.3-1.5x the time), ``bilinear``, or ``splat`` (no
            resampling: the bilinear splat alone, about half a pixel softer; guided warps then
            sample bilinearly).
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
            (see the module docstring).
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


# --- validation --------------------------------------------------------------------------------


def _shape(array: object) -> tuple[int, ...]:
    return tuple(int(n) for n in getattr(array, "shape", ()))


def _validate(a: Keyframe, b: Keyframe, frames: Sequence[int], guides: Mapping[int, Guide]) -> tuple[int, int]:
    size = _shape(a.depth)
    if len(size) != 2:
        raise FarmplugError(f"keyframe {a.frame}: depth must be HxW, not {size}")
    h, w = size
    for key in (a, b):
        expected = {"depth": (h, w), "to_prev": (h, w, 2), "to_next": (h, w, 2)}
        for name, shape in expected.items():
            got = _shape(getattr(key, name))
            if got != shape:
                raise FarmplugError(
                    f"keyframe {key.frame}: {name} is {got} but keyframe {a.frame}'s resolution needs {shape}"
                )
        color = _shape(key.color)
        if len(color) != 3 or color[:2] != (h, w) or color[2] not in (3, 4):
            raise FarmplugError(f"keyframe {key.frame}: color is {color}, expected {(h, w)} x 3 or 4 channels")
        for name, layer in key.layers.items():
            if layer.kind not in LAYER_KINDS:
                raise FarmplugError(
                    f"keyframe {key.frame}: layer {name!r} has unknown kind {layer.kind!r}; allowed: {list(LAYER_KINDS)}"
                )
            shape = _shape(layer.data)
            if len(shape) != 3 or shape[:2] != (h, w):
                raise FarmplugError(f"keyframe {key.frame}: layer {name!r} is {shape}, expected {(h, w)} x C")
    if _shape(a.color)[2] != _shape(b.color)[2]:
        raise FarmplugError(
            f"keyframes differ in colour channels: {a.frame} has {_shape(a.color)[2]}, {b.frame} has {_shape(b.color)[2]}"
        )
    if set(a.layers) != set(b.layers):
        raise FarmplugError(
            f"keyframes differ in layers: only in {a.frame}: {sorted(set(a.layers) - set(b.layers))}, "
            f"only in {b.frame}: {sorted(set(b.layers) - set(a.layers))}"
        )
    for name in a.layers:
        la, lb = a.layers[name], b.layers[name]
        if la.kind != lb.kind or _shape(la.data)[2] != _shape(lb.data)[2]:
            raise FarmplugError(
                f"layer {name!r} differs between keyframes: {la.kind} x{_shape(la.data)[2]} in {a.frame}, "
                f"{lb.kind} x{_shape(lb.data)[2]} in {b.frame}"
            )
    if not a.frame < b.frame:
        raise FarmplugError(f"keyframe A ({a.frame}) must come before keyframe B ({b.frame})")
    if not frames:
        raise FarmplugError("no frames to interpolate")
    outside = sorted(int(t) for t in frames if not a.frame < int(t) < b.frame)
    if outside:
        raise FarmplugError(f"frames {outside} are not strictly between keyframes {a.frame} and {b.frame}")
    if len(set(int(t) for t in frames)) != len(frames):
        raise FarmplugError(f"frames repeat: {list(frames)}")
    for t, guide in guides.items():
        if int(t) not in {int(f) for f in frames}:
            raise FarmplugError(f"guide for frame {t}, which is not among the frames to interpolate {list(frames)}")
        for name, shape in {"depth": (h, w), "to_prev": (h, w, 2), "to_next": (h, w, 2)}.items():
            if _shape(getattr(guide, name)) != shape:
                raise FarmplugError(f"guide {t}: {name} is {_shape(getattr(guide, name))}, keyframes need {shape}")
        for name, channels in (("color", (3, _shape(a.color)[2])), ("albedo", (3,)), ("normal", (3,))):
            value = getattr(guide, name)
            if value is not None and (
                _shape(value)[:2] != (h, w) or len(_shape(value)) != 3 or _shape(value)[2] not in channels
            ):
                raise FarmplugError(f"guide {t}: {name} is {_shape(value)}, keyframes need {(h, w)} x {channels}")
    return h, w


# --- packing the keyframe into one feature tensor ---------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Where each output lives in the packed continuous feature tensor."""

    color: slice
    depth: int
    velocity: slice  # displacement per frame, forward in time (A: to_next, B: -to_prev)
    continuous: dict[str, slice]
    normals: tuple[str, ...]
    depths: tuple[str, ...]
    blender_vectors: tuple[str, ...]
    ids: tuple[str, ...]
    channels: int


def _plan(key: Keyframe) -> _Plan:
    c = _shape(key.color)[2]
    offset = c + 1 + 2
    continuous: dict[str, slice] = {}
    normals, depths, vectors, ids = [], [], [], []
    for name, layer in key.layers.items():
        width = _shape(layer.data)[2]
        if layer.kind == "id":
            ids.append(name)
            continue
        if layer.kind == "vector" and width == 4:
            vectors.append(name)
            continue
        continuous[name] = slice(offset, offset + width)
        offset += width
        if layer.kind == "normal":
            normals.append(name)
        elif layer.kind == "depth":
            depths.append(name)
    return _Plan(
        color=slice(0, c),
        depth=c,
        velocity=slice(c + 1, c + 3),
        continuous=continuous,
        normals=tuple(normals),
        depths=tuple(depths),
        blender_vectors=tuple(vectors),
        ids=tuple(ids),
        channels=offset,
    )


@dataclass(frozen=True)
class _Source:
    """One keyframe on the device: packed features (F x HW, channel-major so that weighting and
    splatting run along contiguous rows), ids (HW x K), depth, validity."""

    features: torch.Tensor
    ids: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    splat_vector: torch.Tensor  # HW x 2, displacement per frame towards the targets
    # HW x 2, per frame squared (see _path_acceleration): k frames away the surface has moved by
    # k * splat_vector + k * (k - 1) * accel. None: constant velocity (a step of 2 or less).
    accel: torch.Tensor | None = None
    forward: bool = True  # keyframe A (splats forward in time) or B


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


def _source(key: Keyframe, plan: _Plan, forward: bool, step: int, device: torch.device) -> _Source:
    h, w = _shape(key.depth)
    color = _tensor(key.color, device).reshape(h * w, -1)
    depth = _tensor(key.depth, device).reshape(h * w)
    to_prev = _tensor(key.to_prev, device).reshape(h * w, 2)
    to_next = _tensor(key.to_next, device).reshape(h * w, 2)
    # Constant velocity: the surface keeps the per-frame displacement it has at the keyframe.
    velocity = to_next if forward else -to_prev
    parts = [color, depth[:, None], velocity]
    parts += [_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.continuous]
    features = torch.cat([part.t() for part in parts], dim=0)
    ids = [_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.ids]
    id_tensor = torch.cat(ids, dim=1) if ids else torch.zeros(h * w, 0, device=device)
    valid = torch.isfinite(features).all(dim=0) & (depth > 0)
    if id_tensor.shape[1]:
        valid &= torch.isfinite(id_tensor).all(dim=1)
    splat_vector = to_next if forward else to_prev
    if bool(valid.all()):
        # The common case: no copies of clean inputs.
        return _Source(features=features, ids=id_tensor, depth=depth.clamp_min(1e-6), valid=valid,
                       splat_vector=splat_vector, forward=forward)
    return _Source(
        features=torch.where(valid[None, :], features, 0.0),
        ids=torch.where(valid[:, None], id_tensor, 0.0),
        depth=torch.where(valid, depth, 1.0).clamp_min(1e-6),
        valid=valid,
        splat_vector=torch.where(torch.isfinite(splat_vector), splat_vector, 0.0),
        forward=forward,
    )


def _with_acceleration(own: _Source, other: _Source, step: int, h: int, w: int) -> _Source:
    """``own`` with its per-pixel acceleration towards ``other``, the keyframe ``step`` frames
    away (:func:`_path_acceleration`); unchanged for a step of 2 or less, where every target is
    one frame from each keyframe."""
    if step <= 2:
        return own
    image = torch.cat([other.splat_vector.t(), other.depth[None], (~other.valid).float()[None]]).view(1, 4, h, w)
    accel = _path_acceleration(
        own.splat_vector.view(1, h, w, 2), torch.tensor([float(step)], device=image.device), image,
        own.depth.view(1, h, w), own.valid.view(1, h, w),
    )
    return replace(own, accel=accel.reshape(-1, 2))


def _path_acceleration(
    first: torch.Tensor, frames: torch.Tensor, other: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per pixel, the acceleration of a surface's path to a keyframe ``frames`` away.

    A Vector pass holds each surface's displacement to the neighbouring frames, exact for one
    frame. Farther than that, constant velocity is a guess, and animation rarely keeps it:
    Blender's default keyframe interpolation eases in and out, so a pan at 4-5 px/frame puts a
    target two frames from a keyframe half a pixel off, and every edge shows it. One end of the
    path gives its first step ``v`` (``first``, T,H,W,2); the keyframe at the other end gives
    its last, ``u`` (``other``: 1,4,H,W holding that keyframe's vectors pointing back, depth
    and invalidity), read where the path ends. The path of constant acceleration
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
        probe, inside = _gather(other, n * first + n * (n - 1) * accel, "bilinear")
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


# --- splatting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Corner:
    index: torch.Tensor  # T*HW padded target index
    weight: torch.Tensor  # T*HW bilinear weight (0 for masked-out sources)


def _corners(source: _Source, scale: torch.Tensor, h: int, w: int, use_valid: bool) -> list[_Corner]:
    """Bilinear footprints of every source pixel moved by ``scale[t] * splat_vector`` (plus
    ``scale[t] * (scale[t] - 1) * accel`` where the source has an acceleration).

    Targets are padded by a border ring (see :func:`_padded`): positions are clamped into
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
        _Corner(index=base, weight=gx * gy),
        _Corner(index=base + 1, weight=fx * gy),
        _Corner(index=base + wp, weight=gx * fy),
        _Corner(index=base + (wp + 1), weight=fx * fy),
    ]


def _padded(t: int, h: int, w: int) -> int:
    """Pixels of ``t`` targets with a border ring (1 px left and top, 2 px right and bottom,
    where a footprint starting at the clamped ``w`` or ``h`` ends; see :func:`_corners`)."""
    return t * (h + 3) * (w + 3)


def _crop(flat: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Channel-major padded targets (C x T*(H+3)*(W+3)) -> T x C x H x W, ring cropped."""
    c = flat.shape[0]
    return flat.view(c, t, h + 3, w + 3)[:, :, 1 : h + 1, 1 : w + 1].permute(1, 0, 2, 3).contiguous()


@dataclass(frozen=True)
class _Splat:
    acc: torch.Tensor  # F x P weighted feature sums (P: padded target pixels, see _padded)
    wsum: torch.Tensor  # P soft-z weight sums
    cover: torch.Tensor  # P bilinear weight sums of front-surface samples
    scores: list[torch.Tensor]  # per corner, contribution score (for id selection)
    # With partial coverage: the depth rows' sums over the nearest surface (plain soft z-buffer
    # weights) and over what shows through behind it, with their weights (see _select_depth).
    depth_parts: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def _splat_pair(
    sources: tuple[_Source, _Source],
    corners: tuple[list[_Corner], list[_Corner]],
    time_weights: tuple[torch.Tensor, torch.Tensor],
    n: int,
    softness: float,
    keep_scores: bool,
    depth_rows: list[int],
    partial: bool,
) -> tuple[_Splat, _Splat, torch.Tensor | None]:
    """Soft z-buffered splat of both keyframes against one shared nearest depth.

    With ``partial``, surfaces behind the nearest one show through the part of the pixel it does
    not cover (:func:`_leak`, returned as well; else None). Depths (``depth_rows`` of the
    features) are never mixed across that: see :func:`_select_depth`.
    """
    device = sources[0].features.device
    t = time_weights[0].shape[0]
    depths = [source.depth.repeat(t) if t > 1 else source.depth for source in sources]
    side_zmin = []
    for z, cs in zip(depths, corners, strict=True):
        zside = torch.full((n,), math.inf, device=device)
        for corner in cs:
            zside.scatter_reduce_(0, corner.index, torch.where(corner.weight > _EPS, z, math.inf), reduce="amin")
        # Pixels nobody reaches get a finite depth, so that zero-weight corners pointing there
        # stay exactly zero below without a mask.
        side_zmin.append(torch.where(torch.isfinite(zside), zside, 1e30))
    zmin = torch.minimum(*side_zmin)
    leak = _leak(depths, corners, zmin, n, softness) if partial else None
    splats = []
    for source, z, cs, tw, zside in zip(sources, depths, corners, time_weights, side_zmin, strict=True):
        hw = source.depth.shape[0]
        features = source.features.repeat(1, t) if t > 1 else source.features
        acc = torch.zeros(source.features.shape[0], n, device=device)
        wsum = torch.zeros(n, device=device)
        cover = torch.zeros(n, device=device)
        if leak is not None:
            k = len(depth_rows)
            parts = (torch.zeros(k, n, device=device), torch.zeros(n, device=device),
                     torch.zeros(k, n, device=device), torch.zeros(n, device=device))
            zfeatures = features[depth_rows]
        scores = []
        tw_full = tw.repeat_interleave(hw) if keep_scores else None
        # Coverage: bilinear weight of this side's own front surface, near its own nearest depth
        # (a surface's depth changes between keyframes when the camera dollies, so the other
        # side's depth is no reference), where that surface is not far behind the other side's.
        cover_limit = zside * (1 + _COVER_DEPTH * softness)
        for corner in cs:
            cover.index_add_(0, corner.index, corner.weight * (z <= cover_limit[corner.index]))
            # exp(-(z - zmin) / (softness * zmin)), at most 1: the nearest surface keeps its weight.
            near = zmin[corner.index]
            rel = (z - near).clamp_min_(0).div_(near.mul_(softness))
            weight = rel.neg_().exp_().mul_(corner.weight)
            if leak is not None:
                through = (corner.weight - weight).mul_(leak[corner.index])
                parts[0].index_add_(1, corner.index, zfeatures * weight)
                parts[1].index_add_(0, corner.index, weight)
                parts[2].index_add_(1, corner.index, zfeatures * through)
                parts[3].index_add_(0, corner.index, through)
                weight = weight + through
            acc.index_add_(1, corner.index, features * weight)
            wsum.index_add_(0, corner.index, weight)
            if keep_scores:
                scores.append(weight * tw_full)
        if leak is not None:
            acc[depth_rows] = _select_depth(*parts, leak) * wsum
        cover = torch.where(zside <= zmin * (1 + _HIDDEN_DEPTH), cover, 0.0)
        splats.append(_Splat(acc=acc, wsum=wsum, cover=cover, scores=scores, depth_parts=parts if leak is not None else None))
    return splats[0], splats[1], leak


def _select_depth(
    front: torch.Tensor, front_w: torch.Tensor, behind: torch.Tensor, behind_w: torch.Tensor, leak: torch.Tensor
) -> torch.Tensor:
    """Depth of the surface that covers most of each pixel, never a mix of two surfaces.

    ``front``/``behind`` are depth sums (rows x pixels, any layout with pixels last) over the
    nearest surface and over what shows through the ``leak`` it leaves, ``front_w``/``behind_w``
    their weights. The nearest surface's depth where it covers at least half the pixel (or
    nothing shows through), else the depth behind it.
    """
    use_behind = (leak > 0.5) & (behind_w > _EPS)
    return torch.where(use_behind, behind / behind_w.clamp_min(1e-30), front / front_w.clamp_min(1e-30))


def _depth_rows(plan: _Plan) -> list[int]:
    """Feature rows holding depths: the main depth and every depth-kind layer."""
    return [plan.depth, *(i for name in plan.depths for i in range(plan.continuous[name].start, plan.continuous[name].stop))]


def _leak(
    depths: list[torch.Tensor], corners: tuple[list[_Corner], list[_Corner]], zmin: torch.Tensor, n: int, softness: float
) -> torch.Tensor:
    """Per padded target pixel, the share (0-1) that the nearest surface leaves uncovered.

    The soft z-buffer gives the nearest surface at a pixel all the weight, however little of the
    pixel its footprints cover. Where an outline moves by a fraction of a pixel, or does not
    follow its surface's vectors at all (an object turning in place: its silhouette stays while
    the surface at it slides along), a footprint grazing the pixel then replaces a background
    that both keyframes see whole. The nearest surface's coverage is the larger of the two
    sides' bilinear weight within ``_COVER_DEPTH`` softness of it (the larger, not the mean: a
    side whose view of that surface is occluded must not let its background through), and
    surfaces behind weigh ``w * (e + (1 - e) * leak)`` instead of ``w * e`` (``e`` the soft
    z-buffer's factor). Behind a whole surface the leak is 0 and nothing changes; inside a
    magnified surface, whose footprints sum to less than 1 between samples, nothing lands from
    behind to leak through.
    """
    front_limit = zmin * (1 + _COVER_DEPTH * softness)
    front = torch.zeros(n, device=zmin.device)
    for z, cs in zip(depths, corners, strict=True):
        side = torch.zeros(n, device=zmin.device)
        for corner in cs:
            side.index_add_(0, corner.index, corner.weight * (z <= front_limit[corner.index]))
        front = torch.maximum(front, side)
    return front.neg_().add_(1).clamp_(0, 1)


def _select_ids(
    sources: tuple[_Source, _Source],
    corners: tuple[list[_Corner], list[_Corner]],
    splats: tuple[_Splat, _Splat],
    n: int,
    t: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target pixel, the id values of the single highest-scoring contributor."""
    device = sources[0].ids.device
    k = sources[0].ids.shape[1]
    best = torch.zeros(n, device=device)
    for cs, splat in zip(corners, splats, strict=True):
        for corner, score in zip(cs, splat.scores, strict=True):
            best.scatter_reduce_(0, corner.index, score, reduce="amax")
    out = torch.zeros(n, k, device=device)
    if k:
        for source, cs, splat in zip(sources, corners, splats, strict=True):
            ids = source.ids.repeat(t, 1)
            for corner, score in zip(cs, splat.scores, strict=True):
                win = (score > 0) & (score >= best[corner.index])
                out[corner.index[win]] = ids[win]
    return out, best


# --- resampling --------------------------------------------------------------------------------


def _resample_channels(plan: _Plan) -> list[int]:
    """Packed channels that are resampled: colour and every blended layer (not depth, not velocity)."""
    keep = list(range(plan.color.start, plan.color.stop))
    for name, sl in plan.continuous.items():
        if name not in plan.depths:
            keep.extend(range(sl.start, sl.stop))
    return keep


def _resample_side(
    resampler: _Resampler,
    acc: torch.Tensor,
    wsum: torch.Tensor,
    back: torch.Tensor,
    plan: _Plan,
    settings: InterpolationSettings,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sharpen one side's splat in place: resample its keyframe where the splat says it came from.

    A bilinear splat is a bilinear resampling, twice over where footprints overlap: edges and
    texture lose about half a pixel of sharpness. The splat also carries the side's own motion
    to every target pixel (forward-splatting the vectors reverses them), so each target pixel
    knows where in the keyframe its surface was: ``p + back * velocity``. The keyframe is
    sampled there (:class:`_Resampler`) and the result replaces the splat's colour and blended
    layers wherever the keyframe's depth there matches the splat's depth (the same surface, not
    one that covers it there) and every source pixel under the kernel is finite.

    Returns:
        How much of each target pixel (T,1,H,W, 0-1) was resampled, and, on eased paths, half
        the surface's per-frame change of velocity there (T,2,H,W: ``to_next`` is the velocity
        plus it, ``to_prev`` minus the velocity minus it; None at constant velocity).
    """
    side = acc / wsum.clamp_min(1e-8)
    velocity = side[:, plan.velocity]
    disp = (velocity * back[:, None, None, None]).permute(0, 2, 3, 1)
    disp = _refine_displacement(resampler, disp, back)
    channels = resampler.channels
    sampled, probe, inside = resampler.sample(disp)
    z_side = side[:, plan.depth : plan.depth + 1]
    tolerance = _COVER_DEPTH * settings.depth_softness
    same = torch.exp(-(probe[:, :1] - z_side).abs() / (tolerance * z_side.clamp_min(1e-6)))
    use = same * (probe[:, 3:4] < 1e-3) * inside * (wsum > _HOLE)
    current = side[:, channels]
    acc[:, channels] = (current + use * (sampled - current)) * wsum
    if probe.shape[1] == 4:
        return use, None
    # On an eased path the surface's velocity at the target is not the keyframe's: over the two
    # frames around it, v + (2k - 1) * a, k frames from the keyframe, with v and a as the probe
    # holds them (forward in time; _path_acceleration). The one-frame steps either side of the
    # target differ from that by the path's c, which is a for A and -a for B (its path runs
    # backwards in time, and a second difference keeps its sign).
    k = back.abs()[:, None, None, None]
    current = side[:, plan.velocity]
    moving = probe[:, 1:3] + (2 * k - 1) * probe[:, 4:6]
    acc[:, plan.velocity] = (current + use * (moving - current)) * wsum
    return use, use * probe[:, 4:6] * -back.sign()[:, None, None, None]


def _refine_displacement(resampler: _Resampler, disp: torch.Tensor, back: torch.Tensor) -> torch.Tensor:
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

    probe, _ = _gather(resampler.probe, disp, "bilinear")
    refined = along(probe)
    probe, _ = _gather(resampler.probe, refined, "bilinear")
    again = along(probe)
    step = again - refined
    converged = (step[..., :1].square() + step[..., 1:].square()) < _REFINE_TOLERANCE**2
    return torch.where(converged, refined, disp)


# --- appearance that does not follow the surface ------------------------------------------------------


def _static_appearance(
    src_a: _Source,
    src_b: _Source,
    plan: _Plan,
    fused: torch.Tensor,
    difference: torch.Tensor,
    agreement: torch.Tensor,
    visibility: torch.Tensor,
    targets: list[int],
    guides: Mapping[int, Guide],
    s: torch.Tensor,
    device: torch.device,
    h: int,
    w: int,
    vector_agreement: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A second motion hypothesis for the colour: what stays put on screen.

    Reflections of the surroundings on a turning object, light moving over it and similar
    view-dependent shading do not move with the surface, so the vectors carry them wrongly: the
    two keyframes' predictions then disagree. Where the same surface sits at the pixel in both
    keyframes and in the target (depths within ``_STATIC_DEPTH``), the pixel's own colour in
    A and B, mixed in time, is a second prediction, and its own A/B disagreement says how good
    it is. Per pixel, the static prediction takes over to the degree that it agrees clearly
    better (by ``_STATIC_MARGIN``, both averaged over 5x5); where both agree (a static
    background) nothing changes. Only colour and alpha switch: depth, normals, ids and albedo
    keep following the surface. ``vector_agreement`` (the splat's own A/B agreement, for
    guided targets) counts against the vectors as well where it is the lower.

    Returns:
        The colour-updated ``fused`` and the blended difference, agreement and visibility.
    """
    z_target = fused[:, plan.depth : plan.depth + 1].clone()
    for i, t in enumerate(targets):
        g = guides.get(t)
        if g is not None:
            z_target[i, 0] = _guide_depth(g, device)
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
        return fused, difference, agreement, visibility
    tw_b = s[:, None, None, None]
    static = at_a + tw_b * (at_b - at_a)
    d_static = _difference(at_a, at_b).expand(len(targets), -1, -1, -1)
    # Risks in [0, 1]: the vectors' from their (coverage-weighted) agreement, so pixels seen by
    # one keyframe only (nothing to compare) never count against them.
    static_agreement = _agreement(d_static, torch.ones_like(d_static))
    if vector_agreement is not None:
        # Guided, the warps along the guide's vectors and the splat along the keyframes' own
        # both test whether the colour moves with the surface; either failing counts. (The warps
        # of a turning metal sphere agree with each other while its reflections stay put.)
        agreement_v = torch.minimum(agreement, vector_agreement)
    else:
        agreement_v = agreement
    risk_v = F.avg_pool2d(1 - agreement_v, 5, stride=1, padding=2, count_include_pad=False)
    risk_s = F.avg_pool2d(1 - static_agreement, 5, stride=1, padding=2, count_include_pad=False)
    take = same * ((risk_v - risk_s) / _STATIC_MARGIN).clamp(0, 1)
    take = F.avg_pool2d(take, 3, stride=1, padding=1, count_include_pad=False) * same
    fused[:, plan.color] += take * (static - fused[:, plan.color])
    difference = difference + take * (d_static - difference)
    agreement = agreement + take * (static_agreement - agreement)
    visibility = visibility + take * (1 - visibility)
    return fused, difference, agreement, visibility


def _depth_range(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest depth (N,1,H,W) in each pixel's 3x3 neighbourhood."""
    return -F.max_pool2d(-depth, 3, stride=1, padding=1), F.max_pool2d(depth, 3, stride=1, padding=1)


def _within(depth: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor], tolerance: float) -> torch.Tensor:
    """Whether ``depth`` lies in ``bounds`` widened by ``tolerance`` (relative)."""
    low, high = bounds
    return (depth >= low * (1 - tolerance)) & (depth <= high * (1 + tolerance))


# --- hole filling --------------------------------------------------------------------------------


def _push_pull(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels of ``values`` (N,C,H,W) from a weighted pyramid of the known ones."""
    h, w = values.shape[-2:]
    if bool(known.all()) or (h <= 1 and w <= 1):
        return values
    weight = known.to(values.dtype)
    padded_v = F.pad(values * weight, (0, w % 2, 0, h % 2))
    padded_w = F.pad(weight, (0, w % 2, 0, h % 2))
    sum_v = F.avg_pool2d(padded_v, 2) * 4
    sum_w = F.avg_pool2d(padded_w, 2) * 4
    coarse = _push_pull(sum_v / sum_w.clamp_min(1e-8), sum_w > 0)
    up = F.interpolate(coarse, size=(coarse.shape[-2] * 2, coarse.shape[-1] * 2), mode="bilinear", align_corners=False)[
        ..., :h, :w
    ]
    return torch.where(known, values, up)


def _select_fill(values: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
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
    coarse = _select_fill(coarse_v, pooled)
    up = F.interpolate(coarse, scale_factor=2, mode="nearest")[..., :h, :w]
    return torch.where(known, values, up)


# --- backward warps (guided mode) --------------------------------------------------------------------


def _positions(displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel positions ``(x, y) + displacement`` (T,H,W,2) as x and y (T,H,W), and whether each
    lies inside the frame."""
    h, w = displacement.shape[1:3]
    device = displacement.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    x = xs + displacement[..., 0]
    y = ys + displacement[..., 1]
    return x, y, (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def _gather(image: torch.Tensor, displacement: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (1,C,H,W) at ``(x, y) + displacement`` (T,H,W,2); also the in-frame mask."""
    t, h, w = displacement.shape[:3]
    x, y, inside = _positions(displacement)
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    sampled = F.grid_sample(image.expand(t, -1, -1, -1), grid, mode=mode, padding_mode="border", align_corners=True)
    return sampled, inside[:, None]


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
    x, y, inside = _positions(displacement)

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
class _Resampler:
    """One keyframe prepared for resampling, once per call and shared by the splat sharpening
    (:func:`_resample_side`) and the guided warps (:func:`_guide`).

    ``image`` holds the resampled channels (colour and blended layers, see
    :func:`_resample_channels`), sampled with ``mode``: ``spline`` (cubic B-spline),
    ``bicubic`` (Keys, a = -0.75) or ``bilinear`` (also for ``splat``). Cubic overshoot (ringing
    around bright edges, negative values in HDR) is clamped to the range of the 2x2 source pixels
    around each sample. ``probe`` (depth, velocity, footprint invalidity) is always sampled
    bilinearly: no overshoot, and a sample counts as valid only when every source pixel under
    the kernel is finite. The spline's prefilter reaches 8 pixels along rows and columns, so
    samples within that reach of a non-finite source pixel are taken bicubic instead: a bad
    pixel then touches only its 4x4 footprint.
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
        probe, inside = _gather(self.probe, displacement, "bilinear")
        if self.mode == "bilinear":
            sampled, _ = _gather(self.image, displacement, "bilinear")
            return sampled, probe, inside
        if self.coefficients is not None:
            sampled, _ = _spline_sample(self.coefficients, displacement)
            if self.spline_unsafe is not None:
                near, _ = _gather(self.spline_unsafe, displacement, "nearest")
                cubic, _ = _gather(self.image, displacement, "bicubic")
                sampled = torch.where(near > 0, cubic, sampled)
        else:
            sampled, _ = _gather(self.image, displacement, "bicubic")
        c = self.image.shape[1]
        # The 2x2 neighbourhood starting at floor(x, y): nearest sampling half a pixel up-left.
        bounds, _ = _gather(self.bounds, displacement - 0.5, "nearest")
        return torch.minimum(torch.maximum(sampled, bounds[:, :c]), bounds[:, c:]), probe, inside


def _resampler(source: _Source, plan: _Plan, mode: str, h: int, w: int) -> _Resampler:
    channels = _resample_channels(plan)
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
    return _Resampler(mode, channels, image, probe, coefficients, bounds, unsafe)


def _as_image(flat: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """T*HW x C -> T x C x H x W."""
    return flat.reshape(t, h, w, -1).permute(0, 3, 1, 2).contiguous()


def _tonemap(rgb: torch.Tensor) -> torch.Tensor:
    rgb = rgb.clamp_min(0)
    return rgb / (1 + rgb)


def _difference(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """Mean tone-mapped absolute RGB difference, (T,C,H,W) -> (T,1,H,W)."""
    return (_tonemap(c1[:, :3]) - _tonemap(c2[:, :3])).abs().mean(dim=1, keepdim=True)


def _agreement(difference: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
    return 1 - both * (1 - torch.exp(-((difference / _AGREEMENT_SCALE) ** 2)))


def _coverage(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One side's coverage (T,1,H,W): raw, and crack-tolerant (the best of each 3x3 window).

    A magnified surface (camera dolly, object coming closer) spreads its source pixels apart,
    so its bilinear splat weighs less than 1 between them or leaves 1-px cracks; push-pull fills
    those from the surface around them. The tolerant coverage counts such pixels as seen.
    """
    raw = (weight * _FULL_COVERAGE).clamp(0, 1)
    return raw, F.max_pool2d(raw, 3, stride=1, padding=1)


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


def _visibility(seen: torch.Tensor, both: torch.Tensor, one_sided: float) -> torch.Tensor:
    """``seen`` (by at least one side, crack-tolerant) scaled from ``one_sided`` up to 1 by ``both``."""
    return seen * (one_sided + (1 - one_sided) * both)


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
    size = max(3, 2 * round(window * min(confidence.shape[-2:]) / 2) + 1)
    return (1 - _box_max(1 - confidence, size)).clamp(0, 1)


def interpolate(
    a: Keyframe,
    b: Keyframe,
    frames: Sequence[int],
    *,
    guides: Mapping[int, Guide] | None = None,
    settings: InterpolationSettings = InterpolationSettings(),  # noqa: B008 - frozen, immutable default
) -> list[Interpolated]:
    """Interpolate the frames strictly between two keyframes, all in one batch.

    Args:
        a: The earlier keyframe.
        b: The later keyframe.
        frames: Target frame numbers, each with ``a.frame < t < b.frame``.
        guides: Optional cheap renders of some targets (depth and vectors, optionally colour),
            by frame number; guided frames are built from the same batch.
        settings: Tuning and device.

    Returns:
        One :class:`Interpolated` per target, in the order of ``frames``; every array finite.

    Raises:
        FarmplugError: the keyframes differ in resolution, colour channels or layers (the
            message says what differs), a target is outside ``(a.frame, b.frame)`` or repeats,
            a guide does not match, or the device is unavailable.
    """
    guides = dict(guides or {})
    h, w = _validate(a, b, frames, guides)
    device = resolve_device(settings.device)
    targets = [int(t) for t in frames]
    step = b.frame - a.frame
    n_t = len(targets)
    n = _padded(n_t, h, w)
    plan = _plan(a)

    with torch.no_grad():
        src_a = _source(a, plan, forward=True, step=step, device=device)
        src_b = _source(b, plan, forward=False, step=step, device=device)
        if settings.acceleration:
            src_a, src_b = _with_acceleration(src_a, src_b, step, h, w), _with_acceleration(src_b, src_a, step, h, w)
        s = torch.tensor([(t - a.frame) / step for t in targets], device=device, dtype=torch.float32)
        scale_a = torch.tensor([float(t - a.frame) for t in targets], device=device)
        scale_b = torch.tensor([float(b.frame - t) for t in targets], device=device)
        corners = (_corners(src_a, scale_a, h, w, True), _corners(src_b, scale_b, h, w, True))
        depth_rows = _depth_rows(plan)
        splat_a, splat_b, leak = _splat_pair(
            (src_a, src_b), corners, (1 - s, s), n, settings.depth_softness, keep_scores=bool(plan.ids),
            depth_rows=depth_rows, partial=settings.partial_coverage,
        )
        if plan.ids:
            ids, id_score = _select_ids((src_a, src_b), corners, (splat_a, splat_b), n, n_t)
        del corners

        # Where non-finite source pixels would have landed (their vectors, if finite, else none).
        invalid = torch.zeros(n, device=device)
        for source, scale in ((src_a, scale_a), (src_b, scale_b)):
            if bool(source.valid.all()):
                continue
            for corner in _corners(source, scale, h, w, False):
                invalid.index_add_(0, corner.index, corner.weight)
        invalid = _crop(invalid[None].clamp(0, 1), n_t, h, w)

        tw_a = (1 - s)[:, None, None, None]
        tw_b = s[:, None, None, None]
        wa = _crop(splat_a.wsum[None], n_t, h, w)
        wb = _crop(splat_b.wsum[None], n_t, h, w)
        acc_a = _crop(splat_a.acc, n_t, h, w)
        acc_b = _crop(splat_b.acc, n_t, h, w)
        resamplers = (
            (_resampler(src_a, plan, settings.resample, h, w), _resampler(src_b, plan, settings.resample, h, w))
            if settings.resample != "splat" or guides
            else None
        )
        mix_a, mix_b = tw_a, tw_b
        accel = accel_a = accel_b = None
        if settings.resample != "splat":
            (use_a, accel_a), (use_b, accel_b) = (
                _resample_side(resampler, acc, wsum, back, plan, settings)
                for resampler, acc, wsum, back in ((resamplers[0], acc_a, wa, -scale_a), (resamplers[1], acc_b, wb, scale_b))
            )
            # A side that could not be resampled at a pixel (its sampling point lies outside its
            # frame, or on another surface) is only a bilinear splat there: half a pixel soft, and
            # at a frame border it is the border row pushed in, a fraction of a pixel off. Where
            # the other side was resampled over a real footprint, it drops out of the mix.
            # (Each side's own prediction, for the agreement below, keeps it.)
            mix_a = tw_a * (1 - (1 - use_a) * use_b * (wb > _SHARP_COVER))
            mix_b = tw_b * (1 - (1 - use_b) * use_a * (wa > _SHARP_COVER))
        # Each side normalised by its own weight, then mixed by (1 - s) * w_A and s * w_B.
        total = mix_a * wa + mix_b * wb
        fused = (acc_a * mix_a).add_(acc_b * mix_b).div_(total.clamp_min(1e-8))
        if accel_a is not None and accel_b is not None:
            accel = (accel_a * (mix_a * wa)).add_(accel_b * (mix_b * wb)).div_(total.clamp_min(1e-8))
        if leak is not None:
            # Depth across both sides: the surface covering most of the pixel (_select_depth).
            parts = [
                _crop(pa.view(-1, n), n_t, h, w) * tw_a + _crop(pb.view(-1, n), n_t, h, w) * tw_b
                for pa, pb in zip(splat_a.depth_parts, splat_b.depth_parts, strict=True)
            ]
            fused[:, depth_rows] = _select_depth(*parts, _crop(leak[None], n_t, h, w))
        fa = acc_a[:, plan.color] / wa.clamp_min(1e-8)
        fb = acc_b[:, plan.color] / wb.clamp_min(1e-8)
        del acc_a, acc_b
        covered = total > _HOLE
        cov_a, tol_a = _coverage(_crop(splat_a.cover[None], n_t, h, w))
        cov_b, tol_b = _coverage(_crop(splat_b.cover[None], n_t, h, w))
        del splat_a, splat_b
        both = torch.minimum(cov_a, cov_b)
        difference = _difference(fa, fb)
        agreement = _agreement(difference, both)
        # A pixel seen by one side because it is outside the other keyframe's frame (a pan
        # bringing new content in) is as safe as a two-sided one; one occluded in the other is not.
        outside_a, outside_b = _outside_other(fused[:, plan.velocity], scale_a, scale_b)
        checked = torch.maximum(both, torch.maximum(tol_a * outside_b, tol_b * outside_a))
        visibility = _visibility(torch.maximum(tol_a, tol_b), checked, settings.one_sided_confidence)
        del fa, fb

        guided = torch.tensor([t in guides for t in targets], device=device)
        splat_agreement = agreement  # the keyframes compared along their own vectors
        guide_color = None
        has_guide_color = torch.zeros(n_t, 1, 1, 1, dtype=torch.bool, device=device)
        if guides:
            fused, covered, visibility, agreement, guide_color, has_guide_color, difference = _guide(
                a, b, targets, guides, plan, resamplers, fused, covered, total, (cov_a, tol_a), (cov_b, tol_b),
                visibility, agreement, difference, s, settings, device, h, w,
            )

        if settings.static_appearance:
            fused, difference, agreement, visibility = _static_appearance(
                src_a, src_b, plan, fused, difference, agreement, visibility, targets, guides, s, device, h, w,
                splat_agreement,
            )

        # Holes: the guide's colour where there is one, push-pull otherwise (continuous layers
        # only; depth and ids are selected, never averaged).
        holes = ~covered
        any_holes = bool(holes.any())
        depth = fused[:, plan.depth : plan.depth + 1]
        if any_holes:
            blend = [plan.color, plan.velocity, *(sl for name, sl in plan.continuous.items() if name not in plan.depths)]
            for sl in blend:
                fused[:, sl] = _push_pull(torch.where(covered, fused[:, sl], 0.0), covered)
            if guide_color is not None:
                use_guide = holes & has_guide_color
                fused[:, plan.color] = torch.where(use_guide, guide_color, fused[:, plan.color])
                visibility = torch.where(use_guide, torch.full_like(visibility, 0.5), visibility)
            # Depth: nearest surface where covered (the soft z-buffer), farthest neighbour in holes.
            depth = _select_fill(torch.where(covered, depth, 0.0), torch.where(covered, depth, -math.inf))
            fused[:, plan.depth : plan.depth + 1] = depth
            for name in plan.depths:
                sl = plan.continuous[name]
                fused[:, sl] = _select_fill(
                    torch.where(covered, fused[:, sl], 0.0), torch.where(covered, depth, -math.inf).expand(-1, 1, -1, -1)
                )
        out = fused
        velocity = out[:, plan.velocity]
        step_motion = torch.hypot(velocity[:, 0:1], velocity[:, 1:2]).mul_(step)
        to_next, to_prev = velocity.clone(), -velocity
        if accel is not None:
            # An eased path's one-frame steps either side of the target differ by its acceleration.
            to_next += accel
            to_prev += accel
        ids_img = torch.zeros(n_t, 0, h, w, device=device)
        if plan.ids:
            ids_img = _crop(ids.t(), n_t, h, w)
            id_priority = _crop(id_score[None], n_t, h, w)
            id_priority = torch.where(id_priority > 0, id_priority, -math.inf)
            ids_img = _select_fill(ids_img, id_priority)

        if guides:
            ids_img = _apply_guide_passes(
                out, to_prev, to_next, ids_img, targets, guides, plan, src_a, src_b, s, settings, device, h, w,
                a.frame, b.frame,
            )

        motion = (2 - step_motion / settings.max_motion_px).clamp(0, 1)
        confidence = (visibility * agreement * motion * (1 - invalid)).clamp(0, 1)
        confidence = torch.where(torch.isfinite(confidence), confidence, 0.0)
        scores = _frame_score(confidence, settings.score_window)

        results = []
        for i, t in enumerate(targets):
            results.append(
                _result(
                    t,
                    out[i],
                    to_prev[i],
                    to_next[i],
                    ids_img[i],
                    confidence[i, 0],
                    float(scores[i]),
                    cov_a[i, 0],
                    cov_b[i, 0],
                    covered[i, 0],
                    difference[i, 0],
                    step_motion[i, 0],
                    plan,
                    a,
                    bool(guided[i]),
                    settings,
                    int((~src_a.valid).sum() + (~src_b.valid).sum()),
                )
            )
    return results


def _guide_depth(guide: Guide, device: torch.device) -> torch.Tensor:
    """A guide's depth on the device, non-finite values as far background, positive."""
    return torch.nan_to_num(_tensor(guide.depth, device), nan=1e10, posinf=1e10).clamp_min(1e-6)


def _guide(
    a,
    b,
    targets,
    guides,
    plan,
    resamplers,
    fused,
    covered,
    total,
    coverage_a,
    coverage_b,
    visibility,
    agreement,
    difference,
    s,
    settings,
    device,
    h,
    w,
):  # noqa: ANN001, ANN202, PLR0913 - internal step of interpolate
    """Guided mode: backward-warp both keyframes along the guide's vectors and fuse by depth."""
    tol = settings.guide_depth_tolerance
    zeros2 = torch.zeros(h, w, 2, device=device)
    disp_a, disp_b, z_guide, g_color, has_color, is_guided = [], [], [], [], [], []
    for t in targets:
        g = guides.get(t)
        if g is None:
            disp_a.append(zeros2)
            disp_b.append(zeros2)
            z_guide.append(torch.ones(h, w, device=device))
            g_color.append(torch.zeros(h, w, plan.color.stop, device=device))
            has_color.append(False)
            is_guided.append(False)
            continue
        disp_a.append(torch.nan_to_num(_tensor(g.to_prev, device)) * (t - a.frame))
        disp_b.append(torch.nan_to_num(_tensor(g.to_next, device)) * (b.frame - t))
        z_guide.append(_guide_depth(g, device))
        color = torch.zeros(h, w, plan.color.stop, device=device)
        if g.color is not None:
            gc = torch.nan_to_num(_tensor(g.color, device), nan=0.0, posinf=0.0, neginf=0.0)
            color[..., : gc.shape[-1]] = gc
            if gc.shape[-1] < plan.color.stop:
                color[..., 3] = 1.0  # an RGB guide is opaque
        g_color.append(color)
        has_color.append(g.color is not None)
        is_guided.append(True)
    disp_a, disp_b = torch.stack(disp_a), torch.stack(disp_b)
    z_guide = torch.stack(z_guide)[:, None]
    guide_color = torch.stack(g_color).permute(0, 3, 1, 2)
    has_color = torch.tensor(has_color, device=device)[:, None, None, None]
    is_guided = torch.tensor(is_guided, device=device)[:, None, None, None]
    if settings.acceleration:
        # Targets two or more frames from a keyframe: the guide's one-frame vector starts the
        # path, the keyframe's vector where it lands ends it (_path_acceleration).
        for i, (disp, resampler, sign) in enumerate(((disp_a, resamplers[0], 1.0), (disp_b, resamplers[1], -1.0))):
            frames = torch.tensor([float(t - a.frame if i == 0 else b.frame - t) for t in targets], device=device)
            if not bool((frames > 1).any()):
                continue
            probe = resampler.probe[:, :4]
            other = torch.cat([probe[:, 1:3] * sign, probe[:, :1], probe[:, 3:4]], dim=1)
            k = frames[:, None, None, None]
            first = disp / k
            accel = _path_acceleration(first, frames, other, z_guide[:, 0], is_guided[:, 0].expand(-1, h, w))
            disp += k * (k - 1) * accel

    warped = []
    for resampler, disp in zip(resamplers, (disp_a, disp_b), strict=True):
        colour, probe, inside = resampler.sample(disp)
        sampled = torch.zeros(len(targets), plan.channels, h, w, device=device)
        sampled[:, resampler.channels] = colour
        sampled[:, plan.depth : plan.depth + 1] = probe[:, :1]
        sampled[:, plan.velocity] = probe[:, 1:3]
        z = probe[:, :1]
        valid = (probe[:, 3:4] < 1e-3) & inside
        vis = _depth_match(z, z_guide, tol, valid)
        # For confidence: the same check after the camera's depth change (_depth_offset).
        seen = _depth_match(z - _depth_offset(z, z_guide, valid), z_guide, tol, valid)
        warped.append((sampled, vis, (~inside).float(), z, valid, seen))
    (warp_a, wvis_a, outside_a, z_a, valid_a, seen_a), (warp_b, wvis_b, outside_b, z_b, valid_b, seen_b) = warped
    tw_a, tw_b = (1 - s)[:, None, None, None], s[:, None, None, None]
    # When the camera dollies, a surface's depth changes a lot between frames; then the depths
    # both warps bring, interpolated in time, still match the guide's.
    z_lerp = (1 - s)[:, None, None, None] * z_a + s[:, None, None, None] * z_b
    pair_ok = _depth_match(z_lerp, z_guide, tol, valid_a & valid_b)
    mix_a, mix_b = tw_a * wvis_a, tw_b * wvis_b
    if settings.shading_context > 0:
        context_a, context_b = _shading_context((wvis_a, wvis_b), pair_ok, settings.shading_context)
        mix_a, mix_b = mix_a * context_a, mix_b * context_b
    w_warp = mix_a + mix_b
    warp = (mix_a * warp_a + mix_b * warp_b) / w_warp.clamp_min(1e-8)
    z_splat = fused[:, plan.depth : plan.depth + 1]
    splat_ok = _depth_match(z_splat, z_guide, tol, covered)
    # The splat is a mix of the two keyframes' predictions: where those disagree (a surface
    # eased off its path, a reflection) it is only as good as their agreement, and the warps
    # along the guide's exact one-frame vectors carry the pixel.
    w_splat = total.clamp(0, 1) * splat_ok * agreement
    combined = (w_splat * fused + w_warp * warp) / (w_splat + w_warp).clamp_min(1e-8)
    g_covered = (w_splat + w_warp) > _HOLE

    # For confidence, depth is checked 3x more loosely than for blending: a surface's depth
    # changes between frames when the camera moves or turns, and that is no sign of a wrong surface.
    (cov_a, tol_a), (cov_b, tol_b) = coverage_a, coverage_b
    loose_ok, loose_a, loose_b = (x.pow(1 / 3) for x in (splat_ok, torch.maximum(seen_a, pair_ok), torch.maximum(seen_b, pair_ok)))
    g_vis_a = torch.maximum(tol_a * loose_ok, loose_a)
    g_vis_b = torch.maximum(tol_b * loose_ok, loose_b)
    g_both = torch.minimum(torch.maximum(cov_a * loose_ok, loose_a), torch.maximum(cov_b * loose_ok, loose_b))
    # One-sided because the guide's vectors lead out of the other keyframe's frame: not a risk.
    g_checked = torch.maximum(g_both, torch.maximum(g_vis_a * outside_b, g_vis_b * outside_a))
    g_visibility = _visibility(torch.maximum(g_vis_a, g_vis_b), g_checked, settings.guided_one_sided_confidence)
    # Disagreement: between the two warped keyframes where both see the pixel, and between the
    # splat and the warp where both exist.
    d_warp = _difference(warp_a[:, plan.color], warp_b[:, plan.color])
    d_splat = _difference(fused[:, plan.color], warp[:, plan.color])
    both_warp = torch.minimum(wvis_a, wvis_b)
    both_splat = torch.minimum(w_splat, w_warp.clamp(0, 1))
    g_agreement = _agreement(d_warp, both_warp) * _agreement(d_splat, both_splat)
    g_difference = torch.maximum(d_warp * (both_warp > 0.5), d_splat * (both_splat > 0.5))

    pick = is_guided
    if bool(pick.all()):
        return combined, g_covered, g_visibility, g_agreement, guide_color, has_color, g_difference
    return (
        torch.where(pick, combined, fused),
        torch.where(pick, g_covered, covered),
        torch.where(pick, g_visibility, visibility),
        torch.where(pick, g_agreement, agreement),
        guide_color,
        has_color & pick,
        torch.where(pick, g_difference, difference),
    )


def _depth_match(z: torch.Tensor, reference: torch.Tensor, tol: float, mask: torch.Tensor) -> torch.Tensor:
    """``exp(-|z - reference| / (tol * reference))`` where ``mask``, else 0: how far a depth is
    the reference surface's (guided mode's depth checks)."""
    return torch.where(mask, torch.exp(-(z - reference).abs() / (tol * reference)), 0.0)


def _depth_offset(z: torch.Tensor, z_guide: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """How far (T,1,1,1) a warped keyframe's depths lie behind the guide's as a rule: the median
    of ``z - z_guide`` over its valid pixels (0 where there are none).

    A camera moving along its axis changes every depth by about the same amount between frames:
    under the bench's dolly, keyframe A's warped depths lie 0.34 m behind the target's
    everywhere, 3 % of the far wall's depth but 9 % of the near floor's. Near the frame's
    bottom edge, where B's view does not reach, only A sees the floor, and with no second depth
    to interpolate in time, its 9 % failed the confidence's depth check: a third of the frame
    looked one-sided and unconfirmed. Checked after this offset, it is confirmed. Objects moving
    on their own are a minority of the pixels and do not move the median.
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
    h, w = pair_ok.shape[-2:]
    size = max(3, 2 * round(share * min(h, w) / 2) + 1)
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


def _apply_guide_passes(out, to_prev, to_next, ids_img, targets, guides, plan, src_a, src_b, s, settings, device, h, w, a_frame, b_frame):  # noqa: ANN001, ANN202, PLR0913, E501
    """Guided targets take the guide's own depth, vectors, albedo and normal, and depth-checked ids."""
    for i, t in enumerate(targets):
        g = guides.get(t)
        if g is None:
            continue
        out[i, plan.depth] = torch.nan_to_num(_tensor(g.depth, device), nan=1e10, posinf=1e10, neginf=0.0)
        to_prev[i] = torch.nan_to_num(_tensor(g.to_prev, device)).permute(2, 0, 1)
        to_next[i] = torch.nan_to_num(_tensor(g.to_next, device)).permute(2, 0, 1)
        for name, value in (("albedo", g.albedo), ("normal", g.normal)):
            if value is not None and name in plan.continuous:
                sl = plan.continuous[name]
                if sl.stop - sl.start == value.shape[-1]:
                    out[i, sl] = torch.nan_to_num(_tensor(value, device)).permute(2, 0, 1)
        if plan.ids:
            # Ids from the keyframe whose warped depth matches the guide (nearest sample).
            z_guide = out[i : i + 1, plan.depth : plan.depth + 1]
            best_vis = torch.zeros(1, 1, h, w, device=device)
            chosen = ids_img[i : i + 1].clone()
            reach_a = torch.nan_to_num(_tensor(g.to_prev, device)) * (t - a_frame)
            reach_b = torch.nan_to_num(_tensor(g.to_next, device)) * (b_frame - t)
            for source, disp, tw in ((src_a, reach_a, 1 - s[i]), (src_b, reach_b, s[i])):
                image = _as_image(
                    torch.cat([source.ids, source.depth[:, None], source.valid[:, None].float()], 1), 1, h, w
                )
                sampled, inside = _gather(image, disp[None], "nearest")
                z = sampled[:, -2:-1]
                ok = inside & (sampled[:, -1:] > 0.5)
                vis = _depth_match(z, z_guide, settings.guide_depth_tolerance, ok) * tw
                better = vis > torch.maximum(best_vis, torch.full_like(best_vis, 0.3))
                chosen = torch.where(better, sampled[:, :-2], chosen)
                best_vis = torch.maximum(best_vis, vis)
            ids_img[i : i + 1] = chosen
    return ids_img


def _result(
    t,
    out,
    to_prev,
    to_next,
    ids_img,
    confidence,
    score,
    cov_a,
    cov_b,
    covered,
    difference,
    step_motion,
    plan,
    a,
    guided,
    settings,
    invalid_sources,
):  # noqa: ANN001, ANN202, PLR0913
    """Unpack one target's tensors into an :class:`Interpolated` of finite numpy arrays."""

    def numpy(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(
            torch.nan_to_num(x, nan=0.0, posinf=1e10, neginf=-1e10).cpu().numpy(), dtype=np.float32
        )

    hwc = out.permute(1, 2, 0)
    to_prev, to_next = numpy(to_prev.permute(1, 2, 0)), numpy(to_next.permute(1, 2, 0))
    layers: dict[str, np.ndarray] = {}
    id_offset = 0
    for name, layer in a.layers.items():
        if name in plan.continuous:
            value = hwc[..., plan.continuous[name]]
            if name in plan.normals:
                length = value.norm(dim=-1, keepdim=True)
                value = torch.where(length > 1e-6, value / length.clamp_min(1e-6), value)
            layers[name] = numpy(value)
        elif name in plan.blender_vectors:
            layers[name] = join_blender_vectors(to_prev, to_next)
        else:
            width = _shape(layer.data)[2]
            layers[name] = numpy(ids_img.permute(1, 2, 0)[..., id_offset : id_offset + width])
            id_offset += width
    vmax = torch.maximum(cov_a, cov_b)
    two_sided = torch.minimum(cov_a, cov_b) > 0.5
    stats = {
        "coverage": float((vmax > 0.5).float().mean()),
        "disoccluded": float(((vmax > 0.5) & ~two_sided).float().mean()),
        "holes": float((~covered).float().mean()),
        "disagreement": float(difference[two_sided].mean()) if bool(two_sided.any()) else 0.0,
        "max_motion_px": float(step_motion.max()),
        "invalid_sources": float(invalid_sources),
        "mean_confidence": float(confidence.mean()),
        "low_confidence": float((confidence < settings.confidence_threshold).float().mean()),
        "guided": 1.0 if guided else 0.0,
    }
    return Interpolated(
        frame=t,
        color=numpy(hwc[..., plan.color]),
        depth=numpy(hwc[..., plan.depth]),
        to_prev=to_prev,
        to_next=to_next,
        layers=layers,
        confidence=numpy(confidence),
        score=score,
        stats=stats,
    )
