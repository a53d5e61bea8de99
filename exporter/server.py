"""HTTP endpoints: / (landing page), /metrics, /healthz, /readyz, on a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter import __version__
from exporter.snapshot import Health

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_LANDING = """<!doctype html>
<html><head><title>letta-exporter</title></head>
<body><h1>letta-exporter {version}</h1>
<p>Prometheus metrics and OpenTelemetry traces for Letta agent runs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Scrapes every few seconds would flood stderr; access logs are not ours."""


class App:
    """The WSGI application; health comes from a callable so it is always current."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        *,
        stale_after_s: float,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._health = health
        self._stale_after_s = stale_after_s

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics(environ, start_response)
            return result
        if path == "/healthz":
            return self._healthz(start_response)
        if path == "/readyz":
            ready = self._health().ready
            return _text(
                start_response,
                "200 OK" if ready else "503 Service Unavailable",
                "ready\n" if ready else "no successful poll yet\n",
            )
        if path == "/":
            body = _LANDING.format(version=__version__).encode()
            start_response(
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return _text(start_response, "404 Not Found", "not found\n")

    def _healthz(self, start_response: StartResponse) -> Iterable[bytes]:
        # Healthy while the poll loop is alive, whether or not Letta answers: a restart
        # would not fix Letta being down. Unhealthy if no cycle ran for too long.
        health = self._health()
        last = health.last_attempt_s
        if last is not None and time.time() - last > self._stale_after_s:
            return _text(start_response, "503 Service Unavailable", "poll loop stalled\n")
        return _text(start_response, "200 OK", "ok\n")


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(
        status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))]
    )
    return [data]


class HttpServer:
    """Serves `App` on a daemon thread until `stop()`."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self._server = make_server(
            host, port, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
