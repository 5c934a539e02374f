"""Exclusions on the measuring path (core.plan's cut, core.budget's fields) and the recurring
rule across a DST change (core.exclusions).

The plan is checked against a synthetic world whose events per second have a closed form: every
span the plan reads live is answered from it, every ledger hour is filled from it, and each
window's assembled counts must equal the world's events in the window minus those in its excluded
intervals, exactly (integers below 2**53).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from slowatch.adapters.metrics import exposition, new_registry
from slowatch.adapters.page import render_page
from slowatch.adapters.render import status_document
from slowatch.core.budget import BudgetStatus, EventCounts, Measurement, evaluate, failed, occurrence
from slowatch.core.exclusions import intervals, merged
from slowatch.core.measure import Answer, Span
from slowatch.core.model import SLO, Exclusion, RatioSLI, RollingWindow
from slowatch.core.plan import (
    HOUR,
    GroupLedger,
    assemble,
    excluded_cut,
    group_slos,
    ledger_hours,
    live_spans,
    window_plans,
)
from slowatch.errors import SpecError
from slowatch.spec import load_specs
from slowatch.view import DaemonView, ViewHolder

DAY = 86400
# A sample-unaligned instant in the middle of a day (2026-11-29 14:37:13 UTC).
AT = int(datetime(2026, 11, 29, 14, 37, 13, tzinfo=UTC).timestamp())
BAD_EVERY = 7  # one bad event every 7th second
EXTRA_EVERY = 5  # one more event every 5th second, on top of 2 a second


def total_until(x: int) -> int:
    """Events in seconds 1..x: 2 a second, and one more every EXTRA_EVERY-th second."""
    return 2 * x + x // EXTRA_EVERY


def bad_until(x: int) -> int:
    return x // BAD_EVERY


def world(role: str, span: tuple[int, int]) -> int:
    """The world's events of ``role`` in ``(lo, hi]``."""
    lo, hi = span
    f = bad_until if role == "bad" else total_until
    return f(hi) - f(lo)


def one_off(start: datetime, end: datetime, reason: str = "migration") -> Exclusion:
    return Exclusion(reason=reason, start=start, end=end)


def slo_with(*exclusions: Exclusion, window: timedelta = timedelta(days=30)) -> SLO:
    return SLO(service="auth", name="avail", objective_percent=99.9, window=RollingWindow(window),
               sli=RatioSLI(total='http_requests_total{service="auth"}',
                            errors='http_requests_total{service="auth",code=~"5.."}'),
               exclusions=exclusions)


