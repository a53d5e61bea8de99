"""The pytest session fixture that brings the real server up once."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from tests.realserver.stack import Stack, start_stack


@pytest.fixture(scope="session")
def letta_stack() -> Iterator[Stack]:
    """Letta 0.16.8 with Postgres, Redis and the fake LLM. Fails (never skips) when any
    piece cannot be installed or started; afterwards, nothing it started is left."""
    stack = start_stack()
    pids = stack.pids()
    try:
        yield stack
    finally:
        stack.stop()
    left = {name: pid for name, pid in pids.items() if psutil.pid_exists(pid)}
    assert not left, f"still running after stop: {left}"
