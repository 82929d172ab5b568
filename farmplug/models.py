"""Shot, plan and stage-configuration models (YAML in and out).

A *shot* says what the studio would render traditionally: scene, frame range, resolution,
full-quality samples and where frames go. A *plan* says how farmplug renders it cheaper: a
samples factor, a resolution scale, a frame step, the AI stages that fill the gap, the quality
target and the check frames rendered at full quality as evidence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from farmplug.errors import ConfigError
from farmplug.frames import parse_frames
from farmplug.schema import StrictModel, load_model

_FRAME_TOKEN = re.compile(r"#+|%0?\d*d")


class Resolution(StrictModel):
    width: int = Field(ge=1, le=32768)
    height: int = Field(ge=1, le=32768)


class FrameRangeModel(StrictModel):
    start: int
    end: int

    @model_validator(mode="after")
    def _ordered(self) -> FrameRangeModel:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    @property
    def frames(self) -> list[int]:
        return list(range(self.start, self.end + 1))


class Shot(StrictModel):
    """What a traditional full render of the shot would be."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1)
    scene: str = Field(description="scene file, relative to the shot file's folder or absolute")
    renderer: Literal["blender"] = "blender"
    frames: FrameRangeModel
    resolution: Resolution
    samples: int = Field(ge=1, description="full-quality samples per pixel")
    output: str = Field(description="output path pattern with #### or %04d, relative to the run folder")

    @field_validator("output")
    def _has_frame_token(cls, value: str) -> str:
        if not _FRAME_TOKEN.search(value):
            raise ValueError("needs a frame number token such as #### or %04d")
        return value

    def scene_path(self, shot_file: Path | None) -> Path:
        scene = Path(self.scene).expanduser()
        if not scene.is_absolute() and shot_file is not None:
            scene = shot_file.parent / scene
        return scene


class DenoiseConfig(StrictModel):
    """Denoise stage settings (backend ``oidn``: Intel Open Image Denoise)."""

    kind: Literal["denoise"] = "denoise"
    backend: Literal["oidn"] = "oidn"
    quality: Literal["default", "fast", "balanced", "high"] = "high"
    clean_aux: bool = Field(default=False, description="albedo/normal are noise-free (skip prefiltering them)")
    prefilter_aux: bool = Field(
        default=True, description="noisy albedo/normal: prefilter them (True, ~3x cost) or pass them as noisy (False)"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    missing_aux: Literal["warn", "error"] = Field(
        default="warn", description="when albedo/normal are missing: denoise without them (warn) or fail (error)"
    )

    @property
    def needs(self) -> frozenset[str]:
        """Render passes this stage wants."""
        return frozenset({"albedo", "normal"})


StageConfig = Annotated[DenoiseConfig, Field(discriminator="kind")]


class QualityTarget(StrictModel):
    flip_mean_max: float = Field(default=0.1, gt=0, le=1, description="mean HDR-FLIP allowed on check frames")


class Plan(StrictModel):
    """How farmplug renders the shot: reduced render plus AI stages, and how it proves the result."""

    schema_version: Literal[1] = 1
    shot: str = Field(description="shot YAML, relative to the plan file's folder or absolute")
    samples_factor: float = Field(gt=0, le=1, description="plan samples = full samples x factor")
    resolution_scale: float = Field(default=1.0, gt=0, le=1)
    frame_step: int = Field(default=1, ge=1)
    stages: list[StageConfig] = Field(default_factory=lambda: [DenoiseConfig()])
    quality_target: QualityTarget = Field(default_factory=QualityTarget)
    check_frames: list[int] = Field(default_factory=list, description="frames rendered at full quality as evidence")
    chunk_size: int = Field(default=8, ge=1, description="frames per farm task")
    threads: int | None = Field(default=None, ge=1, description="render threads (None: all cores)")

    @model_validator(mode="after")
    def _supported(self) -> Plan:
        if self.resolution_scale != 1.0:
            raise ValueError("resolution_scale below 1 needs the upscale stage, which this version does not have")
        if self.frame_step != 1:
            raise ValueError("frame_step above 1 needs the inbetween stage, which this version does not have")
        kinds = [s.kind for s in self.stages]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each stage may appear once, got {kinds}")
        return self

    def samples_for(self, shot: Shot) -> int:
        return max(1, round(shot.samples * self.samples_factor))

    def passes(self) -> frozenset[str]:
        needed: set[str] = set()
        for stage in self.stages:
            needed |= stage.needs
        return frozenset(needed)


def load_shot(path: str | Path) -> Shot:
    """Read a shot YAML.

    Raises:
        ConfigError: missing file, bad YAML, or a field that does not validate.
    """
    return load_model(Shot, path)


def load_plan(path: str | Path) -> tuple[Plan, Shot, Path]:
    """Read a plan YAML and the shot it names; returns (plan, shot, shot file path).

    Raises:
        ConfigError: either file is bad, or a check frame lies outside the shot.
    """
    path = Path(path)
    plan = load_model(Plan, path)
    shot_file = Path(plan.shot).expanduser()
    if not shot_file.is_absolute():
        shot_file = path.parent / shot_file
    shot = load_shot(shot_file)
    outside = [f for f in plan.check_frames if not shot.frames.start <= f <= shot.frames.end]
    if outside:
        raise ConfigError(
            f"check_frames {outside} are outside the shot's frames {shot.frames.start}-{shot.frames.end}", path=path
        )
    return plan, shot, shot_file


def default_check_frames(shot: Shot, count: int = 3) -> list[int]:
    """Frames spread over the shot: first, last and evenly between."""
    frames = shot.frames.frames
    if len(frames) <= count:
        return frames
    step = (len(frames) - 1) / (count - 1)
    return sorted({frames[round(i * step)] for i in range(count)})


__all__ = [
    "DenoiseConfig",
    "Plan",
    "QualityTarget",
    "Shot",
    "StageConfig",
    "default_check_frames",
    "load_plan",
    "load_shot",
    "parse_frames",
]
