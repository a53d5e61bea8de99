"""`--web.config.file`: TLS, basic auth and response headers for the exporter's endpoints.

The file uses the Prometheus exporter-toolkit format, so the YAML written for
node_exporter works here unchanged:
https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md

Differences from the Go implementation, all forced by Python's `ssl` module or wsgiref:

- The toolkit re-reads the file on every request; here `WebConfigWatcher` re-reads it
  when it, or a certificate, key or CA file it names, changes (looked at no more than once
  a second, when requests come). A file that fails to load, as one caught half-way
  through a rotation may, leaves the previous configuration serving. Switching TLS on or
  off needs a restart.
- `cipher_suites` and `curve_preferences` name Go constants; they are accepted and ignored
  with a warning (OpenSSL's defaults apply). `prefer_server_cipher_suites` is honoured.
- `RequestClientCert` does not ask for a certificate: Python cannot request one without
  verifying it, and the toolkit never looks at an unverified certificate anyway.
- `RequireAnyClientCert` needs `client_ca_file` and then also verifies the certificate
  against it, for the same reason (stricter, never looser).
- `http_server_config.http2` is ignored: the server speaks HTTP/1.0.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import bcrypt
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from exporter.core.durations import parse_duration

log = logging.getLogger("exporter.web")

FLAG: Final = "--web.config.file"
REALM: Final = "letta-exporter"
# The prefixes both Go's and Python's bcrypt read; the cost must be within bcrypt's 4..31.
_BCRYPT: Final = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
# Headers the toolkit lets a file set (and the values it allows where it restricts them);
# anything else is refused there, so it is refused here too.
_ALLOWED_HEADERS: Final[Mapping[str, tuple[str, ...]]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Bounded so a client cycling through valid credentials cannot grow memory without end.
_CACHE_LIMIT: Final = 1024

ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "RequireClientCert",  # the toolkit's old spelling of RequireAnyClientCert
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]


_Fail = Callable[[str, str], "WebConfigError"]


class WebConfigError(Exception):
    """The web config file is unusable; str() is one sentence naming the file and field."""

    def __init__(self, path: Path, where: str, message: str) -> None:
        self.path = path
        self.where = where
        self.message = message
        location = f"{where}: " if where else ""
        super().__init__(f"invalid {FLAG} ({path}): {location}{message}")


def _bcrypt_hash(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # the str type then names the fault
    match = _BCRYPT.fullmatch(value)
    if match is None:
        raise ValueError("not a bcrypt hash (like $2y$10$...; make one with htpasswd -nBC 10)")
    if not 4 <= int(match.group(1)) <= 31:
        raise ValueError("bcrypt cost must be between 4 and 31")
    return value


BcryptHash = Annotated[str, BeforeValidator(_bcrypt_hash)]
GoDuration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Strict(BaseModel):
    # Unknown keys are refused, as Go's yaml.UnmarshalStrict does in the toolkit: a typo
    # like `basic_auth_user` must not silently leave /metrics open.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TLSServerConfig(_Strict):
    """`tls_server_config`."""

    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    client_auth_type: ClientAuthType | None = None
    client_ca_file: str | None = None
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] | None = None
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] | None = None

    @property
    def enabled(self) -> bool:
        """Whether TLS is on: the toolkit's rule, any certificate or client-auth setting."""
        return any(
            value
            for value in (
                self.cert,
                self.key,
                self.client_ca,
                self.cert_file,
                self.key_file,
                self.client_auth_type,
                self.client_ca_file,
            )
        )


class HTTPServerConfig(_Strict):
    """`http_server_config`."""

    http2: bool = True
    headers: dict[str, str] | None = None


class RateLimitConfig(_Strict):
    """`rate_limit`: a token bucket over all requests (0s interval: off)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    interval: GoDuration = 0.0
    burst: int = Field(0, ge=0)


class WebConfigFile(_Strict):
    """The whole file."""

    tls_server_config: TLSServerConfig | None = None
    http_server_config: HTTPServerConfig | None = None
    basic_auth_users: dict[str, BcryptHash] | None = None
    auth_excluded_paths: list[str] | None = None
    rate_limit: RateLimitConfig | None = None


class BasicAuthenticator:
    """Checks `Authorization: Basic` against bcrypt hashes, caching successes."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user.encode(): hashed.encode() for user, hashed in users.items()}
        # Unknown users are checked against this so that they cost as much as known ones
        # and the response time does not tell which user names exist. Same cost as the
        # first configured hash, so timing matches the common single-user case.
        first = _BCRYPT.fullmatch(next(iter(users.values()), "")) if users else None
        cost = int(first.group(1)) if first is not None else 10
        self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(cost))
        # The cache is keyed by an HMAC under a per-process secret: it never holds a
        # password, nor a fast unsalted hash one could brute-force from a memory dump.
        self._cache_key = secrets.token_bytes(32)
        self._cache: set[bytes] = set()
        self._cache_lock = threading.Lock()
        # One bcrypt at a time, as in the toolkit: a flood of wrong passwords then costs
        # one core, not all of them (the metrics thread must stay responsive).
        self._bcrypt_lock = threading.Lock()

    def check(self, authorization: str | None) -> bool:
        """Whether an Authorization header value carries valid credentials."""
        credentials = _parse_basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        key = hmac.new(self._cache_key, b"%d:%b:%b" % (len(user), user, password), hashlib.sha256)
        digest = key.digest()
        with self._cache_lock:
            if digest in self._cache:
                return True
        hashed = self._users.get(user)
        with self._bcrypt_lock:
            # checkpw compares in constant time; unknown users go through the dummy hash.
            try:
                ok = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy)
            except ValueError:  # a hash bcrypt cannot read: nobody gets in with it
                ok = False
        if ok and hashed is not None:
            with self._cache_lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache.add(digest)
            return True
        return False


