"""The alert state machine: ``step(book, statuses, now) -> (book, changes)``.

Pure: no I/O, no clock (``now`` is passed in). The book holds every firing alert, and every
resolved one until the delivery side has handed it to every Alertmanager (then ``forget`` drops
it). Alerts are identified by their label set, as Alertmanager does; an alert keeps its
``starts_at`` for as long as it fires, and a re-fire after a resolve is a new alert.

What each SLO state does to that SLO's alerts:

    ok, burning, exhausted   alerts follow the numbers: fire, update annotations, resolve
    stale, error, absent     frozen exactly as they are (a failed evaluation is no recovery)
    no_data                  frozen, plus SLONoData while it lasts if the policy says ``alert``
    removed from the spec    resolved

Thresholds are compared on raw floats; numbers are rounded only in annotation text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import (
    BUDGET_BURN,
    BUDGET_CONSUMED,
    EVALUATED_STATES,
    EVALUATION_FAILING,
    FAILED_STATES,
    METRIC_LABEL,
    NO_DATA,
    REGRESSION,
    RESERVED_LABELS,
    SOURCE_DAEMON,
    SOURCE_LABEL,
    TICKET,
    rfc3339,
)
from slowatch.core.model import SLO, AlertExtras, nominal_length
from slowatch.core.regress import Row as RegressionRow
from slowatch.core.windows import CURRENT_BURN_WINDOW, BurnRateAlertWindow, format_duration, parse_duration

# The names live in core/conventions.py; re-exported because callers think of them as the alerts'.
__all__ = [
    "BUDGET_BURN", "BUDGET_CONSUMED", "EVALUATION_FAILING", "NO_DATA", "RESERVED_LABELS", "SOURCE_DAEMON",
    "SOURCE_LABEL", "TICKET", "Alert", "AlertBook", "AlertChange", "burn_description", "burn_summary",
    "consumed_summary", "firing_labels", "forget", "labels_of", "step", "views",
]

Labels = tuple[tuple[str, str], ...]
"""A label (or annotation) set, sorted by name, so equal sets compare and hash equal."""

DashboardURL = Callable[[SLO], str | None]


def labels_of(mapping: Mapping[str, str]) -> Labels:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class Alert:
    labels: Labels
    annotations: Labels
    starts_at: datetime
    ends_at: datetime | None = None
    """None while firing; the instant it resolved otherwise."""
    slo_id: str | None = None
    """``service/name`` of the SLO the alert is about; None for the daemon's own alerts."""

    @property
    def firing(self) -> bool:
        return self.ends_at is None

    @property
    def alertname(self) -> str:
        return self.label("alertname") or ""

    @property
    def severity(self) -> str:
        return self.label("severity") or ""

    def label(self, name: str) -> str | None:
        return dict(self.labels).get(name)

    @property
    def fingerprint(self) -> str:
        """A stable digest of the label set (the alert's identity while it fires)."""
        text = json.dumps(self.labels, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def id(self) -> str:
        """Identity of this firing episode: label set plus start. A re-fire gets a new id."""
        return f"{self.fingerprint}@{self.starts_at.astimezone(UTC).isoformat()}"


@dataclass(frozen=True)
class AlertBook:
    firing: tuple[Alert, ...] = ()
    """Firing alerts, sorted by labels; label sets are unique among them."""
    resolved: tuple[Alert, ...] = ()
    """Resolved alerts not yet delivered everywhere, oldest resolve first (send them in this order,
    before the firing ones: Alertmanager keeps the last alert posted for a label set)."""

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return self.resolved + self.firing


@dataclass(frozen=True)
class AlertChange:
    kind: Literal["fired", "resolved"]
    alert: Alert


@dataclass(frozen=True)
class _Wanted:
    annotations: Labels
    slo_id: str | None


@dataclass
class _Plan:
    """What one step wants: alerts to keep untouched, and alerts that should fire now."""

    keep: set[Labels] = field(default_factory=set)
    want: dict[Labels, _Wanted] = field(default_factory=dict)


def step(
    book: AlertBook,
    statuses: Sequence[BudgetStatus],
    now: datetime,
    *,
    evaluation_failing: bool,
    known_slo_ids: Collection[str],
    dashboard_url: DashboardURL | None = None,
    regressions: Mapping[str, Sequence[RegressionRow]] | None = None,
) -> tuple[AlertBook, list[AlertChange]]:
    """Advance the book to ``now`` given this cycle's statuses.

    ``known_slo_ids``: every SLO still in the spec; alerts of any other SLO resolve. An SLO with
    a status counts as known too. ``evaluation_failing``: the cycle had source failures.
    ``regressions``: the latest regression check per SLO id (``alerting.regression``); an SLO
    whose check did not run or failed this time keeps its SLORegression alerts as they are.
    ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    by_id = {s.slo.id: s for s in statuses}
    known = set(known_slo_ids) | by_id.keys()

    plan = _Plan()
    regressions = regressions or {}
    for alert in book.firing:
        sid = alert.slo_id
        if sid is None or sid not in known:
            continue
        if alert.alertname == REGRESSION and sid not in regressions:
            plan.keep.add(alert.labels)
        status = by_id.get(sid)
        frozen = status is None or status.state in FAILED_STATES
        if frozen or (status is not None and status.state == "no_data" and alert.alertname != NO_DATA):
            plan.keep.add(alert.labels)
    for status in statuses:
        _plan_slo(plan, status, dashboard_url)
        for row in regressions.get(status.slo.id, ()):
            if row.is_regression and row.severity in REGRESSION_ALERTS:
                labels = _labels(status.slo, alertname=REGRESSION, severity=TICKET, **{METRIC_LABEL: row.metric_name})
                plan.want[labels] = _Wanted(
                    _annotations(status.slo, dashboard_url, *_regression_text(status.slo, row)), status.slo.id)
    if evaluation_failing:
        plan.want[_evaluation_failing_labels()] = _Wanted(_evaluation_failing_annotations(), None)

    changes: list[AlertChange] = []
    firing: dict[Labels, Alert] = {}
    resolved = list(book.resolved)
    for alert in book.firing:
        wanted = plan.want.get(alert.labels)
        if alert.labels in plan.keep:
            firing[alert.labels] = alert
        elif wanted is not None:
            firing[alert.labels] = (
                alert if alert.annotations == wanted.annotations else replace(alert, annotations=wanted.annotations)
            )
        else:
            gone = replace(alert, ends_at=now)
            resolved.append(gone)
            changes.append(AlertChange("resolved", gone))
    for labels, wanted in plan.want.items():
        if labels not in firing:
            new = Alert(labels=labels, annotations=wanted.annotations, starts_at=now, slo_id=wanted.slo_id)
            firing[labels] = new
            changes.append(AlertChange("fired", new))

    return AlertBook(firing=tuple(firing[k] for k in sorted(firing)), resolved=tuple(resolved)), changes


def forget(book: AlertBook, delivered: Collection[str]) -> AlertBook:
    """Drop the resolved alerts (by ``Alert.id``) that every Alertmanager has received."""
    if not delivered:
        return book
    return replace(book, resolved=tuple(a for a in book.resolved if a.id not in delivered))


def views(book: AlertBook) -> dict[str, list[dict[str, Any]]]:
    """The firing alerts per SLO id, as /status shows them (``alerts`` of each SLO)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in sorted(book.firing, key=lambda a: (a.starts_at, a.labels)):
        if alert.slo_id is None:
            continue
        out.setdefault(alert.slo_id, []).append({
            "alertname": alert.alertname,
            "severity": alert.severity,
            "since": rfc3339(alert.starts_at),
            "labels": dict(alert.labels),
        })
    return out


def firing_labels(book: AlertBook) -> list[dict[str, str]]:
    """Label sets of every firing alert (``slowatch_slo_alert_firing``)."""
    return [dict(a.labels) for a in book.firing]


# --- planning one SLO -------------------------------------------------------------------------


def _plan_slo(plan: _Plan, status: BudgetStatus, dashboard_url: DashboardURL | None) -> None:
    slo = status.slo
    if status.state == "no_data":
        if slo.alerting.no_data == "alert":
            labels = _labels(slo, alertname=NO_DATA, severity=TICKET)
            plan.want[labels] = _Wanted(_annotations(slo, dashboard_url, *_no_data_text(status)), slo.id)
        return
    if status.state not in EVALUATED_STATES:
        return

    for threshold in slo.alerting.budget_consumed:
        # Compare against threshold/100 rather than consumed*100: the division is correctly rounded,
        # so a consumed of exactly 0.57 fires at 57 (0.57 * 100 is 56.99999999999999 in floats).
        if status.consumed >= threshold / 100.0:
            labels = _labels(slo, alertname=BUDGET_CONSUMED, severity=TICKET, threshold=f"{threshold:g}")
            text = _consumed_text(status, threshold)
            plan.want[labels] = _Wanted(_annotations(slo, dashboard_url, *text), slo.id)

    if slo.alerting.burn_rate:
        for row in status.burning:
            labels = _labels(
                slo, alertname=BUDGET_BURN, severity=row.severity,
                long_window=row.long_window, short_window=row.short_window,
            )
            text = _burn_text(status, row)
            plan.want[labels] = _Wanted(_annotations(slo, dashboard_url, *text, row.severity), slo.id)


def _labels(slo: SLO, **own: str) -> Labels:
    merged = {k: v for k, v in slo.labels if k not in RESERVED_LABELS}
    merged.update((k, v) for k, v in _extras(slo, own["severity"]).labels if k not in RESERVED_LABELS)
    merged.update(service=slo.service, slo=slo.name, **own)
    merged[SOURCE_LABEL] = SOURCE_DAEMON
    return labels_of(merged)


def _extras(slo: SLO, severity: str) -> AlertExtras:
    return dict(slo.alerting.extras).get(severity, AlertExtras())


def _annotations(
    slo: SLO, dashboard_url: DashboardURL | None, summary: str, description: str, severity: str = TICKET
) -> Labels:
    out = {"summary": summary, "description": description}
    out.update(_extras(slo, severity).annotations)  # an imported summary replaces ours, as in Sloth
    if slo.alerting.runbook_url:
        out["runbook_url"] = slo.alerting.runbook_url
    url = dashboard_url(slo) if dashboard_url is not None else None
    if url:
        out["dashboard_url"] = url
    return labels_of(out)


def _evaluation_failing_labels() -> Labels:
    return labels_of({"alertname": EVALUATION_FAILING, "severity": TICKET, SOURCE_LABEL: SOURCE_DAEMON})


def _evaluation_failing_annotations() -> Labels:
    # Deliberately free of per-cycle numbers: the alert must not change while it fires.
    return labels_of({
        "summary": "slowatch cannot evaluate some SLOs",
        "description": "The last evaluation cycles failed for some SLOs (Prometheus unreachable, queries "
        "failing, or an internal error, logged with its traceback). Affected SLOs are stale or in error and "
        "their alerts are frozen; see /status and the slowatch logs.",
    })


# --- annotation text (the only place numbers are rounded; shared with core/rules.py) ----------


def consumed_summary(slo: SLO, consumed: str, threshold: float) -> str:
    """``SLOErrorBudgetConsumed``'s summary; ``consumed`` is the share as text (the daemon's number,
    or the generated rule's Prometheus template)."""
    return f"{slo.id} has consumed {consumed} of its {slo.window.name} error budget (threshold {threshold:g}%)"


def burn_summary(slo: SLO, row: BurnRateAlertWindow, long_rate: str) -> str:
    """``SLOErrorBudgetBurn``'s summary, shared with the generated rules like ``consumed_summary``."""
    factor = row.factor(nominal_length(slo.window))
    return (
        f"{slo.id} burns its error budget {long_rate} as fast as sustainable over {row.long_window} "
        f"({row.severity}: {row.long_window} and {row.short_window} at or above {factor:.4g}x)"
    )


def burn_description(slo: SLO, row: BurnRateAlertWindow, long_rate: str, short_rate: str | None = None) -> str:
    """The first sentence of ``SLOErrorBudgetBurn``'s description. ``short_rate`` None: the value
    is not known (a rule's template sees only the long window's)."""
    window = nominal_length(slo.window)
    factor = row.factor(window)
    # The budget share the threshold stands for, from the factor itself (it may be clamped).
    share = 100 * factor * (parse_duration(row.long_window) / window)
    short = f" and {short_rate} over {row.short_window}" if short_rate else f", confirmed over {row.short_window}"
    return (
        f"Burn rate {long_rate} over {row.long_window}{short}, both at or above {factor:.4g}x: at that rate "
        f"{share:.3g}% of the {slo.window.name} error budget is gone within {row.long_window}."
    )


def _consumed_text(status: BudgetStatus, threshold: float) -> tuple[str, str]:
    summary = consumed_summary(status.slo, _pct(status.consumed, 1), threshold)
    return summary, f"{_numbers(status)} {_exhaustion(status)}"


def _burn_text(status: BudgetStatus, row: BurnRateAlertWindow) -> tuple[str, str]:
    long_rate = _rate(status.burn_rates.get(row.long_window))
    short_rate = _rate(status.burn_rates.get(row.short_window))
    description = f"{burn_description(status.slo, row, long_rate, short_rate)} {_numbers(status)} {_exhaustion(status)}"
    return burn_summary(status.slo, row, long_rate), description


# The seed's severities that open a ticket (issue: "an SLORegression ticket for high or critical").
REGRESSION_ALERTS = frozenset({"high", "critical"})


def _regression_text(slo: SLO, row: RegressionRow) -> tuple[str, str]:
    policy = slo.alerting.regression
    since = f"the same window {format_duration(policy.baseline)} earlier" if policy else "its baseline"
    change = "" if row.change_percentage is None else f"{row.change_percentage:+.1f}%"
    summary = f"{slo.id} {row.metric_name} regressed {change} against {since} ({row.severity})"
    description = (
        f"{slo.id}: {row.metric_name} is {row.current_value:.6g} over the last "
        f"{format_duration(policy.window) if policy else 'window'}, against {row.baseline_value:.6g} {since} "
        f"({change}, past the {policy.threshold if policy else 10:g}% threshold). Did a release or a change of "
        "traffic make it worse?"
    )
    return summary, description


def _no_data_text(status: BudgetStatus) -> tuple[str, str]:
    slo = status.slo
    summary = f"{slo.id} has no events in its {slo.window.name} window"
    description = (
        f"No events were counted for {slo.id} in its {slo.window.name} window, so its SLI and budget are "
        "unknown and its other alerts are frozen. Check that the SLI's selectors still match series."
    )
    return summary, description


def _numbers(status: BudgetStatus) -> str:
    slo = status.slo
    sli = "unknown" if status.sli is None else _pct(status.sli, _sli_digits(slo))
    return (
        f"SLI {sli} over {slo.window.name} against an objective of {slo.objective_percent:g}%; "
        f"error budget consumed {_pct(status.consumed, 2)}, remaining {_pct(status.remaining, 2)}."
    )


def _exhaustion(status: BudgetStatus) -> str:
    if status.consumed >= 1:
        return "The error budget is exhausted."
    if status.exhaustion_at is not None:
        return (
            f"At the {CURRENT_BURN_WINDOW} burn rate ({_rate(status.burn_rates.get(CURRENT_BURN_WINDOW))}) "
            f"the budget is exhausted at {rfc3339(status.exhaustion_at)}."
        )
    return "The budget is not on course to be exhausted within the window."


def _sli_digits(slo: SLO) -> int:
    """Two more decimals than the objective has, so the SLI reads against it (99.95 -> 99.9712%)."""
    _, _, decimals = f"{slo.objective_percent:g}".partition(".")
    return len(decimals) + 2


def _pct(fraction: float, digits: int) -> str:
    return f"{fraction * 100:.{digits}f}%"


def _rate(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}x"

