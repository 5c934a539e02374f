"""Constant-cost measurement: what to ask Prometheus at an instant, and how to add it up.

The cost model. ``increase(x[30d])`` reads 30 days of raw samples on every cycle (Pyrra's
95 s evaluations, pyrra#1440); averaging 5-minute ratios (Sloth) is cheap but wrong when traffic
varies (sloth#241). slowatch keeps, per series group, the events of every whole hour in a ledger
(filled once by a range query, then one hour at a time), and asks Prometheus each cycle only for
what the ledger cannot know:

* the short windows (5m .. 6h) as they are;
* the *head*: events since the last whole hour, ``(H, at]``;
* one *tail* per long window: the part of its first hour inside the window, ``(at - W, ⌈at - W⌉]``.

A long window (1d, 3d, the SLO window) is then ``tail + Σ hours + head``: the same events as
one count over W, since adjacent spans share their boundary sample and tile (``core.measure``
says how a span is counted), at a cost of at most ~14 hours of samples per series whatever W is.

And batching: SLOs whose selectors differ only in equality matcher values (``service="a"`` vs
``service="b"``) share a *shape*, and ``sum by (service) (...)`` measures them all at once, in
one query per day back that the cycle's spans reach into (``query_parts``).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.exclusions import merged
from slowatch.core.measure import (
    Answer,
    CounterRole,
    Flavour,
    Key,
    MeasureRole,
    Role,
    Shape,
    Span,
    check_query,
    shape_of,
    tagged_query,
)
from slowatch.core.model import SLO, CompositeSLI, Exclusion, LatencySLI, window_span
from slowatch.core.promql import go_float
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration

HOUR = 3600
# Windows at least this long come from the ledger; shorter ones are read live each cycle. 2h is
# the shortest that tiles: its tail ends by the last settled hour (the head is under 1h05m).
# Counting a span reads its samples four times (core.measure), so the ledger serves 2h and 6h
# too: a cycle reads 1h35m live plus the head and one tail per long window.
LEDGER_MIN_WINDOW = 2 * HOUR
# SLOs per query: bounds the key regex and the answer's size.
CHUNK = 2000
# An hour enters the ledger only this long after it ended, once its last samples have surely been
# scraped (or remote-written); until then it is read live with the head. Filling it earlier would
# freeze an hour that is missing its last sample.
SETTLE_SECONDS = 300
# Relative rounding of a window read as the difference of two running sums of up to a few
# thousand hours (each add rounds by one ulp, ~1e-16): far below any real data error.
SUM_ROUNDING = 1e-9


# --- groups --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """SLOs measured by the same queries (``core.measure``): ``members`` map each SLO id to its key
    per role. ``ledger``: long windows come from the hour ledger (not for raw queries, which are
    read live over whole windows)."""

    signature: str
    roles: Mapping[Role, MeasureRole]
    members: Mapping[str, Mapping[Role, Key]]
    slos: tuple[SLO, ...]
    check: Mapping[str, CounterRole] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Latency SLOs: slo id -> threshold (the good role is summed by ``le``)."""
    ledger: bool = True

    def keys(self, slos: Iterable[SLO]) -> dict[Role, list[Key]]:
        out: dict[Role, set[Key]] = {r: set() for r in self.roles}
        for slo in slos:
            for role, key in self.members[slo.id].items():
                out[role].add(key)
        return {r: sorted(k) for r, k in out.items()}

    def ledger_keys(self, slos: Iterable[SLO]) -> list[tuple[str, Key]]:
        """The ledger rows these SLOs read: (role, key), latency good events per threshold."""
        out: set[tuple[str, Key]] = set()
        for slo in slos:
            for role, key in self.members[slo.id].items():
                out.add((self.ledger_role(slo, role), key))
        return sorted(out)

    def ledger_role(self, slo: SLO, role: Role) -> str:
        th = self.thresholds.get(slo.id)
        return f"{role}@{go_float(th)}" if th is not None and self.roles[role].le else role

    def chunks(self) -> list[tuple[SLO, ...]]:
        return [self.slos[i:i + CHUNK] for i in range(0, len(self.slos), CHUNK)]

    def query(self, spans: Mapping[str, Span], slos: Sequence[SLO], flavour: Flavour, *, check: bool = True) -> str:
        """The query for ``slos`` of the group: every span and role, and the bound check."""
        keys = self.keys(slos)
        thresholds = [self.thresholds[s.id] for s in slos if s.id in self.thresholds]
        query = tagged_query(self.roles, spans, keys, thresholds, flavour)
        if self.check and check:
            query += "\n  or " + check_query(self.check, keys["good"], thresholds)
        return query


