"""SLO -> Prometheus recording and alerting rules, as data (``adapters/rulefiles.py`` writes them).

Per SLO three groups (names and series in ``core/conventions.py``):

``windows``  (the global evaluation interval) good and total events per burn-rate window, built
             by ``measure.event_queries`` exactly as the daemon measures them, then the SLI and the
             burn rate per window, the objective and the error budget.
``period``   (interval 5m) the SLO window, event-weighted: each evaluation records the events of
             the last 5m (a *step*); the window's good and total are the sums of its steps, and
             the SLI is their ratio. A ratio of sums weights every event equally; an average of
             5m ratios would weigh a quiet night's 5 minutes like a busy noon's.
``alerts``   SLOErrorBudgetConsumed per threshold and SLOErrorBudgetBurn per row of the burn-rate
             table, with the daemon's names, labels and thresholds, plus ``slowatch_source``.

Why the period stays exact:

* The step's range equals the group interval (both ``conventions.STEP``): the steps tile time,
  each event falls in exactly one step. Another interval would count events several times (1m)
  or skip them (10m); ``promtool test rules`` ignores group intervals, so its tests run at 5m.
* The steps are summed over the window minus 1ms: all rules of a group share one evaluation
  instant, so a step sits exactly one window back, and Prometheus 2 ranges include both ends
  (``[30d]`` would hold 8641 steps). Timestamps are whole milliseconds, so ``[30d - 1ms]`` is
  exactly the left-open ``(t - 30d, t]`` of Prometheus 3 and VictoriaMetrics.
* A step counts the events between the last samples at or before ``t - 5m`` and ``t``
  (``measure.counter_events``: a difference of instant values), so steps tile at any evaluation
  instant, the hashed offset of a real rule group included: the sum of a window's steps is the
  count between two samples, exact, whatever the engine's range boundaries. Throughput slices
  count the subquery points in ``(t - 5m, t]`` (``measure.slice_events``).

Calendar windows (a month, a week) have no fixed range, so they get no period rules and no
budget-consumed alert (a comment in the output says so); their burn-rate alerts use the nominal
length (30d, 7d) exactly like the daemon.

**Exclusions** (``SLO.exclusions``) reach the rules through the daemon's
``slowatch_exclusion_active{service,slo}`` gauge. A step whose middle (``t - 2m30s``) the gauge
says is excluded records 0 events, and every window of such an SLO, the burn-rate windows
included, is a sum of its steps. So excluded events count neither as good nor as total anywhere,
to the step: a step straddling a boundary is kept or dropped whole, which misplaces at most the
events of half a step (plus the gauge's lag: the daemon's evaluation interval and the scrape
interval) at each boundary, and nothing when the boundaries fall on the step evaluations and that
lag is under half a step. The burn-rate windows then trail the counters by up to one step (5m).
Without the gauge (the daemon not scraped) nothing is excluded.

**Composites** (``CompositeSLI``) have no query of their own: each window's good and total are
``measure.composite_counts`` over the components' recorded events of that window (the SLO window:
the sums of their steps over the composite's window), exactly ``core.composite.combine``. Rules of
one group read another group's latest samples, so a composite trails its components by up to one
evaluation interval. A composite has no exclusions of its own (the spec refuses them): its
components' exclusions reach it through their masked steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from slowatch.core import conventions as c
from slowatch.core.alerting import burn_description, burn_summary, consumed_summary
from slowatch.core.measure import CompositePart, composite_counts, event_queries, steps_sum
from slowatch.core.model import (
    SLO,
    CalendarWindow,
    CompositeSLI,
    RatioSLI,
    RollingWindow,
    alert_rows,
    nominal_length,
)
from slowatch.core.promql import go_float, quote
from slowatch.core.windows import (
    BURN_RATE_WINDOWS,
    BurnRateAlertWindow,
    format_duration,
    parse_duration,
)

Labels = tuple[tuple[str, str], ...]
"""Ordered pairs: the writer keeps this order."""

# Spec labels never override slowatch's own labels (the spec loader rejects them too).
_OWN_LABELS = c.RESERVED_LABELS

# The alert's value in annotation text (the template is expanded by Prometheus at each evaluation).
VALUE_PERCENT = "{{ humanizePercentage $value }}"
VALUE_RATE = '{{ printf "%.2f" $value }}'


@dataclass(frozen=True)
class RecordingRule:
    record: str
    expr: str
    labels: Labels


@dataclass(frozen=True)
class AlertingRule:
    alert: str
    expr: str
    labels: Labels
    annotations: Labels


Rule = RecordingRule | AlertingRule


@dataclass(frozen=True)
class RuleGroup:
    name: str
    rules: tuple[Rule, ...]
    interval: str | None = None
    """None: Prometheus' global evaluation interval."""
    comment: tuple[str, ...] = ()
    """Lines written as a YAML comment above the group: why it is shaped so."""


