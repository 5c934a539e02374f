"""Delivery bookkeeping with an injected transport: payloads, per-URL resolves, backoff, counters."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.core.alerting import Alert, AlertBook, forget, labels_of
from slowatch.settings import Settings

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RESEND = timedelta(minutes=1)
AM1, AM2 = "http://am-1:9093", "http://am-2:9093"

Answer = Callable[[requests.PreparedRequest], int]
"""Returns the HTTP status for a request, or raises a requests exception."""


class FakeTransport(BaseAdapter):
    """A requests adapter answering from ``answers`` per host, recording every request."""

    def __init__(self, answers: Mapping[str, Answer]) -> None:
        super().__init__()
        self.answers = dict(answers)
        self.requests: list[tuple[str, list[dict[str, Any]], Any]] = []

    def send(
        self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
        verify: Any = True, cert: Any = None, proxies: Any = None,
    ) -> requests.Response:
        assert request.url is not None and request.body is not None
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        self.requests.append((request.url, json.loads(body), timeout))
        host = request.url.split("/")[2].split("@")[-1]
        response = requests.Response()
        response.status_code = self.answers[host](request)
        response._content = b"{}"
        response.request = request
        return response

    def close(self) -> None:
        pass

    def to(self, host: str) -> list[list[dict[str, Any]]]:
        return [body for url, body, _ in self.requests if url.split("/")[2].split("@")[-1] == host]


def ok(_: requests.PreparedRequest) -> int:
    return 200


def down(request: requests.PreparedRequest) -> int:
    raise requests.ConnectionError(f"connection refused: {request.url}")


def status(code: int) -> Answer:
    return lambda _: code


def client(answers: Mapping[str, Answer], urls: tuple[str, ...] = (AM1, AM2), **kwargs: Any
           ) -> tuple[AlertmanagerClient, FakeTransport]:
    transport = FakeTransport(answers)
    session = requests.Session()
    session.mount("http://", transport)
    return AlertmanagerClient(urls, resend_interval=RESEND, session=session, **kwargs), transport


def alert(name: str, starts_at: datetime = T0, ends_at: datetime | None = None) -> Alert:
    return Alert(labels=labels_of({"alertname": name, "service": "auth", "slo": "login"}),
                 annotations=labels_of({"summary": name}), starts_at=starts_at, ends_at=ends_at, slo_id="auth/login")


FIRING = alert("Firing")
RESOLVED = alert("Resolved", ends_at=T0 + timedelta(minutes=2))
BOOK = AlertBook(firing=(FIRING,), resolved=(RESOLVED,))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"SLOWATCH_EXTERNAL_URL": "https://slo.example/"}, "https://slo.example/status/auth/login",
                     id="with SLOWATCH_EXTERNAL_URL an alert links to its SLO's status"),
        pytest.param({}, None, id="without SLOWATCH_EXTERNAL_URL an alert has no generatorURL"),
    ],
)
def test_the_generator_url_comes_from_the_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str | None
) -> None:
    monkeypatch.delenv("SLOWATCH_EXTERNAL_URL", raising=False)
    for k, v in {"SLOWATCH_ALERTMANAGER_URLS": AM1, **env}.items():
        monkeypatch.setenv(k, v)
    transport = FakeTransport({"am-1:9093": ok})
    session = requests.Session()
    session.mount("http://", transport)
    AlertmanagerClient.from_settings(Settings(), session=session).deliver(BOOK, T0 + timedelta(minutes=3))
    (body,) = transport.to("am-1:9093")
    assert body[1].get("generatorURL") == expected


def test_every_url_gets_resolves_first_then_firing_alerts_valid_for_four_resends() -> None:
    c, t = client({"am-1:9093": ok, "am-2:9093": ok}, status_url="http://slowatch:9099/")
    now = T0 + timedelta(minutes=3)
    report = c.deliver(BOOK, now)
    for host in ("am-1:9093", "am-2:9093"):
        (body,) = t.to(host)
        assert [a["labels"]["alertname"] for a in body] == ["Resolved", "Firing"]
        assert body[0]["endsAt"] == "2026-11-27T12:02:00.000000Z"
        assert body[1]["startsAt"] == "2026-11-27T12:00:00.000000Z"
        assert body[1]["endsAt"] == "2026-11-27T12:07:00.000000Z"
        assert body[1]["generatorURL"] == "http://slowatch:9099/status/auth/login"
        assert body[1]["annotations"] == {"summary": "Firing"}
    assert t.requests[0][0] == "http://am-1:9093/api/v2/alerts"
    assert t.requests[0][2] == (5.0, 10.0)
    assert report.delivered == {RESOLVED.id}
    assert [(s.url, s.sent, s.errors) for s in c.stats()] == [(AM1, 2, 0), (AM2, 2, 0)]


def test_a_resolve_leaves_the_book_only_once_every_url_accepted_it() -> None:
    c, t = client({"am-1:9093": ok, "am-2:9093": down})
    report = c.deliver(BOOK, T0)
    assert report.delivered == frozenset()
    assert c.pending() == {AM1: (), AM2: (RESOLVED.id,)}
    assert [(r.url, r.sent, r.errors) for r in report.results] == [(AM1, 2, 0), (AM2, 0, 1)]

    # The next call sends am-1 only the firing alert; am-2 (back) gets the resolve as well.
    t.answers["am-2:9093"] = ok
    report = c.deliver(BOOK, T0 + RESEND)
    assert [a["labels"]["alertname"] for a in t.to("am-1:9093")[-1]] == ["Firing"]
    assert [a["labels"]["alertname"] for a in t.to("am-2:9093")[-1]] == ["Resolved", "Firing"]
    assert report.delivered == {RESOLVED.id}
    assert c.pending() == {AM1: (), AM2: ()}
    # Once forgotten it is gone for good, even from the bookkeeping.
    c.deliver(forget(BOOK, report.delivered), T0 + 2 * RESEND)
    assert [a["labels"]["alertname"] for a in t.to("am-2:9093")[-1]] == ["Firing"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        pytest.param(down, "ConnectionError", id="a refused connection backs off"),
        pytest.param(status(503), "HTTP 503", id="a 503 backs off"),
        pytest.param(status(404), "HTTP 404", id="a 404 (wrong URL) backs off and keeps the resolves"),
    ],
)
def test_a_failing_url_backs_off_exponentially_up_to_the_cap(answer: Answer, error: str) -> None:
    c, t = client({"am-1:9093": answer}, urls=(AM1,), max_backoff=timedelta(minutes=5))
    attempts: list[datetime] = []
    now = T0
    while now < T0 + timedelta(minutes=20):
        before = len(t.requests)
        c.deliver(BOOK, now)
        if len(t.requests) > before:
            attempts.append(now)
        now += timedelta(seconds=30)
    gaps = [int((b - a).total_seconds() // 60) for a, b in itertools.pairwise(attempts)]
    assert gaps == [1, 2, 4, 5, 5]
    (stats,) = c.stats()
    assert stats.errors == len(attempts) == stats.consecutive_failures
    assert stats.last_error is not None and error in stats.last_error
    assert c.pending() == {AM1: (RESOLVED.id,)}


def test_a_400_counts_an_error_but_does_not_retry_the_refused_alerts_forever() -> None:
    c, _ = client({"am-1:9093": status(400)}, urls=(AM1,))
    report = c.deliver(BOOK, T0)
    assert report.delivered == {RESOLVED.id}
    assert (report.results[0].errors, c.stats()[0].consecutive_failures) == (1, 0)


def test_without_alertmanagers_resolves_are_dropped_at_once() -> None:
    c, t = client({}, urls=())
    assert c.deliver(BOOK, T0).delivered == {RESOLVED.id}
    assert t.requests == []


def test_nothing_to_send_posts_nothing() -> None:
    c, t = client({"am-1:9093": ok}, urls=(AM1,))
    c.deliver(AlertBook(), T0)
    assert t.requests == []


def test_credentials_reach_the_request_as_a_header_but_never_a_url_or_the_bookkeeping() -> None:
    seen: list[requests.PreparedRequest] = []

    def down_after_reading(request: requests.PreparedRequest) -> int:
        seen.append(request)
        return down(request)

    c, t = client({"am-1:9093": down_after_reading}, urls=("http://user:secret@am-1:9093/",))
    c.deliver(BOOK, T0)
    assert t.requests[0][0] == "http://am-1:9093/api/v2/alerts"
    assert seen[0].headers["Authorization"] == "Basic " + base64.b64encode(b"user:secret").decode()
    assert list(c.pending()) == [AM1]
    (stats,) = c.stats()
    assert stats.url == AM1
    assert stats.last_error is not None


def test_restored_bookkeeping_sends_a_resolve_only_where_it_is_still_owed() -> None:
    c, t = client({"am-1:9093": ok, "am-2:9093": ok}, pending={AM1: (), AM2: (RESOLVED.id,)})
    assert c.deliver(BOOK, T0).delivered == {RESOLVED.id}
    assert [a["labels"]["alertname"] for a in t.to("am-1:9093")[0]] == ["Firing"]
    assert [a["labels"]["alertname"] for a in t.to("am-2:9093")[0]] == ["Resolved", "Firing"]


def test_a_naive_now_is_refused() -> None:
    c, _ = client({}, urls=())
    with pytest.raises(ValueError, match="timezone-aware"):
        c.deliver(BOOK, datetime(2026, 1, 1))
