"""The demo stack in deploy/compose/ agrees with the Compose specification and the repository.

The file is validated against the Compose Specification's JSON schema (as the models of
`compose-pydantic`, generated from it, unknown keys rejected); it names only the
exporter built from this repository and the official Prometheus and Grafana images;
every path it mounts exists; and the pieces are wired as the mounted files expect:
Prometheus finds its rules and scrapes the exporter's service and port, Grafana's
provisioning finds the dashboards and reaches Prometheus.

Then the exporter and Prometheus services run for real with podman, as the file
describes them (environment, mounts, volumes), in one network namespace whose loopback
stands for the compose network: the exporter image built from the repository's
Dockerfile (tests/image.py, as tests/test_image.py builds it) polls the demo profile's
simulated Letta at the file's default address, Prometheus (Debian's binary in place of
prom/prometheus, which cannot be pulled here) loads the rules and scrapes the exporter by
its service name. Grafana does not run: no Grafana server can be installed from the
registries reachable here (tests/test_dashboard_model.py checks the dashboards against
Grafana's own schema instead).
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

import pydantic
import pytest
import yaml
from compose_pydantic.models import ComposeSpecification  # type: ignore[import-untyped]

from exporter.cli.config import FLAGS, Settings
from exporter.cli.demo import build_parser as demo_parser
from tests.dockerfile_model import runtime_env
from tests.harness import poll_until
from tests.image import build
from tests.podman import Podman, base_image, build_prometheus, rlimits

ROOT = Path(__file__).parents[1]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
RULES = ROOT / "alerts" / "letta-runs.rules.yml"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# Images the demo may pull: each publisher's own, by repository.
OFFICIAL_IMAGES = {"prometheus": "prom/prometheus", "grafana": "grafana/grafana"}
ENV_NAMES = {flag.env for flag in FLAGS} | {"LETTA_API_KEY"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def bind_mounts(name: str) -> dict[str, Path]:
    """Container path -> host path of the service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = (COMPOSE_DIR / source).resolve()
    return mounts


def host_path(name: str, container_path: str) -> Path:
    """Where `container_path` of service `name` comes from on the host (a bind mount)."""
    path = PurePosixPath(container_path)
    for target, source in bind_mounts(name).items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{name}: nothing is mounted at {container_path}")


def test_the_file_follows_the_compose_specification() -> None:
    ComposeSpecification.model_validate(compose())


def test_the_schema_rejects_unknown_keys_and_wrong_types() -> None:
    for change in ({"portz": ["1:1"]}, {"ports": "1:1"}, {"restart": ["always"]}):
        broken = compose()
        broken["services"]["grafana"] |= change
        with pytest.raises(pydantic.ValidationError):
            ComposeSpecification.model_validate(broken)


def test_only_the_exporter_built_here_and_official_images() -> None:
    services = compose()["services"]
    assert set(services) == {"letta-exporter", "letta-demo", *OFFICIAL_IMAGES}
    for name in ("letta-exporter", "letta-demo"):
        built = services[name]
        assert (COMPOSE_DIR / built["build"]["context"]).resolve() == ROOT
        assert built["image"] == f"letta-exporter:{VERSION}"
    assert (ROOT / "Dockerfile").is_file()
    for name, repository in OFFICIAL_IMAGES.items():
        image, _, tag = services[name]["image"].rpartition(":")
        assert image == repository, name
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a release, not {tag!r}"


def test_grafana_is_the_release_whose_schema_the_dashboards_are_checked_against() -> None:
    (pin,) = [d for d in PYPROJECT["project"]["optional-dependencies"]["test"] if "grafana" in d]
    model_release = pin.rpartition("!")[2]  # grafana-foundation-sdk==<epoch>!11.6.0
    tag = service("grafana")["image"].rpartition(":")[2]
    assert tag.split(".")[:2] == model_release.split(".")[:2]


def test_every_mounted_path_exists_in_the_repository() -> None:
    for name in compose()["services"]:
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"