@dataclass(frozen=True)
class RuleFile:
    service: str
    kind: Literal["rules", "alerts"]
    groups: tuple[RuleGroup, ...]
    sources: tuple[str, ...]
    """The spec files the SLOs came from."""
    comment: tuple[str, ...] = ()
    """Lines written as a YAML comment at the top of the file."""


RULES_FILE_COMMENT = (
    "Recording rules per SLO: events, SLI and burn rate per window (group *-windows), and the SLO",
    f"window event-weighted (group *-period): every {c.STEP} the events of the last {c.STEP} are recorded",
    "and summed over the window, a ratio of sums. The period group's interval must stay equal to the",
    "step's range, or events are counted several times or not at all. Ranges are the window minus 1ms",
    "so that they hold exactly one window of steps (Prometheus 2 ranges include both ends).",
)

ALERTS_FILE_COMMENT = (
    "The daemon (slowatch run) sends these same alerts, with slowatch_source=\"daemon\". Run either",
    "the daemon's alert delivery or these rules, not both, or inhibit one source by its",
    "slowatch_source label in Alertmanager, so nobody is paged twice. These alerts read the",
    "series of the recording rules in rules/ (load both).",
)


# --- numbers -----------------------------------------------------------------------------------


def objective_fraction(slo: SLO) -> str:
    """The objective as a decimal fraction ("0.9995"): decimal, so 99.95 does not turn into
    0.9994999999999999 in the rule file."""
    return _plain(Decimal(repr(slo.objective_percent)) / 100)


def budget_fraction(slo: SLO) -> str:
    """The error budget as a decimal fraction ("0.0005")."""
    return _plain(1 - Decimal(repr(slo.objective_percent)) / 100)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f")


def threshold_label(percent: float) -> str:
    """The ``threshold`` label value, formatted as the daemon formats it ("50")."""
    return f"{percent:g}"


# --- selectors and labels -----------------------------------------------------------------------


def spec_labels(slo: SLO) -> Labels:
    return tuple((k, v) for k, v in slo.labels if k not in _OWN_LABELS)


def series_labels(slo: SLO, window: str | None = None) -> Labels:
    own: Labels = ((c.SERVICE_LABEL, slo.service), (c.SLO_LABEL, slo.name))
    if window is not None:
        own += ((c.WINDOW_LABEL, window),)
    return own + spec_labels(slo)


def selector(metric: str, slo: SLO, window: str | None = None) -> str:
    """``metric{service="..",slo="..",window=".."}``: what identifies one recorded series."""
    return selector_of(metric, slo.id, window)


def selector_of(metric: str, slo_id: str, window: str | None = None) -> str:
    """``selector`` of an SLO known by its id (``service/name``), e.g. a composite's component."""
    service, name = slo_id.split("/", 1)
    pairs = [(c.SERVICE_LABEL, service), (c.SLO_LABEL, name)]
    if window is not None:
        pairs.append((c.WINDOW_LABEL, window))
    return metric + "{" + ",".join(f"{k}={quote(v)}" for k, v in pairs) + "}"


# --- event counts --------------------------------------------------------------------------------


def event_counts(slo: SLO, rng: str) -> tuple[str, str]:
    """PromQL for (good, total) events in the last ``rng``, from ``measure.event_queries``.

    An absent errors (or good) series means none of those events happened, as in the daemon:
    ``or vector(0)``, else an SLO whose 5xx series never existed would have no SLI at all. Raw
    queries are summed so their one sample has no labels and matches ``vector(0)``. Latency
    buckets and throughput slices are not defaulted: when the count exists their series do too.
    """
    q = event_queries(slo, parse_duration(rng))
    if not isinstance(slo.sli, RatioSLI):
        return q["good"], q["total"]
    total = q["total"]
    if "good" in q:
        return f"{q['good']} or vector(0)", total
    return f"{total} - ({q['bad']} or vector(0))", total


# --- exclusions and composites --------------------------------------------------------------------

# A step (t - 5m, t] is excluded when the gauge is 1 at its middle: exact at boundaries on the step
# evaluations as long as the gauge trails the exclusion by less than half a step.
EXCLUSION_PROBE = format_duration(parse_duration(c.STEP) / 2)


