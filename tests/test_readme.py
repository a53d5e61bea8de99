"""The README tells the truth: every flag and every metric is documented."""

from __future__ import annotations

from pathlib import Path

from exporter.cli.config import FLAGS
from exporter.metrics import catalogue as m
from exporter.traces.semconv import SEMCONV_VERSION

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def test_every_flag_and_its_variable_is_in_the_readme() -> None:
    for flag in FLAGS:
        assert f"`{flag.flag}` | `{flag.env}`" in README, flag.flag


def test_the_readme_points_at_the_generated_metric_reference() -> None:
    # docs/metrics.md lists every catalogue metric (tests/test_reference.py keeps it so).
    assert "(docs/metrics.md)" in README
    for spec in (m.RUNS_FINISHED, m.SPANS_EXPORTED, m.SPANS_PENDING):
        assert f"{spec.exposed_name}" in README + (ROOT / "docs" / "metrics.md").read_text()


def test_the_readme_names_the_pinned_semantic_conventions_version() -> None:
    assert f"semantic conventions **{SEMCONV_VERSION}**" in README


def test_the_readme_opens_with_the_two_commands() -> None:
    blocks = README.split("```")
    assert "letta-exporter" in blocks[1] and "pip install" in blocks[1]
    assert "pytest" in blocks[3]
