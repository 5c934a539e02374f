"""What a measurement asks (core/measure.py: the one module that builds measuring PromQL), how its
answer is read, durations and the burn-rate table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import promql_parser
import pytest

from slowatch.core.budget import SLO_WINDOW, EventCounts
from slowatch.core.measure import (
    METRICSQL,
    PROMETHEUS,
    Flavour,
    Span,
    counter_events,
    event_queries,
    le_spellings,
    read_answer,
)
from slowatch.core.model import (
    SLO,
    CalendarWindow,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
    window_span,
)
from slowatch.core.plan import GroupLedger, assemble, bound_problems, group_slos, live_spans
from slowatch.core.promql import KIND_LABEL, WINDOW_LABEL, ResultError, go_float
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


@pytest.mark.parametrize("flavour", [PROMETHEUS, METRICSQL])
@pytest.mark.parametrize("sli", SLIS)
def test_every_cycle_query_and_every_rule_query_is_valid_promql(
    sli: RatioSLI | LatencySLI | ThroughputSLI, flavour: Flavour
) -> None:
    slo = make(sli)
    (group,) = group_slos([slo])
    q = group.query(live_spans([slo], AT, group.ledger), [slo], flavour)
    promql_parser.parse(q)
    for expr in event_queries(slo, timedelta(hours=1), flavour).values():
        promql_parser.parse(expr)


@pytest.mark.parametrize(
    ("flavour", "span", "expected"),
    [
        pytest.param(PROMETHEUS, Span(300), "(last_over_time(x[5m1ms]) - x offset 5m unless resets(x[10m]) > 0)"
                     " or (increase(x[5m1ms]) * 300000 / 300001 and x offset 5m > 0) or increase(x[5m1ms])",
                     id="Prometheus: a difference of instant values, increase over one more millisecond on a reset"),
        pytest.param(PROMETHEUS, Span(3600, 600), "(last_over_time(x[1h1ms] offset 10m) - x offset 1h10m unless "
                     "resets(x[1h5m] offset 10m) > 0) or (increase(x[1h1ms] offset 10m) * 3600000 / 3600001 and "
                     "x offset 1h10m > 0) or increase(x[1h1ms] offset 10m)",
                     id="Prometheus: an hour ten minutes back"),
        pytest.param(METRICSQL, Span(3600, 600), "increase(x[1h] offset 10m)",
                     id="VictoriaMetrics: its own increase counts from the sample before the range"),
    ],
)
def test_counter_events_in_a_span(flavour: Flavour, span: Span, expected: str) -> None:
    assert counter_events("x", span, flavour) == expected


def test_a_throughput_window_holds_the_slices_in_a_left_open_range() -> None:
    q = event_queries(make(ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=1))), timedelta(hours=1))
    assert q == {"good": "sum_over_time(((sum(rate(x[1m]))) >= bool 200)[59m59s999ms:1m])",
                 "total": "count_over_time((sum(rate(x[1m])))[59m59s999ms:1m])"}


def test_one_slo_alone_is_its_own_selector_summed_once() -> None:
    slo = make(RatioSLI(total='http_requests_total{service="a"}',
                        errors='http_requests_total{service="a",code=~"5.."}'))
    q = event_queries(slo, timedelta(minutes=5))
    assert q["bad"].startswith('sum ((last_over_time(http_requests_total{code=~"5..",service="a"}[5m1ms])')


def _counts(slo: SLO, samples: list[tuple[dict[str, str], float]]) -> tuple[dict[str, EventCounts], list[str]]:
    (group,) = group_slos([slo])
    answer = read_answer({**group.roles, **group.check}, samples)
    m = assemble(slo, group, AT, answer, GroupLedger(), from_ledger=False)
    return dict(m.counts), bound_problems(slo, group, answer)


def sample(window: str, kind: str, value: float, **labels: str) -> tuple[dict[str, str], float]:
    return {WINDOW_LABEL: window, KIND_LABEL: kind, **labels}, value


def test_errors_and_total_become_good_and_total() -> None:
    slo = make(RatioSLI(total="t", errors="e"))
    counts, problems = _counts(slo, [sample("w3600", "total", 100), sample("w3600", "bad", 3)])
    assert counts["1h"] == EventCounts(good=97, total=100)
    assert problems == []


def test_an_absent_error_sample_means_no_errors() -> None:
    counts, _ = _counts(make(RatioSLI(total="t", errors="e")), [sample(f"w{30 * 86400}", "total", 10)])
    assert counts[SLO_WINDOW] == EventCounts(good=10, total=10)


def test_several_series_for_one_window_are_an_error_not_the_first_one() -> None:
    slo = make(RatioSLI(total="t", good="g"))
    with pytest.raises(ResultError, match="several series"):
        _counts(slo, [sample("w3600", "good", 1), sample("w3600", "good", 2)])


def test_a_latency_threshold_missing_on_some_series_is_a_problem() -> None:
    slo = make(LatencySLI("h", "{}", 0.25))
    _, problems = _counts(slo, [sample("", "bound_series", 1, le="0.25"), sample("", "all_series", 3)])
    assert problems and "0.25s is not an `le` bound" in problems[0] and "2 of 3 series" in problems[0]


@pytest.mark.parametrize(
    ("value", "spellings"),
    [
        pytest.param(1.0, ["1", "1.0", "1e+00"],
                     id="one second is spelled 1 by Go, 1.0 by Python, 1e+00 in exponent form"),
        pytest.param(0.2, ["0.2", "2e-01"], id="a fraction is spelled the same by Go and Python"),
        pytest.param(2.5, ["2.5", "2.5e+00"], id="a mantissa keeps its digits in exponent form"),
        pytest.param(1e-05, ["1e-05"], id="tiny bounds use exponent notation everywhere"),
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
