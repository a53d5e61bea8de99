"""docs/metrics.md is generated from the catalogue and committed: it must be up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.metrics.reference import render, series
from exporter.series import catalogue
from exporter.series.catalogue import Kind, MetricSpec

ROOT = Path(__file__).parents[1]
METRICS_MD = ROOT / "docs" / "metrics.md"
REGENERATE = "python -m exporter.metrics.reference > docs/metrics.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert METRICS_MD.read_text() == render(), f"docs/metrics.md is stale: run `{REGENERATE}`"


def test_the_module_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter.metrics.reference"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stdout == render()


def test_every_metric_its_type_labels_and_help_are_in_the_reference() -> None:
    text = render()
    for spec in catalogue.ALL:
        row = next(
            line for line in text.splitlines() if line.startswith(f"| `{spec.exposed_name}`")
        )
        assert f"| {spec.kind.value} |" in row
        for label in spec.labels:
            assert f"`{label}`" in row
        # Help words survive the inline-code markup.
        assert spec.help.split()[0].strip("`") in row
    labels = {label for spec in catalogue.ALL for label in spec.labels}
    assert all(f"| `{label}` |" in text for label in labels), "a label is not explained"


def test_histograms_list_their_buckets_and_series() -> None:
    text = render()
    for spec in catalogue.ALL:
        if spec.kind is Kind.HISTOGRAM:
            (row,) = [
                line
                for line in text.splitlines()
                if line.startswith(f"| `{spec.name}` |") and f"`{spec.name}_bucket`" in line
            ]
            assert all(f"`{name}`" in row for name in series(spec))
            assert row.rstrip(" |").endswith("+Inf")


def test_a_label_without_a_description_is_an_error() -> None:
    spec = MetricSpec("letta_example", Kind.GAUGE, "Example.", ("brand_new_label",))
    with pytest.raises(KeyError, match="brand_new_label"):
        render((spec,))
