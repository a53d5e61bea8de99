"""Run the real exporter as a subprocess and read its /metrics, for scenario tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

FAST_FLAGS: tuple[str, ...] = (
    "--poll.interval=0.2s",
    "--runs.grace-period=0.3s",
    "--runs.callback-wait=1s",
    "--letta.timeout=1s",
    "--letta.retries=4",
    "--log.level=debug",
    "--letta.rate-limit=0",
)
_LISTENING = re.compile(r"listening on https?://[^:]+:(\d+)")


def poll_until(predicate: Callable[[], bool], timeout: float, *, interval: float) -> bool:
    """True once `predicate` holds (HTTP errors count as not yet), False after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False


class Exporter:
    """One exporter process; `start()` waits until it serves /metrics."""

    def __init__(
        self,
        base_url: str,
        state_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.state_path = state_path
        self.args = [*FAST_FLAGS, *args]
        self.env = {**os.environ, **(env or {})}
        self.logs: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self.port: int | None = None

    def command(self) -> list[str]:
        """The command line the process runs."""
        return [
            sys.executable,
            "-m",
            "exporter",
            f"--letta.url={self.base_url}",
            f"--state.path={self.state_path}",
            "--web.listen-address=127.0.0.1:0",
            *self.args,
        ]

    def start(self, timeout: float = 30.0) -> Exporter:
        self._proc = subprocess.Popen(
            self.command(),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        ready = threading.Event()
        self._drainer = threading.Thread(target=self._drain, args=(ready,), daemon=True)
        self._drainer.start()
        if not ready.wait(timeout):
            self.kill()
            raise AssertionError("exporter did not start:\n" + "\n".join(self.logs[-30:]))
        return self

    def _drain(self, ready: threading.Event) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self.logs.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not ready.is_set():
                self.port = int(match.group(1))
                ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5.0, **kwargs)  # type: ignore[arg-type]

    def metrics_text(self) -> str:
        response = self.get("/metrics")
        response.raise_for_status()
        return response.text

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics keyed by (name, sorted labels)."""
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def totals(self, name: str, by: Sequence[str]) -> Counter[tuple[str, ...]]:
        """The samples of counter `name` summed by the given labels (zeros left out)."""
        totals: Counter[tuple[str, ...]] = Counter()
        for (sample, labels), value in self.samples().items():
            if sample == name:
                as_dict = dict(labels)
                totals[tuple(as_dict[k] for k in by)] += int(value)
        return +totals

    def finished(
        self, by: Sequence[str] = ("agent", "status", "stop_reason")
    ) -> Counter[tuple[str, ...]]:
        """letta_runs_finished_total summed by the given labels."""
        return self.totals("letta_runs_finished_total", by)

    def tokens(self) -> Counter[tuple[str, ...]]:
        """letta_run_tokens_total by (agent, model, type)."""
        return self.totals("letta_run_tokens_total", ("agent", "model", "type"))

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        total = 0.0
        for (sample, sample_labels), value in self.samples().items():
            if sample == name and labels.items() <= dict(sample_labels).items():
                total += value
        return total

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
    ) -> None:
        if not poll_until(predicate, timeout, interval=0.1):
            raise AssertionError(
                f"timed out waiting for {what}; last logs:\n" + "\n".join(self.logs[-40:])
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_for(lambda: self.get("/readyz").status_code == 200, timeout, "/readyz")

    def terminate(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
        assert self._proc is not None
        self._proc.send_signal(sig)
        code = self._proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        """SIGKILL (like `kill -9`) if still running, then release the pipe."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._close()

    def _close(self) -> None:
        assert self._proc is not None
        self._drainer.join(10)
        if self._proc.stderr is not None:
            self._proc.stderr.close()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()


# `letta-exporter check` without retries, as the check tests run it.
CHECK_ARGV: tuple[str, ...] = (sys.executable, "-m", "exporter", "check", "--letta.retries=0")


def check(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `letta-exporter check` with `args` to its end; its output captured."""
    return subprocess.run(
        [*CHECK_ARGV, *args], capture_output=True, text=True, timeout=60, check=False
    )


def wait_polls(exporter: Exporter, cycles: int, timeout: float = 30.0) -> None:
    """Wait until `cycles` more poll cycles have finished (`letta_exporter_polls_total`).

    The first of them may have begun before the call: `cycles=2` is the fewest that
    guarantees one whole cycle after it. Use this, never a fixed sleep, before asserting
    that something did not happen."""
    target = exporter.value("letta_exporter_polls_total") + cycles
    exporter.wait_for(
        lambda: exporter.value("letta_exporter_polls_total") >= target,
        timeout,
        f"{cycles} more poll cycles",
    )


@contextmanager
def running(exporter: Exporter) -> Iterator[Exporter]:
    """Start, yield, and always stop the process."""
    exporter.start()
    try:
        yield exporter
    finally:
        exporter.kill()


@contextmanager
def exporter_on(
    base_url: str, state_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Exporter]:
    """An exporter polling `base_url`, its state in `state_dir`, ready (/readyz 200) when
    yielded; always stopped."""
    with running(Exporter(base_url, state_dir / "s.sqlite", *args, env=env)) as exporter:
        exporter.wait_ready()
        yield exporter


def expected(truth: Counter[tuple[str, str, str | None]]) -> Counter[tuple[str, ...]]:
    """The fake's ground truth in the label form the exporter uses."""
    out: Counter[tuple[str, ...]] = Counter()
    for (agent, status, stop_reason), count in truth.items():
        out[(agent, status, stop_reason or "none")] += count
    return out
