"""The public HTTP listener in a process of its own, so that no request waits for the evaluating
process's GIL.

A cycle's long C calls (``json.loads`` of a big Prometheus answer, rendering) hold the daemon's
GIL for tens of milliseconds, whatever the switch interval: with the listener in the daemon,
``/status/{service}/{slo}`` at 1,000 req/s had p99 9.1 ms between cycles and 68-117 ms during
them (bench/results/status_load.md before this module). Here::

    daemon process                                    serving process (multiprocessing "spawn")
    Cycle -> Shipping -> Prerendering -> ViewHolder    owns SLOWATCH_LISTEN (web config: TLS, basic auth)
                     \\-> ServingProcess.ship  --pipe--> its own ViewHolder + App: /, /status, /status/{svc}/{slo},
                                                        /readyz, /openapi.json, each answered there
    App on a Unix socket in a 0700 temp dir  <--------- Forwarder: /metrics, /healthz

- /metrics needs the daemon's live registry (its own counters, the Prerendering cache) and /healthz
  must say that the daemon lives, not the serving process: both are forwarded to the daemon over
  the private Unix socket, which no TCP client can reach (basic auth is checked before forwarding).
- Views travel on a ``Pipe`` from the daemon's "slowatch-serving" thread, never the cycle's: each SLO
  object once (then a number, ``persistent_id``), the statuses in messages of ``CHUNK``, of each
  SLO's status-page history (up to 360 points) only the points added since the last view. The
  serving process decodes a message at a time between requests and freezes what it decoded out of
  the GC's full collections. Cost (``bench.status_load.ship_cost``: synthetic statuses, full
  histories; on the shared 2-core machine, 2026-11-29), the daemon's side is the encoding:

  ====== =============================== ============================== =================================
  SLOs   first view (all SLO objects)    each later view                decoding a later view
  ====== =============================== ============================== =================================
  1,000  6.9 MB, 0.17 s                  0.53 MB, 25-30 ms              15 ms in 109 messages
  10,000 69 MB, 1.9 s                    5.3 MB, 0.30-0.39 s            0.14 s in 1,069 messages
  ====== =============================== ============================== =================================

  The slowest message decoded in 0.6 ms (2-23 ms in runs where other work took the core away).

  Pickling the view whole instead: 6.5 MB at 1,000 SLOs, 0.12 s to dump and 0.08 s to load in one
  call that holds the GIL (65 MB, 2.0 s and 2.0 s at 10,000), and a full collection walking a
  decoded view: 50 ms.
- The serving process dies: the daemon logs ``http_process_died`` (error), counts it in
  ``slowatch_http_process_restarts_total`` and starts another after a backoff. The daemon dies: the
  pipe ends, the serving process exits. It ignores SIGINT and SIGTERM (a terminal's Ctrl-C or
  systemd's kill of the whole group): the daemon stops it after its last cycle.
- A start-up error (the port in use: ``OSError``; a wrong web config: ``WebConfigError``) is
  raised by ``start`` in the daemon, the same exception as in-process ``serve`` raises.

``App`` and ``serve`` still serve in-process (``SLOWATCH_HTTP_PROCESS=false``, and the unit tests).
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import io
import json
import multiprocessing
import pickle
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from prometheus_client import CollectorRegistry, Counter

from slowatch.adapters.http import App, Server, serve, serve_unix
from slowatch.adapters.urls import scrub
from slowatch.core.budget import BudgetStatus
from slowatch.core.model import SLO
from slowatch.errors import ServingError
from slowatch.ports import Publisher
from slowatch.view import DaemonView, ViewHolder

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Statuses (or history entries) a message: ~1 ms to unpickle at ~15 us a status (see above), so a
# request waits at most about that long for the serving process's GIL while a view arrives.
CHUNK = 64
# History points a message: the serving process copies each changed SLO's history (up to 360
# points, components/history.py) to add the new points: ~0.5 ms for 4,096 (bench.status_load.ship_cost).
HISTORY_CHUNK_POINTS = 4096
# The serving process imports the HTTP stack and binds; on a busy 2-core machine that took ~1-3 s.
START_TIMEOUT_S = 60.0
# Stopping: the serving process closes its connections (http.Server.close waits 5 s for them).
STOP_TIMEOUT_S = 10.0
# How often the daemon looks whether the serving process still runs when no view is due.
WATCH_INTERVAL_S = 0.2
# The first restart after a death waits this long, each quick death after it twice as long, up to
# the last; a serving process that ran STEADY_AFTER_S resets it.
RESTART_BACKOFF_S = (0.5, 30.0)
STEADY_AFTER_S = 60.0
# A forwarded request's timeout: above Prometheus's default scrape timeout (10 s), so a scrape
# never waits on a dead channel longer than on a slow daemon.
FORWARD_TIMEOUT_S = 15.0
# Answered by the daemon itself (its live registry; liveness of the daemon, not of this process).
FORWARDED = frozenset({"/metrics", "/healthz"})
# What a forwarded answer depends on, of the request (content negotiation, gzip).
FORWARDED_REQUEST_HEADERS = ("Accept", "Accept-Encoding")
# Of the daemon's answer, these are the hop's own (RFC 9110 7.6.1) or set again by the serving
# process's waitress; every other header (Content-Type, Content-Encoding, Vary, ...) goes through.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})


@dataclass(frozen=True)
class ServingConfig:
    """What the serving process needs (pickled to it at spawn)."""

    host: str
    port: int
    backend: Path
    """The daemon's Unix socket for the FORWARDED paths."""
    threads: int = 8
    web_config: Path | None = None
    stale_after: timedelta = timedelta(minutes=5)
    log_format: str = "console"
    log_level: str = "info"


