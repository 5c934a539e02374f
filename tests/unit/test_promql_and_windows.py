"""Query building and result reading (core/promql.py), durations and the burn-rate table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import promql_parser
import pytest

from slowatch.core.budget import SLO_WINDOW, EventCounts
from slowatch.core.model import (
    SLO,
    CalendarWindow,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
    window_span,
)
from slowatch.core.promql import (
    KIND_LABEL,
    WINDOW_LABEL,
    ResultError,
    Sample,
    go_float,
    le_spellings,
    measurement_query,
    read_counts,
)
from slowatch.core.windows import (
    SRE_WORKBOOK_TABLE_5_8,
    DurationError,
    alert_windows_for,
    format_duration,
    parse_duration,
)

AT = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def make(sli: RatioSLI | LatencySLI | ThroughputSLI, window: timedelta = 30 * DAY) -> SLO:
    return SLO(service="s", name="n", objective_percent=99.9, window=RollingWindow(window), sli=sli)


SLIS = [
    pytest.param(RatioSLI(total='http_requests_total{service="a"}', errors='http_requests_total{code=~"5.."}'),
                 id="a ratio of errors and total"),
    pytest.param(RatioSLI(total="t_total", good="g_total"), id="a ratio of good and total"),
    pytest.param(RatioSLI(total="sum(increase(t[{{.window}}]))", good="sum(increase(g[{{.window}}]))", raw=True),
                 id="a raw ratio with the window placeholder"),
    pytest.param(LatencySLI("http_request_duration_seconds", '{service="a",path="/x\\"y"}', 0.2),
                 id="a latency histogram with an escaped label value"),
    pytest.param(ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=1)), id="a throughput query"),
]


@pytest.mark.parametrize("sli", SLIS)
def test_every_measurement_query_is_valid_promql(sli: RatioSLI | LatencySLI | ThroughputSLI) -> None:
    q = measurement_query(make(sli), window_span(RollingWindow(30 * DAY), AT))
    promql_parser.parse(q)
    for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "slo"):
        assert f'"{window}"' in q


def sample(window: str, kind: str, value: float, **labels: str) -> Sample:
    return Sample(labels={WINDOW_LABEL: window, KIND_LABEL: kind, **labels}, value=value)


def test_errors_and_total_become_good_and_total() -> None:
    slo = make(RatioSLI(total="t", errors="e"))
    counts, problems = read_counts(slo, [sample("1h", "total", 100), sample("1h", "bad", 3)])
    assert counts == {"1h": EventCounts(good=97, total=100)}
    assert problems == ()


def test_an_absent_error_sample_means_no_errors() -> None:
    counts, _ = read_counts(make(RatioSLI(total="t", errors="e")), [sample(SLO_WINDOW, "total", 10)])
    assert counts[SLO_WINDOW] == EventCounts(good=10, total=10)


def test_several_series_for_one_window_are_an_error_not_the_first_one() -> None:
    slo = make(RatioSLI(total="sum(t[{{.window}}])", good="g[{{.window}}]", raw=True))
    with pytest.raises(ResultError, match="returned 2 series where one is expected"):
        read_counts(slo, [sample("1h", "good", 1, pod="a"), sample("1h", "good", 2, pod="b")])


def test_a_latency_threshold_missing_on_some_series_is_a_problem() -> None:
    slo = make(LatencySLI("h", "{}", 0.25))
    _, problems = read_counts(slo, [sample("check", "bound_series", 1), sample("check", "all_series", 3)])
    assert problems and "0.25s is not an `le` bound" in problems[0] and "2 of 3 series" in problems[0]


@pytest.mark.parametrize(
    ("value", "spellings"),
    [
        pytest.param(1.0, ["1", "1.0"], id="one second is spelled 1 by Go and 1.0 by Python clients"),
        pytest.param(0.2, ["0.2"], id="a fraction is spelled the same by both"),
        pytest.param(1e-05, ["1e-05"], id="tiny bounds use exponent notation"),
    ],
)
def test_le_bounds_match_every_client_spelling(value: float, spellings: list[str]) -> None:
    assert le_spellings(value) == spellings
    assert go_float(value) in spellings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h30m", 5400, id="compound durations"),
        pytest.param("30d", 2_592_000, id="days"),
        pytest.param("200ms", 0.2, id="milliseconds"),
    ],
)
def test_durations_parse_and_format_round_trip(text: str, seconds: float) -> None:
    d = parse_duration(text)
    assert d.total_seconds() == seconds
    assert parse_duration(format_duration(d)) == d


@pytest.mark.parametrize("text", ["5", "m", "-5m", "5 minutes", "0s"])
def test_bad_durations_say_what_to_write(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("window", "factors"),
    [
        pytest.param(30 * DAY, {("page", "1h"): 14.4, ("page", "6h"): 6.0, ("ticket", "3d"): 1.0},
                     id="30 days gives the workbook's 14.4, 6 and 1"),
        pytest.param(7 * DAY, {("page", "1h"): 3.36, ("page", "6h"): 1.4, ("ticket", "3d"): 1.0},
                     id="7 days scales the factors to the same budget fractions, never under 1x"),
        pytest.param(DAY, {("page", "1h"): 1.0, ("page", "6h"): 1.0},
                     id="1 day drops the 3-day ticket whose window is longer than the SLO"),
    ],
)
def test_burn_rate_factors_are_computed_from_the_table(
    window: timedelta, factors: dict[tuple[str, str], float]
) -> None:
    got = {(r.severity, r.long_window): r.factor(window) for r in alert_windows_for(window)}
    assert got == pytest.approx(factors)
    assert len(SRE_WORKBOOK_TABLE_5_8) == 3


def test_calendar_month_spans_the_whole_month_in_its_time_zone() -> None:
    span = window_span(CalendarWindow("month", "Europe/Paris"), datetime(2026, 11, 15, 12, tzinfo=UTC))
    assert span.start == datetime(2026, 10, 31, 23, tzinfo=UTC)  # midnight in Paris (UTC+1)
    assert span.length == timedelta(days=30)


def test_calendar_week_starts_on_monday() -> None:
    span = window_span(CalendarWindow("week"), datetime(2026, 11, 27, 15, tzinfo=UTC))  # a Friday
    assert span.start == datetime(2026, 11, 23, tzinfo=UTC)
    assert span.elapsed == timedelta(days=4, hours=15)
