"""Render-aware frame interpolation: in-between frames from two rendered keyframes and their AOVs.

Unlike colour-only optical flow, a renderer gives exact per-pixel motion (the Vector pass, see
:mod:`farmplug.inbetween.vectors`) and depth, so the in-between frame is built by moving pixels,
not by guessing their motion. :func:`interpolate` (:mod:`.pipeline`) runs these steps, all
targets between two keyframes in one torch batch:

1. **Forward splat** (:mod:`.splat`). Keyframe A is splatted to each target ``t`` along
   ``(t - a) * A.to_next`` and keyframe B along ``(b - t) * B.to_prev`` (constant velocity;
   exact for one frame; at a step above 2, a path of constant acceleration that ends with the
   other keyframe's vector, :mod:`.paths`), through a **soft z-buffer over both keyframes
   together**: a background pixel never mixes into a foreground one, samples of the same surface
   blend smoothly, and where the nearest surface's footprints cover only part of a pixel the
   surfaces behind show through the rest.
2. **Fuse in time** (:mod:`.fuse`). Each side is normalised by its own splat weight and the two
   are mixed with ``(1 - s) * weight_A`` and ``s * weight_B`` (``s = (t - a) / (b - a)``).
3. **Resample** (:mod:`.fuse`, ``settings.resample``, with the samplers of :mod:`.sampler`): the
   splat also carries each side's own motion to every target pixel, so each side's keyframe is
   resampled with a clamped cubic kernel where the target pixel's surface was, which undoes the
   bilinear splat's half-pixel blur (same-surface depth check; depth and velocity stay with the
   splat).
4. **Guided mode** (:mod:`.guided`; a :class:`Guide` gives the target's own cheap depth and
   vectors): A and B are also backward-warped into ``t`` along the guide's vectors; a warped
   keyframe counts where its depth agrees with the guide's, the splat where its depth agrees with
   the guide's, and the guide's depth and vectors become the output's.
   **Static appearance** (:mod:`.static`, after step 4): where the same surface is at a pixel in
   A, B and the target and the pixel's own colour explains A and B clearly better than the
   vectors (reflections on a turning object), the colour is taken from the pixel.
5. **Holes** (:mod:`.fill`) nobody covers are filled by the guide's colour when there is one,
   else by push-pull (a weighted image pyramid) for continuous layers, by the farthest
   neighbouring depth for depth (a disocclusion reveals background) and by the nearest
   contributor for id layers.

Every target gets a per-pixel confidence and a frame score (:mod:`.confidence`, which gives the
formula; the measurements behind it are in ``docs/inbetween.md``). The inputs are checked first
(:mod:`.validate`); :mod:`.keys` packs the keyframes onto the device and :mod:`.output` unpacks
the results.

torch is imported by this package only; ``import farmplug`` never loads it.
"""

from farmplug.inbetween.interpolate.pipeline import interpolate
from farmplug.inbetween.interpolate.types import (
    LAYER_KINDS,
    Guide,
    Interpolated,
    InterpolationSettings,
    Keyframe,
    Layer,
    LayerKind,
    resolve_device,
)

__all__ = [
    "LAYER_KINDS",
    "Guide",
    "Interpolated",
    "InterpolationSettings",
    "Keyframe",
    "Layer",
    "LayerKind",
    "interpolate",
    "resolve_device",
]
