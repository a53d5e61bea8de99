"""The HTTP/1.1 server in front of the fake: keep-alive, connection tracking, faults on
the wire.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.fake_letta.faults import FAULT_RESPONSES, SAMPLE_RUN, Fault
from tests.fake_letta.responses import Response, detail_response

if TYPE_CHECKING:
    from tests.fake_letta.fake import FakeLetta


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The ``Date`` header value, formatted once per second rather than per response."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date_cache = (now, text)
    return text


class FakeServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that keeps track of its connections so stop() can end them.

    Keep-alive handler threads otherwise sit in ``readline`` forever; shutting their
    sockets down makes them return, so no thread or socket outlives ``stop()``.
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(
        self, address: tuple[str, int], handler: type[RequestHandler], fake: FakeLetta
    ) -> None:
        super().__init__(address, handler)
        self.fake = fake
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._conn_threads: set[threading.Thread] = set()
        self._reset_sockets: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"{self.fake.name}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._connections.add(request)
            # Threads stay listed until they are dead (a thread that removed itself could
            # still be running when stop() looks), so prune finished ones here instead.
            self._conn_threads = {t for t in self._conn_threads if t.is_alive()}
            self._conn_threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._conn_lock:
                self._connections.discard(request)
            self.shutdown_request(request)

    def mark_for_reset(self, sock: socket.socket) -> None:
        # Linger 0 + close without a prior FIN makes the kernel send a RST.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._reset_sockets.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            reset = request in self._reset_sockets
            self._reset_sockets.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (faults, timeouts) are expected: stay quiet.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | ValueError):
            return
        super().handle_error(request, client_address)

    def close_all_connections(self) -> None:
        with self._conn_lock:
            sockets = list(self._connections)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def join_connection_threads(self, timeout: float) -> None:
        # Called after shutdown(): no new connection threads can appear any more.
        deadline = time.monotonic() + timeout
        with self._conn_lock:
            threads = list(self._conn_threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class RequestHandler(BaseHTTPRequestHandler):
    """One connection: each request goes through the budget, then the armed faults, then
    the fake's dispatch."""

    protocol_version = "HTTP/1.1"
    server: FakeServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK
        # add ~40 ms to every small response (uvicorn sets it too).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "uvicorn"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks do not want one line per request on stderr

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        try:
            length = int(self.headers.get("content-length") or 0)
            if length > 0:
                self.rfile.read(length)  # drain the body so keep-alive stays in sync
            split = urlsplit(self.path)
            path, raw_query = split.path, split.query
            query = parse_qs(raw_query, keep_blank_values=True)
            planned = fake._planned_answer()
            if planned is not None:
                fake._record(method, path, query, planned.status)
                self._send(planned)
                return
            fault = fake._take_fault(path)
            if fault is not None and self._serve_fault(fault, method, path, raw_query, query):
                return
            resp = self._compute(method, path, raw_query, query)
            if fault is None or fault.kind != "timeout":
                fake._record(method, path, query, resp.status)
            self._send(resp)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to do

    def _compute(
        self,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, list[str]] | None = None,
    ) -> Response:
        fake = self.server.fake
        host = self.headers.get("host") or f"{fake._host}:{fake.port}"
        try:
            # The query dict is only read by the routes, never changed, so one parse
            # serves both the request log and the dispatch.
            return fake._dispatch(method, path, raw_query, self.headers, host, query)
        except Exception:  # a bug in the fake must not take the server down
            return detail_response(500, "An unknown error occurred")

    def _send(self, resp: Response, body: bytes | None = None) -> None:
        # The same bytes as send_response/send_header/end_headers plus a body write, but
        # in one sendall: two small writes cost a second syscall and a second segment
        # per response, the largest share of the fake's CPU per request.
        payload = resp.body if body is None else body
        status = resp.status
        reason = self.responses[status][0] if status in self.responses else ""
        lines = [
            f"{self.protocol_version} {status} {reason}",
            f"Server: {self.version_string()}",
            f"Date: {_http_date()}",
        ]
        if resp.content_type is not None:
            lines.append(f"content-type: {resp.content_type}")
        lines.append(f"content-length: {len(resp.body)}")
        lines.extend(f"{name}: {value}" for name, value in resp.headers)
        lines.append("\r\n")
        self.log_request(status)
        self.wfile.write("\r\n".join(lines).encode("latin-1", "strict") + payload)

    def _serve_fault(
        self,
        fault: Fault,
        method: str,
        path: str,
        raw_query: str,
        query: dict[str, list[str]],
    ) -> bool:
        """Answer according to ``fault``. Returns False when the request should then be
        answered normally (``timeout`` that ran out its delay)."""
        fake = self.server.fake
        stopping = fake._stopping
        kind = fault.kind
        if kind in FAULT_RESPONSES:
            resp = FAULT_RESPONSES[kind]
            extra: tuple[tuple[str, str], ...] = ()
            if fault.retry_after is not None:
                extra += (("retry-after", str(fault.retry_after)),)
            if fault.retry_after_ms is not None:
                extra += (("retry-after-ms", str(fault.retry_after_ms)),)
            resp = Response(resp.status, resp.body, resp.content_type, extra)
            fake._record(method, path, query, resp.status)
            self._send(resp)
            return True
        if kind == "timeout":
            fake._record(method, path, query, 0)
            delay = 30.0 if fault.delay is None else fault.delay
            if stopping.wait(delay):
                self.close_connection = True
                return True
            return False  # answer normally, long after the client gave up
        if kind == "hang":
            fake._record(method, path, query, 0)
            stopping.wait()
            self.close_connection = True
            return True
        if kind == "reset":
            fake._record(method, path, query, 0)
            self.server.mark_for_reset(self.connection)
            self.close_connection = True
            return True
        if kind == "garbage":
            fake._record(method, path, query, 200)
            self._send(Response(200, b"<!DOCTYPE html><html><body>not json {[</body></html>"))
            return True
        self.close_connection = True
        if kind == "truncated":
            resp = self._compute(method, path, raw_query)
            fake._record(method, path, query, resp.status)
            self._send(resp, body=resp.body[: len(resp.body) // 2])
            return True
        if kind == "endless":
            fake._record(method, path, query, 200)
            self._send_endless(stopping)
            return True
        if kind == "huge":
            fake._record(method, path, query, 200)
            self._send_huge(fault.size)
            return True
        raise AssertionError(kind)

    def _send_endless(self, stopping: threading.Event) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"1\r\n[\r\n")
        item = SAMPLE_RUN + b","
        chunk = item * 64
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        # Runs until the client disconnects (write raises) or stop() shuts the socket.
        while not stopping.is_set():
            self.wfile.write(frame)

    def _send_huge(self, size: int) -> None:
        item = SAMPLE_RUN
        count = max(1, (size - 2) // (len(item) + 1))
        total = 2 + count * len(item) + (count - 1)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(total))
        self.end_headers()
        self.wfile.write(b"[" + item)
        batch = 1000
        block = (b"," + item) * batch
        remaining = count - 1
        while remaining >= batch:
            self.wfile.write(block)
            remaining -= batch
        self.wfile.write((b"," + item) * remaining + b"]")
