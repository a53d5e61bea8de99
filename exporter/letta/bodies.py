"""Reading response bodies: models, JSON arrays, and one-line validation errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from exporter.letta.errors import LettaBadResponse

_M = TypeVar("_M", bound=BaseModel)


def parse_one(endpoint: str, model: type[_M], body: bytes) -> _M:
    """`body` as one `model`; raises LettaBadResponse naming the first bad field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise LettaBadResponse(f"{endpoint}: unexpected body: {first_error(exc)}") from None


def parse_list(endpoint: str, adapter: TypeAdapter[list[_M]], body: bytes, noun: str) -> list[_M]:
    """`body` as a list of models; raises LettaBadResponse naming the first bad field."""
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        raise LettaBadResponse(f"{endpoint}: not a list of {noun}: {first_error(exc)}") from None


def json_array(endpoint: str, body: bytes) -> list[Any]:
    """`body` as a JSON array of anything; raises LettaBadResponse when it is not one."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        raise LettaBadResponse(f"{endpoint}: the body is not JSON") from None
    if not isinstance(parsed, list):
        raise LettaBadResponse(f"{endpoint}: expected a JSON array, got {type(parsed).__name__}")
    return parsed


def first_error(exc: ValidationError) -> str:
    """The first validation error as `field.path: message`."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return str(exc)
    first = errors[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    return f"{location}: {first.get('msg', 'invalid')}"
