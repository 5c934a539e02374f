"""The constant-cost plan (core/plan.py): windows as tail + hours + head, shapes, the ledger."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import promql_parser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from slowatch.core.measure import ANSWERED, PROMETHEUS, Answer, Span, joined, read_answer
from slowatch.core.model import SLO, CalendarWindow, LatencySLI, RatioSLI, RollingWindow, ThroughputSLI
from slowatch.core.plan import (
    HOUR,
    SETTLE_SECONDS,
    GroupLedger,
    WindowPlan,
    assemble,
    group_slos,
    ledger_end,
    live_spans,
    query_parts,
    window_plans,
)
from slowatch.core.promql import KIND_LABEL, WINDOW_LABEL

DAY = 86400


def ratio(service: str, window: timedelta = timedelta(days=30), name: str = "avail") -> SLO:
    return SLO(service=service, name=name, objective_percent=99.9, window=RollingWindow(window),
               sli=RatioSLI(total=f'http_requests_total{{service="{service}"}}',
                            errors=f'http_requests_total{{service="{service}",code=~"5.."}}'))


def latency(service: str, threshold: float) -> SLO:
    return SLO(service=service, name=f"lat{threshold}", objective_percent=95, window=RollingWindow(timedelta(days=7)),
               sli=LatencySLI("http_request_duration_seconds", f'{{service="{service}"}}', threshold))


@pytest.mark.parametrize(
    ("at", "seconds"),
    [
        pytest.param(1_700_000_000, 30 * DAY, id="a 30-day window at an unaligned instant"),
        pytest.param(1_699_999_200, 30 * DAY, id="a 30-day window at a whole hour"),
        pytest.param(1_700_000_123, DAY, id="a 1-day window"),
        pytest.param(1_700_000_000 + 299, 3 * DAY, id="just before the last hour settles"),
        pytest.param(1_700_000_000 + 301, 3 * DAY, id="just after the last hour settles"),
        pytest.param(1_699_999_200 + 299, 2 * HOUR, id="a 2-hour window just before the last hour settles"),
        pytest.param(1_699_999_200 + 301, 2 * HOUR, id="a 2-hour window just after the last hour settles"),
    ],
)
def test_tail_hours_and_head_tile_the_window_exactly(at: int, seconds: int) -> None:
    p = WindowPlan("w", seconds, live=False)
    tail = p.tail(at)
    hours = p.hours(at)
    head = at - ledger_end(at)
    start = at - seconds
    # Tail covers (start, first hour start], hours cover whole hours (maybe none), head covers
    # (last hour end, at].
    first = hours[0] - HOUR if hours else ledger_end(at)
    assert (tail.length if tail else 0) == first - start
    if tail:
        assert at - tail.offset == first  # the tail ends where the first whole hour begins
    assert all(b - a == HOUR for a, b in itertools.pairwise(hours))
    assert (hours[-1] if hours else first) == ledger_end(at)
    assert SETTLE_SECONDS <= head < HOUR + SETTLE_SECONDS
    assert (tail.length if tail else 0) + len(hours) * HOUR + head == seconds


def test_windows_of_two_hours_or_more_come_from_the_ledger() -> None:
    plans = {p.name: p.live for p in window_plans(ratio("a"), datetime(2026, 11, 1, tzinfo=UTC))}
    assert plans == {"5m": True, "30m": True, "1h": True, "2h": False, "6h": False,
                     "1d": False, "3d": False, "slo": False}


def test_a_calendar_window_counts_from_the_period_start() -> None:
    slo = SLO("s", "m", 99, CalendarWindow("month"), RatioSLI(total="t", errors="e"))
    at = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)
    (whole,) = [p for p in window_plans(slo, at) if p.name == "slo"]
    assert whole.seconds == 2 * DAY + 12 * HOUR + 30 * 60


def test_a_cycle_reads_the_same_spans_for_a_30_day_and_a_1_day_slo() -> None:
    at = datetime(2026, 11, 1, 12, 34, 56, tzinfo=UTC)
    long = live_spans([ratio("a", timedelta(days=30))], at)
    short = live_spans([ratio("a", timedelta(days=1))], at)
    read = lambda spans: sum(s.length for s in spans.values())  # noqa: E731 - a one-line helper
    assert read(long) <= read(short) + HOUR  # one extra tail at most: cost does not grow with W
    assert read(long) < 16 * HOUR


@pytest.mark.parametrize(("window", "expected"), [
    pytest.param(timedelta(days=30), [["w300", "w1800", "w3600", "head", "tail7200", "tail21600"],
                                      ["tail86400"], ["tail259200"], ["tail2592000"]],
                 id="a 30-day SLO asks the last day in one query and each farther tail in the query of its day"),
    pytest.param(timedelta(days=1), [["w300", "w1800", "w3600", "head", "tail7200", "tail21600"],
                                     ["tail86400"], ["tail259200"]],
                 id="a 1-day SLO's window is the 1d burn-rate window's tail, asked once"),
])
def test_spans_are_asked_in_one_query_per_day_they_reach_back_into(
    window: timedelta, expected: list[list[str]]
) -> None:
    at = datetime(2026, 11, 1, 12, 34, 56, tzinfo=UTC)
    spans = live_spans([ratio("a", window)], at)
    parts = query_parts(spans)
    assert [sorted(p, key=list(spans).index) for p in parts] == expected
    assert {tag: span for p in parts for tag, span in p.items()} == spans  # every span, once


def test_the_answers_of_a_chunks_parts_join_into_one_answered_only_if_each_was() -> None:
    (group,) = group_slos([ratio("a")])
    near = read_answer(group.roles, [({KIND_LABEL: ANSWERED}, 1.0), ({KIND_LABEL: "total", WINDOW_LABEL: "head",
                                                                     "service": "a"}, 7.0)])
    far = read_answer(group.roles, [({KIND_LABEL: ANSWERED}, 1.0), ({KIND_LABEL: "total", WINDOW_LABEL: "tail259200",
                                                                    "service": "a"}, 5.0)])
    both = joined([near, far])
    assert both.answered and (both.value("head", "total", ("a",)), both.value("tail259200", "total", ("a",))) == (7, 5)
    assert not joined([near, Answer({}, {}, answered=False)]).answered


def test_slos_differing_only_in_label_values_share_one_group() -> None:
    groups = group_slos([ratio("a"), ratio("b"), ratio("c", timedelta(days=7)), latency("a", 0.2)])
    assert sorted(len(g.slos) for g in groups) == [1, 3]
    (ratios,) = [g for g in groups if len(g.slos) == 3]
    q = ratios.query({"w300": Span(300)}, ratios.slos, PROMETHEUS)
    promql_parser.parse(q)
    assert 'service=~"a|b|c"' in q
    assert q.startswith('label_replace(label_replace(sum by (service) ((last_over_time(')


def test_an_answer_without_the_constant_sample_lost_its_series_and_is_not_zero_events() -> None:
    (group,) = group_slos([ratio("a")])
    q = group.query({"w300": Span(300)}, group.slos, PROMETHEUS)
    assert q.endswith(f'label_replace(vector(1), "{KIND_LABEL}", "{ANSWERED}", "", "")')
    assert read_answer(group.roles, [({KIND_LABEL: ANSWERED}, 1.0)]).answered
    assert not read_answer(group.roles, []).answered


def test_a_raw_query_is_a_group_of_one_read_live_over_whole_windows() -> None:
    raw = SLO("s", "raw", 99, RollingWindow(timedelta(days=1)),
              RatioSLI(total="sum(increase(t[{{.window}}]))", good="sum(increase(g[{{.window}}]))", raw=True))
    twin = SLO("s", "raw2", 99, RollingWindow(timedelta(days=1)), raw.sli)
    groups = group_slos([raw, twin])
    assert sorted([s.id for s in g.slos] for g in groups) == [[raw.id], [twin.id]]
    (group,) = [g for g in groups if g.slos == (raw,)]
    at = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    spans = live_spans([raw], at, group.ledger)
    assert spans == {f"w{s}": Span(s) for s in (300, 1800, HOUR, 2 * HOUR, 6 * HOUR, DAY, 3 * DAY)}
    q = group.query(spans, [raw], PROMETHEUS)
    assert "sum(sum(increase(g[3d])))" in q
    promql_parser.parse(q)


def test_throughput_ranges_are_half_open_so_adjacent_ranges_never_share_a_slice() -> None:
    slo = SLO("s", "tp", 99, RollingWindow(timedelta(days=1)),
              ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=1)))
    (group,) = group_slos([slo])
    q = group.query({"hour": Span(HOUR, 600)}, [slo], PROMETHEUS)
    assert "[59m59s999ms:1m] offset 10m" in q
    promql_parser.parse(q)


def test_latency_groups_sum_by_le_and_each_slo_reads_its_own_threshold() -> None:
    a, b = latency("a", 0.2), latency("b", 1.0)
    (group,) = group_slos([a, b])
    q = group.query({"w300": Span(300)}, group.slos, PROMETHEUS)
    assert "sum by (service, le)" in q and 'le=~"0\\\\.2|1|1\\\\.0|1e\\\\+00|2e\\\\-01"' in q
    assert "count by (service, le)" in q  # the bound check
    promql_parser.parse(q)
    samples = [
        ({WINDOW_LABEL: "w300", KIND_LABEL: "good", "service": "a", "le": "0.2"}, 90.0),
        ({WINDOW_LABEL: "w300", KIND_LABEL: "good", "service": "b", "le": "1"}, 70.0),
        ({WINDOW_LABEL: "w300", KIND_LABEL: "good", "service": "b", "le": "1.0"}, 5.0),  # a Python client
    ]
    answer = read_answer(group.roles, samples)
    assert answer.value("w300", "good", ("a",), 0.2) == 90.0
    assert answer.value("w300", "good", ("b",), 1.0) == 75.0
    assert group.ledger_role(a, "good") == "good@0.2" and group.ledger_role(a, "total") == "total"


def test_the_ledger_fills_what_is_missing_and_sums_whole_hours() -> None:
    gl = GroupLedger()
    rk = [("total", ("a",))]
    need = range(10 * HOUR, 20 * HOUR + 1, HOUR)
    assert gl.missing(need, rk) == need
    gl.fill(need, {rk[0]: [float(h // HOUR) for h in need]}, rk, keep_from=need[0])
    assert gl.missing(need, rk) == range(0)
    assert gl.total(rk[0], range(12 * HOUR, 14 * HOUR + 1, HOUR)) == 12 + 13 + 14
    later = range(11 * HOUR, 22 * HOUR + 1, HOUR)
    missing = gl.missing(later, rk)
    assert list(missing) == [21 * HOUR, 22 * HOUR]
    gl.fill(missing, {rk[0]: [21.0, 0.0]}, rk, keep_from=later[0])
    assert (gl.rows[rk[0]].first, gl.rows[rk[0]].last) == (11 * HOUR, 22 * HOUR)
    assert gl.total(rk[0], range(21 * HOUR, 22 * HOUR + 1, HOUR)) == 21.0  # an hour with no samples: no events
    assert math.isnan(gl.total(rk[0], range(9 * HOUR, 12 * HOUR + 1, HOUR)))  # never guess an hour


def test_a_new_key_in_a_group_misses_the_whole_range_and_the_others_nothing() -> None:
    gl = GroupLedger()
    need = range(HOUR, 5 * HOUR + 1, HOUR)
    gl.fill(need, {}, [("total", ("a",))], keep_from=HOUR)
    assert gl.missing(need, [("total", ("a",)), ("total", ("b",))]) == need
    assert gl.missing(need, [("total", ("a",))]) == range(0)
    assert gl.missing(need, [("total", ("b",))]) == need


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=200), st.data())
def test_ledger_window_sums_equal_the_sum_of_their_hours(values: list[int], data: st.DataObject) -> None:
    gl = GroupLedger()
    hours = range(HOUR, (len(values) + 1) * HOUR, HOUR)
    rk = ("total", ())
    gl.fill(hours, {rk: [float(v) for v in values]}, [rk], keep_from=HOUR)
    i = data.draw(st.integers(min_value=0, max_value=len(values) - 1))
    j = data.draw(st.integers(min_value=i, max_value=len(values) - 1))
    assert gl.total(rk, hours[i:j + 1]) == sum(values[i:j + 1])


def test_a_non_finite_hour_is_unknown_while_in_a_window_and_forgotten_after() -> None:
    gl = GroupLedger()
    rk = ("total", ())
    hours = range(HOUR, 10 * HOUR + 1, HOUR)
    gl.fill(hours, {rk: [1.0, 1.0, math.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]}, [rk], keep_from=HOUR)
    assert math.isnan(gl.total(rk, range(2 * HOUR, 4 * HOUR + 1, HOUR)))
    assert gl.total(rk, range(4 * HOUR, 10 * HOUR + 1, HOUR)) == 7.0  # the sums after it are intact
    later = range(5 * HOUR, 11 * HOUR + 1, HOUR)
    gl.fill(gl.missing(later, [rk]), {rk: [1.0]}, [rk], keep_from=later[0])
    assert gl.total(rk, later) == 7.0 and gl.rows[rk].unusable == set()


def test_running_sum_rounding_never_makes_more_good_than_total_events() -> None:
    slo = SLO("s", "good-form", 99.9, RollingWindow(timedelta(days=30)), RatioSLI(total="t_total", good="g_total"))
    (group,) = group_slos([slo])
    at = datetime(2026, 11, 1, 12, 0, 5, tzinfo=UTC)
    end = ledger_end(int(at.timestamp()))
    need = range(end - 739 * HOUR, end + 1, HOUR)
    # Errors in early hours, none in the last day: the 1d window's good and total are differences
    # of running sums that round apart (seed 15 makes good exceed total by 2e-7 unclamped).
    rng = random.Random(15)
    total = [rng.uniform(1e6, 3e6) + rng.random() for _ in need]
    good = [t - (rng.uniform(0, 500) if i < 700 else 0.0) for i, t in enumerate(total)]
    gl = GroupLedger()
    rows = dict(zip(("good", "total"), (good, total), strict=True))
    gl.fill(need, {rk: rows[rk[0]] for rk in group.ledger_keys([slo])}, group.ledger_keys([slo]), keep_from=need[0])
    m = assemble(slo, group, at, read_answer(group.roles, []), gl)
    day = m.counts["1d"]
    assert day.good == day.total  # the last day had no errors: rounding is not reported as data
    assert all(c.good <= c.total for c in m.counts.values())


def test_changing_a_throughput_minimum_starts_a_new_ledger() -> None:
    def tp(minimum: float) -> SLO:
        return SLO("s", "tp", 99, RollingWindow(timedelta(days=1)),
                   ThroughputSLI("sum(rate(x[1m]))", minimum, timedelta(minutes=1)))

    (a,) = group_slos([tp(100)])
    (b,) = group_slos([tp(500)])
    assert a.signature != b.signature
