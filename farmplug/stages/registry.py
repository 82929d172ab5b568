"""Explicit registry of stages: built-ins one per line, third parties through entry points.

Built-ins are named by import path so that ``import farmplug`` never imports torch, OIDN or any
other heavy backend; the class is imported when a stage is created.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points
from typing import Any

from farmplug.errors import FarmplugError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "farmplug.stages"

# (stage kind, backend) -> "module:factory". The factory takes the stage's config model.
BUILTIN_STAGES: dict[tuple[str, str], str] = {
    ("denoise", "oidn"): "farmplug.denoise.stage:OidnDenoiseStage",
    ("inbetween", "splat"): "farmplug.inbetween.stage:SplatInbetweenStage",
}


def _discover() -> dict[tuple[str, str], str]:
    found = dict(BUILTIN_STAGES)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kind, backend = ep.name.split(":", 1)
        except ValueError:
            log.warning("ignoring stage plugin %r: entry point name must be 'kind:backend'", ep.name)
            continue
        found.setdefault((kind, backend), ep.value)
    return found


def available_stages() -> list[str]:
    """Every known ``kind:backend``."""
    return sorted(f"{k}:{b}" for k, b in _discover())


def create_stage(config: Any) -> Any:
    """Instantiate the stage for a stage config (``config.kind``, ``config.backend``).

    Raises:
        FarmplugError: unknown stage (the message lists the valid ones) or a plugin that fails to import.
    """
    key = (config.kind, config.backend)
    known = _discover()
    if key not in known:
        raise FarmplugError(f"unknown stage {key[0]}:{key[1]}; available: {', '.join(available_stages())}")
    module_name, _, attr = known[key].partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise FarmplugError(f"stage {key[0]}:{key[1]} cannot be loaded from {known[key]}: {err}") from err
    return factory(config)
