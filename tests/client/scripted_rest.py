"""A real HTTP/1.1 server on loopback whose answers each test scripts, for Core's REST API.

For answers the Core emulator cannot give: bodies that are not JSON, odd fields, a gateway's
status codes, a connection dropped mid-call. It runs ``http.server`` in its own threads, so
blocking and asyncio clients both talk to it over real sockets, and it records every request it
received (method, the raw path as sent, query, headers, body, connection) so tests can assert on
what the client actually sent.
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    """Answer with this status and body: a JSON-able value is sent as JSON, ``bytes`` as they are."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` on the server, then give ``answer``."""

    seconds: float
    answer: Any


@dataclass(frozen=True)
class Trickle:
    """Send ``reply`` slowly: headers at once, then its body ``chunk`` bytes every ``interval``
    seconds (an upstream stalling behind a proxy), each piece well within a per-read timeout."""

    reply: Reply
    chunk: int = 16
    interval: float = 0.1


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering (the request did reach the server)."""


@dataclass(frozen=True)
class Received:
    """One request as the server read it."""

    method: str
    path: str  # the raw path as sent, still percent-encoded, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    peer: str  # the client connection (host:port) it arrived on

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Answer = Any  # a Reply, Trickle, Delay, Drop, or a callable(Received) -> Answer


class ScriptedRest:
    """``with ScriptedRest() as server:`` starts it; ``server.url`` is ``http://127.0.0.1:PORT``.

    Script answers per route, ``"GET /api/v1/executions/exec-1"`` (method and raw path, no query),
    or for every route with ``"*"``. A route with nothing scripted answers 599, which no client
    maps to anything, so a test that forgets a route fails loudly.
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._queues: dict[str, collections.deque[Answer]] = collections.defaultdict(collections.deque)
        self._defaults: dict[str, Answer] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        #: Set when a client hung up while a Trickle's body was still being sent.
        self.hung_up_mid_body = threading.Event()

    # -- scripting --------------------------------------------------------------------------

    def queue(self, route: str, *answers: Answer) -> None:
        """Answer the next calls of ``route`` with these, in order, before its default."""
        with self._lock:
            self._queues[route].extend(answers)

    def default(self, route: str, answer: Answer) -> None:
        """Answer every call of ``route`` with this once its queue is empty."""
        with self._lock:
            self._defaults[route] = answer

    def received(self, route: str | None = None) -> list[Received]:
        """Requests received so far (of one route, or all)."""
        with self._lock:
            return [item for item in self._received if route is None or item.route == route]

    def count(self, route: str | None = None) -> int:
        """How many requests arrived (of one route, or all)."""
        return len(self.received(route))

    def peers(self) -> set[str]:
        """Distinct client connections requests arrived on."""
        return {item.peer for item in self.received()}

    def _next_answer(self, request: Received) -> Answer:
        with self._lock:
            self._received.append(request)
            for key in (request.route, "*"):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
                if key in self._defaults:
                    return self._defaults[key]
        return Reply(599, {"error": f"nothing scripted for {request.route}"})

    # -- serving ----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Core's Cowboy
            # Headers and body go out in two writes: with Nagle on, the body waits ~40 ms for an ACK.
            disable_nagle_algorithm = True

            def handle(self) -> None:
                if isinstance(self.connection, ssl.SSLSocket) and not _handshake(self.connection):
                    self.close_connection = True
                    return
                super().handle()

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                target = urlsplit(self.path)
                request = Received(
                    method=self.command,
                    path=target.path,
                    query=parse_qs(target.query, keep_blank_values=True),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=body,
                    peer=f"{self.client_address[0]}:{self.client_address[1]}",
                )
                answer = server._next_answer(request)
                while True:
                    if isinstance(answer, Delay):
                        time.sleep(answer.seconds)
                        answer = answer.answer
                    elif callable(answer) and not isinstance(answer, (Reply, Drop, Trickle)):
                        answer = answer(request)
                    else:
                        break
                if isinstance(answer, Drop):
                    self.close_connection = True
                    self.connection.close()
                    return
                if isinstance(answer, Trickle):
                    self._reply(answer.reply, chunk=answer.chunk, interval=answer.interval)
                else:
                    self._reply(answer)

            def _reply(self, reply: Reply, *, chunk: int = 0, interval: float = 0.0) -> None:
                if isinstance(reply.body, bytes):
                    payload, content_type = reply.body, "text/plain; charset=utf-8"
                elif reply.body is None:
                    payload, content_type = b"", "application/json"
                else:
                    payload, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
                self.send_response(reply.status)
                headers = {"content-type": content_type, **{k.lower(): v for k, v in reply.headers.items()}}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if not chunk:
                    self.wfile.write(payload)
                    return
                try:
                    for start in range(0, len(payload), chunk):
                        time.sleep(interval)
                        self.wfile.write(payload[start : start + chunk])
                        self.wfile.flush()
                except OSError:
                    server.hung_up_mid_body.set()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read received(), not a log on stderr

        return Handler

    def start(self) -> ScriptedRest:
        server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        server.daemon_threads = True
        if self._ssl_context is not None:
            # The handshake runs in the request's thread (see _handshake), not in accept().
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        scheme = "https" if self._ssl_context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="scripted-rest", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> ScriptedRest:  # noqa: PYI034 (Self needs Python 3.11)
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _handshake(connection: ssl.SSLSocket) -> bool:
    """Complete the server's TLS handshake; on failure close as nginx's lingering close does.

    After a failed handshake OpenSSL has sent its alert (e.g. TLS 1.3's "certificate required",
    which the client reads only after sending its request). Closing at once with that request
    unread would make the kernel answer with a reset, which can overtake the alert; so the write
    side is shut first and what the client sent is read and dropped.
    """
    try:
        connection.do_handshake()
        return True
    except (ssl.SSLError, OSError):
        pass
    try:
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(1.0)
        while connection.recv(65536):
            pass
    except OSError:
        pass
    return False


def status_body(execution_id: str, **fields: Any) -> dict[str, Any]:
    """``GET /api/v1/executions/{id}`` as Core answers it, with ``fields`` replaced or added."""
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "state": "running",
        "progress": "1/4",
        "current_step": "charge",
        "current_step_data": None,
        "results": {"validate": {"ok": True}},
        "error": None,
    }
    body.update(fields)
    return body


def summary_body(execution_id: str, **fields: Any) -> dict[str, Any]:
    """One entry of ``GET /api/v1/executions`` as Core lists it, with ``fields`` replaced or added."""
    body: dict[str, Any] = {
        "execution_id": execution_id,
        "id": execution_id,
        "workflow": "orders",
        "status": "running",
        "current_step": "charge",
        "current_step_data": None,
        "events_count": 2,
    }
    body.update(fields)
    return body


def status_route(execution_id: str) -> str:
    return f"GET /api/v1/executions/{execution_id}"


LIST_ROUTE = "GET /api/v1/executions"
START_ROUTE = "POST /api/v1/executions"

#: Core's (be56c90) answer past 1,000 requests in a calendar minute, until the minute turns.
RATE_LIMITED = Reply(
    429, {"error": "rate_limit_exceeded", "limit": 1000}, {"retry-after": "60", "x-ratelimit-remaining": "0"}
)
