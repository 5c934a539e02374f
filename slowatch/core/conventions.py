"""Every name the generated Prometheus rules use: series, labels, groups, the Kubernetes object.

Series follow Prometheus' ``level:metric:operations`` convention. One name per quantity, the
measured window in a ``window`` label (as on the daemon's ``slowatch_slo_*`` metrics), so a
dashboard gets every window of an SLO from one selector. Quantities over the SLO's own window
(the "period") have names of their own: a 1d SLO window would otherwise collide with the 1d
burn-rate window.

    slowatch:slo_objective:ratio                   {service, slo}           e.g. 0.999
    slowatch:slo_error_budget:ratio                {service, slo}           1 - objective
    slowatch:slo_events_good:increase              {service, slo, window}   window in 5m .. 3d
    slowatch:slo_events_total:increase             {service, slo, window}
    slowatch:slo_sli:ratio                         {service, slo, window}   good / total
    slowatch:slo_burn_rate:ratio                   {service, slo, window}   (1 - sli) / budget
    slowatch:slo_step_events_good:increase5m       {service, slo}           one 5m step, every 5m
    slowatch:slo_step_events_total:increase5m      {service, slo}
    slowatch:slo_period_events_good:sum            {service, slo, window}   steps summed over the SLO window
    slowatch:slo_period_events_total:sum           {service, slo, window}
    slowatch:slo_period_sli:ratio                  {service, slo, window}
    slowatch:slo_error_budget_consumed:ratio       {service, slo, window}
    slowatch:slo_error_budget_remaining:ratio      {service, slo, window}

Every series also carries the spec's ``labels`` (e.g. ``team``). Alert names and alert labels
are the daemon's (INTERFACES.md), plus ``slowatch_source``.

Also the one home of the names the daemon shares with them: alert names, reserved labels, SLO
state names, and how instants are written.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

PREFIX = "slowatch"

# --- alerts (INTERFACES.md, "Alerts") -----------------------------------------------------------
BUDGET_CONSUMED = "SLOErrorBudgetConsumed"
BUDGET_BURN = "SLOErrorBudgetBurn"
NO_DATA = "SLONoData"
EVALUATION_FAILING = "SLOWatchEvaluationFailing"
REGRESSION = "SLORegression"

# Budget-consumed, no-data and evaluation alerts need a human eventually, not at 3 am
# (INTERFACES.md, "Alerts"); burn-rate alerts take their severity from the table row.
TICKET = "ticket"

# --- labels -----------------------------------------------------------------------------------
ALERTNAME_LABEL = "alertname"
SERVICE_LABEL = "service"
SLO_LABEL = "slo"
WINDOW_LABEL = "window"
STATE_LABEL = "state"
SEVERITY_LABEL = "severity"
THRESHOLD_LABEL = "threshold"
LONG_WINDOW_LABEL = "long_window"
SHORT_WINDOW_LABEL = "short_window"
METRIC_LABEL = "metric"  # SLORegression: which measure regressed (p95_latency, error_ratio, throughput)
# Tells the generated alerts from the daemon's, which carry the same names and labels, so an
# Alertmanager can route or inhibit one source and nobody is paged twice.
SOURCE_LABEL = "slowatch_source"
SOURCE_PROMETHEUS = "prometheus"
SOURCE_DAEMON = "daemon"

RESERVED_LABELS = frozenset({
    ALERTNAME_LABEL, SERVICE_LABEL, SLO_LABEL, WINDOW_LABEL, STATE_LABEL, SEVERITY_LABEL,
    THRESHOLD_LABEL, LONG_WINDOW_LABEL, SHORT_WINDOW_LABEL, SOURCE_LABEL, METRIC_LABEL,
})
"""Labels slowatch sets itself on alerts, rules and self-metrics: the spec loader rejects them as
spec labels, and every writer drops them from an SLO's labels, so a spec label never overrides them."""

