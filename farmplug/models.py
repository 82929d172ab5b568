"""Shot, plan and stage-configuration models (YAML in and out).

A *shot* says what the studio would render traditionally: scene, frame range, resolution,
full-quality samples and where frames go. A *plan* says how farmplug renders it cheaper: a
samples factor, a resolution scale, a frame step, the AI stages that fill the gap, the quality
target and the check frames rendered at full quality as evidence.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from farmplug.errors import ConfigError
from farmplug.frames import keyframe_grid, parse_frames
from farmplug.names import MAX_NAME_CHARS, file_stem
from farmplug.schema import StrictModel, load_model
from farmplug.stages.base import StageConfig
from farmplug.stages.registry import StageChoiceError, default_stages, descriptor_of, descriptors, parse_stage_config

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
    name: str = Field(min_length=1, description=(
        f"shot name; it becomes part of file names (farmplug.names.file_stem), so at most {MAX_NAME_CHARS} "
        "characters, no NUL and no '..' path component"))
    scene: str = Field(description="scene file, relative to the shot file's folder or absolute")
    renderer: Literal["blender"] = "blender"
    frames: FrameRangeModel
    resolution: Resolution
    samples: int = Field(ge=1, le=65536, description=(
        "full-quality samples per pixel, at most 65536: 16x Blender's default of 4096, past what "
        "production shots use, so a typo (an extra zero or two) is refused before it books the farm for "
        "weeks (Cycles itself would take up to 2^24)"))
    output: str = Field(description=(
        "output path pattern with #### or %04d, relative to the run folder (and inside it: no '..' "
        "climbing out) or an absolute delivery path"))

    @field_validator("name")
    @classmethod
    def _makes_a_file_name(cls, value: str) -> str:
        try:
            file_stem(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("output")
    @classmethod
    def _has_frame_token(cls, value: str) -> str:
        if not _FRAME_TOKEN.search(value):
            raise ValueError("needs a frame number token such as #### or %04d")
        return value

    @field_validator("output")
    @classmethod
    def _inside_the_run_folder(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("holds a NUL character, which no path can")
        # Absolute here or on a Windows worker (C:\..., \\server\share): a delivery path, allowed.
        if PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute():
            return value
        depth = 0
        for part in re.split(r"[/\\]", value):  # a Windows worker splits on both
            if part == "..":
                depth -= 1
                if depth < 0:
                    raise ValueError("a relative output must stay inside the run folder ('..' climbs out of it); "
                                     "give a path inside it or an absolute delivery path")
            elif part not in ("", "."):
                depth += 1
        return value

    @property
    def stem(self) -> str:
        """The shot name as a file-name stem (:func:`farmplug.names.file_stem`), for every file named after the shot."""
        return file_stem(self.name)

    def scene_path(self, shot_file: Path | None) -> Path:
        scene = Path(self.scene).expanduser()
        if not scene.is_absolute() and shot_file is not None:
            scene = shot_file.parent / scene
        return scene


class QualityTarget(StrictModel):
    flip_mean_max: float = Field(default=0.1, gt=0, le=1, description="mean HDR-FLIP allowed on check frames")
    flicker_max: float | None = Field(
        default=None, gt=0, le=1,
        description="temporal instability allowed on consecutive check frames (mean |Δresult − Δreference| in "
                    "tone-mapped values, reprojected along the Vector pass where the frames have one); calibration "
                    "then measures check frames in consecutive pairs")


class Plan(StrictModel):
    """How farmplug renders the shot: reduced render plus AI stages, and how it proves the result."""

    schema_version: Literal[1] = 1
    shot: str = Field(description="shot YAML, relative to the plan file's folder or absolute")
    samples_factor: float = Field(gt=0, le=1, description="plan samples = full samples x factor")
    resolution_scale: float = Field(default=1.0, gt=0, le=1)
    frame_step: int = Field(default=1, ge=1)
    stages: list[SerializeAsAny[StageConfig]] = Field(
        default_factory=default_stages, description="the stages after the render, in chain order; each names its kind"
    )
    quality_target: QualityTarget = Field(default_factory=QualityTarget)
    check_frames: list[int] = Field(default_factory=list, description="frames rendered at full quality as evidence")
    chunk_size: int = Field(default=8, ge=1, description="frames per farm task")
    threads: int | None = Field(default=None, ge=1, description="render threads (None: all cores)")
    calibration: str | None = Field(
        default=None, description="the calibration.json that chose this plan (relative to the plan's folder or "
                                  "absolute); its cost is charged to the shots that share it, by their frames")

    @field_validator("stages", mode="wrap")
    @classmethod
    def _stage_configs(cls, value, handler):
        """Each item is validated by the config model of the stage its ``kind`` names (from the registry)."""
        if not isinstance(value, list):
            return handler(value)
        configs, errors = [], []
        for index, item in enumerate(value):
            try:
                configs.append(parse_stage_config(item))
            except ValidationError as err:
                errors += [InitErrorDetails(type=e["type"], loc=(index, *e["loc"]), input=e["input"], ctx=e.get("ctx", {}))
                           for e in err.errors()]
            except StageChoiceError as err:
                errors.append(InitErrorDetails(type="value_error", loc=(index, err.field), input=item.get(err.field),
                                               ctx={"error": str(err)}))
            except ValueError as err:
                errors.append(InitErrorDetails(type="value_error", loc=(index,), input=item, ctx={"error": str(err)}))
        if errors:
            raise ValidationError.from_exception_data("Plan", errors)
        return handler(configs)

    @model_validator(mode="after")
    def _supported(self) -> Plan:
        chain = [descriptor_of(s) for s in self.stages]
        kinds = [d.kind for d in chain]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each stage may appear once, got {kinds}")
        scale = 1
        for d in chain:
            scale *= d.scale
        if abs(self.resolution_scale * scale - 1) > 1e-9:
            if scale == 1:
                raise ValueError(f"resolution_scale {self.resolution_scale} needs a stage that upscales (none of {kinds} does)")
            raise ValueError(f"resolution_scale {self.resolution_scale} does not match the stages' scale x{scale}")
        makers = [d.kind for d in chain if d.mode == "keyframes"]
        if self.frame_step != 1 and not makers:
            able = [d.kind for d in descriptors() if d.mode == "keyframes"]
            raise ValueError("frame_step above 1 needs a stage that makes the frames between keyframes"
                             + (f" (kind: {' or '.join(able)})" if able else " (none is installed)"))
        if self.frame_step == 1 and makers:
            raise ValueError(f"the {makers[0]} stage needs frame_step of 2 or more")
        expected = sorted(chain, key=lambda d: d.order)
        if kinds != [d.kind for d in expected]:
            raise ValueError(f"stages run in chain order {[d.kind for d in expected]}, got {kinds}")
        if makers and chain[-1].mode != "keyframes":
            raise ValueError(f"the {makers[0]} stage makes frames between keyframes and must come last, got {kinds}")
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
        """Render passes every stage of the chain needs from the reduced render."""
        return frozenset().union(*(s.passes() for s in self.stages))

    def keyframe_stage(self) -> StageConfig | None:
        """The stage that makes the frames between keyframes (``mode="keyframes"``), or None."""
        return next((s for s in self.stages if descriptor_of(s).mode == "keyframes"), None)

    def frame_stages(self) -> list[StageConfig]:
        """The stages that work on rendered frames (every stage but the keyframe one), in chain order."""
        return [s for s in self.stages if descriptor_of(s).mode != "keyframes"]


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


def plan_json_schema() -> dict:
    """The plan's JSON Schema, its ``stages`` items being exactly one of the registered stages' configs.

    An item is its ``kind``'s config for the ``backend`` it names, or the kind's first backend when
    it names none (as :func:`farmplug.stages.registry.parse_stage_config` reads it): so every other
    backend's choice requires ``backend``, and an item matches one choice only (``oneOf``). A
    discriminator on ``kind`` alone cannot say this once a kind has two backends.
    """
    schema = Plan.model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs.pop("StageConfig", None)
    choices, first = [], set()
    for d in descriptors():
        sub = d.config.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[d.config.__name__] = sub
        ref = {"$ref": f"#/$defs/{d.config.__name__}"}
        choices.append(ref if d.kind not in first else {"allOf": [ref, {"required": ["backend"]}]})
        first.add(d.kind)
    schema["properties"]["stages"]["items"] = {"oneOf": choices}
    return schema


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
    try:
        plan = load_model(Plan, path)
    except ConfigError:
        if _is_a_shot(path):
            raise ConfigError("this is a shot file, not a plan: write its plan first with "
                              f"`farmplug plan {path}` or `farmplug calibrate {path}`", path=path) from None
        raise
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


def _is_a_shot(path: Path) -> bool:
    try:
        load_model(Shot, path)
    except ConfigError:
        return False
    return True


def default_check_frames(shot: Shot, count: int = 3, *, avoid: frozenset[int] = frozenset()) -> list[int]:
    """Frames spread over the shot: first, last and evenly between (one frame: the middle one).

    ``avoid`` (the keyframes of a plan with a frame step) is skipped where possible, so the
    evidence includes interpolated frames rather than only frames rendered for real.
    """
    frames = [f for f in shot.frames.frames if f not in avoid] or shot.frames.frames
    if len(frames) <= count:
        return frames
    if count <= 1:
        return [frames[len(frames) // 2]] if count == 1 else []
    step = (len(frames) - 1) / (count - 1)
    return sorted({frames[round(i * step)] for i in range(count)})


__all__ = [
    "Plan",
    "QualityTarget",
    "Shot",
    "StageConfig",
    "default_check_frames",
    "load_plan",
    "load_shot",
    "parse_frames",
]
