"""The backtest's replay: the daemon's alert policy over tiles of known events, with alert times
worked out by hand from the SRE workbook's factors (table 5-8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slowatch.core.backtest import BacktestError, Incident, Tiles, lookback, replay
from slowatch.core.model import SLO, AlertPolicy, RatioSLI, RollingWindow

MIN = 60
T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
RATE = 100.0  # events per minute


def slo(name: str = "api", policy: AlertPolicy | None = None) -> SLO:
    return SLO("shop", name, 99.9, RollingWindow(30 * DAY), RatioSLI(total="x_total", errors="x_errors_total"),
               alerting=policy or AlertPolicy())


def tiles(s: SLO, start: datetime, end: datetime, bad: list[tuple[datetime, datetime, float]]) -> Tiles:
    """One-minute tiles of RATE events, with error ratio r inside each (from, to, r)."""
    first = int(lookback(s, start).timestamp())
    n = (int(end.timestamp()) - first) // MIN
    good, total = [], []
    for i in range(n):
        t = first + (i + 1) * MIN  # the tile (t - 1m, t]
        ratio = next((r for a, b, r in bad if a.timestamp() < t <= b.timestamp()), 0.0)
        good.append(RATE * (1 - ratio))
        total.append(RATE)
    return Tiles(start=first, tile=MIN, good=good, total=total)


INCIDENT = Incident(T0 + timedelta(hours=3), T0 + timedelta(hours=3, minutes=30))


@pytest.mark.parametrize("every_step", [
    pytest.param(False, id="the signature-driven replay"),
    pytest.param(True, id="the daemon's code at every step"),
])
def test_a_30_minute_10_percent_incident_pages_on_both_page_rows_at_the_minutes_the_factors_give(
        every_step: bool) -> None:
    s = slo()
    start, end = T0, T0 + timedelta(hours=8)
    report = replay([s], {s.id: tiles(s, start, end, [(INCIDENT.start, INCIDENT.end, 0.1)])}, start, end,
                    timedelta(minutes=1), [INCIDENT], every_step=every_step)
    (r,) = report.slos
    got = [(a.labels["long_window"], a.starts_at - INCIDENT.start, a.ends_at - INCIDENT.end if a.ends_at else None)
           for a in r.alerts]
    # 1h/5m at 14.4x: 1h holds 14.4 * 0.1% = 1.44% errors after 8.64 error-minutes at 10% -> minute 9;
    # the 5m window stays at or over 14.4x until 4.28 minutes after the end -> resolves at +5m.
    # 6h/30m at 6x: 6h holds 0.6% after 21.6 minutes -> minute 22; 30m holds 0.6% until +28.2m -> +29m.
    assert got == [("1h", timedelta(minutes=9), timedelta(minutes=5)),
                   ("6h", timedelta(minutes=22), timedelta(minutes=29))]
    assert r.pages_per_week == pytest.approx(2 / (8 / 168))
    assert r.tickets_per_week == 0 and r.flaps == 0
    assert r.budget_consumed_end == pytest.approx(30 * 0.1 * RATE / (30 * 24 * 60 * RATE) / 0.001, rel=1e-12)
    (inc,) = r.incidents
    assert inc.detection_delay == timedelta(minutes=9)
    assert inc.time_to_reset == timedelta(minutes=29)


def test_a_healthy_slo_never_alerts() -> None:
    s = slo()
    start, end = T0, T0 + timedelta(hours=6)
    r = replay([s], {s.id: tiles(s, start, end, [])}, start, end, timedelta(minutes=1), [INCIDENT]).slos[0]
    assert r.alerts == () and r.pages_per_week == 0 and r.budget_consumed_end == 0
    assert r.incidents[0].detected_at is None and r.incidents[0].time_to_reset == timedelta(0)


def test_two_bursts_20_minutes_apart_count_as_a_flap() -> None:
    s = slo(policy=AlertPolicy(budget_consumed=()))
    start, end = T0, T0 + timedelta(hours=4)
    a = (T0 + timedelta(hours=1), T0 + timedelta(hours=1, minutes=10), 0.5)
    b = (T0 + timedelta(hours=1, minutes=30), T0 + timedelta(hours=1, minutes=40), 0.5)
    r = replay([s], {s.id: tiles(s, start, end, [a, b])}, start, end, timedelta(minutes=1)).slos[0]
    fast = [x for x in r.alerts if x.labels["long_window"] == "1h"]
    assert len(fast) == 2 and r.flaps >= 1


@pytest.mark.parametrize(("step", "message"), [
    pytest.param(timedelta(seconds=7), "must divide", id="a step that does not divide 5m is refused"),
    pytest.param(timedelta(0), "positive", id="a zero step is refused"),
])
def test_steps_that_cannot_tile_the_windows_are_refused(step: timedelta, message: str) -> None:
    s = slo()
    with pytest.raises(BacktestError, match=message):
        replay([s], {s.id: tiles(s, T0, T0 + DAY, [])}, T0, T0 + DAY, step)


def test_the_table_says_when_an_undetected_incident_reset_at_once() -> None:
    from slowatch.backtest import document, table

    s = slo()
    start, end = T0, T0 + timedelta(hours=6)
    report = replay([s], {s.id: tiles(s, start, end, [])}, start, end, timedelta(minutes=1), [INCIDENT])
    text = table(document(report))
    assert "incident 2026-11-01T03:00:00Z .. 2026-11-01T03:30:00Z: not detected, reset 0s after its end" in text
    assert document(report)["slos"][0]["incidents"][0]["time_to_reset_seconds"] == 0


@pytest.mark.parametrize(("factors", "fires"), [
    pytest.param((14.4, 6.0, 1.0), ["1h", "6h"], id="the workbook's factors page on both page rows"),
    pytest.param((60.0, 6.0, 1.0), ["6h"], id="a 60x fast page stays silent (1h peaks at 50x): only 6h/30m pages"),
    pytest.param((14.4, 25.0, 1.0), ["1h"], id="a 25x slow page stays silent too (6h peaks at 8.3x)"),
])
def test_other_factors_replay_another_policy_on_the_same_history(factors: tuple[float, ...],
                                                                 fires: list[str]) -> None:
    from dataclasses import replace

    from slowatch.core.model import nominal_length
    from slowatch.core.windows import rows_with_factors

    base = slo()
    rows = rows_with_factors(factors, nominal_length(base.window))
    s = replace(base, alerting=replace(base.alerting, burn_rows=rows))
    start, end = T0, T0 + timedelta(hours=8)
    # 30 minutes at 10% errors: 100x for a 99.9% SLO; 50x over 1h at its end, 8.3x over 6h.
    r = replay([s], {s.id: tiles(s, start, end, [(INCIDENT.start, INCIDENT.end, 0.1)])}, start, end,
               timedelta(minutes=1)).slos[0]
    assert sorted({a.labels["long_window"] for a in r.alerts if a.severity == "page"}) == fires
