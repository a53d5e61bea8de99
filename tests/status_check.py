"""The status page as a browser shows it, checked against /metrics; and its screenshot.

`python -m tests.status_check docs/status-page.png [minutes]` runs the demo that long
(7 by default: the simulated provider incident then shows) and writes the README's
picture with the same code the browser test runs.
"""

from __future__ import annotations

import math
import re
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

from tests import browser
from tests.demo_process import Demo

_SELECTOR = re.compile(r"^(\w+)(?:\{(.*)\})?$")
_MATCHER = re.compile(r'(\w+)="([^"]*)"')


class _Numbers(HTMLParser):
    """(data-metric, data-value) of every element that has them."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: list[tuple[str, float]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        metric, value = found.get("data-metric"), found.get("data-value")
        if metric is not None and value is not None:
            self.numbers.append((metric, float(value)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def page_numbers(html: str) -> tuple[list[tuple[str, float]], str]:
    """The page's metric-backed numbers and its visible text."""
    parser = _Numbers()
    parser.feed(html)
    return parser.numbers, " ".join(parser.text)


def metric_sum(demo: Demo, samples: dict, selector: str) -> float:  # type: ignore[type-arg]
    """The sum of /metrics samples that `selector` (`name{label="value",...}`) picks."""
    match = _SELECTOR.match(selector)
    assert match, selector
    name, matchers = match.group(1), dict(_MATCHER.findall(match.group(2) or ""))
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and matchers.items() <= dict(labels).items()
    )


def consistent_page(demo: Demo, folder: Path, attempts: int = 50) -> tuple[str, dict]:  # type: ignore[type-arg]
    """The DOM Chromium makes of the page, and the /metrics samples of the same snapshot.

    Chromium takes about as long to start as a demo poll cycle, so the page is fetched
    with /metrics around it (until no cycle ran in between), saved, and Chromium loads
    that copy: the numbers are rendered by the server, the browser adds none.
    """
    polls = ("letta_exporter_polls_total", ())
    for _ in range(attempts):
        before = demo.samples()
        html = demo.get("/").text
        after = demo.samples()
        if before.get(polls) == after.get(polls):
            saved = folder / "status.html"
            saved.write_text(html)
            return browser.dom(saved.as_uri()), after
    raise AssertionError("never read the page and /metrics between the same two cycles")


def check_against_metrics(demo: Demo, folder: Path) -> int:
    """Assert each number on the page equals /metrics; how many were compared."""
    html, samples = consistent_page(demo, folder)
    numbers, text = page_numbers(html)
    assert_renders(html, text)
    for selector, shown in numbers:
        expected = metric_sum(demo, samples, selector)
        assert math.isclose(shown, expected, abs_tol=1e-3), (selector, shown, expected)
    return len(numbers)


def assert_renders(html: str, text: str) -> None:
    """The page's sections and charts are in the DOM."""
    for heading in ("Runs by outcome", "Failures by error type", "Top agents", "Open runs"):
        assert heading in text, heading
    assert html.count("<svg") >= 2


def capture(path: Path, minutes: float) -> None:
    """Run the demo for `minutes`, check the page, and write its screenshot to `path`."""
    demo = Demo().start()
    try:
        demo.wait_for(lambda: demo.value("letta_runs_finished_total") > 0, 60, "a counted run")
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline:
            time.sleep(5)
        with tempfile.TemporaryDirectory() as folder:
            check_against_metrics(demo, Path(folder))
        browser.screenshot(demo.url + "/", path)
    finally:
        demo.stop()


if __name__ == "__main__":
    capture(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 7)
