"""Debian's headless Chromium, as a person's browser: the DOM after load, a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

WINDOW = "1280,1000"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise AssertionError("chromium not found: install Debian's `chromium` (.ci/run does)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [
                _chromium(),
                "--headless",
                # CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--window-size={WINDOW}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )


def dom(url: str) -> str:
    """The page's DOM once loaded, as Chromium serialises it."""
    return _run("--dump-dom", url).stdout


def screenshot(url: str, path: Path) -> Path:
    """A PNG of the page as a window of WINDOW pixels shows it."""
    _run(f"--screenshot={path}", url)
    if not path.is_file():
        raise AssertionError(f"chromium wrote no screenshot to {path}")
    return path
