"""Build the container image and lock what goes into it; run by tests/test_image.py.

    python -m tests.image lock     # regenerate requirements.lock and requirements-build.lock
    python -m tests.image build    # build the image, print its size and SBOM

The image is built with podman (vfs storage, runc, cgroupfs: what works on a CI machine
without a Docker daemon) from the one Dockerfile. Its base is the digest the Dockerfile
pins when that image is at hand or can be pulled; else a Debian bookworm stand-in made
with mmdebstrap (Debian's python3 3.11), passed as `--build-arg PYTHON_IMAGE`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
RUNTIME_LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
# Build tools beyond the build backend: the SBOM writer.
BUILD_TOOLS = ("cyclonedx-bom>=4",)
LOCK_COMMAND = "python -m tests.image lock"
INDEX = "https://pypi.org/simple"


def _uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv not found: pip install -e '.[test]'")
    return found


def compile_lock(inputs: list[str], output: Path, *, stdin: str | None = None) -> None:
    """`uv pip compile` with hashes, for every platform and Python 3.11+; pins already in
    `output` are kept unless the inputs no longer allow them (so a rerun changes nothing)."""
    subprocess.run(
        [
            _uv(),
            "pip",
            "compile",
            *inputs,
            "--universal",
            "--python-version=3.11",
            "--generate-hashes",
            f"--default-index={INDEX}",
            f"--custom-compile-command={LOCK_COMMAND}",
            "--quiet",
            f"--output-file={output}",
        ],
        cwd=ROOT,
        input=stdin,
        text=True,
        check=True,
        timeout=300,
    )


def build_requirements() -> str:
    """The build backend's requirements (pyproject's [build-system]) plus the SBOM writer."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return "\n".join([*pyproject["build-system"]["requires"], *BUILD_TOOLS]) + "\n"


def write_locks(directory: Path) -> tuple[Path, Path]:
    """Both locks, written into `directory` (seeded from the checked-in ones)."""
    runtime, build = directory / RUNTIME_LOCK.name, directory / BUILD_LOCK.name
    for checked_in, copy in ((RUNTIME_LOCK, runtime), (BUILD_LOCK, build)):
        if checked_in.exists() and checked_in != copy:
            shutil.copyfile(checked_in, copy)
    compile_lock(["pyproject.toml"], runtime)
    compile_lock(["-"], build, stdin=build_requirements())
    return runtime, build


# ---------------------------------------------------------------------------- podman

APT_PACKAGES = "podman runc mmdebstrap"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STORE = Path(
    os.environ.get("LETTA_EXPORTER_IMAGE_STORE", Path.home() / ".cache/letta-exporter/podman")
)
RUNTIME = Path("/run/letta-exporter-podman")


def require(tool: str) -> str:
    """The path of `tool`, or a one-sentence error naming the packages to install."""
    found = shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).exists()), None
    )
    if found is None:
        raise RuntimeError(f"{tool} not found: apt-get install {APT_PACKAGES} (.ci/run does)")
    return found


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


def rlimits() -> list[str]:
    """`--ulimit` flags that runc can set here. podman's defaults (nofile 1048576, nproc
    4194304) are above what a CI sandbox may grant, and runc then fails to start the
    container ("error setting rlimits"); seen refusing nproc 65536 under a hard limit of
    96365, so nproc stays at 4096, plenty for the exporter's few threads."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [f"--ulimit=nofile={soft}:{hard}", "--ulimit=nproc=4096:4096"]


# ---------------------------------------------------------------------------- base image


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


# ---------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Built:
    image: str
    base: str
    size: int  # bytes, uncompressed, base included


def build(podman: Podman, tag: str = "localhost/letta-exporter:test") -> Built:
    """Build the one Dockerfile (docker format: OCI images drop HEALTHCHECK)."""
    base = base_image(podman)
    args = ["build", "--pull=never", "--format=docker", "--network=host", f"--tag={tag}"]
    if base != pinned_base():
        args.append(f"--build-arg=PYTHON_IMAGE={base}")
    if HOST_CA_BUNDLE.exists():
        # pip inside the build may meet a TLS-intercepting proxy the host trusts.
        args.append(f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro")
    podman.run(*args, *rlimits(), str(ROOT), timeout=1800)
    size = int(podman.run("image", "inspect", "--format={{.Size}}", tag).stdout)
    return Built(tag, base, size)


def sbom(podman: Podman, image: str) -> dict[str, object]:
    """The CycloneDX document the build wrote to /venv/sbom.cdx.json."""
    text = podman.run(
        "run",
        "--rm",
        "--network=none",
        *rlimits(),
        "--entrypoint=cat",
        image,
        "/venv/sbom.cdx.json",
    ).stdout
    document: dict[str, object] = json.loads(text)
    return document


def components(document: dict[str, object]) -> dict[str, str]:
    """{normalized name: version} of the SBOM's components."""
    found = document.get("components", [])
    assert isinstance(found, list)
    return {normalize(c["name"]): c["version"] for c in found}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path = RUNTIME_LOCK) -> dict[str, str]:
    """{normalized name: version} pinned by a lock."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", lock.read_text(), re.M)
    return {normalize(name): version for name, version in pins}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.image", description=__doc__)
    parser.add_argument("command", choices=["lock", "build"])
    command = parser.parse_args(argv).command
    if command == "lock":
        for path in write_locks(ROOT):
            print(f"wrote {path.relative_to(ROOT)} ({len(locked(path))} pins)")
        return 0
    podman = Podman.here()
    built = build(podman)
    print(f"image {built.image} on {built.base} ({podman.driver} storage)")
    print(f"size {built.size / 1e6:.0f} MB uncompressed, base included")
    for name, version in sorted(components(sbom(podman, built.image)).items()):
        print(f"  {name}=={version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