def at_(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def measured(slo: SLO, t: int, *, ledger: bool = True) -> tuple[Measurement, dict[str, Span]]:
    """``slo``'s counts at ``t`` with every live span answered and every ledger hour filled from
    the world, and the spans read live."""
    (group,) = group_slos([slo])
    at = at_(t)
    spans = live_spans([slo], at, ledger)
    keys = group.members[slo.id]
    values = {(tag, role, keys[role]): float(world(role, (t - s.offset - s.length, t - s.offset)))
              for tag, s in spans.items() for role in group.roles}
    book = GroupLedger()
    need = ledger_hours([slo], at, ledger)
    if need:
        rows = group.ledger_keys([slo])
        book.fill(need, {rk: [float(world(rk[0], (h - HOUR, h))) for h in need] for rk in rows}, rows)
    return assemble(slo, group, at, Answer(values, {}), book, from_ledger=ledger), spans


def expected(slo: SLO, t: int, seconds: int) -> EventCounts:
    excluded = merged(slo.exclusions, at_(t - seconds), at_(t))
    cut = [(int(lo.timestamp()), int(hi.timestamp())) for lo, hi in excluded]
    total = world("total", (t - seconds, t)) - sum(world("total", c) for c in cut)
    bad = world("bad", (t - seconds, t)) - sum(world("bad", c) for c in cut)
    return EventCounts(good=float(total - bad), total=float(total))


def hour(t: int) -> int:
    return t - t % HOUR


CASES = [
    pytest.param((), id="no exclusion: the plain counts"),
    pytest.param((one_off(at_(hour(AT) - 10 * DAY), at_(hour(AT) - 10 * DAY + 2 * HOUR)),),
                 id="two whole hours 10 days back come from the ledger"),
    pytest.param((one_off(at_(AT - 10 * DAY - 1234), at_(AT - 10 * DAY + 3 * HOUR + 17)),),
                 id="an unaligned interval: whole hours from the ledger, its edges live"),
    pytest.param((one_off(at_(AT - 20 * 60), at_(AT + HOUR)),),
                 id="an exclusion running now covers the head and the short windows"),
    pytest.param((one_off(at_(AT - 31 * DAY), at_(AT - 30 * DAY + 1800)),),
                 id="an interval reaching into the SLO window's tail"),
    pytest.param((one_off(at_(AT - 3 * HOUR - 59), at_(AT - 2 * HOUR + 61)),),
                 id="an interval across the 2h window's start"),
    pytest.param((one_off(at_(AT - 40 * DAY), at_(AT + DAY)),),
                 id="every window excluded whole: no events at all"),
    pytest.param((Exclusion(reason="weekly", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                            duration=timedelta(hours=2), timezone="Europe/Paris"),
                  one_off(at_(AT - 5 * DAY), at_(AT - 5 * DAY + 600))),
                 id="a weekly rule in Europe/Paris and a one-off together"),
    pytest.param((Exclusion(reason="nightly", rrule="FREQ=DAILY;BYHOUR=23;BYMINUTE=45",
                            duration=timedelta(minutes=30)),),
                 id="a daily half hour across midnight: every occurrence has live edges"),
]


@pytest.mark.parametrize("ledger", [pytest.param(True, id="ledger"), pytest.param(False, id="every window live")])
@pytest.mark.parametrize("exclusions", CASES)
def test_each_window_counts_the_world_minus_its_excluded_events_exactly(
    exclusions: tuple[Exclusion, ...], ledger: bool
) -> None:
    slo = slo_with(*exclusions)
    m, _ = measured(slo, AT, ledger=ledger)
    for p in window_plans(slo, at_(AT)):
        assert m.counts[p.name] == expected(slo, AT, p.seconds), p.name


def test_an_exclusion_on_whole_hours_adds_no_live_span_to_ledger_windows() -> None:
    start = hour(AT) - 10 * DAY
    slo = slo_with(one_off(at_(start), at_(start + 5 * HOUR)))
    _, spans = measured(slo, AT)
    assert spans == live_spans([slo_with()], at_(AT))


@pytest.mark.parametrize(
    ("lo", "hi", "live"),
    [
        pytest.param(-10 * DAY - 1234, -10 * DAY + 3 * HOUR + 17, HOUR - (AT - 1234) % HOUR + (AT + 17) % HOUR,
                     id="an unaligned interval reads its two partial hours live"),
        pytest.param(-10 * DAY, -10 * DAY + 1800, 1800, id="an interval inside one hour is read live whole"),
    ],
)
def test_the_live_part_of_an_interval_in_the_slo_window_is_its_partial_hours(lo: int, hi: int, live: int) -> None:
    slo = slo_with(one_off(at_(AT + lo), at_(AT + hi)))
    (p,) = [p for p in window_plans(slo, at_(AT)) if p.name == "slo"]
    cut = excluded_cut(slo, p, AT)
    assert sum(s.length for s in cut.spans) == live
    assert sum(len(h) for h in cut.hours) * HOUR + live == hi - lo


def test_a_past_interval_added_later_lowers_the_counts_by_its_events_at_the_same_instant() -> None:
    """A budget adjustment: the ledger holds raw hours, the subtraction happens at read time."""
    incident = (AT - 4 * DAY - 1800, AT - 4 * DAY + 2400)
    before, _ = measured(slo_with(), AT)
    after, _ = measured(slo_with(one_off(at_(incident[0]), at_(incident[1]))), AT)
    gone = EventCounts(good=float(world("total", incident) - world("bad", incident)),
                       total=float(world("total", incident)))
    assert after.counts["slo"] == EventCounts(before.counts["slo"].good - gone.good,
                                              before.counts["slo"].total - gone.total)
    assert after.counts["3d"] == before.counts["3d"]  # the incident lies before the 3-day window


# --- the status: excluded seconds and the active occurrence -------------------------------------

WEEKLY = Exclusion(reason="weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                   duration=timedelta(hours=2), timezone="Europe/Paris")
SUNDAY_0315_PARIS = datetime(2026, 11, 29, 2, 15, tzinfo=UTC)  # CET: 03:15 local, inside 02:00-04:00


def test_the_status_carries_each_windows_excluded_seconds_and_the_active_occurrence() -> None:
    slo = slo_with(WEEKLY)
    status = evaluate(slo, Measurement(at=SUNDAY_0315_PARIS, counts={"slo": EventCounts(90.0, 100.0)}))
    # Began 02:00 local (01:00 UTC): 75 minutes ago. Every window back to 30 days holds it; the
    # SLO window also holds the four Sundays before (8 hours; 2026-10-25's is the CEST one).
    assert status.excluded_seconds == {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "2h": 4500.0, "6h": 4500.0,
                                       "1d": 4500.0, "3d": 4500.0, "30d": 4500.0 + 4 * 7200.0}
    assert status.exclusion is not None
    assert (status.exclusion.exclusion.reason, status.exclusion.start, status.exclusion.end) == (
        "weekly maintenance", datetime(2026, 11, 29, 1, tzinfo=UTC), datetime(2026, 11, 29, 3, tzinfo=UTC))


@pytest.mark.parametrize(
    ("at", "active"),
    [
        pytest.param(datetime(2026, 11, 29, 1, tzinfo=UTC), True, id="its start is excluded"),
        pytest.param(datetime(2026, 11, 29, 3, tzinfo=UTC), False, id="its end is not"),
        pytest.param(datetime(2026, 11, 28, 2, 15, tzinfo=UTC), False, id="a Saturday is not"),
    ],
)
def test_an_exclusion_is_active_on_its_half_open_interval(at: datetime, active: bool) -> None:
    assert (occurrence([WEEKLY], at) is not None) is active


def test_an_slo_without_exclusions_has_no_excluded_seconds_and_a_failed_one_keeps_them() -> None:
    at = SUNDAY_0315_PARIS
    assert evaluate(slo_with(), Measurement(at=at, counts={})).excluded_seconds == {}
    down = failed(slo_with(WEEKLY), at, "error", "query rejected")
    assert down.excluded_seconds["1h"] == 3600.0 and down.exclusion is not None


# --- a recurring exclusion across the DST changes ----------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "utc_starts"),
    [
        pytest.param(datetime(2026, 3, 21, tzinfo=UTC), datetime(2026, 4, 6, tzinfo=UTC), [
            datetime(2026, 3, 22, 1, tzinfo=UTC),  # 02:00 CET
            datetime(2026, 3, 29, 1, tzinfo=UTC),  # 02:00 does not exist that night: read as CET, 03:00 CEST
            datetime(2026, 4, 5, 0, tzinfo=UTC),  # 02:00 CEST
        ], id="spring forward, 2026-03-29: 02:00 local moves from 01:00 to 00:00 UTC"),
        pytest.param(datetime(2026, 10, 17, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), [
            datetime(2026, 10, 18, 0, tzinfo=UTC),  # 02:00 CEST
            datetime(2026, 10, 25, 0, tzinfo=UTC),  # 02:00 happens twice: the first (CEST)
            datetime(2026, 11, 1, 1, tzinfo=UTC),  # 02:00 CET
        ], id="fall back, 2026-10-25: 02:00 local moves from 00:00 to 01:00 UTC"),
    ],
)
def test_a_weekly_paris_exclusion_lands_on_local_time_across_dst(
    start: datetime, end: datetime, utc_starts: list[datetime]
) -> None:
    got = intervals(WEEKLY, start, end)
    assert got == [(s, s + timedelta(hours=2)) for s in utc_starts]


# --- the spec: a raw-query ratio cannot be split by span ---------------------------------------

RAW_SLI = {"ratio": {"total_query": "sum(increase(http_requests_total[{{.window}}]))",
                     "errors_query": 'sum(increase(http_requests_total{code="500"}[{{.window}}]))'}}
SELECTOR_SLI = {"ratio": {"total": 'http_requests_total{service="auth"}',
                          "errors": 'http_requests_total{service="auth",code="500"}'}}
MIGRATION = {"start": "2026-11-20T02:00:00Z", "end": "2026-11-20T04:00:00Z", "reason": "planned database migration"}


def spec_file(tmp_path: Path, sli: dict[str, Any], *, own: bool, top: bool) -> Path:
    entry: dict[str, Any] = {"name": "avail", "objective": 99.9, "window": "30d", "sli": sli}
    doc: dict[str, Any] = {"apiVersion": "slowatch/v1", "service": "auth", "slos": [entry]}
    if own:
        entry["exclusions"] = [MIGRATION]
    if top:
        doc["exclusions"] = [{**MIGRATION, "reason": "file-wide freeze"}]
    path = tmp_path / "auth.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    ("own", "top", "where"),
    [
        pytest.param(True, False, "slos[0].exclusions", id="its own exclusions name the SLO's field"),
        pytest.param(False, True, "exclusions", id="the file's exclusions name the file's field and the SLO"),
    ],
)
def test_exclusions_on_a_raw_query_ratio_are_refused_at_load_time(
    tmp_path: Path, own: bool, top: bool, where: str
) -> None:
    path = spec_file(tmp_path, RAW_SLI, own=own, top=top)
    with pytest.raises(SpecError) as caught:
        load_specs([path])
    (problem,) = caught.value.problems
    assert (problem.file, problem.path) == (str(path), where)
    assert "total/errors (or good) selectors" in problem.message
    assert ("slos[0] (avail)" in problem.message) is top


