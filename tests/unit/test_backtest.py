"""The backtest's replay: the daemon's alert policy over tiles of known events, with alert times
worked out by hand from the SRE workbook's factors (table 5-8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from slowatch.core.backtest import BacktestError, Incident, Tiles, cut_tiles, lookback, replay
from slowatch.core.model import SLO, AlertPolicy, Component, CompositeSLI, Exclusion, RatioSLI, RollingWindow

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


# --- exclusions and composites (issue #12) -------------------------------------------------------

SAMPLE = 15  # seconds between the synthetic counter's samples: four per tile


def sampled(s: SLO, start: datetime, end: datetime, bad: list[tuple[datetime, datetime, float]],
            boundaries: Sequence[datetime] = (), rate: float = RATE) -> Tiles:
    """One-minute tiles from a counter sampled every 15 s (rate/4 events per sample, error ratio r
    inside each (from, to, r) by sample time), keeping the samples of the tiles ``boundaries`` cut,
    as the reader does."""
    first = int(lookback(s, start).timestamp())
    n = (int(end.timestamp()) - first) // MIN
    cuts = cut_tiles([b.timestamp() for b in boundaries], first, MIN)
    good, total = [0.0] * n, [0.0] * n
    cut_good: dict[int, list[tuple[float, float]]] = {}
    cut_total: dict[int, list[tuple[float, float]]] = {}
    for k in range(1, n * MIN // SAMPLE + 1):
        t = first + k * SAMPLE
        ratio = next((r for a, b, r in bad if a.timestamp() < t <= b.timestamp()), 0.0)
        g, tot = rate / 4 * (1 - ratio), rate / 4
        i = (k - 1) * SAMPLE // MIN
        good[i] += g
        total[i] += tot
        if i in cuts:
            cut_good.setdefault(i, []).append((t, g))
            cut_total.setdefault(i, []).append((t, tot))
    return Tiles(start=first, tile=MIN, good=good, total=total, cut_good=cut_good, cut_total=cut_total)


def events_in(a: datetime, b: datetime, rate: float = RATE) -> float:
    """Total events of the synthetic counter in (a, b]: its samples in that span."""
    t0, t1 = int(a.timestamp()), int(b.timestamp())
    return sum(rate / 4 for t in range(t0 - t0 % SAMPLE, t1 + 1, SAMPLE) if t0 < t <= t1)


WINDOW_EVENTS = 30 * 24 * 60 * RATE
BUDGET = 0.001
H = timedelta(hours=1)
START, END = T0, T0 + 8 * H
BAD = (INCIDENT.start, INCIDENT.end, 0.1)
ONE_OFF = Exclusion(reason="planned migration", start=INCIDENT.start, end=INCIDENT.end)


@pytest.mark.parametrize(("exclusions", "excluded", "consumed", "pages"), [
    pytest.param((), (), 30 * 0.1 * RATE / WINDOW_EVENTS / BUDGET, 2,
                 id="without an exclusion the incident spends its errors and pages twice"),
    pytest.param((ONE_OFF,), [(INCIDENT.start, INCIDENT.end)], 0.0, 0,
                 id="an exclusion covering the incident takes all its events out: no budget spent, no page"),
    pytest.param((Exclusion(reason="daily", rrule="FREQ=DAILY;BYHOUR=3;BYMINUTE=0;BYSECOND=0", duration=H / 2),),
                 [(INCIDENT.start, INCIDENT.end), (INCIDENT.start - DAY, INCIDENT.end - DAY)], 0.0, 0,
                 id="a daily rrule at 03:00 for 30m covers it too, and takes out yesterday's 03:00 as well"),
    pytest.param((Exclusion(reason="first half", start=INCIDENT.start, end=INCIDENT.start + H / 4),),
                 [(INCIDENT.start, INCIDENT.start + H / 4)],
                 15 * 0.1 * RATE / (WINDOW_EVENTS - 15 * RATE) / BUDGET, 1,
                 id="an exclusion over the first half leaves 15 error-minutes, out of a window 15 minutes smaller"),
    pytest.param((Exclusion(reason="off the minute", start=INCIDENT.start + timedelta(seconds=20),
                            end=INCIDENT.end - timedelta(seconds=20)),),
                 [(INCIDENT.start + timedelta(seconds=20), INCIDENT.end - timedelta(seconds=20))],
                 None, 0,
                 id="boundaries inside a minute take out exactly the samples after the start up to the end"),
])
def test_an_exclusion_takes_its_events_out_of_every_window(
        exclusions: tuple[Exclusion, ...], excluded: list[tuple[datetime, datetime]], consumed: float | None,
        pages: int) -> None:
    s = replace(slo(), exclusions=exclusions)
    boundaries = [t for span in excluded for t in span]
    history = sampled(s, START, END, [BAD], boundaries)
    r = replay([s], {s.id: history}, START, END, timedelta(minutes=1), [INCIDENT]).slos[0]
    assert sum(a.severity == "page" for a in r.alerts) == pages
    inside = [(a, b) for a, b in excluded if a >= START]
    assert r.excluded_seconds == sum((b - a).total_seconds() for a, b in inside)
    assert r.excluded_events == sum(events_in(a, b) for a, b in inside)
    if consumed is None:  # by hand: the errors of the samples left at each end, out of the events left
        errors = 0.1 * (events_in(INCIDENT.start, INCIDENT.end) - events_in(*excluded[0]))
        consumed = errors / (WINDOW_EVENTS - events_in(*excluded[0])) / BUDGET
    assert r.budget_consumed_end == pytest.approx(consumed, rel=1e-12, abs=1e-15)
    assert (r.incidents[0].detected_at is None) == (pages == 0)


def test_the_signature_driven_replay_and_every_step_agree_under_an_exclusion() -> None:
    s = replace(slo(), exclusions=(Exclusion(reason="first half", start=INCIDENT.start,
                                             end=INCIDENT.start + timedelta(minutes=10)),))
    history = {s.id: sampled(s, START, END, [BAD], [INCIDENT.start, INCIDENT.start + timedelta(minutes=10)])}
    fast = replay([s], history, START, END, timedelta(minutes=1))
    slow = replay([s], history, START, END, timedelta(minutes=1), every_step=True)
    assert fast.slos[0].alerts == slow.slos[0].alerts and fast.slos[0].alerts


def composite(weighting: str = "weights", weights: tuple[float, float] = (1.0, 2.0),
              exclusions: tuple[Exclusion, ...] = ()) -> SLO:
    sli = CompositeSLI(components=(Component("shop/a", weights[0]), Component("shop/b", weights[1])),
                       weighting=weighting)  # type: ignore[arg-type]
    return SLO("shop", "journey", 99.9, RollingWindow(30 * DAY), sli, exclusions=exclusions)


A, B = slo("a"), slo("b")


def a_and_b(rate_b: float = RATE) -> dict[str, Tiles]:
    """a: the incident at 10% errors; b: healthy at ``rate_b`` events a minute (none: no data)."""
    return {A.id: tiles(A, START, END, [(INCIDENT.start, INCIDENT.end, 0.1)]),
            B.id: replace(tiles(B, START, END, []), good=[rate_b] * len(tiles(B, START, END, []).good),
                          total=[rate_b] * len(tiles(B, START, END, []).total))}


SLI_A = 1 - 30 * 0.1 * RATE / WINDOW_EVENTS


@pytest.mark.parametrize(("journey", "rate_b", "sli"), [
    pytest.param(composite(), RATE, (1 * SLI_A + 2 * 1.0) / 3,
                 id="weights 1 and 2: the weighted mean of the components' SLIs"),
    pytest.param(composite(weights=(1.0, 1.0)), 3 * RATE, (SLI_A + 1.0) / 2,
                 id="equal weights ignore how many events each component has"),
    pytest.param(composite("events"), 3 * RATE, 1 - 30 * 0.1 * RATE / (4 * WINDOW_EVENTS),
                 id="weighting events: good over total summed across components"),
    pytest.param(composite(), 0.0, SLI_A, id="a component without events leaves both sums"),
])
def test_a_composite_replays_from_its_components_counts(journey: SLO, rate_b: float, sli: float) -> None:
    r = replay([journey], a_and_b(rate_b), START, END, timedelta(minutes=1), components=[A, B]).slos
    assert [x.slo.id for x in r] == ["shop/journey"]  # components are read, not reported
    assert r[0].budget_consumed_end == pytest.approx((1 - sli) / BUDGET, rel=1e-9)
    assert r[0].excluded_events is None


def test_a_composite_of_two_equal_components_alerts_as_one_slo_of_their_summed_events() -> None:
    # Events weighting over a and b is, window by window, the SLO whose tiles are a's plus b's.
    history = a_and_b()
    both = slo("journey")
    summed = Tiles(start=history[A.id].start, tile=MIN,
                   good=[x + y for x, y in zip(history[A.id].good, history[B.id].good, strict=True)],
                   total=[x + y for x, y in zip(history[A.id].total, history[B.id].total, strict=True)])
    want = replay([both], {both.id: summed}, START, END, timedelta(minutes=1)).slos[0]
    for every_step in (False, True):
        got = replay([composite("events")], history, START, END, timedelta(minutes=1), every_step=every_step,
                     components=[A, B]).slos[0]
        assert [(a.labels["long_window"], a.starts_at, a.ends_at) for a in got.alerts if a.severity == "page"] \
            == [(a.labels["long_window"], a.starts_at, a.ends_at) for a in want.alerts if a.severity == "page"]
        assert got.budget_consumed_end == pytest.approx(want.budget_consumed_end, rel=1e-12)


def test_a_composites_own_exclusion_takes_the_incident_out_of_its_components_for_it_alone() -> None:
    journey = composite("events", exclusions=(ONE_OFF,))
    r = replay([journey, A], a_and_b(), START, END, timedelta(minutes=1), [INCIDENT], components=[B]).slos
    by_id = {x.slo.id: x for x in r}
    assert by_id["shop/journey"].alerts == () and by_id["shop/journey"].budget_consumed_end == 0
    assert by_id["shop/journey"].excluded_seconds == 1800
    assert sum(a.severity == "page" for a in by_id["shop/a"].alerts) == 2  # a itself keeps its incident


def test_a_composite_of_a_composite_reaches_the_leaves() -> None:
    inner = composite("events")
    outer = SLO("shop", "all", 99.9, RollingWindow(30 * DAY),
                CompositeSLI(components=(Component(inner.id, 1.0),)))
    r = replay([outer], a_and_b(), START, END, timedelta(minutes=1), components=[inner, A, B]).slos[0]
    assert r.budget_consumed_end == pytest.approx(30 * 0.1 * RATE / (2 * WINDOW_EVENTS) / BUDGET, rel=1e-9)


@pytest.mark.parametrize(("components", "message"), [
    pytest.param([A, B], "no events were read for shop/b", id="a component without tiles is refused"),
    pytest.param([A], "composites contain shop/b: pass them as components", id="a component not given is refused"),
])
def test_a_composite_needs_its_components_and_their_tiles(components: list[SLO], message: str) -> None:
    with pytest.raises(BacktestError, match=message):
        replay([composite()], {A.id: a_and_b()[A.id]}, START, END, timedelta(minutes=1), components=components)


def test_the_table_and_json_show_the_excluded_time_and_events() -> None:
    from slowatch.backtest import document, table

    s = replace(slo(), exclusions=(ONE_OFF,))
    report = replay([s], {s.id: tiles(s, START, END, [BAD])}, START, END, timedelta(minutes=1))
    doc = document(report)
    assert (doc["slos"][0]["excluded_seconds"], doc["slos"][0]["excluded_events"]) == (1800, 30 * RATE)
    lines = table(doc).splitlines()
    assert lines[2].split()[-1] == "30m" and lines[3] == "    excluded 3000 events in 30m"


def test_a_weekly_exclusion_in_paris_stays_at_local_2am_across_the_dst_change() -> None:
    # Europe/Paris leaves summer time on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET): 02:00 local is
    # 00:00Z before, 01:00Z after (on the night itself the first 02:00, CEST, as zoneinfo's fold=0 reads it).
    weekly = Exclusion(reason="weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0;BYSECOND=0",
                       duration=2 * H, timezone="Europe/Paris")
    s = replace(slo(), exclusions=(weekly,))
    start, end = datetime(2026, 10, 17, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    r = replay([s], {s.id: tiles(s, start, end, [])}, start, end, timedelta(minutes=1)).slos[0]
    sundays = [datetime(2026, 10, 18, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, tzinfo=UTC),
               datetime(2026, 11, 1, 1, tzinfo=UTC)]
    assert r.excluded_seconds == 3 * 2 * 3600
    assert r.excluded_events == 3 * 120 * RATE
    # An hour off on any Sunday would move 60 minutes out of the window: the budget sees exactly these.
    errors = [(a, a + 2 * H, 1.0) for a in sundays]
    spent = replay([s], {s.id: tiles(s, start, end, errors)}, start, end, timedelta(minutes=1)).slos[0]
    assert spent.budget_consumed_end == 0 and spent.alerts == ()
