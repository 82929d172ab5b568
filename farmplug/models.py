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
from farmplug.frames import keyframe_grid, parse_frames
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


class InbetweenConfig(StrictModel):
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
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"depth", "motion"})


StageConfig = Annotated[DenoiseConfig | InbetweenConfig, Field(discriminator="kind")]


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
        kinds = [s.kind for s in self.stages]
        if self.frame_step != 1 and "inbetween" not in kinds:
            raise ValueError("frame_step above 1 needs an inbetween stage (kind: inbetween) to fill the frames between")
        if self.frame_step == 1 and "inbetween" in kinds:
            raise ValueError("the inbetween stage needs frame_step of 2 or more")
        if "inbetween" in kinds and kinds[-1] != "inbetween":
            raise ValueError(f"the inbetween stage must come last (after denoise), got {kinds}")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each stage may appear once, got {kinds}")
        return self

    def stage(self, kind: str):
        """The config of stage ``kind``, or None when the plan does not have it."""
        return next((s for s in self.stages if s.kind == kind), None)

    def keyframes(self, shot: Shot) -> list[int]:
        """Frames rendered for real: every ``frame_step``-th from the first, and always the last."""
        return keyframe_grid(shot.frames.frames, self.frame_step)

    def samples_for(self, shot: Shot) -> int:
        return max(1, round(shot.samples * self.samples_factor))

    def passes(self) -> frozenset[str]:
        needed: set[str] = set()
        for stage in self.stages:
            needed |= stage.needs
        return frozenset(needed)


class FrameConfidence(StrictModel):
    """The inbetween stage's verdict on one frame."""

    frame: int
    keyframes: list[int] = Field(description="the two rendered frames it was made from")
    score: float | None = Field(default=None, description="frame confidence in [0, 1]; None when not interpolated")
    passed: bool
    reason: str = ""


class ConfidenceRecord(StrictModel):
    """Written by an inbetween task; its fallback task re-renders the frames that did not pass."""

    schema_version: Literal[1] = 1
    task: str
    threshold: float
    frames: list[FrameConfidence]

    @property
    def failed(self) -> list[int]:
        return [f.frame for f in self.frames if not f.passed]


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


def default_check_frames(shot: Shot, count: int = 3, *, avoid: frozenset[int] = frozenset()) -> list[int]:
    """Frames spread over the shot: first, last and evenly between.

    ``avoid`` (the keyframes of a plan with a frame step) is skipped where possible, so the
    evidence includes interpolated frames rather than only frames rendered for real.
    """
    frames = [f for f in shot.frames.frames if f not in avoid] or shot.frames.frames
    if len(frames) <= count:
        return frames
    step = (len(frames) - 1) / (count - 1)
    return sorted({frames[round(i * step)] for i in range(count)})


__all__ = [
    "DenoiseConfig",
    "InbetweenConfig",
    "Plan",
    "QualityTarget",
    "Shot",
    "StageConfig",
    "default_check_frames",
    "load_plan",
    "load_shot",
    "parse_frames",
]
