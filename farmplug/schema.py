"""Pydantic plumbing shared by every model that crosses a file or process boundary.

Models are strict (unknown keys rejected), carry a ``schema_version``, and are read from YAML
with ``yaml.safe_load``. Validation errors become one ``ConfigError`` naming the file, the field
path and, where pydantic knows them, the allowed values.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from farmplug.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
# libyaml's safe loader where PyYAML was built with it (same rules as yaml.safe_load, faster).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictModel(BaseModel):
    """Base for boundary models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``field.path: message (got VALUE)``."""
    parts = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        got = item.get("input")
        shown = "" if isinstance(got, (dict, list)) or item["type"] == "missing" else f" (got {got!r})"
        parts.append(f"{loc}: {msg}{shown}")
    return "; ".join(parts)


def validate_data(model: type[M], data: Any, *, source: str | Path) -> M:
    """Validate already-parsed data against ``model``.

    Raises:
        ConfigError: naming ``source``, the field and the allowed values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of {model.__name__} fields, got {type(data).__name__}", path=source)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid {model.__name__}: {describe_validation_error(err)}", path=source) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read a YAML or JSON file into ``model``.

    Raises:
        ConfigError: the file is missing, is not YAML/JSON, or does not match the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read: {err}", path=path) from None
    if path.suffix == ".json":
        # JSON is a subset of YAML, but the C JSON parser is ~30x faster than PyYAML: timing
        # records and graphs are read by the thousand at show scale.
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"not valid JSON: {err}", path=path) from None
        return validate_data(model, data, source=path)
    try:
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML/JSON: {str(err).splitlines()[0]}", path=path) from None
    return validate_data(model, data, source=path)


def default_file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 less the umask).

    Temp files from ``mkstemp`` are 0o600; outputs renamed from them get this mode instead, so
    frames and reports are readable by the rest of the farm like any other file.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: BaseModel, path: str | Path) -> None:
    """Write a model as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
    path = Path(path)
    data = model.model_dump(mode="json")
    if path.suffix in (".yaml", ".yml"):
        text = yaml.safe_dump(data, sort_keys=False)
    else:
        text = json.dumps(data, indent=2) + "\n"
    atomic_write_text(path, text)
