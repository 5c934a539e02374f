"""Exclusions against real engines (issue #12): the counts they leave are the generator's exact
counts minus the excluded events, a past interval added later adjusts the budget at the same
instant from the same ledger, a recurring rule lands on Paris wall time across the 2026-10-25
DST change, and an excluded incident pages nobody through a real Alertmanager.

Tolerance: instants and interval bounds are multiples of the 60 s sample step, so every count is
a difference of integers (see test_eval.py); 1e-9 relative leaves only float arithmetic.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.cli import main
from slowatch.core.conventions import BUDGET_BURN
from slowatch.core.model import Exclusion
from slowatch.core.plan import live_spans, query_parts
from slowatch.cycle import Cycle
from slowatch.ports import SystemClock
from slowatch.spec import load_specs
from slowatch.view import ViewHolder
from tests.integration.alertmanager_fixtures import ALERTMANAGERS, WebhookReceiver, launch_alertmanager
from tests.integration.test_eval import DAY_BAD_SLICES
from tests.support.generator import DAY, RATE_2M_WINDOW, History
from tests.support.processes import Alertmanager, ProcessError, Server

REL = 1e-9
HOUR = 3600
MINUTE = 60
E5XX = {"500", "503"}
LOGIN = {"service": "auth", "endpoint": "/auth/login"}
EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
# Burn-rate windows and the SLO's (login-availability: 99.95% over 30 days).
WINDOWS = {"5m": 300, "30m": 1800, "1h": HOUR, "2h": 2 * HOUR, "6h": 6 * HOUR, "1d": DAY, "3d": 3 * DAY,
           "30d": 30 * DAY}
BUDGET = 0.0005

Interval = tuple[int, int]


def truth(history: History, start: int, end: int, excluded: list[Interval]) -> tuple[int, int]:
    """(bad, total) login events in ``(start, end]`` outside the excluded ``[lo, hi)`` intervals
    (each counted as the span ``(lo, hi]``), from the generator's exact counts."""
    def events(labels: dict[str, Any], a: int, b: int) -> int:
        return history.increase("http_requests_total", labels, a, b)

    bad = events({**LOGIN, "code": E5XX}, start, end)
    total = events(LOGIN, start, end)
    for lo, hi in excluded:
        a, b = max(lo, start), min(hi, end)
        if a < b:
            bad -= events({**LOGIN, "code": E5XX}, a, b)
            total -= events(LOGIN, a, b)
    return bad, total


def spec_with(tmp_path: Path, exclusions: list[dict[str, Any]], file: str = "auth.yaml",
              name: str = "login-availability") -> Path:
    """An example SLO alone (auth.yaml's login-availability by default), with ``exclusions``."""
    doc = yaml.safe_load((EXAMPLE / file).read_text())
    doc["slos"] = [{**s, "exclusions": exclusions} for s in doc["slos"] if s["name"] == name]
    path = tmp_path / file
    path.write_text(yaml.safe_dump(doc))
    return path


def evaluated(url: str, at: int, spec: Path) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["eval", str(spec), "--at", str(at), "--format", "json", "--prometheus-url", url])
    (doc,) = json.loads(out.getvalue())["slos"]
    assert doc["state"] not in ("error", "stale"), doc["error"]
    return doc  # type: ignore[no-any-return]


