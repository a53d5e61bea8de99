"""The price file (`--cost.price-file`): TOML or YAML, see `exporter.core.counting.pricing`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from exporter.core.counting.pricing import ModelPrice, PriceTable


class PriceFileError(Exception):
    """The price file cannot be used; the message names the file and line."""


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
