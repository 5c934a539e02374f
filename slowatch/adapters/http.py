"""The daemon's HTTP surface (INTERFACES.md, HTTP): a WSGI app served by waitress.

Requests only read the latest published ``DaemonView``; none ever waits for Prometheus, so a slow
or dead Prometheus cannot make /healthz or /metrics time out. Every body that can quote an error
(/status, the page, /metrics) passes ``urls.scrub`` on its way out.

Routes: ``/`` (status page), ``/status[?service=]``, ``/status/{service}/{slo}``, ``/metrics``,
``/healthz``, ``/readyz``, ``/openapi.json``. GET and HEAD only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from prometheus_client import CollectorRegistry
from waitress import wasyncore
from waitress.server import create_server
from waitress.trigger import trigger as Trigger  # noqa: N812 - the class is lower-case upstream

import slowatch
from slowatch.adapters.metrics import exposition
from slowatch.adapters.page import render_page
from slowatch.adapters.render import slo_document, status_document
from slowatch.adapters.urls import scrub
from slowatch.adapters.webconfig import BasicAuth, TLSTerminator, WebConfigFile, protect
from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import STATES
from slowatch.view import DaemonView, ViewHolder

log = structlog.get_logger(__name__)

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
# The page has no scripts and no external assets; say so, so an injected tag could do nothing.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

_Response = tuple[str, list[tuple[str, str]], bytes]

_STATUS_TEXT = {200: "200 OK", 304: "304 Not Modified", 400: "400 Bad Request", 404: "404 Not Found",
                405: "405 Method Not Allowed", 500: "500 Internal Server Error", 503: "503 Service Unavailable"}
# /status?limit= at most this many SLOs a page.
MAX_PAGE = 10_000
# Filtered and paged /status documents kept per view, in bytes: ~40 full 1,000-SLO documents
# (789 KB each, bench/results/status_load.md); beyond it a list is built again from the SLOs' JSON.
MAX_CACHED_LIST_BYTES = 32 * 1024 * 1024
# gzip level of /status bodies, each compressed once per view: on a 486 KB 1,000-SLO document level 5
# took 1.5 ms for 10 KB, level 9 5.4 ms for 7.9 KB (measured for this change).
GZIP_LEVEL = 5
# The interpreter's switch interval while serving (see serve): a request handed between threads
# waits at most this long per hand-off for a cycle's thread to let go of the GIL. At 1,000 req/s,
# p99 of requests due during a cycle: 68-117 ms with 0.5 ms, 141-320 ms with CPython's 5 ms
# (bench.status_load, runs minutes apart on the shared 2-core machine).
GIL_SWITCH_INTERVAL_S = 0.0005
# The spec label /status filters on besides service and state (INTERFACES: labels: {team: ...}).
TEAM_LABEL = "team"
_ROUTES_HINT = "/, /status, /status/{service}/{slo}, /metrics, /healthz, /readyz, /openapi.json"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Prepared:
    """One document of one view, ready to send: its bytes, strong ETag, extra headers, and its gzip
    (made at the first client that asks)."""

    __slots__ = ("_gzip", "body", "etag", "extra")

    def __init__(self, body: bytes, extra: tuple[tuple[str, str], ...] = ()) -> None:
        self.body = body
        # A validator of the document (not of its encoding): a poller that has this view gets 304.
        self.etag = f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'
        self.extra = extra
        self._gzip: bytes | None = None

    def gzipped(self) -> bytes:
        if self._gzip is None:  # two threads may both compress once; the bytes are equal
            self._gzip = gzip.compress(self.body, compresslevel=GZIP_LEVEL)
        return self._gzip


class _Index:
    """What /status needs of one view, worked out once per view: SLOs by id, the filters' known
    values, each SLO's JSON, and the documents served so far."""

    def __init__(self, view: DaemonView) -> None:
        self.view = view
        self.by_id = {(s.slo.service, s.slo.name): s for s in view.statuses}
        self.team = {s.slo.id: dict(s.slo.labels).get(TEAM_LABEL, "") for s in view.statuses}
        # Filter value -> positions of its SLOs in the view, so a filtered list costs its matches,
        # not a walk of every SLO: a walk per ?service= key after each view kept the serving
        # process busy for half a second at 1,000 SLOs and 1,000 req/s (bench.status_load).
        self.positions: dict[str, dict[str, list[int]]] = {"service": {}, "state": {}, TEAM_LABEL: {}}
        for i, s in enumerate(view.statuses):
            for name, value in (("service", s.slo.service), ("state", s.state), (TEAM_LABEL, self.team[s.slo.id])):
                self.positions[name].setdefault(value, []).append(i)
        self.known: dict[str, set[str]] = {"service": set(self.positions["service"]), "state": set(STATES),
                                           TEAM_LABEL: set(self.team.values())}
        self.lock = threading.Lock()
        self.slos: dict[str, bytes] = {}
        self.documents: dict[tuple[str, ...], _Prepared] = {}
        self.list_bytes = 0
        # The envelope of status_document around its "slos" list, so a list is the SLOs' JSON joined.
        empty = json.dumps(status_document(view.at, [], view.alerts), ensure_ascii=False)
        head, found, tail = empty.partition('"slos": []')
        self.envelope = (scrub(head + '"slos": [').encode("utf-8"), scrub("]" + tail).encode("utf-8")) \
            if found else None

    def slo_json(self, s: BudgetStatus) -> bytes:
        body = self.slos.get(s.slo.id)
        if body is None:
            doc = slo_document(s, self.view.alerts.get(s.slo.id, ()))
            body = self.slos[s.slo.id] = scrub(json.dumps(doc, ensure_ascii=False)).encode("utf-8")
        return body

    def list_json(self, statuses: Sequence[BudgetStatus]) -> bytes:
        if self.envelope is None:  # status_document's shape changed: serialise it whole
            doc = status_document(self.view.at, statuses, self.view.alerts)
            return scrub(json.dumps(doc, ensure_ascii=False)).encode("utf-8")
        head, tail = self.envelope
        return head + b", ".join(self.slo_json(s) for s in statuses) + tail

    def keep(self, key: tuple[str, ...], prepared: _Prepared, is_list: bool) -> _Prepared:
        """Cache ``prepared`` for this view: every SLO's document, and lists while they fit."""
        with self.lock:
            if not is_list:
                return self.documents.setdefault(key, prepared)
            if key not in self.documents and self.list_bytes + len(prepared.body) <= MAX_CACHED_LIST_BYTES:
                self.list_bytes += len(prepared.body)
                self.documents[key] = prepared
            return self.documents.get(key, prepared)


