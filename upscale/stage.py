"""The upscale stage on the ``guided`` backend: half-resolution colour to full resolution, guided by a
full-resolution render of albedo, normal and depth.

Every layer of the input frame reaches the output at full resolution by the rule for its kind:

- the colour: the network (:mod:`farmplug.nn`, architecture ``guided-sr-2x``);
- alpha: bicubic, with its colour, clamped to [0, 1];
- albedo, normal and depth: taken from the guide (full resolution, never interpolated);
- ID layers (object/material index, Cryptomatte) and vectors: from the guide when it has a layer of
  the same name, else nearest-neighbour (IDs) or bilinear and doubled (vectors, in pixels);
- anything else: bicubic, and listed in the frame's ``farmplug:resampled`` attribute.

Each output frame names the inference backend that made it (``farmplug:inference``), the
weights (``farmplug:model``) and the guide frame (``farmplug:guide``).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from farmplug.errors import FarmplugError, MissingPassError
from farmplug.imageio import Frame, Part, read_frame
from farmplug.imageio.channels import HOW_TO_ENABLE, layer_kind, split_channel
from farmplug.stages.base import ProcessInfo
from farmplug.upscale.config import DESCRIPTOR, GUIDE_PASSES, UpscaleConfig
from farmplug.upscale.config import SHIPPED_WEIGHTS as SHIPPED_WEIGHTS  # where tools and tests look for it
from farmplug.upscale.resample import bicubic, bilinear, nearest

log = logging.getLogger(__name__)

GUIDE_ORDER = ("albedo", "normal", "depth")
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def frame_number(path: Path) -> int:
    """The frame number in a file name (its last run of digits: ``beauty.0012.exr`` -> 12).

    Raises:
        FarmplugError: the name holds no number.
    """
    match = _LAST_NUMBER.search(path.name)
    if match is None:
        raise FarmplugError("cannot tell the frame number from the file name, so the guide frame cannot be found",
                            path=path)
    return int(match.group(1))


def guide_path(pattern: str, color_path: Path | None) -> Path:
    """The guide frame for ``color_path``: ``pattern`` at the same frame number (or ``pattern`` itself)."""
    from farmplug.render.base import frame_path, has_frame_token

    if not has_frame_token(pattern):
        return Path(pattern)
    if color_path is None:
        raise FarmplugError(f"the guide pattern {pattern} has a frame token but the colour frame has no file name")
    return frame_path(pattern, frame_number(color_path))


def guide_array(guide: Frame, color: Frame) -> np.ndarray:
    """The guide's albedo, normal and depth stacked (H, W, 7).

    Raises:
        MissingPassError: the guide lacks one of them (naming both files and what to enable).
    """
    planes = []
    for feature in GUIDE_ORDER:
        if not guide.has(feature):
            raise MissingPassError(
                f"the guide has no {feature} pass, which upscaling {color.path} needs: {HOW_TO_ENABLE[feature]} "
                "in the full-resolution guide render", path=guide.path)
        planes.append(guide.feature(feature))
    return np.concatenate(planes, axis=-1).astype(np.float32)


def _scaled_spec(spec: oiio.ImageSpec, window: oiio.ImageSpec) -> oiio.ImageSpec:
    """A copy of ``spec`` (channels, formats, metadata) on ``window``'s data and display windows."""
    out = oiio.ImageSpec(spec)
    out.x, out.y, out.width, out.height = window.x, window.y, window.width, window.height
    out.full_x, out.full_y = window.full_x, window.full_y
    out.full_width, out.full_height = window.full_width, window.full_height
    return out


