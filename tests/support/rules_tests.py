"""Unit tests *for* the generated rules, generated: ``promtool test rules`` documents.

Given an SLO and a synthetic scenario (phases of traffic with an error ratio each), this builds
input series with exact counter values and, at each check, the alerts the rules must fire. The
expectation comes from the daemon's own logic (``budget.evaluate``) fed with the counts the
rules see, so a passing test shows the generated rules alert like the daemon does; the alert
values in the annotations come from the rules' formulas.

The counts follow Prometheus 2 on these inputs exactly: samples every minute and counters from 0
make every ``increase`` a plain difference (no extrapolation), closed ranges include the sample
one window back, subqueries take one point per minute.

promtool ignores a group's ``interval`` and evaluates every group at ``evaluation_interval``, so
the documents use the step (5m): at 1m the step rules would run every minute and count every
event five times (exactly what happens to a Prometheus that overrides the group interval).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import promql_parser

from slowatch.core import conventions as c
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate
from slowatch.core.composite import combine
from slowatch.core.exclusions import excluded_seconds, merged
from slowatch.core.model import (
    SLO,
    CompositeSLI,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
    alert_rows,
    nominal_length,
)
from slowatch.core.promql import go_float, quote, selector_with
from slowatch.core.rules import (
    VALUE_PERCENT,
    VALUE_RATE,
    AlertingRule,
    RuleFile,
    budget_fraction,
    selector,
    series_labels,
)
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration

SAMPLE_INTERVAL = "1m"
EVALUATION_INTERVAL = c.STEP
EVENTS_PER_MINUTE = 100_000
"""Large enough that 0.9x the budget of a 99.95% SLO is a whole number of events per minute."""

_STEP_MINUTES = int(parse_duration(c.STEP) / timedelta(minutes=1))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# rate()'s range in the throughput SLIs we synthesise: two 60 s samples on Prometheus 3 (left-open
# ranges), three on Prometheus 2 (closed). [1m] holds one sample on Prometheus 3: no slice at all.
_RATE_RANGE = "2m"
_THROUGHPUT = re.compile(
    r"^\s*sum\s*\(\s*rate\s*\((?P<selector>.+)\[" + _RATE_RANGE + r"\]\s*\)\s*\)\s*$", re.DOTALL)


class UnsupportedSLI(ValueError):
    """The SLI's series cannot be synthesised (raw queries, most throughput queries)."""


class TooClose(ValueError):
    """A check lands so close to a threshold that float rounding could decide it."""


@dataclass(frozen=True)
class Phase:
    minutes: int
    error_ratio: float
    """Fraction of the events (or time slices) that are bad."""


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[Phase, ...]
    checks: tuple[int, ...]
    """Minutes from the start at which the firing alerts are compared; multiples of the step."""

    @property
    def minutes(self) -> int:
        return sum(p.minutes for p in self.phases)


def healthy(slo: SLO) -> Scenario | None:
    return Scenario("a healthy service stays silent", (Phase(240, 0.0),), (60, 120, 240))


def incident(slo: SLO) -> Scenario | None:
    """An hour of healthy traffic, then an hour of nothing but errors: pages whenever an hour of
    errors can reach the page factor (it cannot for a 90% SLO over 30d: 10x < 14.4x)."""
    return Scenario("an hour-long outage after an hour of healthy traffic pages",
                    (Phase(60, 0.0), Phase(60, 1.0)), (60, 120))


def half_budget(slo: SLO) -> Scenario | None:
    """An hour healthy, then 0.9x the budgeted error ratio: consumed reaches 0.9 * 60/120 = 45%
    at 2h (silent) and 0.9 * 90/150 = 54% at 2h30m (SLOErrorBudgetConsumed threshold=50).

    Time slices come one a minute, so a 99% SLO sees no bad slice at all in those 90 minutes:
    for them the phases stretch (x2, x3, ...) until the whole slices counted land clearly on
    either side of 50% (None if that takes longer than the window)."""
    name = "burning at 0.9x after an hour of healthy traffic consumes half the budget"
    window = _minutes_of_window(slo)
    for stretch in range(1, 100):
        scenario = Scenario(name, (Phase(60 * stretch, 0.0), Phase(90 * stretch, 0.9 * slo.budget)),
                            (120 * stretch, 150 * stretch))
        if scenario.minutes > window:
            return None
        counts = _Counts(_minutes(slo, scenario))
        before, after = (counts.period(t, window) for t in scenario.checks)
        if (before and after and _consumed(before, slo) < 0.48 and _consumed(after, slo) >= 0.52
                and all(_clear_of_factors(slo, counts, t) for t in scenario.checks)):
            return scenario
    return None


