"""Blender Cycles' Vector pass, turned into image-space displacement fields.

Measured on real Cycles renders (``tests/integration/test_inbetween_vectors.py`` proves it every
run; ``docs/inbetween.md`` has the numbers). With ``(X, Y, Z, W)`` the four channels of
``ViewLayer.Vector`` as farmplug reads them (rows top to bottom, as OpenImageIO gives them):

* ``X, Y`` relate the pixel to the **previous** frame, ``Z, W`` to the **next** frame;
* both are in **pixels of the rendered image** (after the resolution percentage);
* both are expressed in Blender's bottom-up pixel space and both point "backwards in time":
  ``(X, Y) = position_prev - position_now`` and ``(Z, W) = position_now - position_next``.

So, in image coordinates (x to the right, y down), the surface seen at pixel ``(x, y)`` lies in
the previous frame at ``(x + X, y - Y)`` and in the next frame at ``(x - Z, y + W)``.
Under constant motion ``(X, Y) == (Z, W)``; background (world) pixels carry zero vectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

from farmplug.errors import FarmplugError

if TYPE_CHECKING:
    import torch

    Field = TypeVar("Field", np.ndarray, torch.Tensor)
else:
    Field = TypeVar("Field")

#: Sign applied to ``(X, Y)`` to get the image-space displacement to the previous frame.
TO_PREV_SIGN: tuple[float, float] = (1.0, -1.0)
#: Sign applied to ``(Z, W)`` to get the image-space displacement to the next frame.
TO_NEXT_SIGN: tuple[float, float] = (-1.0, 1.0)


def _check(motion: object) -> None:
    shape = tuple(getattr(motion, "shape", ()))
    if len(shape) < 3 or shape[-1] != 4:
        raise FarmplugError(f"Blender vector pass must be ...xHxWx4 (X, Y, Z, W), not shape {shape}")


def split_blender_vectors(motion: Field) -> tuple[Field, Field]:
    """Split Blender's Vector pass into displacements to the previous and the next frame.

    Args:
        motion: ``HxWx4`` (or ``...xHxWx4``) array or tensor: the Vector pass channels
            ``X, Y, Z, W`` as read by :func:`farmplug.imageio.read_frame` (``feature("motion")``).

    Returns:
        ``(to_prev, to_next)``, each ``...xHxWx2`` of the input's type and dtype, in image
        coordinates (x right, y down, pixels): the surface at pixel ``(x, y)`` is at
        ``(x, y) + to_prev`` in the previous frame and at ``(x, y) + to_next`` in the next.

    Raises:
        FarmplugError: ``motion`` does not end in 4 channels.
    """
    _check(motion)
    x, y, z, w = (motion[..., i] for i in range(4))
    if isinstance(motion, np.ndarray):
        to_prev = np.stack([TO_PREV_SIGN[0] * x, TO_PREV_SIGN[1] * y], axis=-1).astype(motion.dtype, copy=False)
        to_next = np.stack([TO_NEXT_SIGN[0] * z, TO_NEXT_SIGN[1] * w], axis=-1).astype(motion.dtype, copy=False)
        return to_prev, to_next
    import torch  # Only for tensor input; importing farmplug never imports torch.

    to_prev = torch.stack([TO_PREV_SIGN[0] * x, TO_PREV_SIGN[1] * y], dim=-1)
    to_next = torch.stack([TO_NEXT_SIGN[0] * z, TO_NEXT_SIGN[1] * w], dim=-1)
    return to_prev, to_next


def join_blender_vectors(to_prev: Field, to_next: Field) -> Field:
    """Inverse of :func:`split_blender_vectors`: build a Blender ``...xHxWx4`` Vector pass.

    Args:
        to_prev: ``...xHxWx2`` image-space displacement to the previous frame.
        to_next: ``...xHxWx2`` image-space displacement to the next frame, same shape.

    Returns:
        The ``X, Y, Z, W`` channels Blender would have written, same type as the inputs.

    Raises:
        FarmplugError: the two fields do not have the same ``...xHxWx2`` shape.
    """
    if tuple(to_prev.shape) != tuple(to_next.shape) or to_prev.shape[-1] != 2:
        raise FarmplugError(
            f"to_prev and to_next must both be ...xHxWx2, not {tuple(to_prev.shape)} and {tuple(to_next.shape)}"
        )
    parts = [
        TO_PREV_SIGN[0] * to_prev[..., 0],
        TO_PREV_SIGN[1] * to_prev[..., 1],
        TO_NEXT_SIGN[0] * to_next[..., 0],
        TO_NEXT_SIGN[1] * to_next[..., 1],
    ]
    if isinstance(to_prev, np.ndarray):
        return np.stack(parts, axis=-1).astype(to_prev.dtype, copy=False)
    import torch

    return torch.stack(parts, dim=-1)
