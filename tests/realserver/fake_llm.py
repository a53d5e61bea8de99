"""A scripted OpenAI-compatible LLM for a real Letta server, plus a callback receiver.

Letta's OpenAI provider is pointed at it (``OPENAI_BASE_URL``). What a chat completion
answers is steered by a directive in the newest user message that has one, written as
``[[key=value ...]]``:

* ``tools=N`` — call a tool for the first N steps after that message, then answer;
* ``loop`` — always call a tool (ends by ``max_steps``);
* ``tool=NAME`` — the tool to call (default: the first of ``TOOL_PREFERENCE`` offered);
* ``fail=500|429|400`` — answer that HTTP error (after ``after`` good calls, default 0);
* ``malformed`` — a 200 whose body is not JSON; ``empty`` — no content and no tool call;
* ``length`` — ``finish_reason: length``;
* ``delay=S`` — sleep S seconds before every answer (runs that stay in flight).

Every answer carries ``usage`` (with cached and reasoning details), so token totals can
be checked against Letta's ``steps`` table. Every response closes its connection: Letta
builds a new OpenAI client per call and never closes it, and kept-alive sockets later
closed by the garbage collector stall asyncpg (see the project's real-server notes).

``POST /callbacks/<code>`` records the JSON body and answers HTTP ``<code>``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

MODEL: Final = "fake-llm"
EMBEDDING_DIM: Final = 1536
# Read-only built-in tools first: calling them changes no agent state.
TOOL_PREFERENCE: Final = ("conversation_search", "archival_memory_search")
PROMPT_BASE: Final = 100
COMPLETION_TOKENS: Final = 7
CACHED_TOKENS: Final = 3
REASONING_TOKENS: Final = 2
_DIRECTIVE = re.compile(r"\[\[([^\]]*)\]\]")


def directive_of(messages: list[dict[str, Any]]) -> tuple[dict[str, str], int]:
    """The newest user directive and how many tool results follow it."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") != "user":
            continue
        match = _DIRECTIVE.search(_text(message.get("content")))
        if match:
            tool_results = sum(1 for m in messages[index + 1 :] if m.get("role") == "tool")
            return _parse(match.group(1)), tool_results
    return {}, 0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _parse(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in body.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


class FakeLLM:
    """The HTTP server; ``calls`` counts chat completions, ``callbacks`` holds bodies."""

    def __init__(self) -> None:
        self.calls = 0
        self.callbacks: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record_call(self) -> None:
        with self._lock:
            self.calls += 1

    def record_callback(self, code: int, body: dict[str, Any]) -> None:
        with self._lock:
            self.callbacks.append((code, body))

    def answer(self, request: dict[str, Any]) -> tuple[int, Any]:
        """(HTTP status, body) for one chat completion: a dict, or a str sent verbatim."""
        self.record_call()
        directive, tool_results = directive_of(request.get("messages", []))
        if "delay" in directive:
            time.sleep(float(directive["delay"]))
        if "fail" in directive and tool_results >= int(directive.get("after") or 0):
            code = int(directive["fail"])
            return code, {"error": {"message": f"scripted {code}", "type": "server_error"}}
        if "malformed" in directive:
            return 200, "this is not json {"
        offered = [t["function"]["name"] for t in request.get("tools") or []]
        wants_tool = "loop" in directive or tool_results < int(directive.get("tools") or 0)
        tool = directive.get("tool") or next((t for t in TOOL_PREFERENCE if t in offered), None)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = "stop"
        if "empty" in directive:
            pass  # content null and no tool call: Letta's "empty response"
        elif wants_tool and tool:
            message["tool_calls"] = [_tool_call(tool)]
            finish = "tool_calls"
        else:
            message["content"] = "Done."
            if "length" in directive:
                finish = "length"
        prompt = PROMPT_BASE + len(request.get("messages", []))
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", MODEL),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": prompt + COMPLETION_TOKENS,
                "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
                "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            },
        }


def _tool_call(name: str) -> dict[str, Any]:
    arguments = {"query": "hello"} if "search" in name else {}
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def sse_chunks(completion: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A non-streaming completion as OpenAI stream chunks (usage in the last one)."""
    base = {k: completion[k] for k in ("id", "created", "model")}
    base["object"] = "chat.completion.chunk"
    choice = completion["choices"][0]
    message = choice["message"]
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
    if message.get("content"):
        yield {**base, "choices": [{"index": 0, "delta": {"content": message["content"]}}]}
    for index, call in enumerate(message.get("tool_calls") or []):
        delta = {"tool_calls": [{"index": index, **call}]}
        yield {**base, "choices": [{"index": 0, "delta": delta}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]}
    yield {**base, "choices": [], "usage": completion["usage"]}


def _handler_for(llm: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 plus "Connection: close": one request per connection, always.
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                models = [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]
                self._json(200, {"object": "list", "data": models})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {}
            if self.path.startswith("/callbacks/"):
                code = int(self.path.rsplit("/", 1)[-1])
                llm.record_callback(code, body)
                self._json(code, {"ok": code < 400})
            elif self.path.endswith("/embeddings"):
                self._json(200, _embeddings(body))
            elif self.path.endswith("/chat/completions"):
                code, answer = llm.answer(body)
                if isinstance(answer, str):
                    self._raw(code, answer.encode(), "application/json")
                elif body.get("stream") and code == 200:
                    self._stream(answer)
                else:
                    self._json(code, answer)
            else:
                self._json(404, {"error": {"message": "not found"}})

        def _json(self, code: int, obj: Any) -> None:
            self._raw(code, json.dumps(obj).encode(), "application/json")

        def _raw(self, code: int, payload: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)

        def _stream(self, completion: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in sse_chunks(completion):
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input") or [""]
    if isinstance(inputs, str):
        inputs = [inputs]
    dim = int(body.get("dimensions") or EMBEDDING_DIM)
    data = []
    for index, text in enumerate(inputs):
        seed = sum(str(text).encode()) % 97 + 1
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": [((seed * (i + 1)) % 101) / 101.0 for i in range(dim)],
            }
        )
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