def _clear_of_factors(slo: SLO, counts: _Counts, t: int) -> bool:
    """No burn rate at minute ``t`` sits on an alert factor (where float rounding would decide)."""
    budget, length = float(budget_fraction(slo)), nominal_length(slo.window)
    for row in alert_rows(slo):
        for w in (row.long_window, row.short_window):
            c = counts.window(t, _minutes_of(w))
            if c is not None and c.total > 0 and math.isclose(_rule_value(c, budget), row.factor(length),
                                                              rel_tol=1e-9):
                return False
    return True


def _consumed(counts: EventCounts, slo: SLO) -> float:
    return _rule_value(counts, float(budget_fraction(slo)))


def _minutes_of_window(slo: SLO) -> int:
    return int(nominal_length(slo.window) / timedelta(minutes=1))


def window_edge(slo: SLO) -> Scenario | None:
    """An hour of errors, then a whole window of healthy traffic: at one window the errors still
    count, one hour later not a single event of them does (the last bad step sits exactly one
    window back, where a closed range would still count it). Only for windows up to a day, the
    longest promtool replays quickly."""
    if not isinstance(slo.window, RollingWindow) or slo.window.duration > timedelta(days=1):
        return None
    minutes = _minutes_of(slo.window.name)
    return Scenario("errors older than the window stop counting, to the step",
                    (Phase(60, 1.0), Phase(minutes, 0.0)), (minutes, minutes + 60))


SCENARIOS = (healthy, incident, half_budget, window_edge)


def scenarios_for(slo: SLO) -> list[Scenario]:
    return [s for make in SCENARIOS if (s := make(slo)) is not None]


# --- what the series look like per minute --------------------------------------------------------


@dataclass(frozen=True)
class _Minutes:
    """Per minute 1..M (index 0 is the start): event increments, or for time slices whether the
    minute's slice is good."""

    total: tuple[int, ...]
    bad: tuple[int, ...]
    slices: bool


def _minutes(slo: SLO, scenario: Scenario) -> _Minutes:
    total, bad = [0], [0]
    slices = isinstance(slo.sli, ThroughputSLI)
    for phase in scenario.phases:
        for i in range(phase.minutes):
            if slices:
                # Spread the bad slices evenly: minute i of the phase is bad when the number of bad
                # slices due so far, floor(i * ratio), ticks over.
                due = math.floor((i + 1) * phase.error_ratio + 1e-9) - math.floor(i * phase.error_ratio + 1e-9)
                total.append(1)
                bad.append(1 if due else 0)
            else:
                total.append(EVENTS_PER_MINUTE)
                bad.append(round(phase.error_ratio * EVENTS_PER_MINUTE))
    return _Minutes(tuple(total), tuple(bad), slices)


def _cumulative(values: Sequence[int]) -> list[int]:
    out, acc = [], 0
    for v in values:
        acc += v
        out.append(acc)
    return out