def test_prometheus_loads_the_rules_and_scrapes_the_exporter_service() -> None:
    config_path = host_path("prometheus", "/etc/prometheus/prometheus.yml")
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        # Resolved relative to the config file, inside the container.
        in_container = PurePosixPath("/etc/prometheus") / rule_file
        assert host_path("prometheus", str(in_container)).is_file(), rule_file
    default_port = Settings.model_fields["web_listen_address"].default.rpartition(":")[2]
    targets = [
        t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert f"letta-exporter:{default_port}" in targets
    assert "letta-exporter" in service("prometheus")["depends_on"]


def test_grafana_provisions_the_dashboards_and_reaches_prometheus() -> None:
    grafana = service("grafana")
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    assert provisioning == ROOT / "dashboards" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards" / "letta.yml").read_text())
    (provider,) = providers["providers"]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert {p.name for p in dashboards.glob("*.json")} >= {"letta-runs.json", "letta-exporter.json"}
    environment = grafana["environment"]
    home = environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()
    # The data source's URL is ${PROMETHEUS_URL}: Prometheus' service name and port.
    assert environment["PROMETHEUS_URL"] == "http://prometheus:9090"
    assert "prometheus" in grafana["depends_on"]


def test_the_exporter_reads_every_variable_it_is_given() -> None:
    environment = service("letta-exporter")["environment"]
    assert set(environment) <= ENV_NAMES, set(environment) - ENV_NAMES
    assert "LETTA_BASE_URL" in environment
    # The state survives re-creating the container: a named volume where the image keeps it.
    source, target = service("letta-exporter")["volumes"][0].split(":")[:2]
    assert source in compose()["volumes"]
    assert target == str(PurePosixPath(runtime_env()["LETTA_EXPORTER_STATE_PATH"]).parent)


def test_the_readmes_point_at_the_demo() -> None:
    command = "docker compose -f deploy/compose/compose.yaml up"
    assert command in (ROOT / "deploy" / "README.md").read_text()
    assert "deploy/compose/" in (ROOT / "README.md").read_text()
    assert command in COMPOSE_FILE.read_text()
    for text in (ROOT / "deploy" / "README.md", ROOT / "README.md", COMPOSE_FILE):
        assert DEMO_COMMAND in text.read_text(), text


DEMO_COMMAND = (
    "LETTA_BASE_URL=http://letta-demo:8283 "
    "docker compose -f deploy/compose/compose.yaml --profile demo up -d --build"
)


def demo_port() -> str:
    """The port the demo profile's simulated Letta listens on (from its command line)."""
    options = vars(demo_parser().parse_args(service("letta-demo")["command"][1:]))
    assert options["simulator_only"]
    return str(options["simulator_address"].rpartition(":")[2])


def test_the_demo_profile_adds_a_simulated_letta_where_the_command_points() -> None:
    # Only the simulated Letta has a profile: a plain `up` starts what it always did.
    profiled = {name for name, s in compose()["services"].items() if "profiles" in s}
    assert profiled == {"letta-demo"}
    assert service("letta-demo")["profiles"] == ["demo"]
    assert service("letta-demo")["command"][:2] == ["demo", "--simulator-only"]
    assert DEMO_COMMAND.split()[0] == f"LETTA_BASE_URL=http://letta-demo:{demo_port()}"
    # The image's healthcheck asks the exporter's port; this one asks the simulator's.
    assert f"127.0.0.1:{demo_port()}/v1/health/" in service("letta-demo")["healthcheck"]["test"][-1]


# ------------------------------------------------------------------ running it with podman

# Images that cannot be pulled here, and what stands in for them (tests/podman.py).
STAND_INS = {"prometheus": "localhost/prometheus-from-debian:test"}
_GET = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?)-([^}]*))?\}")