# --- views over the pipe --------------------------------------------------------------------------

class ViewEncoder:
    """The daemon's side: a view as messages, each SLO object sent once to this serving process
    (a new one needs a new encoder) and referred to by number afterwards; of each SLO's history
    only the points added since the last view (the status page's charts: up to 360 points an SLO,
    ``components/history.py``, of which a cycle adds at most one)."""

    def __init__(self, chunk: int = CHUNK, history_chunk: int = HISTORY_CHUNK_POINTS) -> None:
        self.chunk = chunk
        self.history_chunk = history_chunk
        self._sent: dict[int, tuple[int, SLO]] = {}
        """id(SLO) -> (its number, the SLO: held, so that the id is not reused)."""
        self._next = 0
        self._history: Mapping[str, Sequence[tuple[datetime, float]]] = {}
        """The history last sent: the serving process has it too."""

    def messages(self, view: DaemonView) -> Iterator[bytes]:
        slos = {id(s.slo): s.slo for s in view.statuses}
        gone = [number for key, (number, _) in self._sent.items() if key not in slos]
        if gone:  # after a reload: the serving process drops them too
            self._sent = {k: v for k, v in self._sent.items() if k in slos}
            yield self._dump(("forget", gone))
        new = [slo for key, slo in slos.items() if key not in self._sent]
        for part in _chunks(new, self.chunk):
            numbered = {self._next + i: slo for i, slo in enumerate(part)}
            yield self._dump(("slos", numbered))
            for number, slo in numbered.items():
                self._sent[id(slo)] = (number, slo)
            self._next += len(part)
        yield self._dump(("view", replace(view, statuses=(), history={})))
        for statuses in _chunks(view.statuses, self.chunk):
            yield self._dump(("statuses", tuple(statuses)))
        changes = [(k, *history_added(self._history.get(k, ()), v)) for k, v in view.history.items()]
        changes = [c for c in changes if c[1] or c[2] != len(self._history.get(c[0], ()))]
        dropped = tuple(k for k in self._history if k not in view.history)
        if dropped:
            yield self._dump(("history-drop", dropped))
        # A change's weight is what the serving process copies: the SLO's whole history.
        for some in _chunks(changes, self.history_chunk, lambda change: change[2] + 1):
            yield self._dump(("history", tuple(some)))
        yield self._dump(("publish",))
        self._history = view.history

    def _dump(self, message: tuple[Any, ...]) -> bytes:
        out = io.BytesIO()
        sent = self._sent

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj: Any) -> int | None:
                found = sent.get(id(obj)) if isinstance(obj, SLO) else None
                return found[0] if found is not None and found[1] is obj else None

        Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
        return out.getvalue()


