"""Build the container image and lock what goes into it; run by tests/test_image.py.

    python -m tests.image lock     # regenerate requirements.lock and requirements-build.lock
    python -m tests.image build    # build the image, print its size and SBOM

The image is built with podman (tests/podman.py: runc and cgroupfs, what works on a CI
machine without a Docker daemon) from the one Dockerfile. Its base is the digest the
Dockerfile pins, or the stand-in tests/podman.py makes, passed as `--build-arg
PYTHON_IMAGE`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tests.podman import HOST_CA_BUNDLE, Podman, base_image, pinned_base, rlimits

ROOT = Path(__file__).parents[1]
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


# ---------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Built:
    image: str
    base: str
    size: int  # bytes, uncompressed, base included


def build(
    podman: Podman, tag: str = "localhost/letta-exporter:test", context: Path = ROOT
) -> Built:
    """Build the one Dockerfile in `context` (docker format: OCI images drop HEALTHCHECK)."""
    base = base_image(podman)
    args = ["build", "--pull=never", "--format=docker", "--network=host", f"--tag={tag}"]
    if base != pinned_base():
        args.append(f"--build-arg=PYTHON_IMAGE={base}")
    if HOST_CA_BUNDLE.exists():
        # pip inside the build may meet a TLS-intercepting proxy the host trusts.
        args.append(f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro")
    podman.run(*args, *rlimits(), str(context), timeout=1800)
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
