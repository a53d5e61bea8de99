"""Podman for the image tests (tests/image.py, test_image.py, test_compose.py): one
storage of its own, runc and cgroupfs, and local stand-ins for images that cannot be
pulled here.

The storage is kept (`~/.cache/letta-exporter/podman`, `LETTA_EXPORTER_IMAGE_STORE`), so
the next build is warm. The base is the digest the Dockerfile pins when that image is at
hand or can be pulled; else a Debian bookworm stand-in made with mmdebstrap (Debian's
python3 3.11), named after the pinned tag. Debian's `prometheus` binary on that base
stands in for `prom/prometheus`. The stand-ins are `localhost/` images: nothing here
passes for the real image elsewhere on the machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DOCKERFILE = Path(__file__).parents[1] / "Dockerfile"
APT_PACKAGES = "podman runc mmdebstrap"
# The host's CA bundle: PyPI may be reached through a proxy whose CA only the host trusts.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STORE = Path(
    os.environ.get("LETTA_EXPORTER_IMAGE_STORE", Path.home() / ".cache/letta-exporter/podman")
)
RUNTIME = Path("/run/letta-exporter-podman")

_PROMETHEUS_CONTAINERFILE = """\
FROM {base}
COPY prometheus /bin/prometheus
RUN mkdir -p /prometheus /etc/prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
"""


def require(tool: str) -> str:
    """The path of `tool`, or a one-sentence error naming the packages to install."""
    found = shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).exists()), None
    )
    if found is None:
        raise RuntimeError(f"{tool} not found: apt-get install {APT_PACKAGES} (.ci/run does)")
    return found


def rlimits() -> list[str]:
    """`--ulimit` flags that runc can set here. podman's defaults (nofile 1048576, nproc
    4194304) are above what a CI sandbox may grant, and runc then fails to start the
    container ("error setting rlimits"); seen refusing nproc 65536 under a hard limit of
    96365, so nproc stays at 4096, plenty for the exporter's few threads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [f"--ulimit=nofile={soft}:{hard}", "--ulimit=nproc=4096:4096"]


@dataclass(frozen=True)
class Podman:
    """podman on storage, per-boot state and locks of its own, with runc and cgroupfs
    (which work where crun and systemd do not).

    Other podman users on the machine share /run/libpod and the /libpod_lock shared
    memory by default: when one of them wiped /run/libpod/alive, this podman took it for a
    reboot, renumbered its locks and collided with theirs ("acquiring lock 1: file
    exists"). So the per-boot files (`runtime`) are its own, and its locks are files in
    there rather than shared memory."""

    root: Path  # images, containers, volumes: kept, so the next build is warm
    runtime: Path  # per-boot state: under /run, wiped on reboot like podman's own
    driver: str

    @classmethod
    def here(cls) -> Podman:
        """overlay where the kernel allows it (a build takes a minute), else vfs (every
        layer a full copy: four times slower); $LETTA_EXPORTER_IMAGE_DRIVER picks one."""
        chosen = os.environ.get("LETTA_EXPORTER_IMAGE_DRIVER")
        for driver in [chosen] if chosen else ["overlay", "vfs"]:
            # One per store; short, as sockets in it have a path limit of 108 bytes.
            store_id = hashlib.sha256(str(STORE).encode()).hexdigest()[:8]
            runtime = RUNTIME / f"{store_id}-{driver}"
            podman = cls(STORE / driver, runtime, driver)
            probe = podman.run("info", check=False, timeout=120)
            if probe.returncode == 0:
                return podman
            print(f"podman with {driver} storage: {probe.stderr.strip()}", file=sys.stderr)
        raise RuntimeError(f"podman storage works with no driver of {chosen or 'overlay, vfs'}")

    def config(self) -> Path:
        """The containers.conf that replaces the machine's for this podman."""
        path = self.root / "containers.conf"
        text = (
            "[engine]\n"
            f'tmp_dir = "{self.runtime / "tmp"}"\n'
            'lock_type = "file"\n'
            'events_logger = "file"\n'
            'cgroup_manager = "cgroupfs"\n'
        )
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return path

    def argv(self, *args: str) -> list[str]:
        return [
            require("podman"),
            f"--root={self.root / 'root'}",
            f"--runroot={self.runtime / 'run'}",
            f"--storage-driver={self.driver}",
            f"--runtime={require('runc')}",
            *args,
        ]

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a podman command; with `check`, a failure raises with its output."""
        result = subprocess.run(
            self.argv(*args),
            env={**os.environ, "CONTAINERS_CONF": str(self.config())},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def exists(self, image: str) -> bool:
        return self.run("image", "exists", image, check=False).returncode == 0


# ---------------------------------------------------------------------------- stand-ins


def pinned_base() -> str:
    """The default of the Dockerfile's `ARG PYTHON_IMAGE=`: python:<tag>@sha256:<digest>."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError("the Dockerfile has no `ARG PYTHON_IMAGE=` default")
    return match[1]


def standin_name(pinned: str) -> str:
    """The stand-in is named after the pinned tag (localhost/python-standin:3.11-slim-bookworm)."""
    tag = pinned.split("@")[0].rpartition(":")[2]
    return f"localhost/python-standin:{tag}"


def bootstrap_standin(podman: Podman, pinned: str) -> str:
    """A Debian minbase of the pinned tag's release with python3, pip and venv, imported
    as `standin_name(pinned)`; Debian's python3 is /usr/bin/python3, not /usr/local/bin."""
    name = standin_name(pinned)
    if podman.exists(name):
        return name
    suite = name.rpartition("-")[2]  # bookworm
    with tempfile.TemporaryDirectory() as scratch:
        tarball = Path(scratch) / "base.tar"
        packages = "python3,python3-venv,python3-pip,python-is-python3,ca-certificates"
        subprocess.run(
            [require("mmdebstrap"), "--variant=minbase", "--quiet", f"--include={packages}"]
            + [suite, str(tarball)],
            check=True,
            timeout=900,
        )
        podman.run("import", str(tarball), name, timeout=600)
    return name


def base_image(podman: Podman) -> str:
    """The base to build on: $LETTA_EXPORTER_PYTHON_IMAGE if set, else the pinned digest if
    present or pullable, else the stand-in (made once, then kept in the store)."""
    if override := os.environ.get("LETTA_EXPORTER_PYTHON_IMAGE"):
        return override
    pinned = pinned_base()
    if (
        podman.exists(pinned)
        or podman.run("pull", pinned, check=False, timeout=600).returncode == 0
    ):
        return pinned
    return bootstrap_standin(podman, pinned)


def build_prometheus(podman: Podman, base: str, tag: str) -> None:
    """An image laid out like prom/prometheus, of Debian's prometheus binary on `base`."""
    binary = require("prometheus")
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch)
        shutil.copy(binary, context / "prometheus")
        (context / "Containerfile").write_text(_PROMETHEUS_CONTAINERFILE.format(base=base))
        podman.run(
            "build", "--pull=never", "--network=host", f"--tag={tag}", *rlimits(), str(context)
        )
