"""Model prices, for `letta_run_cost_usd_total` (read by `exporter.cli.prices`).

TOML:

    [models."gpt-4o-mini"]
    input = 0.15          # USD per million uncached input tokens
    output = 0.60         # USD per million output tokens (reasoning tokens included)
    cached_input = 0.075  # optional; defaults to input
    cache_write = 0.1875  # optional; defaults to input

or the same as YAML (`models: {gpt-4o-mini: {input: 0.15, output: 0.6}}`). Keys are the
`model` label values (the step's `model` field). Letta reports prompt tokens including
cached ones (OpenAI convention), so cost = (input - cached_input - cache_write) × input
+ cached_input × cached_input price + cache_write × cache_write price + output × output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class ModelPrice(BaseModel):
    """USD per million tokens of each kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)

    def cost(self, tokens: Mapping[str, int]) -> float:
        """USD for one run's tokens of this model (keys: input, output, cached_input, ...)."""
        cached = tokens.get("cached_input", 0)
        written = tokens.get("cache_write", 0)
        uncached = max(0, tokens.get("input", 0) - cached - written)
        return (
            uncached * self.input
            + cached * (self.cached_input if self.cached_input is not None else self.input)
            + written * (self.cache_write if self.cache_write is not None else self.input)
            + tokens.get("output", 0) * self.output
        ) / 1_000_000


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model label value."""

    models: Mapping[str, ModelPrice]

    def cost(self, model: str, tokens: Mapping[str, int]) -> float | None:
        """USD for `tokens` of `model`, or None when the model has no price."""
        price = self.models.get(model)
        return price.cost(tokens) if price is not None else None
