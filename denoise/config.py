"""The denoise stage's configs and descriptors (light: pydantic only; the backends are imported when a task runs).

Two backends: ``oidn`` denoises each frame on its own; ``temporal`` first gathers the same
surfaces from the neighbouring frames along the renderer's Vector pass, then denoises with OIDN.
"""

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

    def calibration_variants(self) -> dict[str, StageConfig]:
        # OIDN's balanced filter with prefiltered aux: 0.68 core-s a 320x180 frame against 1.59 for
        # high, FLIP 0.097 against 0.092 on the calibration bench shot (docs/benchmarks.md). Whether
        # that or more samples at high quality is cheaper for a target is the shot's to say.
        offered: dict[str, StageConfig] = {}
        if self.quality == "high":
            offered["balanced"] = self.model_copy(update={"quality": "balanced"})
        if type(self) is DenoiseConfig:
            # The neighbours along the Vector pass: more samples per surface, less flicker.
            offered["temporal"] = TemporalDenoiseConfig(**self.model_dump(exclude={"backend"}))
        return offered


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


class TemporalDenoiseConfig(DenoiseConfig):
    """Temporal denoise settings (backend ``temporal``): the OIDN settings, plus the window and its checks.

    Each frame gathers the noisy colour, albedo and normal of its neighbours within ``window``
    frames each side, reprojected along the Vector pass; a neighbour's pixel counts only where it
    shows the same surface (depth, normal, object ID and the vectors back agree, and it was not
    hidden), weighted by how well its per-frame denoised colour agrees; then OIDN denoises the sum.
    """

    backend: Literal["temporal"] = "temporal"  # type: ignore[assignment]
    window: int = Field(default=2, ge=1, le=8, description="neighbouring frames each side to gather from")
    missing_motion: Literal["warn", "error"] = Field(
        default="warn", description="when a frame has no Vector pass: denoise it on its own (warn) or fail (error)"
    )
    depth_tolerance: float = Field(
        default=0.03, gt=0, le=1, description="largest relative depth change per frame for the same surface, beyond the mean "
        "change of the surface around it (a dolly changes every depth)"
    )
    normal_tolerance: float = Field(
        default=0.9, ge=-1, lt=1, description="smallest cosine between the normals of the same surface"
    )
    color_tolerance: float = Field(
        default=0.04, gt=0, le=1,
        description="display-value difference between the frames' own denoised colour at which a neighbour's "
        "weight falls to 1/e (reflections and shadows that do not follow the vectors)",
    )
    guide_quality: Literal["default", "fast", "balanced", "high"] = Field(
        default="fast", description="OIDN quality of the per-frame denoise the neighbours are compared on"
    )
    stabilize: int = Field(
        default=1, ge=0, le=4,
        description="frames each side whose denoised results are blended in after OIDN, along the vectors "
        "with the same surface checks (0: off); the stage then reads window + stabilize frames each side",
    )
    stabilize_tolerance: float = Field(
        default=0.02, gt=0, le=1,
        description="display-value difference between two denoised results at which a neighbour's weight in "
        "the blend falls to 1/e",
    )

    def passes(self) -> frozenset[str]:
        return frozenset({"albedo", "normal", "depth", "motion", "object_index"})

    def window_reach(self) -> int:
        """Frames each side a frame's result depends on: its gathering window, and that of each
        neighbour blended in after OIDN."""
        return self.window + self.stabilize


TEMPORAL_DESCRIPTOR = StageDescriptor(
    kind="denoise",
    backend="temporal",
    config=TemporalDenoiseConfig,
    summary="denoise frames with their neighbours reprojected along the Vector pass, then OIDN",
    task_factory="farmplug.denoise.temporal:TemporalDenoiseStage",
    mode="window",
    window=TemporalDenoiseConfig().window_reach(),
    order=10,
    required_features=frozenset({"color"}),
    optional_features=frozenset({"albedo", "normal", "depth", "motion"}),
    devices=("cpu", "cuda"),
    cli_aliases={"--require-aux": ("missing_aux", "error"), "--require-motion": ("missing_motion", "error")},
)
