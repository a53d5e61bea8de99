"""Extra request headers in letta-client's `LETTA_CUSTOM_HEADERS` format, kept secret.

The format is the SDKs' (letta-client 1.12.1, letta-node 1.12.0): one `Name: value` per
line, split at the first colon, name and value trimmed. The exporter is stricter than the
SDKs, which skip a line without a colon silently: here a non-blank line that is not a
header is an error naming its line, never its value. Lines starting with `#` are
comments.

Every value is treated as a secret (gateways put tokens in such headers): values are
held as `SecretStr` and no message of this module quotes one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic import SecretStr

# The exporter sets these itself; a custom header may not replace them, so the key and
# the project scope have exactly one source each.
RESERVED: Final = {
    "authorization": "Authorization (set LETTA_API_KEY or LETTA_API_KEY_FILE)",
    "x-project-id": "X-Project-Id (set LETTA_PROJECT_ID)",
    "x-project": "X-Project (set LETTA_PROJECT)",
    "user_id": "user_id (set LETTA_USER_ID)",
}
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field-name


class HeaderError(ValueError):
    """A custom header source cannot be used; the message never holds a value."""


def parse_headers(text: str, source: str) -> dict[str, SecretStr]:
    """`Name: value` lines -> {name: secret value}; a later line wins over an earlier one."""
    headers: dict[str, SecretStr] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = stripped.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.fullmatch(name):
            raise HeaderError(f"line {number} of {source} is not a 'Name: value' header")
        if name.lower() in RESERVED:
            raise HeaderError(
                f"line {number} of {source} sets {RESERVED[name.lower()]}; "
                "custom headers cannot replace the key or the project headers"
            )
        value = value.strip()
        if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
            raise HeaderError(f"line {number} of {source} has a control character in its value")
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        headers[name] = SecretStr(value)
    return headers


def read_headers_file(path: Path) -> dict[str, SecretStr]:
    """The headers in `path` (same format as LETTA_CUSTOM_HEADERS)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise HeaderError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise HeaderError(f"{path} is not UTF-8 text") from None
    return parse_headers(text, str(path))


def merge(*sources: Mapping[str, SecretStr]) -> dict[str, SecretStr]:
    """Later sources win, names compared without case."""
    merged: dict[str, SecretStr] = {}
    for source in sources:
        for name, value in source.items():
            for existing in [k for k in merged if k.lower() == name.lower()]:
                del merged[existing]
            merged[name] = value
    return merged


def reveal(headers: Mapping[str, SecretStr]) -> dict[str, str]:
    """Plain values, for the HTTP client's headers only."""
    return {name: value.get_secret_value() for name, value in headers.items()}
