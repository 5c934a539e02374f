"""SLOs -> documents of a format (plain data, keys in a fixed order), and the one serialiser.

The generators return data so tests compare structures, not text; ``dump`` alone decides how it
looks on disk. What a format cannot carry is returned as a note, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import yaml

from slowatch.core.conventions import TICKET, rfc3339
from slowatch.core.model import (
    EVENTS,
    SLO,
    CalendarWindow,
    CompositeSLI,
    Exclusion,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
    Window,
)
from slowatch.core.windows import format_duration
from slowatch.formats.common import slug
from slowatch.formats.openslo import (
    BUDGET_CONSUMED,
    COMPONENTS,
    COMPOSITE_OBJECTIVE,
    RUNBOOK_URL,
    TARGET_LABEL,
    V1,
    WEIGHTING,
    rows_for_window,
)

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


def _exclusions_note(slo: SLO, fmt: str) -> list[str]:
    """Exclusions (maintenance windows, budget adjustments) have no field in OpenSLO v1 or Sloth."""
    if not slo.exclusions:
        return []
    reasons = "; ".join(e.reason for e in slo.exclusions)
    return [f"{slo.id}: {fmt} has no field for exclusions: {len(slo.exclusions)} dropped ({reasons}); the "
            f"{fmt} SLO counts those events against its budget; keep the slowatch/v1 file for them"]


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
    # Composites are written by _openslo_components (objectives with compositeWeight), never as one indicator.
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


def _openslo_components(slo: SLO, every: Mapping[str, SLO]) -> tuple[list[dict[str, Any]], str, list[str]]:
    """A composite's objectives (OpenSLO v1, the Go SDK's SLOObjective: an inline indicator, the
    component's target and compositeWeight, one per component), its budgetingMethod and notes."""
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    objectives, methods, notes = [], set(), []
    for c in sli.components:
        part = every[c.slo]
        objective: dict[str, Any] = {"displayName": c.slo}
        if isinstance(part.sli, CompositeSLI):
            # OpenSLO has no composite of composites: the objective names what it stands for.
            objective["indicatorRef"] = slug(c.slo)
            notes.append(f"{slo.id}: OpenSLO has no composite of composites: the objective for {c.slo} refers to "
                         f"an SLI {slug(c.slo)!r} that is not written (slowatch reads {COMPONENTS} instead)")
            extra: dict[str, Any] = {}
        else:
            indicator, extra, method = _openslo_indicator(part)
            objective["indicator"] = {"metadata": {"name": part.name}, "spec": indicator}
            methods.add(method)
        objectives.append({**objective, **extra, "target": _fraction(part.objective_percent),
                           "compositeWeight": c.weight})
    if len(methods) > 1:
        notes.append(f"{slo.id}: OpenSLO has one budgetingMethod per SLO and this composite's components use "
                     f"{' and '.join(sorted(methods))}: other OpenSLO tools may refuse it "
                     f"(slowatch reads {COMPONENTS})")
    return objectives, "Timeslices" if methods == {"Timeslices"} else "Occurrences", notes


def openslo_slo(slo: SLO, every: Mapping[str, SLO] | None = None) -> dict[str, Any]:
    """``every``: the SLOs a composite's components are found in (by id)."""
    metadata: dict[str, Any] = {"name": slo.name}
    if slo.labels:
        metadata["labels"] = dict(slo.labels)
    annotations = {}
    if slo.alerting.budget_consumed:
        annotations[BUDGET_CONSUMED] = ",".join(f"{p:g}" for p in slo.alerting.budget_consumed)
    if slo.alerting.runbook_url:
        annotations[RUNBOOK_URL] = slo.alerting.runbook_url
    spec: dict[str, Any] = {}
    if slo.description:
        spec["description"] = slo.description
    spec["service"] = slo.service
    if isinstance(slo.sli, CompositeSLI):
        objectives, method, _ = _openslo_components(slo, every or {})
        annotations[COMPONENTS] = ",".join(c.slo for c in slo.sli.components)
        annotations[COMPOSITE_OBJECTIVE] = repr(slo.objective_percent)
        if slo.sli.weighting == EVENTS:
            annotations[WEIGHTING] = EVENTS
    else:
        indicator, objective_extra, method = _openslo_indicator(slo)
        spec["indicator"] = {"metadata": {"name": slo.name}, "spec": indicator}
        objectives = [{"displayName": slo.name, **objective_extra, "target": _fraction(slo.objective_percent)}]
    if annotations:
        metadata["annotations"] = annotations
    spec.update({"timeWindow": [_openslo_window(slo.window)], "budgetingMethod": method, "objectives": objectives})
    policies = _openslo_alerting(slo)
    if policies:
        spec["alertPolicies"] = policies
    return {"apiVersion": V1, "kind": "SLO", "metadata": metadata, "spec": spec}


def to_openslo(slos: Sequence[SLO]) -> tuple[Documents, list[str]]:
    """Per service: a Service document, then one SLO document per SLO (indicator and alert
    policy inline, so each file stands alone)."""
    out: Documents = {}
    notes: list[str] = []
    every = {s.id: s for s in slos}
    for slo in slos:
        docs = out.setdefault(slo.service, [
            {"apiVersion": V1, "kind": "Service", "metadata": {"name": slo.service}, "spec": {}}
        ])
        docs.append(openslo_slo(slo, every))
        notes += _extras_note(slo, "OpenSLO", kept_as_targets=True)
        if isinstance(slo.sli, CompositeSLI):
            notes += _openslo_components(slo, every)[2]
        notes += _exclusions_note(slo, "OpenSLO")
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
    if isinstance(sli, CompositeSLI):
        composite: dict[str, Any] = {"components": [{"slo": c.slo, "weight": c.weight} for c in sli.components]}
        if sli.weighting == EVENTS:
            composite["weighting"] = EVENTS
        return {"composite": composite}
    return {"throughput": {"query": sli.query, "minimum": sli.minimum, "slice": format_duration(sli.slice)}}


def _native_exclusion(e: Exclusion) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if e.start is not None:
        out["start"] = rfc3339(e.start)
    if e.rrule is None:
        assert e.end is not None  # a one-off has both ends
        out["end"] = rfc3339(e.end)
    else:
        out.update({"rrule": e.rrule, "duration": format_duration(e.duration), "timezone": e.timezone})
    out["reason"] = e.reason
    return out


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
    if slo.exclusions:  # the file's and the SLO's own, all written on the SLO
        entry["exclusions"] = [_native_exclusion(e) for e in slo.exclusions]
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
