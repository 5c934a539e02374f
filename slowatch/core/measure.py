"""The one module that turns an SLI into PromQL: the daemon's batched ledger queries, ``slowatch
eval``, the recording rules and the dashboards all take their measuring text from here.

What a count means, once:

* **Counter events in a span** ``(t - offset - length, t - offset]`` (``counter_events``): per
  series, the last sample in the span minus the last sample at or before its start, the difference
  of two instant values. No range-boundary semantics enter it: Prometheus 2 ranges are closed,
  Prometheus 3 ranges are left-open (``(t-d, t]``, so ``increase(x[d])`` loses the edge sample and
  extrapolates), VictoriaMetrics takes the sample before the range as its base. The difference is
  the exact number of events the scrapes saw, at any instant (not only sample-aligned ones), and
  two adjacent spans share their boundary sample, so they tile. Series whose counter reset since
  that base sample are counted by ``increase`` over one millisecond more than the span, which
  holds the sample at the start on every engine; Prometheus extrapolates exactly that
  millisecond, undone by the factor ``d / (d + 1ms)`` (exact at sample-aligned instants; between
  samples it extrapolates as ``increase`` does). A counter at 0 at the start is not extrapolated
  (Prometheus clamps at the zero point), so it gets no factor; one just above 0 (below
  ``1ms / d`` of the increase) is clamped too and counted high by at most ``1ms / d`` relative.
  A series with no sample in the lookback before the span (one that starts inside it) gets
  Prometheus' own ``increase``: exact when its counter starts at 0, an estimate otherwise.
  VictoriaMetrics' ``increase`` (flavour ``METRICSQL``) already is that difference, resets
  included, so there it is used as it is.
* **Throughput slices in a span**: the subquery points in ``(t - d, t]`` (``slice_events``): a
  range one millisecond short of ``d``, so Prometheus 2's closed subquery range holds no slice on
  its start and adjacent spans never count a slice twice; Prometheus 3 and VictoriaMetrics ranges
  are left-open, where the millisecond changes nothing (timestamps are whole milliseconds).
* **A latency bound**: every spelling instrumentation writes for it (``le_spellings``): ``1s`` is
  ``le="1"`` (Go), ``"1.0"`` (Python) and ``"1e+00"`` (exponent form).

A *role* (good, bad or total events of an SLI) renders for one SLO alone (the rules, the
dashboards) or for a group of SLOs sharing a shape (``sum by (service) (...)``: the daemon and
``eval``); a raw-PromQL ratio is a group of one, measured live over whole windows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal

import promql_parser

from slowatch.core.model import EVENTS, SLO, LatencySLI, RatioSLI, ThroughputSLI, Weighting
from slowatch.core.promql import (
    KIND_LABEL,
    WINDOW_LABEL,
    WINDOW_PLACEHOLDER,
    ResultError,
    go_float,
    quote,
    selector_with,
)
from slowatch.core.windows import format_duration

Flavour = Literal["prometheus", "metricsql"]
PROMETHEUS: Flavour = "prometheus"
"""Prometheus 2 and 3 (and engines built on its PromQL: Thanos, Mimir)."""
METRICSQL: Flavour = "metricsql"
"""VictoriaMetrics: ``increase`` counts from the last sample before the range, never extrapolates."""

ANSWERED = "answered"  # the kind of the constant sample every tagged query returns
MS = 1  # milliseconds: Prometheus timestamps are whole milliseconds
# Prometheus' default --query.lookback-delta: an instant selector takes the last sample this far back.
LOOKBACK_MS = 5 * 60 * 1000
Role = str  # "good", "bad" or "total"
Key = tuple[str, ...]


@dataclass(frozen=True)
class Span:
    """Events in ``(at - offset - length, at - offset]``, whole seconds."""

    length: int
    offset: int = 0


def _ms(milliseconds: int) -> str:
    return format_duration(timedelta(milliseconds=milliseconds))


def _offset(span: Span) -> str:
    return f" offset {_ms(span.offset * 1000)}" if span.offset else ""


# --- the three counts ------------------------------------------------------------------------


def counter_events(selector: str, span: Span, flavour: Flavour = PROMETHEUS) -> str:
    """Per series of ``selector``, the events its counter counted in ``span`` (see the module doc)."""
    off = _offset(span)
    if flavour == METRICSQL:
        return f"increase({selector}[{_ms(span.length * 1000)}]{off})"
    d = span.length * 1000
    wide = f"{selector}[{_ms(d + MS)}]{off}"
    start = f"{selector} offset {_ms((span.offset + span.length) * 1000)}"
    # The base sample may lie up to a lookback before the span: a reset right after it is a reset.
    since_base = f"{selector}[{_ms(d + LOOKBACK_MS)}]{off}"
    return (f"(last_over_time({wide}) - {start} unless resets({since_base}) > 0)"
            f" or (increase({wide}) * {d} / {d + MS} and {start} > 0)"
            f" or increase({wide})")


def left_open(length: timedelta) -> str:
    """A range holding the points in ``(t - length, t]`` on every engine: Prometheus 2 ranges are
    closed, so one millisecond short; Prometheus 3 and VictoriaMetrics ranges are left-open, where
    that millisecond changes nothing (timestamps are whole milliseconds)."""
    return format_duration(length - timedelta(milliseconds=MS))


def slice_events(query: str, minimum: float, step: timedelta, span: Span, *, good: bool) -> str:
    """Slices of a throughput SLI in ``span``: those at or above ``minimum`` (``good``), or all."""
    rng = f"[{left_open(timedelta(seconds=span.length))}:{format_duration(step)}]{_offset(span)}"
    if good:
        return f"sum_over_time((({query}) >= bool {go_float(minimum)}){rng})"
    return f"count_over_time(({query}){rng})"


def steps_sum(selector: str, window: timedelta) -> str:
    """The sum of a recorded series' samples in ``(t - window, t]``: a window of recorded steps."""
    return f"sum_over_time({selector}[{left_open(window)}])"


