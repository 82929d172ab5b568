"""The keyframe pair and the targets on the device: the packed feature layout and the batch of targets.

Every step reads the two keyframes the same way: colour, depth, one velocity and the continuous
layers packed into one channel-major feature tensor per keyframe (:class:`Source`, laid out by a
:class:`Plan`), and the targets as one batch (:class:`Batch`) of ``T`` frames of ``H x W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, NamedTuple, TypeVar

import numpy as np
import torch

from farmplug.inbetween.interpolate.types import Keyframe
from farmplug.inbetween.interpolate.validate import shape

if TYPE_CHECKING:
    from farmplug.inbetween.interpolate.sampler import Resampler

T = TypeVar("T")


class Sides(NamedTuple, Generic[T]):
    """One value per keyframe: ``a`` for keyframe A (before the targets), ``b`` for keyframe B."""

    a: T
    b: T


@dataclass(frozen=True)
class Plan:
    """Where each output lives in the packed continuous feature tensor."""

    color: slice
    depth: int
    velocity: slice  # displacement per frame, forward in time (A: to_next, B: -to_prev)
    continuous: dict[str, slice]
    normals: tuple[str, ...]
    depths: tuple[str, ...]
    blender_vectors: tuple[str, ...]
    ids: tuple[str, ...]
    channels: int

    @property
    def depth_rows(self) -> list[int]:
        """Feature rows holding depths: the main depth and every depth-kind layer."""
        rows = (range(self.continuous[name].start, self.continuous[name].stop) for name in self.depths)
        return [self.depth, *(i for span in rows for i in span)]

    @property
    def blended_layers(self) -> list[slice]:
        """The continuous layers that blend (every one but the depth-kind layers)."""
        return [sl for name, sl in self.continuous.items() if name not in self.depths]

    @property
    def resampled_channels(self) -> list[int]:
        """Packed channels that are resampled: colour and every blended layer (not depth, not velocity)."""
        layers = (i for sl in self.blended_layers for i in range(sl.start, sl.stop))
        return [*range(self.color.start, self.color.stop), *layers]


def plan_layers(key: Keyframe) -> Plan:
    """The packed layout of a keyframe's colour, depth, velocity and layers."""
    c = shape(key.color)[2]
    offset = c + 1 + 2
    continuous: dict[str, slice] = {}
    normals, depths, vectors, ids = [], [], [], []
    for name, layer in key.layers.items():
        width = shape(layer.data)[2]
        if layer.kind == "id":
            ids.append(name)
            continue
        if layer.kind == "vector" and width == 4:
            vectors.append(name)
            continue
        continuous[name] = slice(offset, offset + width)
        offset += width
        if layer.kind == "normal":
            normals.append(name)
        elif layer.kind == "depth":
            depths.append(name)
    return Plan(
        color=slice(0, c),
        depth=c,
        velocity=slice(c + 1, c + 3),
        continuous=continuous,
        normals=tuple(normals),
        depths=tuple(depths),
        blender_vectors=tuple(vectors),
        ids=tuple(ids),
        channels=offset,
    )