class _Counts:
    """The good and total events the generated rules see at minute ``t``. ``masked``: the SLO has
    exclusions, these steps (by their last minute) are excluded, and every window sums steps."""

    def __init__(self, m: _Minutes, masked: frozenset[int] | None = None) -> None:
        self.m = m
        self.total = _cumulative(m.total)
        self.bad = _cumulative(m.bad)
        self.masked = masked

    def _sum(self, lo: int, hi: int) -> EventCounts | None:
        """Events of minutes lo..hi (slices) or the counter increase from lo to hi (events)."""
        if self.m.slices:
            lo = max(lo, 1)  # rate() needs two samples: the first slice is at minute 1
            if hi < lo:
                return None
            total = hi - lo + 1
            bad = self.bad[hi] - self.bad[lo - 1]
        else:
            lo = max(lo, 0)
            if hi < 1 or hi <= lo:
                return None  # increase() of a single sample is no value
            total = self.total[hi] - self.total[lo]
            bad = self.bad[hi] - self.bad[lo]
        return EventCounts(good=total - bad, total=total)

    def window(self, t: int, minutes: int) -> EventCounts | None:
        # For counters the increase since t - w (a closed range); for slices the points in
        # (t - w, t], w/1m of them, as the daemon counts them. With exclusions, the steps.
        if self.masked is not None:
            return self.period(t, minutes)
        return self._sum(t - minutes + 1, t) if self.m.slices else self._sum(t - minutes, t)

    def step(self, s: int) -> EventCounts | None:
        """The step ending at minute ``s``: none before the first sample, 0 events when excluded."""
        if self.masked is not None and s in self.masked:
            return EventCounts(good=0, total=0)  # the rules record 0 whatever the counters did
        return self._sum(s - _STEP_MINUTES + 1, s) if self.m.slices else self._sum(s - _STEP_MINUTES, s)

    def period(self, t: int, minutes: int) -> EventCounts | None:
        """Steps at every multiple of the step in (t - window, t], each left-open for slices."""
        good = total = 0.0
        seen = False
        for s in range(t, max(t - minutes, -1), -_STEP_MINUTES):
            step = self.step(s)
            if step is not None:
                good, total, seen = good + step.good, total + step.total, True
        return EventCounts(good=good, total=total) if seen else None


# --- exclusions ---------------------------------------------------------------------------------


def _at(minute: int) -> datetime:
    return _EPOCH + timedelta(minutes=minute)


def excluded_steps(slo: SLO, minutes: int) -> frozenset[int]:
    """The steps (by their last minute) that ``slo``'s exclusions cover, from the exclusions
    themselves (``core.exclusions``), not from the rules' formula. A step covered in part has no
    exact expectation at step granularity: refused, so a test puts its boundaries on the steps."""
    out = set()
    for s in range(_STEP_MINUTES, minutes + 1, _STEP_MINUTES):
        covered = excluded_seconds(merged(slo.exclusions, _at(s - _STEP_MINUTES), _at(s)))
        if covered and covered != _STEP_MINUTES * 60:
            raise ValueError(f"{slo.id}: the exclusions cover {covered:g} s of the step ending at {s}m; "
                             f"put their boundaries on multiples of {c.STEP}")
        if covered:
            out.add(s)
    return frozenset(out)


def exclusion_gauge(slo: SLO, minutes: int) -> tuple[str, str]:
    """The daemon's ``slowatch_exclusion_active`` for ``slo`` at each minute 0..minutes: 1 while an
    exclusion covers that instant (the daemon's series without lag)."""
    values = [1 if merged(slo.exclusions, _at(m), _at(m) + timedelta(milliseconds=1)) else 0
              for m in range(minutes + 1)]
    runs: list[str] = []
    i = 0
    while i < len(values):
        n = 1
        while i + n < len(values) and values[i + n] == values[i]:
            n += 1
        runs.append(str(values[i]) if n == 1 else f"{values[i]}+0x{n - 1}")
        i += n
    labels = {c.SERVICE_LABEL: slo.service, c.SLO_LABEL: slo.name}
    return _series(c.EXCLUSION_ACTIVE, labels), " ".join(runs)


# --- input series ---------------------------------------------------------------------------------

Matcher = tuple[str, str, str]
"""(label, op, value) with op one of = != =~ !~."""

_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _parse(selector: str) -> tuple[str, list[Matcher]]:
    expr = promql_parser.parse(selector)
    if not isinstance(expr, promql_parser.VectorSelector):
        raise UnsupportedSLI(f"{selector!r} is not a series selector")
    name: str | None = expr.name
    matchers: list[Matcher] = []
    for m in expr.matchers.matchers:
        op = _OPS[str(m.op).rsplit(".", 1)[-1]]
        if m.name == "__name__" and op == "=":
            name = m.value
        else:
            matchers.append((m.name, op, m.value))
    if not name:
        raise UnsupportedSLI(f"{selector!r} has no metric name")
    return name, matchers


