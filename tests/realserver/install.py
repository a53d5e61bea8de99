"""Install Letta 0.16.8 (pinned to its own uv.lock) and pgserver into a cached venv.

The venv lives under ``$LETTA_EXPORTER_CACHE`` (default ``~/.cache/letta-exporter``), keyed
by Letta version and Python version; a second call finds the ``complete`` marker and does
nothing. Everything comes from PyPI through pip.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

LETTA_VERSION = "0.16.8"
PGSERVER_VERSION = "0.1.4"
# Not in Letta's server extras, but needed here: the Postgres drivers Letta and alembic use,
# pgvector's SQLAlchemy types, and the Postgres + pgvector binaries.
EXTRA_PACKAGES = ("asyncpg", "pgvector", "pg8000", "psycopg2-binary")
# Changing the recipe (not just the version) must invalidate old caches.
RECIPE = (
    f"letta[server,redis]=={LETTA_VERSION} {' '.join(EXTRA_PACKAGES)} pgserver=={PGSERVER_VERSION}"
)


def cache_root() -> Path:
    """Where installs are kept between runs."""
    configured = os.environ.get("LETTA_EXPORTER_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "letta-exporter"


@dataclass(frozen=True)
class LettaInstall:
    """A finished install: the venv and the migrations copied out of the sdist."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "venv" / "bin" / "python"

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    @property
    def migrations(self) -> Path:
        """Folder holding ``alembic.ini`` and ``alembic/`` (they ship in the sdist only)."""
        return self.root / "migrations"

    @property
    def pginstall(self) -> Path:
        """pgserver's bundled Postgres (``bin/``, ``lib/`` with ``vector.so``, ``share/``)."""
        found = sorted((self.root / "venv").glob("lib/python*/site-packages/pgserver/pginstall"))
        if not found:
            raise RuntimeError(f"pgserver's Postgres is missing from {self.root}")
        return found[0]


def install_dir() -> Path:
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(RECIPE.encode()).hexdigest()[:8]
    return cache_root() / f"letta-{LETTA_VERSION}-{python}-{digest}"


def ensure_installed(log: bool = True) -> LettaInstall:
    """The cached install, building it first if needed (concurrent callers wait on a lock)."""
    root = install_dir()
    marker = root / "complete"
    if marker.exists():
        return LettaInstall(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            started = time.monotonic()
            _build(root, log)
            marker.write_text(f"{RECIPE}\ninstalled in {time.monotonic() - started:.0f} s\n")
    return LettaInstall(root)


def _run(cmd: list[str], log: bool) -> None:
    if log:
        print("realserver:", " ".join(cmd), file=sys.stderr, flush=True)
    completed = subprocess.run(cmd, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} … failed ({completed.returncode}):\n"
            + completed.stdout[-3000:]
            + completed.stderr[-3000:]
        )


def _base_python() -> str:
    """The interpreter behind the current venv (a venv made from a venv is fine too)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _build(root: Path, log: bool) -> None:
    if root.exists():
        shutil.rmtree(root)  # a half-finished earlier attempt
    work = Path(tempfile.mkdtemp(prefix="letta-sdist-"))
    try:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"letta=={LETTA_VERSION}",
                "-d",
                str(work),
            ],
            log,
        )
        (sdist,) = work.glob("letta-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        source = work / f"letta-{LETTA_VERSION}"
        root.mkdir(parents=True)
        migrations = root / "migrations"
        migrations.mkdir()
        shutil.copy(source / "alembic.ini", migrations / "alembic.ini")
        shutil.copytree(source / "alembic", migrations / "alembic")
        constraints = root / "constraints.txt"
        constraints.write_text(_constraints(source / "uv.lock"))
        _run([_base_python(), "-m", "venv", str(root / "venv")], log)
        pip = [str(root / "venv" / "bin" / "python"), "-m", "pip"]
        _run([*pip, "install", "--quiet", "--upgrade", "pip"], log)
        _run(
            [
                *pip,
                "install",
                "--quiet",
                "-c",
                str(constraints),
                f"letta[server,redis]=={LETTA_VERSION}",
                *EXTRA_PACKAGES,
                f"pgserver=={PGSERVER_VERSION}",
            ],
            log,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _constraints(uv_lock: Path) -> str:
    """``name==version`` for every registry package of Letta's lock file."""
    lock = tomllib.loads(uv_lock.read_text())
    pins = sorted(
        f"{package['name']}=={package['version']}"
        for package in lock["package"]
        if "registry" in package.get("source", {})
    )
    return "\n".join(pins) + "\n"


if __name__ == "__main__":
    started = time.monotonic()
    install = ensure_installed()
    print(f"{install.root} ready in {time.monotonic() - started:.1f} s")
