"""Request dispatch as the real app orders it: password middleware, routing (redirects,
404/405), the ``user_id`` header, then the route handlers.
"""

from __future__ import annotations

from email.message import Message
from typing import Final
from urllib.parse import parse_qs

from tests.fake_letta.child_routes import ChildRoutes
from tests.fake_letta.constants import SERVER_VERSION
from tests.fake_letta.query import Query
from tests.fake_letta.responses import (
    USER_ID_RE,
    Response,
    RouteError,
    detail_response,
    json_response,
)
from tests.fake_letta.run_routes import RunRoutes

# The password middleware lets these through untouched (§1.2).
_AUTH_EXEMPT: Final = frozenset(
    {
        "/v1/health",
        "/v1/health/",
        "/v1/ready",
        "/v1/ready/",
        "/latest/health/",
        "/latest/ready",
        "/latest/ready/",
    }
)


# Route table. "active" must win over "{run_id}" (declared first in runs.py).
_ROUTE_METHODS: Final[dict[str, frozenset[str]]] = {
    "health": frozenset({"GET"}),
    "list": frozenset({"GET"}),
    "active": frozenset({"GET"}),
    "run": frozenset({"GET", "DELETE"}),
    "messages": frozenset({"GET"}),
    "usage": frozenset({"GET"}),
    "metrics": frozenset({"GET"}),
    "steps": frozenset({"GET"}),
    "trace": frozenset({"GET"}),
    # Only the read an exporter makes; the real tools router also has PATCH and DELETE
    # on /{tool_id} (and list/count routes that the fake does not model).
    "tool": frozenset({"GET"}),
    "step_metrics": frozenset({"GET"}),
    # Only the list an exporter reads; the real agents router has many more routes.
    "agents": frozenset({"GET"}),
    # Every run's messages (the messages router's list route) and steps.
    "all_messages": frozenset({"GET"}),
    "all_steps": frozenset({"GET"}),
}
_SUBROUTES: Final = frozenset({"messages", "usage", "metrics", "steps", "trace"})


def _match_route(path: str) -> tuple[str, str | None] | None:
    """``(route, path id)`` for a path under ``/v1``; None when nothing matches (404)."""
    if path == "/v1/health/":
        return "health", None
    if path == "/v1/runs/":
        return "list", None
    if path == "/v1/runs/active":
        return "active", None
    if path == "/v1/agents/":
        return "agents", None
    if path == "/v1/messages/":
        return "all_messages", None
    if path.startswith("/v1/tools/"):  # tools router: GET /{tool_id}
        rest = path[len("/v1/tools/") :]
        return ("tool", rest) if rest and "/" not in rest else None
    if path == "/v1/steps/":
        return "all_steps", None
    if path.startswith("/v1/steps/"):  # steps router: GET /{step_id}/metrics
        parts = path[len("/v1/steps/") :].split("/")
        if len(parts) == 2 and parts[0] and parts[1] == "metrics":
            return "step_metrics", parts[0]
        return None
    if not path.startswith("/v1/runs/"):
        return None
    parts = path[len("/v1/runs/") :].split("/")
    if len(parts) == 1 and parts[0]:
        return "run", parts[0]
    if len(parts) == 2 and parts[0] and parts[1] in _SUBROUTES:
        return parts[1], parts[0]
    return None


class Dispatcher(RunRoutes, ChildRoutes):
    """Routes one parsed request to its handler and answers like the real app."""

    def _dispatch(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Message,
        host: str,
        query: dict[str, list[str]] | None = None,
    ) -> Response:
        """Route one request. Order mirrors the real app: password middleware, routing
        (redirect_slashes, 404/405), the ``user_id`` dependency, query validation, then
        the handler's own checks (run id format, lookups). ``query`` is ``raw_query``
        already parsed, when the caller has it."""
        if query is None:
            query = parse_qs(raw_query, keep_blank_values=True)
        exempt = raw_path in _AUTH_EXEMPT
        if self.cloud:
            project = headers.get("x-project-id")
            with self._lock:
                self._project_headers.append(project)
            self._scope.project = project if self.honour_project_header else None
        if self.password is not None and not exempt and not self._authorised(headers):
            return detail_response(401, "Unauthorized")
        path = raw_path
        if path.startswith("/latest/"):  # the same routers are mounted under /latest
            path = "/v1/" + path[len("/latest/") :]
        match = _match_route(path)
        if match is None:
            # Starlette's redirect_slashes: try the other form of the trailing slash.
            alt = path[:-1] if path.endswith("/") else path + "/"
            if len(alt) > 1 and _match_route(alt) is not None:
                alt_raw = raw_path[:-1] if raw_path.endswith("/") else raw_path + "/"
                location = f"http://{host}{alt_raw}" + (f"?{raw_query}" if raw_query else "")
                return Response(307, b"", None, (("location", location),))
            return detail_response(404, "Not Found")
        route, run_id = match
        allowed = _ROUTE_METHODS[route]
        if method not in allowed:
            return Response(
                405,
                b'{"detail":"Method Not Allowed"}',
                headers=(("allow", ", ".join(sorted(allowed))),),
            )
        try:
            if route != "health":
                self._check_user_header(headers)
            return self._route(route, method, run_id, Query(query))
        except RouteError as exc:
            return exc.resp

    def _authorised(self, headers: Message) -> bool:
        assert self.password is not None
        bearer = headers.get("authorization")
        if bearer is not None and bearer == f"Bearer {self.password}":
            return True
        if self.cloud:
            return False  # API keys go in Authorization only
        bare = headers.get("x-bare-password")
        return bare is not None and bare == f"password {self.password}"

    def _check_user_header(self, headers: Message) -> None:
        # The header is literally "user_id" (underscore). A well-formed unknown id
        # silently becomes the default user, so only the format can fail (§1.2).
        user_id = headers.get("user_id")
        if self.require_user_id and user_id is not None and not USER_ID_RE.match(user_id):
            raise RouteError(
                detail_response(
                    400,
                    f"INVALID_ARGUMENT: Invalid user ID format: {user_id}. "
                    "Expected format: 'user-<uuid4>'",
                )
            )

    def _route(self, route: str, method: str, run_id: str | None, q: Query) -> Response:
        if route == "health":
            return json_response(200, {"version": SERVER_VERSION, "status": "ok"})
        if route == "list":
            return self._route_list(q)
        if route == "active":
            return self._route_active(q)
        if route == "agents":
            return self._route_agents(q)
        if route == "all_messages":
            return self._route_all_messages(q)
        if route == "all_steps":
            return self._route_all_steps(q)
        assert run_id is not None
        if route == "tool":
            return self._route_tool(run_id)
        if route == "step_metrics":
            return self._route_step_metrics(run_id)
        if route == "steps":
            return self._route_steps(run_id, q)
        if route == "messages":
            return self._route_messages(run_id, q)
        return self._route_run(route, method, run_id, q)