def _matches(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    for label, op, value in matchers:
        have = labels.get(label, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


def _split_top(regex: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(regex[start:i])
            start = i + 1
        i += 1
    return [*parts, regex[start:]]


def _example_of(regex: str) -> str:
    """One simple string of the first alternative (``5..`` -> ``500``); checked by the caller."""
    out, i, branch = [], 0, _split_top(regex)[0]
    while i < len(branch):
        ch = branch[i]
        if ch == "\\" and i + 1 < len(branch):
            out.append(branch[i + 1])
            i += 2
        elif ch == "(":
            depth, j = 1, i + 1
            while j < len(branch) and depth:
                depth += {"(": 1, ")": -1}.get(branch[j], 0)
                j += 1
            out.append(_example_of(branch[i + 1:j - 1].removeprefix("?:")))
            i = j
        elif ch == "[":
            j = branch.index("]", i + 2)
            out.append(branch[i + 1] if branch[i + 1] != "^" else "_")
            i = j + 1
        elif ch == "{":
            i = branch.index("}", i) + 1
        else:
            if ch == ".":
                out.append("0")
            elif ch not in "*+?^$":
                out.append(ch)
            i += 1
    return "".join(out)


def _satisfying(matchers: Sequence[Matcher]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for label, op, value in matchers:
        if op == "=" and value:
            labels[label] = value
        elif op == "=~" and re.fullmatch(value, "") is None:
            labels[label] = _example_of(value)
        elif (op == "!~" and re.fullmatch(value, "") is not None) or (op == "!=" and not value):
            labels[label] = "slowatch_synthetic"
    return labels


def _violating(matchers: Sequence[Matcher], base: dict[str, str], keep: Sequence[Matcher]) -> dict[str, str] | None:
    """``base`` changed in one label so that it fails ``matchers`` but still matches ``keep``."""
    for label, op, value in matchers:
        for candidate in {"=": ["", value + "_other"], "!=": [value], "=~": ["", "slowatch_other"],
                          "!~": [_example_of(value)]}[op]:
            labels = {**base, label: candidate} if candidate else {k: v for k, v in base.items() if k != label}
            if not _matches(matchers, labels) and _matches(keep, labels):
                return labels
    return None


def _series(name: str, labels: Mapping[str, str]) -> str:
    return name + "{" + ",".join(f"{k}={quote(v)}" for k, v in labels.items()) + "}"


def _values(increments: Sequence[int]) -> str:
    """A counter from 0 with these per-minute increments, in promtool's ``a+bxn`` notation."""
    out, value, i = ["0"], 0, 1
    while i < len(increments):
        inc, n = increments[i], 1
        while i + n < len(increments) and increments[i + n] == inc:
            n += 1
        value += inc
        out.append(str(value) if n == 1 else f"{value}+{inc}x{n - 1}")
        value += inc * (n - 1)
        i += n
    return " ".join(out)


def _ratio_series(part: str, total: str, part_minutes: Sequence[int], total_minutes: Sequence[int],
                  ) -> list[tuple[str, Sequence[int]]]:
    """Series such that ``part`` (errors or good) sums to part_minutes and ``total`` to total_minutes."""
    part_name, part_m = _parse(part)
    total_name, total_m = _parse(total)
    rest_minutes = [t - p for p, t in zip(part_minutes, total_minutes, strict=True)]
    if part_name != total_name:
        return [(_series(part_name, _satisfying(part_m)), part_minutes),
                (_series(total_name, _satisfying(total_m)), total_minutes)]
    both = {**_satisfying(total_m), **_satisfying(part_m)}
    rest = _satisfying(total_m)
    if _matches(part_m, rest):
        found = _violating(part_m, rest, total_m)
        if found is None:
            raise UnsupportedSLI(f"no series matches {total!r} but not {part!r}")
        rest = found
    if not (_matches(part_m, both) and _matches(total_m, both) and _matches(total_m, rest)):
        raise UnsupportedSLI(f"cannot build series for {part!r} within {total!r}")
    return [(_series(part_name, both), part_minutes), (_series(total_name, rest), rest_minutes)]


def input_series(slo: SLO, m: _Minutes) -> list[tuple[str, Sequence[int]]]:
    sli = slo.sli
    if isinstance(sli, CompositeSLI):
        raise UnsupportedSLI(f"{slo.id}: a composite has no series of its own (see composite_case)")
    good = [t - b for t, b in zip(m.total, m.bad, strict=True)]
    if isinstance(sli, RatioSLI):
        if sli.raw:
            raise UnsupportedSLI(f"{slo.id}: raw ratio queries cannot be synthesised")
        if sli.errors is not None:
            return _ratio_series(sli.errors, sli.total, m.bad, m.total)
        assert sli.good is not None
        return _ratio_series(sli.good, sli.total, good, m.total)
    if isinstance(sli, LatencySLI):
        base = _satisfying(_parse(selector_with(sli.histogram, sli.selector))[1])
        return [
            (_series(f"{sli.histogram}_bucket", {**base, "le": go_float(sli.threshold_seconds)}), good),
            (_series(f"{sli.histogram}_count", base), m.total),
        ]
    assert isinstance(sli, ThroughputSLI)
    match = _THROUGHPUT.match(sli.query)
    if match is None or sli.slice != timedelta(minutes=1):
        raise UnsupportedSLI(
            f"{slo.id}: only sum(rate(<selector>[{_RATE_RANGE}])) with 1m slices can be synthesised")
    name, matchers = _parse(match["selector"])
    return [(_series(name, _satisfying(matchers)), _slice_increments(m.bad, sli.minimum))]


def _slice_increments(bad: Sequence[int], minimum: float) -> list[int]:
    """Counter increments whose ``rate(x[2m])`` at minute t is >= ``minimum`` exactly when minute
    t is good, on every engine. Prometheus 3 sees the samples at t-1 and t (rate = inc(t)/60, or
    inc(t)/120 next to a zero counter, where it does not extrapolate past zero); Prometheus 2 and
    VictoriaMetrics those at t-2, t-1 and t (rate = (inc(t-1) + inc(t))/120). With P the least
    count with P/60 >= minimum: a bad minute adds 0, a good one P, and 2P when it follows a bad
    minute or the start (so that it is good alone); P + 0 < 120 * minimum keeps a bad minute after
    a good one bad. A lone good minute between bad ones cannot be good on both: refused."""
    per_minute = math.ceil(minimum * 60)
    while per_minute / 60 < minimum:
        per_minute += 1
    if per_minute >= 120 * minimum:
        raise ValueError(f"minimum {minimum}/s is below one event per 2 minutes: no count is good alone")
    out = [0]
    for t in range(1, len(bad)):
        if bad[t]:
            out.append(0)
        elif t == 1 or bad[t - 1]:
            if t + 1 < len(bad) and bad[t + 1]:
                raise ValueError(f"minute {t} is a lone good slice before a bad one: rate(x[2m]) differs by engine")
            out.append(2 * per_minute)
        else:
            out.append(per_minute)
    return out


# --- expected alerts ------------------------------------------------------------------------------


def _minutes_of(duration: str) -> int:
    return int(parse_duration(duration) / timedelta(minutes=1))


def _rule_value(counts: EventCounts, budget: float) -> float:
    """What the recorded burn rate (or consumed ratio) holds: (1 - good/total) / budget."""
    return (1 - counts.good / counts.total) / budget


def _fill(rule: AlertingRule, value: float) -> dict[str, str]:
    # Go's %.2f and %.4g round like Python's; humanizePercentage is Sprintf("%.4g%%", v*100).
    text = {VALUE_RATE: f"{value:.2f}", VALUE_PERCENT: f"{value * 100:.4g}%"}
    out = {}
    for key, template in rule.annotations:
        filled = template
        for placeholder, shown in text.items():
            filled = filled.replace(placeholder, shown)
        out[key] = filled
    return out


def _check_margin(value: float, threshold: float, where: str) -> None:
    if math.isclose(value, threshold, rel_tol=1e-9):
        raise TooClose(f"{where}: {value!r} is at the threshold {threshold!r}; move the check")


def expected_alerts(slo: SLO, rules: Sequence[AlertingRule], counts: _Counts, t: int,
                    ) -> tuple[BudgetStatus, dict[str, list[dict[str, Any]]]]:
    """The daemon's status at minute ``t`` and the alerts the rules must fire then, per name."""
    windows = {w: x for w in BURN_RATE_WINDOWS if (x := counts.window(t, _minutes_of(w))) is not None}
    budget = float(budget_fraction(slo))
    rolling = isinstance(slo.window, RollingWindow)
    period = counts.period(t, _minutes_of_window(slo))
    measured = dict(windows)
    if period is not None:
        measured[SLO_WINDOW] = period  # calendar windows: only so evaluate() computes the burn rates
    status = evaluate(slo, Measurement(at=_EPOCH + timedelta(minutes=t), counts=measured))

    out: dict[str, list[dict[str, Any]]] = {c.BUDGET_CONSUMED: [], c.BUDGET_BURN: []}
    burning = {(r.long_window, r.short_window) for r in status.burning}
    for rule in rules:
        labels = dict(rule.labels)
        if rule.alert == c.BUDGET_CONSUMED:
            if not rolling or period is None or period.total <= 0:
                continue
            threshold = float(labels[c.THRESHOLD_LABEL]) / 100
            value = _rule_value(period, budget)
            _check_margin(value, threshold, f"{slo.id} consumed at {t}m")
            if value >= threshold:
                out[rule.alert].append({"exp_labels": labels, "exp_annotations": _fill(rule, value)})
        else:
            long, short = labels[c.LONG_WINDOW_LABEL], labels[c.SHORT_WINDOW_LABEL]
            row = next(r for r in alert_rows(slo) if r.long_window == long)
            factor = row.factor(nominal_length(slo.window))
            values = [_rule_value(windows[w], budget) if w in windows and windows[w].total > 0 else None
                      for w in (long, short)]
            for v, w in zip(values, (long, short), strict=True):
                if v is not None:
                    _check_margin(v, factor, f"{slo.id} burn rate {w} at {t}m")
            fires = all(v is not None and v >= factor for v in values)
            if fires != ((long, short) in burning):
                raise TooClose(f"{slo.id} at {t}m: the rules and the daemon disagree on {long}/{short}")
            if fires and values[0] is not None:
                out[rule.alert].append({"exp_labels": labels, "exp_annotations": _fill(rule, values[0])})
    return status, out


# --- the document -----------------------------------------------------------------------------------


def build_case(slo: SLO, files: Sequence[RuleFile], scenario: Scenario) -> dict[str, Any]:
    """One promtool test group: the scenario's series and the alerts expected at each check."""
    m = _minutes(slo, scenario)
    counts = _Counts(m, excluded_steps(slo, scenario.minutes) if slo.exclusions else None)
    rules = [r for f in files for g in f.groups for r in g.rules
             if isinstance(r, AlertingRule) and dict(r.labels).get(c.SLO_LABEL) == slo.name
             and dict(r.labels).get(c.SERVICE_LABEL) == slo.service]
    checks, sums = [], []
    for t in scenario.checks:
        if t % _STEP_MINUTES or t > scenario.minutes:
            raise ValueError(f"check at {t}m: use multiples of {c.STEP} within the scenario")
        _, expected = expected_alerts(slo, rules, counts, t)
        for name, alerts in expected.items():
            checks.append({"eval_time": f"{t}m", "alertname": name, "exp_alerts": alerts})
        sums += _period_sums(slo, counts, t) + _step_values(slo, counts, t)
    series = [{"series": s, "values": _values(v)} for s, v in input_series(slo, m)]
    if slo.exclusions:
        gauge, values = exclusion_gauge(slo, scenario.minutes)
        series.append({"series": gauge, "values": values})
    case: dict[str, Any] = {
        "name": f"{slo.id}: {scenario.name}",
        "interval": SAMPLE_INTERVAL,
        "input_series": series,
        "alert_rule_test": checks,
    }
    if sums:
        case["promql_expr_test"] = sums
    return case


def _period_sums(slo: SLO, counts: _Counts, t: int) -> list[dict[str, Any]]:
    """The SLO window's good and total events, to the event: shows that the steps tile the window."""
    if not isinstance(slo.window, RollingWindow):
        return []
    period = counts.period(t, _minutes_of(slo.window.name))
    out = []
    for metric, value in ((c.PERIOD_EVENTS_GOOD, period.good if period else None),
                          (c.PERIOD_EVENTS_TOTAL, period.total if period else None)):
        labels = dict(sorted(series_labels(slo, slo.window.name)))
        samples = [] if value is None else [{"labels": _series(metric, labels), "value": value}]
        out.append({"expr": selector(metric, slo, slo.window.name), "eval_time": f"{t}m", "exp_samples": samples})
    return out


def _step_values(slo: SLO, counts: _Counts, t: int) -> list[dict[str, Any]]:
    """With exclusions: the step ending at ``t`` records its events, or 0 when excluded."""
    if counts.masked is None:
        return []
    step = counts.step(t)
    labels = dict(sorted(series_labels(slo)))
    return [{"expr": selector(metric, slo), "eval_time": f"{t}m",
             "exp_samples": [] if step is None else [{"labels": _series(metric, labels), "value": value}]}
            for metric, value in ((c.STEP_EVENTS_GOOD, step.good if step else 0),
                                  (c.STEP_EVENTS_TOTAL, step.total if step else 0))]


def build_document(slo: SLO, files: Sequence[tuple[str, RuleFile]], scenarios: Sequence[Scenario]) -> dict[str, Any]:
    """A ``promtool test rules`` file for ``slo`` over the generated ``files`` (path as promtool
    should read it, and the file). The files should hold only this SLO's rules: promtool compares
    every firing alert of a name, and another SLO's rules may match the same series."""
    rule_files = [f for _, f in files]
    return {
        "rule_files": [path for path, _ in files],
        "evaluation_interval": EVALUATION_INTERVAL,
        # Recording rules first, alerts last: at one instant the alerts read this instant's values.
        "group_eval_order": [g.name for f in sorted(rule_files, key=lambda f: f.kind != "rules") for g in f.groups],
        "tests": [build_case(slo, rule_files, s) for s in scenarios],
    }


# --- composites -------------------------------------------------------------------------------------


def composite_case(composite: SLO, components: Mapping[str, tuple[SLO, Scenario | None]], checks: Sequence[int],
                   ) -> dict[str, Any]:
    """One promtool test group for a composite: each component's series follow its scenario (None:
    counters that never move, a component without events), and at each check the composite's
    recorded SLI of every window and of its SLO window equals ``core.composite.combine`` (the
    daemon's definition) over the components' exact counts."""
    series: list[dict[str, str]] = []
    counts: dict[str, _Counts] = {}
    length = max(s.minutes for _, s in components.values() if s is not None)
    for slo_id, (slo, scenario) in components.items():
        still = (0,) * (length + 1)
        m = _minutes(slo, scenario) if scenario is not None else _Minutes(still, still, slices=False)
        counts[slo_id] = _Counts(m)
        series += [{"series": s, "values": _values(v)} for s, v in input_series(slo, m)]
    assert isinstance(composite.window, RollingWindow)
    window = composite.window.name
    tests = []
    for t in checks:
        measured = {}
        for slo_id, cnt in counts.items():
            windows = {w: x for w in BURN_RATE_WINDOWS if (x := cnt.window(t, _minutes_of(w))) is not None}
            if (period := cnt.period(t, _minutes_of(window))) is not None:
                windows[SLO_WINDOW] = period
            measured[slo_id] = Measurement(at=_EPOCH + timedelta(minutes=t), counts=windows)
        combined = combine(composite, measured).counts
        for name, metric, label in [*((w, c.SLI, w) for w in BURN_RATE_WINDOWS), (SLO_WINDOW, c.PERIOD_SLI, window)]:
            got = combined.get(name)
            labels = dict(sorted(series_labels(composite, label)))
            samples = ([{"labels": _series(metric, labels), "value": got.good / got.total}]
                       if got is not None and got.total > 0 else [])
            tests.append({"expr": selector(metric, composite, label), "eval_time": f"{t}m", "exp_samples": samples})
    return {"name": f"{composite.id}: the SLI of every window is the daemon's combination of its components'",
            "interval": SAMPLE_INTERVAL, "input_series": series, "promql_expr_test": tests}