def test_a_selector_ratio_takes_the_files_exclusions_then_its_own(tmp_path: Path) -> None:
    (slo,) = load_specs([spec_file(tmp_path, SELECTOR_SLI, own=True, top=True)])
    assert [e.reason for e in slo.exclusions] == ["file-wide freeze", "planned database migration"]
    assert slo.exclusions[0].start == datetime(2026, 11, 20, 2, tzinfo=UTC)


# --- metrics --------------------------------------------------------------------------------------


def exported(*statuses: BudgetStatus) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The SLO samples of /metrics' text exposition (the per-view rendering), by name and labels."""
    registry, _ = new_registry(ViewHolder(DaemonView(at=SUNDAY_0315_PARIS, statuses=statuses, ready=True)),
                               process=False)
    body, _ = exposition(registry, "text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples
            if s.name in ("slowatch_slo_excluded_seconds", "slowatch_exclusion_active")}


def test_metrics_export_each_windows_excluded_seconds_and_whether_an_exclusion_is_active() -> None:
    at = SUNDAY_0315_PARIS
    covered = evaluate(slo_with(WEEKLY), Measurement(at=at, counts={"slo": EventCounts(90.0, 100.0)}))
    later = evaluate(replace(slo_with(WEEKLY), name="later"), Measurement(at=at + timedelta(hours=2), counts={}))
    plain = evaluate(replace(slo_with(), name="plain"), Measurement(at=at, counts={}))
    got = exported(covered, later, plain)

    def key(name: str, slo: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return name, tuple(sorted({"service": "auth", "slo": slo, **extra}.items()))

    assert got[key("slowatch_exclusion_active", "avail")] == 1.0
    assert got[key("slowatch_exclusion_active", "later")] == 0.0  # ended at 03:00 UTC
    for window, seconds in covered.excluded_seconds.items():
        assert got[key("slowatch_slo_excluded_seconds", "avail", window=window)] == seconds
    assert got[key("slowatch_slo_excluded_seconds", "later", window="6h")] == 7200.0
    # An SLO without exclusions exports neither (no 8 zero series per SLO across a fleet).
    assert not [k for k in got if ("slo", "plain") in k[1]]


# --- /status and the page -------------------------------------------------------------------------


def test_status_shows_the_active_exclusion_and_each_windows_excluded_seconds() -> None:
    covered = evaluate(slo_with(WEEKLY), Measurement(at=SUNDAY_0315_PARIS, counts={"slo": EventCounts(90.0, 100.0)}))
    plain = evaluate(replace(slo_with(), name="plain"), Measurement(at=SUNDAY_0315_PARIS, counts={}))
    doc = status_document(SUNDAY_0315_PARIS, [covered, plain])
    first, second = doc["slos"]
    assert first["exclusions"]["active"] == {"reason": "weekly maintenance", "start": "2026-11-29T01:00:00Z",
                                  "end": "2026-11-29T03:00:00Z"}
    assert first["exclusions"]["excluded_seconds"] == dict(covered.excluded_seconds)
    assert (second["exclusions"]["active"], second["exclusions"]["excluded_seconds"]) == (None, {})
    body = render_page(DaemonView(at=SUNDAY_0315_PARIS, statuses=(covered, plain), ready=True), now=SUNDAY_0315_PARIS)
    assert "excluded now: weekly maintenance · Nov 29 01:00 UTC to Nov 29 03:00 UTC" in body
    assert "9h 15m of the 30d window excluded" in body  # 1h15m today, 2h on each of the 4 Sundays before
    assert body.count("excluded now") == 1