@dataclass(frozen=True)
class Source:
    """One keyframe on the device: packed features (F x HW, channel-major so that weighting and
    splatting run along contiguous rows), ids (HW x K), depth, validity."""

    features: torch.Tensor
    ids: torch.Tensor
    depth: torch.Tensor
    valid: torch.Tensor
    splat_vector: torch.Tensor  # HW x 2, displacement per frame towards the targets
    # HW x 2, per frame squared (see paths.path_acceleration): k frames away the surface has moved
    # by k * splat_vector + k * (k - 1) * accel. None: constant velocity (a step of 2 or less).
    accel: torch.Tensor | None = None
    forward: bool = True  # keyframe A (splats forward in time) or B


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float32 tensor on ``device`` (no copy where the array already is one on the CPU)."""
    return torch.as_tensor(np.ascontiguousarray(array, dtype=np.float32), device=device)


def load_source(key: Keyframe, plan: Plan, *, forward: bool, device: torch.device) -> Source:
    """Pack a keyframe onto the device; non-finite pixels (or a non-positive depth) are invalid and zeroed."""
    h, w = shape(key.depth)
    color = to_tensor(key.color, device).reshape(h * w, -1)
    depth = to_tensor(key.depth, device).reshape(h * w)
    to_prev = to_tensor(key.to_prev, device).reshape(h * w, 2)
    to_next = to_tensor(key.to_next, device).reshape(h * w, 2)
    # Constant velocity: the surface keeps the per-frame displacement it has at the keyframe.
    velocity = to_next if forward else -to_prev
    parts = [color, depth[:, None], velocity]
    parts += [to_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.continuous]
    features = torch.cat([part.t() for part in parts], dim=0)
    ids = [to_tensor(key.layers[name].data, device).reshape(h * w, -1) for name in plan.ids]
    id_tensor = torch.cat(ids, dim=1) if ids else torch.zeros(h * w, 0, device=device)
    valid = torch.isfinite(features).all(dim=0) & (depth > 0)
    if id_tensor.shape[1]:
        valid &= torch.isfinite(id_tensor).all(dim=1)
    splat_vector = to_next if forward else to_prev
    if bool(valid.all()):
        # The common case: no copies of clean inputs.
        return Source(features=features, ids=id_tensor, depth=depth.clamp_min(1e-6), valid=valid,
                      splat_vector=splat_vector, forward=forward)
    return Source(
        features=torch.where(valid[None, :], features, 0.0),
        ids=torch.where(valid[:, None], id_tensor, 0.0),
        depth=torch.where(valid, depth, 1.0).clamp_min(1e-6),
        valid=valid,
        splat_vector=torch.where(torch.isfinite(splat_vector), splat_vector, 0.0),
        forward=forward,
    )


def as_image(flat: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """T*HW x C -> T x C x H x W."""
    return flat.reshape(t, h, w, -1).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class Batch:
    """The targets of one call, interpolated together as ``T`` frames of ``H x W``."""

    targets: tuple[int, ...]
    a_frame: int
    b_frame: int
    h: int
    w: int
    device: torch.device
    s: torch.Tensor  # (T,) each target's place between the keyframes, (t - a) / (b - a)
    scale_a: torch.Tensor  # (T,) frames from keyframe A to each target
    scale_b: torch.Tensor  # (T,) frames from each target to keyframe B

    @classmethod
    def create(
        cls, a_frame: int, b_frame: int, frames: Sequence[int], size: tuple[int, int], device: torch.device
    ) -> Batch:
        """The batch of ``frames`` between keyframes ``a_frame`` and ``b_frame``."""
        targets = tuple(int(t) for t in frames)
        step = b_frame - a_frame
        return cls(
            targets=targets,
            a_frame=a_frame,
            b_frame=b_frame,
            h=size[0],
            w=size[1],
            device=device,
            s=torch.tensor([(t - a_frame) / step for t in targets], device=device, dtype=torch.float32),
            scale_a=torch.tensor([float(t - a_frame) for t in targets], device=device),
            scale_b=torch.tensor([float(b_frame - t) for t in targets], device=device),
        )

    @property
    def count(self) -> int:
        """``T``, the number of targets."""
        return len(self.targets)

    @property
    def step(self) -> int:
        """Frames from keyframe A to keyframe B."""
        return self.b_frame - self.a_frame

    def time_weights(self) -> Sides[torch.Tensor]:
        """Each keyframe's weight in time (T,1,1,1): ``1 - s`` for A, ``s`` for B."""
        return Sides((1 - self.s)[:, None, None, None], self.s[:, None, None, None])


@dataclass(frozen=True)
class KeyPair:
    """The two keyframes as every step after the splat reads them.

    Attributes:
        plan: The packed feature layout (the same for both).
        sources: Each keyframe's packed features.
        resamplers: Each keyframe prepared for resampling (see
            :class:`~farmplug.inbetween.interpolate.sampler.Resampler`); None when nothing resamples
            (``resample="splat"`` and no guides).
    """

    plan: Plan
    sources: Sides[Source]
    resamplers: Sides[Resampler] | None