def range_ratio(good: str, total: str, rng: str) -> str:
    """Good over total events of two counter selectors over a dashboard's range variable
    (``$__range``): ``increase`` extrapolates numerator and denominator by the same factor when
    their series share sample times, so the ratio is the events' own."""
    return f"sum(increase({good}[{rng}])) / sum(increase({total}[{rng}]))"


def raw_events(text: str, span: Span) -> str:
    """A raw query's count over ``span``: its ``{{.window}}`` is the range (no offset: a raw query
    is measured live over whole windows only)."""
    if span.offset:
        raise ValueError("a raw query has no offset form")
    return text.replace(WINDOW_PLACEHOLDER, format_duration(timedelta(seconds=span.length)))


# --- latency bounds ------------------------------------------------------------------------------


def go_exponent(value: float) -> str:
    """``value`` as Go's strconv.FormatFloat(v, 'e', -1, 64) writes it: ``1e+00``, ``2.5e-01``."""
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    power = exponent + len(digits) - 1
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"


@lru_cache(maxsize=1024)  # a few thresholds, asked per SLO and window each cycle
def _spellings(threshold: float) -> tuple[str, ...]:
    if math.isinf(threshold):
        return ("+Inf",)
    return tuple(sorted({go_float(threshold), repr(float(threshold)), go_exponent(threshold)}))


def le_spellings(threshold: float) -> list[str]:
    """Every way instrumentation libraries spell this bucket bound: Go writes ``1``, Python
    ``1.0``, exponent formatters ``1e+00``. Summing over all of them is right when services use
    different clients (a bucket holds one spelling per series)."""
    return list(_spellings(threshold))


def le_regex(thresholds: Iterable[float]) -> str:
    """A regex (the text inside ``le=~"..."``, before quoting) matching every spelling."""
    spellings = sorted({s for t in thresholds for s in le_spellings(t)})
    return "|".join(re.escape(s) for s in spellings)


def le_matcher(thresholds: Iterable[float]) -> str:
    return f"le=~{quote(le_regex(thresholds))}"


# --- selectors -------------------------------------------------------------------------------------

Matcher = tuple[str, str, str]  # (label, op, value)


def split_selector(selector: str) -> tuple[str, tuple[Matcher, ...], tuple[tuple[str, str], ...]]:
    """A selector's metric name, its other matchers and its non-empty equality matchers."""
    node = promql_parser.parse(selector)
    if not isinstance(node, promql_parser.VectorSelector):
        raise ValueError(f"not a series selector: {selector}")
    name = node.name or ""
    other: list[Matcher] = []
    equal: list[tuple[str, str]] = []
    ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
    for m in node.matchers.matchers:
        if m.name == "__name__" and str(m.op) == "MatchOp.Equal":
            name = m.value
        elif str(m.op) == "MatchOp.Equal" and m.value != "":
            equal.append((m.name, m.value))
        else:
            other.append((m.name, ops[str(m.op)], m.value))
    return name, tuple(sorted(other)), tuple(sorted(equal))