class App:
    """The WSGI application. ``clock`` gives the request time, only to show the age of the last
    evaluation on the page (documents carry the evaluation instant, never the request time)."""

    def __init__(self, holder: ViewHolder, registry: CollectorRegistry, *,
                 clock: Callable[[], datetime] = _utcnow, stale_after: timedelta = timedelta(minutes=5)) -> None:
        self.holder = holder
        self.registry = registry
        self.clock = clock
        self.stale_after = stale_after
        # A view never changes, so each document is serialised (and gzipped) once per view, not once
        # per request, and a request for one already served costs a dictionary look-up.
        self._index: _Index | None = None
        self._index_lock = threading.Lock()

    def index(self, view: DaemonView) -> _Index:
        index = self._index
        if index is None or index.view is not view:
            with self._index_lock:
                index = self._index
                if index is None or index.view is not view:
                    index = self._index = _Index(view)
        return index

    def _send(self, environ: WSGIEnvironment, prepared: _Prepared) -> _Response:
        headers = [("Content-Type", JSON), ("Vary", "Accept-Encoding"), ("ETag", prepared.etag), *prepared.extra]
        if prepared.etag in _etags(environ.get("HTTP_IF_NONE_MATCH", "")):
            return _STATUS_TEXT[304], headers[1:], b""
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            return _STATUS_TEXT[200], [*headers, ("Content-Encoding", "gzip")], prepared.gzipped()
        return _STATUS_TEXT[200], headers, prepared.body

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, headers, body = self.handle(environ)
        except Exception as exc:  # one bad request must not take the server thread down
            log.exception("http_request_failed", path=environ.get("PATH_INFO"), error=repr(exc))
            status, headers, body = _json(500, {"error": scrub(f"internal error: {exc!r}")})
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def handle(self, environ: WSGIEnvironment) -> _Response:
        path = _path(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        route = self._route(path)
        if route is None:
            return _json(404, {"error": f"no such path {path!r}; the routes are {_ROUTES_HINT}"})
        if method not in ("GET", "HEAD"):  # waitress sends no body for HEAD
            status, headers, body = _json(405, {"error": f"method {method} not allowed on {path}; use GET"})
            return status, [*headers, ("Allow", "GET, HEAD")], body
        return route(environ)

    def _route(self, path: str) -> Callable[[WSGIEnvironment], _Response] | None:
        fixed: dict[str, Callable[[WSGIEnvironment], _Response]] = {
            "/": self.page,
            "/status": self.status,
            "/metrics": self.metrics,
            "/healthz": self.healthz,
            "/readyz": self.readyz,
            "/openapi.json": self.openapi,
        }
        if path in fixed:
            return fixed[path]
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "status" and parts[2] and parts[3]:
            return lambda environ: self.one(environ, parts[2], parts[3])
        return None

    # --- handlers ---------------------------------------------------------------------------------

    def status(self, environ: WSGIEnvironment) -> _Response:
        index = self.index(self.holder.get())
        view = index.view
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            limit = _bounded_int(query, "limit", 1, MAX_PAGE, default=None)
            offset = _bounded_int(query, "offset", 0, None, default=0) or 0
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        unknown_states = sorted(set(query.get("state", [])) - set(STATES))
        if unknown_states:
            return _json(400, {"error": f"state must be one of {', '.join(STATES)}, got {', '.join(unknown_states)}"})
        # Only known values make a cache key: any other ?service= (state=, team=) value cannot grow
        # the cache; one that matches nothing gives an empty list, as a filter should.
        filters: list[tuple[str, frozenset[str]]] = []
        for name in ("service", "state", TEAM_LABEL):
            asked = {v for v in query.get(name, []) if v}  # ?service= (empty) is no filter
            if asked:
                filters.append((name, frozenset(asked & index.known[name])))
        paged = limit is not None or offset > 0
        key = ("status", *(f"{name}={','.join(sorted(chosen))}" for name, chosen in filters),
               *((f"limit={limit}", f"offset={offset}") if paged else ()))
        found = index.documents.get(key)
        if found is not None:
            return self._send(environ, found)
        selected: list[BudgetStatus] = list(view.statuses)
        if filters:
            # Positions keep the view's order; each filter is a union of its values' positions.
            chosen_sets = [{i for v in chosen for i in index.positions[name].get(v, ())} for name, chosen in filters]
            selected = [view.statuses[i] for i in sorted(set.intersection(*chosen_sets))]
        extra: list[tuple[str, str]] = [("X-Total-Count", str(len(selected)))]
        page = selected
        if paged:
            page = selected[offset:offset + limit] if limit is not None else selected[offset:]
            if limit is not None and offset + limit < len(selected):
                rest = [(k, v) for k, vs in query.items() if k not in ("offset", "limit") for v in vs]
                extra.append(("Link", f'</status?{urlencode([*rest, ("limit", limit), ("offset", offset + limit)])}>; '
                                      'rel="next"'))
        prepared = _Prepared(index.list_json(page), tuple(extra))
        if limit is not None and offset % limit:
            # Odd offsets are not cached (a client walking offset by one would fill the cache).
            return self._send(environ, prepared)
        return self._send(environ, index.keep(key, prepared, is_list=True))

    def one(self, environ: WSGIEnvironment, service: str, name: str) -> _Response:
        index = self.index(self.holder.get())
        key = ("one", service, name)
        found = index.documents.get(key)
        if found is not None:
            return self._send(environ, found)
        s = index.by_id.get((service, name))
        if s is None:
            return _json(404, {"error": f"no SLO {service}/{name}; GET /status lists them"})
        return self._send(environ, index.keep(key, _Prepared(index.slo_json(s)), is_list=False))

    def metrics(self, environ: WSGIEnvironment) -> _Response:
        # name[]: the same filter prometheus_client's own handlers support.
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]", [])
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        body, content_type = exposition(self.registry, environ.get("HTTP_ACCEPT", ""), names=names, gzipped=gzipped)
        headers = [("Content-Type", content_type), ("Vary", "Accept-Encoding")]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return _STATUS_TEXT[200], headers, body

    def healthz(self, environ: WSGIEnvironment) -> _Response:
        return _STATUS_TEXT[200], [("Content-Type", TEXT)], b"ok\n"

    def readyz(self, environ: WSGIEnvironment) -> _Response:
        if self.holder.get().ready:
            return _STATUS_TEXT[200], [("Content-Type", TEXT)], b"ready\n"
        return _STATUS_TEXT[503], [("Content-Type", TEXT)], b"not ready: the first evaluation has not finished\n"

    def openapi(self, environ: WSGIEnvironment) -> _Response:
        return _json(200, OPENAPI)

    def page(self, environ: WSGIEnvironment) -> _Response:
        text = scrub(render_page(self.holder.get(), now=self.clock(), stale_after=self.stale_after))
        headers = [("Content-Type", HTML), ("Content-Security-Policy", PAGE_CSP),
                   ("X-Content-Type-Options", "nosniff")]
        return _STATUS_TEXT[200], headers, text.encode("utf-8")


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (``*`` matches any)."""
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}


def _bounded_int(query: dict[str, list[str]], name: str, lowest: int, highest: int | None,
                 default: int | None) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        n = int(values[-1])
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {values[-1]!r}") from None
    if n < lowest or (highest is not None and n > highest):
        raise ValueError(f"{name} must be in [{lowest}, {highest if highest is not None else 'any'}], got {n}")
    return n


def _path(environ: WSGIEnvironment) -> str:
    # PEP 3333: PATH_INFO is the URL-decoded bytes as latin-1; names in specs may be UTF-8.
    raw: str = environ.get("PATH_INFO", "") or "/"
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def _json(code: int, doc: Any) -> _Response:
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return _STATUS_TEXT[code], [("Content-Type", JSON)], body


class Server:
    """A waitress server running in a daemon thread; ``port`` is the bound port (also for port 0)."""

    def __init__(self, server: Any, socket_map: dict[Any, Any], wakeup: Trigger, thread: threading.Thread,
                 tls: TLSTerminator | None = None) -> None:
        self._server = server
        self._tls = tls
        self._map = socket_map
        self._wakeup = wakeup
        self._thread = thread
        self._lock = threading.Lock()
        self._closed = False
        if getattr(server, "effective_host", None) == "unix":  # serve_unix: the socket's path
            self.host, self.port = str(server.effective_port), 0
        elif hasattr(server, "effective_port"):
            self.host, self.port = str(server.effective_host), int(server.effective_port)
        else:  # a MultiSocketServer (a host name with several addresses): the first one
            self.host, self.port = str(server.effective_listen[0][0]), int(server.effective_listen[0][1])
        if tls is not None:  # waitress listens on loopback behind it; the world sees this address
            self.host, self.port = str(tls.host), int(tls.port)

    @property
    def url(self) -> str:
        if self.port == 0:
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection, stop the worker threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._tls is not None:
            self._tls.close()
        if self._thread.is_alive():
            # Sockets belong to the loop thread: close them there, after which its loop (which
            # runs while the map is not empty) returns.
            def close_all(_: None = None) -> None:
                wasyncore.close_all(self._map)

            self._wakeup.pull_trigger(close_all)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("http_server_stop_timeout", timeout_s=timeout)
        else:
            wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(app: WSGIApplication, host: str, port: int, threads: int = 8, *, web_config: Path | None = None) -> Server:
    """Serve ``app`` on ``host:port`` (port 0: any free port) from a daemon thread. ``web_config``:
    an exporter-toolkit web config file (TLS, basic auth; ``adapters/webconfig.py``); a wrong
    one raises ``WebConfigError``."""
    tls: TLSTerminator | None = None
    config_file = WebConfigFile(web_config) if web_config is not None else None
    if config_file is not None:
        app = protect(app, BasicAuth(config_file))
    socket_map: dict[Any, Any] = {}
    behind_tls = config_file is not None and config_file.current()[0].tls
    server = create_server(app, map=socket_map, host="127.0.0.1" if behind_tls else host,
                           port=0 if behind_tls else port, threads=threads, ident="slowatch")
    if config_file is not None and behind_tls:
        plain: Any = server  # one loopback address: a single-socket server, whose stubs lack the fields
        tls = TLSTerminator(config_file, host, port, (str(plain.effective_host), int(plain.effective_port)))
    # A request waits for the GIL while a cycle's threads compute; CPython makes a running thread
    # give it up after the switch interval (5 ms by default), and a request needs several hand-offs
    # (the loop thread reads, a worker answers, the loop thread writes).
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    handle = _run(server, socket_map, tls)
    log.info("http_listening", url=handle.url, threads=threads, tls=tls is not None,
             basic_auth=config_file is not None and bool(config_file.current()[0].users))
    return handle


def serve_unix(app: WSGIApplication, path: Path, threads: int = 2) -> Server:
    """Serve ``app`` on a Unix socket at ``path`` (mode 0600; put it in a 0700 directory) from a
    daemon thread: a private channel to this process, which no TCP client can reach."""
    socket_map: dict[Any, Any] = {}
    server = create_server(app, map=socket_map, unix_socket=str(path), unix_socket_perms="600", threads=threads,
                           ident="slowatch")
    return _run(server, socket_map, None)


def _run(server: Any, socket_map: dict[Any, Any], tls: TLSTerminator | None) -> Server:
    wakeup = Trigger(socket_map)  # our own wake-up pipe in the loop, for close()
    thread = threading.Thread(target=server.run, name="slowatch-http", daemon=True)
    handle = Server(server, socket_map, wakeup, thread, tls)
    thread.start()
    return handle


# --- OpenAPI -------------------------------------------------------------------------------------

_NUM_OR_NULL = {"type": ["number", "null"]}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "slowatch",
        "version": slowatch.__version__,
        "description": "Error budgets of service-level objectives evaluated on Prometheus. "
                       "Ratios are fractions (0.999, not 99.9); times are RFC 3339 UTC.",
    },
    "paths": {
        "/": {"get": {
            "summary": "The status page (HTML, no scripts)", "operationId": "statusPage",
            "responses": {"200": {"description": "The page.", "content": {
                "text/html": {"schema": {"type": "string"}}}}},
        }},
        "/metrics": {"get": {
            "summary": "slowatch's own metrics and every SLO's budget, in the Prometheus exposition format",
            "operationId": "metrics",
            "parameters": [{
                "name": "name[]", "in": "query", "required": False,
                "description": "Only these metric families (prometheus_client's filter).",
                "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": True,
            }],
            "responses": {"200": {"description": "The exposition.", "content": {
                "text/plain": {"schema": {"type": "string"}},
                "application/openmetrics-text": {"schema": {"type": "string"}},
            }}},
        }},
        "/healthz": {"get": {
            "summary": "Liveness: the process serves", "operationId": "healthz",
            "responses": {"200": {"description": "Alive.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/readyz": {"get": {
            "summary": "Readiness: the first evaluation has finished", "operationId": "readyz",
            "responses": {
                "200": {"description": "Ready.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "503": {"description": "Not yet.", "content": {"text/plain": {"schema": {"type": "string"}}}},
            },
        }},
        "/openapi.json": {"get": {
            "summary": "This description", "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1.", "content": {
                "application/json": {"schema": {"type": "object"}}}}},
        }},
        "/status": {
            "get": {
                "summary": "Every SLO's latest evaluation",
                "operationId": "listStatus",
                "parameters": [
                    {"name": "service", "in": "query", "required": False,
                     "description": "Only the SLOs of this service (repeat for several).",
                     "schema": {"type": "string"}},
                    {"name": "state", "in": "query", "required": False,
                     "description": "Only the SLOs in this state (repeat for several).",
                     "schema": {"type": "string", "enum": list(STATES)}},
                    {"name": "team", "in": "query", "required": False,
                     "description": "Only the SLOs whose spec label team is this (repeat for several).",
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False,
                     "description": "At most this many SLOs; a Link rel=next header points to the next page.",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
                    {"name": "offset", "in": "query", "required": False,
                     "description": "Skip this many SLOs (with limit: pagination).",
                     "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    "200": {"description": "The status document (header X-Total-Count: the SLOs that matched).",
                            "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/StatusDocument"}}}},
                    "304": {"description": "If-None-Match holds the current ETag: the document has not changed."},
                    "400": {"description": "A state that does not exist, or a limit or offset that is not a whole "
                            "number in range.", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
        },
        "/status/{service}/{slo}": {
            "get": {
                "summary": "One SLO's latest evaluation",
                "operationId": "getStatus",
                "parameters": [
                    {"name": "service", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "slo", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {"description": "The SLO.", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/SLOStatus"}}}},
                    "304": {"description": "If-None-Match holds the current ETag: the SLO has not changed."},
                    "404": {"description": "No such SLO.", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
        },
    },
    "components": {"schemas": {
        "StatusDocument": {
            "type": "object",
            "required": ["evaluated_at", "slos"],
            "properties": {
                "evaluated_at": {**_TIME_OR_NULL, "description": "The last cycle's instant; null before the first."},
                "slos": {"type": "array", "items": {"$ref": "#/components/schemas/SLOStatus"}},
            },
        },
        "SLOStatus": {
            "type": "object",
            "required": ["service", "slo", "objective", "window", "state", "sli", "error_budget", "burn_rates",
                         "exhaustion_at", "alerts", "evaluated_at", "error", "exclusions"],
            "properties": {
                "service": {"type": "string"},
                "slo": {"type": "string"},
                "kind": {"type": "string", "enum": ["ratio", "latency", "throughput", "composite"]},
                "objective": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "window": {"type": "string", "examples": ["30d", "month"]},
                "state": {"type": "string", "enum": list(STATES)},
                "sli": {**_NUM_OR_NULL, "description": "Good over total events in the window; null without data."},
                "error_budget": {
                    "type": "object",
                    "required": ["total", "consumed", "remaining"],
                    "properties": {
                        "total": {"type": "number", "description": "1 - objective."},
                        "consumed": {**_NUM_OR_NULL, "description": "May exceed 1."},
                        "remaining": {**_NUM_OR_NULL, "description": "1 - consumed."},
                    },
                },
                "burn_rates": {
                    "type": "object", "additionalProperties": _NUM_OR_NULL,
                    "description": "Error rate over the budgeted error rate, by window name; null without events.",
                },
                "exhaustion_at": {**_TIME_OR_NULL, "description": "When the budget runs out at the 1h burn rate."},
                "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
                "evaluated_at": {**_TIME_OR_NULL},
                "error": {"type": ["string", "null"]},
                "warnings": {"type": "array", "items": {"type": "string"},
                             "description": "What the query API noted about answers it still vouched for "
                                            "(Prometheus 3's infos); answers with warnings make the SLO stale."},
                "composite": {"$ref": "#/components/schemas/Composite"},
                "exclusions": {
                    "type": "object",
                    "required": ["active", "excluded_seconds"],
                    "properties": {
                        "active": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Exclusion"}],
                                   "description": "The exclusion covering the evaluation instant; "
                                                  "null when none does."},
                        "excluded_seconds": {
                            "type": "object", "additionalProperties": {"type": "number", "minimum": 0},
                            "description": "Seconds of each window (keyed as burn_rates) that the SLO's exclusions "
                                           "cover: their events count neither as good nor as total. Empty without "
                                           "exclusions.",
                        },
                    },
                },
            },
        },
        "Exclusion": {
            "type": "object",
            "required": ["reason", "start", "end"],
            "properties": {
                "reason": {"type": "string"},
                "start": {"type": "string", "format": "date-time",
                          "description": "The start of the current occurrence (of a recurring rule)."},
                "end": {"type": "string", "format": "date-time", "description": "Its end (excluded: [start, end))."},
            },
        },
        "Composite": {
            "type": "object",
            "description": "Only on composite SLOs (kind composite): how its SLI is made of its components'.",
            "required": ["weighting", "components"],
            "properties": {
                "weighting": {"type": "string", "enum": ["weights", "events"],
                              "description": "weights: the weighted mean of the components' SLIs; events: "
                                             "their good events over their total events."},
                "components": {"type": "array", "items": {
                    "type": "object", "required": ["service", "slo", "weight", "sli"],
                    "properties": {
                        "service": {"type": "string"}, "slo": {"type": "string"},
                        "weight": {"type": "number", "exclusiveMinimum": 0},
                        "sli": {"type": "object", "additionalProperties": _NUM_OR_NULL,
                                "description": "The component's own SLI by window name (as burn_rates); "
                                               "null without events."},
                    },
                }},
            },
        },
        "Alert": {
            "type": "object",
            "required": ["alertname", "severity"],
            "properties": {
                "alertname": {"type": "string"},
                "severity": {"type": "string", "examples": ["page", "ticket"]},
                "since": {"type": "string", "format": "date-time"},
            },
            "additionalProperties": True,
        },
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    }},
}
