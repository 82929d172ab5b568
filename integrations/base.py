"""The farm backend interface: ``compile`` a job graph into a native submission, ``submit`` it.

``compile`` does no I/O: it returns the files and API requests a farm manager takes (templates,
job scripts, REST payloads), so a wrangler can inspect them (``farmplug submit --dry-run``) and
tests can compare them with golden files. ``submit`` talks to the farm named in the farm
configuration; addresses and credentials come from the environment or a config file and are
never written into job files or logs.

Every address, request error or farm answer a backend puts into an error, a log line or a
result goes through :func:`farmplug.names.redact_text` / :func:`~farmplug.names.redact_url`
(see :func:`shown_address` and :func:`redacted_line`), and every HTTP call goes through
:func:`http_request`, which holds it to a total deadline.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import Field

from farmplug.errors import ConfigError, FarmplugError
from farmplug.graph import JobGraph
from farmplug.names import redact_text, redact_url
from farmplug.schema import StrictModel, parse_text, validate_data

CONFIG_ENV = "FARMPLUG_FARMS"
DEFAULT_CONFIG = Path("~/.config/farmplug/farms.yaml")
# After the deadline the sockets are shut; this long more for the request's thread to notice.
_DEADLINE_GRACE_S = 1.0


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

    def secrets(self) -> tuple[str, ...]:
        """Every secret this connection knows (the password from the environment, the URL's
        password and secret parameters), to be hidden wherever a farm's answer is shown."""
        found = [self.credentials()[1]]
        if self.url:
            found += _url_secrets(self.url)
        return tuple(s for s in found if s)

    def __repr_args__(self):
        # A traceback or a debug log of the connection must not show the URL's credentials.
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" and isinstance(value, str) else value)


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
        text = chosen.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot read farm configuration: {reason}", path=chosen) from None
    # parse_text: one line (a YAML error's own text quotes the file, secrets and all), duplicate keys refused.
    data = parse_text(text, source=chosen) or {}
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


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import parse_qsl, urlsplit

    from farmplug.names import is_secret_name

    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) + parse_qsl(parts.fragment) if is_secret_name(k)]
    except ValueError:
        return []
    if parts.username and not parts.password:
        found.append(parts.username)  # https://TOKEN@host
    return found


def base_url(connection: FarmConnection, missing: str) -> str:
    """The connection's address without a trailing ``/``, ``http://`` where it names no scheme.

    Raises:
        SubmitError: the connection has no address (``missing`` says how to give one).
    """
    if not connection.url or not connection.url.strip():
        raise SubmitError(missing)
    url = connection.url.strip()
    return url if "://" in url else f"http://{url}"


def endpoint(base: str, path: str, query: str = "") -> str:
    """``base`` with ``path`` appended to its path and ``query`` to its query.

    An address can carry a query (a token a proxy wants): ``base + path`` would put the path
    inside that query.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base)
    joined = "&".join(q for q in (parts.query, query) if q)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, query=joined))


def shown_address(url: str) -> str:
    """An address as errors, logs and results show it: credentials and secret parameters as ``***``."""
    return redact_url(url.rstrip("/"))


def redacted_line(err: BaseException | str, secrets: Iterable[str | None] = ()) -> str:
    """An error or a farm's answer as a message shows it: one line, at most 300 characters,
    URLs redacted and each of ``secrets`` as ``***`` (:func:`farmplug.names.redact_text`)."""
    # Redacted well past the cut, so a secret cannot straddle it half-shown.
    text = " ".join(str(err)[:10_000].split())
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return redact_text(text, secrets)[:300]


class _Sockets:
    """The sockets of one request, shut all at once when its deadline passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.expired = False

    def add(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._open.append(sock)
            late = self.expired
        if late:  # connected just as the deadline passed
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            found = list(self._open)
        for sock in found:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket.shutdown on the file descriptor wakes a recv blocked in another thread; an
    # SSLSocket's own shutdown would first drop its TLS state under that thread's feet.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def _watched_adapter(sockets: _Sockets):
    """A requests transport adapter whose connections hand their sockets to ``sockets``."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import ProxyManager

    class Watched(HTTPConnection):
        def _new_conn(self):
            sock = super()._new_conn()
            sockets.add(sock)
            return sock

    class WatchedTLS(HTTPSConnection):
        def connect(self):
            super().connect()
            sockets.add(self.sock)  # the TLS socket (the plain one it wraps is detached)

    pools = {"http": type("HTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": Watched}),
             "https": type("HTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": WatchedTLS})}

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if type(manager) is ProxyManager:  # a SOCKS manager keeps its own pools
                manager.pool_classes_by_scheme = pools
            return manager

    return Adapter(max_retries=0)


class _RedactedRecords(logging.Filter):
    """Redacts the URLs in urllib3's own log records (its debug line quotes each request's path
    and query: ``"POST /api/jobs?token=..." 201``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg, record.args = redact_text(message), ()
        return True


_REDACTED_RECORDS = _RedactedRecords()
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.response",
                 "urllib3.util.retry")


def _redact_http_logs() -> None:
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTED_RECORDS not in logger.filters:
            logger.addFilter(_REDACTED_RECORDS)


def http_request(method: str, url: str, *, timeout_s: float, **kwargs: Any):
    """One HTTP request (``requests``' arguments) that gives up ``timeout_s`` after it starts.

    ``requests``' own timeout bounds each wait for a byte, so a server trickling its answer a
    byte at a time holds a plain call for ever. Here the request runs in a worker thread; at the
    deadline its sockets are shut (which ends the worker's wait) and the caller gets a timeout
    within about a second, even where a socket could not be shut (a TLS handshake in progress).
    urllib3's log records (which quote each request's path and query) are redacted.

    Raises:
        requests.RequestException: the farm cannot be reached or broke off, or gave no complete
            answer within ``timeout_s`` (``requests.Timeout``, saying so).
    """
    import requests

    _redact_http_logs()
    sockets = _Sockets()
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            with requests.Session() as session:
                adapter = _watched_adapter(sockets)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                outcome["response"] = session.request(method, url, timeout=(timeout_s, timeout_s), **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = err

    worker = threading.Thread(target=call, name="farmplug-http", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        sockets.expire()
        worker.join(_DEADLINE_GRACE_S)
    if sockets.expired or worker.is_alive():
        raise requests.Timeout(f"no complete answer within {timeout_s:g} s") from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


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
