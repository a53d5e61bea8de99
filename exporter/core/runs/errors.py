"""The error type of a failed run: a bounded identifier from Letta's error detail.

Letta records why a run failed in two places: `metadata.error` (an object with an
`error_type` such as `llm_error` on streaming paths; a string led by a code such as
`INTERNAL_SERVER_ERROR: OpenAI API error …` on sync and async paths) and the failed
step's `error_type` (an exception class such as `LLMServerError`). Only identifiers and
codes become values, never message text, which can quote the provider's reply
(letta-runs-api.md §2.1). Values are normalised to snake_case so that `LLMServerError`
and `llm_server_error` are one value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

_IDENTIFIER: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# The code that leads a string error: upper case, then a colon.
_LEADING_CODE: Final = re.compile(r"([A-Z][A-Z0-9_]{1,63}):")
# Word boundaries inside CamelCase: "LLMServerError" -> "LLM|Server|Error".
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def normalise_error_type(value: object) -> str | None:
    """An identifier as snake_case, or None when `value` is not an identifier."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        return None
    return _CAMEL_BOUNDARY.sub("_", value).lower()


def error_type_from_metadata(metadata: Any) -> str | None:
    """The error type in a run's `metadata.error`: the object's `error_type`, or the code
    leading a string error; None when there is neither."""
    if not isinstance(metadata, Mapping):
        return None
    error = metadata.get("error")
    if isinstance(error, Mapping):
        return normalise_error_type(error.get("error_type"))
    if isinstance(error, str):
        match = _LEADING_CODE.match(error)
        return normalise_error_type(match.group(1)) if match else None
    return None


def failure_error_type(step_error_type: str | None, metadata_error_type: str | None) -> str | None:
    """Most specific first: the failed step's error class names the same LLM failure alike
    on every API path, where `metadata.error` differs by path (`llm_error` on streams,
    `INTERNAL_SERVER_ERROR` on sync and async runs)."""
    return normalise_error_type(step_error_type) or metadata_error_type