def _parse_basic(authorization: str | None) -> tuple[bytes, bytes] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # WSGI hands headers over as latin-1 strings; the base64 text is ASCII anyway.
        decoded = base64.b64decode(encoded.strip().encode("latin-1"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user, password


class RateLimiter:
    """Token bucket: `burst` requests at once, then one per `interval` seconds."""

    def __init__(self, interval_s: float, burst: int) -> None:
        self._interval = interval_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token if one is left."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._last) / self._interval)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


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
        cert = sock.getpeercert() or {}
        for entry in cert.get("subjectAltName", ()):
            kind, value = entry[0], entry[1]
            if not isinstance(value, str):
                continue
            # Go prints IPs compressed and lowercase; Python's ssl prints IPv6 expanded.
            candidate = _normalise_ip(value) if kind == "IP Address" else value
            if candidate in self.client_allowed_sans or value in self.client_allowed_sans:
                return True
        return False


def _normalise_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def load_web_config(path: Path) -> WebSecurity:
    """Read, validate and apply a web config file; raises WebConfigError on any fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WebConfigError(path, "", _os_reason(exc)) from None
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
    base = path.parent
    tls = parsed.tls_server_config
    context = _ssl_context(path, base, tls) if tls is not None and tls.enabled else None
    http = parsed.http_server_config or HTTPServerConfig()
    headers = _headers(path, http.headers or {})
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
        watched=(path, *_named_files(base, tls)),
    )


def _named_files(base: Path, tls: TLSServerConfig | None) -> tuple[Path, ...]:
    if tls is None:
        return ()
    names = (tls.cert_file, tls.key_file, tls.client_ca_file)
    return tuple(base / name for name in names if name)


def _fingerprint(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    def stat(path: Path) -> tuple[int, int, int] | None:
        try:
            # Follows symlinks: a Kubernetes secret swaps its ..data link, not the files.
            st = path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    return tuple(stat(path) for path in paths)


class WebConfigWatcher:
    """The web configuration in force, re-read when its files change.

    A rotated certificate (cert-manager, a renewed Let's Encrypt cert) or an edited user
    list takes effect for the next connection without a restart. A change that does not
    load keeps the previous configuration serving and sets `last_reload_ok` to False
    until a later change loads.
    """

    def __init__(self, initial: WebSecurity, *, check_every_s: float = 1.0) -> None:
        self._current = initial
        self._fingerprint = _fingerprint(initial.watched)
        self._failure: str | None = None
        self._check_every_s = check_every_s
        self._next_check = time.monotonic() + check_every_s
        self._lock = threading.Lock()
        self.last_reload_ok = True

    def current(self) -> WebSecurity:
        """The configuration to apply to a connection or request starting now."""
        now = time.monotonic()
        if now >= self._next_check:
            with self._lock:
                if now >= self._next_check:
                    self._reload_if_changed()
                    self._next_check = time.monotonic() + self._check_every_s
        return self._current

    def _reload_if_changed(self) -> None:
        old = self._current
        before = _fingerprint(old.watched)
        if before == self._fingerprint and self._failure is None:
            return
        # After a failure every check reads again: the fix may be in a file the old
        # configuration does not name (a new cert_file copied after the edit).
        try:
            new = load_web_config(old.path)
            if (new.ssl_context is None) != (old.ssl_context is None):
                raise WebConfigError(
                    old.path, "tls_server_config", "turning TLS on or off needs a restart"
                )
        except WebConfigError as exc:
            if str(exc) != self._failure:  # once per problem, not once a second
                log.warning("%s; still serving with the previous web configuration", exc)
            self._failure = str(exc)
            self.last_reload_ok = False
            return
        # The fingerprint taken before reading: a change made while reading loads again.
        self._fingerprint = before if new.watched == old.watched else _fingerprint(new.watched)
        self._failure = None
        self._current = new
        self.last_reload_ok = True
        log.info("web config %s reloaded", old.path)


def _headers(path: Path, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    for name, value in headers.items():
        where = f"http_server_config.headers.{name}"
        if name not in _ALLOWED_HEADERS:
            raise WebConfigError(path, where, "this header cannot be configured")
        allowed = _ALLOWED_HEADERS[name]
        if allowed and value not in allowed:
            raise WebConfigError(path, where, f"must be one of {', '.join(allowed)}")
        if "\r" in value or "\n" in value:
            raise WebConfigError(path, where, "must be one line")
    # A blank value means "unset" in the toolkit's documentation.
    return tuple((name, value) for name, value in headers.items() if value)


def _ssl_context(path: Path, base: Path, tls: TLSServerConfig) -> ssl.SSLContext:
    prefix = "tls_server_config."

    def fail(name: str, message: str) -> WebConfigError:
        return WebConfigError(path, prefix + name, message)

    for inline, file in (
        ("cert", "cert_file"),
        ("key", "key_file"),
        ("client_ca", "client_ca_file"),
    ):
        if getattr(tls, inline) and getattr(tls, file):
            raise fail(file, f"set {inline} or {file}, not both")
    if not (tls.cert or tls.cert_file):
        raise fail("cert_file", "missing (TLS needs cert_file and key_file)")
    if not (tls.key or tls.key_file):
        raise fail("key_file", "missing (TLS needs cert_file and key_file)")

    cert_pem = tls.cert or _read(base, tls.cert_file, fail, "cert_file")
    key_pem = tls.key or _read(base, tls.key_file, fail, "key_file")
    cert_field = "cert" if tls.cert else "cert_file"
    key_field = "key" if tls.key else "key_file"
    if "-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise fail(cert_field, "no PEM certificate in it")
    if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_pem):
        raise fail(key_field, "no PEM private key in it")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    minimum, maximum = _TLS_VERSIONS[tls.min_version], _TLS_VERSIONS[tls.max_version]
    if minimum > maximum:
        raise fail("min_version", f"{tls.min_version} is above max_version {tls.max_version}")
    with warnings.catch_warnings():
        # TLS 1.0/1.1 are deprecated in Python; the file asked for them explicitly.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    if minimum < ssl.TLSVersion.TLSv1_2:
        log.warning("web config: TLS below 1.2 allowed (min_version %s)", tls.min_version)
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    for name in ("cipher_suites", "curve_preferences"):
        if getattr(tls, name):
            log.warning("web config: tls_server_config.%s ignored (OpenSSL defaults apply)", name)

    try:
        if tls.cert_file and tls.key_file:
            context.load_cert_chain(base / tls.cert_file, base / tls.key_file)
        else:
            with _pem_files(cert_pem, key_pem) as (cert_path, key_path):
                context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
            raise fail(key_field, f"does not belong to the certificate in {cert_field}") from None
        raise fail(cert_field, f"cannot load certificate and key ({_ssl_reason(exc)})") from None

    _client_auth(context, tls, base, fail)
    return context


def _client_auth(context: ssl.SSLContext, tls: TLSServerConfig, base: Path, fail: _Fail) -> None:
    auth = tls.client_auth_type or "NoClientCert"
    ca_field = "client_ca" if tls.client_ca else "client_ca_file"
    has_ca = bool(tls.client_ca or tls.client_ca_file)
    if has_ca and auth == "NoClientCert":
        raise fail(ca_field, "set, but client_auth_type is NoClientCert")
    if tls.client_allowed_sans and auth not in (
        "RequireAnyClientCert",
        "RequireClientCert",
        "RequireAndVerifyClientCert",
    ):
        raise fail("client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
    if auth in ("NoClientCert", "RequestClientCert"):
        if auth == "RequestClientCert":
            log.info("web config: RequestClientCert does not ask clients for a certificate here")
        context.verify_mode = ssl.CERT_NONE
        return
    if not has_ca:
        raise fail(
            "client_ca_file",
            f"missing: client_auth_type {auth} needs the CA that signs client certificates",
        )
    if auth in ("RequireAnyClientCert", "RequireClientCert"):
        log.warning(
            "web config: %s also verifies client certificates against %s here", auth, ca_field
        )
    try:
        if tls.client_ca:
            context.load_verify_locations(cadata=tls.client_ca)
        else:
            ca_pem = _read(base, tls.client_ca_file, fail, "client_ca_file")
            context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise fail(ca_field, f"cannot load CA certificates ({_ssl_reason(exc)})") from None
    context.verify_mode = (
        ssl.CERT_OPTIONAL if auth == "VerifyClientCertIfGiven" else ssl.CERT_REQUIRED
    )


def _read(base: Path, name: str | None, fail: _Fail, field_name: str) -> str:
    # Relative paths are relative to the config file's directory, as in the toolkit.
    target = base / (name or "")
    try:
        return target.read_text(encoding="utf-8")
    except OSError as exc:
        raise fail(field_name, f"{_os_reason(exc)} ({target})") from None
    except UnicodeDecodeError:
        raise fail(field_name, f"not a PEM file ({target})") from None


@contextmanager
def _pem_files(cert_pem: str, key_pem: str) -> Iterator[tuple[str, str]]:
    # load_cert_chain only takes paths; inline keys go to a private directory that is
    # removed at once, so the secret does not outlive start-up on disk.
    with tempfile.TemporaryDirectory(prefix="letta-exporter-tls-") as directory:
        os.chmod(directory, 0o700)
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        for target, content in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
        yield cert_path, key_path


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    return exc.strerror or str(exc)


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).lower().replace("_", " ")
