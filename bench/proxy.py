"""A counting HTTP proxy on 127.0.0.1 in front of Prometheus.

Counts every request by method and path, and can pin the evaluation instant of GET queries:
slo-generator 2.6's Prometheus backend always sends ``time=<now>`` (it ignores the timestamp its
``compute`` is given), so to compare it with slowatch at one instant over fixed historical data,
the proxy replaces that ``time`` with the benchmark's. slowatch POSTs its queries with the
instant in the body and is passed through untouched.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "host", "content-length"}


class CountingProxy:
    def __init__(self, upstream: str, *, pin_time: float | None = None) -> None:
        target = urlsplit(upstream)
        self.upstream_host = target.hostname or "127.0.0.1"
        self.upstream_port = target.port or 80
        self.pin_time = pin_time
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()

    def reset(self) -> Counter[tuple[str, str]]:
        with self._lock:
            out = Counter(self.counts)
            self.counts.clear()
        return out

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=300)
            self._local.conn = conn
        return conn

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = parts.query
        if method == "GET" and self.pin_time is not None and parts.path.endswith("/query"):
            params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "time"]
            query = urlencode([*params, ("time", f"{self.pin_time:.3f}")])
        path = parts.path + (f"?{query}" if query else "")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        with self._lock:
            self.counts[(method, parts.path)] += 1
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed: retry once
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    handler.send_error(502, "upstream failed")
                    return
        handler.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in _HOP_BY_HOP:
                handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
