"""Render-aware frame interpolation: in-between frames from two rendered keyframes and their AOVs.

Unlike colour-only optical flow, a renderer gives exact per-pixel motion (the Vector pass, see
:mod:`farmplug.inbetween.vectors`) and depth, so the in-between frame is built by moving pixels,
not by guessing their motion:

1. **Forward splat.** Keyframe A is splatted to each target ``t`` along ``(t - a) * A.to_next``
   and keyframe B along ``(b - t) * B.to_prev`` (constant velocity; exact for one frame).
   Every source pixel lands bilinearly on four target pixels (``index_add_``). Overlaps are
   resolved by a **soft z-buffer over both keyframes together**: ``zmin`` per target pixel is
   the nearest depth any contribution brings (``scatter_reduce(amin)``), and each contribution is
   weighted by ``exp(-(z - zmin) / (depth_softness * zmin))``, so a background pixel never mixes
   into a foreground one (no ghosts) while samples of the same surface blend smoothly.
2. **Fuse in time.** Each side is normalised by its own splat weight and the two are mixed with
   ``(1 - s) * weight_A`` and ``s * weight_B`` (``s = (t - a) / (b - a)``).
3. **Guided mode** (a :class:`Guide` gives the target's own cheap depth and vectors): A and B are
   also backward-warped into ``t`` along the guide's ``(t - a) * to_prev`` / ``(b - t) * to_next``
   (exact when ``t - a == 1`` / ``b - t == 1``). A warped keyframe counts where its depth agrees
   with the guide's, the splat counts where its depth agrees with the guide's, and the guide's
   depth and vectors become the output's.
4. **Holes** nobody covers are filled by the guide's colour when there is one, else by push-pull
   (a weighted image pyramid) for continuous layers, by the farthest neighbouring depth for
   depth (a disocclusion reveals background) and by the nearest contributor for id layers.

Per-pixel confidence (all terms in [0, 1], see :func:`interpolate`)::

    confidence = visibility * agreement * motion * (1 - invalid)
    visibility = 0.6 * min(vA, vB) + 0.4 * max(vA, vB)           unguided
               = 0.2 * min(vA, vB) + 0.8 * max(vA, vB)           guided (depth-confirmed)
               (0.5 where only a guide colour fills the pixel)
    agreement  = 1 - both * (1 - exp(-(d / 0.1) ** 2)),  d = mean |tm(pred_1) - tm(pred_2)|
    motion     = clip(2 - step_motion_px / max_motion_px, 0, 1)

with ``vA, vB`` each side's coverage of the visible surface, ``both = min(vA, vB)``, ``tm`` the
Reinhard curve ``x / (1 + x)`` (so the difference is relative to brightness), and ``invalid`` the
share of non-finite source pixels that would have landed there. The frame **score** is the share
of pixels whose confidence is at least ``confidence_threshold``.

torch is imported by this module only; ``import farmplug`` never loads it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
        confidence_threshold: Per-pixel confidence counted as good by the frame score.
        guide_depth_tolerance: Relative depth difference (guided mode) at which a warped
            keyframe or the splat is trusted ``exp(-1)``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    depth_softness: float = 0.05
    max_motion_px: float = 48.0
    confidence_threshold: float = 0.5
    guide_depth_tolerance: float = 0.05
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
        score: Share of pixels with confidence >= the threshold, in [0, 1].
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
    to_prev: slice
    to_next: slice
    motion: int
    continuous: dict[str, slice]
    normals: tuple[str, ...]
    depths: tuple[str, ...]
    blender_vectors: tuple[str, ...]
    ids: tuple[str, ...]
    channels: int


def _plan(key: Keyframe) -> _Plan:
    c = _shape(key.color)[2]
    offset = c + 1 + 2 + 2 + 1
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
        to_prev=slice(c + 1, c + 3),
        to_next=slice(c + 3, c + 5),
        motion=c + 5,
        continuous=continuous,
        normals=tuple(normals),
        depths=tuple(depths),
        blender_vectors=tuple(vectors),
        ids=tuple(ids),
        channels=offset,
    )


@dataclass(frozen=True)
class _Source:
    """One keyframe on the device: packed features (HW x F), ids (HW x K), depth, validity."""

    features: torch.Tensor
    ids: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    splat_vector: torch.Tensor  # HW x 2, displacement per frame towards the targets
    step_motion: torch.Tensor


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
    parts = [color, depth[:, None], -velocity, velocity, (velocity.norm(dim=1) * step)[:, None]]
    parts += [_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.continuous]
    features = torch.cat(parts, dim=1)
    ids = [_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.ids]
    id_tensor = torch.cat(ids, dim=1) if ids else torch.zeros(h * w, 0, device=device)
    valid = torch.isfinite(features).all(dim=1) & torch.isfinite(id_tensor).all(dim=1) & (depth > 0)
    splat_vector = torch.where(torch.isfinite(to_next if forward else to_prev), to_next if forward else to_prev, 0.0)
    return _Source(
        features=torch.where(valid[:, None], features, 0.0),
        ids=torch.where(valid[:, None], id_tensor, 0.0),
        depth=torch.where(valid, depth, 1.0).clamp_min(1e-6),
        valid=valid,
        splat_vector=splat_vector,
        step_motion=torch.where(valid, velocity.norm(dim=1) * step, 0.0),
    )


# --- splatting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Corner:
    index: torch.Tensor  # T*HW target index (0 where weight is 0)
    weight: torch.Tensor  # T*HW bilinear weight (0 outside or invalid)


def _corners(source: _Source, scale: torch.Tensor, h: int, w: int, use_valid: bool) -> list[_Corner]:
    """Bilinear footprints of every source pixel moved by ``scale[t] * splat_vector``."""
    device = source.features.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    x = xs.reshape(1, -1) + scale[:, None] * source.splat_vector[None, :, 0]
    y = ys.reshape(1, -1) + scale[:, None] * source.splat_vector[None, :, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    mask = source.valid if use_valid else ~source.valid
    base = (torch.arange(scale.shape[0], device=device) * (h * w))[:, None]
    corners = []
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1) & mask[None, :] & (weight > _EPS)
        index = torch.where(inside, yi.clamp(0, h - 1).long() * w + xi.clamp(0, w - 1).long() + base, 0)
        corners.append(_Corner(index=index.reshape(-1), weight=torch.where(inside, weight, 0.0).reshape(-1)))
    return corners


@dataclass(frozen=True)
class _Splat:
    acc: torch.Tensor  # T*HW x F weighted feature sums
    wsum: torch.Tensor  # T*HW soft-z weight sums
    scores: list[torch.Tensor]  # per corner, T*HW contribution score (for id selection)


def _splat_pair(
    sources: tuple[_Source, _Source],
    corners: tuple[list[_Corner], list[_Corner]],
    time_weights: tuple[torch.Tensor, torch.Tensor],
    n: int,
    softness: float,
) -> tuple[_Splat, _Splat, torch.Tensor]:
    """Soft z-buffered splat of both keyframes against one shared nearest depth."""
    device = sources[0].features.device
    t = time_weights[0].shape[0]
    zmin = torch.full((n,), math.inf, device=device)
    for source, cs in zip(sources, corners, strict=True):
        z = source.depth.repeat(t) if t > 1 else source.depth
        for corner in cs:
            zmin.scatter_reduce_(0, corner.index, torch.where(corner.weight > 0, z, math.inf), reduce="amin")
    splats = []
    for source, cs, tw in zip(sources, corners, time_weights, strict=True):
        hw = source.depth.shape[0]
        z = source.depth.repeat(t) if t > 1 else source.depth
        tw_full = tw.repeat_interleave(hw)
        features = source.features.repeat(t, 1) if t > 1 else source.features
        acc = torch.zeros(n, source.features.shape[1], device=device)
        wsum = torch.zeros(n, device=device)
        scores = []
        for corner in cs:
            near = zmin[corner.index]
            rel = ((z - near).clamp_min(0) / (softness * near)).nan_to_num(nan=math.inf, posinf=math.inf)
            weight = torch.where(corner.weight > 0, corner.weight * torch.exp(-rel), 0.0)
            acc.index_add_(0, corner.index, features * weight[:, None])
            wsum.index_add_(0, corner.index, weight)
            scores.append(weight * tw_full)
        splats.append(_Splat(acc=acc, wsum=wsum, scores=scores))
    return splats[0], splats[1], zmin


def _select_ids(
    sources: tuple[_Source, _Source],
    corners: tuple[list[_Corner], list[_Corner]],
    splats: tuple[_Splat, _Splat],
    n: int,
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
        t = n // sources[0].ids.shape[0]
        for source, cs, splat in zip(sources, corners, splats, strict=True):
            ids = source.ids.repeat(t, 1)
            for corner, score in zip(cs, splat.scores, strict=True):
                win = (score > 0) & (score >= best[corner.index])
                out[corner.index[win]] = ids[win]
    return out, best


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


def _gather(image: torch.Tensor, displacement: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (1,C,H,W) at ``(x, y) + displacement`` (T,H,W,2); also the in-frame mask."""
    t, h, w = displacement.shape[:3]
    device = image.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32),
        torch.arange(w, device=device, dtype=torch.float32),
        indexing="ij",
    )
    x = xs + displacement[..., 0]
    y = ys + displacement[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    sampled = F.grid_sample(image.expand(t, -1, -1, -1), grid, mode=mode, padding_mode="border", align_corners=True)
    return sampled, inside[:, None]


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


# --- the interpolator -------------------------------------------------------------------------------


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
    n = n_t * h * w
    plan = _plan(a)

    with torch.no_grad():
        src_a = _source(a, plan, forward=True, step=step, device=device)
        src_b = _source(b, plan, forward=False, step=step, device=device)
        s = torch.tensor([(t - a.frame) / step for t in targets], device=device, dtype=torch.float32)
        scale_a = torch.tensor([float(t - a.frame) for t in targets], device=device)
        scale_b = torch.tensor([float(b.frame - t) for t in targets], device=device)
        corners = (_corners(src_a, scale_a, h, w, True), _corners(src_b, scale_b, h, w, True))
        splat_a, splat_b, _ = _splat_pair((src_a, src_b), corners, (1 - s, s), n, settings.depth_softness)
        ids, id_score = _select_ids((src_a, src_b), corners, (splat_a, splat_b), n)

        # Where non-finite source pixels would have landed (their vectors, if finite, else none).
        invalid = torch.zeros(n, device=device)
        for source, scale in ((src_a, scale_a), (src_b, scale_b)):
            if bool(source.valid.all()):
                continue
            for corner in _corners(source, scale, h, w, False):
                invalid.index_add_(0, corner.index, corner.weight)
        invalid = _as_image(invalid[:, None].clamp(0, 1), n_t, h, w)

        tw_a = (1 - s)[:, None, None, None]
        tw_b = s[:, None, None, None]
        wa = _as_image(splat_a.wsum[:, None], n_t, h, w)
        wb = _as_image(splat_b.wsum[:, None], n_t, h, w)
        # Each side normalised by its own weight, then mixed by (1 - s) * w_A and s * w_B.
        total = tw_a * wa + tw_b * wb
        fused = _as_image(
            splat_a.acc * (1 - s).repeat_interleave(h * w)[:, None] + splat_b.acc * s.repeat_interleave(h * w)[:, None],
            n_t,
            h,
            w,
        ) / total.clamp_min(1e-8)
        fa = _as_image(splat_a.acc[:, plan.color], n_t, h, w) / wa.clamp_min(1e-8)
        fb = _as_image(splat_b.acc[:, plan.color], n_t, h, w) / wb.clamp_min(1e-8)
        covered = total > _HOLE
        vis_a, vis_b = wa.clamp(0, 1), wb.clamp(0, 1)
        both = torch.minimum(vis_a, vis_b)
        difference = _difference(fa, fb)
        agreement = _agreement(difference, both)
        ids_img = _as_image(ids, n_t, h, w)
        id_priority = torch.where(
            _as_image(id_score[:, None], n_t, h, w) > 0, _as_image(id_score[:, None], n_t, h, w), -math.inf
        )
        step_motion = fused[:, plan.motion : plan.motion + 1]
        visibility = 0.6 * both + 0.4 * torch.maximum(vis_a, vis_b)

        guided = torch.tensor([t in guides for t in targets], device=device)
        guide_color = torch.zeros(n_t, fused.shape[1], h, w, device=device)[:, plan.color]
        has_guide_color = torch.zeros(n_t, 1, 1, 1, dtype=torch.bool, device=device)
        if guides:
            fused, covered, visibility, agreement, guide_color, has_guide_color, difference = _guide(
                a,
                b,
                targets,
                guides,
                plan,
                src_a,
                src_b,
                fused,
                covered,
                total,
                vis_a,
                vis_b,
                agreement,
                difference,
                s,
                settings,
                device,
                h,
                w,
            )

        # Holes: the guide's colour where there is one, push-pull otherwise.
        out = _push_pull(torch.where(covered, fused, 0.0), covered)
        color = out[:, plan.color]
        use_guide = ~covered & has_guide_color
        color = torch.where(use_guide, guide_color, color)
        out[:, plan.color] = color
        visibility = torch.where(use_guide, torch.full_like(visibility, 0.5), visibility)
        # Depth: nearest surface where covered (the soft z-buffer), farthest neighbour in holes.
        depth = fused[:, plan.depth : plan.depth + 1]
        depth = _select_fill(torch.where(covered, depth, 0.0), torch.where(covered, depth, -math.inf))
        out[:, plan.depth : plan.depth + 1] = depth
        for name in plan.depths:
            sl = plan.continuous[name]
            out[:, sl] = _select_fill(
                torch.where(covered, fused[:, sl], 0.0), torch.where(covered, depth, -math.inf).expand(-1, 1, -1, -1)
            )
        if plan.ids:
            ids_img = _select_fill(ids_img, id_priority)

        if guides:
            out, ids_img = _apply_guide_passes(
                out, ids_img, targets, guides, plan, src_a, src_b, s, settings, device, h, w, a.frame, b.frame
            )

        motion = (2 - step_motion / settings.max_motion_px).clamp(0, 1)
        confidence = (visibility * agreement * motion * (1 - invalid)).clamp(0, 1)
        confidence = torch.where(torch.isfinite(confidence), confidence, 0.0)

        results = []
        for i, t in enumerate(targets):
            results.append(
                _result(
                    t,
                    out[i],
                    ids_img[i],
                    confidence[i, 0],
                    vis_a[i, 0],
                    vis_b[i, 0],
                    covered[i, 0],
                    difference[i, 0],
                    step_motion[i, 0],
                    invalid[i, 0],
                    plan,
                    a,
                    bool(guided[i]),
                    settings,
                    int((~src_a.valid).sum() + (~src_b.valid).sum()),
                )
            )
    return results


def _guide(
    a,
    b,
    targets,
    guides,
    plan,
    src_a,
    src_b,
    fused,
    covered,
    total,
    vis_a,
    vis_b,
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
        z_guide.append(torch.nan_to_num(_tensor(g.depth, device), nan=1e10, posinf=1e10).clamp_min(1e-6))
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

    warped = []
    for source, disp in ((src_a, disp_a), (src_b, disp_b)):
        image = _as_image(torch.cat([source.features, source.valid[:, None].float()], dim=1), 1, h, w)
        sampled, inside = _gather(image, disp, "bilinear")
        z = sampled[:, plan.depth : plan.depth + 1]
        valid = (sampled[:, -1:] > 0.999) & inside
        vis = torch.where(valid, torch.exp(-(z - z_guide).abs() / (tol * z_guide)), 0.0)
        warped.append((sampled[:, :-1], vis))
    (warp_a, wvis_a), (warp_b, wvis_b) = warped
    tw_a, tw_b = (1 - s)[:, None, None, None], s[:, None, None, None]
    w_warp = tw_a * wvis_a + tw_b * wvis_b
    warp = (tw_a * wvis_a * warp_a + tw_b * wvis_b * warp_b) / w_warp.clamp_min(1e-8)
    z_splat = fused[:, plan.depth : plan.depth + 1]
    splat_ok = torch.where(covered, torch.exp(-(z_splat - z_guide).abs() / (tol * z_guide)), 0.0)
    w_splat = total.clamp(0, 1) * splat_ok
    combined = (w_splat * fused + w_warp * warp) / (w_splat + w_warp).clamp_min(1e-8)
    g_covered = (w_splat + w_warp) > _HOLE

    g_vis_a = torch.maximum(vis_a * splat_ok, wvis_a)
    g_vis_b = torch.maximum(vis_b * splat_ok, wvis_b)
    g_both = torch.minimum(g_vis_a, g_vis_b)
    g_visibility = 0.2 * g_both + 0.8 * torch.maximum(g_vis_a, g_vis_b)
    # Disagreement: between the two warped keyframes where both see the pixel, and between the
    # splat and the warp where both exist.
    d_warp = _difference(warp_a[:, plan.color], warp_b[:, plan.color])
    d_splat = _difference(fused[:, plan.color], warp[:, plan.color])
    both_splat = torch.minimum(w_splat, w_warp.clamp(0, 1))
    g_agreement = _agreement(d_warp, torch.minimum(wvis_a, wvis_b)) * _agreement(d_splat, both_splat)
    g_difference = torch.maximum(d_warp * (torch.minimum(wvis_a, wvis_b) > 0.5), d_splat * (both_splat > 0.5))

    pick = is_guided
    return (
        torch.where(pick, combined, fused),
        torch.where(pick, g_covered, covered),
        torch.where(pick, g_visibility, 0.6 * torch.minimum(vis_a, vis_b) + 0.4 * torch.maximum(vis_a, vis_b)),
        torch.where(pick, g_agreement, agreement),
        guide_color,
        has_color & pick,
        torch.where(pick, g_difference, difference),
    )


def _apply_guide_passes(out, ids_img, targets, guides, plan, src_a, src_b, s, settings, device, h, w, a_frame, b_frame):  # noqa: ANN001, ANN202, PLR0913
    """Guided targets take the guide's own depth, vectors, albedo and normal, and depth-checked ids."""
    for i, t in enumerate(targets):
        g = guides.get(t)
        if g is None:
            continue
        out[i, plan.depth] = torch.nan_to_num(_tensor(g.depth, device), nan=1e10, posinf=1e10, neginf=0.0)
        out[i, plan.to_prev] = torch.nan_to_num(_tensor(g.to_prev, device)).permute(2, 0, 1)
        out[i, plan.to_next] = torch.nan_to_num(_tensor(g.to_next, device)).permute(2, 0, 1)
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
                vis = (
                    torch.where(ok, torch.exp(-(z - z_guide).abs() / (settings.guide_depth_tolerance * z_guide)), 0.0)
                    * tw
                )
                better = vis > torch.maximum(best_vis, torch.full_like(best_vis, 0.3))
                chosen = torch.where(better, sampled[:, :-2], chosen)
                best_vis = torch.maximum(best_vis, vis)
            ids_img[i : i + 1] = chosen
    return out, ids_img


def _result(
    t,
    out,
    ids_img,
    confidence,
    vis_a,
    vis_b,
    covered,
    difference,
    step_motion,
    invalid,
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
    to_prev, to_next = numpy(hwc[..., plan.to_prev]), numpy(hwc[..., plan.to_next])
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
    vmax = torch.maximum(vis_a, vis_b)
    both = torch.minimum(vis_a, vis_b)
    two_sided = both > 0.5
    stats = {
        "coverage": float((vmax > 0.5).float().mean()),
        "disoccluded": float(((vmax > 0.5) & ~two_sided).float().mean()),
        "holes": float((~covered).float().mean()),
        "disagreement": float(difference[two_sided].mean()) if bool(two_sided.any()) else 0.0,
        "max_motion_px": float(step_motion.max()),
        "invalid_sources": float(invalid_sources),
        "mean_confidence": float(confidence.mean()),
        "guided": 1.0 if guided else 0.0,
    }
    score = float((confidence >= settings.confidence_threshold).float().mean())
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
