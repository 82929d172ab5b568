"""Credentials are never printed: submit errors, results and logs with a URL that holds a password and a token.

Each farm is reached through the real command line, with ``FARMPLUG_<FARM>_URL`` holding a user,
a password and a ``?token=`` and ``FARMPLUG_<FARM>_PASSWORD`` another secret, against a closed
port, a local stand-in that refuses the job echoing what it got (path, query and the decoded
login, as a careless proxy or error page would), and one that accepts it echoing the same.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from farmplug.cli import main
from farmplug.integrations.base import FarmConnection
from tests.stand_ins import QuietHandler

URL_PASSWORD = "urlPa55-w0rd"
TOKEN = "tok-9f8e7d6c"
ENV_PASSWORD = "envPa55-w0rd"
SECRETS = (URL_PASSWORD, TOKEN, ENV_PASSWORD)
FARMS = ["deadline", "flamenco", "tractor"]


class _EchoingFarm(QuietHandler):
    """Answers every POST, echoing the request line and the decoded Basic login in the answer."""

    accept = False

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        login = self.headers.get("Authorization", "")
        if login.startswith("Basic "):
            login = base64.b64decode(login[6:]).decode()
        echo = f"{self.command} {self.path} login={login}"
        if not self.accept:
            self.reply(401, "text/plain", f"Unauthorized: {echo}")
        elif self.path.startswith("/api/jobs"):
            self.reply(200, "application/json", json.dumps({"_id": "64f000000000000000000001"}))
        elif self.path.startswith("/api/v3/jobs"):
            self.reply(200, "application/json", json.dumps({"id": "0d5b-job", "message": echo}))
        else:
            self.reply(200, "application/json", json.dumps({"rc": 0, "msg": f"job accepted: {echo}", "jid": 7}))



@pytest.fixture
def farm_server():
    servers = []

    def start(*, accept: bool) -> int:
        handler = type("Handler", (_EchoingFarm,), {"accept": accept})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    shot = {"name": "sh010", "scene": "scene.blend", "frames": {"start": 1, "end": 4},
            "resolution": {"width": 64, "height": 36}, "samples": 64, "output": "frames/sh010.####.exr"}
    (tmp_path / "shot.yaml").write_text(yaml.safe_dump(shot))
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump({"shot": "shot.yaml", "samples_factor": 0.25, "chunk_size": 2}))
    return tmp_path / "plan.yaml"


def _submit(farm: str, port: int, plan: Path, monkeypatch, caplog, capsys) -> tuple[int, str, str]:
    prefix = f"FARMPLUG_{farm.upper()}"
    monkeypatch.setenv("FARMPLUG_FARMS", str(plan.parent / "no-farms.yaml"))
    monkeypatch.setenv(f"{prefix}_URL", f"http://admin:{URL_PASSWORD}@127.0.0.1:{port}/?token={TOKEN}")
    monkeypatch.setenv(f"{prefix}_USER", "wrangler")
    monkeypatch.setenv(f"{prefix}_PASSWORD", ENV_PASSWORD)
    caplog.set_level(logging.DEBUG)  # urllib3's debug line quotes each request's path and query
    code = main(["submit", str(plan), "--farm", farm, "--run-dir", str(plan.parent / "run")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, caplog.text


@pytest.mark.parametrize("farm", FARMS)
@pytest.mark.parametrize("server", [pytest.param("closed-port", id="closed-port"),
                                    pytest.param("refuses", id="refuses-echoing-the-request")])
def test_a_failed_submit_shows_the_farm_but_no_secret(farm, server, plan, farm_server, monkeypatch, caplog, capsys):
    port = _closed_port() if server == "closed-port" else farm_server(accept=False)
    code, printed, logged = _submit(farm, port, plan, monkeypatch, caplog, capsys)
    assert code == 1
    error = printed.strip()
    assert error.startswith("farmplug: error:") and "\n" not in error
    assert f"admin:***@127.0.0.1:{port}" in error and "token=***" in error
    if server == "refuses":
        assert "401" in error and "Unauthorized" in error  # the farm's answer is still shown, redacted
    for secret in SECRETS:
        assert secret not in printed, f"{secret} printed"
        assert secret not in logged, f"{secret} logged"


@pytest.mark.parametrize("farm", FARMS)
def test_a_successful_submit_shows_no_secret(farm, plan, farm_server, monkeypatch, caplog, capsys):
    port = farm_server(accept=True)
    code, printed, logged = _submit(farm, port, plan, monkeypatch, caplog, capsys)
    assert code == 0, printed
    assert "submitted to" in printed
    assert f"127.0.0.1:{port}" in logged  # the logs still say where it went
    for secret in SECRETS:
        assert secret not in printed, f"{secret} printed"
        assert secret not in logged, f"{secret} logged"


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"http://admin:{URL_PASSWORD}@cuebot:8443", id="password"),
        pytest.param(f"http://cuebot:8443/?token={TOKEN}", id="token"),
    ],
)
def test_a_connection_never_shows_its_credentials_in_its_repr(url):
    shown = repr(FarmConnection(kind="opencue", url=url))
    assert "cuebot:8443" in shown and URL_PASSWORD not in shown and TOKEN not in shown


@pytest.mark.parametrize(
    "config, field",
    [
        pytest.param("{kind: deadline, url: 'http://x', password: plain-pw}", "password", id="password"),
        pytest.param("{kind: deadline, url: 'http://x', api_token: plain-pw}", "api_token", id="token"),
        pytest.param("{kind: deadline, url: 'http://x', secret_key: plain-pw}", "secret_key", id="secret-key"),
        pytest.param("{kind: deadline, url: 'http://x', credentials: plain-pw}", "credentials", id="credentials"),
        pytest.param("{kind: deadline, url: 'http://x', password_env: 12345}", "password_env",
                     id="wrong-type-of-a-secret-field"),
        pytest.param("{kind: deadline, url: 'http://x', options: {token: [plain-pw]}, 'password': plain-pw}",
                     "password", id="nested-secret"),
    ],
)
def test_farm_config_errors_name_a_secret_field_without_its_value(config, field, plan, tmp_path, capsys):
    farms = tmp_path / "farms.yaml"
    farms.write_text(f"farms:\n  deadline: {config}\n")
    assert main(["submit", str(plan), "--farm", "deadline", "--farm-config", str(farms)]) == 1
    error = capsys.readouterr().err.strip()
    assert "farms.yaml" in error and f"farms.deadline.{field}:" in error and "\n" not in error
    assert "plain-pw" not in error and "12345" not in error


def test_a_broken_farm_config_does_not_quote_its_lines(plan, tmp_path, capsys):
    """PyYAML's own message quotes the file around the error, secrets and all, over several lines."""
    farms = tmp_path / "farms.yaml"
    farms.write_text("farms:\n  deadline:\n    url: 'http://admin:plain-pw@farm\n    kind: deadline\n  : [\n")
    assert main(["submit", str(plan), "--farm", "deadline", "--farm-config", str(farms)]) == 1
    error = capsys.readouterr().err.strip()
    assert "farms.yaml" in error and "not valid YAML" in error and "\n" not in error
    assert "plain-pw" not in error
