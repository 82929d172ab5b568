"""The top-level :func:`interpolate`: the steps of :mod:`farmplug.inbetween.interpolate` in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from farmplug.inbetween.interpolate.confidence import pixel_confidence, side_coverage, splat_terms
from farmplug.inbetween.interpolate.fill import fill_holes, fill_ids
from farmplug.inbetween.interpolate.fuse import fuse
from farmplug.inbetween.interpolate.guided import apply_guide_passes, guided_fusion
from farmplug.inbetween.interpolate.keys import Batch, KeyPair, Plan, Sides, load_source, plan_layers
from farmplug.inbetween.interpolate.output import BatchOutput, FrameTensors, motion_vectors, unpack
from farmplug.inbetween.interpolate.paths import with_acceleration
from farmplug.inbetween.interpolate.sampler import make_resampler
from farmplug.inbetween.interpolate.splat import splat_keyframes
from farmplug.inbetween.interpolate.static import static_appearance
from farmplug.inbetween.interpolate.types import Guide, Interpolated, InterpolationSettings, Keyframe, resolve_device
from farmplug.inbetween.interpolate.validate import validate_inputs


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
    size = validate_inputs(a, b, frames, guides)
    device = resolve_device(settings.device)
    plan = plan_layers(a)

    with torch.no_grad():
        batch = Batch.create(a.frame, b.frame, frames, size, device)
        pair = _keyframe_pair(a, b, plan, batch, settings, resample=settings.resample != "splat" or bool(guides))
        splats = splat_keyframes(pair.sources, batch, plan, settings)
        fusion, predictions = fuse(pair, splats, batch, settings)
        coverage = Sides(*(side_coverage(side.cover) for side in splats.sides))
        ids, id_score, invalid = splats.ids, splats.id_score, splats.invalid
        del splats
        terms = splat_terms(predictions, coverage, fusion.fused[:, plan.velocity], batch, settings.one_sided_confidence)
        del predictions

        splat_agreement = terms.agreement  # the keyframes compared along their own vectors
        guide_fill = None
        if guides:
            fusion, terms, guide_fill = guided_fusion(pair, guides, batch, fusion, terms, settings)
        if settings.static_appearance:
            terms = static_appearance(pair, guides, batch, fusion.fused, terms, vector_agreement=splat_agreement)
        terms = fill_holes(fusion, plan, guide_fill, terms)

        velocity = fusion.fused[:, plan.velocity]
        step_motion = torch.hypot(velocity[:, 0:1], velocity[:, 1:2]).mul_(batch.step)
        to_prev, to_next = motion_vectors(fusion, plan)
        if id_score is not None:
            ids = fill_ids(ids, id_score)
        images = FrameTensors(features=fusion.fused, to_prev=to_prev, to_next=to_next, ids=ids)
        if guides:
            apply_guide_passes(images, pair, guides, batch, settings.guide_depth_tolerance)

        confidence, scores = pixel_confidence(terms, step_motion, invalid, settings)
        output = BatchOutput(
            frames=images,
            confidence=confidence,
            scores=scores,
            terms=terms,
            covered=fusion.covered,
            step_motion=step_motion,
            guided=tuple(t in guides for t in batch.targets),
            invalid_sources=int((~pair.sources.a.valid).sum() + (~pair.sources.b.valid).sum()),
        )
        return [
            unpack(output, i, frame=t, plan=plan, layers=a.layers, threshold=settings.confidence_threshold)
            for i, t in enumerate(batch.targets)
        ]


def _keyframe_pair(
    a: Keyframe, b: Keyframe, plan: Plan, batch: Batch, settings: InterpolationSettings, *, resample: bool
) -> KeyPair:
    """Both keyframes on the device, with their eased paths (``settings.acceleration``) and, where
    anything resamples them, their resamplers."""
    src_a = load_source(a, plan, forward=True, device=batch.device)
    src_b = load_source(b, plan, forward=False, device=batch.device)
    if settings.acceleration:
        src_a, src_b = (
            with_acceleration(src_a, src_b, batch.step, batch.h, batch.w),
            with_acceleration(src_b, src_a, batch.step, batch.h, batch.w),
        )
    resamplers = None
    if resample:
        resamplers = Sides(*(make_resampler(src, plan, settings.resample, batch.h, batch.w) for src in (src_a, src_b)))
    return KeyPair(plan=plan, sources=Sides(src_a, src_b), resamplers=resamplers)
