"""What identifies slowatch's Grafana dashboards, as data: uids, tags, the folder, the datasource
uid, the self-metric names panels read, and the one JSON serialisation. The dashboards themselves
are built with grafana-foundation-sdk in ``slowatch.adapters.dashboards`` (an I/O-free library,
but not the standard library, so not in core); their event queries come from ``core.measure``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlencode

from slowatch.core.model import SLO

__all__ = [
    "DATASOURCE_UID",
    "EXCLUSION_ANNOTATION_FIELDS",
    "FOLDER_TITLE",
    "FOLDER_UID",
    "OVERVIEW_UID",
    "PERFORMANCE_UID",
    "PROMETHEUS_ANNOTATION_FIELDS",
    "SLO_TAG",
    "TAG",
    "Dashboard",
    "dashboard_url",
    "render",
    "slo_uid",
]

Dashboard = dict[str, Any]
"""A dashboard's JSON model, as Grafana stores it (the ``dashboard`` of the HTTP API)."""

# The Prometheus datasource every panel queries; grafana/provisioning/datasources/slowatch.yaml
# creates it with this uid (the provision command can point the dashboards at another one).
DATASOURCE_UID = "slowatch-prometheus"
OVERVIEW_UID = "slowatch-overview"
PERFORMANCE_UID = "slowatch-performance"
TAG = "slowatch"
"""On every generated dashboard; the file writer only ever deletes files carrying it."""
SLO_TAG = "slowatch-slo"
"""On every SLO detail dashboard; the dashboards' link menus list them by this tag."""
UID_MAX = 40  # Grafana refuses longer uids
FOLDER_UID = "slowatch"
"""The folder the dashboards go to, by file provisioning and by the HTTP API alike."""
FOLDER_TITLE = "SLOs (slowatch)"

# Self-metrics (INTERFACES.md, Metrics; the state and exhaustion series from adapters/metrics.py).
OBJECTIVE = "slowatch_slo_objective_ratio"
SLI = "slowatch_slo_sli_ratio"
REMAINING = "slowatch_slo_error_budget_remaining_ratio"
BURN_RATE = "slowatch_slo_burn_rate"
STATE = "slowatch_slo_state"
EXHAUSTION = "slowatch_slo_exhaustion_timestamp_seconds"
FIRING = "slowatch_slo_alert_firing"
LAST_SUCCESS = "slowatch_last_successful_evaluation_timestamp_seconds"

# The window event rates are read over; 300 s turns its counts into per-second rates.
EVENT_RANGE = "5m"
EVENT_RANGE_SECONDS = 300

# A Prometheus annotation's title and tags come from the series' labels; the SDK's annotation
# model has no fields for them, so they are added to the JSON (and are all it drops on a round trip).
PROMETHEUS_ANNOTATION_FIELDS: dict[str, object] = {
    "titleFormat": "{{alertname}}", "tagKeys": "severity", "textFormat": "", "useValueForTime": False, "step": "1m",
}

EXCLUSIONS_ANNOTATION = "Exclusions"
# The exclusion gauge has no alertname or severity: its regions get a title of their own.
EXCLUSION_ANNOTATION_FIELDS: dict[str, object] = {
    **PROMETHEUS_ANNOTATION_FIELDS, "titleFormat": "excluded: events not counted", "tagKeys": "service,slo",
}

# Colours of SLO states; the state names are the /status document's.
STATE_COLORS = {
    "ok": ("ok", "green"),
    "burning": ("burning", "orange"),
    "exhausted": ("exhausted", "red"),
    "no_data": ("no data", "text"),
    "stale": ("stale", "purple"),
    "error": ("error", "dark-red"),
}


def render(dashboard: Dashboard) -> str:
    """The one serialisation of a dashboard: sorted keys, two-space indent, trailing newline."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"



# ---------------------------------------------------------------------------------------------
# Identity.


def slo_uid(slo: SLO) -> str:
    """``slo-<service>-<name>`` (made uid-safe, cut to fit) plus 8 hex digits of a hash of the exact
    id: readable in URLs, stable across runs, unique even when two ids read alike once cut."""
    digest = hashlib.sha256(slo.id.encode()).hexdigest()[:8]
    readable = re.sub(r"[^a-zA-Z0-9_-]+", "_", f"{slo.service}-{slo.name}")
    room = UID_MAX - len("slo-") - len(digest) - 1
    return f"slo-{readable[:room].rstrip('-_')}-{digest}"


def dashboard_url(grafana_url: str, slo: SLO) -> str:
    """The SLO's detail dashboard in the Grafana at ``grafana_url`` (alerts' ``dashboard_url``)."""
    query = urlencode({"var-service": slo.service, "var-slo": slo.name})
    return f"{grafana_url.rstrip('/')}/d/{slo_uid(slo)}?{query}"
