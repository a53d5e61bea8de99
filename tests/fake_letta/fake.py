"""FakeLetta: the store, its control API and the HTTP server, started and stopped as one."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Final

from tests.fake_letta.approvals import Approvals
from tests.fake_letta.constants import Backend, Semantics, UnknownCursor
from tests.fake_letta.dispatch import Dispatcher
from tests.fake_letta.faults import FaultPlan
from tests.fake_letta.server import FakeServer, RequestHandler
from tests.fake_letta.steps import StepsAndTools
from tests.fake_letta.store import RunStore
from tests.fake_letta.truth import Truths
from tests.fake_letta.workload import Workload

_INSTANCE_IDS: Final = itertools.count(1)


class FakeLetta(Dispatcher, Approvals, Workload, StepsAndTools, Truths, FaultPlan):
    """A thread-safe in-memory Letta runs store plus an HTTP server in front of it.

    Args:
        semantics: ``"letta-0.16.8"`` reproduces the swapped runs-list cursors of §4.2
            (``before`` = next page in both orders, ``after`` = the rows before X in the
            current order, taken from the start of the list). ``"conventional"`` gives
            time-based cursors: ``after=X`` = rows newer than X, ``before=X`` = rows older
            than X, always the ``limit`` rows adjacent to X. So ``asc`` + ``after`` and
            ``desc`` + ``before`` are the next page, ``asc`` + ``before`` and ``desc`` +
            ``after`` the previous page, and §4.3 holds: ``desc`` + ``before`` walks
            backwards under both semantics, and the probe ``order=asc&limit=1&after=A``
            answers ``[B]``. ``"relative"`` gives cursors relative to the sort order,
            as the cloud SDK documents them and the steps list behaves (§4.6, §9):
            ``after`` = the next page, ``before`` = the previous page, in either order, and
            an unknown cursor is 404. There ``desc`` + ``before`` walks *newer*.
            :meth:`set_semantics` changes it while serving (a server upgraded between
            two polls).
        unknown_cursor: what a cursor that names no visible run does: ``"ignore"``
            restarts the list from the head (§4.4), ``"404"`` answers 404 (§4.6).
            Default: ``"404"`` for ``"relative"``, else ``"ignore"``.
        backend: ``"postgres"`` compares ``(created_at, id)`` exactly. ``"sqlite"``
            reproduces §4.5: the cursor's timestamp is cut to whole seconds and compared
            as a string with the stored microsecond strings, and timestamps serialise
            naive (no ``Z``), as they do on a SQLite-backed server.
        password: secure mode (§1.2). Every request except health/ready needs
            ``Authorization: Bearer <password>`` or ``X-BARE-PASSWORD: password
            <password>``, else 401 ``{"detail":"Unauthorized"}``.
        require_user_id: validate the ``user_id`` header when present (400 unless it
            matches ``user-<uuid4>``), as the real ``get_headers`` dependency does.
        cloud: the Letta Cloud profile (assumed, not captured: the cloud's source is not
            public). ``/v1/runs/{id}/metrics`` is absent (404 ``Not Found``, in no
            version of the SDK's api.md; ``serves_run_metrics`` turns it back on), and
            :meth:`set_request_budget` models its undocumented rate limit. ``password`` is
            the API key and only ``Authorization: Bearer`` is
            accepted; runs created with a ``project_id`` belong to that project, and a
            request with ``X-Project-Id`` sees only its project's runs (lists, GET, every
            sub-route, step metrics), while one without the header sees them all. Steps
            carry their run's ``project_id`` (as letta-client's ``Step`` documents).
            ``honour_project_header = False`` models a server that ignores the header.
            ``serves_messages_list = False`` (either profile) answers ``GET
            /v1/messages/`` with 404, as a server without the route would;
            ``serves_steps_list`` (default: the cloud profile) serves ``GET /v1/steps/``,
            else it answers 400 as 0.16.8 does.
            Every request's ``X-Project-Id`` is logged in :attr:`project_headers`.
        clock: wall-clock source in epoch seconds (default ``time.time``); drives default
            ``created_at``/``completed_at`` values and the visibility of metrics.
        host, port: where to listen; port 0 picks a free ephemeral port.
    """

    def __init__(
        self,
        *,
        semantics: Semantics = "letta-0.16.8",
        backend: Backend = "postgres",
        unknown_cursor: UnknownCursor | None = None,
        password: str | None = None,
        require_user_id: bool = True,
        clock: Callable[[], float] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cloud: bool = False,
    ) -> None:
        if backend not in ("postgres", "sqlite"):
            raise ValueError(f"unknown backend {backend!r}")
        RunStore.__init__(self, backend=backend, clock=clock or time.time, cloud=cloud)
        FaultPlan.__init__(self, clock or time.monotonic)
        # Prefix of every thread this instance starts, so tests can check for leftovers.
        self.name = f"fake-letta-{next(_INSTANCE_IDS)}"
        self.password = password
        self.require_user_id = require_user_id
        self.honour_project_header = True
        # Letta Cloud's SDK documents no /v1/runs/{id}/metrics: the profile lacks it.
        self.serves_run_metrics = not cloud
        # GET /v1/messages/ (every run's messages); False answers 404 like an older server.
        self.serves_messages_list = True
        # GET /v1/steps/: the cloud serves it; 0.16.8 answers 400 to every query.
        self.serves_steps_list = cloud
        self._host = host
        self._port = port
        self.set_semantics(semantics, unknown_cursor)
        self._server: FakeServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeLetta:
        """Bind the listening socket and serve in a daemon thread. Returns ``self``."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = FakeServer((self._host, self._port), RequestHandler, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-serve",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release hung/slow/endless requests, close every socket."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes "hang", "timeout" and "endless" handlers
        server.shutdown()
        server.close_all_connections()
        server.join_connection_threads(timeout=5.0)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeLetta:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeLetta is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self._host}:{self.port}"

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[tuple[str, str, dict[str, list[str]], int]]:
        """A copy of ``(method, path, query, status_code)`` for every request served.

        ``query`` maps each parameter to all its values. ``status_code`` is 0 for
        faults that never deliver a response in time (``hang``, ``reset``, ``timeout``).
        """
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._requests.clear()
            self._project_headers.clear()

    @property
    def project_headers(self) -> list[str | None]:
        """The ``X-Project-Id`` of every request (None when absent); cloud profile only."""
        with self._lock:
            return list(self._project_headers)

    def _record(self, method: str, path: str, query: dict[str, list[str]], status: int) -> None:
        with self._lock:
            self._requests.append((method, path, query, status))
