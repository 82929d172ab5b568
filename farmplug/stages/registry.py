"""The stage registry: built-ins one per line, third parties through the ``farmplug.stages`` entry points.

Each entry names a :class:`~farmplug.stages.base.StageDescriptor` by import path, in a light
module that defines the stage's config model (pydantic only), so that listing stages or
validating a plan never imports torch, OIDN or any other heavy backend; the stage itself is built
from ``descriptor.task_factory`` when a task runs it. An entry point's name is ``kind:backend``.
"""

from __future__ import annotations

from typing import Any

from farmplug.errors import ConfigError, FarmplugError
from farmplug.plugins import Registry, load_target
from farmplug.stages.base import StageConfig, StageDescriptor

ENTRY_POINT_GROUP = "farmplug.stages"

# kind:backend -> the module:attribute of its descriptor.
BUILTIN_STAGES: dict[str, str] = {
    "denoise:oidn": "farmplug.denoise.config:DESCRIPTOR",
    "denoise:temporal": "farmplug.denoise.config:TEMPORAL_DESCRIPTOR",
    "upscale:guided": "farmplug.upscale.config:DESCRIPTOR",
    "inbetween:splat": "farmplug.inbetween.config:DESCRIPTOR",
}


def _check(value: object) -> StageDescriptor:
    if not isinstance(value, StageDescriptor):
        raise TypeError(f"expected a StageDescriptor, got {type(value).__name__}")
    if not (isinstance(value.config, type) and issubclass(value.config, StageConfig)):
        raise TypeError(f"its config {value.config!r} is not a StageConfig model")
    return value


STAGES: Registry[StageDescriptor] = Registry("stage", ENTRY_POINT_GROUP, BUILTIN_STAGES, check=_check)


def descriptors() -> list[StageDescriptor]:
    """Every stage that loads, in chain order."""
    found = []
    for name, descriptor in STAGES.load_all().items():
        if descriptor.key != name:
            raise FarmplugError(f"stage plugin {name} describes itself as {descriptor.key}; the names must match")
        found.append(descriptor)
    return sorted(found, key=lambda d: (d.order, d.kind, d.backend))


def available_stages() -> list[str]:
    """Every known ``kind:backend``."""
    return [d.key for d in descriptors()]


def descriptor(kind: str, backend: str | None = None) -> StageDescriptor:
    """The descriptor of stage ``kind`` (its first backend in registry order when ``backend`` is None).

    Raises:
        FarmplugError: unknown stage; the message lists the valid ones.
    """
    known = descriptors()
    for d in known:
        if d.kind == kind and backend in (None, d.backend):
            return d
    name = kind if backend is None else f"{kind}:{backend}"
    raise FarmplugError(f"unknown stage {name}; available: {', '.join(d.key for d in known)}")


def descriptor_of(config: StageConfig) -> StageDescriptor:
    """The descriptor of the stage a config belongs to.

    Raises:
        FarmplugError: no stage has that kind and backend.
    """
    return descriptor(config.kind, config.backend)


def stage_kinds() -> list[str]:
    """Every stage kind, in chain order."""
    return list(dict.fromkeys(d.kind for d in descriptors()))


class StageChoiceError(ValueError):
    """A plan's stage names an unknown ``kind`` or ``backend`` (``field`` says which)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_stage_config(data: Any) -> StageConfig:
    """Validate one item of a plan's ``stages`` with the config model its ``kind`` (and ``backend``) name.

    Raises:
        ValueError: not a mapping; StageChoiceError for no or an unknown ``kind``/``backend`` (the
            message lists the valid ones); pydantic's ValidationError for a bad field of the stage's config.
    """
    if isinstance(data, StageConfig):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"a stage is a mapping with a kind, got {type(data).__name__}")
    kinds = stage_kinds()
    kind = data.get("kind")
    if kind not in kinds:
        raise StageChoiceError("kind", f"{kind!r} is not a known stage; allowed: {', '.join(kinds)}")
    backends = [d.backend for d in descriptors() if d.kind == kind]
    backend = data.get("backend", backends[0])
    if backend not in backends:
        raise StageChoiceError("backend", f"{backend!r} is not a backend of {kind}; allowed: {', '.join(backends)}")
    return descriptor(kind, backend).config.model_validate(data)


def default_stages() -> list[StageConfig]:
    """The stages a plan gets when it lists none: the default per-frame stages, in chain order."""
    return [d.config() for d in descriptors() if d.default and d.mode != "keyframes"]


def upscale_stage(resolution_scale: float) -> StageConfig:
    """The default config of a stage that makes a ``resolution_scale`` render full size (the
    first whose descriptor's ``scale`` is ``1 / resolution_scale``).

    Raises:
        ConfigError: no registered stage upscales by that factor.
    """
    factor = 1 / resolution_scale
    found = [d for d in descriptors() if d.scale > 1 and abs(d.scale - factor) < 1e-9]
    if not found:
        able = sorted({f"x{d.scale:g}" for d in descriptors() if d.scale > 1})
        raise ConfigError(f"no stage upscales x{factor:g} to make a resolution_scale {resolution_scale:g} render "
                          f"full size (installed: {', '.join(able) or 'none'})")
    return found[0].config()


def keyframe_stage() -> StageConfig:
    """The default config of the stage that fills a frame step (the first ``mode="keyframes"`` stage).

    Raises:
        ConfigError: no registered stage makes frames between keyframes.
    """
    makers = [d for d in descriptors() if d.mode == "keyframes"]
    if not makers:
        raise ConfigError("no stage can make the frames between keyframes, so a frame step above 1 is not possible")
    preferred = [d for d in makers if d.default] or makers
    return preferred[0].config()


def display_rank(layer: str) -> tuple[int, str]:
    """Where a layer goes in pipeline order, for tables and charts: the render, aux renders and
    other layers, each stage by its chain order, then fallback renders and calibration."""
    fixed = {"render": -2, "fallback": 10_000, "calibration": 10_001}
    if layer in fixed:
        return (fixed[layer], layer)
    orders = {d.kind: d.order for d in descriptors()}
    return (orders.get(layer, -1), layer)


def create_stage(config: StageConfig) -> Any:
    """Instantiate the stage for a stage config.

    Raises:
        FarmplugError: unknown stage (the message lists the valid ones) or a stage that fails to import.
    """
    d = descriptor_of(config)
    try:
        factory = load_target(d.task_factory)
    except (ImportError, AttributeError) as err:
        raise FarmplugError(f"stage {d.key} cannot be loaded from {d.task_factory}: {err}") from err
    return factory(config)
