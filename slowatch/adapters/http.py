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
import threading
from collections.abc import Callable, Iterable
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
# The spec label /status filters on besides service and state (INTERFACES: labels: {team: ...}).
TEAM_LABEL = "team"
_ROUTES_HINT = "/, /status, /status/{service}/{slo}, /metrics, /healthz, /readyz, /openapi.json"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class App:
    """The WSGI application. ``clock`` gives the request time, only to show the age of the last
    evaluation on the page (documents carry the evaluation instant, never the request time)."""

    def __init__(self, holder: ViewHolder, registry: CollectorRegistry, *,
                 clock: Callable[[], datetime] = _utcnow, stale_after: timedelta = timedelta(minutes=5)) -> None:
        self.holder = holder
        self.registry = registry
        self.clock = clock
        self.stale_after = stale_after
        # Rendered documents of the current view: a view never changes, so each document is
        # serialised (and gzipped) once per cycle, not once per request.
        self._cache: tuple[DaemonView | None, dict[tuple[str, ...], bytes]] = (None, {})
        self._cache_lock = threading.Lock()

    def _cached(self, view: DaemonView, key: tuple[str, ...], render: Callable[[], bytes]) -> bytes:
        with self._cache_lock:
            if self._cache[0] is not view:
                self._cache = (view, {})
            store = self._cache[1]
        body = store.get(key)
        if body is None:
            body = render()
            with self._cache_lock:
                if self._cache[0] is view:
                    store[key] = body
        return body

    def _json_cached(self, environ: WSGIEnvironment, view: DaemonView, key: tuple[str, ...],
                     doc: Callable[[], Any], extra: Iterable[tuple[str, str]] = ()) -> _Response:
        plain = self._cached(view, ("identity", *key),
                             lambda: scrub(json.dumps(doc(), ensure_ascii=False)).encode("utf-8"))
        # A strong validator of the document (not of its encoding): a poller that already has this
        # view gets 304 and no body, so a 1,000-SLO document costs one hash per cycle, not per request.
        etag = self._cached(view, ("etag", *key), lambda: _etag(plain))
        headers = [("Content-Type", JSON), ("Vary", "Accept-Encoding"), ("ETag", etag.decode()), *extra]
        if etag.decode() in _etags(environ.get("HTTP_IF_NONE_MATCH", "")):
            return _STATUS_TEXT[304], [h for h in headers if h[0] != "Content-Type"], b""
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = self._cached(view, ("gzip", *key), lambda: gzip.compress(plain, compresslevel=5))
            return _STATUS_TEXT[200], [*headers, ("Content-Encoding", "gzip")], body
        return _STATUS_TEXT[200], headers, plain

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
        view = self.holder.get()
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        # Only known values make a cache key: any other ?service= (state=, team=) value cannot grow
        # the cache; one that matches nothing gives an empty list, as a filter should.
        filters: list[tuple[str, ...]] = []
        keep: list[Callable[[BudgetStatus], bool]] = []
        by: tuple[tuple[str, set[str], Callable[[BudgetStatus], str]], ...] = (
            ("service", {s.slo.service for s in view.statuses}, lambda s: s.slo.service),
            ("state", set(STATES), lambda s: s.state),
            (TEAM_LABEL, {dict(s.slo.labels).get(TEAM_LABEL, "") for s in view.statuses},
             lambda s: dict(s.slo.labels).get(TEAM_LABEL, "")),
        )
        try:
            limit = _bounded_int(query, "limit", 1, MAX_PAGE, default=None)
            offset = _bounded_int(query, "offset", 0, None, default=0) or 0
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        unknown_states = sorted(set(query.get("state", [])) - set(STATES))
        if unknown_states:
            return _json(400, {"error": f"state must be one of {', '.join(STATES)}, got {', '.join(unknown_states)}"})
        for name, known_values, value_of in by:
            asked = [v for v in query.get(name, []) if v]  # ?service= (empty) is no filter
            if not asked:
                continue
            chosen = sorted(v for v in set(asked) if v in known_values)
            if not chosen:
                return _json(200, status_document(view.at, [], view.alerts))
            filters.append((name, *chosen))
            keep.append(_matcher(value_of, frozenset(chosen)))
        selected = [s for s in view.statuses if all(k(s) for k in keep)]
        extra: list[tuple[str, str]] = [("X-Total-Count", str(len(selected)))]
        page = selected
        if limit is not None or offset:
            page = selected[offset:offset + limit] if limit is not None else selected[offset:]
            if limit is not None and offset + limit < len(selected):
                rest = [(k, v) for k, vs in query.items() if k not in ("offset", "limit") for v in vs]
                extra.append(("Link", f'</status?{urlencode([*rest, ("limit", limit), ("offset", offset + limit)])}>; '
                                      'rel="next"'))
        key = ("status", *(f"{f[0]}={','.join(f[1:])}" for f in filters),
               *((f"limit={limit}", f"offset={offset}") if limit is not None or offset else ()))
        if limit is not None and offset % limit:
            # Odd offsets are not cached (a client walking offset by one would fill the cache).
            return _json(200, status_document(view.at, page, view.alerts))
        return self._json_cached(environ, view, key, lambda: status_document(view.at, page, view.alerts), extra)

    def one(self, environ: WSGIEnvironment, service: str, name: str) -> _Response:
        view = self.holder.get()
        s = view.status(service, name)
        if s is None:
            return _json(404, {"error": f"no SLO {service}/{name}; GET /status lists them"})
        return self._json_cached(environ, view, ("one", service, name),
                                 lambda: slo_document(s, view.alerts.get(s.slo.id, ())))

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


def _matcher(value_of: Callable[[BudgetStatus], str], chosen: frozenset[str]) -> Callable[[BudgetStatus], bool]:
    return lambda s: value_of(s) in chosen


def _etag(body: bytes) -> bytes:
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'.encode()


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
        if hasattr(server, "effective_port"):
            self.host, self.port = str(server.effective_host), int(server.effective_port)
        else:  # a MultiSocketServer (a host name with several addresses): the first one
            self.host, self.port = str(server.effective_listen[0][0]), int(server.effective_listen[0][1])
        if tls is not None:  # waitress listens on loopback behind it; the world sees this address
            self.host, self.port = str(tls.host), int(tls.port)

    @property
    def url(self) -> str:
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
    wakeup = Trigger(socket_map)  # our own wake-up pipe in the loop, for close()
    thread = threading.Thread(target=server.run, name="slowatch-http", daemon=True)
    handle = Server(server, socket_map, wakeup, thread, tls)
    thread.start()
    log.info("http_listening", url=handle.url, threads=threads, tls=tls is not None,
             basic_auth=config_file is not None and bool(config_file.current()[0].users))
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
                         "exhaustion_at", "alerts", "evaluated_at", "error"],
            "properties": {
                "service": {"type": "string"},
                "slo": {"type": "string"},
                "kind": {"type": "string", "enum": ["ratio", "latency", "throughput"]},
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
