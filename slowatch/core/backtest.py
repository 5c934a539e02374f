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

Exclusions (``SLO.exclusions``): the events of each excluded interval are taken out of the tiles
before the running sums, so every window of every step leaves them out. On the event side an
interval ``[lo, hi)`` is the span ``(lo, hi]`` of core/measure.py (the events of the samples after
``lo`` up to ``hi``): a tile wholly inside loses all its events, a tile a boundary cuts loses the
events of its samples inside (the reader hands those samples over, ``Tiles.cut_good``/``cut_total``).

Composites (``sli.composite``) have no tiles: each window's counts are ``core.composite.combine`` of
their components' counts over that same window, so their alerts come from the daemon's maths too.
The composite's own exclusions are taken out of its components' events as they enter it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate, pairwise
from operator import ne, sub
from typing import Any, Protocol

from slowatch.core import alerting, budget
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.composite import combine, is_composite
from slowatch.core.conventions import BUDGET_BURN, BUDGET_CONSUMED
from slowatch.core.exclusions import excluded_seconds, merged
from slowatch.core.model import SLO, CompositeSLI, Exclusion, RollingWindow, alert_rows, nominal_length, window_span
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
    cut_good: Mapping[int, Sequence[tuple[float, float]]] = field(default_factory=dict)
    """For the tiles an exclusion boundary cuts (``cut_tiles``): (time, events) of each sample in
    the tile, so the replay can split it exactly. A cut tile without them (a range query's tiles)
    is excluded whole when its end lies inside the interval."""
    cut_total: Mapping[int, Sequence[tuple[float, float]]] = field(default_factory=dict)


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
    excluded_seconds: float = 0.0
    """Time the SLO's exclusions cover in the replay's ``(start, end]``."""
    excluded_events: float | None = 0.0
    """Events those exclusions took out of the replay's ``(start, end]`` (None for a composite:
    its counts are its components')."""


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


def reach(slos: Sequence[SLO], every: Mapping[str, SLO], start: datetime) -> dict[str, datetime]:
    """How far before ``start`` each SLO's events are needed: its own ``lookback``, or a composite's
    that contains it (through any depth) when that reaches further. ``slos`` are the replayed
    ones; the components come from ``every`` (see ``core.composite.closure``)."""
    out: dict[str, datetime] = {}
    stack = [(s, lookback(s, start)) for s in slos]
    while stack:
        slo, first = stack.pop()
        if slo.id in out and out[slo.id] <= first:
            continue
        out[slo.id] = first
        if isinstance(slo.sli, CompositeSLI):
            stack.extend((every[c.slo], first) for c in slo.sli.components if c.slo in every)
    return out


Span = tuple[float, float]
"""An excluded interval on the event side, ``(lo, hi]`` in unix seconds."""


def excluded_spans(slo: SLO, start: datetime, end: datetime, outer: Iterable[Exclusion] = ()) -> list[Span]:
    """``slo``'s excluded intervals inside ``[start, end)`` (``core.exclusions.merged``), with those
    of ``outer`` (the composites it is read for), in unix seconds."""
    return [(lo.timestamp(), hi.timestamp()) for lo, hi in merged((*slo.exclusions, *outer), start, end)]


def cut_tiles(boundaries: Iterable[float], start: int, tile: int) -> set[int]:
    """Indexes of the tiles (from ``start``) that a boundary falls strictly inside: the tiles whose
    samples a reader keeps for ``Tiles.cut_good``/``cut_total``."""
    return {math.floor((b - start) / tile) for b in boundaries if (b - start) % tile}