def group_slos(slos: Iterable[SLO]) -> list[Group]:
    """The SLOs grouped by shape: each group is measured by shared queries."""
    by_sig: dict[str, tuple[Shape, list[SLO]]] = {}
    for slo in slos:
        if isinstance(slo.sli, CompositeSLI):  # no query of its own (slowatch.engine combines it)
            raise ValueError(f"{slo.id} is a composite: measure its components, then core.composite.combine them")
        shape = shape_of(slo)
        by_sig.setdefault(shape.signature, (shape, []))[1].append(slo)
    groups = []
    for sig, (shape, members) in sorted(by_sig.items()):
        groups.append(Group(
            signature=sig, roles=shape.roles, members={s.id: shape_of(s).keys for s in members},
            slos=tuple(members), check=shape.check, ledger=shape.ledger,
            thresholds={s.id: s.sli.threshold_seconds for s in members if isinstance(s.sli, LatencySLI)},
        ))
    return groups


# --- the plan of one cycle -------------------------------------------------------------------


def _ceil_hour(t: int) -> int:
    return -(-t // HOUR) * HOUR


@dataclass(frozen=True)
class WindowPlan:
    """How one window of one SLO is counted at ``at``: live, or tail + hours + head."""

    name: str
    seconds: int
    live: bool

    def tail(self, at: int) -> Span | None:
        start = at - self.seconds
        length = _ceil_hour(start) - start
        return Span(length, self.seconds - length) if length > 0 else None

    def hours(self, at: int) -> range:
        """End times of the whole hours inside the window that the ledger holds."""
        return range(_ceil_hour(at - self.seconds) + HOUR, ledger_end(at) + 1, HOUR)


def ledger_end(at: int) -> int:
    """The end of the last hour the ledger holds at ``at``; the head is ``(ledger_end, at]``."""
    return (at - SETTLE_SECONDS) // HOUR * HOUR


def _burn_rate_plans(ledger: bool) -> tuple[WindowPlan, ...]:
    out = []
    for w in BURN_RATE_WINDOWS:
        seconds = int(parse_duration(w).total_seconds())
        out.append(WindowPlan(w, seconds, not ledger or seconds < LEDGER_MIN_WINDOW))
    return tuple(out)


# The burn-rate windows' plans do not depend on the SLO: built once (a cycle asks for every SLO's
# plans twice, and parsing the window names each time was a tenth of a 10,000-SLO cycle's CPU).
_BURN_RATE_PLANS = {ledger: _burn_rate_plans(ledger) for ledger in (True, False)}


def window_plans(slo: SLO, at: datetime, ledger: bool = True) -> list[WindowPlan]:
    """How each window is counted; without the ``ledger`` every window is read live."""
    plans = list(_BURN_RATE_PLANS[ledger])
    elapsed = math.floor(window_span(slo.window, at).elapsed.total_seconds())
    if elapsed > 0:
        plans.append(WindowPlan(SLO_WINDOW, elapsed, not ledger or elapsed < LEDGER_MIN_WINDOW))
    return plans


@dataclass(frozen=True)
class Cut:
    """The excluded part of one window (``SLO.exclusions``), subtracted from its counts: whole
    hours the ledger holds, and live spans for the rest (the partial-hour edges of intervals, and
    whatever lies in live windows, the head or a tail). Each excluded ``[lo, hi)`` is counted as
    the span ``(lo, hi]`` (``core.measure``), so it tiles with the window's own spans."""

    hours: tuple[range, ...] = ()
    spans: tuple[Span, ...] = ()


NO_CUT = Cut()
# Cuts kept: a cycle asks twice (its spans, then its counts) for each SLO window, and SLOs sharing
# a file's exclusions share one: 10,000 SLOs with their own exclusions x 8 windows fit.
CUTS_KEPT = 1 << 17


def excluded_cut(slo: SLO, p: WindowPlan, t: int) -> Cut:
    """What to subtract from window ``p`` of ``slo`` at ``t`` (unix seconds). Interval bounds are
    taken to the whole second (spans are whole seconds)."""
    return _cut(slo.exclusions, p, t) if slo.exclusions else NO_CUT


@lru_cache(maxsize=CUTS_KEPT)
def _cut(exclusions: tuple[Exclusion, ...], p: WindowPlan, t: int) -> Cut:
    held = range(0) if p.live else p.hours(t)
    hours: list[range] = []
    spans: list[Span] = []
    for lo_at, hi_at in merged(exclusions, utc(t - p.seconds), utc(t)):
        lo, hi = int(lo_at.timestamp()), math.ceil(hi_at.timestamp())
        if held:
            first = max(_ceil_hour(lo) + HOUR, held.start)  # the first held hour starting at or after lo
            last = min(hi // HOUR * HOUR, held[-1])  # the last held hour ending at or before hi
            if first <= last:
                hours.append(range(first, last + 1, HOUR))
                if first - HOUR > lo:
                    spans.append(Span(first - HOUR - lo, t - (first - HOUR)))
                if hi > last:
                    spans.append(Span(hi - last, t - hi))
                continue
        spans.append(Span(hi - lo, t - hi))
    return Cut(tuple(hours), tuple(spans))


# Prometheus looks up each selector's series in every block that its *query's* time range
# touches, and that range is the union over the query's selectors: a 30-day tail in the same
# query as the 5-minute window makes every selector search 30 days of blocks. Measured on 2,000
# SLOs over 31 days of data (Prometheus 2.42, 54h blocks; the README's cost model): one query
# for all spans took 7.4-9.2 s, the same spans in one query per day of reach 3.1-3.4 s.
# So the spans of a cycle are asked in parts: those reaching into the same day back share one.
REACH_PART_SECONDS = 24 * HOUR


def query_parts(spans: Mapping[str, Span]) -> list[dict[str, Span]]:
    """``spans`` split by how far back they reach (``REACH_PART_SECONDS``), nearest first: each
    part is one query, whose selectors search only the blocks of its own days."""
    parts: dict[int, dict[str, Span]] = {}
    for tag, span in spans.items():
        parts.setdefault((span.offset + span.length) // REACH_PART_SECONDS, {})[tag] = span
    return [parts[k] for k in sorted(parts)]


def cut_tag(span: Span) -> str:
    """The tag of an excluded span: SLOs of a chunk excluding the same span share it."""
    return f"x{span.length}@{span.offset}"


def live_spans(slos: Iterable[SLO], at: datetime, ledger: bool = True) -> dict[str, Span]:
    """Tag -> span of everything read live this cycle for these SLOs."""
    t = int(at.timestamp())
    spans: dict[str, Span] = {}
    # Cuts shared by SLOs (the cache hands out one object) are tagged once; held here, so that no
    # other cut can take the id of one the cache dropped meanwhile.
    seen: dict[int, Cut] = {}
    for slo in slos:
        for p in window_plans(slo, at, ledger):
            cut = excluded_cut(slo, p, t)
            if cut.spans and id(cut) not in seen:
                seen[id(cut)] = cut
                spans.update((cut_tag(span), span) for span in cut.spans)
            if p.live:
                spans[f"w{p.seconds}"] = Span(p.seconds)
                continue
            spans["head"] = Span(t - ledger_end(t))
            tail = p.tail(t)
            if tail:
                spans[f"tail{p.seconds}"] = tail
    return spans


# --- the ledger --------------------------------------------------------------------------------

RowKey = tuple[str, Key]
"""A ledger row: (ledger role, key), see ``Group.ledger_keys``."""

# Hours dropped from a row's front are cut away once they reach 1/COMPACT_SHARE of the array: at
# most that much slack per row, and one copy of the n held hours every n/COMPACT_SHARE hours is
# COMPACT_SHARE element copies an hour, amortised (upkeep stays O(rows), not O(rows x hours)).
COMPACT_SHARE = 4


@dataclass
class Row:
    """One row's events per whole hour, as running sums over a contiguous range of hour ends
    starting at ``first``: the held hour ``i`` (ending at ``first + i*HOUR``) counts
    ``cum[off+i+1] - cum[off+i]``. New hours are appended; old ones are dropped by advancing
    ``off`` (the sums before it are never read again), so neither rebuilds the array."""

    first: int = 0
    cum: array[float] = field(default_factory=lambda: array("d", [0.0]))
    off: int = 0
    unusable: set[int] = field(default_factory=set)
    """Hour ends whose count came back NaN or infinite: kept out of the running sums (which would
    stay NaN for 30 days) and reported as unknown by every window that holds them."""

    @property
    def hours(self) -> int:
        return len(self.cum) - 1 - self.off

    @property
    def last(self) -> int:
        """The end of the last held hour (``first - HOUR`` when none is held)."""
        return self.first + (self.hours - 1) * HOUR

    def missing(self, need: range) -> range:
        """Hour ends to fetch so that ``need`` is covered (one contiguous range: the row stays one)."""
        if not need:
            return range(0)
        if not self.hours or need[-1] < self.first - HOUR or need[0] > self.last + HOUR:
            return need
        lo = need[0] if need[0] < self.first else self.last + HOUR
        hi = need[-1] if need[-1] > self.last else self.first - HOUR
        return range(lo, hi + HOUR, HOUR) if lo <= hi else range(0)

    def add(self, fetched: range, values: Sequence[float]) -> None:
        """Merge the hours of ``fetched`` (``values[i]``: the hour ending at ``fetched[i]``); hours
        already held are kept. Appending costs the new hours only; hours before ``first`` (a
        longer window joined the group) rebuild the row once; a range that neither touches nor
        overlaps the held one replaces it."""
        if not fetched:
            return
        if not self.hours or fetched[0] > self.last + HOUR or fetched[-1] < self.first - HOUR:
            self.first, self.cum, self.off, self.unusable = fetched[0], array("d", [0.0]), 0, set()
            self._append(fetched, values)
            return
        if fetched[0] < self.first:
            k = (self.first - fetched[0]) // HOUR
            front = Row(fetched[0])
            front._append(fetched[:k], values[:k])
            shift = front.cum[-1] - self.cum[self.off]
            front.cum.extend(c + shift for c in self.cum[self.off + 1:])
            front.unusable |= self.unusable
            self.first, self.cum, self.off, self.unusable = front.first, front.cum, 0, front.unusable
        if fetched[-1] > self.last:
            i = (self.last + HOUR - fetched[0]) // HOUR
            self._append(fetched[i:], values[i:])

    def _append(self, hours: range, values: Sequence[float]) -> None:
        acc = self.cum[-1]
        for end, v in zip(hours, values, strict=True):
            if math.isfinite(v):
                acc += v
            else:
                self.unusable.add(end)
            self.cum.append(acc)

    def drop_before(self, keep_from: int) -> None:
        """Forget the hours ending before ``keep_from``."""
        k = min(self.hours, (keep_from - self.first) // HOUR)
        if k <= 0:
            return
        self.off += k
        self.first += k * HOUR
        if self.unusable:
            self.unusable = {h for h in self.unusable if h >= self.first}
        if self.off * COMPACT_SHARE >= len(self.cum):
            del self.cum[:self.off]
            self.off = 0

    def total(self, hours: range) -> float:
        if not hours:
            return 0.0
        lo, hi = (hours[0] - self.first) // HOUR, (hours[-1] - self.first) // HOUR + 1
        if lo < 0 or hi > self.hours:
            return math.nan  # never read an hour the ledger does not hold
        if self.unusable and any(hours[0] <= h <= hours[-1] for h in self.unusable):
            return math.nan
        return self.cum[self.off + hi] - self.cum[self.off + lo]


@dataclass
class GroupLedger:
    """The rows of one group (every SLO sharing a query shape), each with its own coverage: rows
    are shared by whatever chunks the group is queried in, and a new or changed SLO's rows are
    filled alone, without touching the others."""

    rows: dict[RowKey, Row] = field(default_factory=dict)

    def missing(self, need: range, role_keys: Iterable[RowKey]) -> range:
        """Hour ends to fetch so that ``need`` is covered for every row of ``role_keys``."""
        lo = hi = None
        for rk in role_keys:
            row = self.rows.get(rk)
            m = row.missing(need) if row is not None else need
            if m:
                lo = m[0] if lo is None else min(lo, m[0])
                hi = m[-1] if hi is None else max(hi, m[-1])
        return range(0) if lo is None or hi is None else range(lo, hi + HOUR, HOUR)

    def fill(self, fetched: range, values: Mapping[RowKey, Sequence[float]], role_keys: Iterable[RowKey],
             keep_from: int | None = None) -> None:
        """Merge the hours of ``fetched`` into each row of ``role_keys`` (``values[rk][i]``: the hour
        ending at ``fetched[i]``; a row absent from ``values`` had no events), then drop hours
        ending before ``keep_from``."""
        zeros = array("d", bytes(8 * len(fetched)))
        for rk in role_keys:
            row = self.rows.setdefault(rk, Row())
            row.add(fetched, values.get(rk, zeros))
            if keep_from is not None:
                row.drop_before(keep_from)

    def drop_before(self, keep_from: int) -> None:
        for row in self.rows.values():
            row.drop_before(keep_from)

    def retain(self, role_keys: Iterable[RowKey]) -> None:
        """Forget rows no SLO reads any more."""
        keep = set(role_keys)
        for rk in [rk for rk in self.rows if rk not in keep]:
            del self.rows[rk]

    def total(self, rk: RowKey, hours: range) -> float:
        row = self.rows.get(rk)
        if row is None:
            return 0.0 if not hours else math.nan
        return row.total(hours)


class Ledger:
    """The hour ledgers of every group, by group signature (the query shape: ``core.measure``)."""

    def __init__(self, groups: Mapping[str, GroupLedger] | None = None) -> None:
        self.groups: dict[str, GroupLedger] = dict(groups or {})

    def group(self, signature: str) -> GroupLedger:
        return self.groups.setdefault(signature, GroupLedger())

    def retain(self, signatures: Iterable[str]) -> None:
        keep = set(signatures)
        for sig in [s for s in self.groups if s not in keep]:
            del self.groups[sig]


def assemble(
    slo: SLO, group: Group, at: datetime, answer: Answer, ledger: GroupLedger, problems: Sequence[str] = (),
    *, from_ledger: bool = True,
) -> Measurement:
    """One SLO's counts per window from this cycle's answer and the group's ledger (unless the
    source reads every window live: ``from_ledger=False``)."""
    t = int(at.timestamp())
    keys = group.members[slo.id]
    threshold = group.thresholds.get(slo.id)
    counts_bad = "bad" in group.roles
    counts: dict[str, EventCounts] = {}
    for p in window_plans(slo, at, from_ledger and group.ledger):
        per_role: dict[str, float] = {}
        cut = excluded_cut(slo, p, t)
        for role, template in group.roles.items():
            key = keys[role]
            th = threshold if template.le else None
            row = (group.ledger_role(slo, role), key)
            if p.live:
                v = answer.value(f"w{p.seconds}", role, key, th)
            else:
                v = answer.value(f"tail{p.seconds}", role, key, th) if p.tail(t) else 0.0
                v += ledger.total(row, p.hours(t))
                v += answer.value("head", role, key, th)
            # Excluded events count neither as good nor as total: the same spans, subtracted.
            excluded = sum(ledger.total(row, hours) for hours in cut.hours)
            excluded += sum(answer.value(cut_tag(span), role, key, th) for span in cut.spans)
            v -= excluded
            if v < 0 and -v <= excluded * SUM_ROUNDING:
                v = 0.0  # a window excluded whole: running sums round apart by a few ulps
            per_role[role] = v
        total = per_role.get("total", 0.0)
        good = total - per_role.get("bad", 0.0) if counts_bad else per_role.get("good", 0.0)
        if total < good <= total * (1 + SUM_ROUNDING):
            # Differences of running sums round apart by a few ulps; real excess is far larger.
            good = total
        counts[p.name] = EventCounts(good=good, total=total)
    return Measurement(at=at, counts=counts, problems=tuple(problems))


def ledger_hours(slos: Iterable[SLO], at: datetime, ledger: bool = True) -> range:
    """Every hour end any ledger window of these SLOs needs at ``at``."""
    t = int(at.timestamp())
    lo = None
    for slo in slos:
        for p in window_plans(slo, at, ledger):
            if not p.live:
                r = p.hours(t)
                if r:
                    lo = r.start if lo is None else min(lo, r.start)
    return range(0) if lo is None else range(lo, ledger_end(t) + 1, HOUR)


def bound_problems(slo: SLO, group: Group, answer: Answer) -> list[str]:
    """A latency threshold that is no ``le`` bound on some of the SLO's series."""
    threshold = group.thresholds.get(slo.id)
    if threshold is None:
        return []
    key = group.members[slo.id]["good"]
    bound = answer.value("", "bound_series", key, threshold)
    every = answer.value("", "all_series", key)
    if every > bound:
        assert isinstance(slo.sli, LatencySLI)
        return [
            f"latency threshold {go_float(threshold)}s is not an `le` bound of {slo.sli.histogram} on "
            f"{int(every - bound)} of {int(every)} series; run `slowatch check --live` to list the bounds that exist"
        ]
    return []


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)
