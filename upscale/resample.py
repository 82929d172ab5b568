"""Resampling in NumPy (no torch needed): the baselines and the rules for layers the network does not make.

``bicubic`` (Keys, a = -0.5, pixel centres aligned as OpenImageIO and PIL do), ``bilinear``,
``nearest`` and ``demodulated`` (the colour divided by its albedo, upsampled, multiplied by the
full-resolution albedo): the baselines of the benchmark, and how other layers are resampled.
"""

from __future__ import annotations

import numpy as np

ALBEDO_EPS = 0.02


def _cubic_weights(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic weights for the 4 taps at offsets -1, 0, 1, 2 around ``floor(x)``, ``t = x - floor(x)``."""
    t = t[:, None]
    d = np.concatenate([1 + t, t, 1 - t, 2 - t], axis=1)
    w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                 np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    return w / w.sum(axis=1, keepdims=True)


def _resize_axis(x: np.ndarray, size: int, axis: int, kind: str) -> np.ndarray:
    n = x.shape[axis]
    centres = (np.arange(size) + 0.5) * (n / size) - 0.5
    if kind == "nearest":
        index = np.clip(np.floor((np.arange(size) + 0.5) * (n / size)).astype(int), 0, n - 1)
        return np.take(x, index, axis=axis)
    base = np.floor(centres).astype(int)
    t = centres - base
    if kind == "bilinear":
        lo, hi = np.clip(base, 0, n - 1), np.clip(base + 1, 0, n - 1)
        shape = [1] * x.ndim
        shape[axis] = size
        t = t.reshape(shape)
        return np.take(x, lo, axis=axis) * (1 - t) + np.take(x, hi, axis=axis) * t
    weights = _cubic_weights(t)
    out = 0
    shape = [1] * x.ndim
    shape[axis] = size
    for k in range(4):
        index = np.clip(base + k - 1, 0, n - 1)
        out = out + np.take(x, index, axis=axis) * weights[:, k].reshape(shape)
    return out


def resize(x: np.ndarray, height: int, width: int, kind: str = "bicubic") -> np.ndarray:
    """Resize an (H, W, C) image to ``height`` x ``width`` (``bicubic``, ``bilinear`` or ``nearest``)."""
    x = np.asarray(x, dtype=np.float32)
    return _resize_axis(_resize_axis(x, height, 0, kind), width, 1, kind).astype(np.float32)


def bicubic(x: np.ndarray, scale: int = 2) -> np.ndarray:
    return resize(x, x.shape[0] * scale, x.shape[1] * scale, "bicubic")


def bilinear(x: np.ndarray, scale: int = 2) -> np.ndarray:
    return resize(x, x.shape[0] * scale, x.shape[1] * scale, "bilinear")


def nearest(x: np.ndarray, scale: int = 2) -> np.ndarray:
    return resize(x, x.shape[0] * scale, x.shape[1] * scale, "nearest")


def box_down(x: np.ndarray, scale: int = 2) -> np.ndarray:
    """Average ``scale`` x ``scale`` blocks of an (H, W, C) image (H and W multiples of ``scale``)."""
    h, w, c = x.shape
    return x.reshape(h // scale, scale, w // scale, scale, c).mean(axis=(1, 3)).astype(np.float32)


def demodulated(color_low: np.ndarray, albedo_high: np.ndarray, scale: int = 2) -> np.ndarray:
    """Albedo-demodulated upsampling: ``bicubic(color / albedo_low) * albedo_high`` (albedo_low pooled
    from ``albedo_high``), clamped at 0. The classical guided baseline."""
    albedo_low = box_down(np.clip(albedo_high, 0, 1), scale)
    shading = np.maximum(color_low, 0) / (albedo_low + ALBEDO_EPS)
    return np.maximum(bicubic(shading, scale) * (np.clip(albedo_high, 0, 1) + ALBEDO_EPS), 0).astype(np.float32)
