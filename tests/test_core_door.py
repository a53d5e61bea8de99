"""The poll layer talks to the core through its front door (`exporter.core.tracker`): no
chain of three attributes (`tracker.runs.records.next_settle_ns`, `self._runs.positions.
pending_walk`) reaches through one part of the core into another."""

from __future__ import annotations

import ast
from pathlib import Path

EXPORTER = Path(__file__).resolve().parent.parent / "exporter"
POLL = EXPORTER / "poll"


def _chains(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, dotted chain) of every chain of three or more attributes on a name (`self`
    is a name like any other: `self._runs.records.get` reaches through two parts)."""
    found = []
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue  # only the outermost attribute of a chain
        names = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            names.append(value.attr)
            value = value.value
        if not isinstance(value, ast.Name):
            continue  # a chain on a call's result or a literal: not a reach into a part
        names.reverse()
        if len(names) >= 3:
            found.append((node.lineno, ".".join([value.id, *names])))
    return found


def test_no_chain_of_three_attributes_in_poll() -> None:
    offenders = [
        f"{path.name}:{line}: {chain}"
        for path in sorted(POLL.glob("*.py"))
        for line, chain in sorted(_chains(ast.parse(path.read_text())))
    ]
    assert offenders == []


def test_the_check_sees_such_a_chain() -> None:
    code = (
        "def f(tracker, self):\n"
        "    tracker.runs.records.next_settle_ns(0)\n"
        "    self._runs.positions.pending_walk\n"
        "    self._enrichment.backlog()\n"
    )
    assert [chain for _, chain in sorted(_chains(ast.parse(code)))] == [
        "tracker.runs.records.next_settle_ns",
        "self._runs.positions.pending_walk",
    ]


def test_nothing_outside_the_core_opens_the_tracker_up() -> None:
    """`tracker.runs` is the run book itself: only the core and the tests use it."""
    offenders = []
    for path in sorted(EXPORTER.rglob("*.py")):
        if EXPORTER / "core" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or node.attr != "runs":
                continue
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if name.lstrip("_") == "tracker":
                offenders.append(f"{path.relative_to(EXPORTER)}:{node.lineno}")
    assert offenders == []
