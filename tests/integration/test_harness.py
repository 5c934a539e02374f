"""The generator's truth is what real Prometheus and VictoriaMetrics answer.

Tolerances. Counters hold integers (< 2**53, exact in float64). At sample-aligned instants both
window edges hold a sample, so Prometheus' ``increase`` is ``last - first (+ resets)`` times an
extrapolation factor of exactly 1.0, and VictoriaMetrics' is ``last - sample before the window``:
every count must come back bit-exact, and is compared with ``==``. A ratio of two exact counts is
one correctly rounded division on both sides, so it is exact too. Only ``_sum`` (float seconds)
and averages of rates carry float rounding: relative 1e-9, far above the ~1e-15 they show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from slowatch.core.measure import le_matcher
from tests.support.generator import (
    BUCKET,
    COUNT,
    DAY,
    ENDPOINTS,
    LE,
    RATE_2M_WINDOW,
    REQUESTS_TOTAL,
    Endpoint,
    History,
    Scenario,
)
from tests.support.processes import Server, instant_query, start_alertmanager, start_prometheus

pytestmark = pytest.mark.integration

E5XX = {"500", "503"}
HOUR = 3600


def value(result: list[dict[str, Any]]) -> float | None:
    """The one sample of an aggregated instant query; None when the result is empty."""
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


@dataclass(frozen=True)
class Count:
    query: str
    at: Callable[[Scenario], int]
    truth: Callable[[History, int], float | None]


def events(metric: str, labels: dict[str, Any], window: int) -> Callable[[History, int], float]:
    return lambda h, at: h.increase(metric, labels, at - window, at)


def end(s: Scenario) -> int:
    return s.end


def after_reset(s: Scenario) -> int:
    return s.reset.at + HOUR


def incident_end(s: Scenario) -> int:
    return s.episode("auth-incident").end


GATEWAY_UNDER_100MS = f'http_request_duration_seconds_bucket{{service="gateway",{le_matcher([0.1])}}}'
AGENT_SIMPLE_UNDER_2S = f'http_request_duration_seconds_bucket{{endpoint="/agents/execute/simple",{le_matcher([2])}}}'

# Counts both backends must return exactly.
EXACT_COUNTS = [
    pytest.param(
        Count('sum(increase(http_requests_total{service="auth"}[30d]))', end,
              events(REQUESTS_TOTAL, {"service": "auth"}, 30 * DAY)),
        id="auth requests over 30d at the end are the exact count",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="agent"}[1d]))', after_reset,
              events(REQUESTS_TOTAL, {"service": "agent"}, DAY)),
        id="agent requests over a day spanning the counter reset are exact",
    ),
    pytest.param(
        Count(f"sum(increase({GATEWAY_UNDER_100MS}[30d]))", end,
              events(BUCKET, {"service": "gateway", "le": "0.1"}, 30 * DAY)),
        id="gateway requests under 100ms over 30d (le regex as slowatch builds it) are exact",
    ),
]

PROMETHEUS_COUNTS = [
    *EXACT_COUNTS,
    pytest.param(
        Count("sum(increase(http_requests_total[30d]))", lambda s: s.silence.start,
              events(REQUESTS_TOTAL, {}, 30 * DAY)),
        # At the end knowledge's series stop 2h early and Prometheus extrapolates them (see below).
        id="all requests (overall availability) over 30d before knowledge's silence are exact",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="auth",code=~"5.."}[1h]))', incident_end,
              events(REQUESTS_TOTAL, {"service": "auth", "code": E5XX}, HOUR)),
        id="auth 5xx in the hour ending with the incident are exact",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="agent",code=~"5.."}[30d]))', end,
              events(REQUESTS_TOTAL, {"service": "agent", "code": E5XX}, 30 * DAY)),
        id="agent 5xx over 30d across the reset and the incident are exact",
    ),
    pytest.param(
        Count(f"sum(increase({AGENT_SIMPLE_UNDER_2S}[1d]))", after_reset,
              events(BUCKET, {"endpoint": "/agents/execute/simple", "le": "2"}, DAY)),
        id="agent simple requests under 2s over a day spanning the reset are exact",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="gateway"}[40d]))', end,
              lambda h, at: h.increase(REQUESTS_TOTAL, {"service": "gateway"}, h.start, at)),
        # Extrapolation towards the window start stops where the counter would be 0: it is 0 at
        # the first sample, so nothing is added.
        id="a window longer than the history counts from the first sample without extrapolating",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[1h]))', end, lambda h, at: None),
        id="knowledge without samples in the last hour returns no result",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[2h]))', end, lambda h, at: None),
        id="knowledge with its only sample on the 2h window's edge returns no result",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[3h]))', end,
              lambda h, at: h.increase(REQUESTS_TOTAL, {"service": "knowledge"}, at - 3 * HOUR, at)
              * (HOUR + 30) / HOUR),
        # Samples cover only the first hour of the window: Prometheus extrapolates the last
        # 2h by half a sample interval (30 s), inflating the count by 0.83%.
        id="knowledge over 3h ending in its silence is extrapolated by 30s (Prometheus only)",
    ),
]

VICTORIA_METRICS_COUNTS = [
    *EXACT_COUNTS,
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[1h]))', end, lambda h, at: None),
        id="knowledge without samples in the last hour returns no result",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[3h]))', end,
              events(REQUESTS_TOTAL, {"service": "knowledge"}, 3 * HOUR)),
        id="knowledge over 3h ending in its silence is exact (no extrapolation)",
    ),
    pytest.param(
        Count('sum(increase(http_requests_total{service="knowledge"}[30d]))', end,
              events(REQUESTS_TOTAL, {"service": "knowledge"}, 30 * DAY)),
        id="knowledge over 30d ending in its silence is exact",
    ),
]


def check(server: Server, history: History, case: Count) -> None:
    at = case.at(history.scenario)
    got = value(instant_query(server.url, case.query, at))
    want = case.truth(history, at)
    if want is None:
        assert got is None
    elif float(want).is_integer():
        assert got == want
    else:
        assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("case", PROMETHEUS_COUNTS)
def test_prometheus_counts_equal_the_truth(prometheus: Server, history: History, case: Count) -> None:
    check(prometheus, history, case)


@pytest.mark.parametrize("case", VICTORIA_METRICS_COUNTS)
def test_victoria_metrics_counts_equal_the_truth(
    victoria_metrics: Server, history: History, case: Count
) -> None:
    check(victoria_metrics, history, case)


def _id(e: Endpoint) -> str:
    return f"{e.endpoint} bucket fractions over 30d are exact and as defined"


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=_id(e)) for e in ENDPOINTS])
def test_prometheus_bucket_fractions(prometheus: Server, history: History, endpoint: Endpoint) -> None:
    # Before knowledge's silence, so every series holds a sample on both window edges.
    at = history.scenario.silence.start
    sel = f'service="{endpoint.service}",endpoint="{endpoint.endpoint}"'
    got = {r["metric"]["le"]: float(r["value"][1]) for r in instant_query(
        prometheus.url,
        f"sum by (le) (increase(http_request_duration_seconds_bucket{{{sel}}}[30d]))"
        f" / ignoring(le) group_left sum(increase(http_request_duration_seconds_count{{{sel}}}[30d]))",
        at,
    )}
    labels = {"service": endpoint.service, "endpoint": endpoint.endpoint}
    total = history.increase(COUNT, labels, at - 30 * DAY, at)
    want = {le: history.increase(BUCKET, {**labels, "le": le}, at - 30 * DAY, at) / total for le in LE}
    assert got == want
    # The per-minute rounding of bucket counts leaves the month within 1e-4 of the defined CDF.
    assert [round(want[le] - f, 4) for le, f in zip(LE, endpoint.latency_cdf, strict=True)] == [0.0] * len(LE)


def test_prometheus_duration_sum(prometheus: Server, history: History) -> None:
    at = after_reset(history.scenario)
    got = value(instant_query(
        prometheus.url, 'sum(increase(http_request_duration_seconds_sum{service="agent"}[1d]))', at))
    assert got == pytest.approx(history.duration_sum({"service": "agent"}, at - DAY, at), rel=1e-9)


GATEWAY_RATE = 'sum(rate(http_requests_total{service="gateway"}[2m]))'
# Prometheus 2's ranges and subqueries are closed, [at - W, at]: W/1m + 1 slices. Prometheus 3's
# and VictoriaMetrics' are (at - W, at]: W/1m.
CLOSED_RANGES = {("prometheus", "2.42")}
P2, P3 = ("prometheus", "2.42"), ("prometheus", "3.5")
VM79, VM145 = ("victoria-metrics", "1.79"), ("victoria-metrics", "1.145")


def good_slices(window: str) -> str:
    return f"sum_over_time(({GATEWAY_RATE} >= bool 200)[{window}:1m])"


def all_slices(window: str) -> str:
    return f"count_over_time(({GATEWAY_RATE})[{window}:1m])"


@dataclass(frozen=True)
class Slices:
    window: str
    seconds: int
    at: Callable[[Scenario], int]
    want: dict[tuple[str, str], tuple[int, int]]
    """(total, good) slices per engine: a 2-minute rate (``RATE_2M_WINDOW``) but on Prometheus 3,
    which sees only the last minute, so only it finds the single-minute dips."""


SLICE_CASES = [
    pytest.param(Slices("30d", 30 * DAY, end, {P2: (43201, 43182), P3: (43200, 43177), VM79: (43200, 43181),
                                               VM145: (43200, 43181)}),
                 id="gateway throughput slices over 30d"),
    pytest.param(Slices("1h", HOUR, lambda s: s.episode("gateway-dip").end + 20 * 60,
                        {P2: (61, 42), P3: (60, 40), VM79: (60, 41), VM145: (60, 41)}),
                 id="gateway throughput slices over the hour around the 20 minute dip"),
    pytest.param(Slices("10m", 600, lambda s: s.episode("gateway-dip-minute-3").end + 60,
                        {P2: (11, 11), P3: (10, 7), VM79: (10, 10), VM145: (10, 10)}),
                 id="gateway throughput slices over 10m holding three single-minute dips"),
]


@pytest.mark.parametrize("case", SLICE_CASES)
def test_throughput_slices(engine: Server, engine_key: tuple[str, str], history: History, case: Slices) -> None:
    at = case.at(history.scenario)
    first = at - case.seconds + (0 if engine_key in CLOSED_RANGES else 60)
    want = history.slices(200, first, at, rate_window=RATE_2M_WINDOW[engine_key])
    assert (want.total, want.good, want.ties) == (*case.want[engine_key], 0)
    assert value(instant_query(engine.url, all_slices(case.window), at)) == want.total
    assert value(instant_query(engine.url, good_slices(case.window), at)) == want.good


def test_a_1m_rate_over_60s_samples_is_empty_on_prometheus_3(history: History, engine: Server,
                                                              engine_key: tuple[str, str]) -> None:
    """Why the example spec says [2m]: Prometheus 3's (t-1m, t] holds one 60 s sample, too few
    for rate(); the other engines answer (VictoriaMetrics with the sample before the range)."""
    got = instant_query(engine.url, 'rate(http_requests_total{service="gateway"}[1m])', end(history.scenario))
    assert (len(got) == 0) == (engine_key == P3)


def test_the_dips_are_the_only_bad_slices(history: History) -> None:
    s = history.scenario
    dips = sum((e.end - e.start) // 60 for e in s.episodes if e.service == "gateway")
    whole = history.slices(200, s.start, s.end)
    assert (dips, whole.total - whole.good) == (23, 23)


def test_prometheus_mean_of_5m_ratios_is_far_from_the_event_weighted_ratio(
    prometheus: Server, history: History
) -> None:
    quiet = history.scenario.episode("knowledge-quiet-hour")
    day_end = quiet.start - quiet.start % DAY + DAY
    k, errors = {"service": "knowledge"}, {"service": "knowledge", "code": E5XX}
    mean = value(instant_query(
        prometheus.url,
        'avg_over_time((sum(rate(http_requests_total{service="knowledge",code=~"5.."}[5m]))'
        ' / sum(rate(http_requests_total{service="knowledge"}[5m])))[1d:5m])',
        day_end,
    ))
    # The subquery's steps are the 289 five-minute instants in [day start, day end].
    ratios = [history.increase(REQUESTS_TOTAL, errors, t - 300, t) / history.increase(REQUESTS_TOTAL, k, t - 300, t)
              for t in range(day_end - DAY, day_end + 1, 300)]
    assert mean == pytest.approx(sum(ratios) / len(ratios), rel=1e-9)
    weighted = value(instant_query(
        prometheus.url,
        'sum(increase(http_requests_total{service="knowledge",code=~"5.."}[1d]))'
        ' / sum(increase(http_requests_total{service="knowledge"}[1d]))',
        day_end,
    ))
    assert weighted == history.increase(REQUESTS_TOTAL, errors, day_end - DAY, day_end) / history.increase(
        REQUESTS_TOTAL, k, day_end - DAY, day_end)
    assert mean is not None and weighted is not None and mean > 5 * weighted


def burn(history: History, service: str, budget: float, window: int, at: int) -> float:
    labels = {"service": service}
    bad = history.increase(REQUESTS_TOTAL, {**labels, "code": E5XX}, at - window, at)
    return bad / history.increase(REQUESTS_TOTAL, labels, at - window, at) / budget


def test_the_scenario_burns_as_documented(history: History) -> None:
    s = history.scenario
    auth, agent = s.episode("auth-incident").end, s.episode("agent-incident").end
    assert burn(history, "auth", 0.0005, HOUR, auth) > 100
    assert burn(history, "auth", 0.0005, 300, auth) > 14.4
    assert 0.5 < burn(history, "auth", 0.0005, 30 * DAY, s.end) < 0.65
    assert 6 < burn(history, "agent", 0.001, 6 * HOUR, agent) < 14.4
    assert 6 < burn(history, "agent", 0.001, 1800, agent) < 14.4
    assert burn(history, "agent", 0.001, HOUR, agent) < 14.4


def test_prometheus_restart_and_kill_keep_port_and_data(
    blocks: Path, history: History, tmp_path: Path
) -> None:
    query = 'sum(increase(http_requests_total{service="auth"}[30d]))'
    want = history.increase(REQUESTS_TOTAL, {"service": "auth"}, history.end - 30 * DAY, history.end)
    with start_prometheus(tmp_path / "prometheus", blocks) as server:
        url = server.url
        server.restart()
        assert (server.url, value(instant_query(url, query, history.end))) == (url, want)
        server.kill()
        assert not server.running
        server.start()  # after a crash: same command, same port, same data
        assert value(instant_query(url, query, history.end)) == want


ALERTMANAGER_CONFIG = "route:\n  receiver: default\nreceivers:\n  - name: default\n"


def test_alertmanagers_cluster_only_when_asked(tmp_path: Path) -> None:
    config = ALERTMANAGER_CONFIG
    with (
        start_alertmanager(tmp_path / "alone", config) as alone,
        start_alertmanager(tmp_path / "first", config, cluster=True) as first,
        start_alertmanager(tmp_path / "second", config, cluster_peers=[first.cluster_address]) as second,
    ):
        assert requests.get(alone.url + "/api/v2/status", timeout=5).json()["cluster"]["status"] == "disabled"
        deadline = time.monotonic() + 10
        while True:  # the join is gossiped: the first member learns of the second within moments
            peers = requests.get(first.url + "/api/v2/status", timeout=5).json()["cluster"].get("peers") or []
            if len(peers) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted(p["address"] for p in peers) == sorted([first.cluster_address, second.cluster_address])
