"""An OpenAI-compatible chat-completions stand-in server for tests that drive the real litellm path.

    with StubLLM(latency_s=0.2) as stub:
        stub.fail("429", retry_after=1)        # the next request gets 429 + Retry-After: 1
        stub.fail("500", "500")                # the two after that get 500
        gateway = LLMGateway(LLMConfig(model="openai/stub", api_base=stub.api_base, api_key_env=...))
        ...
        assert stub.count == 4

Faults are consumed one per request, in order: `429` (optional Retry-After), `500`, `503`, `401`, `403`, `400`, `404`,
`hang` (sleep `hang_s` then drop the connection, for client timeouts), `malformed` (200 with a non-JSON body) and
`drop` (close the connection without a reply). `reply` chooses the answer from the request's messages; `inject`,
when set, may choose a fault for a request with none queued (from its body and the number of requests so far).
Usage: prompt_tokens = words in all messages, completion_tokens = words in the reply (totals in `stub.usage`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Messages = list[dict[str, Any]]
FAULTS = ("429", "500", "503", "401", "403", "400", "404", "hang", "malformed", "drop")


def default_reply(messages: Messages) -> str:
    return f"echo: {messages[-1]['content']}"


def count_words(text: str) -> int:
    return len(str(text).split())


@dataclass
class Fault:
    kind: str
    retry_after: float | None = None


@dataclass
class StubUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0


@dataclass
class StubLLM:
    """Chat-completions server on 127.0.0.1 (a free port); thread-safe counters; use as a context manager."""

    latency_s: float = 0.0
    reply: Callable[[Messages], str] = default_reply
    hang_s: float = 5.0
    inject: Callable[[dict[str, Any], int], str | None] | None = None
    count: int = 0
    """Requests received on /v1/chat/completions (every attempt, faulty or not)."""
    usage: StubUsage = field(default_factory=StubUsage)
    """Token totals of the successful replies sent."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    """JSON bodies received, in arrival order."""
    max_in_flight: int = 0
    api_keys: set[str] = field(default_factory=set)
    """Bearer keys the requests carried (to check that a configured secret reached the provider)."""

    def __post_init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._generation = 0
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------------------------------------
    def fail(self, *kinds: str, retry_after: float | None = None) -> StubLLM:
        """Queue faults for the next requests, in order."""
        for kind in kinds:
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; known: {FAULTS}")
            with self._lock:
                self._faults.append(Fault(kind, retry_after))
        return self

    def reset(self) -> None:
        with self._lock:
            self.count, self.usage, self.requests, self.max_in_flight = 0, StubUsage(), [], 0
            self._faults.clear()
            # Requests still hanging from before belong to the old generation: release them, stop counting them.
            self._release.set()
            self._release, self._generation, self._in_flight = threading.Event(), self._generation + 1, 0

    @property
    def port(self) -> int:
        assert self._server is not None, "stub not started"
        return self._server.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubLLM:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body, written apart, wait ~40 ms for a delayed ACK

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = self.rfile.read(length)
                except ConnectionResetError:
                    return
                if len(body) < length:  # the client died mid-request: nothing was asked, nothing is recorded
                    self.close_connection = True
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Bearer "):
                    with stub._lock:
                        stub.api_keys.add(auth.removeprefix("Bearer "))
                stub._serve(self, json.loads(body or b"{}"))

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------------------------
    def _serve(self, handler: Any, body: dict[str, Any]) -> None:
        with self._lock:
            self.count += 1
            self.requests.append(body)
            fault = self._faults.popleft() if self._faults else None
            if fault is None and self.inject is not None:
                kind = self.inject(body, self.count)
                fault = Fault(kind) if kind else None
            generation, release = self._generation, self._release
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            self._answer(handler, body, fault, release)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) or was killed
        finally:
            with self._lock:
                if generation == self._generation:
                    self._in_flight -= 1

    def _answer(self, handler: Any, body: dict[str, Any], fault: Fault | None, release: threading.Event) -> None:
        kind = fault.kind if fault else None
        if kind in ("hang", "drop"):
            if kind == "hang":
                release.wait(self.hang_s)
            handler.close_connection = True
            handler.connection.close()
            return
        if kind == "malformed":
            handler._send(200, b'{"id": "chatcmpl-broken", "choices": [ {"mess')
            return
        if kind is not None:
            status = int(kind)
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault and fault.retry_after is not None else {}
            error = {"message": f"stub fault {status}", "type": "stub_error", "code": str(status)}
            handler._send(status, {"error": error}, headers)
            return
        messages = body.get("messages", [])
        text = self.reply(messages)
        prompt = sum(count_words(m.get("content", "")) for m in messages)
        completion = count_words(text)
        with self._lock:
            self.usage.prompt_tokens += prompt
            self.usage.completion_tokens += completion
            self.usage.replies += 1
        handler._send(
            200,
            {
                "id": f"chatcmpl-stub-{self.count}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },  # fmt: skip
            },
        )


if __name__ == "__main__":  # manual use: python e2ep/testing/llm_standin.py [latency_s]
    import sys

    with StubLLM(latency_s=float(sys.argv[1]) if len(sys.argv) > 1 else 0.0) as server:
        print(server.api_base, flush=True)
        threading.Event().wait()
