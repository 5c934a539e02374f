"""check --live's latency bound: matched as the daemon's queries match it (every spelling of the
bound, core/measure.le_spellings), not as a number. A throughput query's rate range: two samples
at the slowest series' scrape interval."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from slowatch.checks import live_problems
from slowatch.core.model import SLO, LatencySLI, RollingWindow, ThroughputSLI

AT = datetime(2026, 11, 1, tzinfo=UTC)
SLO_ = SLO("auth", "login-latency", 95, RollingWindow(timedelta(days=30)),
           LatencySLI("http_request_duration_seconds", '{service="auth"}', 0.2))


class Series:
    def __init__(self, les: list[str]) -> None:
        self.les = les

    def series(self, selector: str, start: datetime, end: datetime) -> list[Mapping[str, str]]:
        if "_bucket" in selector:
            return [{"le": le} for le in self.les]
        return [{"__name__": "x"}]

    def raw_samples(self, selector: str, start: datetime, end: datetime, *, context: str
                    ) -> Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]:
        return []


@pytest.mark.parametrize(("les", "problem"), [
    pytest.param(["0.1", "0.2", "+Inf"], False, id="Go's 0.2 is the bound"),
    pytest.param(["0.1", "0.2", "0.2", "+Inf"], False, id="two series, both spelled 0.2"),
    pytest.param(["0.1", "0.20", "+Inf"], True,
                 id="0.20 equals 0.2 as a number but no query selects it: reported"),
    pytest.param(["0.1", "0.25", "+Inf"], True, id="no such bound: reported with the bounds that exist"),
])
def test_the_bound_is_matched_by_its_spellings(les: list[str], problem: bool) -> None:
    problems = live_problems([SLO_], Series(les), AT)
    assert bool(problems) == problem
    if problem:
        assert "is not a bucket bound" in problems[0] and "existing bounds" in problems[0]


class Scraped:
    """Series scraped every ``interval`` seconds (one more series every 15 s when ``mixed``);
    ``missed`` drops one scrape of the slow series."""

    def __init__(self, interval: int, *, mixed: bool = False, missed: bool = False) -> None:
        self.interval, self.mixed, self.missed = interval, mixed, missed

    def series(self, selector: str, start: datetime, end: datetime) -> list[Mapping[str, str]]:
        return [{"__name__": "x"}]

    def raw_samples(self, selector: str, start: datetime, end: datetime, *, context: str
                    ) -> Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]:
        def points(step: int) -> list[tuple[float, float]]:
            t0, t1 = int(start.timestamp()), int(end.timestamp())
            return [(float(t), 1.0) for t in range(t1, t0, -step)][::-1]
        slow = points(self.interval)
        if self.missed:
            del slow[1]
        return [({"i": "slow"}, slow)] + ([({"i": "fast"}, points(15))] if self.mixed else [])


def throughput(query: str) -> SLO:
    return SLO("gateway", "rps", 95, RollingWindow(timedelta(days=1)), ThroughputSLI(query, 200, timedelta(minutes=1)),
               source="gateway.yaml")


@pytest.mark.parametrize(("query", "source", "problem"), [
    pytest.param("sum(rate(x[1m]))", Scraped(60), "rate/increase(...[1m]) over x{}'s 1m samples holds one sample "
                 "on Prometheus 3: use [2m] or more", id="rate over 1m of 60 s samples: use 2m"),
    pytest.param("sum(rate(x[2m]))", Scraped(60), None, id="rate over 2m of 60 s samples holds two"),
    pytest.param("sum(rate(x[2m]))", Scraped(60, missed=True), None,
                 id="a missed scrape does not widen the interval"),
    pytest.param("sum(increase(x[1m]))", Scraped(60, mixed=True), "[2m] or more",
                 id="the slowest series decides, not one scraped every 15 s"),
    pytest.param("sum(irate(x[45s]))", Scraped(30), "use [1m] or more", id="irate over 45s of 30 s samples"),
    pytest.param("max_over_time(sum(rate(x[1m]))[1h:5m])", Scraped(60), "[2m] or more",
                 id="a rate inside a subquery is checked"),
    pytest.param("sum(rate(x[1m]))", Scraped(15), None, id="rate over 1m of 15 s samples holds four"),
])
def test_a_rate_range_must_hold_two_samples(query: str, source: Scraped, problem: str | None) -> None:
    problems = live_problems([throughput(query)], source, AT)
    assert len(problems) == (problem is not None)
    if problem:
        assert problems[0].startswith("gateway.yaml: gateway/rps: ") and problem in problems[0]
