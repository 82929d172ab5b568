"""Pydantic plumbing shared by every model that crosses a file or process boundary.

Models are strict (unknown keys rejected), carry a ``schema_version``, and are read from YAML
with the safe loader's rules (plus: a key twice in one mapping is an error) or from JSON.
Validation errors become one ``ConfigError`` line naming the file, the field path and, where
pydantic knows them, the allowed values; they never echo the value of a secret-looking field
(password, token, key...) nor more than the start of a long value.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from farmplug.errors import ConfigError
from farmplug.names import is_secret_name

M = TypeVar("M", bound=BaseModel)
# libyaml's safe loader where PyYAML was built with it (same rules as yaml.safe_load, faster).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_LOCATE_JSON_CHARS = 4_000_000

# A value longer than this (as written in an error) is cut to its first CUT_TO characters.
SHOWN_CHARS = 80
CUT_TO = 40
# An error lists at most this many problems, then says how many more there are.
SHOWN_PROBLEMS = 10
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-\[\](), ]{1,80}")


class StrictModel(BaseModel):
    """Base for boundary models: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def shown_value(value: object) -> str:
    """``value`` as an error shows it: its ``repr``, cut to the first 40 characters and its length
    when over 80 (a 50 MB string gives one short line, never the string)."""
    if isinstance(value, (str, bytes)):
        head = repr(value[: SHOWN_CHARS + 1])  # repr of the head only: the whole could be gigabytes
        if len(value) <= SHOWN_CHARS and len(head) <= SHOWN_CHARS:
            return head
        return f"{head[:CUT_TO]}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:CUT_TO]}… ({len(text):,} characters)"


def _shown_loc(loc: tuple) -> str:
    # A key of the file itself (an unknown field) can be long or hold a newline: shown like a value.
    parts = [str(p) if isinstance(p, int) or _PLAIN_NAME.fullmatch(str(p)) else shown_value(p) for p in loc]
    return ".".join(parts) or "<root>"


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem, joined with ``; ``: ``field.path: message (got VALUE)``.

    The value is left out for a field whose name looks secret (:func:`farmplug.names.is_secret_name`
    on any part of its path: ``farms.x.password``, ``options.api_token``), shown by
    :func:`shown_value` otherwise; past ten problems the rest are counted, not listed.
    """
    items = err.errors(include_url=False)
    parts = []
    for item in items[:SHOWN_PROBLEMS]:
        loc = item["loc"]
        msg = " ".join(str(item["msg"]).split())
        if item["type"] == "extra_forbidden":
            msg = "unknown field (not allowed here)"
        elif len(msg) > 4 * SHOWN_CHARS:
            msg = msg[: 4 * SHOWN_CHARS] + "…"
        got = item.get("input")
        secret = any(isinstance(p, str) and is_secret_name(p) for p in loc)
        hidden = secret or isinstance(got, (dict, list)) or item["type"] == "missing"
        parts.append(f"{_shown_loc(loc)}: {msg}{'' if hidden else f' (got {shown_value(got)})'}")
    if len(items) > SHOWN_PROBLEMS:
        parts.append(f"and {len(items) - SHOWN_PROBLEMS} more problems")
    return "; ".join(parts)


def validate_data(model: type[M], data: Any, *, source: str | Path) -> M:
    """Validate already-parsed data against ``model``.

    Raises:
        ConfigError: naming ``source``, the field and the allowed values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping of {model.__name__} fields, got {type(data).__name__}",
                          path=_shown_path(source))
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid {model.__name__}: {describe_validation_error(err)}", path=_shown_path(source)) from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping holds the same key twice (YAML and JSON parsers keep the last one silently)."""

    def __init__(self, key: object, line: int | None, first_line: int | None) -> None:
        self.key, self.line, self.first_line = key, line, first_line
        where = f" at line {line}" if line else ""
        first = f" (first at line {first_line})" if first_line else ""
        super().__init__(None, None, f"duplicate key {shown_value(key)}{where}{first}")

    def __str__(self) -> str:
        return str(self.problem)


class UniqueKeyLoader(_SafeLoader):
    """The safe loader (libyaml's where built), refusing a key that appears twice in one mapping.

    Only the check is Python; parsing stays in C. Keys brought in by a merge (``<<: *base``) may
    be overridden, as YAML's merge rules say.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _value in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable: the base class says so
                    continue
                if first is not key_node:
                    raise DuplicateKeyError(key, key_node.start_mark.line + 1, first.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKeyError(key, None, None)
            seen.add(key)
    return data


def parse_text(text: str, *, source: str | Path, json_only: bool = False) -> Any:
    """The data in YAML (or, with ``json_only``, JSON) ``text``; a key twice in one mapping is an error.

    Raises:
        ConfigError: not valid YAML/JSON, or a duplicate key (naming ``source``, the key and its line).
    """
    if json_only:
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except DuplicateKeyError as err:
            # json reports no positions; the YAML reader of the same text finds the line. It takes
            # about a second a megabyte, so only on this error path and only for files up to 4 MB.
            if len(text) <= _LOCATE_JSON_CHARS:
                try:
                    yaml.load(text, Loader=UniqueKeyLoader)
                except DuplicateKeyError as located:
                    if located.key == err.key:
                        err = located
                except (yaml.YAMLError, ValueError, OverflowError):
                    pass
            raise ConfigError(str(err), path=_shown_path(source)) from None
        except ValueError as err:
            raise ConfigError(f"not valid JSON: {err}", path=_shown_path(source)) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as err:
        raise ConfigError(str(err), path=_shown_path(source)) from None
    except yaml.YAMLError as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"not valid YAML/JSON: {first[: 4 * SHOWN_CHARS]}", path=_shown_path(source)) from None
    except (ValueError, OverflowError) as err:
        # A scalar the resolver takes for a number or a date that Python cannot build: an integer
        # past Python's 4300-digit limit, 2024-13-45. PyYAML lets these escape as plain errors.
        reason = " ".join(str(err).split())[: 4 * SHOWN_CHARS]
        raise ConfigError(f"not valid YAML: cannot build a value: {reason}", path=_shown_path(source)) from None


def _shown_path(path: str | Path) -> str | Path:
    # A path from a file's field (``shot: ...``) can be megabytes long; the error shows its start.
    return path if len(str(path)) <= 4 * SHOWN_CHARS else shown_value(str(path))


def load_model(model: type[M], path: str | Path) -> M:
    """Read a YAML or JSON file into ``model``.

    Raises:
        ConfigError: the file is missing, is not YAML/JSON, has a key twice in one mapping (naming
            the key and its line), or does not match the schema.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=_shown_path(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        # An OSError's text repeats the path, which can be megabytes long (the path is shown already).
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot read: {reason}", path=_shown_path(path)) from None
    # JSON is a subset of YAML, but the C JSON parser is ~30x faster than PyYAML: timing
    # records and graphs are read by the thousand at show scale.
    data = parse_text(text, source=path, json_only=path.suffix == ".json")
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
