"""`--web.config.file`: TLS, basic auth and response headers for the exporter's endpoints.

The file uses the Prometheus exporter-toolkit format, so the YAML written for
node_exporter works here unchanged:
https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

This module reads and validates the file and builds what the server applies
(`WebSecurity`); `tls`, `basic_auth`, `headers` and `rate_limit` hold one section each and
`watcher` re-reads the file when it changes. Differences from the Go implementation
outside TLS (see `tls` for those):

- `http_server_config.http2` is ignored: the server speaks HTTP/1.0.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from exporter.web.basic_auth import BasicAuthenticator
from exporter.web.errors import WebConfigError, os_reason
from exporter.web.headers import response_headers
from exporter.web.rate_limit import RateLimiter
from exporter.web.schema import HTTPServerConfig, WebConfigFile
from exporter.web.tls import named_files, peer_has_allowed_san, ssl_context

log = logging.getLogger("exporter.web")


@dataclass(frozen=True)
class WebSecurity:
    """What a valid web config file asks of the HTTP server."""

    path: Path
    ssl_context: ssl.SSLContext | None = None
    authenticator: BasicAuthenticator | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth_excluded_paths: frozenset[str] = frozenset()
    rate_limiter: RateLimiter | None = None
    client_allowed_sans: frozenset[str] = frozenset()
    # The config file and the files it names: a change to any of them means a reload.
    watched: tuple[Path, ...] = ()

    def peer_allowed(self, sock: ssl.SSLSocket) -> bool:
        """After the handshake: whether the client certificate has an allowed SAN."""
        if not self.client_allowed_sans:
            return True
        return peer_has_allowed_san(sock, self.client_allowed_sans)


def load_web_config(path: Path) -> WebSecurity:
    """Read, validate and apply a web config file; raises WebConfigError on any fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(path, "", os_reason(exc)) from None
    except UnicodeDecodeError:
        raise WebConfigError(path, "", "not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise WebConfigError(path, where, f"not valid YAML ({problem})") from None
    if raw is None:
        raw = {}  # an empty file is valid in the toolkit: nothing is switched on
    if not isinstance(raw, dict):
        raise WebConfigError(path, "", "the file must be a YAML mapping")
    try:
        parsed = WebConfigFile.model_validate(raw)
    except ValidationError as exc:
        where, message = _describe(exc)
        raise WebConfigError(path, where, message) from None
    return _apply(path, parsed)


def _describe(exc: ValidationError) -> tuple[str, str]:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return where, "unknown field"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return where, message


def _apply(path: Path, parsed: WebConfigFile) -> WebSecurity:
    tls = parsed.tls_server_config
    context = ssl_context(path, tls) if tls is not None and tls.enabled else None
    http = parsed.http_server_config or HTTPServerConfig()
    headers = response_headers(path, http.headers or {})
    if (
        parsed.http_server_config is not None
        and "http2" in parsed.http_server_config.model_fields_set
    ):
        log.debug("web config: http_server_config.http2 ignored (the server speaks HTTP/1.0)")
    users = parsed.basic_auth_users or {}
    if users and context is None:
        log.warning("web config: basic auth without TLS sends passwords in clear text")
    limiter = None
    if parsed.rate_limit is not None and parsed.rate_limit.interval > 0:
        if parsed.rate_limit.burst < 1:
            raise WebConfigError(path, "rate_limit.burst", "must be at least 1 with an interval")
        limiter = RateLimiter(parsed.rate_limit.interval, parsed.rate_limit.burst)
    return WebSecurity(
        path=path,
        ssl_context=context,
        authenticator=BasicAuthenticator(users) if users else None,
        headers=headers,
        auth_excluded_paths=frozenset(parsed.auth_excluded_paths or ()),
        rate_limiter=limiter,
        client_allowed_sans=frozenset(tls.client_allowed_sans or ())
        if context and tls
        else frozenset(),
        watched=(path, *named_files(path, tls)),
    )
