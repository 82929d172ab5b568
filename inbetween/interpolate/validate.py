"""Input checks: every mismatch between the keyframes, the targets and the guides is one clear error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from farmplug.errors import FarmplugError
from farmplug.inbetween.interpolate.types import LAYER_KINDS, Guide, Keyframe


def shape(array: object) -> tuple[int, ...]:
    """The shape of an array-like as plain ints (``()`` for anything without one)."""
    return tuple(int(n) for n in getattr(array, "shape", ()))


def validate_inputs(a: Keyframe, b: Keyframe, frames: Sequence[int], guides: Mapping[int, Guide]) -> tuple[int, int]:
    """Check the inputs of :func:`~farmplug.inbetween.interpolate.interpolate`.

    Returns:
        The resolution ``(h, w)``.

    Raises:
        FarmplugError: what differs or is out of range, with the frame and the names involved.
    """
    size = shape(a.depth)
    if len(size) != 2:
        raise FarmplugError(f"keyframe {a.frame}: depth must be HxW, not {size}")
    h, w = size
    for key in (a, b):
        _check_keyframe(key, h, w, reference=a.frame)
    _check_pair(a, b)
    _check_frames(a, b, frames)
    for t, guide in guides.items():
        _check_guide(t, guide, frames, h, w, colour_channels=shape(a.color)[2])
    return h, w


def _geometry_shapes(h: int, w: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the depth and vectors a keyframe or a guide must have."""
    return {"depth": (h, w), "to_prev": (h, w, 2), "to_next": (h, w, 2)}


def _check_keyframe(key: Keyframe, h: int, w: int, *, reference: int) -> None:
    for name, expected in _geometry_shapes(h, w).items():
        got = shape(getattr(key, name))
        if got != expected:
            raise FarmplugError(
                f"keyframe {key.frame}: {name} is {got} but keyframe {reference}'s resolution needs {expected}"
            )
    color = shape(key.color)
    if len(color) != 3 or color[:2] != (h, w) or color[2] not in (3, 4):
        raise FarmplugError(f"keyframe {key.frame}: color is {color}, expected {(h, w)} x 3 or 4 channels")
    for name, layer in key.layers.items():
        if layer.kind not in LAYER_KINDS:
            raise FarmplugError(
                f"keyframe {key.frame}: layer {name!r} has unknown kind {layer.kind!r}; allowed: {list(LAYER_KINDS)}"
            )
        got = shape(layer.data)
        if len(got) != 3 or got[:2] != (h, w):
            raise FarmplugError(f"keyframe {key.frame}: layer {name!r} is {got}, expected {(h, w)} x C")


def _check_pair(a: Keyframe, b: Keyframe) -> None:
    """The two keyframes carry the same channels and layers, and A comes first."""
    if shape(a.color)[2] != shape(b.color)[2]:
        raise FarmplugError(
            f"keyframes differ in colour channels: {a.frame} has {shape(a.color)[2]}, {b.frame} has {shape(b.color)[2]}"
        )
    if set(a.layers) != set(b.layers):
        raise FarmplugError(
            f"keyframes differ in layers: only in {a.frame}: {sorted(set(a.layers) - set(b.layers))}, "
            f"only in {b.frame}: {sorted(set(b.layers) - set(a.layers))}"
        )
    for name in a.layers:
        la, lb = a.layers[name], b.layers[name]
        if la.kind != lb.kind or shape(la.data)[2] != shape(lb.data)[2]:
            raise FarmplugError(
                f"layer {name!r} differs between keyframes: {la.kind} x{shape(la.data)[2]} in {a.frame}, "
                f"{lb.kind} x{shape(lb.data)[2]} in {b.frame}"
            )
    if not a.frame < b.frame:
        raise FarmplugError(f"keyframe A ({a.frame}) must come before keyframe B ({b.frame})")


def _check_frames(a: Keyframe, b: Keyframe, frames: Sequence[int]) -> None:
    if not frames:
        raise FarmplugError("no frames to interpolate")
    outside = sorted(int(t) for t in frames if not a.frame < int(t) < b.frame)
    if outside:
        raise FarmplugError(f"frames {outside} are not strictly between keyframes {a.frame} and {b.frame}")
    if len(set(int(t) for t in frames)) != len(frames):
        raise FarmplugError(f"frames repeat: {list(frames)}")


def _check_guide(t: int, guide: Guide, frames: Sequence[int], h: int, w: int, *, colour_channels: int) -> None:
    if int(t) not in {int(f) for f in frames}:
        raise FarmplugError(f"guide for frame {t}, which is not among the frames to interpolate {list(frames)}")
    for name, expected in _geometry_shapes(h, w).items():
        if shape(getattr(guide, name)) != expected:
            raise FarmplugError(f"guide {t}: {name} is {shape(getattr(guide, name))}, keyframes need {expected}")
    for name, channels in (("color", (3, colour_channels)), ("albedo", (3,)), ("normal", (3,))):
        value = getattr(guide, name)
        got = shape(value)
        if value is not None and (got[:2] != (h, w) or len(got) != 3 or got[2] not in channels):
            raise FarmplugError(f"guide {t}: {name} is {shape(value)}, keyframes need {(h, w)} x {channels}")
