"""``grade``: scale a frame's colour by a factor, a stage from outside farmplug.

Everything farmplug needs is here: the config model (validated with farmplug's one-line
errors), the descriptor the core reads (mode, chain order, passes, GPU use), and the stage
itself, built only when a task runs it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from farmplug.stages.base import ProcessInfo, StageConfig, StageDescriptor


class GradeConfig(StageConfig):
    """Grade settings: every colour channel times ``factor``."""

    kind: Literal["grade"] = "grade"
    backend: Literal["scale"] = "scale"
    factor: float = Field(default=1.0, gt=0, le=16, description="colour multiplier")


class GradeStage:
    """The stage a task runs: open once, process each frame, close."""

    def __init__(self, config: GradeConfig) -> None:
        self.config = config

    descriptor = None  # set below, once DESCRIPTOR exists

    def open(self) -> None:
        """Nothing to load."""

    def process(self, frame):
        return frame.with_feature("color", frame.feature("color") * self.config.factor), ProcessInfo()

    def close(self) -> None:
        """Nothing to release."""


DESCRIPTOR = StageDescriptor(
    kind="grade",
    backend="scale",
    config=GradeConfig,
    summary="scale the colour by a factor (the plugin example)",
    task_factory="farmplug_grade:GradeStage",
    mode="frame",
    order=30,
)
GradeStage.descriptor = DESCRIPTOR
