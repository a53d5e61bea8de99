"""The names our spans speak: pinned semantic conventions, our `letta.*` attributes, and
the attributes of Letta's own spans that hold message content.

Semantic conventions are pinned to `SEMCONV_VERSION`, the version the installed
`opentelemetry-semantic-conventions` package was generated from; every `gen_ai.*` name
comes from that package's constants (checked by tests/test_semconv.py). In that release
the GenAI names are flagged as moved to the separate semantic-conventions-genai
repository, unchanged; the scope's schema_url states which version we speak.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GenAiProviderNameValues,
)
from opentelemetry.semconv.schemas import Schemas

from exporter import __version__

SEMCONV_VERSION: Final = "1.44.0"
"""Semantic-conventions version of every attribute we emit: the one
opentelemetry-semantic-conventions 0.66b2 was generated from (its newest schema URL)."""
SCHEMA_URL: Final = Schemas.V1_44_0.value
SCOPE: Final = InstrumentationScope("letta-exporter", __version__, SCHEMA_URL)
"""Scope of built spans. Passed-through spans keep the scope their row names."""

# Our own attributes. `letta.*` is the provider-specific namespace the GenAI conventions
# leave room for; everything standard comes from the semconv package instead.
LETTA_RUN_ID: Final = "letta.run.id"
LETTA_RUN_STATUS: Final = "letta.run.status"
LETTA_RUN_STOP_REASON: Final = "letta.run.stop_reason"
LETTA_RUN_BACKGROUND: Final = "letta.run.background"
LETTA_RUN_TYPE: Final = "letta.run.type"
LETTA_RUN_STEP_COUNT: Final = "letta.run.step_count"
LETTA_STEP_ID: Final = "letta.step.id"
LETTA_STEP_INDEX: Final = "letta.step.index"
LETTA_STEP_STATUS: Final = "letta.step.status"
LETTA_STEP_STOP_REASON: Final = "letta.step.stop_reason"
LETTA_STEP_MODEL_HANDLE: Final = "letta.step.model_handle"
LETTA_TIMING: Final = "letta.timing"
"""`measured` when the span's start and end come from the API, `estimated` when they
were laid out by us (the runs API has no per-step timestamps)."""
LETTA_TOOL_STATUS: Final = "letta.tool.status"
"""Added to passed-through `*._execute_tool` spans from their `finish_*_execution` event:
Letta marks those spans OK even when the tool failed (letta-runs-api.md §7.4)."""

TIMING_MEASURED: Final = "measured"
TIMING_ESTIMATED: Final = "estimated"

LETTA_PROVIDER: Final = "letta"
"""`gen_ai.provider.name` of the `invoke_agent` span: the agent runtime is Letta (a custom
value, which the conventions allow); each `chat` span names the model provider."""

WELL_KNOWN_PROVIDERS: Final[Mapping[str, str]] = {
    "openai": GenAiProviderNameValues.OPENAI.value,
    "anthropic": GenAiProviderNameValues.ANTHROPIC.value,
    "google_ai": GenAiProviderNameValues.GCP_GEMINI.value,
    "google_vertex": GenAiProviderNameValues.GCP_VERTEX_AI.value,
    "azure": GenAiProviderNameValues.AZURE_AI_OPENAI.value,
    "bedrock": GenAiProviderNameValues.AWS_BEDROCK.value,
    "groq": GenAiProviderNameValues.GROQ.value,
    "deepseek": GenAiProviderNameValues.DEEPSEEK.value,
    "xai": GenAiProviderNameValues.X_AI.value,
    "mistral": GenAiProviderNameValues.MISTRAL_AI.value,
    "cohere": GenAiProviderNameValues.COHERE.value,
}
"""Letta's provider names (step.provider_name) mapped to the conventions' well-known
values, which MUST be used when one applies; anything else is kept as Letta spells it."""

CONTENT_ATTRIBUTE_PREFIXES: Final = ("http.request.body.", "parameter.")
"""Dropped from passed-through spans: Letta copies the request body (message text, PII)
into `http.request.body.*` and a repr of every traced method argument (tool arguments,
agent state) into `parameter.*` (letta-runs-api.md §7.4)."""
CONTENT_ATTRIBUTE_KEYS: Final = frozenset({"request_data", "response_data"})
"""Dropped too: the full provider request and response JSON the LLM adapters attach."""