class GuidedUpscaleStage:
    """Upscale a frame's colour 2x with farmplug's own network, guided by full-resolution passes."""

    descriptor = DESCRIPTOR

    def __init__(self, config: UpscaleConfig | None = None) -> None:
        self.config = config or UpscaleConfig()
        self._weights = None
        self._backend = None
        self._tile = 0

    @property
    def device_name(self) -> str:
        """``cpu`` or ``cuda``: where the network ran (the task's timing record keeps it)."""
        return self._backend.device if self._backend is not None else "cpu"

    @property
    def inference(self) -> str:
        """The inference backend and precision, e.g. ``onnxruntime-cpu fp32`` (each frame records it)."""
        return f"{self._backend.name} {self._backend.precision}" if self._backend is not None else ""

    @property
    def record_settings(self) -> dict[str, str]:
        """What the task's timing record should say about the model that ran."""
        return {"inference": self.inference, "model": self._model_label()}

    def _model_label(self) -> str:
        w = self._weights
        if w is None:
            return ""
        return f"{w.path.name} {w.arch.name} v{w.metadata.get('version', '?')} sha256:{w.sha256[:12]}"

    def open(self) -> None:
        """Load the weights and start the best inference backend (once per task).

        Raises:
            FarmplugError: unreadable weights, weights for another kind of model, or no backend.
        """
        from farmplug.nn.backends import BackendOptions, open_backend
        from farmplug.nn.weights import load_weights

        if self._backend is not None:
            return
        weights = load_weights(self.config.weights_file())
        if weights.arch.scale != self.config.scale or [s.name for s in weights.arch.inputs] != ["color", "guidance"]:
            raise FarmplugError(f"weights of {weights.arch.name} are not a guided x{self.config.scale} upscaler",
                                path=weights.path)
        self._tile = self.config.tiling(weights.arch)[0]
        # The window a TensorRT engine is built for: what `farmplug run engine` prebuilt (engine_build).
        options = BackendOptions(threads=self.config.threads, tile_shape=(self.config.tile_window(weights.arch),) * 2)
        self._backend = open_backend(weights, runtime=self.config.runtime, device=self.config.device, options=options)
        self._weights = weights
        log.info("upscale: %s on %s, %d-pixel tiles", self._model_label(), self.inference, self._tile)

    def process(self, frame: Frame) -> tuple[Frame, ProcessInfo]:
        """Upscale ``frame``; its guide is ``config.aux`` at the same frame number.

        Raises:
            FarmplugError: no guide pattern, a missing guide file, or a guide at the wrong resolution.
            MissingPassError: no colour, or a guide without albedo, normal or depth.
        """
        if not self.config.aux:
            raise FarmplugError("no guide frames: give --guide PATTERN, the full-resolution render with the "
                                f"{', '.join(sorted(GUIDE_PASSES))} passes", path=frame.path)
        path = guide_path(self.config.aux, frame.path)
        if not path.is_file():
            raise FarmplugError(f"guide frame not found (for {frame.path}); render the full-resolution guide "
                                "with albedo, normal and depth", path=path)
        return self.upscale(frame, read_frame(path))

    def upscale(self, frame: Frame, guide: Frame) -> tuple[Frame, ProcessInfo]:
        """Upscale ``frame`` guided by ``guide`` (both already read).

        Raises:
            FarmplugError: resolutions that do not match the scale; MissingPassError for a missing pass.
        """
        from farmplug.nn.tiling import run_with_retry

        if self._backend is None:
            self.open()
        info = ProcessInfo()
        scale = self.config.scale
        color = frame.feature("color")
        guide_planes = guide_array(guide, frame)
        h, w = color.shape[:2]
        big_h, big_w = guide_planes.shape[:2]
        if (-(-big_h // scale), -(-big_w // scale)) != (h, w):
            raise FarmplugError(
                f"the guide {guide.path} is {big_w}x{big_h} but the colour {frame.path} is {w}x{h}; the guide must be "
                f"the colour's size times {scale} (render the colour at {100 // scale}% and the guide at 100%)")
        # An odd full size: the colour covers one more half pixel; pad the guide by its edge and crop after.
        padded = np.pad(guide_planes, ((0, h * scale - big_h), (0, w * scale - big_w), (0, 0)), mode="edge")
        inputs = {"color": np.ascontiguousarray(color.transpose(2, 0, 1)[None]),
                  "guidance": np.ascontiguousarray(padded.transpose(2, 0, 1)[None])}
        started = time.perf_counter()
        out, used_tile = run_with_retry(self._backend, self._weights.arch, inputs, tile=self._tile)
        if self._backend.device == "cuda":
            info.gpu_s = time.perf_counter() - started
        if used_tile != self._tile:
            info.warnings.append(f"{frame.path}: out of memory with {self._tile}-pixel tiles; used {used_tile}")
            self._tile = used_tile
        result = out[0].transpose(1, 2, 0)[:big_h, :big_w]
        built, resampled = self._assemble(frame, guide, result, (big_h, big_w))
        for message in info.warnings:
            log.warning(message)
        if resampled:
            log.info("%s: resampled (not from the network or the guide): %s", frame.path, ", ".join(resampled))
        return built, info

    def _assemble(self, frame: Frame, guide: Frame, color: np.ndarray, size: tuple[int, int]) -> tuple[Frame, list[str]]:
        """The output frame: every part of ``frame`` at full resolution, each layer by its rule."""
        big_h, big_w = size
        scale = self.config.scale
        window_spec = guide.parts[guide.locate("albedo").part].spec
        guide_channels = {}
        for index, part in enumerate(guide.parts):
            for ch, name in enumerate(part.channels):
                guide_channels.setdefault(name, (index, ch))
        taken: dict[tuple[int, int], np.ndarray] = {}

        def put(feature: str, values: np.ndarray) -> None:
            loc = frame.locate(feature)
            if loc is not None:
                for k, ch in enumerate(loc.channels):
                    taken[(loc.part, ch)] = values[..., k]

        put("color", color)
        if frame.has("alpha"):
            put("alpha", np.clip(bicubic(frame.feature("alpha"), scale)[:big_h, :big_w], 0, 1))
        for feature in GUIDE_ORDER:
            put(feature, guide.feature(feature))

        resampled: list[str] = []
        planes = []
        for index, part in enumerate(frame.parts):
            pixels = np.zeros((big_h, big_w, len(part.channels)), dtype=np.float32)
            groups: dict[str, list[int]] = {}
            for ch, name in enumerate(part.channels):
                if (index, ch) in taken:
                    pixels[..., ch] = taken[(index, ch)]
                elif name in guide_channels and _guide_kind(name, part) in ("id", "vector", "depth", "normal"):
                    gp, gc = guide_channels[name]
                    pixels[..., ch] = guide.parts[gp].pixels[..., gc]
                else:
                    groups.setdefault(name.rsplit(".", 1)[0] if "." in name else part.name, []).append(ch)
            for group, channels in groups.items():
                kind = _guide_kind(part.channels[channels[0]], part)
                data = part.pixels[..., channels]
                if kind in ("id", "depth"):
                    up, how = nearest(data, scale), "nearest"
                elif kind == "vector":
                    up, how = bilinear(data, scale) * scale, "bilinear"
                else:
                    up, how = bicubic(data, scale), "bicubic"
                pixels[..., channels] = up[:big_h, :big_w]
                resampled.append(f"{group or 'channels'} ({how})")
            planes.append(pixels)
        parts = []
        for part, pixels in zip(frame.parts, planes, strict=True):
            spec = _scaled_spec(part.spec, window_spec)
            spec.attribute("farmplug:inference", self.inference)
            spec.attribute("farmplug:model", self._model_label())
            spec.attribute("farmplug:guide", str(guide.path or ""))
            spec.attribute("farmplug:resampled", ", ".join(resampled) or "none")
            parts.append(Part(spec, pixels))
        return Frame(tuple(parts), path=None, vocabulary=frame.vocabulary), resampled

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _guide_kind(channel: str, part: Part) -> str:
    _layer, pass_name, _comp = split_channel(channel)
    if not pass_name:
        pass_name = part.name.rsplit(".", 1)[-1] if part.name else ""
    return layer_kind(pass_name)
