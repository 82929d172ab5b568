"""The denoise stage's config and descriptor (light: pydantic only; the OIDN backend is imported when a task runs)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from farmplug.stages.base import StageConfig, StageDescriptor


class DenoiseConfig(StageConfig):
    """Denoise stage settings (backend ``oidn``: Intel Open Image Denoise)."""

    kind: Literal["denoise"] = "denoise"
    backend: Literal["oidn"] = "oidn"
    quality: Literal["default", "fast", "balanced", "high"] = Field(default="high", description="OIDN filter quality")
    clean_aux: bool = Field(default=False, description="albedo/normal are noise-free (skip prefiltering them)")
    prefilter_aux: bool = Field(
        default=True, description="noisy albedo/normal: prefilter them (True, ~3x cost) or pass them as noisy (False)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where OIDN runs")
    missing_aux: Literal["warn", "error"] = Field(
        default="warn", description="when albedo/normal are missing: denoise without them (warn) or fail (error)"
    )

    gpu_capable: ClassVar[bool] = True

    def passes(self) -> frozenset[str]:
        return frozenset({"albedo", "normal"})


DESCRIPTOR = StageDescriptor(
    kind="denoise",
    backend="oidn",
    config=DenoiseConfig,
    summary="denoise frames with OIDN (albedo/normal AOVs when present)",
    task_factory="farmplug.denoise.stage:OidnDenoiseStage",
    mode="frame",
    order=10,
    default=True,
    required_features=frozenset({"color"}),
    optional_features=frozenset({"albedo", "normal"}),
    tiling=True,
    devices=("cpu", "cuda"),
    cli_aliases={"--require-aux": ("missing_aux", "error")},
)