# --- roles -------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)  # a chunk's key regex is the same in each of its spans and roles
def _alternation(values: tuple[str, ...]) -> str:
    """The quoted regex matching exactly ``values``."""
    return quote("|".join(re.escape(v) for v in values))


@dataclass(frozen=True)
class CounterRole:
    """Events counted by counters: ``metric`` with ``matchers``, one key per ``key_labels`` values.
    ``le``: histogram buckets, matched per threshold (and summed by ``le`` in a group)."""

    metric: str
    matchers: tuple[Matcher, ...]
    key_labels: tuple[str, ...]
    le: bool = False

    def render(self, span: Span, keys: Sequence[Key], *, thresholds: Iterable[float] = (), alone: bool = False,
               flavour: Flavour = PROMETHEUS) -> str:
        """Alone: one SLO's count (its key as equality matchers, one sum). Else: the count per key
        of every SLO in ``keys`` (and per ``le`` for buckets)."""
        selector = self.selector(keys, thresholds=thresholds, alone=alone)
        by = "" if alone else f" by ({', '.join((*self.key_labels, *(('le',) if self.le else ())))})"
        return f"sum{by} ({counter_events(selector, span, flavour)})"

    def selector(self, keys: Sequence[Key], *, thresholds: Iterable[float] = (), alone: bool = False,
                 extra: Sequence[Matcher] = ()) -> str:
        parts = [f"{n}{op}{quote(v)}" for n, op, v in (*self.matchers, *extra)]
        for i, name in enumerate(self.key_labels):
            values = sorted({k[i] for k in keys})
            if alone:
                if len(values) != 1:
                    raise ValueError(f"one SLO has one key, got {values}")
                parts.append(f"{name}={quote(values[0])}")
            else:
                parts.append(f"{name}=~{_alternation(tuple(values))}")
        if self.le:
            parts.append(le_matcher(thresholds))
        return f"{self.metric}{{{','.join(parts)}}}"


@dataclass(frozen=True)
class SliceRole:
    """Time slices of a throughput SLI (good: at or above the minimum)."""

    query: str
    minimum: float
    step: timedelta
    good: bool
    key_labels: tuple[str, ...] = ()
    le: bool = False

    def render(self, span: Span, keys: Sequence[Key], *, thresholds: Iterable[float] = (), alone: bool = False,
               flavour: Flavour = PROMETHEUS) -> str:
        return slice_events(self.query, self.minimum, self.step, span, good=self.good)


@dataclass(frozen=True)
class RawRole:
    """A raw ratio query (its ``{{.window}}`` is the range); summed so its one sample has no labels."""

    text: str
    key_labels: tuple[str, ...] = ()
    le: bool = False

    def render(self, span: Span, keys: Sequence[Key], *, thresholds: Iterable[float] = (), alone: bool = False,
               flavour: Flavour = PROMETHEUS) -> str:
        return f"sum({raw_events(self.text, span)})"


MeasureRole = CounterRole | SliceRole | RawRole


@dataclass(frozen=True)
class Shape:
    """What one SLO measures: its signature (SLOs with equal signatures share queries), its roles,
    its key per role, the bound check (latency) and whether the hour ledger may serve it."""

    signature: str
    roles: Mapping[Role, MeasureRole]
    keys: Mapping[Role, Key]
    check: Mapping[str, CounterRole] = field(default_factory=dict)
    ledger: bool = True


def _counter(selector: str, suffix: str = "", *, le: bool = False) -> tuple[CounterRole, Key]:
    metric, other, equal = split_selector(selector)
    return CounterRole(metric + suffix, other, tuple(n for n, _ in equal), le), tuple(v for _, v in equal)


