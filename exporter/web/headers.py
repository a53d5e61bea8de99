"""`http_server_config.headers`: the response headers a web config file may set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from exporter.web.errors import WebConfigError

# Headers the toolkit lets a file set (and the values it allows where it restricts them);
# anything else is refused there, so it is refused here too.
_ALLOWED_HEADERS: Final[Mapping[str, tuple[str, ...]]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}


def response_headers(path: Path, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The headers every response carries; raises WebConfigError on one the toolkit refuses."""
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
