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
``increase(x[W])``, exact at sample-aligned instants (adjacent ``increase`` ranges share their edge
sample, so they tile), at a cost of at most ~14 hours of samples per series whatever W is.

And batching: SLOs whose selectors differ only in equality matcher values (``service="a"`` vs
``service="b"``) share a *shape*, and one query ``sum by (service) (...)`` measures them all.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import promql_parser

from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.model import SLO, LatencySLI, RatioSLI, ThroughputSLI, window_span
from slowatch.core.promql import KIND_LABEL, WINDOW_LABEL, ResultError, go_float, le_spellings, quote
from slowatch.core.windows import BURN_RATE_WINDOWS, format_duration, parse_duration

HOUR = 3600
# Windows at least this long come from the ledger; shorter ones are read live each cycle.
LEDGER_MIN_WINDOW = 86400
# SLOs per query: bounds the key regex and the answer's size.
CHUNK = 2000
# An hour enters the ledger only this long after it ended, once its last samples have surely been
# scraped (or remote-written); until then it is read live with the head. Filling it earlier would
# freeze an hour that is missing its last sample.
SETTLE_SECONDS = 300
MS = timedelta(milliseconds=1)
# Relative rounding of a window read as the difference of two running sums of up to a few
# thousand hours (each add rounds by one ulp, ~1e-16): far below any real data error.
SUM_ROUNDING = 1e-9

Role = str  # "good", "bad" or "total"
Key = tuple[str, ...]

_RANGE, _OFFSET, _KEYS = "@@RANGE@@", "@@OFFSET@@", "@@KEYS@@"


@dataclass(frozen=True)
class Span:
    """Events in ``(at - offset - length, at - offset]``."""

    length: int
    offset: int = 0


def _dur(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds))


# --- shapes and groups -----------------------------------------------------------------------


@dataclass(frozen=True)
class RoleTemplate:
    """PromQL for one role of a group, with placeholders for the range, offset and key filter.

    ``key_labels`` are the labels the group sums by (an SLO's key is their values); ``le`` is set
    for a latency SLO's good events, which are also summed by ``le``.
    """

    text: str
    key_labels: tuple[str, ...]
    subquery: bool = False
    le: bool = False

    def render(self, span: Span, keys: Sequence[Key]) -> str:
        # Subqueries count slices in a closed range; one millisecond less makes it (t - W, t] so
        # adjacent ranges (hours, head, tail) never count a boundary slice twice. Counters' closed
        # ranges are right as they are: adjacent increases share their edge sample and tile.
        rng = timedelta(seconds=span.length) - (MS if self.subquery else timedelta(0))
        offset = f" offset {_dur(span.offset)}" if span.offset else ""
        return (self.text.replace(_RANGE, format_duration(rng)).replace(_OFFSET, offset)
                .replace(_KEYS, _key_filter(self.key_labels, keys)))


def _key_filter(labels: Sequence[str], keys: Sequence[Key]) -> str:
    parts = []
    for i, name in enumerate(labels):
        values = sorted({k[i] for k in keys})
        parts.append(f"{name}=~{quote('|'.join(re.escape(v) for v in values))}")
    return ",".join(parts)


RoleKeys = Mapping[Role, Key]


@dataclass(frozen=True)
class Group:
    """SLOs measured by the same queries; ``members`` map each SLO id to its key per role."""

    signature: str
    roles: Mapping[Role, RoleTemplate]
    members: Mapping[str, RoleKeys]
    slos: tuple[SLO, ...]
    check: Mapping[str, RoleTemplate] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    """Latency SLOs: slo id -> threshold (the good role is summed by ``le``)."""

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


def _split(selector: str) -> tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]]:
    """A selector's metric name, its other matchers (label, op, value) and its equality matchers."""
    node = promql_parser.parse(selector)
    if not isinstance(node, promql_parser.VectorSelector):
        raise ValueError(f"not a series selector: {selector}")
    name = node.name or ""
    other: list[tuple[str, str, str]] = []
    equal: list[tuple[str, str]] = []
    ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
    for m in node.matchers.matchers:
        if m.name == "__name__" and str(m.op) == "MatchOp.Equal":
            name = m.value
        elif str(m.op) == "MatchOp.Equal" and m.value != "":
            equal.append((m.name, m.value))
        else:
            other.append((m.name, ops[str(m.op)], m.value))
    return name, sorted(other), sorted(equal)


def _selector_template(metric: str, other: Sequence[tuple[str, str, str]], extra: str = "") -> str:
    parts = [f"{n}{op}{quote(v)}" for n, op, v in other]
    parts.append(_KEYS)
    if extra:
        parts.append(extra)
    return f"{metric}{{{','.join(p for p in parts if p)}}}"