def shape_of(slo: SLO) -> Shape:
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        part = sli.good if sli.good is not None else sli.errors
        assert part is not None
        role = "good" if sli.good is not None else "bad"
        if sli.raw:
            # A raw query cannot be offset or batched: a group of one, every window read live.
            return Shape(f"raw|{slo.id}|{role}|{part}|{sli.total}", {role: RawRole(part), "total": RawRole(sli.total)},
                         {role: (), "total": ()}, ledger=False)
        total, total_key = _counter(sli.total)
        counted, key = _counter(part)
        return Shape(f"ratio|{role}|{counted}|{total}", {role: counted, "total": total},
                     {role: key, "total": total_key})
    if isinstance(sli, LatencySLI):
        sel = sli.histogram + (sli.selector if sli.selector.strip() else "{}")
        good, key = _counter(sel, "_bucket", le=True)
        total, _ = _counter(sel, "_count")
        check = {"bound_series": good, "all_series": total}
        return Shape(f"latency|{good}", {"good": good, "total": total}, {"good": key, "total": key}, check)
    assert isinstance(sli, ThroughputSLI)
    # The signature names what the counts mean, so a reload that changes the query, minimum or
    # slice starts a new ledger instead of mixing hours counted two ways.
    good_slices = SliceRole(sli.query, sli.minimum, sli.slice, good=True)
    return Shape(f"throughput|{slo.id}|{sli.query}|{go_float(sli.minimum)}|{format_duration(sli.slice)}",
                 {"good": good_slices, "total": SliceRole(sli.query, sli.minimum, sli.slice, good=False)},
                 {"good": (), "total": ()})


# --- one SLO alone: the rules and the dashboards -------------------------------------------------


def event_queries(slo: SLO, rng: timedelta, flavour: Flavour = PROMETHEUS) -> dict[Role, str]:
    """PromQL per role ("good" or "bad", and "total") counting one SLO's events in the last ``rng``."""
    shape = shape_of(slo)
    thresholds = [slo.sli.threshold_seconds] if isinstance(slo.sli, LatencySLI) else []
    span = Span(int(rng.total_seconds()))
    return {role: r.render(span, [shape.keys[role]], thresholds=thresholds, alone=True, flavour=flavour)
            for role, r in shape.roles.items()}


# --- many SLOs: tagged queries and their answers ---------------------------------------------------


def _tag(expr: str, kind: str, window: str | None = None) -> str:
    if window is not None:
        expr = f'label_replace({expr}, "{WINDOW_LABEL}", {quote(window)}, "", "")'
    return f'label_replace({expr}, "{KIND_LABEL}", {quote(kind)}, "", "")'


def tagged_query(roles: Mapping[Role, MeasureRole], spans: Mapping[str, Span], keys: Mapping[Role, Sequence[Key]],
                 thresholds: Iterable[float] = (), flavour: Flavour = PROMETHEUS) -> str:
    """One query for every (span, role), each sample labelled with its tag and role, and the
    constant ``ANSWERED`` sample: an answer without it lost its series on the way (a proxy, a
    store), which must not be read as "no events"."""
    thresholds = list(thresholds)
    parts = [_tag(role.render(span, keys[name], thresholds=thresholds, flavour=flavour), name, tag)
             for tag, span in spans.items() for name, role in roles.items()]
    parts.append(_tag("vector(1)", ANSWERED))
    return "\n  or ".join(parts)


def check_query(check: Mapping[str, CounterRole], keys: Sequence[Key], thresholds: Iterable[float]) -> str:
    """The latency bound check: series holding the threshold's bucket, and all series, per key."""
    thresholds = list(thresholds)
    parts = []
    for kind, role in check.items():
        by = ", ".join((*role.key_labels, *(("le",) if role.le else ())))
        parts.append(_tag(f"count by ({by}) ({role.selector(keys, thresholds=thresholds)})", kind))
    return "\n  or ".join(parts)


@dataclass(frozen=True)
class Answer:
    """Values read from one tagged query: (tag, role, key) -> value; ``le`` values are summed
    per threshold by ``value``."""

    values: Mapping[tuple[str, str, Key], float]
    by_le: Mapping[tuple[str, str, Key], Mapping[str, float]]
    answered: bool = True
    """The constant sample of ``tagged_query`` came back (else the answer is not to be trusted)."""

    def value(self, tag: str, role: str, key: Key, threshold: float | None = None) -> float:
        if threshold is None:
            return self.values.get((tag, role, key), 0.0)
        per_le = self.by_le.get((tag, role, key), {})
        return sum(per_le.get(s, 0.0) for s in _spellings(threshold))


def joined(answers: Sequence[Answer]) -> Answer:
    """The answers of one chunk's queries (``core.plan.query_parts``: their tags are disjoint) as
    one; answered only if each of them was."""
    values: dict[tuple[str, str, Key], float] = {}
    by_le: dict[tuple[str, str, Key], Mapping[str, float]] = {}
    for a in answers:
        values.update(a.values)
        by_le.update(a.by_le)
    return Answer(values, by_le, all(a.answered for a in answers))


