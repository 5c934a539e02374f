"""A fault-injecting HTTP proxy in front of a real server (Prometheus, Alertmanager), scriptable
per request: what production puts between slowatch and its query API.

    proxy = FaultProxy(prometheus.url)
    proxy.inject(status(503), times=2)      # the next two queries answer 503, then it forwards again
    proxy.inject(values(math.nan))          # every query answer's values become NaN, until clear()

Faults apply to the query API paths (``QUERY_PATHS``) unless ``paths`` says otherwise, oldest
first; a fault with ``times`` is used up, one without stays until ``clear()``. Each request is
recorded (``seen``) with the fault it met and its Authorization header, and ``require_auth``
makes the proxy answer 401 to any request without exactly that header (an auth-checking proxy).
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

QUERY_PATHS = frozenset({"/api/v1/query", "/api/v1/query_range"})
# Headers that describe one hop, not the message: never forwarded (RFC 9110 7.6.1).
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "host", "content-length",
                         "content-encoding", "accept-encoding"})

Body = dict[str, Any]


@dataclass(frozen=True)
class Answer:
    """What a fault makes of one request: forward it (``forward``), optionally rewriting the
    upstream JSON (``rewrite``) or cutting the body (``truncate_to``); or answer ``status`` itself;
    or reset the connection. ``delay``: seconds to wait first."""

    name: str
    delay: float = 0.0
    status: int | None = None
    reset: bool = False
    rewrite: Callable[[Body], Body] | None = None
    truncate_to: float | None = None
    """Fraction of the upstream body sent before the connection closes."""


@dataclass
class Fault:
    answer: Answer
    times: int | None
    paths: Collection[str]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    fault: str | None
    authorization: str | None
    status: int | None


# --- the fault kinds -----------------------------------------------------------------------------

def delay(seconds: float) -> Answer:
    """Forward after ``seconds`` (longer than the client's read timeout: a timeout)."""
    return Answer(f"delay {seconds}s", delay=seconds)


def status(code: int) -> Answer:
    """Answer ``code`` with Prometheus' error body, without asking upstream."""
    return Answer(f"status {code}", status=code)


def reset() -> Answer:
    """Close the connection with a TCP RST before any answer."""
    return Answer("connection reset", reset=True)


def truncated(fraction: float = 0.5) -> Answer:
    """Forward, but send only the first ``fraction`` of the body, then close."""
    return Answer(f"truncated at {fraction:.0%}", truncate_to=fraction)


def annotations(*, warnings: list[str] | None = None, infos: list[str] | None = None) -> Answer:
    """Forward with Prometheus 3's ``warnings`` / ``infos`` fields added."""
    def rewrite(body: Body) -> Body:
        return {**body, **({"warnings": warnings} if warnings else {}), **({"infos": infos} if infos else {})}

    return Answer("annotations", rewrite=rewrite)


def values(value: float | Callable[[float], float]) -> Answer:
    """Forward with every sample value replaced (``math.nan``, ``math.inf``) or mapped (a
    negative: ``lambda v: -v``), written as Prometheus writes them ("NaN", "+Inf")."""
    fn = value if callable(value) else (lambda _v: value)

    def point(p: list[Any]) -> list[Any]:
        return [p[0], _prom_float(fn(float(p[1])))]

    def rewrite(body: Body) -> Body:
        return _map_result(body, lambda r: [{**r, **_points(r, point)}])

    return Answer(f"values {value if not callable(value) else 'mapped'}", rewrite=rewrite)


def extra_series(label: str = "instance", value: str = "recreated") -> Answer:
    """Forward with each series doubled by a twin carrying one more label: a counter re-created
    with other labels, so a sum over it would count twice."""
    def rewrite(body: Body) -> Body:
        return _map_result(body, lambda r: [r, {**r, "metric": {**r.get("metric", {}), label: value}}])

    return Answer("extra series", rewrite=rewrite)


def vanished(label: str | None = None, *values: str) -> Answer:
    """Forward without the series whose ``label`` has one of ``values`` (no label: every series, an
    empty result). ``vanished("le", "2", "2.0")`` is a histogram that lost its 2 s bucket."""
    def rewrite(body: Body) -> Body:
        gone = lambda r: label is None or r.get("metric", {}).get(label) in values  # noqa: E731
        return _map_result(body, lambda r: [] if gone(r) else [r])

    return Answer(f"vanished {label}={'|'.join(values)}" if label else "vanished every series", rewrite=rewrite)


def partial(warning: str = "partial response: store 10.0.0.7:10901 unavailable") -> Answer:
    """A Thanos/Mimir-style partial response: half the series missing, a warning saying so."""
    def rewrite(body: Body) -> Body:
        result = body.get("data", {}).get("result", [])
        kept = result[: len(result) // 2]
        return {**body, "data": {**body.get("data", {}), "result": kept}, "warnings": [warning]}

    return Answer("partial response", rewrite=rewrite)


def _prom_float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


def _points(r: Body, point: Callable[[list[Any]], list[Any]]) -> Body:
    if "value" in r:
        return {"value": point(r["value"])}
    return {"values": [point(p) for p in r.get("values", [])]}


def _map_result(body: Body, each: Callable[[Body], list[Body]]) -> Body:
    data = body.get("data", {})
    if not isinstance(data.get("result"), list):
        return body
    return {**body, "data": {**data, "result": [out for r in data["result"] for out in each(r)]}}


# --- the proxy -----------------------------------------------------------------------------------

@dataclass
class FaultProxy:
    """A threaded reverse proxy on a free loopback port; ``close()`` it (or use ``with``)."""

    upstream: str
    require_auth: str | None = None
    seen: list[Seen] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: set[socket.socket] = field(default_factory=set)
    _closed: bool = False

    def __post_init__(self) -> None:
        self.upstream = self.upstream.rstrip("/")
        self._session = requests.Session()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def inject(self, answer: Answer, *, times: int | None = None, paths: Collection[str] = QUERY_PATHS) -> None:
        with self._lock:
            self._faults.append(Fault(answer, times, frozenset(paths)))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def faulted(self) -> list[Seen]:
        """The requests that met a fault."""
        with self._lock:
            return [s for s in self.seen if s.fault is not None]

    def _take(self, path: str) -> Answer | None:
        with self._lock:
            for fault in self._faults:
                if path in fault.paths:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault.answer
            return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def close(self) -> None:
        """Stop listening and cut every open connection (a kept-alive one would go on serving).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._session.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with proxy._lock:
                proxy._open.add(self.connection)

        def finish(self) -> None:
            with proxy._lock:
                proxy._open.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads ``seen``

        def do_GET(self) -> None:
            self._proxy()

        def do_POST(self) -> None:
            self._proxy()

        def _proxy(self) -> None:
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            authorization = self.headers.get("Authorization")
            if proxy.require_auth is not None and authorization != proxy.require_auth:
                proxy._record(Seen(self.command, path, "unauthorized", authorization, 401))
                self._send(401, b'{"status":"error","errorType":"unauthorized","error":"bad credentials"}')
                return
            answer = proxy._take(path)
            name = answer.name if answer else None
            if answer and answer.delay:
                time.sleep(answer.delay)
            if answer and answer.reset:
                proxy._record(Seen(self.command, path, name, authorization, None))
                # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if answer and answer.status is not None:
                proxy._record(Seen(self.command, path, name, authorization, answer.status))
                body = json.dumps({"status": "error", "errorType": "unavailable",
                                   "error": f"injected {answer.status}"}).encode()
                self._send(answer.status, body)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            try:
                upstream = proxy._session.request(self.command, proxy.upstream + self.path, data=payload,
                                                  headers=headers, timeout=60)
            except requests.RequestException:
                proxy._record(Seen(self.command, path, name, authorization, 502))
                self._send(502, b'{"status":"error","error":"upstream unreachable"}')
                return
            content = upstream.content
            if answer and answer.rewrite is not None and upstream.ok:
                content = json.dumps(answer.rewrite(upstream.json())).encode()
            proxy._record(Seen(self.command, path, name, authorization, upstream.status_code))
            if answer and answer.truncate_to is not None:
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(content)))  # promised, never delivered
                self.end_headers()
                self.wfile.write(content[: int(len(content) * answer.truncate_to)])
                self.close_connection = True
                return
            self._send(upstream.status_code, content, upstream.headers.get("Content-Type", "application/json"))

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
