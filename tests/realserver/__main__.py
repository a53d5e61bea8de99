"""Start the real-server stack by hand: ``python -m tests.realserver`` (Ctrl-C stops it)."""

from __future__ import annotations

import signal
import sys
import time

from tests.realserver.install import ensure_installed
from tests.realserver.stack import start_stack


def main() -> int:
    started = time.monotonic()
    install = ensure_installed()
    print(f"install ready in {time.monotonic() - started:.1f} s: {install.root}", flush=True)
    stack = start_stack(install)
    print(
        f"Letta 0.16.8  {stack.letta_url}  (started in {stack.started_in_s:.1f} s)\n"
        f"Postgres      postgresql://letta@127.0.0.1:{stack.pg_port}/letta\n"
        f"Redis         127.0.0.1:{stack.redis_port}\n"
        f"fake LLM      {stack.llm.url}/v1  (model {stack.model_handle})\n"
        f"folder        {stack.workdir} (logs: *.log)\n"
        f"PIDs          {stack.pids()}\n"
        "Steer a run with a directive in the user message, e.g. 'hi [[tools=2]]' "
        "(see tests/realserver/fake_llm.py). Ctrl-C stops everything.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A shell's background job inherits SIGINT ignored: take it back so Ctrl-C/kill -INT stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while all(p.popen.poll() is None for p in stack.processes):
            time.sleep(1)
        print("a process exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