def rfc3339(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_counts(doc: dict[str, Any], history: History, at: int, excluded: list[Interval]) -> None:
    bad, total = truth(history, at - WINDOWS["30d"], at, excluded)
    assert doc["error_budget"]["consumed"] == pytest.approx(bad / total / BUDGET, rel=REL)
    for window, seconds in WINDOWS.items():
        wb, wt = truth(history, at - seconds, at, excluded)
        want = None if wt == 0 else wb / wt / BUDGET
        assert doc["burn_rates"][window] == (None if want is None else pytest.approx(want, rel=REL)), window
        covered = sum(max(0, min(hi, at) - max(lo, at - seconds)) for lo, hi in excluded)
        assert doc["exclusions"]["excluded_seconds"][window] == covered, window


@pytest.fixture(scope="module")
def incident(history: History) -> Interval:
    e = history.scenario.episode("auth-incident")
    return e.start, e.end


# (lo, hi) offsets from the incident's start and end: the interval excluded.
AROUND = [
    pytest.param((0, 0), id="exactly the incident (30 minutes inside one hour: read live)"),
    pytest.param((-77 * MINUTE, 3 * MINUTE), id="unaligned around it (a whole ledger hour and two live edges)"),
]
# Offsets from the incident's end: the evaluation instants.
AFTER = [
    pytest.param(0, id="at its end (the short windows hold only excluded time)"),
    pytest.param(3 * HOUR + 7 * MINUTE, id="3h07m later (the ledger windows hold it)"),
    pytest.param(2 * DAY - 14 * HOUR - 30 * MINUTE, id="at the end of the history"),
]


@pytest.mark.parametrize("after", AFTER)
@pytest.mark.parametrize("around", AROUND)
def test_an_exclusion_covering_the_incident_leaves_the_exact_counts_minus_its_events(
    engine: Server, history: History, incident: Interval, tmp_path: Path, around: tuple[int, int], after: int,
) -> None:
    lo, hi = incident[0] + around[0], incident[1] + around[1]
    at = incident[1] + after
    assert at <= history.end
    spec = spec_with(tmp_path, [{"start": rfc3339(lo), "end": rfc3339(hi), "reason": "upstream outage"}])
    doc = evaluated(engine.url, at, spec)
    assert_counts(doc, history, at, [(lo, hi)])
    active = {"reason": "upstream outage", "start": rfc3339(lo), "end": rfc3339(hi)}
    assert doc["exclusions"]["active"] == (active if lo <= at < hi else None)


def test_latency_events_inside_an_exclusion_are_not_counted(
    engine: Server, history: History, incident: Interval, tmp_path: Path,
) -> None:
    """auth/login-latency (95% under 200 ms, histogram buckets summed per le spelling): the
    unaligned interval around the incident, 2 hours after it."""
    lo, hi = incident[0] - 77 * MINUTE, incident[1] + 3 * MINUTE
    at = incident[1] + 2 * HOUR
    spec = spec_with(tmp_path, [{"start": rfc3339(lo), "end": rfc3339(hi), "reason": "load test"}],
                     name="login-latency")
    doc = evaluated(engine.url, at, spec)

    def slow(a: int, b: int) -> tuple[int, int]:
        """(events above 200 ms, events) in (a, b]."""
        fast = history.increase("http_request_duration_seconds_bucket", {**LOGIN, "le": "0.2"}, a, b)
        total = history.increase("http_request_duration_seconds_count", LOGIN, a, b)
        return total - fast, total

    assert slow(lo, hi)[1] > 0
    for window, seconds in WINDOWS.items():
        bad, total = slow(at - seconds, at)
        a, b = max(lo, at - seconds), min(hi, at)
        if a < b:  # the part of the interval inside the window
            gone_slow, gone = slow(a, b)
            bad, total = bad - gone_slow, total - gone
        assert doc["burn_rates"][window] == pytest.approx(bad / total / 0.05, rel=REL), window


def test_throughput_slices_inside_an_exclusion_are_not_counted(
    engine: Server, engine_key: tuple[str, str], history: History, tmp_path: Path,
) -> None:
    """gateway/sustained-throughput (1d of 1-minute slices at 200 req/s) with its 20-minute dip
    excluded, 13:53 to 15:23: a ledger hour and two live edges. Slices in a span (a, b] are the
    minutes in [a + 1m, b] (History.slices counts both ends), each engine's rate(x[2m]) as
    test_eval measures it."""
    dip = history.scenario.episode("gateway-dip")
    lo, hi = dip.start - 67 * MINUTE, dip.end + 3 * MINUTE
    at = dip.end + 3 * HOUR
    rate_window = RATE_2M_WINDOW[engine_key]
    spec = spec_with(tmp_path, [{"start": rfc3339(lo), "end": rfc3339(hi), "reason": "capacity test"}],
                     "platform.yaml", "sustained-throughput")
    doc = evaluated(engine.url, at, spec)

    def slices(a: int, b: int) -> tuple[int, int]:
        c = history.slices(200, a + MINUTE, b, rate_window=rate_window)
        assert c.ties == 0
        return c.good, c.total

    for window, seconds in {"1d": DAY, "6h": 6 * HOUR}.items():
        good, total = slices(at - seconds, at)
        gone_good, gone_total = slices(lo, hi)
        assert (total - good, gone_total) == (DAY_BAD_SLICES[rate_window], 90)  # the dip, all excluded
        kept_bad = total - good - (gone_total - gone_good)
        assert kept_bad == 0
        assert doc["burn_rates"][window] == 0.0, window
    good, total = slices(at - DAY, at)
    assert doc["sli"] == pytest.approx((good - 90 + DAY_BAD_SLICES[rate_window]) / (total - 90), rel=REL)
    assert doc["exclusions"]["excluded_seconds"]["1d"] == 90 * MINUTE


def test_a_past_interval_added_later_adjusts_the_budget_from_the_same_ledger(
    engine: Server, history: History, incident: Interval, pool: ThreadPoolExecutor,
) -> None:
    """A budget adjustment: evaluate, add the incident as an exclusion (a spec reload makes a new
    SLO object), evaluate again at the same instant. The ledger keeps raw hours and is subtracted
    from at read time, so the second evaluation reads no hour again: only its instant queries, one
    per day its spans reach back into (``core.plan.query_parts``)."""
    (slo,) = [s for s in load_specs([EXAMPLE]) if s.id == "auth/login-availability"]
    adjusted = replace(slo, exclusions=(Exclusion(reason="forgiven: upstream outage",
                                                  start=utc(incident[0]), end=utc(incident[1])),))
    at = utc(incident[1] + 5 * HOUR)
    prom = PrometheusSource(engine.url)
    source = PlannedSource(prom)
    before = source.measure_all([slo], at, pool)[slo.id]
    queries = prom.stats.queries
    after = source.measure_all([adjusted], at, pool)[slo.id]
    parts = query_parts(live_spans([adjusted], at))
    assert prom.stats.queries - queries == len(parts)  # no range query
    assert not isinstance(before, Exception) and not isinstance(after, Exception)
    gone_bad, gone_total = truth(history, *incident, [])
    assert gone_bad > 0
    for name in ("6h", "1d", "3d", "slo"):
        b, a = before.counts[name], after.counts[name]
        assert (b.total - a.total, b.bad - a.bad) == (gone_total, gone_bad), name


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


# --- a recurring exclusion across the 2026-10-25 DST change in Paris --------------------------------

PARIS_DST_END = int(datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp())  # 03:00 CEST -> 02:00 CET


def paris_0200(day_start: int) -> int:
    """02:00 Paris time on the UTC day starting at ``day_start``, in UTC: 00:00 in CEST (up to
    the change, 2026-10-25's ambiguous 02:00 read as the first, CEST), 01:00 in CET after it."""
    return day_start + (0 if day_start < PARIS_DST_END else HOUR)


@pytest.mark.parametrize(
    ("rule", "days"),
    [
        pytest.param("FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0", 7, id="Sundays 02:00 for 2h"),
        pytest.param("FREQ=DAILY;BYHOUR=2;BYMINUTE=0", 1, id="daily 02:00 for 2h: 01:00 UTC after the change"),
    ],
)
def test_a_recurring_paris_exclusion_subtracts_its_wall_time_occurrences_across_dst(
    engine: Server, history: History, tmp_path: Path, rule: str, days: int,
) -> None:
    at = history.end - 3 * HOUR - 20 * MINUTE  # 2026-10-31 20:40 UTC
    first_sunday = int(datetime(2026, 10, 4, tzinfo=UTC).timestamp())
    starts = [paris_0200(d) for d in range(first_sunday - 7 * DAY, at, days * DAY)]
    excluded = [(s, s + 2 * HOUR) for s in starts if s + 2 * HOUR > at - WINDOWS["30d"] and s < at]
    spec = spec_with(tmp_path, [{"rrule": rule, "duration": "2h", "timezone": "Europe/Paris",
                                 "reason": "maintenance"}])
    doc = evaluated(engine.url, at, spec)
    assert_counts(doc, history, at, excluded)
    assert doc["exclusions"]["excluded_seconds"]["30d"] == len(excluded) * 2 * HOUR


# --- no page for an excluded incident, through a real Alertmanager --------------------------------


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


@pytest.fixture(params=ALERTMANAGERS)
def alertmanager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Alertmanager]:
    webhook = WebhookReceiver()
    try:
        am = launch_alertmanager(tmp_path / "alertmanager", webhook, version=request.param)
    except ProcessError as exc:  # a missing binary fails the test: CI must install prometheus-alertmanager
        webhook.close()
        pytest.fail(str(exc), pytrace=False)
    yield am
    am.stop()
    webhook.close()


