"""The budget maths: SLI, budget consumed, burn rates, exhaustion and state, from counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement, burn_rate, evaluate, failed
from slowatch.core.model import SLO, CalendarWindow, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS

AT = datetime(2026, 11, 1, tzinfo=UTC)


def slo(objective: float = 99.9, window: timedelta | None = None) -> SLO:
    return SLO(
        service="svc", name="avail", objective_percent=objective,
        window=RollingWindow(window or timedelta(days=30)),
        sli=RatioSLI(total="t", errors="e"),
    )


def measure(whole: tuple[float, float] | None, **windows: tuple[float, float]) -> Measurement:
    counts = {k.replace("w_", ""): EventCounts(good=g, total=t) for k, (g, t) in windows.items()}
    if whole is not None:
        counts[SLO_WINDOW] = EventCounts(good=whole[0], total=whole[1])
    return Measurement(at=AT, counts=counts)


@pytest.mark.parametrize(
    ("objective", "good", "total", "sli", "consumed"),
    [
        pytest.param(99.9, 999_000, 1_000_000, 0.999, 1.0, id="exactly the allowed errors consume the whole budget"),
        pytest.param(99.9, 999_500, 1_000_000, 0.9995, 0.5, id="half the allowed errors consume half the budget"),
        pytest.param(99.95, 1_000_000, 1_000_000, 1.0, 0.0, id="no errors consume nothing"),
        pytest.param(99.0, 900, 1000, 0.9, 10.0, id="ten times the allowed errors consume ten budgets"),
        pytest.param(95.0, 9_500, 10_000, 0.95, 1.0, id="a 95% latency objective met exactly is exhausted"),
    ],
)
def test_sli_and_budget_follow_from_event_counts(
    objective: float, good: float, total: float, sli: float, consumed: float
) -> None:
    s = evaluate(slo(objective), measure((good, total)))
    assert s.sli == pytest.approx(sli, rel=1e-12)
    assert s.consumed == pytest.approx(consumed, rel=1e-9)
    assert s.remaining == pytest.approx(1 - consumed, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("measurement", "state"),
    [
        pytest.param(measure(None), "no_data", id="no samples at all is no data"),
        pytest.param(measure((0, 0)), "no_data", id="zero events in the window is no data, not 0 or 1"),
        pytest.param(measure((999_900, 1_000_000)), "ok", id="a tenth of the budget used is ok"),
        pytest.param(measure((998_000, 1_000_000)), "exhausted", id="twice the budget used is exhausted"),
        pytest.param(
            measure((999_900, 1_000_000), w_1h=(800, 1000), w_5m=(80, 100)), "burning",
            id="a 200x burn on 1h and 5m is burning",
        ),
        pytest.param(measure((11, 10)), "error", id="more good than total events is a data error"),
        pytest.param(measure((-1, 10)), "error", id="more errors than total events is a data error"),
    ],
)
def test_state_names_what_the_numbers_mean(measurement: Measurement, state: str) -> None:
    assert evaluate(slo(), measurement).state == state


def test_no_data_leaves_the_budget_untouched() -> None:
    s = evaluate(slo(), measure((0, 0)))
    assert (s.sli, s.consumed, s.remaining, s.exhaustion_at) == (None, 0.0, 1.0, None)


def test_data_errors_are_reported_not_clamped() -> None:
    s = evaluate(slo(), measure((1_000_001, 1_000_000)))
    assert s.state == "error"
    assert s.error is not None and "1000001" in s.error and "exceed" in s.error
    assert s.sli is None


@pytest.mark.parametrize(
    ("objective", "bad_fraction_1h", "bad_fraction_5m", "pages"),
    [
        pytest.param(99.9, 0.0144 * (1 + 1e-9), 0.02, True, id="a hair over 14.4x on 1h and 5m pages"),
        pytest.param(99.9, 0.00814 * (1 + 1e-9), 0.02, False, id="8.14x does not page at 14.4x"),
        pytest.param(99.9, 0.0144 * (1 - 1e-9), 0.02, False, id="a hair under 14.4x on 1h does not page"),
        pytest.param(99.9, 0.02, 0.0, False, id="a burn that stopped 5 minutes ago does not page"),
    ],
)
def test_fast_burn_page_compares_raw_burn_rates(
    objective: float, bad_fraction_1h: float, bad_fraction_5m: float, pages: bool
) -> None:
    n = 1e9
    m = measure((n, n), w_1h=(n * (1 - bad_fraction_1h), n), w_5m=(n * (1 - bad_fraction_5m), n))
    s = evaluate(slo(objective), m)
    fast = [r for r in s.burning if r.long_window == "1h"]
    assert bool(fast) is pages


def test_burn_rates_cover_every_window_and_the_slo_window() -> None:
    windows = {f"w_{w}": (990.0, 1000.0) for w in BURN_RATE_WINDOWS}
    s = evaluate(slo(99.0), measure((990.0, 1000.0), **windows))
    assert set(s.burn_rates) == {*BURN_RATE_WINDOWS, "30d"}
    assert all(v == pytest.approx(1.0) for v in s.burn_rates.values())


def test_a_window_without_events_has_no_burn_rate() -> None:
    s = evaluate(slo(), measure((999_000, 1_000_000), w_5m=(0, 0)))
    assert s.burn_rates["5m"] is None
    assert s.burn_rates["1h"] is None


def test_exhaustion_time_follows_the_one_hour_burn_rate() -> None:
    # Half the budget left, burning at 2x: the remaining half of a 30-day budget lasts 7.5 days.
    s = evaluate(slo(99.9), measure((999_500, 1_000_000), w_1h=(998, 1000)))
    assert s.exhaustion_at == AT + timedelta(days=7.5)


def test_a_calendar_budget_that_resets_before_exhaustion_has_no_exhaustion_time() -> None:
    cal = SLO(service="s", name="n", objective_percent=99.9, window=CalendarWindow("month"),
              sli=RatioSLI(total="t", errors="e"))
    at = datetime(2026, 11, 29, tzinfo=UTC)
    s = evaluate(cal, Measurement(at=at, counts={SLO_WINDOW: EventCounts(999_999, 1_000_000),
                                                  "1h": EventCounts(9_999, 10_000)}))
    assert s.exhaustion_at is None  # at 0.1x it would take months; the month ends on the 30th


def test_stale_keeps_the_previous_values() -> None:
    before = evaluate(slo(), measure((999_500, 1_000_000)))
    s = failed(slo(), AT + timedelta(minutes=1), "stale", "prometheus down", before)
    assert (s.state, s.sli, s.consumed, s.at, s.error) == ("stale", before.sli, before.consumed, AT, "prometheus down")


# Event counts: zero, or at least a millionth of an event (increase() extrapolates to fractions,
# never to subnormal floats, whose products round to other ratios).
counts = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False))
objectives = st.floats(min_value=0.1, max_value=99.999, allow_nan=False)


@given(good=counts, extra=counts, objective=objectives)
def test_consumed_and_remaining_always_add_up_to_one(good: float, extra: float, objective: float) -> None:
    total = good + extra
    s = evaluate(slo(objective), measure((good, total)))
    if total == 0:
        assert s.state == "no_data"
        return
    assert s.consumed + s.remaining == pytest.approx(1.0)
    assert s.consumed >= 0
    assert s.sli is not None and 0 <= s.sli <= 1


@given(good=counts, extra=counts, objective=objectives)
def test_budget_consumed_equals_the_whole_window_burn_rate(good: float, extra: float, objective: float) -> None:
    total = good + extra
    s = evaluate(slo(objective), measure((good, total)))
    if total > 0:
        assert s.burn_rates["30d"] == pytest.approx(s.consumed, rel=1e-12)


@given(bad=st.integers(min_value=0, max_value=10**9), total=st.integers(min_value=1, max_value=10**9),
       objective=objectives)
def test_more_errors_never_burn_slower(bad: int, total: int, objective: float) -> None:
    bad = min(bad, total)
    budget = 1 - objective / 100
    lower = burn_rate(EventCounts(good=total - bad, total=total), budget)
    higher = burn_rate(EventCounts(good=total - min(bad + 1, total), total=total), budget)
    assert lower is not None and higher is not None and higher >= lower


@given(scale=st.floats(min_value=1e-3, max_value=1e6), good=counts, extra=counts)
def test_the_sli_depends_on_ratios_not_volume(scale: float, good: float, extra: float) -> None:
    total = good + extra
    if total == 0:
        return
    a = evaluate(slo(), measure((good, total)))
    b = evaluate(slo(), measure((good * scale, total * scale)))
    assert a.sli == pytest.approx(b.sli, rel=1e-9, abs=1e-12)
