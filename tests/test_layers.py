"""The layer contract (`[tool.importlinter]` in pyproject.toml) orders every layer strictly:
an import that points up, or sideways between `|` siblings, is reported by `lint-imports`.

The probes go into a copy of the package, so the checkout is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # from the test extra

# (module that imports, module imported): each points up one step of the contract, or
# between siblings of one layer.
UPWARD = [
    ("exporter.letta", "exporter.series.catalogue"),
    ("exporter.series", "exporter.core.tracker"),
    ("exporter.core", "exporter.metrics.snapshot"),
    ("exporter.core", "exporter.store.checkpoint"),
    ("exporter.store", "exporter.metrics.snapshot"),
    ("exporter.metrics", "exporter.store.checkpoint"),
    ("exporter.metrics", "exporter.traces.run_tracer"),
    ("exporter.traces", "exporter.poll.cycle"),
    ("exporter.poll", "exporter.web.status"),
    ("exporter.web", "exporter.cli.main"),
    # inside the core
    ("exporter.core.runs", "exporter.core.counting.counter"),
    ("exporter.core.counting", "exporter.core.book.lifecycle"),
    ("exporter.core.book", "exporter.core.enrichment.queue"),
    ("exporter.core.enrichment", "exporter.core.tracker"),
    ("exporter.core.listing", "exporter.core.runs.record"),
    ("exporter.core.approvals", "exporter.core.listing.walk"),
    # past the core's front door
    ("exporter.poll", "exporter.core.book.lifecycle"),
]


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: pip install -e '.[test]'"
    env = os.environ | {"PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _on_disk(package: Path) -> set[str]:
    """The sub-packages and modules of a package, as dotted names relative to it."""
    return {
        p.stem
        for p in package.iterdir()
        if (p / "__init__.py").exists() or (p.suffix == ".py" and p.name != "__init__.py")
    }


def test_every_layer_is_ordered_strictly() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [c for c in config["contracts"] if c["type"] == "layers"]
    assert len(contracts) == 2  # the packages, and the core's sub-packages
    for contract in contracts:
        for layer in contract["layers"]:
            assert ":" not in layer, f"{layer}: `:` lets the packages of a layer import each other"
        named = {p.strip() for layer in contract["layers"] for p in layer.split("|")}
        container = contract.get("containers", ["exporter"])[0]
        on_disk = _on_disk(ROOT / container.replace(".", "/"))
        if container == "exporter":
            named = {n.removeprefix("exporter.") for n in named}
            on_disk -= {"__main__", "units"}  # the entry point; a constant outside the layers
        assert named == on_disk, f"every part of {container} stands on one layer"


def test_an_import_that_points_up_is_reported(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    clean = _lint(tree)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # the copy itself is kept
    for i, (source, target) in enumerate(UPWARD):
        probe = tree / source.replace(".", "/") / f"_probe_{i}.py"
        probe.write_text(f"import {target}  # points up\n")
    broken = _lint(tree)
    report = broken.stdout + broken.stderr
    assert broken.returncode != 0, report
    for i, (source, target) in enumerate(UPWARD):
        assert f"{source}._probe_{i} -> {target}" in report, (source, target, report)
