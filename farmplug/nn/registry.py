"""The architecture registry: what each network takes and gives, read without importing torch.

An :class:`ArchDescriptor` says what a network needs (its inputs, by feature and channel count),
what it does (scale, output channels), its constraints (size multiple, half precision) and where
its torch module lives (imported only when a model is built). Weights files name their
architecture and version; :func:`architecture` resolves the name or lists the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from farmplug.errors import FarmplugError
from farmplug.plugins import load_target


@dataclass(frozen=True)
class ModelInput:
    """One named input tensor of a network (N, C, H, W), and the features its channels hold.

    Attributes:
        name: The tensor's name (also the ONNX input name).
        features: Features stacked along the channels, in order (``albedo``, ``normal``...).
        channels: Channel count (the features' widths summed).
        scale: The input's resolution over the output's (1 for full resolution, 0.5 for half).
    """

    name: str
    features: tuple[str, ...]
    channels: int
    scale: float = 1.0


@dataclass(frozen=True)
class ArchDescriptor:
    """What an architecture takes, gives and requires.

    Attributes:
        name: Registry name (written in every weights file).
        version: Bumped when the module changes incompatibly; weights of another version are refused.
        summary: One line for the docs.
        inputs: The network's inputs, in call order.
        output: The output's name; ``out_channels`` its channels.
        scale: Output resolution over the first input's.
        size_multiple: Output height and width must be multiples of this (tiles too).
        half: Runs in fp16 (TensorRT, torch CUDA) without loss that matters.
        receptive_field: Pixels (output resolution) one output pixel depends on each side; tiles
            overlap by at least this, so tiled output equals untiled output.
        module: ``module:callable`` building the torch module from ``hparams`` (imported lazily).
        hparams: Default hyper-parameters.
    """

    name: str
    version: int
    summary: str
    inputs: tuple[ModelInput, ...]
    output: str
    out_channels: int
    scale: int
    size_multiple: int
    half: bool
    receptive_field: int
    module: str
    hparams: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> ModelInput:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def build(self, **hparams: Any) -> Any:
        """The torch module (imports torch).

        Raises:
            FarmplugError: torch or the module cannot be imported.
        """
        try:
            factory = load_target(self.module)
        except ImportError as err:
            raise FarmplugError(f"architecture {self.name} needs torch ({err}); install farmplug[torch]") from err
        return factory(**{**self.hparams, **hparams})


GUIDED_SR_2X = ArchDescriptor(
    name="guided-sr-2x",
    version=1,
    summary="2x super-resolution of HDR colour guided by full-resolution albedo, normal and depth",
    inputs=(
        ModelInput("color", ("color",), 3, 0.5),
        ModelInput("guidance", ("albedo", "normal", "depth"), 7, 1.0),
    ),
    output="output",
    out_channels=3,
    scale=2,
    size_multiple=2,
    half=True,
    receptive_field=28,
    module="farmplug.nn.archs.guided_sr:GuidedSR",
    hparams={"features": 32, "blocks": 4, "head_features": 24},
)

# name -> descriptor, one per line.
ARCHITECTURES: dict[str, ArchDescriptor] = {
    GUIDED_SR_2X.name: GUIDED_SR_2X,
}


def architecture(name: str) -> ArchDescriptor:
    """The descriptor registered as ``name``.

    Raises:
        FarmplugError: unknown name; the message lists the registered ones.
    """
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise FarmplugError(f"unknown model architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
