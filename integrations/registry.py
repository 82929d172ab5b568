"""Explicit registry of farm backends: built-ins one per line, third parties through entry points.

Backends are named by import path so that choosing one imports only it.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from farmplug.errors import FarmplugError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "farmplug.farms"

BUILTIN_FARMS: dict[str, str] = {
    "local": "farmplug.integrations.local:LocalFarm",
    "openjd": "farmplug.integrations.openjd:OpenJDFarm",
    "deadline": "farmplug.integrations.deadline:DeadlineFarm",
    "opencue": "farmplug.integrations.opencue:OpenCueFarm",
    "flamenco": "farmplug.integrations.flamenco:FlamencoFarm",
    "tractor": "farmplug.integrations.tractor:TractorFarm",
}


def _discover() -> dict[str, str]:
    found = dict(BUILTIN_FARMS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def available_farms() -> list[str]:
    return sorted(_discover())


def create_farm(name: str):
    """The backend called ``name``.

    Raises:
        FarmplugError: unknown name (lists the valid ones) or a backend that cannot be imported.
    """
    known = _discover()
    if name not in known:
        raise FarmplugError(f"unknown farm {name!r}; available: {', '.join(sorted(known))}")
    module_name, _, attr = known[name].partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError) as err:
        if name in BUILTIN_FARMS:
            raise FarmplugError(f"farm backend {name} cannot be loaded: {err}") from err
        log.warning("farm plugin %s (%s) is broken and was skipped: %s", name, known[name], err)
        raise FarmplugError(f"farm plugin {name} is broken: {err}") from err
