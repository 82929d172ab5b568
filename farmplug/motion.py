"""The renderer's motion vectors, and moving images along them (shared by every stage that does).

Blender Cycles' Vector pass, turned into image-space displacement fields. Measured on real Cycles
renders (``tests/integration/test_inbetween_vectors.py`` proves it every run; ``docs/inbetween.md``
has the numbers). With ``(X, Y, Z, W)`` the four channels of ``ViewLayer.Vector`` as farmplug reads
them (rows top to bottom, as OpenImageIO gives them):

* ``X, Y`` relate the pixel to the **previous** frame, ``Z, W`` to the **next** frame;
* both are in **pixels of the rendered image** (after the resolution percentage);
* both are expressed in Blender's bottom-up pixel space and both point "backwards in time":
  ``(X, Y) = position_prev - position_now`` and ``(Z, W) = position_now - position_next``.

So, in image coordinates (x to the right, y down), the surface seen at pixel ``(x, y)`` lies in
the previous frame at ``(x + X, y - Y)`` and in the next frame at ``(x - Z, y + W)``.
Under constant motion ``(X, Y) == (Z, W)``; background (world) pixels carry zero vectors.

Moving images: :func:`gather` reads an image at ``(x, y) + displacement`` (a backward warp: the
inbetween stage's resampling and guided warps, the temporal denoiser's reprojection of its
neighbours), :func:`backward_warp` does the same on numpy ``HxWxC`` arrays, and
:func:`compose_displacements` chains one-frame displacements into the displacement to a frame
several frames away.

The warps run on torch, imported when one is called: importing farmplug never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

from farmplug.errors import FarmplugError

if TYPE_CHECKING:
    import torch

    Field = TypeVar("Field", np.ndarray, torch.Tensor)
else:
    Field = TypeVar("Field")

__all__ = [
    "TO_NEXT_SIGN",
    "TO_PREV_SIGN",
    "backward_warp",
    "compose_displacements",
    "gather",
    "join_blender_vectors",
    "positions",
    "split_blender_vectors",
]

#: Sign applied to ``(X, Y)`` to get the image-space displacement to the previous frame.
TO_PREV_SIGN: tuple[float, float] = (1.0, -1.0)
#: Sign applied to ``(Z, W)`` to get the image-space displacement to the next frame.
TO_NEXT_SIGN: tuple[float, float] = (-1.0, 1.0)

WarpMode = Literal["bilinear", "nearest", "bicubic"]


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


def positions(displacement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel positions ``(x, y) + displacement`` (T,H,W,2) as x and y (T,H,W), and whether each
    lies inside the frame."""
    import torch

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


def gather(image: torch.Tensor, displacement: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (1,C,H,W) at ``(x, y) + displacement`` (T,H,W,2); also the in-frame mask."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - the usual torch alias

    t, h, w = displacement.shape[:3]
    x, y, inside = positions(displacement)
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    sampled = F.grid_sample(image.expand(t, -1, -1, -1), grid, mode=mode, padding_mode="border", align_corners=True)
    return sampled, inside[:, None]


def _check_field(name: str, displacement: np.ndarray, height: int, width: int) -> None:
    if displacement.shape != (height, width, 2):
        raise FarmplugError(f"{name} must be {height}x{width}x2 (HxWx2), not shape {displacement.shape}")


def backward_warp(
    image: np.ndarray, displacement: np.ndarray, *, mode: WarpMode = "bilinear"
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``image`` at ``(x, y) + displacement`` for every pixel (numpy in, numpy out).

    With ``displacement`` the field from frame ``t`` to frame ``s`` (``to_prev`` of frame ``t``
    for ``s = t - 1``), ``backward_warp(frame_s, displacement)`` is frame ``s`` reprojected into
    frame ``t``: what frame ``s`` saw of the surface at each pixel of ``t``.

    Args:
        image: ``HxWxC`` (or ``HxW``) float image of frame ``s``.
        displacement: ``HxWx2`` image-space displacement (pixels, x right, y down).
        mode: ``bilinear`` (default), ``nearest`` (labels, IDs) or ``bicubic``.

    Returns:
        ``(warped, inside)``: float32 ``HxWxC`` (``HxW`` for a 2-D image) and the ``HxW`` bool
        mask of the pixels whose source position lies inside the frame (outside, the border
        pixel is repeated).

    Raises:
        FarmplugError: the shapes do not match.
    """
    import torch

    array = np.asarray(image, dtype=np.float32)
    flat = array.ndim == 2
    if flat:
        array = array[..., None]
    if array.ndim != 3:
        raise FarmplugError(f"backward_warp: image must be HxWxC or HxW, not shape {np.shape(image)}")
    h, w = array.shape[:2]
    field = np.asarray(displacement, dtype=np.float32)
    _check_field("backward_warp: displacement", field, h, w)
    source = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        sampled, inside = gather(source, torch.from_numpy(np.ascontiguousarray(field))[None], mode)
    warped = sampled[0].permute(1, 2, 0).contiguous().numpy()
    return (warped[..., 0] if flat else warped), inside[0, 0].numpy()


def compose_displacements(steps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Chain one-frame displacements into the displacement from frame ``t`` to frame ``t ± k``.

    ``steps[0]`` is frame ``t``'s own field to its neighbour ``t ± 1`` (``to_prev`` or
    ``to_next``); ``steps[i]`` is frame ``t ± i``'s field, in its own pixel grid, to ``t ± (i+1)``.
    Each step is read (bilinearly) where the surface has got to so far, so the result follows the
    surface's own path, not a straight line.

    Args:
        steps: ``k >= 1`` fields, each ``HxWx2``.

    Returns:
        ``(displacement, inside)``: the ``HxWx2`` field from ``t`` to ``t ± k`` and the ``HxW``
        mask of pixels whose path stayed inside the frame at every step.

    Raises:
        FarmplugError: no steps, or fields of different shapes.
    """
    if not steps:
        raise FarmplugError("compose_displacements needs at least one step")
    total = np.array(steps[0], dtype=np.float32)
    h, w = total.shape[:2]
    _check_field("compose_displacements: step 0", total, h, w)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    inside = (xs + total[..., 0] >= 0) & (xs + total[..., 0] <= w - 1)
    inside &= (ys + total[..., 1] >= 0) & (ys + total[..., 1] <= h - 1)
    for index, step in enumerate(steps[1:], start=1):
        field = np.asarray(step, dtype=np.float32)
        _check_field(f"compose_displacements: step {index}", field, h, w)
        further, stayed = backward_warp(field, total)
        total = total + further
        inside &= stayed
        inside &= (xs + total[..., 0] >= 0) & (xs + total[..., 0] <= w - 1)
        inside &= (ys + total[..., 1] >= 0) & (ys + total[..., 1] <= h - 1)
    return total, inside
