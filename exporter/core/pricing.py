"""Model prices from a user-supplied file, for `letta_run_cost_usd_total`.

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

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PriceFileError(Exception):
    """The price file cannot be used; the message names the file and line."""


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


def load_prices(path: Path) -> PriceTable:
    """Read a TOML (`.toml`) or YAML (anything else) price file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"cannot read price file {path}: {exc.strerror}") from None
    data = _parse(path, text)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise PriceFileError(f"{path}: expected a top-level 'models' table of model prices")
    unknown = set(data) - {"models"}
    if unknown:
        key = sorted(unknown)[0]
        raise PriceFileError(f"{path}, line {_line_of(text, key)}: unknown key {key!r}")
    models: dict[str, ModelPrice] = {}
    for name, value in data["models"].items():
        try:
            models[str(name)] = ModelPrice.model_validate(value)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in error.get("loc", ())) or "price"
            raise PriceFileError(
                f"{path}, line {_line_of(text, str(name))}: model {name!r}, {field}: "
                f"{error.get('msg', 'invalid')}"
            ) from None
    return PriceTable(models)


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PriceFileError(f"{path}: {exc}") from None  # the message names the line
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PriceFileError(f"{path}{where}: {problem}") from None


def _line_of(text: str, key: str) -> int:
    """The first line mentioning `key` (quoted or bare), for error messages."""
    pattern = re.compile(rf"""(^|[\s"'.\[{{]){re.escape(key)}($|[\s"'.\]:=])""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1
