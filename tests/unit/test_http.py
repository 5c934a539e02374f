"""The HTTP surface, through the real waitress server on a free port, queried with requests."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from slowatch.adapters.http import App, Server, serve
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.page import render_page
from slowatch.adapters.render import slo_document, status_document
from slowatch.adapters.urls import scrub
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate, failed
from slowatch.core.model import SLO, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import DaemonView, ViewHolder

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
EVIL = '<script>alert("x")</script>'


def slo(service: str, name: str, objective: float = 99.9, description: str = "") -> SLO:
    return SLO(service, name, objective, RollingWindow(timedelta(days=30)), RatioSLI(total="t", errors="e"),
               description=description)


def status(s: SLO, consumed: float | None, rate: float = 0.5) -> BudgetStatus:
    total = 1_000_000.0
    counts = {w: EventCounts(total - total * rate * s.budget, total) for w in BURN_RATE_WINDOWS}
    if consumed is not None:
        counts[SLO_WINDOW] = EventCounts(total - total * consumed * s.budget, total)
    return evaluate(s, Measurement(AT, counts))


LOGIN = status(slo("auth", "login-availability"), 0.3)
LATENCY = status(slo("auth", "login-latency", 99), 0.9, rate=20.0)
CHECKOUT = status(slo("payments", "checkout", description=EVIL), 1.2)
SEARCH = failed(slo("search", "query-latency"), AT, "error", f"bad_data: {EVIL}")
MALICIOUS = status(slo("evil", EVIL), 0.1)
ALERTS: Mapping[str, list[dict[str, Any]]] = {
    LATENCY.slo.id: [{"alertname": "SLOErrorBudgetBurn", "severity": "page", "since": "2026-11-27T11:40:00Z",
                      "labels": {"long_window": "1h", "short_window": "5m", "note": EVIL}}],
}
VIEW = DaemonView(
    at=AT, statuses=(LOGIN, LATENCY, CHECKOUT, SEARCH, MALICIOUS), alerts=ALERTS, ready=True,
    firing=({"alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "login-latency"},),
    history={LOGIN.slo.id: [(AT - timedelta(hours=6 - h), 0.8 - 0.1 * h) for h in range(7)]},
    spec_error=f"auth.yaml: slos[0].objective: {EVIL}",
)


def jsonable(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


@pytest.fixture(scope="module")
def holder() -> ViewHolder:
    return ViewHolder(VIEW)


@pytest.fixture(scope="module")
def server(holder: ViewHolder) -> Iterator[Server]:
    registry, metrics = new_registry(holder)
    metrics.observe_cycle(0.4, True, AT)
    srv = serve(App(holder, registry, clock=lambda: AT + timedelta(seconds=20)), "127.0.0.1", 0)
    yield srv
    srv.close()


def get(server: Server, path: str, **kw: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=10, **kw)


def test_port_zero_binds_a_free_port(server: Server) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("path", "code", "content_type"),
    [
        pytest.param("/", 200, "text/html; charset=utf-8", id="the status page is html"),
        pytest.param("/status", 200, "application/json", id="status is json"),
        pytest.param("/status/auth/login-latency", 200, "application/json", id="one slo is json"),
        pytest.param("/metrics", 200, "text/plain; version=0.0.4; charset=utf-8", id="metrics are prometheus text"),
        pytest.param("/healthz", 200, "text/plain; charset=utf-8", id="healthz answers while serving"),
        pytest.param("/readyz", 200, "text/plain; charset=utf-8", id="readyz answers once ready"),
        pytest.param("/openapi.json", 200, "application/json", id="the openapi description is json"),
        pytest.param("/status/auth/nope", 404, "application/json", id="an unknown slo is a json 404"),
        pytest.param("/status/nope/login-latency", 404, "application/json", id="an unknown service is a json 404"),
        pytest.param("/nope", 404, "application/json", id="an unknown path is a json 404"),
        pytest.param("/status/auth", 404, "application/json", id="a service alone is no route"),
        pytest.param("/status/auth/login-latency/x", 404, "application/json", id="a path too deep is no route"),
        pytest.param("/status/", 404, "application/json", id="a trailing slash is no route"),
        pytest.param("/metricsx", 404, "application/json", id="a prefix of a route is no route"),
    ],
)
def test_routes(server: Server, path: str, code: int, content_type: str) -> None:
    r = get(server, path)
    assert (r.status_code, r.headers["Content-Type"]) == (code, content_type)
    if code == 404:
        assert set(r.json()) == {"error"} and r.json()["error"]


@pytest.mark.parametrize(("path", "etag"), [
    pytest.param("/", False, id="the page sends no caching headers"),
    pytest.param("/metrics", False, id="metrics send no caching headers"),
    pytest.param("/status", True, id="status sends only its etag, a validator, never a freshness time"),
    pytest.param("/status/auth/login-latency", True, id="one slo sends only its etag"),
])
def test_caching_headers(server: Server, path: str, etag: bool) -> None:
    headers = {k.lower() for k in get(server, path).headers}
    assert headers & {"cache-control", "etag", "last-modified", "expires"} == ({"etag"} if etag else set())


def test_status_is_the_render_document(server: Server) -> None:
    assert get(server, "/status").json() == jsonable(status_document(VIEW.at, VIEW.statuses, VIEW.alerts))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("?service=auth", ["auth/login-availability", "auth/login-latency"],
                     id="a service filter keeps that service's slos in order"),
        pytest.param("?service=auth&service=search", ["auth/login-availability", "auth/login-latency",
                                                     "search/query-latency"], id="the filter may be repeated"),
        pytest.param("?service=nope", [], id="an unknown service gives an empty list, not an error"),
        pytest.param("?service=", [s.slo.id for s in VIEW.statuses], id="an empty filter is no filter"),
        pytest.param("?other=1", [s.slo.id for s in VIEW.statuses], id="unknown parameters are ignored"),
    ],
)
def test_status_service_filter(server: Server, query: str, expected: list[str]) -> None:
    doc = get(server, "/status" + query).json()
    assert doc["evaluated_at"] == "2026-11-27T12:00:00Z"
    assert [f"{s['service']}/{s['slo']}" for s in doc["slos"]] == expected


@pytest.mark.parametrize(
    "s", [pytest.param(s, id=f"{s.slo.id} ({s.state}) is its slo_document") for s in (LOGIN, LATENCY, SEARCH)]
)
def test_one_slo_is_its_document(server: Server, s: BudgetStatus) -> None:
    got = get(server, f"/status/{s.slo.service}/{s.slo.name}").json()
    assert got == jsonable(slo_document(s, ALERTS.get(s.slo.id, ())))


def test_a_url_encoded_name_finds_its_slo(server: Server) -> None:
    weird = status(slo("auth", "ünïcode name"), 0.2)
    view = DaemonView(at=AT, statuses=(weird,), ready=True)
    app = App(ViewHolder(view), new_registry(ViewHolder(view), process=False)[0])
    with serve(app, "127.0.0.1", 0) as srv:
        r = get(srv, "/status/auth/%C3%BCn%C3%AFcode%20name")
    assert r.status_code == 200 and r.json()["slo"] == "ünïcode name"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/status", id="post to status is not allowed"),
        pytest.param("DELETE", "/", id="delete on the page is not allowed"),
        pytest.param("PUT", "/metrics", id="put on metrics is not allowed"),
        pytest.param("PATCH", "/status/auth/login-latency", id="patch on an slo is not allowed"),
    ],
)
def test_other_methods_are_405(server: Server, method: str, path: str) -> None:
    r = requests.request(method, server.url + path, timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.headers["Content-Type"] == "application/json" and "GET" in r.json()["error"]


def test_head_answers_without_a_body(server: Server) -> None:
    r = requests.head(server.url + "/status", timeout=10)
    assert r.status_code == 200 and r.content == b""


def test_readyz_follows_the_view() -> None:
    holder = ViewHolder()  # before the first evaluation
    with serve(App(holder, new_registry(holder, process=False)[0]), "127.0.0.1", 0) as srv:
        before = get(srv, "/readyz")
        health = get(srv, "/healthz")
        status_before = get(srv, "/status").json()
        holder.set(VIEW)
        after = get(srv, "/readyz")
    assert (before.status_code, health.status_code, after.status_code) == (503, 200, 200)
    assert health.text == "ok\n"
    assert status_before == {"evaluated_at": None, "slos": []}


def test_metrics_parse_and_carry_the_view(server: Server) -> None:
    r = get(server, "/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text) for s in fam.samples
    }
    assert samples[("slowatch_slo_objective_ratio", (("service", "auth"), ("slo", "login-latency")))] == \
        LATENCY.slo.objective
    assert samples[("slowatch_slo_state", (("service", "auth"), ("slo", "login-latency"), ("state", "burning")))] == 1
    assert samples[("slowatch_slo_alert_firing", (("alertname", "SLOErrorBudgetBurn"), ("service", "auth"),
                                                  ("severity", "page"), ("slo", "login-latency")))] == 1
    assert samples[("slowatch_evaluations_total", (("result", "success"),))] == 1


@pytest.mark.parametrize(
    ("headers", "encoding", "content_type"),
    [
        pytest.param({"Accept-Encoding": "gzip"}, "gzip", "text/plain; version=0.0.4; charset=utf-8",
                     id="metrics are gzipped when the scraper asks"),
        pytest.param({"Accept": "application/openmetrics-text; version=1.0.0", "Accept-Encoding": "identity"}, None,
                     "application/openmetrics-text; version=1.0.0; charset=utf-8",
                     id="openmetrics is negotiated"),
    ],
)
def test_metrics_negotiation(server: Server, headers: dict[str, str], encoding: str | None,
                             content_type: str) -> None:
    r = get(server, "/metrics", headers=headers)
    assert r.headers.get("Content-Encoding") == encoding
    assert r.headers["Content-Type"].startswith(content_type)
    assert "slowatch_slo_objective_ratio" in r.text


def test_metrics_name_filter(server: Server) -> None:
    text = get(server, "/metrics?name[]=slowatch_slo_objective_ratio").text
    names = {fam.name for fam in text_string_to_metric_families(text)}
    assert names == {"slowatch_slo_objective_ratio"}


def test_openapi_describes_every_route(server: Server) -> None:
    doc = get(server, "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/", "/status", "/status/{service}/{slo}", "/metrics", "/healthz", "/readyz",
                                 "/openapi.json"}
    required = set(doc["components"]["schemas"]["SLOStatus"]["required"])
    assert required <= set(slo_document(LOGIN))


def test_the_page_shows_every_slo_and_its_state(server: Server) -> None:
    r = get(server, "/")
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert '<meta http-equiv="refresh" content="30">' in r.text
    for s in (LOGIN, LATENCY, CHECKOUT, SEARCH):
        assert f'<div class="slo">{s.slo.name}</div>' in r.text
        assert f'id="slo-{s.slo.service}-{s.slo.name}" class="slo-row st-{s.state}"' in r.text


@pytest.mark.parametrize(
    "fragment",
    [
        pytest.param(EVIL, id="no raw script tag anywhere on the page"),
        pytest.param("<script", id="not even the start of one"),
        pytest.param('alert("x")', id="quotes are escaped too"),
    ],
)
def test_the_page_escapes_strings_from_specs_alerts_and_errors(server: Server, fragment: str) -> None:
    text = get(server, "/").text
    assert fragment not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in text  # markupsafe spells quotes &#34;


@pytest.mark.parametrize(
    ("view", "needles"),
    [
        pytest.param(DaemonView(at=None), ["Waiting for the first evaluation", "not evaluated yet"],
                     id="before the first evaluation the page says it is waiting"),
        pytest.param(DaemonView(at=AT, ready=True), ["No SLOs are configured"],
                     id="a daemon without slos says so"),
        pytest.param(DaemonView(at=AT, statuses=(LOGIN,), ready=True), ["All 1 SLO within budget"],
                     id="all slos in budget give a green verdict"),
        pytest.param(VIEW, ["Needs attention: 1 exhausted, 1 burning, 1 error", "Spec reload failed",
                            '<svg class="chart', "<polyline", "(3) slowatch status", "20s ago"],
                     id="problems are named first, with charts and the spec error"),
        pytest.param(DaemonView(at=AT - timedelta(hours=1), statuses=(LOGIN,), ready=True),
                     ["is the daemon evaluating?"], id="an old evaluation is flagged"),
    ],
)
def test_page_states(view: DaemonView, needles: list[str]) -> None:
    text = render_page(view, now=AT + timedelta(seconds=20))
    for needle in needles:
        assert needle in text


def test_a_failing_handler_is_a_json_500(server: Server) -> None:
    class Broken(ViewHolder):
        def get(self) -> DaemonView:
            raise RuntimeError("boom")

    holder = Broken()
    with serve(App(holder, new_registry(holder, process=False)[0]), "127.0.0.1", 0) as srv:
        r = get(srv, "/status")
        health = get(srv, "/healthz")
    assert r.status_code == 500 and "boom" in r.json()["error"]
    assert health.status_code == 200


def test_close_stops_the_server_and_frees_the_port() -> None:
    holder = ViewHolder(VIEW)
    srv = serve(App(holder, new_registry(holder, process=False)[0]), "127.0.0.1", 0)
    session = requests.Session()  # a kept-alive connection must not keep the server up
    assert session.get(srv.url + "/healthz", timeout=10).status_code == 200
    srv.close()
    srv.close()  # idempotent
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/healthz", timeout=5)
    with socket.socket() as sock:  # the port is free again (reuse: closed connections linger in TIME_WAIT)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", srv.port))
        sock.listen()


def test_status_is_serialised_once_per_view_and_follows_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from slowatch.adapters import http

    views = [DaemonView(at=datetime(2026, 11, 27, 12, tzinfo=UTC), statuses=(status(slo("auth", "a"), 0.5),),
                        ready=True),
             DaemonView(at=datetime(2026, 11, 27, 12, 1, tzinfo=UTC), statuses=(status(slo("auth", "a"), 0.75),),
                        ready=True)]
    holder = ViewHolder(views[0])
    app = App(holder, new_registry(holder, process=False)[0])
    calls: list[str] = []

    def counted(s: BudgetStatus, alerts: Any = ()) -> dict[str, Any]:
        calls.append(f"{s.slo.id}:{s.consumed}")
        return slo_document(s, alerts)

    monkeypatch.setattr(http, "slo_document", counted)
    env = {"PATH_INFO": "/status", "REQUEST_METHOD": "GET", "QUERY_STRING": ""}
    first = [app.handle(env)[2] for _ in range(3)]
    one = app.handle({**env, "PATH_INFO": "/status/auth/a"})[2]
    gz = app.handle({**env, "HTTP_ACCEPT_ENCODING": "gzip, deflate"})
    assert calls == ["auth/a:0.5"] and first[0] == first[1] == first[2]
    assert json.loads(first[0])["slos"] == [json.loads(one)]
    assert ("Content-Encoding", "gzip") in gz[1] and gzip.decompress(gz[2]) == first[0]
    holder.set(views[1])
    second = app.handle(env)[2]
    assert json.loads(second)["slos"][0]["error_budget"]["consumed"] == 0.75
    assert calls == ["auth/a:0.5", "auth/a:0.75"]
    # A filter named like the gzip variant can never be served to a gzip client, nor grow the cache.
    odd = app.handle({**env, "QUERY_STRING": "service=gzip"})
    assert json.loads(odd[2])["slos"] == []
    gz2 = app.handle({**env, "HTTP_ACCEPT_ENCODING": "gzip"})
    assert json.loads(gzip.decompress(gz2[2]))["slos"][0]["error_budget"]["consumed"] == 0.75


@pytest.mark.parametrize("query", [
    pytest.param("", id="the whole document"),
    pytest.param("service=auth", id="one service"),
    pytest.param("service=evil&service=payments", id="two services with strings that need escaping"),
    pytest.param("state=error", id="a state"),
    pytest.param("service=nope", id="a filter that matches nothing"),
    pytest.param("limit=2&offset=2", id="a page"),
])
def test_a_list_joined_from_each_slos_json_is_the_documents_bytes(query: str) -> None:
    app = App(ViewHolder(VIEW), new_registry(ViewHolder(VIEW), process=False)[0])
    code, headers, body = call(app, query)
    chosen = parse_qs(query)
    limit, offset = int(chosen.pop("limit", ["0"])[0]), int(chosen.pop("offset", ["0"])[0])
    selected = [s for s in VIEW.statuses if all(
        (s.slo.service if k == "service" else s.state) in v for k, v in chosen.items())]
    page = selected[offset:offset + limit] if limit else selected
    expected = scrub(json.dumps(status_document(VIEW.at, page, VIEW.alerts), ensure_ascii=False)).encode("utf-8")
    assert code.startswith("200") and body == expected
    assert headers["X-Total-Count"] == str(len(selected))


def test_lists_beyond_the_cache_budget_are_served_but_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from slowatch.adapters import http

    app = App(ViewHolder(VIEW), new_registry(ViewHolder(VIEW), process=False)[0])
    whole = call(app)[2]
    monkeypatch.setattr(http, "MAX_CACHED_LIST_BYTES", len(whole) + 10)  # room for the whole document only
    auth = call(app, "service=auth")
    again = call(app, "service=auth")
    index = app.index(VIEW)
    assert set(index.documents) == {("status",)} and index.list_bytes == len(whole)
    assert auth == again and [s["slo"] for s in json.loads(auth[2])["slos"]] == ["login-availability",
                                                                                    "login-latency"]


# --- a big fleet: ETag and 304, filters by state and team, pagination -------------------------


def fleet_app() -> App:
    from dataclasses import replace as dc_replace

    statuses = []
    for i in range(25):
        s = dc_replace(slo(f"svc{i:02d}", "availability"), labels=(("team", "identity" if i % 5 == 0 else "shop"),))
        statuses.append(status(s, 1.2 if i % 10 == 0 else 0.3))
    holder = ViewHolder(DaemonView(at=AT, statuses=tuple(statuses), ready=True))
    registry, _ = new_registry(holder, process=False)
    return App(holder, registry)


def call(app: App, query: str = "", path: str = "/status", **headers: str) -> tuple[str, dict[str, str], bytes]:
    env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": query, **headers}
    code, hdrs, body = app.handle(env)
    return code, dict(hdrs), body


@pytest.mark.parametrize("path", [pytest.param("/status", id="the whole document"),
                                  pytest.param("/status/svc03/availability", id="one SLO")])
def test_a_poller_with_the_current_etag_gets_304_and_no_body(path: str) -> None:
    app = fleet_app()
    code, headers, body = call(app, path=path)
    assert code.startswith("200") and headers["ETag"].startswith('"') and body
    code, again, body = call(app, path=path, HTTP_IF_NONE_MATCH=headers["ETag"])
    assert code.startswith("304") and body == b"" and again["ETag"] == headers["ETag"]
    code, _, body = call(app, path=path, HTTP_IF_NONE_MATCH='"something-else"')
    assert code.startswith("200") and body


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("state=exhausted", ["svc00", "svc10", "svc20"], id="state=exhausted lists only those"),
    pytest.param("team=identity", ["svc00", "svc05", "svc10", "svc15", "svc20"], id="team=identity"),
    pytest.param("team=identity&state=ok", ["svc05", "svc15"], id="filters combine"),
    pytest.param("state=burning", [], id="a state nobody is in gives an empty list"),
    pytest.param("team=nobody", [], id="an unknown team gives an empty list"),
    pytest.param("service=svc15&service=svc05&state=ok", ["svc05", "svc15"],
                 id="several values of one filter list their SLOs in the view's order"),
    pytest.param("service=svc10&team=identity&state=ok", [], id="every filter must hold"),
])
def test_status_filters_by_state_and_team(query: str, expected: list[str]) -> None:
    code, headers, body = call(fleet_app(), query)
    assert code.startswith("200")
    assert [s["service"] for s in json.loads(body)["slos"]] == expected
    assert headers.get("X-Total-Count", "0") == str(len(expected))


def test_pages_follow_their_link_until_every_slo_was_served_once() -> None:
    app = fleet_app()
    seen: list[str] = []
    query: str | None = "limit=10"
    pages = 0
    while query is not None:
        code, headers, body = call(app, query)
        assert code.startswith("200") and headers["X-Total-Count"] == "25"
        seen += [s["service"] for s in json.loads(body)["slos"]]
        pages += 1
        link = headers.get("Link")
        query = link[len("</status?"):link.index(">")] if link else None
    assert pages == 3 and seen == [f"svc{i:02d}" for i in range(25)]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "offset=-1", "limit=10001", "state=burnin"])
def test_a_bad_page_is_a_400_that_says_why(query: str) -> None:
    code, _, body = call(fleet_app(), query)
    assert code.startswith("400") and "must be" in json.loads(body)["error"]
