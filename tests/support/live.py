"""Serve generated history "live": a scrape target that exposes, at each scrape, every series'
sample at the last step before the wall clock, with that sample's own timestamp.

History up to a cutoff is backfilled as blocks; from the cutoff on, Prometheus scrapes this
target (``honor_timestamps``), so the data reaching the present is still the generator's, with
its exact counts, and burn rates move in real time (the daemon's and the demo's live traffic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.generator import History, _families, _selector


class LiveExporter:
    """``/metrics`` with each series' latest due sample; ``.url`` is the scrape address."""

    def __init__(self, history: History, *, clock: Callable[[], float] = time.time, host: str = "127.0.0.1") -> None:
        self.history = history
        self.clock = clock
        self._families = _families(history.series)
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-exporter", daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def exposition(self) -> str:
        now = int(self.clock())
        lines: list[str] = []
        for family, members in self._families.items():
            # Text format 0.0.4 names a counter's TYPE after its sample (``x_total``).
            kind = members[0].kind
            lines.append(f"# TYPE {members[0].name if kind == 'counter' else family} {kind}")
            for s in members:
                i = (now - s.start) // s.step
                if i < 0 or i > s.last:  # not started yet, or silent (the scenario's no-traffic period)
                    continue
                lines.append(f"{_selector(s)} {s.text(i)} {s.timestamp(i) * 1000}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
