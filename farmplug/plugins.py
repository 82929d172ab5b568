"""One plugin registry, used for stages and farm backends alike.

Built-ins are listed one per line by their import path (``module:attribute``), so that listing
them imports nothing heavy; third-party plugins arrive through entry points. A plugin that shadows
a built-in, or fails to import, is logged with both names and skipped, never fatal. Setting
``FARMPLUG_NO_PLUGINS=1`` switches entry-point plugins off (built-ins only).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from farmplug.errors import FarmplugError

log = logging.getLogger(__name__)

NO_PLUGINS_ENV = "FARMPLUG_NO_PLUGINS"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One registered plugin: its name, where it lives, and whether it is built in."""

    name: str
    target: str
    builtin: bool


def plugins_enabled() -> bool:
    """False when ``FARMPLUG_NO_PLUGINS`` is set to anything but ``0`` or empty."""
    return os.environ.get(NO_PLUGINS_ENV, "").strip() in ("", "0")


def load_target(target: str):
    """Import ``module:attribute``.

    Raises:
        ImportError, AttributeError: the module or attribute does not exist.
    """
    module_name, _, attr = target.partition(":")
    value = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        value = getattr(value, part)
    return value


class Registry(Generic[T]):
    """Named plugins of one kind (``what``), from built-ins and the entry-point ``group``.

    ``check`` validates a loaded object (returns it, or raises ``TypeError`` with the reason);
    ``name_of`` gives the name the loaded object must answer to (for entry points whose object
    declares its own name, e.g. a stage descriptor's ``kind:backend``).
    """

    def __init__(self, what: str, group: str, builtins: Mapping[str, str], *,
                 check: Callable[[object], T] | None = None) -> None:
        self.what = what
        self.group = group
        self.builtins = dict(builtins)
        self._check = check
        self._loaded: dict[str, T] = {}
        self._broken: set[str] = set()

    def entries(self) -> dict[str, Entry]:
        """Every plugin by name: built-ins, then entry points that do not shadow one."""
        found = {name: Entry(name, target, True) for name, target in self.builtins.items()}
        if not plugins_enabled():
            return found
        for ep in _entry_points(self.group):
            if ep.name in found:
                log.warning("%s plugin %r (%s) shadows the built-in %s (%s) and was skipped",
                            self.what, ep.name, ep.value, found[ep.name].name, found[ep.name].target)
                continue
            found[ep.name] = Entry(ep.name, ep.value, False)
        return found

    def names(self) -> list[str]:
        """Names of the plugins that load (a broken third-party one is logged and left out)."""
        return [name for name in sorted(self.entries()) if self._try_load(name) is not None]

    def load(self, name: str) -> T:
        """The plugin called ``name``.

        Raises:
            FarmplugError: unknown name (the message lists the valid ones), or it cannot be loaded.
        """
        entries = self.entries()
        if name not in entries:
            raise FarmplugError(f"unknown {self.what} {name!r}; available: {', '.join(self.names())}")
        if name not in self._loaded:
            entry = entries[name]
            try:
                value = load_target(entry.target)
                self._loaded[name] = self._check(value) if self._check else value
            except (ImportError, AttributeError, TypeError) as err:
                origin = "built-in" if entry.builtin else "plugin"
                raise FarmplugError(f"{self.what} {origin} {name} cannot be loaded from {entry.target}: {err}") from err
        return self._loaded[name]

    def load_all(self) -> dict[str, T]:
        """Every plugin that loads, by name; broken third-party ones are logged and skipped.

        Raises:
            FarmplugError: a built-in cannot be loaded (a broken installation).
        """
        loaded = {}
        for name, entry in sorted(self.entries().items()):
            value = self._try_load(name)
            if value is None and entry.builtin:
                self.load(name)  # raises with the reason
            if value is not None:
                loaded[name] = value
        return loaded

    def _try_load(self, name: str) -> T | None:
        if name in self._broken:
            return None
        try:
            return self.load(name)
        except FarmplugError as err:
            if self.entries()[name].builtin:
                raise
            log.warning("%s; skipped", err)
            self._broken.add(name)
            return None

    def forget(self) -> None:
        """Drop loaded plugins (tests that install one call this)."""
        self._loaded.clear()
        self._broken.clear()
        _entry_points.cache_clear()


@cache
def _entry_points(group: str):
    return tuple(entry_points(group=group))
