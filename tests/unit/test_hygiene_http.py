"""HTTP calls to a farm have a total deadline: an answer trickled a byte at a time cannot hold ``submit``.

``requests``' timeout bounds each wait for a byte, so a stand-in that sends one byte every 50 ms
(of the status line and headers, or of a long body) would hold a plain call for hours. Each
backend's ``submit`` must fail within about its connection's ``timeout_s`` + 2 s, with one line
naming the farm (its address redacted) and the timeout.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from farmplug.integrations.base import CompileOptions, FarmConnection, SubmitError
from farmplug.integrations.deadline import DeadlineFarm
from farmplug.integrations.flamenco import FlamencoFarm
from farmplug.integrations.tractor import TractorFarm
from tests.farm_cases import cases

TIMEOUT_S = 1.0
SLACK_S = 2.0
BYTE_EVERY_S = 0.05
FARMS = {"deadline": DeadlineFarm, "flamenco": FlamencoFarm, "tractor": TractorFarm}
NAMES = {"deadline": "Deadline Web Service", "flamenco": "Flamenco Manager", "tractor": "Tractor engine"}


class _Trickler(BaseHTTPRequestHandler):
    """Reads the request, then answers one byte at a time until told to stop."""

    mode = "body"
    stop: threading.Event

    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.mode == "headers":
            head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 60) for i in range(90))
            body = b""
        else:
            body = b'{"_id": "64f0", "id": "job", "rc": 0, "jid": 1}' + b" " * 100_000
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        try:
            for byte in head + body:
                if self.stop.wait(BYTE_EVERY_S):
                    return
                self.wfile.write(bytes([byte]))
        except OSError:  # the client gave up and closed
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def trickling_farm():
    stop = threading.Event()
    servers = []

    def start(mode: str) -> int:
        handler = type("Handler", (_Trickler,), {"mode": mode, "stop": stop})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    stop.set()  # lets a client that did not give up (the old code) finish
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("farm", sorted(FARMS))
@pytest.mark.parametrize("mode", [pytest.param("headers", id="trickled-headers"),
                                  pytest.param("body", id="trickled-body")])
def test_a_trickled_answer_fails_within_the_timeout(farm, mode, trickling_farm):
    port = trickling_farm(mode)
    backend = FARMS[farm]()
    submission = backend.compile(cases()["denoise"], CompileOptions())
    connection = FarmConnection(kind=farm, url=f"http://admin:pw-s3cret@127.0.0.1:{port}/?token=tok-s3cret",
                                timeout_s=TIMEOUT_S)
    outcome: dict = {}

    def submit() -> None:
        started = time.monotonic()
        try:
            backend.submit(submission, connection)
        except SubmitError as err:
            outcome["error"] = str(err)
        finally:
            outcome["took"] = time.monotonic() - started

    worker = threading.Thread(target=submit, daemon=True)
    worker.start()
    worker.join(TIMEOUT_S + SLACK_S + 1)
    assert not worker.is_alive(), f"submit to a trickling {farm} still running after {TIMEOUT_S + SLACK_S + 1} s"
    assert outcome["took"] < TIMEOUT_S + SLACK_S
    message = outcome["error"]
    assert "\n" not in message
    assert f"{NAMES[farm]} http://admin:***@127.0.0.1:{port}/?token=***" in message.replace(" at ", " ")
    assert "no complete answer within 1 s" in message and "timeout_s" in message
    assert "s3cret" not in message
    # The request's own thread ended too (its sockets were shut), rather than being left to trickle on.
    ends = time.monotonic() + 1
    while any(t.name == "farmplug-http" for t in threading.enumerate()) and time.monotonic() < ends:
        time.sleep(0.01)
    assert not any(t.name == "farmplug-http" for t in threading.enumerate())


def test_a_quick_farm_is_not_slowed_by_the_deadline():
    """The deadline's worker thread adds nothing visible to an answer that comes at once."""
    from farmplug.integrations.base import http_request  # here: the trickle tests run on code without it

    class Quick(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quick)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        for _ in range(20):
            assert http_request("GET", f"http://127.0.0.1:{server.server_address[1]}/", timeout_s=30).status_code == 204
        assert time.monotonic() - started < 5
    finally:
        server.shutdown()
        server.server_close()