def history_added(before: Sequence[Any], now: Sequence[Any]) -> tuple[tuple[Any, ...], int, bool]:
    """What ``now`` adds to ``before`` when it is ``before`` (less points off its front) plus new
    points: (the new points, len(now), True); anything else is sent whole: (now, len(now), False)."""
    if before and now:
        last = before[-1]
        added = 0
        while added < len(now) and now[-1 - added][0] > last[0]:  # points are in time order
            added += 1
        kept = len(now) - added
        if kept and now[kept - 1] == last and kept <= len(before):
            return tuple(now[kept:]), len(now), True
    return tuple(now), len(now), False


STOP = pickle.dumps(("stop",))


class ViewDecoder:
    """The serving process's side: ``take`` each message; a finished view comes out of the last."""

    def __init__(self, freeze: bool = False) -> None:
        self.freeze = freeze
        """Move what each message brought to the permanent GC generation (the serving process): a
        full collection no longer walks the views. A 1,000-SLO view with its history is ~10^6 objects, whose
        walk took 50 ms with the GIL held (measured with bench.status_load.ship_cost)."""
        self.slos: dict[int, SLO] = {}
        self._view: DaemonView | None = None
        self._statuses: list[BudgetStatus] = []
        self._history: dict[str, tuple[tuple[datetime, float], ...]] = {}
        """The last view's history, then this one's as its messages arrive."""
        self.stopped = False

    def take(self, data: bytes) -> DaemonView | None:
        slos = self.slos

        class Unpickler(pickle.Unpickler):
            def persistent_load(self, pid: Any) -> SLO:
                return slos[int(pid)]

        message = Unpickler(io.BytesIO(data)).load()
        kind = message[0]
        if kind == "slos":
            self.slos.update(message[1])
        elif kind == "forget":
            for number in message[1]:
                self.slos.pop(number, None)
        elif kind == "view":
            self._view, self._statuses, self._history = message[1], [], dict(self._history)
        elif kind == "statuses":
            self._statuses.extend(message[1])
        elif kind == "history-drop":
            for key in message[1]:
                self._history.pop(key, None)
        elif kind == "history":
            for key, points, length, added in message[1]:
                self._history[key] = (self._history.get(key, ()) + points)[-length:] if added else points
        elif kind == "publish" and self._view is not None:
            view = replace(self._view, statuses=tuple(self._statuses), history=self._history)
            self._view, self._statuses = None, []
            return view
        elif kind == "stop":
            self.stopped = True
        if self.freeze:  # views hold no reference cycles: refcounting frees them once replaced
            gc.freeze()
        return None


def _chunks(items: Iterable[T], limit: int, weight: Callable[[T], int] = lambda _: 1) -> Iterator[list[T]]:
    """``items`` in lists of at most ``limit`` by weight (one item alone may weigh more)."""
    part: list[T] = []
    held = 0
    for item in items:
        w = weight(item)
        if part and held + w > limit:
            yield part
            part, held = [], 0
        part.append(item)
        held += w
    if part:
        yield part


class Shipping:
    """A ``ports.Publisher``: ``inner`` publishes (the daemon's holder, /metrics), then ``ship``
    takes the view (``ServingProcess.ship``: O(1), the pickling happens on its own thread)."""

    def __init__(self, inner: Publisher, ship: Callable[[DaemonView], None]) -> None:
        self.inner = inner
        self.ship = ship

    def publish(self, view: DaemonView) -> None:
        self.inner.publish(view)
        self.ship(view)

    def current(self) -> DaemonView:
        return self.inner.current()


# --- the forwarded paths ----------------------------------------------------------------------------

