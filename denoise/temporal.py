"""The denoise stage's temporal backend: gather each frame's surfaces from its neighbours, then OIDN.

A frame rendered with few samples is noisy, but its neighbours saw most of the same surfaces with
their own samples (Cycles' animated seed gives each frame a new noise pattern). For each frame
``t`` and each neighbour ``s`` within ``window`` frames, the renderer's Vector pass says where
every pixel's surface was in ``s`` (one frame at a time, chained along each frame's own vectors:
:func:`farmplug.motion.compose_displacements`). The neighbour's noisy colour, albedo and normal are
read there (:func:`farmplug.motion.backward_warp`) and count where they show the same surface:

* the reprojection stays inside the frame, and the frame before it in the chain passed too;
* the depth agrees (relative change at most ``depth_tolerance`` per frame of distance), the
  normals agree (cosine at least ``normal_tolerance``) and the object IDs are equal (when the
  render has an object-index pass);
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

A frame without a Vector pass is denoised on its own (a warning), or fails with
``missing_motion: error`` (``--require-motion``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
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
#: How a neighbour is read between pixels.
_RESAMPLE = "bilinear"


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
        key = frame.path if frame.path is not None else id(frame)
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
        used = {frame.path if frame.path is not None else id(frame)}
        target = self._prepare(frame, info)
        gathered = self._gather(target, frame, neighbours, used)
        # Forget frames that left the window (the next frame's window still holds the others).
        self._prepared = {k: v for k, v in self._prepared.items() if k in used}
        result = self._denoiser.denoise(gathered["color"], albedo=gathered.get("albedo"), normal=gathered.get("normal"))
        if target.bad.any():
            result[target.bad] = color[target.bad]  # a renderer's NaN/Inf stays visible, as with oidn
        for message in info.warnings:
            log.warning(message)
        return frame.with_feature("color", result), info

    def _gather(self, target: _Prepared, frame: Frame, neighbours: Mapping[int, Frame],
                used: set) -> dict[str, np.ndarray]:
        from farmplug.motion import compose_displacements

        cfg = self.config
        layers = {"color": target.color}
        if target.albedo is not None:
            layers["albedo"] = target.albedo
            if target.normal is not None:
                layers["normal"] = target.normal
        sums = {name: values.astype(np.float32, copy=True) for name, values in layers.items()}
        weight = np.ones(target.color.shape[:2], np.float32)
        for direction in (-1, 1):
            reach = None  # displacement from the target to the last neighbour of this side, and its validity
            alive = None
            previous = target
            for step in range(1, cfg.window + 1):
                other = neighbours.get(direction * step)
                if other is None:
                    break
                field = previous.to_prev if direction < 0 else previous.to_next
                if field is None:
                    break  # the chain cannot go past a frame without vectors
                used.add(other.path if other.path is not None else id(other))
                source = self._prepare(other, ProcessInfo())
                if reach is None:
                    total, inside = compose_displacements([field])
                    last_step = total
                else:
                    total, inside = compose_displacements([reach, field])
                    last_step = total - reach
                valid = inside if alive is None else inside & alive
                back = source.to_next if direction < 0 else source.to_prev
                w = self._weigh(target, source, total, last_step, back, step, layers, sums, valid)
                weight += w
                reach, alive, previous = total, w > 0, source
        return {name: values / weight[..., None] for name, values in sums.items()}

    def _weigh(self, target: _Prepared, source: _Prepared, total: np.ndarray, last_step: np.ndarray,
               back: np.ndarray | None, step: int, layers: dict, sums: dict, valid: np.ndarray) -> np.ndarray:
        """Add the neighbour ``source`` reprojected along ``total`` to ``sums``; return its weights (HxW)."""
        from farmplug.motion import backward_warp

        cfg = self.config
        names = [n for n in layers if getattr(source, n) is not None]
        pieces = [getattr(source, n) for n in names]
        extra = [source.guide, source.bad[..., None].astype(np.float32)]
        if target.depth is not None and source.depth is not None:
            extra.append(source.depth[..., None])
        if back is not None:
            extra.append(back)
        stack = np.concatenate(pieces + extra, axis=-1)
        warped, _ = backward_warp(stack, total, mode=_RESAMPLE)
        at = 3 * len(names)
        sampled = {n: warped[..., 3 * i : 3 * i + 3] for i, n in enumerate(names)}
        guide = warped[..., at : at + 3]
        ok = valid & (warped[..., at + 3] == 0)  # no non-finite source pixel under the kernel
        at += 4
        if target.depth is not None and source.depth is not None:
            z_t, z_s = target.depth, warped[..., at]
            ok &= np.abs(z_s - z_t) <= cfg.depth_tolerance * step * np.maximum(np.abs(z_t), 1e-6)
            at += 1
        if back is not None:
            miss = np.linalg.norm(warped[..., at : at + 2] + last_step, axis=-1)
            ok &= miss <= _ROUND_TRIP_PX + _ROUND_TRIP_SHARE * np.linalg.norm(last_step, axis=-1)
        if target.normal is not None and "normal" in sampled:
            ok &= (_unit(target.normal) * _unit(sampled["normal"])).sum(axis=-1) >= cfg.normal_tolerance
        if target.ids is not None and source.ids is not None:
            ids, _ = backward_warp(source.ids, total, mode="nearest")
            ok &= ids == target.ids
        difference = _box3(np.abs(guide - target.guide).mean(axis=-1))
        w = np.where(ok, np.exp(-((difference / cfg.color_tolerance) ** 2)), 0.0).astype(np.float32)
        for name in layers:
            if name in sampled:
                sums[name] += w[..., None] * sampled[name]
            else:
                sums[name] += w[..., None] * layers[name]  # a neighbour without the pass: the frame's own
        return w

    def close(self) -> None:
        super().close()
        if self._guide is not None:
            self._guide.close()
            self._guide = None
        self._prepared.clear()
