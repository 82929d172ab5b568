"""The inbetween stage: frames between rendered keyframes, made from the renderer's motion and depth.

This module maps EXR frames to the interpolation core (:mod:`farmplug.inbetween.interpolate`)
and back: every layer of the keyframe is carried to the new frame by the rule for its kind
(colour splatted, depth nearest surface, normals renormalised, vectors re-derived, ID layers
never blended), a ``farmplug.confidence`` part is added, and the frame is delivered only when
its confidence score passes the plan's threshold. The others are listed in a
:class:`~farmplug.models.ConfidenceRecord` for the fallback task to render for real.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import OpenImageIO as oiio

from farmplug import __version__
from farmplug.errors import FarmplugError, MissingPassError
from farmplug.frames import keyframe_span as split_span  # noqa: F401 - the stage's own name for it
from farmplug.frames import targets_between  # noqa: F401
from farmplug.imageio import Frame, Part, read_frame, write_frame
from farmplug.imageio.channels import layer_kind, split_channel
from farmplug.inbetween.config import DESCRIPTOR, InbetweenConfig
from farmplug.models import ConfidenceRecord, FrameConfidence
from farmplug.render.base import frame_path
from farmplug.stages.base import KeyframeJob
from farmplug.timing import FrameTiming, Stopwatch, TimingRecord

log = logging.getLogger(__name__)

CONFIDENCE_PART = "farmplug.confidence"
CONFIDENCE_CHANNEL = "farmplug.confidence.V"

@dataclass(frozen=True)
class ChannelGroup:
    """Channels of one layer/pass inside one part (``ViewLayer.Denoising Albedo.R/G/B``)."""

    name: str
    part: int
    channels: tuple[int, ...]
    kind: str


def channel_groups(frame: Frame) -> list[ChannelGroup]:
    """Every layer of the frame, grouped by part and ``layer.pass`` prefix, with its resampling kind."""
    groups: list[ChannelGroup] = []
    for index, part in enumerate(frame.parts):
        by_prefix: dict[str, list[int]] = {}
        for ch, name in enumerate(part.channels):
            prefix = name.rsplit(".", 1)[0] if "." in name else ""
            by_prefix.setdefault(prefix, []).append(ch)
        for prefix, channels in by_prefix.items():
            _layer, pass_name, _comp = split_channel(prefix + ".x") if prefix else ("", part.name, "")
            groups.append(ChannelGroup(prefix or part.name, index, tuple(channels), layer_kind(pass_name or "")))
    return groups


def keyframe_from(frame: Frame, number: int):
    """Build the interpolation core's Keyframe from a frame read from disk.

    Raises:
        MissingPassError: no colour, depth or motion pass (the message says what to enable).
    """
    from farmplug.inbetween.interpolate import Keyframe, Layer
    from farmplug.inbetween.vectors import split_blender_vectors

    color = frame.feature("color")
    if frame.has("alpha"):
        color = np.concatenate([color, frame.feature("alpha")], axis=-1)
    depth = frame.feature("depth")[..., 0]
    to_prev, to_next = split_blender_vectors(frame.feature("motion"))
    used = {frame.locate(f) for f in ("color", "alpha", "depth", "motion")}
    used_channels = {(loc.part, ch) for loc in used if loc is not None for ch in loc.channels}
    layers = {}
    for group in channel_groups(frame):
        free = [ch for ch in group.channels if (group.part, ch) not in used_channels]
        if len(free) != len(group.channels):
            continue
        layers[group.name] = Layer(
            data=np.ascontiguousarray(frame.parts[group.part].pixels[:, :, list(group.channels)]),
            kind=group.kind if group.kind in ("color", "normal", "depth", "vector", "id") else "color",
        )
    return Keyframe(frame=number, color=color, depth=depth, to_prev=to_prev, to_next=to_next, layers=layers)


def check_compatible(a: Frame, b: Frame) -> None:
    """Keyframes must have the same resolution and the same channels.

    Raises:
        FarmplugError: naming both files and what differs.
    """
    if [p.channels for p in a.parts] != [p.channels for p in b.parts]:
        raise FarmplugError(f"keyframes {a.path} and {b.path} have different channel sets")
    if [p.data_window for p in a.parts] != [p.data_window for p in b.parts]:
        raise FarmplugError(
            f"keyframes {a.path} and {b.path} have different resolutions or data windows "
            f"({a.parts[0].data_window} vs {b.parts[0].data_window})"
        )


def frame_from(template: Frame, result, confidence_part: bool = True) -> Frame:
    """Write an interpolation result into a copy of the keyframe's structure (every part and header)."""
    from farmplug.inbetween.vectors import join_blender_vectors

    parts = [Part(p.spec, p.pixels.copy()) for p in template.parts]

    def put(loc, values: np.ndarray) -> None:
        if loc is not None:
            parts[loc.part].pixels[:, :, list(loc.channels)] = values

    color = np.asarray(result.color, dtype=np.float32)
    put(template.locate("color"), color[..., :3])
    if template.has("alpha") and color.shape[-1] == 4:
        put(template.locate("alpha"), color[..., 3:4])
    put(template.locate("depth"), np.asarray(result.depth, dtype=np.float32)[..., None])
    put(template.locate("motion"), np.asarray(join_blender_vectors(result.to_prev, result.to_next), dtype=np.float32))
    for group in channel_groups(template):
        if group.name in result.layers:
            parts[group.part].pixels[:, :, list(group.channels)] = np.asarray(result.layers[group.name], dtype=np.float32)
    if confidence_part:
        # A part of its own, on the colour's data and display windows.
        color_spec = template.parts[template.locate("color").part].spec
        height, width = result.confidence.shape
        spec = oiio.ImageSpec(width, height, 1, "float")
        spec.x, spec.y = color_spec.x, color_spec.y
        spec.full_x, spec.full_y = color_spec.full_x, color_spec.full_y
        spec.full_width, spec.full_height = color_spec.full_width, color_spec.full_height
        spec.channelnames = (CONFIDENCE_CHANNEL,)
        spec.attribute("name", CONFIDENCE_PART)
        spec.attribute("compression", "zip")
        parts.append(Part(spec, np.asarray(result.confidence, dtype=np.float32)[..., None]))
    return Frame(tuple(parts), path=None, vocabulary=template.vocabulary)


