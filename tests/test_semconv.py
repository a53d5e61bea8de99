"""Semantic-convention compliance of the spans we build.

Every `gen_ai.*` attribute name exporter/traces/ emits must be a constant of the
installed opentelemetry-semantic-conventions package (never a hand-typed string), must
not be one the conventions replaced, and the pinned version must be the package's. The
same idea as OpenLLMetry's shared compliance tests: renames upstream fail here first.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GenAiOperationNameValues,
    GenAiProviderNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.schemas import Schemas

from exporter.core.runs.run_info import RunInfo, StepInfo
from exporter.traces import build, passthrough, semconv
from exporter.traces.build import build_run_spans
from exporter.traces.semconv import SCHEMA_URL, SCOPE, SEMCONV_VERSION

GEN_AI_CONSTANTS = {
    value
    for name, value in vars(gen_ai_attributes).items()
    if name.startswith("GEN_AI_") and isinstance(value, str)
}


def _replaced_names() -> set[str]:
    """Names the package documents as "Deprecated: Replaced by ..." (renamed upstream)."""
    source = inspect.getsource(gen_ai_attributes)
    pattern = re.compile(r'^GEN_AI_\w+: Final = "([^"]+)"\n"""\nDeprecated: Replaced by', re.M)
    return set(pattern.findall(source))


def _step(n: int, **fields: Any) -> StepInfo:
    data: dict[str, Any] = {
        "id": f"step-{n}",
        "model": "claude-sonnet-4",
        "model_handle": "anthropic/claude-sonnet-4",
        "provider_name": "anthropic",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached_input_tokens": 4,
        "cache_write_tokens": 2,
        "reasoning_tokens": 1,
        "status": "success",
        "stop_reason": "end_turn",
        "trace_id": None,
        "error_type": None,
    }
    data.update(fields)
    return StepInfo(**data)


def _rich_runs() -> list[RunInfo]:
    """Runs that between them set every attribute the builder knows."""
    base = RunInfo(
        run_id="run-1",
        agent_id="agent-1",
        agent_name="helper",
        status="failed",
        stop_reason="llm_api_error",
        background=True,
        conversation_id="conv-1",
        run_type="send_message",
        created_ns=1_000_000_000,
        end_ns=2_000_000_000,
        error_type="llm_timeout",
        steps=(_step(1), _step(2, status="failed", error_type="LLMTimeoutError")),
        tool_names=("send_message", "web_search"),
    )
    return [base]


def _emitted() -> dict[str, set[Any]]:
    emitted: dict[str, set[Any]] = {}
    for run in _rich_runs():
        for span in build_run_spans(run, Resource({})):
            for key, value in (span.attributes or {}).items():
                emitted.setdefault(key, set()).add(value)
    return emitted


def test_every_gen_ai_name_is_a_semconv_constant() -> None:
    names = {key for key in _emitted() if key.startswith("gen_ai.")}
    assert names, "the rich runs should produce gen_ai attributes"
    assert names <= GEN_AI_CONSTANTS, names - GEN_AI_CONSTANTS
    # The exact set, so a new or lost attribute is a reviewed change.
    assert names == {
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.agent.id",
        "gen_ai.agent.name",
        "gen_ai.conversation.id",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.tool.name",
    }


def test_no_replaced_names_are_used() -> None:
    replaced = _replaced_names()
    # The parser must find the known renames, or this test would pass vacuously.
    assert {
        "gen_ai.system",
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
    } <= replaced
    assert not replaced & set(_emitted())


def test_the_modules_have_no_hand_typed_gen_ai_names() -> None:
    for module in (semconv, build, passthrough):
        source = inspect.getsource(module)
        assert not re.findall(r"""["']gen_ai\.""", source), module.__name__
        assert not re.findall(r"""["']error\.type["']""", source), module.__name__


def test_standard_values() -> None:
    emitted = _emitted()
    assert ERROR_TYPE in emitted
    assert emitted["gen_ai.operation.name"] <= {v.value for v in GenAiOperationNameValues}
    providers = emitted["gen_ai.provider.name"]
    assert "anthropic" in providers
    # Only the well-known values, plus "letta" for the agent runtime (a documented custom).
    assert providers - {v.value for v in GenAiProviderNameValues} == {"letta"}
    # Our own names stay in our own namespace.
    own = {key for key in emitted if not key.startswith("gen_ai.") and key != ERROR_TYPE}
    assert all(key.startswith("letta.") for key in own), own


def test_the_pinned_version_is_the_installed_packages() -> None:
    newest = list(Schemas)[-1]
    assert SCHEMA_URL.endswith(f"/schemas/{SEMCONV_VERSION}")
    assert newest.value == SCHEMA_URL, (
        "opentelemetry-semantic-conventions was upgraded: review the gen_ai names, then "
        "move SEMCONV_VERSION / SCHEMA_URL in exporter/traces/semconv.py"
    )
    assert SCOPE.schema_url == SCHEMA_URL
