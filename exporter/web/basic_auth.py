"""`basic_auth_users`: checking `Authorization: Basic` against bcrypt hashes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Mapping
from typing import Annotated, Any, Final

import bcrypt
from pydantic import BeforeValidator

REALM: Final = "letta-exporter"
# The prefixes both Go's and Python's bcrypt read; the cost must be within bcrypt's 4..31.
_BCRYPT: Final = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
# Bounded so a client cycling through valid credentials cannot grow memory without end.
_CACHE_LIMIT: Final = 1024


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