class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Forwarder:
    """WSGI: the FORWARDED paths go to the daemon's Unix socket, the others to ``app``."""

    def __init__(self, app: WSGIApplication, backend: Path, *, paths: frozenset[str] = FORWARDED,
                 timeout: float = FORWARD_TIMEOUT_S) -> None:
        self.app = app
        self.backend = backend
        self.paths = paths
        self.timeout = timeout

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path not in self.paths:
            return self.app(environ, start_response)
        status, headers, body = self.forward(environ, path)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def forward(self, environ: WSGIEnvironment, path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        query = environ.get("QUERY_STRING", "")
        headers = {name: environ[key] for name in FORWARDED_REQUEST_HEADERS
                   if (key := "HTTP_" + name.upper().replace("-", "_")) in environ}
        method = environ.get("REQUEST_METHOD", "GET")
        connection = _UnixConnection(self.backend, self.timeout)
        try:
            # HEAD as GET: waitress drops a HEAD answer's body here, its Content-Length kept.
            connection.request("GET" if method == "HEAD" else method, f"{path}?{query}" if query else path,
                               headers=headers)
            answer = connection.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            # The daemon does not answer (stuck, or gone: then this process ends at the pipe's EOF).
            log.warning("http_forward_failed", path=path, error=scrub(f"{type(exc).__name__}: {exc}"))
            doc = {"error": scrub(f"the evaluating process did not answer {path}: {type(exc).__name__}: {exc}")}
            return "503 Service Unavailable", [("Content-Type", "application/json")], json.dumps(doc).encode()
        finally:
            connection.close()
        kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_HEADERS]
        return f"{answer.status} {answer.reason}", kept, body


# --- the serving process -------------------------------------------------------------------------

def serving_main(conn: Connection, config: ServingConfig) -> None:
    """The serving process: bind (say so, or say why not), then take views until the pipe ends."""
    # The daemon stops this process after its last cycle; a signal to the whole group (Ctrl-C,
    # systemd) must not end it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from slowatch.logs import configure

    configure(config.log_format, config.log_level)
    holder = ViewHolder()
    app = App(holder, CollectorRegistry(), stale_after=config.stale_after)
    try:
        server = serve(Forwarder(app, config.backend), config.host, config.port, config.threads,
                       web_config=config.web_config)
    except Exception as exc:
        conn.send(("failed", _portable(exc)))
        return
    try:
        conn.send(("listening", server.host, server.port, server.url))
        decoder = ViewDecoder(freeze=True)
        while not decoder.stopped:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                log.warning("http_process_orphaned: the daemon is gone; exiting")
                break
            view = decoder.take(data)
            if view is not None:
                app.index(view)  # ready before the first request for it
                holder.set(view)
    finally:
        server.close()


