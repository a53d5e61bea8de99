"""Basic auth's credential check (`exporter.web.basic_auth`), without a server."""

from __future__ import annotations

import base64

import bcrypt
import pytest

from exporter.web import basic_auth

PASSWORD = "s3cret"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_successful_checks_are_cached_without_keeping_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(basic_auth.bcrypt, "checkpw", counting)
    authenticator = basic_auth.BasicAuthenticator({"prometheus": HASH})
    header = basic("prometheus", PASSWORD)
    assert authenticator.check(header) and authenticator.check(header)
    assert len(calls) == 1
    # Failures are not cached: each wrong guess costs a bcrypt.
    wrong = basic("prometheus", "nope")
    assert not authenticator.check(wrong) and not authenticator.check(wrong)
    assert len(calls) == 3
    assert all(PASSWORD.encode() not in key for key in authenticator._cache)
