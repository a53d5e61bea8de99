"""Start Postgres + pgvector, Redis, the fake LLM and Letta 0.16.8 on loopback; stop them.

Everything lives in one temporary folder and listens on 127.0.0.1 ephemeral ports.
Only the processes started here are stopped, by their PIDs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pg8000.native  # type: ignore[import-untyped]
import psutil

from tests.realserver.fake_llm import MODEL, FakeLLM
from tests.realserver.install import LettaInstall, ensure_installed

NOBODY = 65534  # Postgres refuses to run as root
REDIS_SERVER = "redis-server"
START_TIMEOUT_S = 240.0  # Letta's first start on a busy 2-core machine
PORT_ATTEMPTS = 3  # a lost race for a free port is retried on another


class StackError(RuntimeError):
    """A piece of the real-server stack could not be started."""


class PortTaken(StackError):
    """The server exited while starting: most often another process took its port."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: Process, port: int
) -> None:
    """Wait until `check` passes against `proc` itself listening on `port`.

    A free port is only free when asked: another stack on the machine (a second pytest)
    may bind it first. Its server would answer `check`, so the answer counts only once
    `proc` (or a child) holds the port; `proc` exiting (its bind failed) raises.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise PortTaken(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        with contextlib.suppress(Exception):
            if check() and _listens(proc, port):
                return
        time.sleep(0.25)
    raise StackError(f"timed out after {timeout:.0f} s waiting for {what}:\n{proc.tail()}")


def _listens(proc: Process, port: int) -> bool:
    parent = psutil.Process(proc.popen.pid)
    for each in (parent, *parent.children(recursive=True)):
        for conn in each.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                return True
    return False


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


@dataclass
class Stack:
    """The running pieces and how to reach them."""

    workdir: Path
    install: LettaInstall
    llm: FakeLLM
    pg_port: int = 0
    redis_port: int = 0
    letta_port: int = 0
    processes: list[Process] = field(default_factory=list)
    started_in_s: float = 0.0

    @property
    def letta_url(self) -> str:
        return f"http://127.0.0.1:{self.letta_port}"

    @property
    def model_handle(self) -> str:
        return f"openai-proxy/{MODEL}"

    @property
    def letta(self) -> Process:
        return next(p for p in self.processes if p.name == "letta")

    def db(self) -> pg8000.native.Connection:
        """A new connection to Letta's database (the ground truth)."""
        return pg8000.native.Connection(
            "letta", host="127.0.0.1", port=self.pg_port, database="letta"
        )

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.processes}

    def spawn(self, name: str, cmd: list[str], **kwargs: Any) -> Process:
        log = self.workdir / f"{name}.log"
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - the child owns it
        try:
            popen = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )
        finally:
            out.close()
        proc = Process(name, popen, log)
        self.processes.append(proc)
        return proc

    def on_free_port(
        self, start: Callable[[int], Process], wait: Callable[[int, Process], None]
    ) -> int:
        """Start a server on a free port; on a lost race for the port, again on another."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            proc = start(port)
            try:
                wait(port, proc)
                return port
            except PortTaken:
                if attempt == PORT_ATTEMPTS:
                    raise
                self.processes.remove(proc)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop what was started, newest first; remove the folder."""
        for proc in reversed(self.processes):
            # Postgres: SIGINT is its fast shutdown.
            proc.stop(signal.SIGINT if proc.name == "postgres" else signal.SIGTERM)
        self.processes.clear()
        self.llm.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_stack(install: LettaInstall | None = None) -> Stack:
    """Install (cached) and start everything; raise StackError with logs on failure."""
    install = install or ensure_installed()
    if shutil.which(REDIS_SERVER) is None:
        raise StackError("redis-server is not installed (Debian package redis-server; .ci/run)")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="letta-real-"))
    workdir.chmod(0o755)
    stack = Stack(workdir=workdir, install=install, llm=FakeLLM().start())
    try:
        _start_postgres(stack)
        _start_redis(stack)
        _migrate(stack)
        _start_letta(stack)
    except BaseException:
        stack.stop()
        raise
    stack.started_in_s = time.monotonic() - started
    return stack


def _as_nobody() -> dict[str, Any]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.geteuid() == 0 else {}


