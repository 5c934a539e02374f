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
"""

from __future__ import annotations

# Alert names and the budget alert's severity belong to the daemon's alerting (INTERFACES.md);
# re-exported so the generators read every name from this module.
from slowatch.core import alerting as _alerting

BUDGET_BURN = _alerting.BUDGET_BURN
BUDGET_CONSUMED = _alerting.BUDGET_CONSUMED
TICKET = _alerting.TICKET

PREFIX = "slowatch"

# --- labels -----------------------------------------------------------------------------------
SERVICE_LABEL = "service"
SLO_LABEL = "slo"
WINDOW_LABEL = "window"
SEVERITY_LABEL = "severity"
THRESHOLD_LABEL = "threshold"
LONG_WINDOW_LABEL = "long_window"
SHORT_WINDOW_LABEL = "short_window"
# Tells the generated alerts from the daemon's, which carry the same names and labels, so an
# Alertmanager can route or inhibit one source.
SOURCE_LABEL = _alerting.SOURCE_LABEL
SOURCE_PROMETHEUS = "prometheus"
SOURCE_DAEMON = _alerting.SOURCE_DAEMON

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
