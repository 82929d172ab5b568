"""The denoise stage's temporal backend: gather each frame's surfaces from its neighbours, then OIDN.

A frame rendered with few samples is noisy, but its neighbours saw most of the same surfaces with
their own samples (Cycles' animated seed gives each frame a new noise pattern). For each frame
``t`` and each neighbour ``s`` within ``window`` frames, the renderer's Vector pass says where
every pixel's surface was in ``s`` (one frame at a time, chained along each frame's own vectors:
:func:`farmplug.motion.compose_displacements`). The neighbour's noisy colour, albedo and normal are
read there (:func:`farmplug.motion.backward_warp`) and count where they show the same surface:

* the reprojection stays inside the frame, and the frame before it in the chain passed too;
* the depth agrees: its change differs from the mean change of the surface around it (camera
  dollies and objects moving in depth change every depth) by at most ``depth_tolerance`` of the
  depth per frame of distance; the normals agree (cosine at least ``normal_tolerance``) and the
  object IDs are equal (when the render has an object-index pass);
* the neighbour's own vectors lead back to the pixel (within a pixel): where another surface
  covered it in ``s``, or it was just uncovered (a disocclusion), they do not;
* the neighbour's pixel is finite.

Each one that counts is weighted by how well the two frames' own (per-frame, ``guide_quality``)
OIDN results agree there, ``exp(-(d / color_tolerance)^2)`` with ``d`` their mean display-value
difference over a 3x3 neighbourhood: view-dependent shading (reflections on a glossy surface) and
moving shadows do not follow the surface's vectors, and there the neighbour drops out. The
weighted mean of the frame and its neighbours (the frame's own weight is 1) is then denoised by
OIDN with the gathered albedo and normal: the same filter as the ``oidn`` backend, on an input
with more samples behind each pixel, that shares most of them with the frames next to it.

Then the frame's result is blended with its neighbours' results within ``stabilize`` frames
(default 1), reprojected along the same vectors, counted under the same surface checks and
weighted by how well the two denoised results agree (``stabilize_tolerance``): OIDN's output
still moves with the noise it was given, and the neighbours' results, made from mostly the same
samples, hold the same surface with other residual errors. A frame's result thus depends on the
frames within ``window + stabilize`` of it (:meth:`TemporalDenoiseConfig.window_reach`, what the
job graph makes it wait for), and each frame's OIDN result is made once per task.

Neighbours are read between pixels with bicubic interpolation (clamped at zero for colour and
albedo): bilinear reads blur a reprojected neighbour at every sub-pixel step of a camera move,
which cost 0.6 dB on the camera pan of ``bench/temporal_denoise.py``.

A frame without a Vector pass is denoised on its own (a warning), or fails with
``missing_motion: error`` (``--require-motion``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from farmplug.denoise.config import TEMPORAL_DESCRIPTOR, TemporalDenoiseConfig
from farmplug.denoise.stage import OidnDenoiseStage
from farmplug.errors import MissingPassError
from farmplug.imageio import Frame
from farmplug.imageio.channels import HOW_TO_ENABLE, layer_kind, split_channel
from farmplug.stages.base import ProcessInfo

log = logging.getLogger(__name__)

#: Largest disagreement, in pixels, between the path to a neighbour and the neighbour's vectors back.
_ROUND_TRIP_PX = 1.0
#: ... plus this share of the step's length (fast motion is measured less exactly).
_ROUND_TRIP_SHARE = 0.1
#: Pixels each side over which a surface's own depth change is averaged (see _expected_depth_change).
_DEPTH_RADIUS = 7
#: Largest relative depth change per frame that counts towards that average (beyond it: another surface).
_DEPTH_OUTLIER = 0.5
#: How a neighbour is read between pixels.
_RESAMPLE = "bicubic"
#: Layers that cannot be negative (bicubic reads overshoot next to bright pixels).
_NON_NEGATIVE = ("color", "albedo")


@dataclass
class _Prepared:
    """One frame's arrays as the gathering reads them (prepared once per task, shared by its neighbours)."""

    color: np.ndarray  # HxWx3, non-finite values set to 0 (``bad`` marks them)
    bad: np.ndarray  # HxW
    albedo: np.ndarray | None
    normal: np.ndarray | None
    depth: np.ndarray | None  # HxW
    ids: np.ndarray | None  # HxW
    to_prev: np.ndarray | None  # HxWx2
    to_next: np.ndarray | None
    guide: np.ndarray  # HxWx3, tone-mapped per-frame OIDN result


