"""The stage interface: what a stage declares, and how it processes frames.

Everything the core needs to know about a stage comes from its :class:`StageDescriptor` and its
config (a :class:`StageConfig` subclass that the stage's package defines): the render passes it
needs, how it reads frames (one at a time, over a window of neighbours, or between keyframes),
whether it changes resolution, whether it runs on a GPU (and loads an engine to build once before
its tasks), where it goes in the chain, and whether it can withhold frames that then need a
fallback render. The planner, graph compiler, cost model, scheduler, report and CLI read these;
no core module names a stage.

Workers follow the Open Job Description adaptor lifecycle: ``open()`` once per task (load the
model, create the device), ``process()`` each frame of the chunk, ``close()`` at the end or on
cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from farmplug.schema import StrictModel

if TYPE_CHECKING:
    from farmplug.imageio import Frame
    from farmplug.timing import TimingRecord

#: How a stage reads its input: each frame on its own; a window of neighbouring frames around each
#: frame (``StageDescriptor.window`` each side); or the rendered keyframes around frames it makes.
StageMode = Literal["frame", "window", "keyframes"]


@dataclass(frozen=True)
class AuxRender:
    """A cheap extra render a stage asks for over the frames it makes (e.g. guide passes).

    Attributes:
        layer: The render layer's name (its tasks are ``LAYER-FIRST-LAST``); also its work folder.
        samples: Samples per pixel of the aux render.
        passes: Render passes it needs.

    The stage's task receives the aux render's pattern through its descriptor's ``aux_flag``.
    """

    layer: str
    samples: int
    passes: frozenset[str]


@dataclass(frozen=True)
class EngineBuild:
    """An inference engine a stage's GPU tasks load, built once before them (a TensorRT engine).

    The job graph runs ``farmplug run engine`` with these before the stage's tasks, so no GPU task
    spends minutes building the engine itself.

    Attributes:
        model: The weights file the engine is built from.
        shape: ``(width, height)`` of the largest output tile the engine serves: the stage's tile
            plus its overlap on both sides, exactly as the stage's tasks ask for it.
    """

    model: str
    shape: tuple[int, int]


class StageConfig(StrictModel):
    """Base of every stage's config model (the items of a plan's ``stages``).

    A subclass sets ``kind`` and ``backend`` as ``Literal`` fields with defaults, adds its own
    settings, and overrides the methods below where the stage needs them.
    """

    kind: str
    backend: str

    #: Stage kinds with a ``device`` field of their own: ``cuda`` asks the farm for a GPU.
    gpu_capable: ClassVar[bool] = False

    def passes(self) -> frozenset[str]:
        """Render passes this stage needs from the render before it (``albedo``, ``depth``...)."""
        return frozenset()

    def aux_render(self) -> AuxRender | None:
        """The extra render this configuration asks for, if any."""
        return None

    def engine_build(self) -> EngineBuild | None:
        """The inference engine this configuration's GPU tasks load, to build once before them; None
        when its tasks build nothing (the CPU, a runtime without engines). None by default."""
        return None

    def window_reach(self) -> int | None:
        """Frames each side a ``mode="window"`` stage's result for one frame depends on, where that
        is more than a ``window`` field says (a stage whose frames also read their neighbours'
        results); None: the config's ``window`` field, else the descriptor's. The job graph makes
        the stage's tasks wait for the renders within it."""
        return None

    def calibration_variants(self) -> dict[str, StageConfig]:
        """Cheaper settings of this stage that calibration should measure, by name: each is tried
        as a structure of its own (a candidate ``x1-64_denoise-balanced``), and the measured quality
        and cost decide. None by default."""
        return {}

    def uses_gpu(self) -> bool:
        """Whether the stage's tasks must be given a GPU on the farm.

        Only ``device: cuda`` requires one. ``auto`` uses a GPU where the task lands on one and
        the CPU elsewhere, so it must not keep the task off CPU-only workers.
        """
        return self.gpu_capable and getattr(self, "device", "cpu") == "cuda"


@dataclass(frozen=True)
class StageDescriptor:
    """What a stage needs and can do (read by the core, like spandrel's architecture descriptors).

    Attributes:
        kind: The plan's ``kind`` for this stage (one word, also its layer and CLI verb).
        backend: The implementation (``oidn``, ``splat``...); a kind may have several.
        config: The stage's config model.
        summary: One line for ``--help`` and the docs.
        mode: How it reads frames (:data:`StageMode`).
        window: Neighbouring frames each side, for ``mode="window"``.
        scale: Output resolution over input resolution (2 for a 2x upscaler).
        order: Position in the chain: stages run in increasing order.
        withholds: It may decline to deliver frames (they are then rendered for real).
        default: Part of a plan's stages when the plan does not list them.
        task_factory: ``module:callable`` that builds the stage from its config (imported lazily).
        aux_flag: The option of ``farmplug run KIND`` that takes the pattern of the config's
            :meth:`StageConfig.aux_render` (stages that ask for one).
        cli_aliases: Extra command-line options of ``farmplug run KIND``: ``flag -> (field, value)``;
            a value of ``None`` means the option takes the field's value.
    """

    kind: str
    backend: str
    config: type[StageConfig]
    summary: str
    task_factory: str
    mode: StageMode = "frame"
    window: int = 0
    scale: int = 1
    order: int = 50
    withholds: bool = False
    default: bool = False
    required_features: frozenset[str] = frozenset({"color"})
    optional_features: frozenset[str] = frozenset()
    size_multiple: int = 1
    tiling: bool = False
    half_precision: bool = False
    devices: tuple[str, ...] = ("cpu",)
    aux_flag: str | None = None
    cli_aliases: dict[str, tuple[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The stage kind (recorded as ``farmplug:stage`` on every frame it writes)."""
        return self.kind

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.backend}"


@dataclass
class ProcessInfo:
    """What happened to one frame: warnings to show, and GPU seconds when a GPU did the work."""

    warnings: list[str] = field(default_factory=list)
    gpu_s: float = 0.0


@runtime_checkable
class Stage(Protocol):
    """A post-processing stage over frames (``mode="frame"``)."""

    descriptor: StageDescriptor

    def open(self) -> None:
        """Load models / create devices; called once per task."""

    def process(self, frame: Frame) -> tuple[Frame, ProcessInfo]:
        """Process one frame; returns the new frame (unchanged layers kept) and what happened."""

    def close(self) -> None:
        """Release devices and models; safe to call twice."""


@dataclass(frozen=True)
class KeyframeJob:
    """What a ``mode="keyframes"`` stage is asked to do in one task."""

    input_pattern: str
    output_pattern: str
    keys: Sequence[int]
    targets: Sequence[int]
    aux_pattern: str | None = None
    rejected_pattern: str | None = None
    task: str = ""
    plan: str = ""
    key: str = ""


@runtime_checkable
class KeyframeStage(Protocol):
    """A stage that makes the frames between rendered keyframes and vouches for each one."""

    descriptor: StageDescriptor

    def open(self) -> None:
        """Load what the stage needs once per task."""

    def run(self, job: KeyframeJob, progress: Callable[[int], None] | None = None) -> tuple[TimingRecord, Any]:
        """Make ``job.targets``; returns the task's timing record and its ``ConfidenceRecord``."""

    def close(self) -> None:
        """Release what ``open`` loaded."""