def held_pages(am: Alertmanager) -> set[tuple[str, str]]:
    """(alertname, severity) of every alert Alertmanager holds as active."""
    response = requests.get(f"{am.url}/api/v2/alerts", params={"active": "true"}, timeout=5)
    response.raise_for_status()
    return {(a["labels"]["alertname"], a["labels"].get("severity", "")) for a in response.json()}


@pytest.mark.parametrize(
    "excluded", [pytest.param(True, id="excluded: no page"), pytest.param(False, id="not excluded: it pages")]
)
def test_an_excluded_incident_pages_nobody_through_a_real_alertmanager(
    prometheus: Server, alertmanager: Alertmanager, incident: Interval, pool: ThreadPoolExecutor, excluded: bool,
) -> None:
    """The daemon's Cycle (real Prometheus, real Alertmanager) every 5 minutes from just before
    the auth incident to 30 minutes after it; after each cycle, what Alertmanager holds."""
    (slo,) = [s for s in load_specs([EXAMPLE]) if s.id == "auth/login-availability"]
    if excluded:
        slo = replace(slo, exclusions=(Exclusion(reason="load test against production",
                                                 start=utc(incident[0]), end=utc(incident[1])),))
    holder = ViewHolder()
    cycle = Cycle([slo], source=PlannedSource(PrometheusSource(prometheus.url)),
                  sink=AlertmanagerClient([alertmanager.url]), store=None, publisher=holder,
                  telemetry=new_registry(holder, process=False)[1], executor=pool, clock=SystemClock())
    held: set[tuple[str, str]] = set()
    for t in range(incident[0] - 5 * MINUTE, incident[1] + 30 * MINUTE + 1, 5 * MINUTE):
        snapshot = cycle.run(utc(t))
        assert snapshot.failures == ()
        held |= held_pages(alertmanager)
    pages = {name for name, severity in held if severity == "page"}
    assert pages == (set() if excluded else {BUDGET_BURN})
    if excluded:  # during the exclusion the SLO said so
        assert holder.current().statuses[0].excluded_seconds["1h"] == 30 * MINUTE
