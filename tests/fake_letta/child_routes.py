"""The routes an enrichment reads: a run's steps and messages, tools, step metrics, agents."""

from __future__ import annotations

from tests.fake_letta.model import Step
from tests.fake_letta.query import Query
from tests.fake_letta.responses import (
    Response,
    check_path_id,
    check_run_id,
    detail_response,
    json_response,
    not_found,
)
from tests.fake_letta.shapes import bare_agent, step_messages, step_metrics_dict, tool_messages
from tests.fake_letta.store import RunStore
from tests.fake_letta.wire import to_us


class ChildRoutes(RunStore):
    """Handlers of the step, message, tool and agent reads."""

    def _route_steps(self, run_id: str, q: Query) -> Response:
        before = q.get_str("before")
        after = q.get_str("after")
        limit = q.get_int("limit", 100)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        q.get_choice("order_by", ("created_at",), "created_at")
        q.raise_if_invalid()
        check_run_id(run_id)
        with self._lock:
            run = self._run_for_route(run_id)
            self._materialise_lazy_steps(run)
            cursors: dict[str, Step] = {}
            for name, cursor_id in (("before", before), ("after", after)):
                if cursor_id:
                    entry = self._steps_by_id.get(cursor_id)
                    if entry is None:
                        return detail_response(404, f"No Step found with id {cursor_id}")
                    cursors[name] = entry[1]
            both = "before" in cursors and "after" in cursors
            if both and cursors["before"].us < cursors["after"].us:
                return detail_response(
                    400, "'before' reference must be later than 'after' reference"
                )
            steps = sorted(run.steps, key=lambda s: (s.us, s.seq))
            ascending = order == "asc"
            if not ascending:
                steps.reverse()
            # SqlalchemyBase.list_async, checked against a real 0.16.8 server
            # (tests/test_realserver_fake_parity.py): after = the next page; before = the
            # rows before X in this order, taken from the *start* of the list (not the
            # page adjacent to X); both = the rows between them (after < key < before in
            # either order), 2 x limit fetched and the middle `limit` kept.
            position = {id(s): i for i, s in enumerate(steps)}
            lo, hi = 0, len(steps)
            if both and not ascending:
                lo = _step_boundary(steps, cursors["before"], position, ascending, after=True)
                hi = _step_boundary(steps, cursors["after"], position, ascending, after=False)
            else:
                if "after" in cursors:
                    lo = _step_boundary(steps, cursors["after"], position, ascending, after=True)
                if "before" in cursors:
                    hi = _step_boundary(steps, cursors["before"], position, ascending, after=False)
            window = steps[lo:hi]
            if limit <= 0:
                window = []
            elif both:
                window = window[: 2 * limit]
                if len(window) > limit:
                    start = max(0, len(window) // 2 - limit // 2)
                    window = window[start : start + limit]
            else:
                window = window[:limit]
            return json_response(200, [s.data for s in window])

    def _route_messages(self, run_id: str, q: Query) -> Response:
        """A tool call message and its return per tool id of each step, oldest first;
        ``before``/``after`` are absolute on the message sequence, unknown ones 404 (§3.4)."""
        limit = q.get_int("limit", 100)
        order = q.get_choice("order", ("asc", "desc"), "asc")
        q.get_choice("order_by", ("created_at",), "created_at")
        before, after = q.get_str("before"), q.get_str("after")
        q.raise_if_invalid()
        check_run_id(run_id)
        with self._lock:
            messages = tool_messages(self._run_for_route(run_id), self._tools)
        index = {m["id"]: i for i, m in enumerate(messages)}
        low, high = 0, len(messages)
        for cursor, is_after in ((after, True), (before, False)):
            if cursor is None:
                continue
            if cursor not in index:
                return not_found("Message", cursor)
            if is_after:
                low = max(low, index[cursor] + 1)
            else:
                high = min(high, index[cursor])
        window = messages[low:high]
        page = window[:limit] if order == "asc" else list(reversed(window))[:limit]
        return json_response(200, page)

    def _route_all_messages(self, q: Query) -> Response:
        """``GET /v1/messages/``: every run's messages by insert sequence (the steps'),
        ``before``/``after`` absolute on it, unknown ones 404. 0.16.8 returns a ``desc``
        page in ascending order (``get_all_messages_recall_async`` reverses the rows it
        read); the cloud profile returns it newest first."""
        if not self.serves_messages_list:
            return detail_response(404, "Not Found")  # no such route: the router's own 404
        limit = q.get_int("limit", 100)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        before, after = q.get_str("before"), q.get_str("after")
        q.raise_if_invalid()
        with self._lock:
            bounds: list[tuple[tuple[int, int], bool]] = []
            for cursor, is_after in ((after, True), (before, False)):
                if cursor is None:
                    continue
                key = self._message_key(cursor)
                if key is None:
                    return not_found("Message", cursor)
                bounds.append((key, is_after))
            rows: list[tuple[tuple[int, int], dict[str, object]]] = []
            for run in self._runs.values():
                if not run.visible or not self._in_scope(run):
                    continue
                for step in run.steps:
                    if step.bulk:
                        continue
                    for index, message in enumerate(step_messages(run, step, self._tools)):
                        key = (step.seq, index)
                        if all((key > b) if is_after else (key < b) for b, is_after in bounds):
                            rows.append((key, message))
        rows.sort(key=lambda row: row[0], reverse=order == "desc")
        page = [message for _, message in rows[: max(0, limit)]]
        if order == "desc" and not self.cloud:
            page.reverse()
        return json_response(200, page)

    def _route_all_steps(self, q: Query) -> Response:
        """``GET /v1/steps/``: every run's steps by (created_at, id), ``start_date`` and
        ``end_date`` strict bounds, conventional cursors (unknown ones 404). 0.16.8
        answers 400 to every query (the route passes a bool as the order); the cloud
        profile serves it (``serves_steps_list``)."""
        limit = q.get_int("limit", 50)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        before, after = q.get_str("before"), q.get_str("after")
        start, end = q.get_str("start_date"), q.get_str("end_date")
        q.raise_if_invalid()
        if not self.serves_steps_list:
            return detail_response(
                400, "Argument order does not match type typing.Optional[str]: got bool"
            )
        with self._lock:
            keys: list[tuple[tuple[int, int], bool]] = []
            for cursor, is_after in ((after, True), (before, False)):
                if cursor is None:
                    continue
                entry = self._steps_by_id.get(cursor)
                if entry is None or not entry[0].visible:
                    return not_found("Step", cursor)
                keys.append(((entry[1].us, entry[1].seq), is_after))
            low = to_us(start) if start else None
            high = to_us(end) if end else None
            rows: list[tuple[tuple[int, int], dict[str, object]]] = []
            for run in self._runs.values():
                if not run.visible or not self._in_scope(run):
                    continue
                self._materialise_lazy_steps(run)
                for step in run.steps:
                    key = (step.us, step.seq)
                    if low is not None and step.us <= low or high is not None and step.us >= high:
                        continue
                    if all(_beyond(key, k, (is_after == (order == "asc"))) for k, is_after in keys):
                        rows.append((key, step.data))
        rows.sort(key=lambda row: row[0], reverse=order == "desc")
        return json_response(200, [data for _, data in rows[: max(0, limit)]])

    def _message_key(self, message_id: str) -> tuple[int, int] | None:
        """The (step seq, index) of one of ``step_messages``' ids, None when unknown."""
        body = message_id.removeprefix("message-")
        step_uuid, _, suffix = body.rpartition("-")
        entry = self._steps_by_id.get(f"step-{step_uuid}")
        if entry is None or not suffix.isdigit():
            return None
        run, step = entry
        if not run.visible:
            return None
        return step.seq, int(suffix)

    def _route_agents(self, q: Query) -> Response:
        # list_agents: order-relative cursors on (created_at, id), default limit 50,
        # newest first. A client that is not letta-client 1.x and sends no
        # include_relationships gets every relationship (memory blocks, tools, ...).
        before, after = q.get_str("before"), q.get_str("after")
        limit = q.get_int("limit", 50)
        order = q.get_choice("order", ("asc", "desc"), "desc")
        bare = q.get_list("include_relationships") is not None
        q.raise_if_invalid()
        with self._lock:
            rows = sorted(
                ((created, agent_id, body) for agent_id, (created, body) in self._agents.items()),
                reverse=order == "desc",
            )
            keys = {agent_id: index for index, (_, agent_id, _) in enumerate(rows)}
            # An unknown cursor is ignored, as the real lookup finds no row to compare.
            if after is not None and after in keys:
                rows = rows[keys[after] + 1 :]
            if before is not None and before in keys:
                rows = rows[: keys[before]]
            page = [body if not bare else bare_agent(body) for _, _, body in rows[:limit]]
        return json_response(200, page)

    def _route_tool(self, tool_id: str) -> Response:
        # ToolId path validator first (422), then ToolManager.get_tool_by_id_async, whose
        # ORM read raises NoResultFound -> 404 (the route's own "is None" check is dead).
        check_path_id("tool_id", "tool", tool_id)
        with self._lock:
            tool = self._tools.get(tool_id)
            if tool is None:
                return not_found("Tool", tool_id)
            return json_response(200, tool)

    def _route_step_metrics(self, step_id: str) -> Response:
        # StepId path validator (422), then StepMetrics ORM read: 404 both for an unknown
        # step and for a step without a step_metrics row.
        check_path_id("step_id", "step", step_id)
        with self._lock:
            run, step = self._steps_by_id.get(step_id) or (None, None)
            if run is None or step is None or not run.visible or step.timings is None:
                return not_found("StepMetrics", step_id)
            if not self._in_scope(run):
                return not_found("StepMetrics", step_id)
            return json_response(200, step_metrics_dict(step_id, run, step.timings))


def _step_boundary(
    steps: list[Step],
    cursor: Step,
    position: dict[int, int],
    ascending: bool,
    *,
    after: bool,
) -> int:
    """Index in ``steps`` (already in output order) just past / at the cursor."""
    if id(cursor) in position:
        index = position[id(cursor)]
        return index + 1 if after else index
    # A step of another run: compare keys, as the SQL does.
    key = (cursor.us, cursor.seq)

    def beyond(step: Step) -> bool:
        step_key = (step.us, step.seq)
        return step_key > key if ascending else step_key < key

    for index, step in enumerate(steps):
        if beyond(step):
            return index
    return len(steps)


def _beyond(key: tuple[int, int], cursor: tuple[int, int], greater: bool) -> bool:
    """A conventional cursor: after = further in the order, before = back in it."""
    return key > cursor if greater else key < cursor
