"""The image's locks (requirements.lock, requirements-build.lock) are current.

Regenerated with `python -m tests.image lock` (uv, against PyPI): pins already in a lock
are kept while pyproject.toml allows them, so a rerun only differs when pyproject.toml's
dependencies or build requirements changed and the locks were not regenerated. To take
newer releases: delete the locks, then run the command again.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from tests.image import BUILD_LOCK, ROOT, RUNTIME_LOCK, locked, normalize, write_locks


def test_regenerating_the_locks_changes_nothing(tmp_path: Path) -> None:
    runtime, build = write_locks(tmp_path)
    assert runtime.read_text() == RUNTIME_LOCK.read_text(), "run: python -m tests.image lock"
    assert build.read_text() == BUILD_LOCK.read_text(), "run: python -m tests.image lock"


def test_every_dependency_is_pinned_within_its_range_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for lock, wanted in (
        (RUNTIME_LOCK, project["project"]["dependencies"]),
        (BUILD_LOCK, project["build-system"]["requires"]),
    ):
        pins = locked(lock)
        for line in wanted:
            requirement = Requirement(line)
            name = normalize(requirement.name)
            assert name in pins, f"{line} not in {lock.name}: run python -m tests.image lock"
            version = pins[name]
            assert requirement.specifier.contains(version, prereleases=True), (line, version)
        # pip's --require-hashes would refuse the whole lock over one pin without a hash.
        for pin, block in re.findall(r"^(\S+==\S+)(.*?)(?=^\S|\Z)", lock.read_text(), re.M | re.S):
            assert "--hash=sha256:" in block, pin
