"""SLOs -> documents of a format (plain data, keys in a fixed order), and the one serialiser.

The generators return data so tests compare structures, not text; ``dump`` alone decides how it
looks on disk. What a format cannot carry is returned as a note, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import yaml

from slowatch.core.conventions import TICKET
from slowatch.core.model import SLO, CalendarWindow, LatencySLI, RatioSLI, RollingWindow, ThroughputSLI, Window
from slowatch.core.windows import format_duration
from slowatch.formats.openslo import BUDGET_CONSUMED, RUNBOOK_URL, TARGET_LABEL, V1, rows_for_window

Documents = dict[str, list[dict[str, Any]]]
"""Per service, the documents of its file."""

# A calendar window's startTime: 00:00 on a Monday that is also the 1st of a month, so it suits
# both months and ISO weeks (slowatch's calendar windows start there in their timezone).
CALENDAR_START = "2024-01-01 00:00:00"
_OPENSLO_UNITS = (("d", 86400), ("h", 3600), ("m", 60))


def dump(documents: Sequence[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=False)


def _fraction(percent: float) -> float:
    return float(Decimal(repr(percent)) / 100)


def _openslo_duration(d: timedelta) -> str:
    """OpenSLO durations take one unit (spec: "Duration shorthand"): the largest that divides."""
    seconds = int(d.total_seconds())
    for unit, size in _OPENSLO_UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return format_duration(d)  # seconds: OpenSLO has no unit for them; slowatch reads it back


def _targets(slo: SLO) -> dict[str, list[str]]:
    """The OpenSLO notification targets of each severity: extras that are only the target label."""
    return {severity: sorted(dict(e.labels)[TARGET_LABEL].split(","))
            for severity, e in slo.alerting.extras
            if not e.annotations and len(e.labels) == 1 and e.labels[0][0] == TARGET_LABEL}


def _extras_note(slo: SLO, fmt: str, kept_as_targets: bool = False) -> list[str]:
    targets = _targets(slo) if kept_as_targets else {}
    left = [(severity, e) for severity, e in slo.alerting.extras if severity not in targets]
    if not left:
        return []
    kept = "; ".join(f"{severity}: labels {dict(e.labels)}, annotations {dict(e.annotations)}" for severity, e in left)
    return [f"{slo.id}: {fmt} has no field for the alert labels and annotations imported from Sloth ({kept}); "
            "add them in Alertmanager (a route's labels or templates), or keep loading the Sloth file"]


# --- OpenSLO ------------------------------------------------------------------------------------


def _metric(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _openslo_window(window: Window) -> dict[str, Any]:
    if isinstance(window, RollingWindow):
        return {"duration": _openslo_duration(window.duration), "isRolling": True}
    return {"duration": "1M" if window.unit == "month" else "1w", "isRolling": False,
            "calendar": {"startTime": CALENDAR_START, "timeZone": window.timezone}}


def _openslo_indicator(slo: SLO) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(indicator spec, what the objective adds, budgetingMethod)."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        part, query = ("good", sli.good) if sli.good is not None else ("bad", sli.errors)
        assert query is not None  # RatioSLI holds good or errors
        return ({"ratioMetric": {"counter": not sli.raw, part: _metric(query), "total": _metric(sli.total)}},
                {}, "Occurrences")
    if isinstance(sli, LatencySLI):
        return ({"thresholdMetric": _metric(f"{sli.histogram}_bucket{sli.selector}")},
                {"op": "lte", "value": sli.threshold_seconds}, "Occurrences")
    # Composites are written by the caller (objectives with compositeWeight), never as one indicator.
    assert isinstance(sli, ThroughputSLI), f"{slo.id}: a composite has no indicator of its own"
    return ({"thresholdMetric": _metric(sli.query)},
            {"op": "gte", "value": sli.minimum, "timeSliceWindow": _openslo_duration(sli.slice)}, "Timeslices")


def _openslo_alerting(slo: SLO) -> list[dict[str, Any]]:
    """One policy per burn-rate row: the specification allows one condition per policy."""
    a = slo.alerting
    targets = _targets(slo)

    def policy(name: str, conditions: list[dict[str, Any]], severity: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"alertWhenNoData": a.no_data == "alert", "alertWhenResolved": True,
                                "alertWhenBreaching": True, "conditions": conditions}
        if targets.get(severity):
            # Inline, so files of several services may name the same target without a clash.
            spec["notificationTargets"] = [
                {"kind": "AlertNotificationTarget", "metadata": {"name": t}, "spec": {"target": t}}
                for t in targets[severity]
            ]
        return {"kind": "AlertPolicy", "metadata": {"name": name}, "spec": spec}

    policies = [
        policy(f"{slo.name}-{row.severity}-{row.long_window}", [{
            "kind": "AlertCondition",
            "metadata": {"name": f"{slo.name}-{row.severity}-{row.long_window}"},
            "spec": {"severity": row.severity,
                     "condition": {"kind": "burnrate", "op": "gte", "threshold": factor,
                                   "lookbackWindow": row.long_window, "alertAfter": row.short_window}}}],
               row.severity)
        for row, factor in (rows_for_window(slo.window, slo.sli) if a.burn_rate else [])
    ]
    if not policies and a.no_data == "alert":
        policies.append(policy(f"{slo.name}-no-data", [], TICKET))  # SLONoData is a ticket
    return policies


def openslo_slo(slo: SLO) -> dict[str, Any]:
    indicator, objective_extra, method = _openslo_indicator(slo)
    metadata: dict[str, Any] = {"name": slo.name}
    if slo.labels:
        metadata["labels"] = dict(slo.labels)
    annotations = {}
    if slo.alerting.budget_consumed:
        annotations[BUDGET_CONSUMED] = ",".join(f"{p:g}" for p in slo.alerting.budget_consumed)
    if slo.alerting.runbook_url:
        annotations[RUNBOOK_URL] = slo.alerting.runbook_url
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {}
    if slo.description:
        spec["description"] = slo.description
    spec.update({
        "service": slo.service,
        "indicator": {"metadata": {"name": slo.name}, "spec": indicator},
        "timeWindow": [_openslo_window(slo.window)],
        "budgetingMethod": method,
        "objectives": [{"displayName": slo.name, **objective_extra, "target": _fraction(slo.objective_percent)}],
    })
    policies = _openslo_alerting(slo)
    if policies:
        spec["alertPolicies"] = policies
    return {"apiVersion": V1, "kind": "SLO", "metadata": metadata, "spec": spec}


def to_openslo(slos: Sequence[SLO]) -> tuple[Documents, list[str]]:
    """Per service: a Service document, then one SLO document per SLO (indicator and alert
    policy inline, so each file stands alone)."""
    out: Documents = {}
    notes: list[str] = []
    for slo in slos:
        docs = out.setdefault(slo.service, [
            {"apiVersion": V1, "kind": "Service", "metadata": {"name": slo.service}, "spec": {}}
        ])
        docs.append(openslo_slo(slo))
        notes += _extras_note(slo, "OpenSLO", kept_as_targets=True)
    return out, notes


# --- slowatch/v1 --------------------------------------------------------------------------------


def _native_window(window: Window) -> str | dict[str, str]:
    if isinstance(window, CalendarWindow):
        return {"calendar": window.unit, "timezone": window.timezone}
    return format_duration(window.duration)


def _native_sli(slo: SLO) -> dict[str, Any]:
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        suffix = "_query" if sli.raw else ""
        ratio = {f"good{suffix}": sli.good} if sli.good is not None else {f"errors{suffix}": sli.errors}
        return {"ratio": {**ratio, f"total{suffix}": sli.total}}
    if isinstance(sli, LatencySLI):
        return {"latency": {"histogram": sli.histogram, "selector": sli.selector, "threshold": sli.threshold_seconds}}
    assert isinstance(sli, ThroughputSLI)
    return {"throughput": {"query": sli.query, "minimum": sli.minimum, "slice": format_duration(sli.slice)}}


def native_slo(slo: SLO) -> dict[str, Any]:
    a = slo.alerting
    alerting: dict[str, Any] = {"budget_consumed": list(a.budget_consumed), "burn_rate": a.burn_rate}
    if a.runbook_url:
        alerting["runbook_url"] = a.runbook_url
    if a.no_data != "ignore":
        alerting["no_data"] = a.no_data
    entry: dict[str, Any] = {"name": slo.name}
    if slo.description:
        entry["description"] = slo.description
    entry.update({"objective": slo.objective_percent, "window": _native_window(slo.window), "sli": _native_sli(slo),
                  "alerting": alerting})
    return entry


def to_slowatch(slos: Sequence[SLO]) -> tuple[Documents, list[str]]:
    """Per service, one document per set of labels (slowatch/v1 labels are per document)."""
    out: Documents = {}
    notes: list[str] = []
    by_labels: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for slo in slos:
        key = (slo.service, slo.labels)
        if key not in by_labels:
            doc: dict[str, Any] = {"apiVersion": "slowatch/v1", "service": slo.service}
            if slo.labels:
                doc["labels"] = dict(slo.labels)
            doc["slos"] = []
            by_labels[key] = doc
            out.setdefault(slo.service, []).append(doc)
        by_labels[key]["slos"].append(native_slo(slo))
        notes += _extras_note(slo, "slowatch/v1")
    return out, notes