def run_inbetween(
    config: InbetweenConfig,
    *,
    input_pattern: str,
    output_pattern: str,
    keys: Sequence[int],
    targets: Sequence[int],
    guide_pattern: str | None = None,
    rejected_pattern: str | None = None,
    task: str = "inbetween",
    plan: str = "",
    key: str = "",
    progress: Callable[[int], None] | None = None,
) -> tuple[TimingRecord, ConfidenceRecord]:
    """Interpolate ``targets`` from the ``keys`` around them; deliver the frames that pass.

    Frames scoring at or above ``config.confidence_threshold`` are written to ``output_pattern``;
    the others go to ``rejected_pattern`` (for inspection) and are listed as failed in the
    confidence record. Keyframes without depth or motion: with ``fallback: render`` their
    in-between frames are all listed as failed (the fallback task renders them); with
    ``fallback: error`` it stops with the pass to enable.

    Raises:
        FarmplugError: missing keyframe files, mismatched keyframes, or missing passes with
            ``fallback: error``.
    """
    from farmplug.inbetween.interpolate import Guide, InterpolationSettings, interpolate, resolve_device
    from farmplug.inbetween.vectors import split_blender_vectors

    keys, targets = sorted(keys), sorted(targets)
    step = max((b - a for a, b in zip(keys, keys[1:], strict=False)), default=1)
    missing = [str(frame_path(input_pattern, k)) for k in keys if not frame_path(input_pattern, k).is_file()]
    if missing:
        raise FarmplugError(f"keyframe not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    settings = InterpolationSettings(device=config.device)
    device = str(resolve_device(config.device))
    started = time.time()
    timings: list[FrameTiming] = []
    verdicts: list[FrameConfidence] = []
    cache: dict[int, Frame] = {}
    provenance = {"stage": DESCRIPTOR.kind, "backend": DESCRIPTOR.backend, "version": __version__, "plan": plan, "task": task,
                  **({"key": key} if key else {})}

    def load(k: int) -> Frame:
        # Each keyframe is read once: the right end of one interval is the left end of the next.
        if k not in cache:
            for old in [key for key in cache if key < k - step]:
                del cache[old]
            cache[k] = read_frame(frame_path(input_pattern, k))
        return cache[k]

    for a, b in zip(keys, keys[1:], strict=False):
        between = [t for t in targets if a < t < b]
        if not between:
            continue
        with Stopwatch() as sw:
            fa, fb = load(a), load(b)
            check_compatible(fa, fb)
            try:
                ka, kb = keyframe_from(fa, a), keyframe_from(fb, b)
            except MissingPassError as err:
                if config.fallback == "error":
                    raise
                log.warning("%s; frames %s will be rendered instead", err, between)
                reason = f"keyframe lacks a pass: {err}"
                verdicts += [FrameConfidence(frame=t, keyframes=[a, b], passed=False, reason=reason) for t in between]
                continue
            guides = None
            if guide_pattern:
                guides = {}
                for t in between:
                    g = read_frame(frame_path(guide_pattern, t))
                    to_prev, to_next = split_blender_vectors(g.feature("motion"))
                    guides[t] = Guide(
                        depth=g.feature("depth")[..., 0], to_prev=to_prev, to_next=to_next,
                        albedo=g.feature("albedo") if g.has("albedo") else None,
                        normal=g.feature("normal") if g.has("normal") else None,
                    )
            results = interpolate(ka, kb, between, guides=guides, settings=settings)
            for result in results:
                passed = bool(result.score >= config.confidence_threshold)
                out = frame_from(fa if result.frame - a <= b - result.frame else fb, result)
                info = {**provenance, "keyframes": f"{a},{b}", "confidence": f"{result.score:.4f}"}
                if passed:
                    write_frame(frame_path(output_pattern, result.frame), out, provenance=info, inputs=[fa.path, fb.path])
                elif rejected_pattern:
                    write_frame(frame_path(rejected_pattern, result.frame), out, provenance=info, inputs=[fa.path, fb.path])
                verdicts.append(
                    FrameConfidence(
                        frame=result.frame, keyframes=[a, b], score=float(result.score), passed=passed,
                        reason="" if passed else f"confidence {result.score:.3f} below {config.confidence_threshold}",
                    )
                )
        for t in between:
            timings.append(FrameTiming(frame=t, wall_s=sw.wall_s / len(between), cpu_s=sw.cpu_s / len(between)))
            if progress:
                progress(t)
    record = ConfidenceRecord(task=task, threshold=config.confidence_threshold, frames=verdicts)
    timing = TimingRecord(
        task=task, stage="inbetween", role="plan", backend="splat", started_at=started, finished_at=time.time(),
        frames=timings,
        settings={"step": step, "threshold": config.confidence_threshold, "guided": bool(guide_pattern),
                  "failed": len(record.failed), "device": device},
    )
    return timing, record


class SplatInbetweenStage:
    """The inbetween stage as the core runs it (``mode="keyframes"``): one task makes the frames
    between its keyframes through :func:`run_inbetween`."""

    descriptor = DESCRIPTOR

    def __init__(self, config: InbetweenConfig | None = None) -> None:
        self.config = config or InbetweenConfig()

    def open(self) -> None:
        """Import the interpolation core (torch) once, before anything is timed."""
        import farmplug.inbetween.interpolate  # noqa: F401

    def run(self, job: KeyframeJob, progress: Callable[[int], None] | None = None) -> tuple[TimingRecord, ConfidenceRecord]:
        """Make ``job.targets`` from ``job.keys`` (see :func:`run_inbetween`).

        Raises:
            FarmplugError: as :func:`run_inbetween`.
        """
        return run_inbetween(
            self.config, input_pattern=job.input_pattern, output_pattern=job.output_pattern, keys=job.keys,
            targets=job.targets, guide_pattern=job.aux_pattern, rejected_pattern=job.rejected_pattern,
            task=job.task, plan=job.plan, key=job.key, progress=progress,
        )

    def close(self) -> None:
        """Nothing to release: the interpolation holds no device between tasks."""