# --- SLO states (INTERFACES.md, /status "state") ------------------------------------------------
State = Literal["ok", "burning", "exhausted", "no_data", "stale", "error"]
STATES: tuple[State, ...] = get_args(State)
EVALUATED_STATES: frozenset[State] = frozenset({"ok", "burning", "exhausted"})
"""The numbers are fresh: alerts fire and resolve on them."""
FAILED_STATES: frozenset[State] = frozenset({"stale", "error"})
"""The evaluation failed: the SLO's alerts are frozen, ``slowatch eval`` exits 1."""


# --- instants ---------------------------------------------------------------------------------


def rfc3339(t: datetime, *, exact: bool = False) -> str:
    """RFC 3339 in UTC with a Z. ``exact``: always microseconds, so parsing it back gives the same
    instant (the state file, Alertmanager's startsAt); otherwise milliseconds only when there
    are any, for reading (/status, alert text)."""
    t = t.astimezone(UTC)
    timespec = "microseconds" if exact else "milliseconds" if t.microsecond else "seconds"
    return t.isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_instant(text: str) -> datetime:
    """An instant as people write it on a command line: RFC 3339 (``2026-11-01T00:00:00Z``; no
    zone means UTC) or unix seconds. ValueError says what to write."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (write RFC 3339 like 2026-11-01T00:00:00Z, or unix seconds)") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# --- the step of the event-weighted SLO window -------------------------------------------------
# The step rules record the events of the last STEP and run in a group whose interval is STEP;
# the two must stay equal, or summing the steps counts events several times (interval shorter)
# or not at all (interval longer).
STEP = "5m"

# --- series -----------------------------------------------------------------------------------
OBJECTIVE = f"{PREFIX}:slo_objective:ratio"
ERROR_BUDGET = f"{PREFIX}:slo_error_budget:ratio"
EVENTS_GOOD = f"{PREFIX}:slo_events_good:increase"
EVENTS_TOTAL = f"{PREFIX}:slo_events_total:increase"
SLI = f"{PREFIX}:slo_sli:ratio"
BURN_RATE = f"{PREFIX}:slo_burn_rate:ratio"
STEP_EVENTS_GOOD = f"{PREFIX}:slo_step_events_good:increase{STEP}"
STEP_EVENTS_TOTAL = f"{PREFIX}:slo_step_events_total:increase{STEP}"
PERIOD_EVENTS_GOOD = f"{PREFIX}:slo_period_events_good:sum"
PERIOD_EVENTS_TOTAL = f"{PREFIX}:slo_period_events_total:sum"
PERIOD_SLI = f"{PREFIX}:slo_period_sli:ratio"
BUDGET_CONSUMED_RATIO = f"{PREFIX}:slo_error_budget_consumed:ratio"
BUDGET_REMAINING_RATIO = f"{PREFIX}:slo_error_budget_remaining:ratio"

# The daemon's series the rules and dashboards read: 1 while one of an SLO's exclusions covers
# the instant, else 0 (exported only for SLOs with exclusions).
EXCLUSION_ACTIVE = f"{PREFIX}_exclusion_active"

# --- rule groups (unique per SLO, so one PrometheusRule can hold every service) ----------------


def windows_group(service: str, slo: str) -> str:
    return f"{PREFIX}-{service}-{slo}-windows"


def period_group(service: str, slo: str) -> str:
    return f"{PREFIX}-{service}-{slo}-period"


def alerts_group(service: str, slo: str) -> str:
    return f"{PREFIX}-{service}-{slo}-alerts"


# --- files and the Kubernetes object -----------------------------------------------------------
RULES_DIR = "rules"
ALERTS_DIR = "alerts"
GRAFANA_DIR = "grafana"
PROMETHEUS_RULE_NAME = "slowatch-slos"
PROMETHEUS_RULE_LABELS: tuple[tuple[str, str], ...] = (
    ("app.kubernetes.io/name", "slowatch"),
    ("app.kubernetes.io/component", "slo-rules"),
    ("app.kubernetes.io/managed-by", "slowatch-generate"),
)
