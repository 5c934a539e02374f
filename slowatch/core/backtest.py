"""Replay the daemon's alert policy over history: which alerts would have fired, and when.

Pure: the events come in as counts per *tile* (a fixed slice of time, e.g. one minute), read
once from the source; every window of every step is a difference of running sums, so a month at
a one-minute step costs one pass over the tiles, whatever the windows.

The replay runs the daemon's own code: ``budget.evaluate`` builds each status and
``alerting.step`` moves the alert book. Calling them at all 43,200 steps of a month for every SLO
would cost minutes, so each step first computes, with the same arithmetic as ``budget.evaluate``,
only what decides the alerts (the state kind, the thresholds crossed, the burn-rate rows
burning): the daemon's code runs where that changes for an SLO, and nowhere else can an alert
start or end (``alerting.step`` leaves the alerts of an SLO without a status untouched).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise
from operator import ne, sub
from typing import Any

from slowatch.core import alerting, budget
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.conventions import BUDGET_BURN, BUDGET_CONSUMED
from slowatch.core.model import SLO, RollingWindow, alert_rows, nominal_length, window_span
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration

# An alert that resolves and fires again within this long is a flap (issue: "flaps").
FLAP_WITHIN = timedelta(hours=1)
WEEK = timedelta(days=7)
PAGE = "page"
TICKET = "ticket"


class BacktestError(ValueError):
    """A replay that cannot be done as asked (a step that does not tile the windows, ...)."""


@dataclass(frozen=True)
class Tiles:
    """Good and total events of one SLO per tile: ``good[i]`` counts ``(start + i*tile, start + (i+1)*tile]``
    (unix seconds). NaN marks a tile the source could not count."""

    start: int
    tile: int
    good: Sequence[float]
    total: Sequence[float]


@dataclass(frozen=True)
class Incident:
    start: datetime
    end: datetime
    scope: str = ""
    """``service`` or ``service/slo`` the incident concerns; empty: every SLO."""

    def concerns(self, slo: SLO) -> bool:
        return not self.scope or self.scope in (slo.service, slo.id)


@dataclass(frozen=True)
class ReplayedAlert:
    alertname: str
    severity: str
    labels: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None
    """None: still firing at the end of the replay."""


@dataclass(frozen=True)
class IncidentReport:
    start: datetime
    end: datetime
    detected_at: datetime | None
    """The first page that started inside the incident (or, failing a page, the first alert)."""
    detection_delay: timedelta | None
    reset_at: datetime | None
    """When the last alert firing at the incident's end resolved; None if one still fires."""
    time_to_reset: timedelta | None


@dataclass(frozen=True)
class SLOReport:
    slo: SLO
    alerts: tuple[ReplayedAlert, ...]
    pages_per_week: float
    tickets_per_week: float
    flaps: int
    budget_consumed_end: float | None
    incidents: tuple[IncidentReport, ...] = ()


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    step: timedelta
    slos: tuple[SLOReport, ...] = field(default_factory=tuple)


def lookback(slo: SLO, start: datetime) -> datetime:
    """How far before ``start`` events are needed: the longest window any step reads."""
    longest = max(parse_duration(w) for w in BURN_RATE_WINDOWS)
    if isinstance(slo.window, RollingWindow):
        return start - max(longest, slo.window.duration)
    return min(start - longest, window_span(slo.window, start).start)


def check_step(step: timedelta) -> int:
    """A step in whole seconds that divides every burn-rate window, so windows are whole tiles."""
    seconds = step.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise BacktestError(f"step must be a positive whole number of seconds, got {step}")
    shortest = min(int(parse_duration(w).total_seconds()) for w in BURN_RATE_WINDOWS)
    if shortest % int(seconds):
        raise BacktestError(
            f"step {int(seconds)}s must divide {shortest}s (the shortest window): try 15s, 30s, 1m or 5m")
    return int(seconds)


class _Running:
    """Running sums of one SLO's tiles: any window's counts by two subtractions."""

    def __init__(self, tiles: Tiles) -> None:
        self.start, self.tile = tiles.start, tiles.tile
        usable = [math.isfinite(g) and math.isfinite(t) for g, t in zip(tiles.good, tiles.total, strict=True)]
        self.good = array("d", accumulate((g if ok else 0.0 for g, ok in zip(tiles.good, usable, strict=True)),
                                          initial=0.0))
        self.total = array("d", accumulate((t if ok else 0.0 for t, ok in zip(tiles.total, usable, strict=True)),
                                           initial=0.0))
        self.bad_tiles = array("q", accumulate((not ok for ok in usable), initial=0))

    def index(self, t: int) -> int:
        i = (t - self.start) // self.tile
        if i < 0 or i >= len(self.good):
            raise BacktestError(f"no events were read for {datetime.fromtimestamp(t, UTC):%Y-%m-%dT%H:%M:%SZ}")
        return i

    def counts(self, lo: int, hi: int) -> EventCounts:
        """Events in ``(lo, hi]``; NaN when a tile in it could not be counted."""
        i, j = self.index(lo), self.index(hi)
        if self.bad_tiles[j] - self.bad_tiles[i]:
            return EventCounts(math.nan, math.nan)
        return EventCounts(good=self.good[j] - self.good[i], total=self.total[j] - self.total[i])


