"""The farm backend interface: ``compile`` a job graph into a native submission, ``submit`` it.

``compile`` does no I/O: it returns the files and API requests a farm manager takes (templates,
job scripts, REST payloads), so a wrangler can inspect them (``farmplug submit --dry-run``) and
tests can compare them with golden files. ``submit`` talks to the farm named in the farm
configuration; addresses and credentials come from the environment or a config file and are
never written into job files or logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import yaml
from pydantic import Field

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import JobGraph
from farmplug.schema import StrictModel, validate_data

CONFIG_ENV = "FARMPLUG_FARMS"
DEFAULT_CONFIG = Path("~/.config/farmplug/farms.yaml")


class SubmitError(FarmplugError):
    """The farm could not be reached or rejected the submission (says what, if anything, went in)."""


@dataclass(frozen=True)
class CompileOptions:
    """How the graph becomes farm jobs: names, priorities, pools, the worker's farmplug command.

    ``farmplug_command`` is the argument list that starts farmplug on a worker (the graph's task
    arguments are appended to it); the default assumes ``farmplug`` is on the worker's PATH.
    """

    job_name: str | None = None
    priority: int = 50
    cpu_pool: str = "cpu"
    gpu_pool: str = "gpu"
    cpu_group: str | None = None
    gpu_group: str | None = None
    farmplug_command: tuple[str, ...] = ("farmplug",)
    gpu_memory_mb: int = 8192
    max_retries: int = 2


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request a backend's ``submit`` sends (the body is what the golden files check)."""

    method: Literal["POST", "PUT", "GET"]
    path: str
    body: Mapping[str, Any] | str
    name: str = ""


@dataclass(frozen=True)
class NativeSubmission:
    """What a farm manager takes: files (relative path -> text) and API requests, in order."""

    farm: str
    files: Mapping[str, str] = field(default_factory=dict)
    requests: tuple[ApiRequest, ...] = ()
    summary: str = ""


@dataclass(frozen=True)
class SubmitResult:
    farm: str
    job_ids: tuple[str, ...]
    message: str


class FarmConnection(StrictModel):
    """Where a farm is and how to log in. Secrets are named by environment variable, never stored."""

    kind: str = Field(description="backend name: openjd, deadline, opencue, flamenco, tractor")
    url: str | None = Field(default=None, description="web service / manager / engine address")
    username_env: str | None = Field(default=None, description="environment variable holding the user name")
    password_env: str | None = Field(default=None, description="environment variable holding the password or token")
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    timeout_s: float = Field(default=30, gt=0)

    def credentials(self) -> tuple[str | None, str | None]:
        """The user name and password from the environment (None where not set)."""
        user = os.environ.get(self.username_env) if self.username_env else None
        secret = os.environ.get(self.password_env) if self.password_env else None
        return user, secret


class FarmConfig(StrictModel):
    schema_version: Literal[1] = 1
    farms: dict[str, FarmConnection] = Field(default_factory=dict)


def load_farm_config(path: str | Path | None = None) -> FarmConfig:
    """The farm configuration: ``path``, else ``$FARMPLUG_FARMS``, else ``~/.config/farmplug/farms.yaml``.

    Raises:
        ConfigError: the file exists but is invalid.
    """
    chosen = Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser()
    if not chosen.is_file():
        if path is not None:
            raise ConfigError("farm configuration not found", path=chosen)
        return FarmConfig()
    try:
        data = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read farm configuration: {err}", path=chosen) from None
    return validate_data(FarmConfig, data, source=chosen)


def connection_for(farm: str, config: FarmConfig, env_prefix: str) -> FarmConnection:
    """The connection of ``farm``: from the config file, or from ``FARMPLUG_<FARM>_URL`` and friends.

    Raises:
        ConfigError: no address is configured for the farm.
    """
    if farm in config.farms:
        return config.farms[farm]
    url = os.environ.get(f"{env_prefix}_URL")
    if not url:
        raise ConfigError(
            f"no address for farm {farm!r}: set {env_prefix}_URL (and {env_prefix}_USER / {env_prefix}_PASSWORD "
            f"if it needs a login) or add it to {DEFAULT_CONFIG} (or the file named by ${CONFIG_ENV})"
        )
    return FarmConnection(kind=farm, url=url, username_env=f"{env_prefix}_USER", password_env=f"{env_prefix}_PASSWORD")


@runtime_checkable
class FarmBackend(Protocol):
    """A farm manager: ``compile`` the graph (no I/O), ``submit`` the result (I/O)."""

    name: str

    def compile(self, graph: JobGraph, options: CompileOptions) -> NativeSubmission:
        """The native submission for ``graph``."""

    def submit(self, submission: NativeSubmission, connection: FarmConnection) -> SubmitResult:
        """Send ``submission`` to the farm.

        Raises:
            SubmitError: unreachable or rejected, with the farm's answer, naming anything already submitted.
        """


def write_submission(submission: NativeSubmission, out: Path) -> list[Path]:
    """Write a submission's files (and its API request bodies as JSON) under ``out``, atomically."""
    import json

    from farmplug.schema import atomic_write_text

    written = []
    for rel, text in submission.files.items():
        target = out / rel
        atomic_write_text(target, text)
        written.append(target)
    for index, request in enumerate(submission.requests, 1):
        name = request.name or f"request-{index:02d}"
        body = request.body if isinstance(request.body, str) else json.dumps(request.body, indent=2, sort_keys=True) + "\n"
        target = out / "requests" / f"{index:02d}-{name}.json"
        atomic_write_text(target, json.dumps({"method": request.method, "path": request.path}) + "\n" + body)
        written.append(target)
    return written
