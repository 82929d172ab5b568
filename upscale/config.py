"""The upscale stage's config and descriptor (light: pydantic only; the model runtime is imported when a task runs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from farmplug.stages.base import AuxRender, EngineBuild, StageConfig, StageDescriptor

if TYPE_CHECKING:
    from farmplug.nn.registry import ArchDescriptor

#: The weights the stage runs when the plan names none.
SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "models" / "guided-sr-2x.safetensors"
#: The architecture the guided upscaler runs (the only registered guided 2x one; the shipped
#: weights' and any weights the stage accepts): its receptive field sets the tiles' overlap.
ARCHITECTURE = "guided-sr-2x"

#: What the full-resolution guide render must hold (cheap: they converge in 1-2 samples).
GUIDE_PASSES = frozenset({"albedo", "normal", "depth"})
#: The aux render's layer (its tasks are ``fullres-FIRST-LAST``).
GUIDE_LAYER = "fullres"


class UpscaleConfig(StageConfig):
    """Upscale stage settings: 2x from the (denoised) half-resolution colour to full resolution.

    Backend ``guided``: farmplug's own network, guided by a full-resolution render of albedo,
    normal and depth at a few samples (the aux render ``fullres``).
    """

    kind: Literal["upscale"] = "upscale"
    backend: Literal["guided"] = "guided"
    scale: Literal[2] = Field(default=2, description="output resolution over input resolution")
    model: str | None = Field(default=None, description="weights file (.safetensors); default: the shipped weights")
    aux: str | None = Field(
        default=None, description="pattern of the full-resolution guide frames (albedo, normal, depth passes)"
    )
    runtime: Literal["auto", "onnxruntime", "torch"] = Field(
        default="auto", description="inference runtime (auto: the best available, TensorRT first)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="where the network runs (cuda: fail rather than fall back to the CPU)"
    )
    memory_mb: int = Field(default=2048, ge=64, le=262144, description="device memory budget that sets the tile size")
    tile: int | None = Field(default=None, ge=64, le=16384, description="tile side in pixels (default: from memory_mb)")
    threads: int | None = Field(default=None, ge=1, le=1024, description="CPU threads (default: all cores)")
    guide_samples: int = Field(default=2, ge=1, le=16, description="samples per pixel of the full-resolution guide render")

    gpu_capable: ClassVar[bool] = True

    def aux_render(self) -> AuxRender | None:
        return AuxRender(layer=GUIDE_LAYER, samples=self.guide_samples, passes=GUIDE_PASSES)

    def weights_file(self) -> Path:
        """The weights the stage runs: ``model``, else the shipped weights."""
        return Path(self.model) if self.model else SHIPPED_WEIGHTS

    def tiling(self, arch: ArchDescriptor) -> tuple[int, int]:
        """The tile side and the overlap the stage runs ``arch`` with: ``tile``, else the largest tile
        whose padded window fits ``memory_mb``; the overlap is the network's receptive field."""
        from farmplug.nn.tiling import tile_for_budget

        overlap = arch.receptive_field
        return self.tile or tile_for_budget(arch, self.memory_mb, overlap), overlap

    def tile_window(self, arch: ArchDescriptor) -> int:
        """The side of the largest window the network sees: the tile plus its overlap on both sides
        (what a TensorRT engine is built for)."""
        tile, overlap = self.tiling(arch)
        return tile + 2 * overlap

    def engine_build(self) -> EngineBuild | None:
        """The TensorRT engine of ``device: cuda`` on ONNX Runtime (``runtime`` auto or onnxruntime),
        for the tiles the stage's tasks run; None on the CPU, with ``device: auto`` (the task may
        land on a CPU node) or with ``runtime: torch`` (no engine)."""
        if not self.uses_gpu() or self.runtime not in ("auto", "onnxruntime"):
            return None
        from farmplug.nn.registry import architecture

        side = self.tile_window(architecture(ARCHITECTURE))
        return EngineBuild(model=str(self.weights_file()), shape=(side, side))


DESCRIPTOR = StageDescriptor(
    kind="upscale",
    backend="guided",
    config=UpscaleConfig,
    summary="upscale frames 2x with farmplug's guided network (full-resolution albedo/normal/depth guide)",
    task_factory="farmplug.upscale.stage:GuidedUpscaleStage",
    mode="frame",
    scale=2,
    order=20,
    required_features=frozenset({"color"}),
    optional_features=frozenset({"alpha"}),
    size_multiple=1,
    tiling=True,
    half_precision=True,
    devices=("cpu", "cuda"),
    aux_flag="--aux",
    # The spellings of the CLI: --guide for the guide pattern, --backend for the runtime (one
    # upscale backend, so --backend is free to name the runtime; see farmplug.worker).
    cli_aliases={"--guide": ("aux", None), "--backend": ("runtime", None)},
)