def excluded_events(events: Sequence[float], cut: Mapping[int, Sequence[tuple[float, float]]], start: int,
                    tile: int, spans: Sequence[Span]) -> list[float]:
    """Events of each tile inside ``spans``: all of a tile wholly inside one, the samples inside of
    a tile a boundary cuts (``cut``), else all of a cut tile whose end is inside."""
    out = [0.0] * len(events)
    for lo, hi in spans:
        # Tile i is (start + i*tile, start + (i+1)*tile]: from the first ending after lo to the last
        # beginning before hi.
        for i in range(max(0, math.floor((lo - start) / tile)), min(len(events), math.ceil((hi - start) / tile))):
            a, b = start + i * tile, start + (i + 1) * tile
            if lo <= a and b <= hi:
                out[i] += events[i]
            elif i in cut:
                out[i] += sum(v for t, v in cut[i] if lo < t <= hi)
            elif lo < b <= hi:
                out[i] += events[i]
    return out


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
    """Running sums of one SLO's tiles, without the events of ``spans``: any window's counts by two
    subtractions."""

    def __init__(self, tiles: Tiles, spans: Sequence[Span] = ()) -> None:
        self.start, self.tile = tiles.start, tiles.tile
        good, total = tiles.good, tiles.total
        if spans:
            out_good = excluded_events(good, tiles.cut_good, self.start, self.tile, spans)
            out_total = excluded_events(total, tiles.cut_total, self.start, self.tile, spans)
            good = list(map(sub, good, out_good))
            total = list(map(sub, total, out_total))
        usable = [math.isfinite(g) and math.isfinite(t) for g, t in zip(good, total, strict=True)]
        self.good = array("d", accumulate((g if ok else 0.0 for g, ok in zip(good, usable, strict=True)),
                                          initial=0.0))
        self.total = array("d", accumulate((t if ok else 0.0 for t, ok in zip(total, usable, strict=True)),
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


Lows = Sequence[int] | int
"""Where a window begins at each step: one length in seconds (a rolling window) or one instant per step."""
Series = tuple[list[float], list[float], list[bool]]
"""Good and total events in one window at each step, and whether that window is unusable there."""


def _unusable(good: list[float], total: list[float], bad: list[bool]) -> list[bool]:
    return [b or t < 0 or x < 0 or x > t for x, t, b in zip(good, total, bad, strict=True)]


class _Counts(Protocol):
    """An SLO's counts in any window: a leaf's running sums, or a composite's combined components'."""

    def windows(self, steps: range, lows: Mapping[str, Lows]) -> dict[str, Series]: ...

    def at(self, t: int, lows: Mapping[str, int]) -> dict[str, EventCounts]: ...


class _Leaf:
    def __init__(self, sums: _Running) -> None:
        self.sums = sums

    def windows(self, steps: range, lows: Mapping[str, Lows]) -> dict[str, Series]:
        return {name: self._window(steps, low) for name, low in lows.items()}

    def at(self, t: int, lows: Mapping[str, int]) -> dict[str, EventCounts]:
        return {name: self.sums.counts(low, t) for name, low in lows.items()}

    def _window(self, steps: range, lows: Lows) -> Series:
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

            good, total = list(map(sub, cut(g, hi), cut(g, lo))), list(map(sub, cut(tot, hi), cut(tot, lo)))
            bad = list(map(ne, cut(u, hi), cut(u, lo)))
        else:
            good = [g[j] - g[i] for i, j in zip(lo, hi, strict=True)]
            total = [tot[j] - tot[i] for i, j in zip(lo, hi, strict=True)]
            bad = [u[j] != u[i] for i, j in zip(lo, hi, strict=True)]
        return good, total, _unusable(good, total, bad)


class _Combined:
    """A composite: each window's counts are ``combine`` of its components' in that window, and
    unusable where one of theirs is."""

    def __init__(self, slo: SLO, parts: Mapping[str, _Counts]) -> None:
        self.slo, self.parts = slo, parts

    def windows(self, steps: range, lows: Mapping[str, Lows]) -> dict[str, Series]:
        per = {cid: part.windows(steps, lows) for cid, part in self.parts.items()}
        out: dict[str, Series] = {name: ([], [], []) for name in lows}
        at = datetime.fromtimestamp(steps[0], UTC)  # combine reads counts only: one instant serves every step
        for k in range(len(steps)):
            counts = combine(self.slo, {cid: Measurement(at=at, counts={
                name: EventCounts(good=w[name][0][k], total=w[name][1][k]) for name in lows}) for cid, w in per.items()}
            ).counts
            for name, (good, total, bad) in out.items():
                c = counts[name]
                good.append(c.good)
                total.append(c.total)
                bad.append(any(w[name][2][k] for w in per.values()))
        return {name: (good, total, _unusable(good, total, bad)) for name, (good, total, bad) in out.items()}

    def at(self, t: int, lows: Mapping[str, int]) -> dict[str, EventCounts]:
        at = datetime.fromtimestamp(t, UTC)
        return dict(combine(self.slo, {cid: Measurement(at=at, counts=part.at(t, lows))
                                       for cid, part in self.parts.items()}).counts)


def _lows_at(slo: SLO, t: int) -> dict[str, int]:
    lows = {w: t - int(parse_duration(w).total_seconds()) for w in BURN_RATE_WINDOWS}
    elapsed = _window_seconds(slo, datetime.fromtimestamp(t, UTC))
    if elapsed > 0:
        lows[SLO_WINDOW] = t - elapsed
    return lows


def measurement(slo: SLO, counts: _Counts, t: int) -> Measurement:
    return Measurement(at=datetime.fromtimestamp(t, UTC), counts=counts.at(t, _lows_at(slo, t)))


class _Signatures:
    """What decides one SLO's alerts at each step, computed as ``budget.evaluate`` computes it
    (the same subtractions and divisions, so the same floats), a whole window series at a time."""

    def __init__(self, slo: SLO, counts: _Counts) -> None:
        self.slo, self.counts, self.budget = slo, counts, slo.budget
        length = nominal_length(slo.window)
        self.rows = [(int(parse_duration(r.long_window).total_seconds()),
                      int(parse_duration(r.short_window).total_seconds()), r.factor(length))
                     for r in alert_rows(slo)] if slo.alerting.burn_rate else []
        self.thresholds = [th / 100.0 for th in slo.alerting.budget_consumed]

    def _rates(self, good: list[float], total: list[float]) -> list[float | None]:
        budget_ = self.budget
        return [((t - x) / t) / budget_ if t > 0 else None for x, t in zip(good, total, strict=True)]

    def over(self, steps: range) -> list[tuple[object, ...]]:
        whole: Lows
        if isinstance(self.slo.window, RollingWindow):
            whole = int(self.slo.window.duration.total_seconds())
            empty = [False] * len(steps)
        else:
            whole = [t - _window_seconds(self.slo, datetime.fromtimestamp(t, UTC)) for t in steps]
            empty = [low >= t for low, t in zip(whole, steps, strict=True)]
        lows: dict[str, Lows] = {SLO_WINDOW: whole}
        lows.update({f"{seconds}s": seconds for row in self.rows for seconds in row[:2]})
        series = self.counts.windows(steps, lows)
        whole_good, whole_total, error = series[SLO_WINDOW]
        burning = [0] * len(steps)
        for bit, (long_s, short_s, factor) in enumerate(self.rows):
            rates = []
            for seconds in (long_s, short_s):
                good, total, unusable = series[f"{seconds}s"]
                error = [e or x for e, x in zip(error, unusable, strict=True)]
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
           incidents: Sequence[Incident] = (), *, every_step: bool = False,
           components: Sequence[SLO] = ()) -> Report:
    """The alerts ``slos`` would have had, evaluated every ``step`` in ``(start, end]``.

    ``tiles``: per SLO that is no composite, its events (``slos`` and ``components``, the SLOs
    their composites contain that are measured but not reported: ``core.composite.closure``).
    ``every_step``: run the daemon's code at every step, not only where the signature changes
    (slow; the tests use it to show both give the same alerts)."""
    step_s = check_step(step)
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    if t1 <= t0:
        raise BacktestError(f"--to ({end}) must be after --from ({start})")
    every = {s.id: s for s in (*components, *slos)}
    unknown = sorted({c.slo for s in every.values() if isinstance(s.sli, CompositeSLI) for c in s.sli.components}
                     - every.keys())
    if unknown:
        raise BacktestError(f"composites contain {', '.join(unknown)}: pass them as components")
    missing = sorted(s for s in every if not is_composite(every[s]) and s not in tiles)
    if missing:
        raise BacktestError(f"no events were read for {', '.join(missing)}")
    # Exclusions as far back as any tile reaches (a window at the first step still holds them).
    since = datetime.fromtimestamp(min((t.start for t in tiles.values()), default=t0), UTC)
    cache: dict[tuple[str, tuple[Exclusion, ...]], _Counts] = {}

    def counts_of(slo: SLO, outer: tuple[Exclusion, ...] = ()) -> _Counts:
        """``slo``'s counts without its exclusions' events, nor those of ``outer`` (its composites')."""
        key = (slo.id, outer)
        if key not in cache:
            if isinstance(slo.sli, CompositeSLI):
                inner = (*outer, *slo.exclusions)
                cache[key] = _Combined(slo, {c.slo: counts_of(every[c.slo], inner) for c in slo.sli.components})
            else:
                cache[key] = _Leaf(_Running(tiles[slo.id], excluded_spans(slo, since, end, outer)))
        return cache[key]

    first = t0 + (-t0) % step_s
    steps = range(first if first > t0 else first + step_s, t1 + 1, step_s)
    # Where each SLO's signature changes: only there can one of its alerts start or end.
    changes_at: dict[int, list[SLO]] = {}
    for slo in slos:
        signatures = _Signatures(slo, counts_of(slo)).over(steps)
        for k, t in enumerate(steps):
            if every_step or k == 0 or signatures[k] != signatures[k - 1]:
                changes_at.setdefault(t, []).append(slo)

    book = alerting.AlertBook()
    known = [s.id for s in slos]
    intervals: dict[alerting.Labels, list[list[datetime | None]]] = {}
    for t in sorted(changes_at):
        at = datetime.fromtimestamp(t, UTC)
        now = [budget.evaluate(slo, measurement(slo, counts_of(slo), t)) for slo in changes_at[t]]
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
        final = budget.evaluate(slo, measurement(slo, counts_of(slo), t1))
        inside = merged(slo.exclusions, start, end)
        reports.append(SLOReport(
            slo=slo, alerts=tuple(alerts), pages_per_week=pages / weeks, tickets_per_week=tickets / weeks,
            flaps=_flaps(alerts), budget_consumed_end=final.consumed if final.state in ("ok", "burning", "exhausted")
            else None, incidents=tuple(_incident(i, alerts) for i in incidents if i.concerns(slo)),
            excluded_seconds=excluded_seconds(inside),
            excluded_events=None if is_composite(slo) else _excluded_total(tiles[slo.id], inside),
        ))
    return Report(start=start, end=end, step=step, slos=tuple(reports))


def _excluded_total(tiles: Tiles, inside: Sequence[tuple[datetime, datetime]]) -> float:
    spans = [(lo.timestamp(), hi.timestamp()) for lo, hi in inside]
    return math.fsum(excluded_events(tiles.total, tiles.cut_total, tiles.start, tiles.tile, spans))


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
