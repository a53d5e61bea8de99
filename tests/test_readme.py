"""The README tells the truth: every flag and every metric is documented."""

from __future__ import annotations

from pathlib import Path

from exporter import catalogue as m
from exporter.config import FLAGS

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_every_flag_and_its_variable_is_in_the_readme() -> None:
    for flag in FLAGS:
        assert f"`{flag.flag}` | `{flag.env}`" in README, flag.flag


def test_every_metric_is_in_the_readme() -> None:
    for spec in m.ALL:
        assert f"`{spec.exposed_name}`" in README, spec.exposed_name


def test_the_readme_opens_with_the_two_commands() -> None:
    blocks = README.split("```")
    assert "letta-exporter" in blocks[1] and "pip install" in blocks[1]
    assert "pytest" in blocks[3]