def _start_postgres(stack: Stack) -> None:
    pginstall = stack.install.pginstall
    if os.geteuid() == 0:
        # The cache sits under root's home, which user nobody cannot enter. The binaries
        # find their libraries at $ORIGIN/../../../pgserver.libs: keep that layout.
        copy = stack.workdir / "pg" / "pgserver" / "pginstall"
        shutil.copytree(pginstall, copy, symlinks=True)
        libs = pginstall.parent.parent / "pgserver.libs"
        shutil.copytree(libs, stack.workdir / "pg" / "pgserver.libs", symlinks=True)
        pginstall = copy
    data = stack.workdir / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(data, NOBODY, NOBODY)
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": str(stack.workdir)}
    initdb = subprocess.run(
        [str(pginstall / "bin" / "initdb"), "-D", str(data), "-U", "letta", "--auth=trust"]
        + ["--encoding=UTF8", "--locale=C"],
        capture_output=True,
        text=True,
        env=env,
        **_as_nobody(),
    )
    if initdb.returncode != 0:
        raise StackError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "64MB",
    }
    flags = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]

    def start(port: int) -> Process:
        return stack.spawn(
            "postgres",
            [str(pginstall / "bin" / "postgres"), "-D", str(data), *flags, "-p", str(port)],
            env=env,
            **_as_nobody(),
        )

    def wait(port: int, proc: Process) -> None:
        def ready() -> bool:
            pg8000.native.Connection(
                "letta", host="127.0.0.1", port=port, database="postgres"
            ).close()
            return True

        wait_until(ready, 60, "Postgres", proc, port)

    stack.pg_port = stack.on_free_port(start, wait)
    admin = pg8000.native.Connection(
        "letta", host="127.0.0.1", port=stack.pg_port, database="postgres"
    )
    admin.run("CREATE DATABASE letta")
    admin.close()
    conn = stack.db()
    conn.run("CREATE EXTENSION IF NOT EXISTS vector")
    conn.close()


def _start_redis(stack: Stack) -> None:
    folder = stack.workdir / "redis"
    folder.mkdir()

    def start(port: int) -> Process:
        return stack.spawn(
            "redis",
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(folder), "--daemonize", "no"],
        )

    def wait(port: int, proc: Process) -> None:
        def ready() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        wait_until(ready, 30, "Redis", proc, port)

    stack.redis_port = stack.on_free_port(start, wait)


def letta_env(stack: Stack) -> dict[str, str]:
    """The server's environment: our Postgres, Redis and LLM, and no way out."""
    home = stack.workdir / "home"
    home.mkdir(exist_ok=True)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: any escape fails fast
    return {
        "PATH": f"{stack.install.bin}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LETTA_PG_URI": f"postgresql://letta@127.0.0.1:{stack.pg_port}/letta",
        "LETTA_REDIS_HOST": "127.0.0.1",
        "LETTA_REDIS_PORT": str(stack.redis_port),
        "OPENAI_API_KEY": "sk-fake",
        "OPENAI_BASE_URL": f"{stack.llm.url}/v1",
        "HTTP_PROXY": closed,
        "HTTPS_PROXY": closed,
        "http_proxy": closed,
        "https_proxy": closed,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }


def _migrate(stack: Stack) -> None:
    migrations = stack.install.migrations
    done = subprocess.run(
        [str(stack.install.bin / "alembic"), "upgrade", "head"],
        cwd=migrations,
        capture_output=True,
        text=True,
        env=letta_env(stack),
    )
    if done.returncode != 0:
        raise StackError(
            f"alembic upgrade head failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )


def _start_letta(stack: Stack) -> None:
    stack.letta_port, _ = start_letta_process(stack, "letta")


def start_letta_process(
    stack: Stack, name: str, extra_env: dict[str, str] | None = None
) -> tuple[int, Process]:
    """One more Letta server process on the stack's database, Redis and LLM (e.g. in
    password mode); it is stopped with the stack, or earlier by ``Process.stop``."""
    started: list[Process] = []

    def start(port: int) -> Process:
        started.append(
            stack.spawn(
                name,
                [str(stack.install.bin / "letta"), "server", "--host", "127.0.0.1"]
                + ["--port", str(port)],
                cwd=stack.workdir,
                env={**letta_env(stack), **(extra_env or {})},
            )
        )
        return started[-1]

    def wait(port: int, proc: Process) -> None:
        def healthy() -> bool:
            return httpx.get(f"http://127.0.0.1:{port}/v1/health/", timeout=5).status_code == 200

        wait_until(healthy, START_TIMEOUT_S, f"{name} /v1/health/", proc, port)

    port = stack.on_free_port(start, wait)
    return port, started[-1]


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = start_stack()
    try:
        yield stack
    finally:
        stack.stop()