def _id_layer(frame: Frame) -> np.ndarray | None:
    """The first object/material index channel of the frame with the colour's size, if any."""
    window = frame.feature_window("color")
    for part in frame.parts:
        if part.data_window != window:
            continue
        for index, name in enumerate(part.channels):
            if layer_kind(split_channel(name)[1]) == "id":
                return part.pixels[..., index]
    return None


def _finite(values: np.ndarray) -> np.ndarray:
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _box3(image: np.ndarray) -> np.ndarray:
    """3x3 mean of an HxW image (edges repeated)."""
    padded = np.pad(image, 1, mode="edge")
    h, w = image.shape
    return sum(padded[y : y + h, x : x + w] for y in range(3) for x in range(3)) / 9.0


def _box_sum(image: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the ``(2 radius + 1)^2`` square around each pixel of an HxW image (zeros outside),
    from a summed-area table: the same cost for any radius."""
    h, w = image.shape
    table = np.zeros((h + 1, w + 1), np.float64)
    table[1:, 1:] = np.cumsum(np.cumsum(image, axis=0, dtype=np.float64), axis=1)
    y0, y1 = np.clip(np.arange(h) - radius, 0, h), np.clip(np.arange(h) + radius + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - radius, 0, w), np.clip(np.arange(w) + radius + 1, 0, w)
    return (table[y1][:, x1] - table[y0][:, x1] - table[y1][:, x0] + table[y0][:, x0]).astype(np.float32)


def _expected_depth_change(change: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """The depth change of the surface around each pixel: the mean of ``change`` over the
    ``trusted`` pixels within :data:`_DEPTH_RADIUS` (0 where none is).

    A camera dolly or an object moving in depth changes every depth of a surface by a smoothly
    varying amount; an occlusion changes it by a jump. Measured against this local change, the
    depth check tells the two apart where a check of the raw change would reject a whole dolly.
    """
    count = _box_sum(trusted.astype(np.float32), _DEPTH_RADIUS)
    total = _box_sum(np.where(trusted, change, 0.0).astype(np.float32), _DEPTH_RADIUS)
    return np.where(count > 0, total / np.maximum(count, 1.0), 0.0).astype(np.float32)


def _unit(normal: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(normal, axis=-1, keepdims=True)
    return normal / np.maximum(length, 1e-6)


class TemporalDenoiseStage(OidnDenoiseStage):
    """Denoise each frame with its neighbours' samples gathered along the Vector pass, then OIDN.

    A ``mode="window"`` stage (:class:`farmplug.runner.WindowStage`): the runner hands each frame
    with the neighbours that exist within the window; ``process(frame)`` alone is the per-frame
    OIDN denoise.
    """

    descriptor = TEMPORAL_DESCRIPTOR

    def __init__(self, config: TemporalDenoiseConfig | None = None) -> None:
        super().__init__(config or TemporalDenoiseConfig())
        self.config: TemporalDenoiseConfig
        self._guide = None
        self._prepared: dict[object, _Prepared] = {}
        self._results: dict[object, np.ndarray] = {}  # each frame's gathered OIDN result, made once per task

    def open(self) -> None:
        """Create the OIDN filters: the final one and the per-frame guide's (once per task)."""
        super().open()
        from farmplug.denoise.oidn import OidnDenoiser, OidnOptions

        if self._guide is None:
            self._guide = OidnDenoiser(
                OidnOptions(quality=self.config.guide_quality, clean_aux=self.config.clean_aux,
                            prefilter_aux=False, device=self.config.device)
            )

    def _prepare(self, frame: Frame, info: ProcessInfo) -> _Prepared:
        key = _key(frame)
        if key in self._prepared:
            return self._prepared[key]
        from farmplug.motion import split_blender_vectors
        from farmplug.quality import tonemap

        color = frame.feature("color")
        bad = ~np.isfinite(color).all(axis=-1)
        color = _finite(color)
        window = frame.feature_window("color")
        # The neighbours' missing passes are reported on their own frames.
        albedo, normal = self._aux_passes(frame, ProcessInfo())
        depth = frame.feature("depth")[..., 0] if frame.has("depth") and frame.feature_window("depth") == window else None
        to_prev = to_next = None
        if frame.has("motion") and frame.feature_window("motion") == window:
            to_prev, to_next = split_blender_vectors(_finite(frame.feature("motion")))
        guide = self._guide.denoise(color, albedo=albedo, normal=normal)
        prepared = _Prepared(
            color=color, bad=bad, albedo=None if albedo is None else _finite(albedo),
            normal=None if normal is None else _finite(normal), depth=None if depth is None else _finite(depth),
            ids=_id_layer(frame), to_prev=to_prev, to_next=to_next, guide=tonemap(guide),
        )
        self._prepared[key] = prepared
        return prepared

    def process_window(self, frame: Frame, neighbours: Mapping[int, Frame]) -> tuple[Frame, ProcessInfo]:
        """Denoise ``frame``'s colour with its ``neighbours`` (offset -> frame) gathered along the vectors.

        Raises:
            MissingPassError: no colour; no Vector pass with ``missing_motion: error``; missing
                albedo/normal with ``missing_aux: error``.
        """
        if self._denoiser is None or self._guide is None:
            self.open()
        if not (frame.has("motion") and frame.feature_window("motion") == frame.feature_window("color")):
            problem = f"no Vector pass: {HOW_TO_ENABLE['motion']}"
            if self.config.missing_motion == "error":
                raise MissingPassError(problem, path=frame.path)
            result, info = self.process(frame)
            message = f"{frame.path}: {problem}; denoising the frame on its own (no temporal gathering)"
            log.warning(message)
            info.warnings.append(message)
            return result, info
        info = ProcessInfo()
        color = frame.feature("color")
        self._aux_passes(frame, info)  # this frame's missing passes: warnings, or the error asked for
        if not frame.has("depth"):
            info.warnings.append(f"{frame.path}: no depth pass ({HOW_TO_ENABLE['depth']}); neighbours are "
                                 "matched without it")
        used: set = set()
        result = self._first_pass(frame, neighbours, used)
        # (The first pass's result is kept for the neighbours: changed only as a copy.)
        result = self._stabilize(frame, result, neighbours, used) if self.config.stabilize else result.copy()
        # Forget frames that left the reach (the next frame's still holds the others).
        self._prepared = {k: v for k, v in self._prepared.items() if k in used}
        self._results = {k: v for k, v in self._results.items() if k in used}
        target = self._prepared[_key(frame)]
        if target.bad.any():
            result[target.bad] = color[target.bad]  # a renderer's NaN/Inf stays visible, as with oidn
        for message in info.warnings:
            log.warning(message)
        return frame.with_feature("color", result), info

    def _first_pass(self, frame: Frame, neighbours: Mapping[int, Frame], used: set) -> np.ndarray:
        """``frame``'s neighbours within ``window`` gathered along the vectors, then OIDN (finite
        everywhere: the frame's non-finite pixels are put back by the caller)."""
        key = _key(frame)
        used.add(key)
        target = self._prepare(frame, ProcessInfo())
        if key not in self._results:
            def chain(offset: int) -> _Prepared | None:
                other = neighbours.get(offset)
                if other is None:
                    return None
                used.add(_key(other))
                return self._prepare(other, ProcessInfo())

            layers = ["color"] + (["albedo"] + (["normal"] if target.normal is not None else [])
                                  if target.albedo is not None else [])
            gathered = self._gather(target, chain, self.config.window, layers, self.config.color_tolerance)
            result = self._denoiser.denoise(gathered["color"], albedo=gathered.get("albedo"),
                                            normal=gathered.get("normal"))
            self._results[key] = _finite(result)
        return self._results[key]

    def _stabilize(self, frame: Frame, result: np.ndarray, neighbours: Mapping[int, Frame], used: set) -> np.ndarray:
        """``result`` blended with the first-pass results of the neighbours within ``stabilize``,
        reprojected along the vectors under the same surface checks, weighted by how well the
        results agree (the shot's ends: the neighbours there are)."""
        from farmplug.quality import tonemap

        cfg = self.config

        def as_result(prepared: _Prepared, values: np.ndarray) -> _Prepared:
            return dataclasses.replace(prepared, color=values, guide=tonemap(values))

        def chain(offset: int) -> _Prepared | None:
            other = neighbours.get(offset)
            if other is None:
                return None
            # The neighbour's own neighbours, as offsets from it, within the gathering window.
            around = {o - offset: f for o, f in neighbours.items() if o != offset and abs(o - offset) <= cfg.window}
            if abs(offset) <= cfg.window:
                around[-offset] = frame
            values = self._first_pass(other, around, used)
            return as_result(self._prepared[_key(other)], values)

        target = as_result(self._prepared[_key(frame)], result)
        return self._gather(target, chain, cfg.stabilize, ["color"], cfg.stabilize_tolerance)["color"]

    def _gather(self, target: _Prepared, chain: Callable[[int], _Prepared | None], reach: int,
                layers: list[str], tolerance: float) -> dict[str, np.ndarray]:
        """The weighted mean of ``target``'s ``layers`` and those of the frames ``chain(offset)``
        gives within ``reach`` each side, each reprojected along the vectors chained from the target."""
        from farmplug.motion import compose_displacements

        own = {name: getattr(target, name) for name in layers}
        sums = {name: values.astype(np.float32, copy=True) for name, values in own.items()}
        weight = np.ones(target.color.shape[:2], np.float32)
        for direction in (-1, 1):
            total = None  # displacement from the target to the last neighbour of this side
            alive = None  # where the chain so far showed the same surface
            previous = target
            for step in range(1, reach + 1):
                field = previous.to_prev if direction < 0 else previous.to_next
                source = chain(direction * step) if field is not None else None
                if source is None:
                    break  # a missing frame, or one without vectors: the chain cannot go past it
                if total is None:
                    moved, inside = compose_displacements([field])
                    last_step = moved
                else:
                    moved, inside = compose_displacements([total, field])
                    last_step = moved - total
                valid = inside if alive is None else inside & alive
                back = source.to_next if direction < 0 else source.to_prev
                w = self._weigh(target, source, moved, last_step, back, step, own, sums, valid, tolerance)
                weight += w
                total, alive, previous = moved, w > 0, source
        return {name: values / weight[..., None] for name, values in sums.items()}

    def _weigh(self, target: _Prepared, source: _Prepared, total: np.ndarray, last_step: np.ndarray,
               back: np.ndarray | None, step: int, own: dict, sums: dict, valid: np.ndarray,
               tolerance: float) -> np.ndarray:
        """Add the neighbour ``source`` reprojected along ``total`` to ``sums``; return its weights (HxW)."""
        from farmplug.motion import backward_warp

        cfg = self.config
        names = [n for n in own if getattr(source, n) is not None]
        pieces = [getattr(source, n) for n in names]
        check_normal = target.normal is not None and source.normal is not None
        extra = [source.guide, source.bad[..., None].astype(np.float32)]
        if target.depth is not None and source.depth is not None:
            extra.append(source.depth[..., None])
        if back is not None:
            extra.append(back)
        if check_normal and "normal" not in names:
            extra.append(source.normal)
        stack = np.concatenate(pieces + extra, axis=-1)
        warped, _ = backward_warp(stack, total, mode=_RESAMPLE)
        at = 3 * len(names)
        sampled = {n: warped[..., 3 * i : 3 * i + 3] for i, n in enumerate(names)}
        for name in _NON_NEGATIVE:
            if name in sampled:
                np.maximum(sampled[name], 0.0, out=sampled[name])
        guide = warped[..., at : at + 3]
        ok = valid & (warped[..., at + 3] == 0)  # no non-finite source pixel under the kernel
        at += 4
        depths = None
        if target.depth is not None and source.depth is not None:
            depths = target.depth, warped[..., at]
            at += 1
        if back is not None:
            miss = np.linalg.norm(warped[..., at : at + 2] + last_step, axis=-1)
            ok &= miss <= _ROUND_TRIP_PX + _ROUND_TRIP_SHARE * np.linalg.norm(last_step, axis=-1)
            at += 2
        if depths is not None:
            # The same surface: its depth changed as the surface around it did (a dolly moves them all).
            z_t, z_s = depths
            scale = step * np.maximum(np.abs(z_t), 1e-6)
            change = z_s - z_t
            expected = _expected_depth_change(change, ok & (np.abs(change) <= _DEPTH_OUTLIER * scale))
            ok &= np.abs(change - expected) <= cfg.depth_tolerance * scale
        if check_normal:
            normal = sampled["normal"] if "normal" in sampled else warped[..., at : at + 3]
            ok &= (_unit(target.normal) * _unit(normal)).sum(axis=-1) >= cfg.normal_tolerance
        if target.ids is not None and source.ids is not None:
            ids, _ = backward_warp(source.ids, total, mode="nearest")
            ok &= ids == target.ids
        difference = _box3(np.abs(guide - target.guide).mean(axis=-1))
        w = np.where(ok, np.exp(-((difference / tolerance) ** 2)), 0.0).astype(np.float32)
        for name, values in own.items():
            sums[name] += w[..., None] * sampled.get(name, values)  # a neighbour without the pass: the frame's own
        return w

    def close(self) -> None:
        super().close()
        if self._guide is not None:
            self._guide.close()
            self._guide = None
        self._prepared.clear()
        self._results.clear()


def _key(frame: Frame) -> object:
    """What a frame's prepared arrays and result are cached under within a task."""
    return frame.path if frame.path is not None else id(frame)
