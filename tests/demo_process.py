"""`letta-exporter demo` as a subprocess (the exporter against the simulated Letta), for
the demo, status page and browser tests and the README screenshot script."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import Exporter

_STATE_IN = re.compile(r"state in (\S+?);")


class Demo(Exporter):
    """The demo on a free port (`--web.listen-address=127.0.0.1:0`) plus `args`."""

    def __init__(self, *args: str) -> None:
        super().__init__("", Path(), env=None)
        self.args = list(args)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "exporter",
            "demo",
            "--web.listen-address=127.0.0.1:0",
            *self.args,
        ]

    @property
    def state_folder(self) -> Path:
        """The temporary folder the demo said it keeps its state in."""
        for line in self.logs:
            if match := _STATE_IN.search(line):
                return Path(match.group(1))
        raise AssertionError("the demo did not say where its state is:\n" + "\n".join(self.logs))

    def stop(self) -> None:
        """Ctrl-C (so the demo removes its temporary state), else SIGKILL; idempotent."""
        if self.returncode is None and self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.terminate(sig=signal.SIGINT)
        self.kill()
