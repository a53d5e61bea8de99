"""HTTP endpoints: / (the status page, else links), /metrics, /healthz, /readyz, on a thread."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporter import __version__
from exporter.metrics.snapshot import Health
from exporter.web.basic_auth import REALM
from exporter.web.watcher import WebConfigWatcher

log = logging.getLogger("exporter.web")

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

_LANDING = """<!doctype html>
<html><head><title>letta-exporter</title></head>
<body><h1>letta-exporter {version}</h1>
<p>Prometheus metrics and OpenTelemetry traces for Letta agent runs.</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


_HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
# How often the serving loop looks for stop(): a stop waits up to this long (the
# standard library's 0.5 s made every stop, and each test's server, wait half a second).
_STOP_NOTICED_WITHIN_S = 0.1
# A client that opens a connection and never finishes the TLS handshake gives up its
# thread after this long; it never holds up other clients (the handshake runs in the
# connection's own thread, not in accept()).
HANDSHAKE_TIMEOUT_S = 10.0
_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _TLSWSGIServer(_ThreadingWSGIServer):
    """Accepts plain sockets; each connection's TLS handshake runs in its own thread.

    Each connection is wrapped with the context in force when it arrives, so a rotated
    certificate serves the next connection (the listening socket is never wrapped).
    """

    web: WebConfigWatcher
    handshake_timeout_s = HANDSHAKE_TIMEOUT_S

    def finish_request(self, request: Any, client_address: Any) -> None:
        web = self.web.current()
        assert web.ssl_context is not None
        # The handshake, which waits on the client, happens here on the connection's
        # thread, never in accept(): a silent client holds up no one else.
        tls = web.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        try:
            tls.settimeout(self.handshake_timeout_s)
            try:
                tls.do_handshake()
            except ssl.SSLError as exc:
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                if exc.reason == "HTTP_REQUEST":
                    # As Go's server does: tell whoever scrapes http:// what is wrong.
                    _send_raw(tls, _PLAIN_HTTP_ANSWER)
                return
            except OSError as exc:  # timeouts and resets of clients that went away
                log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
                return
            if not web.peer_allowed(tls):
                log.debug("client certificate of %s has no allowed SAN", client_address[0])
                return
            # As without TLS: no read timeout once the connection is established.
            tls.settimeout(None)
            super().finish_request(tls, client_address)
        finally:
            # wrap_socket took over the accepted socket; the caller's shutdown of it is a
            # no-op, so the TLS socket is shut down and closed here.
            self.shutdown_request(tls)


def _send_raw(sock: ssl.SSLSocket, data: bytes) -> None:
    # The TLS layer is dead after a failed handshake; write to the plain socket beneath.
    with contextlib.suppress(OSError):
        socket.socket.sendall(sock, data)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Scrapes every few seconds would flood stderr; access logs are not ours."""


class App:
    """The WSGI application; health comes from a callable so it is always current.

    With `web` (from `--web.config.file`), every response carries its headers, the rate
    limit applies, and basic auth is checked before routing, all as the configuration in
    force at that request says; `health_open` leaves /healthz and /readyz outside basic
    auth (kubelet probes cannot send credentials). `status_page` renders `/` (status.py);
    without it `/` is a list of links.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        *,
        stale_after_s: float,
        web: WebConfigWatcher | None = None,
        health_open: bool = True,
        status_page: Callable[[], bytes] | None = None,
    ) -> None:
        self._metrics = make_wsgi_app(registry)
        self._status_page = status_page
        self._health = health
        self._stale_after_s = stale_after_s
        self._web = web
        self._health_open = health_open

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if self._web is None:
            return self._route(environ, start_response)
        web = self._web.current()
        if web.headers:
            start_response = _with_headers(start_response, web.headers)
        if web.rate_limiter is not None and not web.rate_limiter.allow():
            return _text(start_response, "429 Too Many Requests", "too many requests\n")
        path = environ.get("PATH_INFO", "/")
        if (
            web.authenticator is not None
            and path not in web.auth_excluded_paths
            and not (self._health_open and path in _HEALTH_PATHS)
            and not web.authenticator.check(environ.get("HTTP_AUTHORIZATION"))
        ):
            return _text(
                start_response,
                "401 Unauthorized",
                "unauthorized\n",
                [("WWW-Authenticate", f'Basic realm="{REALM}"')],
            )
        return self._route(environ, start_response)

    def _route(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
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
            body = (
                self._status_page()
                if self._status_page is not None
                else _LANDING.format(version=__version__).encode()
            )
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


def _text(
    start_response: StartResponse,
    status: str,
    body: str,
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    data = body.encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *extra,
        ],
    )
    return [data]


def _with_headers(
    start_response: StartResponse, headers: tuple[tuple[str, str], ...]
) -> StartResponse:
    def wrapped(status: str, response_headers: list[tuple[str, str]], *exc: Any) -> Any:
        return start_response(status, [*response_headers, *headers], *exc)

    return wrapped


class HttpServer:
    """Serves `App` on a daemon thread until `stop()`; over TLS when `web` has a context."""

    def __init__(
        self, app: App, host: str, port: int, *, web: WebConfigWatcher | None = None
    ) -> None:
        server_class: type[WSGIServer] = _ThreadingWSGIServer
        self.tls = web is not None and web.current().ssl_context is not None
        if web is not None and self.tls:
            # A subclass per server carries the settings: make_server takes only a class.
            server_class = type("_Server", (_TLSWSGIServer,), {"web": web})
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_STOP_NOTICED_WITHIN_S,),
            name="metrics-http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve on a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
