"""``guided-sr-2x``: 2x super-resolution of a render's colour, guided by its full-resolution passes.

The colour comes from a render at half the resolution (denoised); albedo, normal and depth come
from a cheap render at full resolution (1-2 samples are enough: those passes converge fast).
The network starts from two classical estimates and learns a correction in log space:

- *albedo-demodulated upsampling*: the colour divided by its albedo (average-pooled from the
  full-resolution albedo) is smooth where texture is, so it is upsampled and multiplied back by
  the full-resolution albedo, which restores the texture detail;
- *bilinear upsampling* of the colour, for what albedo does not explain (reflections, emission).

A body of residual blocks runs at the low resolution (on the colour and the space-to-depth of the
guide, so most of the work is at a quarter of the pixels), its features are shuffled up to full
resolution and a small head, fed the guide again, predicts the log-space correction.

Every normalisation is inside the graph (the ONNX and TensorRT engines take raw linear values):
colour ``log1p`` after clamping to [0, 65000] (fp16-safe), depth as ``1 / (1 + z)`` (the
background's huge depth goes to 0), albedo and normal as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Added to albedo before dividing by it (black albedo: the estimate falls back to the colour).
ALBEDO_EPS = 0.02
COLOR_MAX = 65000.0


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class GuidedSR(nn.Module):
    """The network: ``forward(color (N,3,h,w), guide (N,7,2h,2w)) -> colour (N,3,2h,2w)``, all linear HDR."""

    def __init__(self, features: int = 32, blocks: int = 4, head_features: int = 24) -> None:
        super().__init__()
        low_in = 3 + 3 + 7 * 4
        self.entry = nn.Conv2d(low_in, features, 3, padding=1)
        self.body = nn.Sequential(*[_Block(features) for _ in range(blocks)])
        self.up = nn.Conv2d(features, head_features * 4, 3, padding=1)
        head_in = head_features + 7 + 3 + 3
        self.head1 = nn.Conv2d(head_in, head_features, 3, padding=1)
        self.head2 = nn.Conv2d(head_features, head_features, 3, padding=1)
        self.out = nn.Conv2d(head_features, 3, 3, padding=1)
        # Start as the demodulated estimate (a zero correction), so training refines a good baseline.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, color: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        color = torch.clamp(color, 0.0, COLOR_MAX)
        albedo = torch.clamp(guide[:, 0:3], 0.0, 1.0)
        normal = guide[:, 3:6]
        depth = torch.clamp(guide[:, 6:7], min=0.0)
        guide_n = torch.cat([albedo, normal, 1.0 / (1.0 + depth)], dim=1)

        albedo_low = F.avg_pool2d(albedo, 2)
        shading = color / (albedo_low + ALBEDO_EPS)
        demod = F.interpolate(shading, scale_factor=2.0, mode="bilinear", align_corners=False) * (albedo + ALBEDO_EPS)
        plain = F.interpolate(color, scale_factor=2.0, mode="bilinear", align_corners=False)
        log_demod = torch.log1p(torch.clamp(demod, 0.0, COLOR_MAX))
        log_plain = torch.log1p(torch.clamp(plain, 0.0, COLOR_MAX))

        low = torch.cat([torch.log1p(color), torch.log1p(shading), F.pixel_unshuffle(guide_n, 2)], dim=1)
        x = F.relu(self.entry(low))
        x = self.body(x)
        x = F.pixel_shuffle(self.up(x), 2)
        x = torch.cat([F.relu(x), guide_n, log_demod, log_plain], dim=1)
        x = F.relu(self.head1(x))
        x = F.relu(self.head2(x))
        # exp - 1 rather than expm1, which ONNX has no operator for.
        return torch.exp(torch.clamp(log_demod + self.out(x), max=11.0)) - 1.0
