"""The one root exception of farmplug and its few specialisations.

Every error a user can cause (a bad file, a bad YAML field, a missing render pass) is raised as
a ``FarmplugError`` whose message is one line naming the file and the problem; the CLI prints
that line and exits non-zero (``-v`` shows the traceback).
"""

from __future__ import annotations

from pathlib import Path


class FarmplugError(Exception):
    """Root of every error farmplug raises on purpose."""

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


class ImageError(FarmplugError):
    """An image file cannot be read or written (missing, corrupt, unsupported)."""


class MissingPassError(FarmplugError):
    """A stage needs a render pass (AOV) the input does not have."""


class ConfigError(FarmplugError):
    """A YAML/JSON file does not match its schema."""


class RenderError(FarmplugError):
    """The renderer failed to produce a frame."""
