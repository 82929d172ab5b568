"""The farm backends: built-ins one per line, third parties through the ``farmplug.farms`` entry points.

The same registry as the stages' (:mod:`farmplug.plugins`): backends are named by import path so
that choosing one imports only it; a plugin that shadows a built-in, or fails to import, is logged
with both names and skipped; ``FARMPLUG_NO_PLUGINS=1`` leaves the built-ins only.
"""

from __future__ import annotations

from farmplug.errors import FarmplugError
from farmplug.plugins import Registry

ENTRY_POINT_GROUP = "farmplug.farms"

BUILTIN_FARMS: dict[str, str] = {
    "local": "farmplug.integrations.local:LocalFarm",
    "openjd": "farmplug.integrations.openjd:OpenJDFarm",
    "deadline": "farmplug.integrations.deadline:DeadlineFarm",
    "opencue": "farmplug.integrations.opencue:OpenCueFarm",
    "flamenco": "farmplug.integrations.flamenco:FlamencoFarm",
    "tractor": "farmplug.integrations.tractor:TractorFarm",
}


def _check(value: object) -> type:
    if not isinstance(value, type) or not callable(getattr(value, "compile", None)) or not callable(getattr(value, "submit", None)):
        raise TypeError(f"expected a farm backend class with compile() and submit(), got {value!r}")
    return value


FARMS: Registry[type] = Registry("farm", ENTRY_POINT_GROUP, BUILTIN_FARMS, check=_check)


def available_farms() -> list[str]:
    """Every farm backend that loads."""
    return FARMS.names()


def create_farm(name: str):
    """The backend called ``name``.

    Raises:
        FarmplugError: unknown name (lists the valid ones) or a backend that cannot be imported.
    """
    backend = FARMS.load(name)
    try:
        return backend()
    except TypeError as err:
        raise FarmplugError(f"farm backend {name} cannot be created: {err}") from err