def _excluded(slo: SLO) -> str:
    # max: two daemon replicas export the same gauge.
    return f"max({selector(c.EXCLUSION_ACTIVE, slo)} offset {EXCLUSION_PROBE}) == 1"


def masked_step(expr: str, slo: SLO) -> str:
    """A step's events, 0 while the SLO's exclusion gauge says the step is excluded."""
    if not slo.exclusions:
        return expr
    return f"({expr}) unless on () ({_excluded(slo)})\nor 0 * ({_excluded(slo)})"


def has_steps(slo: SLO) -> bool:
    """The SLO records 5m steps: rolling windows sum them, exclusions mask them."""
    return not isinstance(slo.sli, CompositeSLI) and (isinstance(slo.window, RollingWindow) or bool(slo.exclusions))


def window_counts(slo: SLO, w: str) -> tuple[str, str]:
    """(good, total) events of a burn-rate window ``w``: the SLI's queries, the sum of the masked
    steps when the SLO has exclusions, the components' recorded counts for a composite."""
    sli = slo.sli
    if isinstance(sli, CompositeSLI):
        parts: list[CompositePart] = [
            (p.slo, p.weight, selector_of(c.EVENTS_GOOD, p.slo, w), selector_of(c.EVENTS_TOTAL, p.slo, w))
            for p in sli.components
        ]
        return composite_counts(parts, sli.weighting)
    if slo.exclusions:
        return steps_over(slo, parse_duration(w))
    return event_counts(slo, w)


def steps_over(slo: SLO, length: timedelta) -> tuple[str, str]:
    """(good, total): the sums of the SLO's recorded steps over the last ``length``."""
    return steps_sum(selector(c.STEP_EVENTS_GOOD, slo), length), steps_sum(selector(c.STEP_EVENTS_TOTAL, slo), length)


def period_counts(slo: SLO, length: timedelta, every: Mapping[str, SLO]) -> tuple[str, str] | str:
    """(good, total) over the last ``length`` from recorded steps (a composite: from its components'
    steps, through nested composites), or why there are none."""
    sli = slo.sli
    if isinstance(sli, CompositeSLI):
        parts: list[CompositePart] = []
        for p in sli.components:
            if p.slo not in every:
                return f"component {p.slo} is not in the generated specs"
            counts = period_counts(every[p.slo], length, every)
            if isinstance(counts, str):
                return counts
            parts.append((p.slo, p.weight, *counts))
        return composite_counts(parts, sli.weighting)
    if not has_steps(slo):
        return f"component {slo.id} has a calendar window and no exclusions, so no recorded steps"
    return steps_over(slo, length)


# --- recording rules -----------------------------------------------------------------------------


def windows_group(slo: SLO) -> RuleGroup:
    rules: list[Rule] = [
        RecordingRule(c.OBJECTIVE, f"vector({objective_fraction(slo)})", series_labels(slo)),
        RecordingRule(c.ERROR_BUDGET, f"vector({budget_fraction(slo)})", series_labels(slo)),
    ]
    for w in BURN_RATE_WINDOWS:
        good, total = window_counts(slo, w)
        labels = series_labels(slo, w)
        rules += [
            RecordingRule(c.EVENTS_GOOD, good, labels),
            RecordingRule(c.EVENTS_TOTAL, total, labels),
            # A window without events has no SLI (absent), never 0 or NaN: the daemon's no_data.
            RecordingRule(
                c.SLI, f"{selector(c.EVENTS_GOOD, slo, w)} / ({selector(c.EVENTS_TOTAL, slo, w)} > 0)", labels
            ),
            RecordingRule(c.BURN_RATE, f"(1 - {selector(c.SLI, slo, w)}) / {budget_fraction(slo)}", labels),
        ]
    comment: tuple[str, ...] = ()
    if isinstance(slo.window, CalendarWindow):
        comment = (
            f"{slo.id}: calendar window {slo.window.name}: no period group. PromQL has no range 'since the",
            "start of the month/week', and a fixed 30d/7d range would report another budget than the",
            "daemon's; the budget consumed comes from the daemon (slowatch_slo_error_budget_consumed_ratio).",
        )
    if isinstance(slo.sli, CompositeSLI):
        parts = ", ".join(f"{p.slo} (weight {go_float(p.weight)})" for p in slo.sli.components)
        how = "summed events" if slo.sli.weighting == "events" else "weighted mean of their SLIs"
        comment += (f"{slo.id}: composite ({how}) of {parts}:",
                    "from their recorded events per window, trailing them by up to one evaluation interval.")
    elif slo.exclusions:
        comment += (f"{slo.id}: has exclusions: every window sums the 5m steps of the period group, which",
                    f"record 0 while {c.EXCLUSION_ACTIVE} is 1 (the daemon's gauge, scraped).")
    return RuleGroup(c.windows_group(slo.service, slo.name), tuple(rules), comment=comment)


