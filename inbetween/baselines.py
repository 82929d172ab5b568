"""What a user without render data would do to make an inbetween: the yardsticks of the stage.

* :func:`crossfade` blends the two keyframes by time; it is exact only where nothing moves.
* :func:`optical_flow_interpolate` estimates motion from the colour images alone (OpenCV's DIS
  or Farneback flow on tone-mapped grey images, both directions) and warps both keyframes
  towards the target time: the standard simple bidirectional flow interpolation, in which the
  flow at the target pixel is approximated by the flow at the same pixel of the keyframe.

Both take and return HxWxC float images (any channel count: RGB, RGBA, or extra layers), linear
HDR values untouched apart from the warp and blend. OpenCV is an optional dependency
(``pip install 'farmplug[bench]'``) imported only when the flow baseline runs.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from farmplug.errors import FarmplugError
from farmplug.quality import tonemap

__all__ = ["FlowMethod", "crossfade", "optical_flow", "optical_flow_interpolate"]

FlowMethod = Literal["dis", "farneback"]
FLOW_METHODS: tuple[str, ...] = ("dis", "farneback")


def _check_pair(a: np.ndarray, b: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise FarmplugError(f"inbetween baseline: keyframes differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise FarmplugError(f"inbetween baseline: keyframes must be HxWxC, not {a.shape}")
    if not 0.0 <= s <= 1.0:
        raise FarmplugError(f"inbetween baseline: time s must be in [0, 1] (got {s})")
    return a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)


def crossfade(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Linear blend ``(1 - s) * a + s * b`` of two keyframes.

    Args:
        a: Keyframe at time 0, HxWxC float.
        b: Keyframe at time 1, same shape.
        s: Time of the inbetween in [0, 1].

    Returns:
        float32 HxWxC image; exactly ``a`` at ``s = 0`` and ``b`` at ``s = 1``.

    Raises:
        FarmplugError: the shapes differ or are not HxWxC, or ``s`` is outside [0, 1].
    """
    a, b = _check_pair(a, b, s)
    if s == 0.0:
        return a.copy()
    if s == 1.0:
        return b.copy()
    return (a * np.float32(1.0 - s) + b * np.float32(s)).astype(np.float32, copy=False)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise FarmplugError(
            "the optical-flow baseline needs OpenCV: pip install 'farmplug[bench]' "
            "(or opencv-python-headless>=4.9,<4.11)"
        ) from None
    return cv2


def _gray8(image: np.ndarray) -> np.ndarray:
    """Tone-mapped 8-bit luma of an HDR image's first three channels (grey for 1-2 channels)."""
    channels = image.shape[2]
    rgb = image[:, :, :3] if channels >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
    display = tonemap(rgb)
    luma = display @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    return np.clip(np.rint(luma * 255.0), 0, 255).astype(np.uint8)


def optical_flow(a: np.ndarray, b: np.ndarray, *, method: FlowMethod = "dis") -> np.ndarray:
    """Dense flow from ``a`` to ``b`` estimated on their tone-mapped colour alone.

    Args:
        a: Source image, HxWxC float (the first three channels are the colour).
        b: Destination image, same shape.
        method: ``"dis"`` (DIS, medium preset) or ``"farneback"``.

    Returns:
        float32 HxWx2 flow in pixels: pixel ``(x, y)`` of ``a`` moves to ``(x, y) + flow``.

    Raises:
        FarmplugError: OpenCV is missing, the method is unknown, or the shapes differ.
    """
    a, b = _check_pair(a, b, 0.0)
    if method not in FLOW_METHODS:
        raise FarmplugError(f"unknown optical-flow method {method!r}; valid: {', '.join(FLOW_METHODS)}")
    cv2 = _cv2()
    gray_a, gray_b = _gray8(a), _gray8(b)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(gray_a, gray_b, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(
            gray_a, gray_b, None, pyr_scale=0.5, levels=4, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
        )
    return np.ascontiguousarray(flow, dtype=np.float32)


def _backward_warp(cv2: Any, image: np.ndarray, flow: np.ndarray, scale: float) -> np.ndarray:
    """Sample ``image`` at ``(x, y) + scale * flow(x, y)`` (bilinear, edges clamped)."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + np.float32(scale) * flow[:, :, 0]
    map_y = grid_y + np.float32(scale) * flow[:, :, 1]
    # cv2.remap handles at most 4 channels at once; split wider images.
    out = np.empty_like(image)
    for start in range(0, image.shape[2], 4):
        chunk = np.ascontiguousarray(image[:, :, start : start + 4])
        warped = cv2.remap(chunk, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[:, :, start : start + 4] = warped.reshape(height, width, -1)
    return out


def optical_flow_interpolate(a: np.ndarray, b: np.ndarray, s: float, *, method: FlowMethod = "dis") -> np.ndarray:
    """Inbetween at time ``s`` from colour-only optical flow, warping both keyframes.

    The flow is estimated both ways (a->b and b->a) on tone-mapped grey images. The target
    pixel ``p`` is fetched from ``a`` at ``p - s * flow_ab(p)`` and from ``b`` at
    ``p - (1 - s) * flow_ba(p)`` (the flow at the target approximated by the flow at the same
    pixel of each keyframe), and the two are blended by time. Occlusions are not handled: that
    is what a render-aware method adds.

    Args:
        a: Keyframe at time 0, HxWxC float (colour first; alpha and other layers are warped too).
        b: Keyframe at time 1, same shape.
        s: Time of the inbetween in [0, 1].
        method: ``"dis"`` (DIS, medium preset) or ``"farneback"``.

    Returns:
        float32 HxWxC image.

    Raises:
        FarmplugError: OpenCV is missing, the method is unknown, the shapes differ, or ``s``
            is outside [0, 1].
    """
    a, b = _check_pair(a, b, s)
    flow_ab = optical_flow(a, b, method=method)
    flow_ba = optical_flow(b, a, method=method)
    cv2 = _cv2()
    from_a = _backward_warp(cv2, a, flow_ab, -s)
    from_b = _backward_warp(cv2, b, flow_ba, -(1.0 - s))
    return (from_a * np.float32(1.0 - s) + from_b * np.float32(s)).astype(np.float32, copy=False)
