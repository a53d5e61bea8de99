"""The image, built from the Dockerfile and run against the fake Letta API.

Built once per session with podman (tests/image.py and tests/podman.py: the pinned base,
or a Debian stand-in where Docker Hub cannot be reached). Each container runs as a user
would run it: the state on a named volume, the root filesystem read-only (no tmpfs
either, as deploy/kubernetes/ runs it). Host networking: the fake and the exporter both listen on
127.0.0.1. A missing podman, runc or mmdebstrap fails these tests; .ci/run installs them.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from tests.dockerfile_model import runtime_user
from tests.fake_letta.fake import FakeLetta
from tests.harness import FAST_FLAGS, poll_until
from tests.image import Built, build, components, locked, sbom
from tests.podman import Podman, rlimits

# The first test waits for the build: about 1.5 min on a new machine with overlay storage
# (base included), 4 to 5 min with vfs.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

STATE_DIR = "/var/lib/letta-exporter"
GRACE_SECONDS = 10  # `docker stop`'s default


@pytest.fixture(scope="module")
def image(podman: Podman) -> Built:
    built = build(podman)
    print(f"built {built.image} on {built.base}: {built.size / 1e6:.0f} MB")
    return built


@pytest.fixture
def fake() -> Iterator[FakeLetta]:
    with FakeLetta() as server:
        yield server


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    name = f"letta-exporter-test-{uuid.uuid4().hex[:8]}"
    podman.run("volume", "create", name)
    yield name
    podman.run("volume", "rm", "--force", name, check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Container:
    """One exporter container; `start()` returns once /readyz answers 200."""

    podman: Podman
    image: str
    letta_url: str
    volume: str
    name: str = field(default_factory=lambda: f"letta-exporter-test-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)
    # More `podman run` options and exporter flags; how to reach it (TLS: the CA's context).
    options: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    scheme: str = "http"
    verify: ssl.SSLContext | bool = True

    def start(self) -> Container:
        self.podman.run(
            "run",
            "--detach",
            f"--name={self.name}",
            "--network=host",
            "--read-only",
            "--read-only-tmpfs=false",
            *rlimits(),
            f"--volume={self.volume}:{STATE_DIR}",
            # The HEALTHCHECK reads the port from here; a fixed, free one (not :0).
            f"--env=LETTA_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:{self.port}",
            *self.options,
            self.image,
            f"--letta.url={self.letta_url}",
            *FAST_FLAGS,
            *self.flags,
        )
        self.wait_for(lambda: self.get("/readyz").status_code == 200, "/readyz")
        return self

    def get(self, path: str) -> httpx.Response:
        url = f"{self.scheme}://127.0.0.1:{self.port}{path}"
        return httpx.get(url, timeout=5.0, verify=self.verify)

    def finished(self) -> float:
        """letta_runs_finished_total, all series summed."""
        return sum(
            float(line.rpartition(" ")[2])
            for line in self.get("/metrics").text.splitlines()
            if line.startswith("letta_runs_finished_total{")
        )

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
        if not poll_until(predicate, timeout, interval=0.2):
            raise AssertionError(f"timed out waiting for {what}; logs:\n{self.logs()}")

    def logs(self) -> str:
        result = self.podman.run("logs", "--tail=40", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.podman.run("exec", self.name, *argv, check=False)

    def healthcheck(self) -> bool:
        """`podman healthcheck run`: the image's HEALTHCHECK, run once, passed?"""
        return self.podman.run("healthcheck", "run", self.name, check=False).returncode == 0

    def state(self, template: str) -> str:
        return self.podman.run("inspect", f"--format={template}", self.name).stdout.strip()

    def remove(self) -> None:
        self.podman.run("rm", "--force", "--time=0", self.name, check=False)


def finish_runs(fake: FakeLetta, count: int) -> None:
    for n in range(count):
        run_id = fake.create_run(f"agent-{n % 2}")
        fake.update_run(run_id, status="completed", stop_reason="end_turn")


@pytest.fixture
def container(podman: Podman, image: Built, fake: FakeLetta, volume: str) -> Iterator[Container]:
    started = Container(podman, image.image, fake.base_url, volume).start()
    yield started
    started.remove()


