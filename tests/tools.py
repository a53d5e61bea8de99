"""External tools the tests run: a missing one fails the test that needs it, never skips it."""

import shutil

import pytest


def require_tool(name: str, debian_package: str) -> str:
    """The path of `name` on PATH; fails the calling test with how to install it when absent."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not installed: install Debian's '{debian_package}' package "
            "(bash .ci/run does)",
            pytrace=False,
        )
    return path
