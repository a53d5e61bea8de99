"""The Dockerfile as instructions and stages, for the Dockerfile, image, compose and
deploy tests."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

DOCKERFILE = Path(__file__).parents[1] / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    line: int
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile (comments dropped, `\\` continuations joined)."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines may also sit inside a continuation
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        pending = []
    assert not pending, "Dockerfile ends inside a continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def pairs(args: str) -> dict[str, str]:
    """`KEY=value KEY2="quoted value"` (LABEL, ENV) as a dict."""
    return dict(token.split("=", 1) for token in shlex.split(args))


def exec_form(args: str) -> list[str] | None:
    """The argv of an exec-form (JSON array) instruction; None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and value and all(isinstance(part, str) for part in value):
        return value
    return None


INSTRUCTIONS = parse(DOCKERFILE.read_text())
STAGES = stages(INSTRUCTIONS)
# The ARGs before the first FROM, which FROM lines may use.
GLOBAL_ARGS = pairs(
    " ".join(i.args for i in INSTRUCTIONS[: INSTRUCTIONS.index(STAGES[0][0])] if i.keyword == "ARG")
)
RUNTIME = STAGES[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in stage if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


def runtime_user() -> tuple[int, int]:
    """(uid, gid) of the final stage's USER; tests/test_deploy.py matches Kubernetes to it."""
    user = only(RUNTIME, "USER").args
    match = re.fullmatch(r"(\d+):(\d+)", user)
    assert match, f"USER {user!r} is not numeric uid:gid"
    return int(match[1]), int(match[2])


def runtime_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in RUNTIME:
        if instruction.keyword == "ENV":
            env.update(pairs(instruction.args))
    return env