def period_group(slo: SLO, every: Mapping[str, SLO] | None = None) -> RuleGroup | None:
    """The event-weighted SLO window; None for calendar windows (see the module doc) unless the
    SLO's exclusions need its steps. ``every``: the SLOs by id, where a composite's components
    are looked up (default: none, so a composite gets no period group)."""
    every = every or {}
    if isinstance(slo.sli, CompositeSLI):
        return _composite_period_group(slo, every)
    if not has_steps(slo):
        return None
    good, total = event_counts(slo, c.STEP)
    step_labels = series_labels(slo)
    steps: tuple[Rule, ...] = (
        RecordingRule(c.STEP_EVENTS_GOOD, masked_step(good, slo), step_labels),
        RecordingRule(c.STEP_EVENTS_TOTAL, masked_step(total, slo), step_labels),
    )
    if not isinstance(slo.window, RollingWindow):  # only the steps its windows sum
        return RuleGroup(c.period_group(slo.service, slo.name), steps, interval=c.STEP)
    return RuleGroup(c.period_group(slo.service, slo.name),
                     steps + _period_rules(slo, *steps_over(slo, slo.window.duration)), interval=c.STEP)


def _composite_period_group(slo: SLO, every: Mapping[str, SLO]) -> RuleGroup | None:
    if not isinstance(slo.window, RollingWindow):
        return None
    counts = period_counts(slo, slo.window.duration, every)
    if isinstance(counts, str):
        return RuleGroup(c.period_group(slo.service, slo.name), (), interval=c.STEP,
                         comment=(f"{slo.id}: no period rules: {counts}.",))
    return RuleGroup(c.period_group(slo.service, slo.name), _period_rules(slo, *counts), interval=c.STEP)


def _period_rules(slo: SLO, good: str, total: str) -> tuple[Rule, ...]:
    window = slo.window.name
    labels = series_labels(slo, window)
    return (
        RecordingRule(c.PERIOD_EVENTS_GOOD, good, labels),
        RecordingRule(c.PERIOD_EVENTS_TOTAL, total, labels),
        RecordingRule(
            c.PERIOD_SLI,
            f"{selector(c.PERIOD_EVENTS_GOOD, slo, window)} / ({selector(c.PERIOD_EVENTS_TOTAL, slo, window)} > 0)",
            labels,
        ),
        RecordingRule(
            c.BUDGET_CONSUMED_RATIO, f"(1 - {selector(c.PERIOD_SLI, slo, window)}) / {budget_fraction(slo)}", labels
        ),
        RecordingRule(c.BUDGET_REMAINING_RATIO, f"1 - {selector(c.BUDGET_CONSUMED_RATIO, slo, window)}", labels),
    )


def recording_groups(slo: SLO, every: Mapping[str, SLO] | None = None) -> tuple[RuleGroup, ...]:
    """The SLO's recording groups, in the order they read each other (the steps first when its
    windows sum them), so an evaluation in file order sees fresh inputs (``promtool test rules``)."""
    period = period_group(slo, every)
    windows = windows_group(slo)
    if period is None:
        return (windows,)
    if period.comment and not period.rules:  # a composite without period rules: say why, write no group
        return (RuleGroup(windows.name, windows.rules, comment=windows.comment + period.comment),)
    return (period, windows) if slo.exclusions and not isinstance(slo.sli, CompositeSLI) else (windows, period)


# --- alerting rules ------------------------------------------------------------------------------


def _alert_labels(slo: SLO, *own: tuple[str, str]) -> Labels:
    base: Labels = ((c.SERVICE_LABEL, slo.service), (c.SLO_LABEL, slo.name))
    return base + own + spec_labels(slo) + ((c.SOURCE_LABEL, c.SOURCE_PROMETHEUS),)


def _annotations(slo: SLO, summary: str, description: str) -> Labels:
    out: Labels = (("summary", summary), ("description", description))
    if slo.alerting.runbook_url:
        out += (("runbook_url", slo.alerting.runbook_url),)
    return out


