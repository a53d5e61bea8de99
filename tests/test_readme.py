"""The README tells the truth: every flag and every metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from exporter.cli.config import FLAGS
from exporter.series import catalogue as m
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


LINES = README.splitlines()
PICTURE = re.compile(r"!\[[^\]]+\]\(([^)]+\.png)\)")


def test_the_first_forty_lines_hold_the_quick_start_and_the_picture() -> None:
    top = "\n".join(LINES[:40])
    assert "## Quick start" in top
    (picture,) = PICTURE.findall(top)
    data = (ROOT / picture).read_bytes()
    assert data.startswith(b"\x89PNG"), picture
    blocks = README.split("```")
    # The first command installs and runs the demo; the quick start also shows a real
    # Letta and Letta Cloud, all before line 40.
    assert "letta-exporter demo" in blocks[1]
    assert "LETTA_BASE_URL=http://localhost:8283 letta-exporter" in top
    assert "LETTA_BASE_URL=https://api.letta.com" in top


def test_ci_runs_the_readmes_test_command() -> None:
    command = README.split("```")[3].strip().removeprefix("sh\n")
    install, _, run = command.partition(" && ")
    ci = (ROOT / ".ci" / "run").read_text().replace(" -q ", " ")
    assert install in ci and run in ci, command


def test_the_contents_link_to_headings_that_exist() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in LINES
        if line.startswith("#")
    }
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert links
    for link in links:
        assert link in anchors, link


def test_the_internals_come_after_configuration() -> None:
    headings = [line for line in LINES if line.startswith("## ")]
    assert headings.index("## Configuration") < headings.index("## How it works")
    assert headings[:3] == ["## Quick start", "## Contents", "## The status page"]


def test_every_document_names_one_grafana_release() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    pinned = compose["services"]["grafana"]["image"].rpartition(":")[2]
    minor = ".".join(pinned.split(".")[:2])
    documents = [ROOT / "README.md", *ROOT.glob("*/README.md"), *ROOT.glob("docs/*.md")]
    for document in documents:
        text = document.read_text()
        for tag in re.findall(r"grafana/grafana:([\w.]+)", text):
            assert tag == pinned, (document, tag)
        for release in re.findall(r"Grafana (\d+\.\d+)", text):
            assert release == minor, (document, release)
        assert "10.0 or newer" not in text, document
