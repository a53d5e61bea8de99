"""The simulated Letta on a background HTTP server thread."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from exporter.demo.api import LettaApi
from exporter.demo.world import World


class _Handler(BaseHTTPRequestHandler):
    api: LettaApi
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        url = urlsplit(self.path)
        status, body = self.api.get(url.path, url.query)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """The exporter's request metrics tell the story; no access log."""


class _Server(ThreadingHTTPServer):
    # A stop does not wait for the connections a client keeps open.
    daemon_threads = True
    block_on_close = False


class SimulatedLetta:
    """Serves a fresh `World` at `host:port` (port 0: any free port) until `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.world = World(start_ns=time.time_ns())
        self._host = host
        handler = type("Handler", (_Handler,), {"api": LettaApi(self.world)})
        self._server = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="simulated-letta", daemon=True
        )

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self._server.server_port}"

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.server_port

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