def read_answer(roles: Mapping[str, MeasureRole], samples: Iterable[tuple[Mapping[str, str], float]]) -> Answer:
    values: dict[tuple[str, str, Key], float] = {}
    by_le: dict[tuple[str, str, Key], dict[str, float]] = {}
    answered = False
    for labels, value in samples:
        tag = labels.get(WINDOW_LABEL, "")
        name = labels.get(KIND_LABEL, "")
        answered = answered or name == ANSWERED
        role = roles.get(name)
        if role is None:
            continue
        key = tuple(labels.get(n, "") for n in role.key_labels)
        if role.le:
            by_le.setdefault((tag, name, key), {})[labels.get("le", "")] = value
            continue
        if (tag, name, key) in values:
            raise ResultError(f"{tag} {name}: several series for key {key}; aggregate the query, e.g. sum(...)")
        values[(tag, name, key)] = value
    return Answer(values, by_le, answered)


# --- a constant total: a precomputed ratio as good/total -----------------------------------------

ONE_EVENT_PER_WINDOW = f"count_over_time(vector(1)[{WINDOW_PLACEHOLDER}:{WINDOW_PLACEHOLDER}])"
"""A total of exactly one event per window, whatever the window: a subquery whose step is the
range evaluates at the single multiple of the step inside ``(t - window, t]``. A precomputed
ratio (Sloth's ``error_ratio_query``, OpenSLO's raw ratios) over it stays the ratio."""


# --- regression: one window of an SLO against the same window earlier ---------------------------

# Latency percentiles the live regression check compares (issue: p50, p95 and p99).
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def regression_queries(slo: SLO, window: timedelta, flavour: Flavour = PROMETHEUS) -> dict[str, str]:
    """What ``slowatch regress --baseline`` compares for one SLO over the last ``window``, each
    evaluated now and one baseline earlier: latency percentiles (``histogram_quantile`` over every
    bucket of the SLI's histogram), the error ratio, and throughput (events per second; for a
    throughput SLI, the mean of its own query over the window's slices)."""
    rng = format_duration(window)
    sli = slo.sli
    out: dict[str, str] = {}
    if isinstance(sli, ThroughputSLI):
        return {"throughput": f"avg_over_time(({sli.query})[{left_open(window)}:{format_duration(sli.slice)}])"}
    if isinstance(sli, LatencySLI):
        buckets = selector_with(f"{sli.histogram}_bucket", sli.selector)
        for name, q in QUANTILES:
            out[f"{name}_latency"] = f"histogram_quantile({q}, sum by (le) (rate({buckets}[{rng}])))"
    events = event_queries(slo, window, flavour)
    total = events["total"]
    bad = events["bad"] if "bad" in events else f"({total}) - ({events['good']})"
    out["error_ratio"] = f"({bad}) / ({total})"
    out["throughput"] = f"({total}) / {int(window.total_seconds())}"
    return out


# --- composites: a journey counted from its components' counts -----------------------------------

COMPONENT_LABEL = "slowatch_component"
"""Tags each component's counts inside a composite's expression, so that ``or`` keeps one sample
per component (label-less samples would collide); summed away before the result."""

CompositePart = tuple[str, float, str, str]
"""(component id, weight, PromQL of its good events, of its total events): at most one sample each."""


def composite_counts(parts: Sequence[CompositePart], weighting: Weighting) -> tuple[str, str]:
    """PromQL for a composite's (good, total) from its components' counts, as
    ``core.composite.combine`` computes them: with weights, good is ``Σ wᵢ·(goodᵢ / totalᵢ)`` and
    total ``Σ wᵢ``; with events, ``Σ goodᵢ`` and ``Σ totalᵢ``; either way over the components whose
    total is > 0 (one without events leaves both sums). No component with events: a total of 0 or
    none, so a ratio over ``(total > 0)`` is absent, the daemon's no data."""

    def tag(expr: str, slo: str) -> str:
        return f'label_replace(sum({expr}), "{COMPONENT_LABEL}", {quote(slo)}, "", "")'

    goods, totals = [], []
    for slo, weight, good, total in parts:
        g, t = tag(good, slo), tag(total, slo)
        if weighting == EVENTS:
            goods.append(f"({g} and {t} > 0)")
            totals.append(f"({t} > 0)")
        else:  # w * (good / total), in the daemon's order of operations
            goods.append(f"{go_float(weight)} * ({g} / ({t} > 0))")
            totals.append(f"{go_float(weight)} * ({t} > bool 0)")
    good_expr, total_expr = ("sum(\n  " + "\n  or ".join(side) + "\n)" for side in (goods, totals))
    return good_expr, total_expr
