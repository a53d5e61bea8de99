"""Podman for tests: images built and run in a storage of their own, no registry needed.

No image registry is reachable here, so the images a compose file names are built
locally: a Debian bookworm root filesystem with Python 3.11 (debootstrap, from Debian's
mirror) stands in for `python:3.11-slim-bookworm`, the base of the repository's
Dockerfile; Debian's `prometheus` binary on it stands in for `prom/prometheus`. Both live
only in the storage under `home`, so nothing here ever passes for the real image
elsewhere on the machine.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path

DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The host's CA bundle: PyPI may be reached through a proxy whose CA only the host trusts.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

_PROMETHEUS_CONTAINERFILE = """\
FROM {base}
COPY prometheus /bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


class Podman:
    """`podman` with its storage, run state and configuration under `home`."""

    def __init__(self, home: Path) -> None:
        found = shutil.which("podman")
        assert found, "podman not installed (Debian package 'podman'; .ci/run installs it)"
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        # Podman's default limits (nofile 1048576) exceed this machine's hard limits, and a
        # container may not raise them: start every container, the pod's too, at the
        # hard limits the tests run under.
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        config = home / "containers.conf"
        config.write_text(
            f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        )
        self.env = {**os.environ, "CONTAINERS_CONF": str(config)}
        # Podman refuses a run root longer than 50 characters: a short one under /tmp.
        self.runroot = Path(tempfile.mkdtemp(prefix="podman-run-", dir="/tmp"))
        self.command = [found, "--root", str(home / "root"), "--runroot", str(self.runroot)]

    def __call__(self, *args: str, timeout: float = 600) -> str:
        """Run `podman args`; its stdout, or AssertionError with its output."""
        result = subprocess.run(
            [*self.command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )
        assert result.returncode == 0, f"podman {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def import_rootfs(self, rootfs: Path, tag: str) -> None:
        """A directory tree as the image `tag` (a short name as Docker Hub's, like FROM)."""
        if "/" not in tag:
            tag = f"docker.io/library/{tag}"
        archive = self.home / "rootfs.tar"
        subprocess.run(
            ["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True, timeout=300
        )
        try:
            self("import", "--change", 'CMD ["python3"]', str(archive), tag)
        finally:
            archive.unlink()

    def build(
        self,
        context: Path,
        tag: str,
        containerfile: Path | None = None,
        build_args: dict[str, str] | None = None,
    ) -> None:
        """Build `tag` from `context` with local images only; RUN steps may reach PyPI."""
        file_args = ["-f", str(containerfile)] if containerfile else []
        arg_args = [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
        self(
            "build",
            "--pull=never",
            "--network=host",
            "-t",
            tag,
            *file_args,
            *arg_args,
            str(context),
        )

    def build_prometheus(self, base: str, tag: str) -> None:
        """An image laid out like prom/prometheus, of Debian's prometheus binary."""
        binary = shutil.which("prometheus")
        assert binary, "prometheus not installed (Debian package 'prometheus')"
        context = self.home / "prometheus-image"
        context.mkdir(exist_ok=True)
        shutil.copy(binary, context / "prometheus")
        (context / "Containerfile").write_text(_PROMETHEUS_CONTAINERFILE.format(base=base))
        self.build(context, tag)

    def reset(self) -> None:
        """Remove every container, pod, volume and image of this storage."""
        self("system", "reset", "--force", timeout=300)
        shutil.rmtree(self.runroot, ignore_errors=True)


def bookworm_python_rootfs(directory: Path) -> Path:
    """A Debian bookworm tree with Python 3.11, venv and pip, laid out like python:3.11-slim.

    Made once with debootstrap (about a minute) and kept in `directory`.
    """
    rootfs = directory / "rootfs"
    if (rootfs / "usr" / "local" / "bin" / "python").exists():
        return rootfs
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    assert Path(debootstrap).exists(), "debootstrap not installed (Debian package 'debootstrap')"
    shutil.rmtree(rootfs, ignore_errors=True)
    result = subprocess.run(
        [
            debootstrap,
            "--variant=minbase",
            "--include=python3,python3-venv,python3-pip,ca-certificates",
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # As in the official image: pip may install anywhere, `python` and `pip` on PATH.
    (rootfs / "usr" / "lib" / "python3.11" / "EXTERNALLY-MANAGED").unlink(missing_ok=True)
    shutil.copy(HOST_CA_BUNDLE, rootfs / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    local_bin = rootfs / "usr" / "local" / "bin"
    (local_bin / "python3").symlink_to("/usr/bin/python3")
    (local_bin / "pip").symlink_to("/usr/bin/pip3")
    (local_bin / "python").symlink_to("/usr/bin/python3")  # last: marks the tree complete
    return rootfs