def _window_seconds(slo: SLO, at: datetime) -> int:
    return math.floor(window_span(slo.window, at).elapsed.total_seconds())


def measurement(slo: SLO, sums: _Running, t: int) -> Measurement:
    at = datetime.fromtimestamp(t, UTC)
    counts = {w: sums.counts(t - int(parse_duration(w).total_seconds()), t) for w in BURN_RATE_WINDOWS}
    elapsed = _window_seconds(slo, at)
    if elapsed > 0:
        counts[SLO_WINDOW] = sums.counts(t - elapsed, t)
    return Measurement(at=at, counts=counts)


class _Signatures:
    """What decides one SLO's alerts at each step, computed as ``budget.evaluate`` computes it
    (the same subtractions and divisions, so the same floats), a whole window series at a time."""

    def __init__(self, slo: SLO, sums: _Running) -> None:
        self.slo, self.sums, self.budget = slo, sums, slo.budget
        length = nominal_length(slo.window)
        self.rows = [(int(parse_duration(r.long_window).total_seconds()),
                      int(parse_duration(r.short_window).total_seconds()), r.factor(length))
                     for r in alert_rows(slo)] if slo.alerting.burn_rate else []
        self.thresholds = [th / 100.0 for th in slo.alerting.budget_consumed]

    def _window(self, steps: range, lows: Sequence[int] | int) -> tuple[list[float], list[float], list[bool]]:
        """Good and total events in (low, t] per step, and whether that window is unusable;
        ``lows`` as one length in seconds (a rolling window: a slice of the running sums) or per step."""
        s = self.sums
        hi = range(s.index(steps[0]), s.index(steps[-1]) + 1, steps.step // s.tile)
        if isinstance(lows, int):
            shift = lows // s.tile
            s.index(steps[0] - lows)  # the tiles must reach back that far
            lo: Sequence[int] = range(hi.start - shift, hi.stop - shift, hi.step)
        else:
            lo = [s.index(t) for t in lows]
        g, tot, u = s.good, s.total, s.bad_tiles
        if isinstance(lo, range):  # slices and map: the loops run in C (a month of minutes per window)
            def cut(a: array[Any], r: range) -> array[Any]:
                return a[r.start:r.stop:r.step]

            return (list(map(sub, cut(g, hi), cut(g, lo))), list(map(sub, cut(tot, hi), cut(tot, lo))),
                    list(map(ne, cut(u, hi), cut(u, lo))))
        good = [g[j] - g[i] for i, j in zip(lo, hi, strict=True)]
        total = [tot[j] - tot[i] for i, j in zip(lo, hi, strict=True)]
        bad = [u[j] != u[i] for i, j in zip(lo, hi, strict=True)]
        return good, total, bad

    def _unusable(self, good: list[float], total: list[float], bad: list[bool]) -> list[bool]:
        return [b or t < 0 or x < 0 or x > t for x, t, b in zip(good, total, bad, strict=True)]

    def _rates(self, good: list[float], total: list[float]) -> list[float | None]:
        budget_ = self.budget
        return [((t - x) / t) / budget_ if t > 0 else None for x, t in zip(good, total, strict=True)]

    def over(self, steps: range) -> list[tuple[object, ...]]:
        lows: Sequence[int] | int
        if isinstance(self.slo.window, RollingWindow):
            lows = int(self.slo.window.duration.total_seconds())
            empty = [False] * len(steps)
        else:
            lows = [t - _window_seconds(self.slo, datetime.fromtimestamp(t, UTC)) for t in steps]
            empty = [low >= t for low, t in zip(lows, steps, strict=True)]
        whole_good, whole_total, whole_bad = self._window(steps, lows)
        error = self._unusable(whole_good, whole_total, whole_bad)
        burning = [0] * len(steps)
        for bit, (long_s, short_s, factor) in enumerate(self.rows):
            rates = []
            for seconds in (long_s, short_s):
                good, total, bad = self._window(steps, seconds)
                error = [e or x for e, x in zip(error, self._unusable(good, total, bad), strict=True)]
                rates.append(self._rates(good, total))
            flag = 1 << bit
            burning = [b | flag if lr is not None and lr >= factor and sr is not None and sr >= factor else b
                       for b, lr, sr in zip(burning, rates[0], rates[1], strict=True)]
        out: list[tuple[object, ...]] = []
        budget_, thresholds = self.budget, self.thresholds
        for k in range(len(steps)):
            whole_t, whole_g = whole_total[k], whole_good[k]
            if error[k] and not empty[k]:
                out.append(("error",))  # budget.evaluate's quality checks: it will say which
            elif empty[k] or whole_t <= 0:
                out.append(("no_data",))
            else:
                consumed = ((whole_t - whole_g) / whole_t) / budget_
                out.append(("evaluated", sum(consumed >= th for th in thresholds), burning[k]))
        return out


def replay(slos: Sequence[SLO], tiles: Mapping[str, Tiles], start: datetime, end: datetime, step: timedelta,
           incidents: Sequence[Incident] = (), *, every_step: bool = False) -> Report:
    """The alerts ``slos`` would have had, evaluated every ``step`` in ``(start, end]``.

    ``every_step``: run the daemon's code at every step, not only where the signature changes
    (slow; the tests use it to show both give the same alerts)."""
    step_s = check_step(step)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    if t1 <= t0:
        raise BacktestError(f"--to ({end}) must be after --from ({start})")
    sums = {s.id: _Running(tiles[s.id]) for s in slos}
    first = t0 + (-t0) % step_s
    steps = range(first if first > t0 else first + step_s, t1 + 1, step_s)
    # Where each SLO's signature changes: only there can one of its alerts start or end.
    changes_at: dict[int, list[SLO]] = {}
    for slo in slos:
        signatures = _Signatures(slo, sums[slo.id]).over(steps)
        for k, t in enumerate(steps):
            if every_step or k == 0 or signatures[k] != signatures[k - 1]:
                changes_at.setdefault(t, []).append(slo)

    book = alerting.AlertBook()
    known = [s.id for s in slos]
    intervals: dict[alerting.Labels, list[list[datetime | None]]] = {}
    for t in sorted(changes_at):
        at = datetime.fromtimestamp(t, UTC)
        now = [budget.evaluate(slo, measurement(slo, sums[slo.id], t)) for slo in changes_at[t]]
        book, changes = alerting.step(book, now, at, evaluation_failing=False, known_slo_ids=known)
        book = alerting.forget(book, {a.id for a in book.resolved})  # nothing to deliver in a replay
        for change in changes:
            runs = intervals.setdefault(change.alert.labels, [])
            if change.kind == "fired":
                runs.append([change.alert.starts_at, None])
            elif runs:
                runs[-1][1] = change.alert.ends_at

    reports = []
    weeks = (end - start) / WEEK
    for slo in slos:
        alerts = []
        for labels, runs in sorted(intervals.items()):
            d = dict(labels)
            if d.get("service") != slo.service or d.get("slo") != slo.name:
                continue
            for began, ended in runs:
                assert began is not None
                alerts.append(ReplayedAlert(d["alertname"], d.get("severity", ""), d, began, ended))
        alerts.sort(key=lambda a: (a.starts_at, sorted(a.labels.items())))
        pages = sum(1 for a in alerts if a.severity == PAGE)
        tickets = sum(1 for a in alerts if a.severity == TICKET)
        final = budget.evaluate(slo, measurement(slo, sums[slo.id], t1))
        reports.append(SLOReport(
            slo=slo, alerts=tuple(alerts), pages_per_week=pages / weeks, tickets_per_week=tickets / weeks,
            flaps=_flaps(alerts), budget_consumed_end=final.consumed if final.state in ("ok", "burning", "exhausted")
            else None, incidents=tuple(_incident(i, alerts) for i in incidents if i.concerns(slo)),
        ))
    return Report(start=start, end=end, step=step, slos=tuple(reports))


def _flaps(alerts: Sequence[ReplayedAlert]) -> int:
    """Re-fires of the same alert (same labels) within FLAP_WITHIN of its resolve."""
    by_labels: dict[tuple[tuple[str, str], ...], list[ReplayedAlert]] = {}
    for a in alerts:
        by_labels.setdefault(tuple(sorted(a.labels.items())), []).append(a)
    count = 0
    for runs in by_labels.values():
        for before, after in pairwise(runs):
            if before.ends_at is not None and after.starts_at - before.ends_at <= FLAP_WITHIN:
                count += 1
    return count


# Alerts that say events went bad (not SLONoData, which says there are none). An incident is
# detected by the first page in it, else the first burn-rate alert, else a budget threshold; it
# has reset when the burn-rate alerts firing at its end have resolved (a budget-consumed alert
# stays until the window forgets the incident: that is the budget, not the alert policy).
_DETECTING = (BUDGET_BURN, BUDGET_CONSUMED)


def _incident(incident: Incident, alerts: Sequence[ReplayedAlert]) -> IncidentReport:
    relevant = [a for a in alerts if a.alertname in _DETECTING]
    during = [a for a in relevant if incident.start <= a.starts_at <= incident.end]
    pages = [a for a in during if a.severity == PAGE]
    burns = [a for a in during if a.alertname == BUDGET_BURN]
    detected = min((a.starts_at for a in pages or burns or during), default=None)
    open_at_end = [a for a in relevant if a.alertname == BUDGET_BURN
                   and a.starts_at <= incident.end and (a.ends_at is None or a.ends_at > incident.end)]
    if any(a.ends_at is None for a in open_at_end):
        reset = None
    else:
        reset = max((a.ends_at for a in open_at_end if a.ends_at is not None), default=incident.end)
    return IncidentReport(
        start=incident.start, end=incident.end, detected_at=detected,
        detection_delay=None if detected is None else detected - incident.start,
        reset_at=reset, time_to_reset=None if reset is None else reset - incident.end,
    )
