"""Faults: HTTP failures armed by path, a request budget, and the bodies they answer with."""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from tests.fake_letta.responses import Response, detail_response
from tests.fake_letta.shapes import REQUEST_CONFIG_JSON
from tests.throttling import TokenBucket

FAULT_KINDS: Final = frozenset(
    {"408", "409", "500", "502", "503", "429", "timeout", "hang", "truncated", "reset"}
    | {"garbage", "endless", "huge"}
)


@dataclass(slots=True)
class Fault:
    """One armed fault: ``kind`` for the next ``remaining`` requests whose path matches."""

    kind: str
    remaining: int
    path_prefix: str
    retry_after: float | int | str | None
    delay: float | None
    size: int
    path_regex: re.Pattern[str] | None = None  # when set, replaces path_prefix
    retry_after_ms: int | None = None

    def matches(self, path: str) -> bool:
        if self.path_regex is not None:
            return self.path_regex.search(path) is not None
        return path.startswith(self.path_prefix)


class FaultPlan:
    """Control API: the faults armed for the next requests, a request budget, answers at
    random, and one answer to everything."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fault_lock = threading.Lock()
        self._faults: list[Fault] = []
        self._monotonic = monotonic
        self._budget: TokenBucket | None = None
        self.throttled = 0  # requests answered 429 for exceeding the budget
        self._random: list[tuple[int, float, str | None]] = []
        self._rng = random.Random(0)
        self.random_answers = 0  # requests answered by `answer_at_random`
        self._everything: int | None = None

    def answer_everything(self, status: int | None) -> None:
        """Answer every request (health included) with `status` and Letta's usual body
        for it; None answers normally again. A wrong key (401), a key without access
        (403), a broken server (500)."""
        self._everything = status

    def answer_at_random(
        self, status: int, probability: float, *, retry_after: str | None = None, seed: int = 0
    ) -> None:
        """Answer each request with `status` with `probability`, whatever the rate (a key
        shared with a busy application, a flaky proxy); ``retry_after`` is sent as
        ``Retry-After``. Several statuses add up; probability 0 removes `status`."""
        with self._fault_lock:
            self._random = [entry for entry in self._random if entry[0] != status]
            if probability > 0:
                self._random.append((status, probability, retry_after))
            self._rng = random.Random(seed)

    def _planned_answer(self) -> Response | None:
        """The answer one status to everything, the budget or chance give the next
        request, before its path is looked at; None: answer it normally."""
        if self._everything is not None:
            return _status_response(self._everything, None)
        wait_ms = self._over_budget()
        if wait_ms is not None:
            throttled = FAULT_RESPONSES["429"]
            return Response(429, throttled.body, headers=(("retry-after-ms", str(wait_ms)),))
        if not self._random:
            return None
        with self._fault_lock:
            draw = self._rng.random()
            for status, probability, retry_after in self._random:
                if draw < probability:
                    self.random_answers += 1
                    return _status_response(status, retry_after)
                draw -= probability
        return None

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        path_prefix: str = "/v1/runs",
        retry_after: float | int | str | None = None,
        delay: float | None = None,
        size: int = 50_000_000,
        path_regex: str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        """Make the next ``times`` requests whose path starts with ``path_prefix`` fail.

        With ``path_regex``, the fault instead targets requests whose path matches it
        (``re.search`` on the path without the query string), e.g. ``r"/usage$"`` for
        every run's usage or ``r"^/v1/tools/"`` for tool lookups; ``path_prefix`` is then
        ignored.

        Kinds: ``"408"``, ``"409"`` (0.16.8's answer to a database lock conflict),
        ``"500"``, ``"502"``, ``"503"``, ``"429"`` (``Retry-After`` header when
        ``retry_after`` is given, ``retry-after-ms`` with ``retry_after_ms``);
        ``"timeout"`` (wait ``delay`` s, default 30, then answer normally: the client
        should give up first); ``"hang"`` (never answer until :meth:`stop`);
        ``"truncated"`` (the real response with the full Content-Length
        but only half the body, then close); ``"reset"`` (TCP RST, no answer);
        ``"garbage"`` (200 ``application/json`` that is not JSON); ``"endless"`` (200
        chunked JSON-looking bytes until the client goes away); ``"huge"`` (200 valid JSON
        array of about ``size`` bytes). Faults queue in order; the server survives all.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if times < 1:
            raise ValueError("times must be >= 1")
        pattern = re.compile(path_regex) if path_regex is not None else None  # fail early
        with self._fault_lock:
            self._faults.append(
                Fault(kind, times, path_prefix, retry_after, delay, size, pattern, retry_after_ms)
            )

    def set_request_budget(self, per_s: float | None, *, burst: float = 1.0) -> None:
        """Answer 429 with ``retry-after-ms`` (the wait for the next token) to requests
        beyond ``per_s`` a second, a bucket of ``burst`` requests; None lifts the budget.
        How a shared API that publishes no limit answers a client that is too fast."""
        with self._fault_lock:
            self._budget = (
                TokenBucket(per_s, burst=burst, now=self._monotonic())
                if per_s is not None
                else None
            )

    def _over_budget(self) -> int | None:
        """None when the request fits the budget (taking a token), else the wait in ms."""
        if self._budget is None:
            return None
        with self._fault_lock:
            if self._budget is None:
                return None
            wait_s = self._budget.take(self._monotonic())
            if wait_s is None:
                return None
            self.throttled += 1
            return max(1, math.ceil(wait_s * 1000))

    def clear_faults(self) -> None:
        """Drop every fault not yet consumed."""
        with self._fault_lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        if not self._faults:
            # Checked before taking the lock: with no faults armed (every benchmark) the
            # request threads would otherwise contend on the store lock one extra time.
            return None
        with self._fault_lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


FAULT_RESPONSES: Final[dict[str, Response]] = {
    "500": Response(500, b'{"detail":"An unknown error occurred"}'),
    "502": Response(
        502,
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n",
        "text/html",
    ),
    "503": Response(503, b'{"detail":"Service temporarily unavailable"}'),
    "429": Response(429, b'{"detail":"Too Many Requests"}'),
    "408": Response(408, b'{"detail":"Request Timeout"}'),
    "409": Response(409, b'{"detail":"Database lock conflict, please retry"}'),
}

# One realistic Run used as filler by the "endless" and "huge" faults.
SAMPLE_RUN: Final = (
    b'{"id":"run-9721adf5-473f-445b-8263-3318cd6e7a1b","status":"completed",'
    b'"created_at":"2026-11-23T12:00:40.780790Z","completed_at":"2026-11-23T12:00:41.423574",'
    b'"agent_id":"agent-4d0e970e-e87f-4399-be4e-e59a14d631e3","conversation_id":null,'
    b'"base_template_id":null,"background":false,"metadata":{"run_type":"send_message"},'
    b'"request_config":' + REQUEST_CONFIG_JSON.encode() + b',"stop_reason":"end_turn",'
    b'"callback_url":null,"callback_sent_at":null,"callback_status_code":null,'
    b'"callback_error":null,"ttft_ns":null,"total_duration_ns":713351168}'
)


def _status_response(status: int, retry_after: str | None) -> Response:
    known = FAULT_RESPONSES.get(str(status))
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    if known is not None:
        return Response(known.status, known.body, known.content_type, headers)
    details = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    resp = detail_response(status, details.get(status, "An unknown error occurred"))
    return Response(resp.status, resp.body, resp.content_type, headers)