def interpolate(value: str, environment: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset)."""

    def one(match: re.Match[str]) -> str:
        name, colon, default = match.groups()
        if name in environment and (environment[name] or not colon):
            return environment[name]
        return default or ""

    return _INTERPOLATION.sub(one, value)


def run_arguments(name: str, environment: dict[str, str]) -> list[str]:
    """`podman run` options for service `name`: its environment and its volumes."""
    options = []
    for variable, value in service(name).get("environment", {}).items():
        options += ["--env", f"{variable}={interpolate(str(value), environment)}"]
    for volume in service(name).get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            source = str((COMPOSE_DIR / source).resolve())
        options += ["--volume", ":".join([source, target, *mode])]
    return options


def test_compose_interpolation_as_compose_does_it() -> None:
    text = "${A:-a} ${B-b} ${C:-c} ${D-d} ${E}"
    assert interpolate(text, {"A": "", "B": "", "C": "x"}) == "a  x d "


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_the_exporter_and_prometheus_services_run_with_podman(
    tmp_path: Path, podman: Podman
) -> None:
    # The base of the Dockerfile (or its stand-in, tests/podman.py) carries Debian's
    # Prometheus.
    base = base_image(podman)
    letta_url = interpolate(service("letta-exporter")["environment"]["LETTA_BASE_URL"], {})
    letta_host, _, letta_port = letta_url.rpartition("/")[2].partition(":")
    # One network namespace (the simulated Letta's), loopback only: every service name resolves to
    # 127.0.0.1, and so does the host where the file expects Letta. No DNS server is asked.
    names = ["localhost", *compose()["services"], letta_host]
    (tmp_path / "hosts").write_text(f"127.0.0.1 {' '.join(names)}\n")
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    files = [
        *("--volume", f"{tmp_path / 'hosts'}:/etc/hosts:ro"),
        *("--volume", f"{tmp_path / 'resolv.conf'}:/etc/resolv.conf:ro"),
    ]
    # Names of their own: the storage is shared with other tests and checkouts.
    run = f"compose-{uuid.uuid4().hex[:8]}"
    letta = f"{run}-letta"
    containers = {name: f"{run}-{name}" for name in ("letta-exporter", "prometheus")}
    try:
        exporter = service("letta-exporter")
        build(podman, exporter["image"], COMPOSE_DIR / exporter["build"]["context"])
        build_prometheus(podman, base, STAND_INS["prometheus"])
        # The demo profile's simulated Letta, as the file runs it, where the exporter's
        # default LETTA_BASE_URL points (both on the shared loopback).
        assert letta_port == demo_port()
        demo = service("letta-demo")
        podman.run(
            *("run", "--detach", "--name", letta, "--network=none", *files, *rlimits()),
            *(demo["image"], *demo["command"]),
        )
        for name, container in containers.items():
            image = STAND_INS.get(name) or service(name)["image"]
            podman.run(
                *("run", "--detach", "--name", container, f"--network=container:{letta}"),
                *files,
                *rlimits(),
                *run_arguments(name, {}),
                image,
            )

        def api(path: str) -> Any:
            # Asked from inside (the simulated Letta's container has Python): nothing is published.
            url = f"http://127.0.0.1:9090/api/v1/{path}"
            answer = podman.run("exec", letta, "python3", "-c", _GET, url, check=False)
            if answer.returncode != 0:
                raise ConnectionError(answer.stderr[-500:])
            return json.loads(answer.stdout)["data"]

        rule_groups = {g["name"] for g in yaml.safe_load(RULES.read_text())["groups"]}

        def stack_works() -> bool:
            try:
                loaded = {g["name"]: g for g in api("rules")["groups"]}
            except ConnectionError:  # Prometheus not listening yet
                return False
            targets = api("targets")["activeTargets"]
            return (
                set(loaded) == rule_groups
                and all(r["health"] == "ok" for g in loaded.values() for r in g["rules"])
                and [t["health"] for t in targets] == ["up"]
                and bool(api("query?query=letta_up%3D%3D1")["result"])
                and bool(api("query?query=letta%3Arun_success%3Aobjective")["result"])
                # The simulated Letta fills it: runs counted, the approval left waiting.
                and bool(api("query?query=letta_runs_finished_total")["result"])
                and bool(api("query?query=letta_runs_awaiting_approval%3D%3D1")["result"])
            )

        if not poll_until(stack_works, 180, interval=2):
            logs = {
                name: podman.run("logs", container, check=False).stderr[-2000:]
                for name, container in containers.items()
            }
            raise AssertionError(f"the stack did not come up: {api('targets')}\n{logs}")
    finally:
        # Those sharing the simulated Letta's network first: podman keeps it while they exist.
        podman.run("rm", "--force", *containers.values(), check=False)
        podman.run("rm", "--force", letta, check=False)
