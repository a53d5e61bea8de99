"""The fake's HTTP answers: the response value, the real error bodies and the path checks
that produce them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from tests.fake_letta.constants import DEFAULT_ORG_ID, DEFAULT_USER_ID
from tests.fake_letta.wire import dumps, id_pattern

# The actor repr that the real server embeds in every NoResultFound message (errors/*.json).
_ACTOR_REPR: Final = (
    f"id='{DEFAULT_USER_ID}' organization_id='{DEFAULT_ORG_ID}' name='default_user' "
    "created_at=None updated_at=datetime.datetime(2026, 11, 23, 12, 0, 38, 297413, "
    "tzinfo=TzInfo(UTC)) is_deleted=False"
)

_RUN_ID_RE: Final = id_pattern("run")
USER_ID_RE: Final = id_pattern("user")
# ToolId / StepId path parameters (letta/validators.py PATH_VALIDATORS).
_PATH_ID_RES: Final = {primitive: id_pattern(primitive) for primitive in ("tool", "step")}


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, obj: Any) -> Response:
    return Response(status, dumps(obj).encode())


def detail_response(status: int, detail: str) -> Response:
    return json_response(status, {"detail": detail})


def not_found(model: str, ident: str) -> Response:
    """The real NoResultFound text, e.g. errors/run_unknown_404.json."""
    return detail_response(
        404,
        f"{model} not found with id='['{ident}']', access level in ['read'] "
        f"for actor='{_ACTOR_REPR}'",
    )


class RouteError(Exception):
    """Raised inside route code; carries the finished response."""

    def __init__(self, resp: Response) -> None:
        super().__init__(resp.status)
        self.resp = resp


def valid_path_id(value: str, primitive: str) -> bool:
    """What Letta's ``PATH_VALIDATORS[primitive]`` accepts: exactly ``<primitive>-<uuid4>``
    (fixed length, so a trailing newline that ``$`` would allow is refused too)."""
    pattern = _PATH_ID_RES[primitive]
    return len(value) == len(primitive) + 37 and pattern.match(value) is not None


def check_path_id(param: str, primitive: str, value: str) -> None:
    """Path validation of ``ToolId``/``StepId`` parameters (``letta/validators.py``).

    pydantic reports a too-short, too-long or non-matching id; Letta's
    ``custom_request_validation_handler`` (``app.py``) rewrites all three into the same
    ``string_pattern_mismatch`` with a simplified message, keeps ``detail`` as the repr of
    the error list, and adds ``examples`` (from the validator factory, which has no
    ``examples`` attribute, hence the fixed placeholder uuid).
    """
    if valid_path_id(value, primitive):
        return
    error = {
        "type": "string_pattern_mismatch",
        "loc": ("path", param),
        "msg": f"String should match pattern '{primitive}-{{uuid4}}'",
        "input": value,
        "ctx": {"pattern": _PATH_ID_RES[primitive].pattern},
    }
    raise RouteError(
        json_response(
            422,
            {
                "trace_id": "",
                "detail": repr([error]),
                "examples": [f"{primitive}-123e4567-e89b-42d3-8456-426614174000"],
            },
        )
    )


def check_run_id(run_id: str) -> None:
    if not _RUN_ID_RE.match(run_id):
        raise RouteError(
            detail_response(
                400,
                f"INVALID_ARGUMENT: Invalid run ID format: {run_id}. "
                "Expected format: 'run-<uuid4>'",
            )
        )
