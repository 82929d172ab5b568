"""The inbetween stage's config and descriptor (light: pydantic only; torch is imported when a task runs)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from farmplug.stages.base import AuxRender, StageConfig, StageDescriptor

GUIDE_PASSES = frozenset({"albedo", "depth", "motion", "normal"})


class InbetweenConfig(StageConfig):
    """Inbetween stage settings: interpolate the frames between rendered keyframes.

    Backend ``splat``: forward splatting along the renderer's own motion vectors, depth-ordered,
    with a per-frame confidence score; frames under ``confidence_threshold`` are re-rendered.
    """

    kind: Literal["inbetween"] = "inbetween"
    backend: Literal["splat"] = "splat"
    confidence_threshold: float = Field(
        default=0.6, ge=0, le=1, description="frames scoring below this are re-rendered for real"
    )
    guided: bool = Field(default=False, description="render cheap aux passes of the in-between frames to guide them")
    guide_samples: int = Field(default=2, ge=1, le=16, description="samples per pixel of the guide aux render")
    fallback: Literal["render", "error"] = Field(
        default="render", description="frames that fail the check (or keyframes missing passes): render them, or stop"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where the interpolation runs")

    gpu_capable: ClassVar[bool] = True

    def passes(self) -> frozenset[str]:
        return frozenset({"depth", "motion"})

    def aux_render(self) -> AuxRender | None:
        if not self.guided:
            return None
        return AuxRender(layer="guide", samples=self.guide_samples, passes=GUIDE_PASSES)


DESCRIPTOR = StageDescriptor(
    kind="inbetween",
    backend="splat",
    config=InbetweenConfig,
    summary="interpolate the frames between keyframes from motion vectors and depth",
    task_factory="farmplug.inbetween.stage:SplatInbetweenStage",
    mode="keyframes",
    order=90,
    withholds=True,
    default=True,
    required_features=frozenset({"color", "depth", "motion"}),
    optional_features=frozenset({"alpha", "albedo", "normal"}),
    devices=("cpu", "cuda"),
    aux_flag="--guide",
    cli_aliases={"--threshold": ("confidence_threshold", None)},
)
