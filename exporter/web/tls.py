"""`tls_server_config`: the server's SSL context and the client-certificate rules.

Differences from the Go toolkit, all forced by Python's `ssl` module:

- `cipher_suites` and `curve_preferences` name Go constants; they are accepted and ignored
  with a warning (OpenSSL's defaults apply). `prefer_server_cipher_suites` is honoured.
- `RequestClientCert` does not ask for a certificate: Python cannot request one without
  verifying it, and the toolkit never looks at an unverified certificate anyway.
- `RequireAnyClientCert` needs `client_ca_file` and then also verifies the certificate
  against it, for the same reason (stricter, never looser).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from exporter.web.errors import WebConfigError, os_reason
from exporter.web.schema import TLSServerConfig

log = logging.getLogger("exporter.web")

_TLS_VERSIONS: Final = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

_Fail = Callable[[str, str], WebConfigError]


def ssl_context(path: Path, tls: TLSServerConfig) -> ssl.SSLContext:
    """The server context `tls` describes; raises WebConfigError naming the faulty field.

    Relative file names are relative to the config file `path`'s directory.
    """
    base = path.parent
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


def named_files(path: Path, tls: TLSServerConfig | None) -> tuple[Path, ...]:
    """The certificate, key and CA files `tls` names (a change to one means a reload)."""
    if tls is None:
        return ()
    names = (tls.cert_file, tls.key_file, tls.client_ca_file)
    return tuple(path.parent / name for name in names if name)


def peer_has_allowed_san(sock: ssl.SSLSocket, allowed: frozenset[str]) -> bool:
    """After the handshake: whether the client certificate has a SAN in `allowed`."""
    cert = sock.getpeercert() or {}
    for entry in cert.get("subjectAltName", ()):
        kind, value = entry[0], entry[1]
        if not isinstance(value, str):
            continue
        # Go prints IPs compressed and lowercase; Python's ssl prints IPv6 expanded.
        candidate = _normalise_ip(value) if kind == "IP Address" else value
        if candidate in allowed or value in allowed:
            return True
    return False


def _normalise_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


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
        raise fail(field_name, f"{os_reason(exc)} ({target})") from None
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


def _ssl_reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).lower().replace("_", " ")
