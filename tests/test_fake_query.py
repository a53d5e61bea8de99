"""Query validation (tests/fake_letta/query.py) answers what pydantic would."""

from __future__ import annotations

from typing import Any

import httpx
import pydantic
import pytest

pytestmark = pytest.mark.usefixtures("no_leftover_fake_threads")


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1.5"},
        {"limit": "1.0"},
        {"limit": " 7 "},
        {"limit": "1_000"},
        {"limit": "-3"},
        {"limit": "1001"},
        {"limit": ""},
        {"active": "yes"},
        {"active": "TRUE"},
        {"active": "2"},
        {"background": "off"},
        {"ascending": "maybe"},
        {"order": "ASC"},
        {"stop_reason": "end_turn"},
        {"stop_reason": "paused"},
        {"order_by": "created_at"},
    ],
)
def test_query_validation_matches_pydantic(
    world_http: httpx.Client, params: dict[str, str]
) -> None:
    from typing import Annotated, Literal

    stop_reasons = Literal[
        "end_turn", "error", "llm_api_error", "invalid_llm_response", "invalid_tool_call",
        "max_steps", "max_tokens_exceeded", "no_tool_call", "tool_rule", "cancelled",
        "insufficient_credits", "requires_approval", "context_window_overflow_in_system_prompt",
    ]  # fmt: skip
    types: dict[str, Any] = {
        "limit": Annotated[int, pydantic.Field(ge=1, le=1000)],
        "active": bool,
        "background": bool,
        "ascending": bool,
        "order": Literal["asc", "desc"],
        "order_by": Literal["created_at"],
        "stop_reason": stop_reasons,
    }
    ((name, value),) = params.items()
    try:
        pydantic.TypeAdapter(types[name]).validate_python(value)
        expected: list[dict[str, Any]] = []
    except pydantic.ValidationError as exc:
        expected = exc.errors(include_url=False)
        for error in expected:
            error["loc"] = ("query", name)
            if error["type"] == "literal_error" and name == "stop_reason":
                error["type"] = "enum"  # StopReasonType is an Enum, not a Literal
    response = world_http.get("/v1/runs/", params=params)
    if expected:
        assert response.status_code == 422
        assert response.json() == {"trace_id": "", "detail": str(expected)}
    else:
        assert response.status_code == 200