def _portable(exc: Exception) -> Exception:
    """``exc`` if it crosses the pipe as it is (OSError, WebConfigError do), else a ServingError."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return ServingError(scrub(f"the HTTP server did not start: {type(exc).__name__}: {exc}"))
    return exc


class ServingProcess:
    """Runs and watches the serving process. ``app`` is the daemon's own App: it answers the
    forwarded paths on the private socket. ``start`` raises what binding raised."""

    def __init__(self, app: WSGIApplication, host: str, port: int, *, threads: int = 8,
                 web_config: Path | None = None, stale_after: timedelta = timedelta(minutes=5),
                 log_format: str = "console", log_level: str = "info",
                 registry: CollectorRegistry | None = None) -> None:
        self._app = app
        self._config = ServingConfig(host, port, Path(), threads=threads, web_config=web_config,
                                     stale_after=stale_after, log_format=log_format, log_level=log_level)
        self.host, self.port = host, port
        self.url = ""
        self.restarts = Counter("slowatch_http_process_restarts",
                                "Times the serving process (the public HTTP listener) died and was started again",
                                registry=registry)
        self._cond = threading.Condition()
        self._latest: DaemonView | None = None
        self._shipped: DaemonView | None = None
        self._closing = False
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._encoder = ViewEncoder()
        self._started_at = 0.0
        self._dir: Path | None = None
        self._backend: Server | None = None
        self._thread: threading.Thread | None = None
        self.last_ship: tuple[int, float] | None = None
        """(bytes, seconds) of the last view shipped: what a view costs the daemon."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> ServingProcess:
        self._dir = Path(tempfile.mkdtemp(prefix="slowatch-"))  # 0700: only this user reaches the socket
        self._backend = serve_unix(self._app, self._dir / "daemon.sock")
        try:
            self._spawn()
        except BaseException:
            self._close_backend()
            raise
        self._thread = threading.Thread(target=self._watch, name="slowatch-serving", daemon=True)
        self._thread.start()
        return self

    def ship(self, view: DaemonView) -> None:
        """The latest view, for the serving process (sent by the watch thread; an older one not yet
        sent is skipped)."""
        with self._cond:
            self._latest = view
            self._cond.notify_all()

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop the serving process and the private socket. Idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)  # it may be spawning or shipping a view
        self._stop_child(timeout)
        self._close_backend()

    def __enter__(self) -> ServingProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the watch thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        quick_deaths = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closing or self._latest is not self._shipped,
                                    timeout=WATCH_INTERVAL_S)
                if self._closing:
                    return
                view = self._latest
            if self._process is None or not self._process.is_alive():
                quick_deaths = self._replace(quick_deaths)
            elif view is not None and view is not self._shipped:
                self._send(view)

    def _send(self, view: DaemonView) -> None:
        assert self._conn is not None
        started, size = time.perf_counter(), 0
        try:
            for message in self._encoder.messages(view):
                size += len(message)
                self._conn.send_bytes(message)
        except (OSError, ValueError) as exc:  # it died mid-view: the next round restarts it
            log.debug("http_process_view_not_sent", error=repr(exc))
            return
        self._shipped = view
        self.last_ship = (size, time.perf_counter() - started)

    def _replace(self, quick_deaths: int) -> int:
        if self._process is not None:
            self._process.join(0)
            code = self._process.exitcode
            lived = time.monotonic() - self._started_at
            quick_deaths = quick_deaths + 1 if lived < STEADY_AFTER_S else 0
            self.restarts.inc()
            self._drop_child()
            log.error("http_process_died", exitcode=code,
                      signal=signal.Signals(-code).name if code is not None and code < 0 else None,
                      lived_s=round(lived, 1), restarting_in_s=_backoff(quick_deaths))
        else:
            quick_deaths += 1
        with self._cond:
            if self._cond.wait_for(lambda: self._closing, timeout=_backoff(quick_deaths)):
                return quick_deaths
        try:
            self._spawn()
        except Exception as exc:
            log.error("http_process_restart_failed", error=scrub(f"{type(exc).__name__}: {exc}"),
                      retrying_in_s=_backoff(quick_deaths + 1))
            return quick_deaths
        log.info("http_process_restarted", url=self.url, pid=self.pid)
        return quick_deaths

    # --- the child ----------------------------------------------------------------------------

    def _spawn(self) -> None:
        assert self._dir is not None
        # Not fork: the daemon has threads (a fork copies their locks, held or not).
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        config = replace(self._config, backend=self._dir / "daemon.sock")
        process = context.Process(target=serving_main, args=(theirs, config), name="slowatch-http", daemon=True)
        process.start()
        theirs.close()  # ours alone: the serving process's end closes when it exits
        try:
            if not ours.poll(START_TIMEOUT_S):
                raise ServingError(f"the HTTP serving process did not start within {START_TIMEOUT_S:g} s")
            message = ours.recv()
        except EOFError:
            process.join(STOP_TIMEOUT_S)
            ours.close()
            raise ServingError(f"the HTTP serving process exited at start (exit code {process.exitcode})") from None
        except BaseException:
            _end(process, STOP_TIMEOUT_S)
            ours.close()
            raise
        if message[0] == "failed":
            process.join(STOP_TIMEOUT_S)
            ours.close()
            raise message[1]
        _, self.host, self.port, self.url = message
        if self._config.port == 0:  # a restart binds the port the first one was given
            self._config = replace(self._config, port=self.port)
        self._process, self._conn, self._encoder = process, ours, ViewEncoder()
        self._shipped = None  # a new process has no view yet
        self._started_at = time.monotonic()
        log.info("http_process_started", pid=process.pid, url=self.url)

    def _drop_child(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def _stop_child(self, timeout: float) -> None:
        process, conn = self._process, self._conn
        if process is None:
            return
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):  # already gone
                conn.send_bytes(STOP)
        _end(process, timeout)
        self._drop_child()

    def _close_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _backoff(quick_deaths: int) -> float:
    first, most = RESTART_BACKOFF_S
    return float(min(most, first * 2 ** max(0, quick_deaths - 1)))


def _end(process: BaseProcess, timeout: float) -> None:
    process.join(timeout)
    if process.is_alive():
        log.warning("http_process_stop_timeout; killing it", pid=process.pid, timeout_s=timeout)
        process.kill()
        process.join(timeout)
