"""What every local stand-in of a farm's HTTP service shares: a reply helper and no request log."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    """An HTTP stand-in's handler: ``reply()`` answers in one call; requests are not logged to stderr."""

    def reply(self, status: int, kind: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass
