"""Shared fixtures: real Letta 0.16.8 responses and small builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fake_checks import (  # noqa: F401 - fixtures of the fake's own tests
    fake,
    http,
    no_leftover_fake_threads,
    world,
    world_http,
)
from tests.podman import Podman
from tests.realserver.plugin import letta_stack  # noqa: F401 - the session fixture

FIXTURES = Path(__file__).parent / "fixtures" / "letta-0.16.8"


def load_fixture(relative: str) -> Any:
    """A captured response body, parsed."""
    return json.loads((FIXTURES / relative).read_text())


@pytest.fixture
def all_runs() -> list[dict[str, Any]]:
    """The 29 runs of the captured server, newest first, as the list endpoint shows them."""
    runs: list[dict[str, Any]] = load_fixture("list/runs_order_desc.json")
    return runs


@pytest.fixture(scope="session")
def podman() -> Podman:
    """The image tests' podman (tests/podman.py); without one they fail, never skip."""
    try:
        return Podman.here()
    except RuntimeError as error:
        pytest.fail(str(error))