def test_metrics_count_the_runs_that_finish(container: Container, fake: FakeLetta) -> None:
    finish_runs(fake, 5)
    container.wait_for(lambda: container.finished() == 5, "5 finished runs on /metrics")


def test_runs_as_the_dockerfile_user_on_a_read_only_root(
    container: Container, image: Built
) -> None:
    uid, gid = runtime_user()
    status = container.exec("cat", "/proc/1/status").stdout
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()}
    assert ids["Uid"] == [str(uid)] * 4 and ids["Gid"] == [str(gid)] * 4
    for path in ("/probe", "/venv/probe", "/tmp/probe"):
        wrote = container.exec("python", "-c", f"open({path!r}, 'w')")
        assert wrote.returncode == 1 and "Read-only file system" in wrote.stderr, path
    # The state lives on the volume, written by the exporter itself.
    listing = container.exec("ls", "-ln", STATE_DIR).stdout
    assert f" {uid} {gid} " in listing and "state.sqlite" in listing, listing


def test_the_healthcheck_passes_and_fails_while_the_exporter_is_wedged(
    container: Container, podman: Podman
) -> None:
    assert container.healthcheck()
    podman.run("kill", "--signal=STOP", container.name)
    try:
        assert not container.healthcheck()
    finally:
        podman.run("kill", "--signal=CONT", container.name)
    assert container.healthcheck()


def test_the_healthcheck_passes_over_https(
    podman: Podman, image: Built, fake: FakeLetta, volume: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    # Readable by uid 65532, as a Kubernetes Secret volume (mode 0644) makes them.
    for path in (tmp_path, *tmp_path.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    container = Container(
        podman,
        image.image,
        fake.base_url,
        volume,
        options=(f"--volume={tmp_path}:/etc/letta-exporter:ro",),
        flags=("--web.config.file=/etc/letta-exporter/web.yml",),
        scheme="https",
        verify=context,
    )
    try:
        container.start()
        assert container.healthcheck()
    finally:
        container.remove()


def test_the_state_volume_keeps_counting_across_a_new_container(
    container: Container, podman: Podman, image: Built, fake: FakeLetta, volume: str
) -> None:
    finish_runs(fake, 3)
    container.wait_for(lambda: container.finished() == 3, "3 finished runs")
    podman.run("stop", f"--time={GRACE_SECONDS}", container.name)
    container.remove()
    finish_runs(fake, 2)  # while no exporter runs
    successor = Container(podman, image.image, fake.base_url, volume).start()
    try:
        successor.wait_for(lambda: successor.finished() == 5, "3 + 2 finished runs")
        finish_runs(fake, 1)
        successor.wait_for(lambda: successor.finished() == 6, "6 finished runs")
    finally:
        successor.remove()


def test_sigterm_stops_it_cleanly_within_the_grace_period(
    container: Container, podman: Podman
) -> None:
    # podman stop sends SIGTERM, then SIGKILL after the grace period (exit code 137).
    podman.run("stop", f"--time={GRACE_SECONDS}", container.name)
    assert container.state("{{.State.Status}} {{.State.ExitCode}}") == "exited 0"
    assert "stopped cleanly" in container.logs()


def test_the_sbom_lists_exactly_the_locked_packages(podman: Podman, image: Built) -> None:
    document = sbom(podman, image.image)
    assert document["bomFormat"] == "CycloneDX"
    metadata = document["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["component"]["name"] == "letta-exporter"
    installed = components(document)
    assert installed == locked()
    # The venv holds what the exporter imports, no installer.
    assert not {"pip", "setuptools", "wheel"} & set(installed)
    for name, version in sorted(installed.items()):
        print(f"{name}=={version}")


IMPORT_EVERY_EXTENSION = """
import importlib, pathlib, sysconfig
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for so in sorted(site.rglob("*.so")):
    module = ".".join(so.relative_to(site).with_suffix("").with_suffix("").parts)
    importlib.import_module(module)
    print(module)
"""


def test_every_stripped_extension_module_still_loads(podman: Podman, image: Built) -> None:
    loaded = podman.run(
        "run",
        "--rm",
        "--network=none",
        *rlimits(),
        "--entrypoint=python",
        image.image,
        "-c",
        IMPORT_EVERY_EXTENSION,
    ).stdout.split()
    assert "grpc._cython.cygrpc" in loaded and "yaml._yaml" in loaded, loaded
