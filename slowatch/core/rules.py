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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from slowatch.core import conventions as c
from slowatch.core.alerting import burn_description, burn_summary, consumed_summary
from slowatch.core.measure import event_queries, steps_sum
from slowatch.core.model import SLO, CalendarWindow, RatioSLI, RollingWindow, alert_rows, nominal_length
from slowatch.core.promql import go_float, quote
from slowatch.core.windows import (
    BURN_RATE_WINDOWS,
    BurnRateAlertWindow,
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
    pairs = [(c.SERVICE_LABEL, slo.service), (c.SLO_LABEL, slo.name)]
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


# --- recording rules -----------------------------------------------------------------------------


def windows_group(slo: SLO) -> RuleGroup:
    rules: list[Rule] = [
        RecordingRule(c.OBJECTIVE, f"vector({objective_fraction(slo)})", series_labels(slo)),
        RecordingRule(c.ERROR_BUDGET, f"vector({budget_fraction(slo)})", series_labels(slo)),
    ]
    for w in BURN_RATE_WINDOWS:
        good, total = event_counts(slo, w)
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
    return RuleGroup(c.windows_group(slo.service, slo.name), tuple(rules), comment=comment)


def period_group(slo: SLO) -> RuleGroup | None:
    """The event-weighted SLO window; None for calendar windows (see the module doc)."""
    if not isinstance(slo.window, RollingWindow):
        return None
    window = slo.window.name
    length = parse_duration(window)
    good, total = event_counts(slo, c.STEP)
    step_labels = series_labels(slo)
    labels = series_labels(slo, window)
    rules: tuple[Rule, ...] = (
        RecordingRule(c.STEP_EVENTS_GOOD, good, step_labels),
        RecordingRule(c.STEP_EVENTS_TOTAL, total, step_labels),
        RecordingRule(c.PERIOD_EVENTS_GOOD, steps_sum(selector(c.STEP_EVENTS_GOOD, slo), length), labels),
        RecordingRule(c.PERIOD_EVENTS_TOTAL, steps_sum(selector(c.STEP_EVENTS_TOTAL, slo), length), labels),
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
    return RuleGroup(c.period_group(slo.service, slo.name), rules, interval=c.STEP)


def recording_groups(slo: SLO) -> tuple[RuleGroup, ...]:
    period = period_group(slo)
    return (windows_group(slo),) if period is None else (windows_group(slo), period)


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


def alerts_group(slo: SLO) -> RuleGroup | None:
    """The SLO's alerts; None when its policy asks for none."""
    rules: list[Rule] = []
    comment: tuple[str, ...] = ()
    if isinstance(slo.window, RollingWindow):
        rules += [budget_consumed_alert(slo, t) for t in slo.alerting.budget_consumed]
    elif slo.alerting.budget_consumed:
        comment = (
            f"{slo.id}: no {c.BUDGET_CONSUMED}: its calendar window {slo.window.name} has no period",
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
    files: list[RuleFile] = []
    for service, group in _by_service(slos).items():
        sources = _sources(group)
        recording = tuple(g for slo in group for g in recording_groups(slo))
        alerting = tuple(g for slo in group if (g := alerts_group(slo)) is not None)
        files.append(RuleFile(service, "rules", recording, sources, RULES_FILE_COMMENT))
        files.append(RuleFile(service, "alerts", alerting, sources, ALERTS_FILE_COMMENT))
    return files