def _without_window(metric: str, slo: SLO, window: str | None = None) -> str:
    # The alert's labels are the daemon's: the series' window label must not become one.
    return f"max without ({c.WINDOW_LABEL}) ({selector(metric, slo, window)})"


def budget_consumed_alert(slo: SLO, threshold: float) -> AlertingRule:
    window = slo.window.name
    value = VALUE_PERCENT
    return AlertingRule(
        alert=c.BUDGET_CONSUMED,
        # threshold/100 as the daemon compares it: division is correctly rounded, 0.57 stays 0.57.
        expr=f"{_without_window(c.BUDGET_CONSUMED_RATIO, slo)} >= {go_float(threshold / 100.0)}",
        labels=_alert_labels(
            slo, (c.SEVERITY_LABEL, c.TICKET), (c.THRESHOLD_LABEL, threshold_label(threshold))
        ),
        annotations=_annotations(
            slo,
            consumed_summary(slo, value, threshold),
            f"{value} of the error budget of the last {window} is consumed: objective "
            f"{slo.objective_percent:g}%, so {_percent(budget_fraction(slo))} of events may fail. "
            f"Fires at {threshold:g}% of the budget.",
        ),
    )


def burn_rate_alert(slo: SLO, row: BurnRateAlertWindow) -> AlertingRule:
    factor = row.factor(nominal_length(slo.window))
    threshold = go_float(factor)
    value = VALUE_RATE + "x"
    return AlertingRule(
        alert=c.BUDGET_BURN,
        expr=(
            f"{_without_window(c.BURN_RATE, slo, row.long_window)} >= {threshold}\n"
            f"and\n"
            f"{_without_window(c.BURN_RATE, slo, row.short_window)} >= {threshold}"
        ),
        labels=_alert_labels(
            slo,
            (c.SEVERITY_LABEL, row.severity),
            (c.LONG_WINDOW_LABEL, row.long_window),
            (c.SHORT_WINDOW_LABEL, row.short_window),
        ),
        annotations=_annotations(
            slo,
            burn_summary(slo, row, value),
            f"{burn_description(slo, row, value)} Objective {slo.objective_percent:g}% over {slo.window.name}.",
        ),
    )


def _percent(fraction: str) -> str:
    return _plain(Decimal(fraction) * 100) + "%"


def alerts_group(slo: SLO, every: Mapping[str, SLO] | None = None) -> RuleGroup | None:
    """The SLO's alerts; None when its policy asks for none. ``every`` as for ``period_group``."""
    rules: list[Rule] = []
    comment: tuple[str, ...] = ()
    period = period_group(slo, every) if isinstance(slo.window, RollingWindow) else None
    if period is not None and period.rules:
        rules += [budget_consumed_alert(slo, t) for t in slo.alerting.budget_consumed]
    elif slo.alerting.budget_consumed:
        why = (f"its calendar window {slo.window.name} has no period" if period is None
               else "the composite has no period")
        comment = (
            f"{slo.id}: no {c.BUDGET_CONSUMED}: {why}",
            "rules (see rules/); the daemon sends that alert.",
        )
    if slo.alerting.burn_rate:
        rules += [burn_rate_alert(slo, row) for row in alert_rows(slo)]
    if not rules and not comment:
        return None
    return RuleGroup(c.alerts_group(slo.service, slo.name), tuple(rules), comment=comment)


# --- files ----------------------------------------------------------------------------------------


def _by_service(slos: Iterable[SLO]) -> dict[str, list[SLO]]:
    out: dict[str, list[SLO]] = {}
    for slo in slos:
        out.setdefault(slo.service, []).append(slo)
    return {k: out[k] for k in sorted(out)}


def _sources(slos: Sequence[SLO]) -> tuple[str, ...]:
    return tuple(sorted({s.source for s in slos if s.source}))


def rule_files(slos: Iterable[SLO]) -> list[RuleFile]:
    """One rules and one alerts file per service, services sorted, SLOs in spec order."""
    slos = list(slos)
    every = {s.id: s for s in slos}
    files: list[RuleFile] = []
    for service, group in _by_service(slos).items():
        sources = _sources(group)
        recording = tuple(g for slo in group for g in recording_groups(slo, every))
        alerting = tuple(g for slo in group if (g := alerts_group(slo, every)) is not None)
        files.append(RuleFile(service, "rules", recording, sources, RULES_FILE_COMMENT))
        files.append(RuleFile(service, "alerts", alerting, sources, ALERTS_FILE_COMMENT))
    return files