def _counter_role(selector: str, *, suffix: str = "", le: str = "") -> tuple[RoleTemplate, Key, str]:
    metric, other, equal = _split(selector)
    labels = tuple(n for n, _ in equal)
    key = tuple(v for _, v in equal)
    by = ", ".join([*labels, "le"] if le else labels)
    inner = _selector_template(metric + suffix, other, le)
    text = f"sum by ({by}) (increase({inner}[{_RANGE}]{_OFFSET}))"
    shape = f"{metric + suffix}|{other}|{labels}|{bool(le)}"
    return RoleTemplate(text=text, key_labels=labels, le=bool(le)), key, shape


def shape_of(slo: SLO) -> tuple[str, dict[Role, RoleTemplate], dict[Role, Key], dict[str, RoleTemplate]] | None:
    """The batching shape of an SLO: (signature, role templates, key per role, check templates);
    None when it cannot share queries (raw PromQL ratios are measured one SLO at a time)."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        if sli.raw:
            return None
        total, total_key, total_shape = _counter_role(sli.total)
        part_selector = sli.good if sli.good is not None else sli.errors
        assert part_selector is not None
        role = "good" if sli.good is not None else "bad"
        part, part_key, part_shape = _counter_role(part_selector)
        return (f"ratio|{role}|{part_shape}|{total_shape}", {role: part, "total": total},
                {role: part_key, "total": total_key}, {})
    if isinstance(sli, LatencySLI):
        sel = sli.histogram + (sli.selector if sli.selector.strip() else "{}")
        le_matcher = f"le=~{quote('@@LE@@')}"
        good, key, shape = _counter_role(sel, suffix="_bucket", le=le_matcher)
        total, _, _ = _counter_role(sel, suffix="_count")
        metric, matchers, _ = _split(sel)
        by = ", ".join(good.key_labels)
        buckets = _selector_template(metric + "_bucket", matchers, le_matcher)
        check = {
            "bound_series": RoleTemplate(f"count by ({by}, le) ({buckets})", good.key_labels, le=True),
            "all_series": RoleTemplate(f"count by ({by}) ({_selector_template(metric + '_count', matchers)})",
                                       good.key_labels),
        }
        return f"latency|{shape}", {"good": good, "total": total}, {"good": key, "total": key}, check
    assert isinstance(sli, ThroughputSLI)
    step = format_duration(sli.slice)
    q, m = sli.query, go_float(sli.minimum)
    good = RoleTemplate(f"sum_over_time((({q}) >= bool {m})[{_RANGE}:{step}]{_OFFSET})", (), subquery=True)
    total = RoleTemplate(f"count_over_time(({q})[{_RANGE}:{step}]{_OFFSET})", (), subquery=True)
    # The signature names what the counts mean, so a reload that changes the query, minimum or
    # slice starts a new ledger instead of mixing hours counted two ways.
    return (f"throughput|{slo.id}|{q}|{m}|{step}", {"good": good, "total": total},
            {"good": (), "total": ()}, {})


def group_slos(slos: Iterable[SLO]) -> tuple[list[Group], list[SLO]]:
    """Groups of SLOs that share queries, and the SLOs that must be measured alone."""
    by_sig: dict[str, tuple[dict[Role, RoleTemplate], dict[str, RoleTemplate], list[tuple[SLO, RoleKeys]]]] = {}
    alone: list[SLO] = []
    for slo in slos:
        shape = shape_of(slo)
        if shape is None:
            alone.append(slo)
            continue
        sig, roles, key, check = shape
        by_sig.setdefault(sig, (roles, check, []))[2].append((slo, key))
    groups = []
    for sig, (roles, check, members) in sorted(by_sig.items()):
        thresholds = {s.id: s.sli.threshold_seconds for s, _ in members if isinstance(s.sli, LatencySLI)}
        groups.append(Group(
            signature=sig, roles=_with_le(roles, thresholds), members={s.id: k for s, k in members},
            slos=tuple(s for s, _ in members), check=_with_le(check, thresholds), thresholds=thresholds,
        ))
    return groups, alone


def _with_le(templates: Mapping[str, RoleTemplate], thresholds: Mapping[str, float]) -> dict[str, RoleTemplate]:
    if not thresholds:
        return dict(templates)
    spellings = sorted({s for t in thresholds.values() for s in le_spellings(t)})
    regex = "|".join(re.escape(s) for s in spellings).replace("\\", "\\\\")
    return {r: RoleTemplate(t.text.replace("@@LE@@", regex), t.key_labels, t.subquery, t.le)
            for r, t in templates.items()}


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


def window_plans(slo: SLO, at: datetime) -> list[WindowPlan]:
    plans = []
    for w in BURN_RATE_WINDOWS:
        seconds = int(parse_duration(w).total_seconds())
        plans.append(WindowPlan(w, seconds, seconds < LEDGER_MIN_WINDOW))
    elapsed = math.floor(window_span(slo.window, at).elapsed.total_seconds())
    if elapsed > 0:
        plans.append(WindowPlan(SLO_WINDOW, elapsed, elapsed < LEDGER_MIN_WINDOW))
    return plans


def live_spans(slos: Iterable[SLO], at: datetime) -> dict[str, Span]:
    """Tag -> span of everything read live this cycle for these SLOs."""
    t = int(at.timestamp())
    spans: dict[str, Span] = {}
    for slo in slos:
        for p in window_plans(slo, at):
            if p.live:
                spans[f"w{p.seconds}"] = Span(p.seconds)
                continue
            spans["head"] = Span(t - ledger_end(t))
            tail = p.tail(t)
            if tail:
                spans[f"tail{p.seconds}"] = tail
    return spans


def tagged_query(templates: Mapping[str, RoleTemplate], spans: Mapping[str, Span],
                 keys: Mapping[Role, Sequence[Key]]) -> str:
    """One query for every (span, role), each sample labelled with its tag and role."""
    parts = []
    for tag, span in spans.items():
        for role, template in templates.items():
            expr = template.render(span, keys[role])
            expr = f'label_replace({expr}, "{WINDOW_LABEL}", {quote(tag)}, "", "")'
            parts.append(f'label_replace({expr}, "{KIND_LABEL}", {quote(role)}, "", "")')
    return "\n  or ".join(parts)


def check_query(templates: Mapping[str, RoleTemplate], keys: Sequence[Key]) -> str:
    """The latency bound check (instant selectors: one sample per series)."""
    parts = []
    for kind, t in templates.items():
        expr = t.text.replace(_KEYS, _key_filter(t.key_labels, keys))
        parts.append(f'label_replace({expr}, "{KIND_LABEL}", {quote(kind)}, "", "")')
    return "\n  or ".join(parts)


@dataclass(frozen=True)
class Answer:
    """Values read from one tagged query: (tag, role, key) -> value; ``le`` values are summed
    per threshold by ``value``."""

    values: Mapping[tuple[str, str, Key], float]
    by_le: Mapping[tuple[str, str, Key], Mapping[str, float]]

    def value(self, tag: str, role: str, key: Key, threshold: float | None = None) -> float:
        if threshold is None:
            return self.values.get((tag, role, key), 0.0)
        per_le = self.by_le.get((tag, role, key), {})
        return sum(per_le.get(s, 0.0) for s in le_spellings(threshold))


def read_answer(templates: Mapping[str, RoleTemplate], samples: Iterable[tuple[Mapping[str, str], float]]) -> Answer:
    values: dict[tuple[str, str, Key], float] = {}
    by_le: dict[tuple[str, str, Key], dict[str, float]] = {}
    for labels, value in samples:
        tag = labels.get(WINDOW_LABEL, "")
        role = labels.get(KIND_LABEL, "")
        t = templates.get(role)
        if t is None:
            continue
        key = tuple(labels.get(n, "") for n in t.key_labels)
        if t.le:
            by_le.setdefault((tag, role, key), {})[labels.get("le", "")] = value
            continue
        if (tag, role, key) in values:
            raise ResultError(f"{tag} {role}: several series for key {key}; aggregate the query")
        values[(tag, role, key)] = value
    return Answer(values, by_le)


# --- the ledger --------------------------------------------------------------------------------


@dataclass
class GroupLedger:
    """Events per whole hour for every (role, key) of one group, over one contiguous range of hour
    ends ``first .. last``, kept as running sums only (8 bytes an hour): ``cumulative[rk][i]`` is
    the sum of the first ``i`` hours, so any window's whole hours cost one subtraction."""

    first: int = 0
    last: int = -1
    cumulative: dict[tuple[str, Key], array[float]] = field(default_factory=dict)
    unusable: dict[tuple[str, Key], set[int]] = field(default_factory=dict)
    """Hour ends whose count came back NaN or infinite: kept out of the running sums (which would
    stay NaN for 30 days) and reported as unknown by every window that holds them."""

    def missing(self, need: range, role_keys: Iterable[tuple[str, Key]]) -> range:
        """Hour ends to fetch so that ``need`` is covered for every (role, key)."""
        if not need:
            return range(0)
        if self.last < self.first or any(rk not in self.cumulative for rk in role_keys):
            return need
        lo = need[0] if need[0] < self.first else None
        hi = need[-1] if need[-1] > self.last else None
        if lo is None and hi is None:
            return range(0)
        start = lo if lo is not None else self.last + HOUR
        stop = (hi if hi is not None else self.first - HOUR) + HOUR
        return range(start, stop, HOUR)

    def fill(self, fetched: range, values: Mapping[tuple[str, Key], Sequence[float]],
             role_keys: Iterable[tuple[str, Key]], keep_from: int) -> None:
        """Merge the hours of ``fetched`` (``values[rk][i]``: the hour ending at ``fetched[i]``; a
        missing row had no events) and drop hours ending before ``keep_from``; the covered range
        stays contiguous."""
        role_keys = list(role_keys)
        joins = self.last >= self.first and all(rk in self.cumulative for rk in role_keys) and (
            fetched[0] <= self.last + HOUR and fetched[-1] >= self.first - HOUR)
        first = min(fetched[0], self.first) if joins else fetched[0]
        last = max(fetched[-1], self.last) if joins else fetched[-1]
        first = max(first, min(keep_from, last + HOUR))
        n = max(0, (last - first) // HOUR + 1)
        cumulative: dict[tuple[str, Key], array[float]] = {}
        unusable: dict[tuple[str, Key], set[int]] = {}
        for rk in role_keys:
            old = self.cumulative.get(rk) if joins else None
            bad = {h for h in self.unusable.get(rk, ()) if first <= h <= last and h not in fetched} if joins else set()
            got = values.get(rk)
            cum = array("d", bytes(8 * (n + 1)))
            acc = 0.0
            for i in range(n):
                end = first + i * HOUR
                if end in fetched:
                    v = got[(end - fetched[0]) // HOUR] if got is not None else 0.0
                    if math.isfinite(v):
                        acc += v
                    else:
                        bad.add(end)
                elif old is not None:
                    j = (end - self.first) // HOUR
                    acc += old[j + 1] - old[j]
                cum[i + 1] = acc
            cumulative[rk] = cum
            if bad:
                unusable[rk] = bad
        self.cumulative, self.unusable = cumulative, unusable  # rows no SLO reads any more go here
        self.first, self.last = first, last

    def total(self, rk: tuple[str, Key], hours: range) -> float:
        if not hours:
            return 0.0
        cum = self.cumulative.get(rk)
        lo, hi = (hours[0] - self.first) // HOUR, (hours[-1] - self.first) // HOUR + 1
        if cum is None or lo < 0 or hi > len(cum) - 1:
            return math.nan  # never read an hour the ledger does not hold
        if any(h in hours for h in self.unusable.get(rk, ())):
            return math.nan
        return cum[hi] - cum[lo]


class Ledger:
    """The hour ledgers of every group, by group signature."""

    def __init__(self) -> None:
        self.groups: dict[str, GroupLedger] = {}

    def group(self, signature: str) -> GroupLedger:
        return self.groups.setdefault(signature, GroupLedger())

    def retain(self, signatures: Iterable[str]) -> None:
        keep = set(signatures)
        for sig in [s for s in self.groups if s not in keep]:
            del self.groups[sig]


def assemble(
    slo: SLO, group: Group, at: datetime, answer: Answer, ledger: GroupLedger, problems: Sequence[str] = ()
) -> Measurement:
    """One SLO's counts per window from this cycle's answer and the group's ledger."""
    t = int(at.timestamp())
    keys = group.members[slo.id]
    threshold = group.thresholds.get(slo.id)
    counts_bad = "bad" in group.roles
    counts: dict[str, EventCounts] = {}
    for p in window_plans(slo, at):
        per_role: dict[str, float] = {}
        for role, template in group.roles.items():
            key = keys[role]
            th = threshold if template.le else None
            if p.live:
                v = answer.value(f"w{p.seconds}", role, key, th)
            else:
                v = answer.value(f"tail{p.seconds}", role, key, th) if p.tail(t) else 0.0
                v += ledger.total((group.ledger_role(slo, role), key), p.hours(t))
                v += answer.value("head", role, key, th)
            per_role[role] = v
        total = per_role.get("total", 0.0)
        good = total - per_role.get("bad", 0.0) if counts_bad else per_role.get("good", 0.0)
        if total < good <= total * (1 + SUM_ROUNDING):
            # Differences of running sums round apart by a few ulps; real excess is far larger.
            good = total
        counts[p.name] = EventCounts(good=good, total=total)
    return Measurement(at=at, counts=counts, problems=tuple(problems))


def ledger_hours(slos: Iterable[SLO], at: datetime) -> range:
    """Every hour end any ledger window of these SLOs needs at ``at``."""
    t = int(at.timestamp())
    lo = None
    for slo in slos:
        for p in window_plans(slo, at):
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
