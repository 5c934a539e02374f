"""OpenSLO (``apiVersion: openslo/v1``, and ``openslo/v1alpha`` where it differs) -> slowatch/v1.

Specification: https://github.com/OpenSLO/OpenSLO (README, "Object types"). The kinds SLO, SLI,
Service, AlertPolicy, AlertCondition, AlertNotificationTarget and DataSource may be spread over
the documents of one file and the files of a directory: ``Catalog`` holds every named object, so
``indicatorRef``, ``alertPolicyRef``, ``conditionRef``, ``targetRef`` and ``metricSourceRef``
resolve wherever the object was written.

How each construct maps (and what is refused, with what slowatch does instead):

    ratioMetric counter: true      selectors of raw counters: slowatch takes increase() of them
    ratioMetric counter: false     queries already counting per window: the raw form, {{.window}}
    ratioMetric raw (rawType)      a precomputed ratio: errors (or good) over a constant total of 1
    thresholdMetric, op lt/lte     latency, Occurrences: the query is a histogram's _bucket selector
    thresholdMetric, op gt/gte     throughput, Timeslices: a slice is good when the query >= value
    timeWindow rolling             its duration; calendar: 1M (month) or 1w (ISO week), aligned start
    objectives                     one SLO each: the SLO's name, then -displayName (or -index)
    AlertCondition burnrate        must be rows of slowatch's burn-rate table (SRE workbook 5-8)
    slowatch/* annotations         what OpenSLO has no field for (budget-consumed alerts, runbook)
    composite (v1)                 objectives carrying indicator/indicatorRef and compositeWeight: see below

Composite SLOs (v1 only; v1alpha has none). The shape followed is OpenSLO's Go SDK
(github.com/OpenSLO/go-sdk, pkg/openslo/v1/slo.go: ``SLOObjective.Indicator``/``IndicatorRef``/
``CompositeWeight``, "'indicator' or 'indicatorRef' fields must either be defined on the 'spec'
level (standard SLOs) or on the 'spec.objectives[*]' level (composite SLOs)", compositeWeight > 0):
an SLO whose objectives each carry their own indicator is a composite of them. Each objective
becomes a component SLO of the same service, named as several objectives are (the SLO's name,
then -displayName or -index), with its target, the SLO's window and no alerts of its own; the
SLO itself becomes ``sli.composite`` over them with ``compositeWeight`` (default 1) as weights.
Its objective is ``slowatch/composite-objective`` when written, else the weighted mean of the
objectives' targets (what the composite SLI is when every component meets its target exactly).
``convert --to openslo`` writes slowatch's composites this way, with ``slowatch/components``
naming the SLOs the objectives stand for (read back, no component SLO is made: they are those)
and ``slowatch/composite-weighting`` for ``weighting: events``, which OpenSLO has no field for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import promql_parser

from slowatch.core.conventions import TICKET
from slowatch.core.measure import ONE_EVENT_PER_WINDOW
from slowatch.core.model import AlertExtras, CalendarWindow, RollingWindow, ThroughputSLI, nominal_length
from slowatch.core.promql import WINDOW_PLACEHOLDER
from slowatch.core.windows import BurnRateAlertWindow, DurationError, alert_windows_for, parse_duration
from slowatch.errors import SpecProblem
from slowatch.formats.common import Native, Problems, Where, mapping, show, slug, text, unknown_keys

V1, V1ALPHA = "openslo/v1", "openslo/v1alpha"
API_VERSIONS = (V1, V1ALPHA)
KINDS = ("SLO", "SLI", "Service", "AlertPolicy", "AlertCondition", "AlertNotificationTarget", "DataSource")

# Annotations carrying what OpenSLO has no field for; written by `convert --to openslo`.
BUDGET_CONSUMED = "slowatch/budget-consumed"
RUNBOOK_URL = "slowatch/runbook-url"
ANNOTATIONS = (BUDGET_CONSUMED, RUNBOOK_URL)
# A composite's: the component SLO ids its objectives stand for (comma-separated, in order), its
# weighting when not weights, and its objective (a percent).
COMPONENTS = "slowatch/components"
WEIGHTING = "slowatch/composite-weighting"
COMPOSITE_OBJECTIVE = "slowatch/composite-objective"
# An objective's keys that make its SLO a composite (OpenSLO v1), and its weight there.
_COMPOSITE_KEYS = ("indicator", "indicatorRef")
_WEIGHT = "compositeWeight"
# The label naming an alert's notification targets (comma-separated): the specification leaves
# delivery to the implementation and suggests a label Alertmanager routes on.
TARGET_LABEL = "notification_target"

# A total of exactly one event per window (built where all measuring PromQL is: core/measure.py).
ONE_PER_WINDOW = ONE_EVENT_PER_WINDOW

# OpenSLO's duration units beyond Prometheus' (spec: "Duration shorthand", m h d w M Q Y).
_CALENDAR_UNITS = {"1M": "month", "1w": "week"}
_LONG_UNITS = re.compile(r"^\d+[MQY]$")
_PROMETHEUS = "prometheus"


@dataclass(frozen=True)
class _Alerting:
    """An SLO's alert policies read: the slowatch/v1 alerting, the burn-rate conditions (spec,
    where, notification targets) and the targets of policies that only alert on no data."""

    policy: dict[str, Any]
    conditions: list[Any]
    no_data_targets: set[str]


@dataclass(frozen=True)
class Obj:
    """One OpenSLO object: where it was written and its mapping."""

    where: Where
    data: dict[str, Any]

    @property
    def spec(self) -> Any:
        return self.data.get("spec")


@dataclass
class Catalog:
    """Every named OpenSLO object of every file being loaded, by kind and metadata.name."""

    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)

    def add(self, data: dict[str, Any], where: Where) -> SpecProblem | None:
        """Adds an object; a second one of the same kind and name is a problem (a reference to
        it would be ambiguous). SLOs are told apart by their ids instead."""
        kind, meta = data.get("kind"), data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not (is_openslo(data) and isinstance(kind, str) and isinstance(name, str)):
            return None
        first = self.objects.setdefault((kind, name), Obj(where, data))
        if first.where == where or kind == "SLO":
            return None
        return where.at("metadata", "name").problem(
            f"a second {kind} named {name!r}: the first is in {first.where.file} at {first.where.shown}; rename one"
        )

    def find(self, kind: str, name: object, where: Where, problems: Problems) -> Obj | None:
        if isinstance(name, str) and (kind, name) in self.objects:
            return self.objects[(kind, name)]
        known = sorted(n for k, n in self.objects if k == kind)
        listed = f" (defined: {', '.join(known)})" if known else ""
        problems.append(where.problem(
            f"no {kind} named {show(name)} in the files being loaded{listed}: define it in a document "
            f"`kind: {kind}` with that metadata.name, or write it inline"
        ))
        return None


def is_openslo(data: dict[str, Any]) -> bool:
    return data.get("apiVersion") in API_VERSIONS


def read(data: dict[str, Any], where: Where, catalog: Catalog, problems: Problems) -> list[Native]:
    """One OpenSLO document -> its slowatch/v1 documents (only SLOs make any); the other kinds
    are checked where an SLO uses them, and for their kind here."""
    kind = data.get("kind")
    if kind not in KINDS:
        problems.append(where.at("kind").problem(
            f"unknown OpenSLO kind {show(kind)}: slowatch reads {', '.join(KINDS)}"
        ))
        return []
    if kind == "SLO":
        return _Reader(where, catalog, problems, data["apiVersion"]).slo(data)
    if kind == "DataSource":
        _datasource_type(data, where, problems)
    return []


def _datasource_type(data: dict[str, Any], where: Where, problems: Problems) -> None:
    spec = data.get("spec")
    kind = spec.get("type") if isinstance(spec, dict) else None
    if not (isinstance(kind, str) and kind.lower() == _PROMETHEUS):
        problems.append(where.at("spec", "type").problem(
            f"data source type {show(kind)} is not supported: slowatch reads Prometheus (and "
            "Prometheus-compatible APIs) at SLOWATCH_PROMETHEUS_URL; write `type: Prometheus`"
        ))


def _number(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return Decimal(repr(value))
    except InvalidOperation:
        return None


def _percent(value: Decimal) -> float | int:
    out = float(value)
    return int(out) if out == int(out) else out


class _Reader:
    def __init__(self, where: Where, catalog: Catalog, problems: Problems, version: str) -> None:
        self.where, self.catalog, self.problems, self.version = where, catalog, problems, version
        self.where_spec: dict[str, Any] = {}

    def fail(self, where: Where, message: str) -> None:
        self.problems.append(where.problem(message))

    # --- the SLO --------------------------------------------------------------------------------

    def slo(self, data: dict[str, Any]) -> list[Native]:
        w = self.where
        unknown_keys(data, ("apiVersion", "kind", "metadata", "spec"), w, self.problems)
        meta = mapping(data.get("metadata"), w.at("metadata"), self.problems, "metadata: {name: login}")
        spec = mapping(data.get("spec"), w.at("spec"), self.problems, "spec: {service: auth, ...}")
        if meta is None or spec is None:
            return []
        unknown_keys(meta, ("name", "displayName", "labels", "annotations", "namespace"), w.at("metadata"),
                     self.problems)
        name = text(meta.get("name"), w.at("metadata", "name"), self.problems, "name: login-availability")
        s = w.at("spec")
        known = ("description", "service", "indicator", "indicatorRef", "timeWindow", "budgetingMethod",
                 "objectives", "alertPolicies")
        if self.version == V1ALPHA:
            known = (*known[:4], "timeWindows", *known[5:])
        unknown_keys(spec, known, s, self.problems)
        service = text(spec.get("service"), s.at("service"), self.problems, "service: auth")
        labels = self.labels(meta.get("labels"), w.at("metadata", "labels"))
        alerting = self.alerting(spec.get("alertPolicies"), s.at("alertPolicies"), meta.get("annotations"),
                                 w.at("metadata", "annotations"))
        window_key = "timeWindows" if self.version == V1ALPHA else "timeWindow"
        window = self.window(spec.get(window_key), s.at(window_key))
        method = spec.get("budgetingMethod")
        if method not in ("Occurrences", "Timeslices", "RatioTimeslices"):
            self.fail(s.at("budgetingMethod"),
                      f"budgetingMethod must be Occurrences, Timeslices or RatioTimeslices, got {show(method)}")
            method = None
        objectives = spec.get("objectives")
        if not isinstance(objectives, list) or not objectives:
            self.indicator(spec, s)
            self.fail(s.at("objectives"), "objectives must list at least one objective: - {target: 0.999}")
            return []
        self.where_spec = spec
        if self.version == V1 and any(isinstance(o, dict) and any(k in o for k in _COMPOSITE_KEYS)
                                      for o in objectives):
            for key in _COMPOSITE_KEYS:
                if key in spec:
                    self.fail(s.at(key), "a composite SLO's indicators are on its objectives (each with "
                              "compositeWeight), not on the SLO as well: remove this one")
            return self.composite(objectives, s, name or "", service or "", labels, window, method or "", alerting,
                                  meta.get("annotations"), spec.get("description"))
        indicator = self.indicator(spec, s)
        natives = []
        for index, objective in enumerate(objectives):
            ow = s.at("objectives", index)
            if not isinstance(objective, dict):
                self.fail(ow, f"expected a mapping like {{displayName: ..., target: 0.999}}, got {show(objective)}")
                continue
            # Checked even when the SLO's name, service or window is wrong: every problem at once.
            native = self.objective(objective, ow, name or "", len(objectives), index, service or "", labels,
                                    window, method or "", indicator, alerting, spec.get("description"))
            if native is not None and name and service and window and method:
                natives.append(native)
        return natives

    def labels(self, value: object, w: Where) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(w, f"expected a mapping of label names to values, got {show(value)}")
            return {}
        out = {}
        for key, given in value.items():
            v = given[0] if isinstance(given, list) and len(given) == 1 else given  # one value maps exactly
            if not isinstance(v, str | int | float) or isinstance(v, bool):
                self.fail(w.at(str(key)), f"a label takes one text value in slowatch, got {show(v)}")
                continue
            out[str(key)] = str(v)
        return out

    # --- windows --------------------------------------------------------------------------------

    def window(self, value: object, w: Where) -> str | dict[str, str] | None:
        if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
            self.fail(w, f"expected a list of exactly one window, got {show(value)}: write "
                         "`- {duration: 30d, isRolling: true}`")
            return None
        item, iw = value[0], w.at(0)
        if self.version == V1ALPHA:
            return self.window_v1alpha(item, iw)
        unknown_keys(item, ("duration", "isRolling", "calendar"), iw, self.problems)
        duration = item.get("duration")
        if not isinstance(duration, str):
            self.fail(iw.at("duration"), f"expected a duration like 30d or 1M, got {show(duration)}")
            return None
        rolling = item.get("isRolling", "calendar" not in item)
        if rolling is True:
            if "calendar" in item:
                self.fail(iw.at("calendar"), "a rolling window has no calendar: remove it or write isRolling: false")
            if _LONG_UNITS.match(duration):
                self.fail(iw.at("duration"), f"a rolling window of {duration!r} has no fixed length: slowatch's "
                          "rolling windows are fixed durations; write e.g. 30d (or isRolling: false for a "
                          "calendar month)")
                return None
            return duration  # validated as a slowatch window (Prometheus durations, w and d included)
        if rolling is not False:
            self.fail(iw.at("isRolling"), f"expected true or false, got {show(rolling)}")
            return None
        return self.calendar(duration, item.get("calendar"), iw)

    def calendar(self, duration: str, calendar: object, iw: Where) -> dict[str, str] | None:
        unit = _CALENDAR_UNITS.get(duration)
        if unit is None:
            self.fail(iw.at("duration"), f"a calendar window of {duration!r} is not supported: slowatch's "
                      "calendar windows are a month (duration: 1M) or an ISO week (duration: 1w)")
            return None
        cal = mapping(calendar, iw.at("calendar"), self.problems,
                      "calendar: {startTime: 2024-01-01 00:00:00, timeZone: UTC}")
        if cal is None:
            return None
        unknown_keys(cal, ("startTime", "timeZone"), iw.at("calendar"), self.problems)
        zone = cal.get("timeZone", "UTC")
        start = cal.get("startTime")
        if start is not None:
            self.aligned(start, unit, iw.at("calendar", "startTime"))
        return {"calendar": unit, "timezone": str(zone)}

    def aligned(self, start: object, unit: str, w: Where) -> None:
        if isinstance(start, str):
            try:
                start = datetime.fromisoformat(start.strip())
            except ValueError:
                self.fail(w, f"expected a time like 2024-01-01 00:00:00, got {start!r}")
                return
        if isinstance(start, date) and not isinstance(start, datetime):
            start = datetime(start.year, start.month, start.day)
        if not isinstance(start, datetime):
            self.fail(w, f"expected a time like 2024-01-01 00:00:00, got {show(start)}")
            return
        midnight = start.time() == datetime.min.time()
        ok = midnight and (start.day == 1 if unit == "month" else start.weekday() == 0)
        if not ok:
            first = "the 1st of each month" if unit == "month" else "each Monday (ISO weeks)"
            self.fail(w, f"slowatch's calendar windows start at 00:00 on {first} in timeZone, not at "
                         f"{start:%Y-%m-%d %H:%M:%S}: write e.g. startTime: 2024-01-01 00:00:00")

    def window_v1alpha(self, item: dict[str, Any], iw: Where) -> str | dict[str, str] | None:
        unknown_keys(item, ("unit", "count", "isRolling", "calendar"), iw, self.problems)
        unit, count = item.get("unit"), item.get("count")
        units = {"Second": "s", "Minute": "m", "Hour": "h", "Day": "d", "Week": "w", "Month": "M",
                 "Quarter": "Q", "Year": "Y"}
        if unit not in units or isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            self.fail(iw, f"expected unit (Day, Week, Month, ...) and a positive count, got unit {show(unit)}, "
                          f"count {show(count)}")
            return None
        duration = f"{count}{units[unit]}"
        if item.get("isRolling", True):
            if _LONG_UNITS.match(duration):
                self.fail(iw.at("unit"), f"a rolling window of {count} {unit} has no fixed length: write it in "
                          "days (unit: Day), e.g. count: 30")
                return None
            return duration
        cal = item.get("calendar") or {}
        if isinstance(cal, dict) and "timeZone" not in cal:
            cal = {**cal, "timeZone": "UTC"}
        return self.calendar(duration, cal, iw)

    # --- the indicator --------------------------------------------------------------------------

    def indicator(self, spec: dict[str, Any], s: Where) -> tuple[dict[str, Any], Where] | None:
        """The SLI's spec mapping and where it was written (inline, or the SLI object referenced)."""
        if self.version == V1ALPHA:
            ind = spec.get("indicator")
            if ind is None:
                return None  # v1alpha: ratioMetrics on each objective instead
            got = mapping(ind, s.at("indicator"), self.problems, "indicator: {thresholdMetric: ...}")
            return (got, s.at("indicator")) if got is not None else None
        inline, ref = spec.get("indicator"), spec.get("indicatorRef")
        if (inline is None) == (ref is None):
            self.fail(s, "write exactly one of indicator (inline SLI) or indicatorRef (the name of an SLI)")
            return None
        if ref is not None:
            obj = self.catalog.find("SLI", ref, s.at("indicatorRef"), self.problems)
            if obj is None:
                return None
            return self.sli_spec(obj.data, obj.where)
        ind = mapping(inline, s.at("indicator"), self.problems, "indicator: {metadata: ..., spec: ...}")
        return self.sli_spec(ind, s.at("indicator")) if ind is not None else None

    def sli_spec(self, sli: dict[str, Any], w: Where) -> tuple[dict[str, Any], Where] | None:
        unknown_keys(sli, ("apiVersion", "kind", "metadata", "spec"), w, self.problems)
        spec = mapping(sli.get("spec"), w.at("spec"), self.problems, "spec: {ratioMetric: ...}")
        return (spec, w.at("spec")) if spec is not None else None

    def query(self, metric: object, w: Where) -> tuple[str, Where] | None:
        """A metricSource's Prometheus query (v1), or a v1alpha {source, queryType, query}."""
        m = mapping(metric, w, self.problems, "good: {metricSource: {type: Prometheus, spec: {query: ...}}}")
        if m is None:
            return None
        if self.version == V1ALPHA:
            unknown_keys(m, ("source", "queryType", "query", "metadata"), w, self.problems)
            if str(m.get("source", "")).lower() != _PROMETHEUS:
                self.fail(w.at("source"), f"source {show(m.get('source'))} is not supported: slowatch reads "
                          "Prometheus; write `source: prometheus`")
            q = text(m.get("query"), w.at("query"), self.problems, "query: http_requests_total{job=\"api\"}")
            return (q, w.at("query")) if q is not None else None
        unknown_keys(m, ("metricSource",), w, self.problems)
        mw = w.at("metricSource")
        source = mapping(m.get("metricSource"), mw, self.problems, "metricSource: {type: Prometheus, spec: ...}")
        if source is None:
            return None
        unknown_keys(source, ("metricSourceRef", "type", "spec"), mw, self.problems)
        ref, kind = source.get("metricSourceRef"), source.get("type")
        if ref is not None:
            # Its type is checked where the DataSource is written (read(), once for every user).
            self.catalog.find("DataSource", ref, mw.at("metricSourceRef"), self.problems)
        if (ref is None or kind is not None) and not (isinstance(kind, str) and kind.lower() == _PROMETHEUS):
            self.fail(mw.at("type"), f"metric source type {show(kind)} is not supported: slowatch reads "
                      "Prometheus (and Prometheus-compatible APIs); write `type: Prometheus` with spec.query")
            return None
        spec = mapping(source.get("spec"), mw.at("spec"), self.problems, "spec: {query: ...}")
        if spec is None:
            return None
        unknown_keys(spec, ("query",), mw.at("spec"), self.problems)
        q = text(spec.get("query"), mw.at("spec", "query"), self.problems, "query: http_requests_total{job=\"api\"}")
        return (q.strip(), mw.at("spec", "query")) if q is not None else None

    def selector(self, query: str, w: Where) -> bool:
        try:
            node = promql_parser.parse(query.replace(WINDOW_PLACEHOLDER, "5m"))
        except ValueError:
            return True  # the slowatch/v1 validation reports the syntax error at this place
        if type(node).__name__ != "VectorSelector":
            self.fail(w, f"counter: true takes a series selector of a counter (slowatch takes increase() of "
                      f"it), got the expression {query!r}: write e.g. http_requests_total{{job=\"api\"}}, or "
                      f"counter: false with a query counting events over {WINDOW_PLACEHOLDER}")
            return False
        return True

    def ratio(self, r: dict[str, Any], w: Where, places: dict[str, Where]) -> dict[str, Any] | None:
        if self.version == V1ALPHA:
            unknown_keys(r, ("incremental", "good", "bad", "total"), w, self.problems)
            counter = r.get("incremental", True)
            counter_at = w.at("incremental")
        else:
            unknown_keys(r, ("counter", "good", "bad", "total", "rawType", "raw"), w, self.problems)
            counter, counter_at = r.get("counter"), w.at("counter")
        if "raw" in r or "rawType" in r:
            return self.raw_ratio(r, w, places)
        if counter not in (True, False):
            self.fail(counter_at, f"expected counter: true (raw counters, slowatch takes increase()) or false "
                      f"(queries already counting events per {WINDOW_PLACEHOLDER}), got {show(counter)}")
            return None
        if ("good" in r) == ("bad" in r):
            self.fail(w, "write exactly one of good or bad, and total")
            return None
        part = "good" if "good" in r else "bad"
        ours = "good" if part == "good" else "errors"
        first, second = self.query(r.get(part), w.at(part)), self.query(r.get("total"), w.at("total"))
        if first is None or second is None:
            return None
        (q, qw), (t, tw) = first, second
        if counter:
            if not (self.selector(q, qw) and self.selector(t, tw)):
                return None
            places.update({f"sli.ratio.{ours}": qw, "sli.ratio.total": tw})
            return {ours: q, "total": t}
        places.update({f"sli.ratio.{ours}_query": qw, "sli.ratio.total_query": tw})
        return {f"{ours}_query": q, "total_query": t}

    def raw_ratio(self, r: dict[str, Any], w: Where, places: dict[str, Where]) -> dict[str, Any] | None:
        kind = r.get("rawType")
        if kind not in ("success", "failure"):
            self.fail(w.at("rawType"), f"expected rawType: success or failure, got {show(kind)}")
            return None
        found = self.query(r.get("raw"), w.at("raw"))
        if found is None:
            return None
        q, qw = found
        ours = "good_query" if kind == "success" else "errors_query"
        places[f"sli.ratio.{ours}"] = qw
        return {ours: q, "total_query": ONE_PER_WINDOW}

    # --- one objective -> one slowatch/v1 document ----------------------------------------------

    def objective(
        self, o: dict[str, Any], ow: Where, slo_name: str, count: int, index: int, service: str,
        labels: dict[str, str], window: str | dict[str, str] | None, method: str,
        indicator: tuple[dict[str, Any], Where] | None, alerting: _Alerting | None,
        description: object,
    ) -> Native | None:
        known: tuple[str, ...] = ("displayName", "op", "value", "target", "targetPercent", "timeSliceTarget",
                                  "timeSliceWindow", "indicator", "indicatorRef", "compositeWeight")
        if self.version == V1ALPHA:
            known = (*known, "ratioMetrics")
        unknown_keys(o, known, ow, self.problems)
        if self.version == V1ALPHA:
            for composite in (*_COMPOSITE_KEYS, _WEIGHT):
                if composite in o:
                    self.fail(ow.at(composite), "openslo/v1alpha has no composite SLOs: write the SLO as "
                              "openslo/v1 (an indicator and compositeWeight on each objective)")
        elif _WEIGHT in o:
            self.fail(ow.at(_WEIGHT), "compositeWeight goes with an objective's own indicator or indicatorRef "
                      "(a composite SLO): add one, or remove compositeWeight")
        percent = self.target(o, ow)
        if self.version == V1ALPHA and "ratioMetrics" in o:
            ratio = mapping(o["ratioMetrics"], ow.at("ratioMetrics"), self.problems, "ratioMetrics: {...}")
            indicator = ({"ratioMetrics": ratio}, ow) if ratio is not None else None
        if indicator is None and self.version == V1ALPHA and "indicator" not in self.where_spec:
            self.fail(ow, "an objective needs ratioMetrics, or the SLO an indicator (thresholdMetric)")
        if indicator is None or percent is None:
            return None
        display = o.get("displayName")
        suffix = slug(display) if isinstance(display, str) else ""
        name = slo_name if count == 1 else f"{slo_name}-{suffix or index}"
        places: dict[str, Where] = {}
        sli = self.sli(indicator, o, ow, method, places)
        if sli is None or window is None:
            return None
        entry: dict[str, Any] = {"name": name, "objective": percent, "window": window, "sli": sli}
        if isinstance(description, str) and description.strip():
            entry["description"] = description.strip()
        s = self.where.at("spec")
        native_places = {
            "slos[0]": ow,
            "service": s.at("service"),
            "labels": self.where.at("metadata", "labels"),
            "slos[0].name": self.where.at("metadata", "name"),
            "slos[0].description": s.at("description"),
            "slos[0].objective": ow.at("targetPercent" if "targetPercent" in o else "target"),
            "slos[0].window": s.at("timeWindows" if self.version == V1ALPHA else "timeWindow", 0),
            "slos[0].sli": indicator[1],
            "slos[0].alerting": s.at("alertPolicies"),
            **{f"slos[0].{k}": v for k, v in places.items()},
        }
        routed = self.routed(alerting, window, sli, entry)
        if routed is None:
            return None
        data = {"apiVersion": "slowatch/v1", "service": service, "labels": labels, "slos": [entry]}
        return Native(data=data, where=self.where, places=native_places, extras={0: routed} if routed else {})

    def routed(self, alerting: _Alerting | None, window: str | dict[str, str], sli: dict[str, Any],
               entry: dict[str, Any]) -> tuple[tuple[str, AlertExtras], ...] | None:
        """Sets ``entry``'s alerting; returns the alert extras (notification targets) of each
        severity, or None when the burn-rate conditions are refused."""
        if alerting is None:
            entry["alerting"] = {"budget_consumed": [], "burn_rate": False}
            return ()
        entry["alerting"] = alerting.policy
        routed = self.rows_match(alerting.conditions, window, sli)
        if routed is None:
            return None
        if alerting.no_data_targets:
            routed.setdefault(TICKET, set()).update(alerting.no_data_targets)
        return tuple(
            (severity, AlertExtras(labels=((TARGET_LABEL, ",".join(sorted(names))),)))
            for severity, names in sorted(routed.items()) if names
        )

    # --- a composite SLO -> its components (unless named) and the composite --------------------

    def composite(
        self, objectives: list[Any], s: Where, name: str, service: str, labels: dict[str, str],
        window: str | dict[str, str] | None, method: str, alerting: _Alerting | None, annotations: object,
        description: object,
    ) -> list[Native]:
        notes = annotations if isinstance(annotations, dict) else {}
        aw = self.where.at("metadata", "annotations")
        named = [c.strip() for c in str(notes.get(COMPONENTS, "")).split(",") if c.strip()] or None
        if named is not None and len(named) != len(objectives):
            self.fail(aw.at(COMPONENTS), f"names {len(named)} component SLOs for {len(objectives)} objectives: "
                      "write one id (service/name) per objective, in order")
            return []
        natives: list[Native] = []
        components: list[dict[str, Any]] = []
        targets: list[tuple[Decimal, Decimal]] = []
        for index, o in enumerate(objectives):
            ow = s.at("objectives", index)
            if not isinstance(o, dict):
                self.fail(ow, f"expected a mapping like {{indicatorRef: ..., target: 0.999}}, got {show(o)}")
                continue
            weight = _number(o.get(_WEIGHT, 1))
            if weight is None or weight <= 0:
                self.fail(ow.at(_WEIGHT), f"compositeWeight is a number > 0, got {show(o.get(_WEIGHT))}")
                continue
            if not any(k in o for k in _COMPOSITE_KEYS):
                self.fail(ow, "every objective of a composite SLO carries its own indicator or indicatorRef")
                continue
            percent = self.target(o, ow)
            if percent is not None:
                targets.append((Decimal(repr(percent)), weight))
            if named is not None:
                components.append({"slo": named[index], "weight": _percent(weight)})
                continue
            # The objective's own indicator (inline or a reference), read as an SLO's is.
            indicator = self.indicator({k: o[k] for k in _COMPOSITE_KEYS if k in o}, ow)
            plain = {k: v for k, v in o.items() if k not in (*_COMPOSITE_KEYS, _WEIGHT)}
            # count >= 2: a component is always named apart from the composite, even alone.
            native = self.objective(plain, ow, name, max(2, len(objectives)), index, service, labels, window,
                                    method, indicator, None, description)
            if native is not None:
                natives.append(native)
                components.append({"slo": f"{service}/{native.data['slos'][0]['name']}", "weight": _percent(weight)})
        if len(components) != len(objectives) or not (name and service and window):
            return natives
        objective = self.composite_objective(notes.get(COMPOSITE_OBJECTIVE), aw.at(COMPOSITE_OBJECTIVE), targets)
        if objective is None:
            return natives
        sli: dict[str, Any] = {"composite": {"components": components}}
        weighting = notes.get(WEIGHTING)
        if weighting is not None:
            sli["composite"]["weighting"] = weighting
        entry: dict[str, Any] = {"name": name, "objective": objective, "window": window, "sli": sli}
        if isinstance(description, str) and description.strip():
            entry["description"] = description.strip()
        routed = self.routed(alerting, window, sli, entry)
        if routed is None:
            return natives
        places = {
            "slos[0]": s.at("objectives"), "service": s.at("service"), "labels": self.where.at("metadata", "labels"),
            "slos[0].name": self.where.at("metadata", "name"), "slos[0].description": s.at("description"),
            "slos[0].objective": aw.at(COMPOSITE_OBJECTIVE) if COMPOSITE_OBJECTIVE in notes else s.at("objectives"),
            "slos[0].window": s.at("timeWindow", 0), "slos[0].alerting": s.at("alertPolicies"),
            "slos[0].sli.composite.weighting": aw.at(WEIGHTING),
            **{f"slos[0].sli.composite.components[{i}]": (aw.at(COMPONENTS) if named else s.at("objectives", i))
               for i in range(len(components))},
        }
        data = {"apiVersion": "slowatch/v1", "service": service, "labels": labels, "slos": [entry]}
        return [*natives, Native(data=data, where=self.where, places=places, extras={0: routed} if routed else {})]

    def composite_objective(self, given: object, w: Where, targets: list[tuple[Decimal, Decimal]]
                            ) -> float | int | None:
        if given is not None:
            try:
                return _percent(Decimal(str(given).strip()))
            except InvalidOperation:
                self.fail(w, f"expected the composite's objective as a percent, e.g. '99.5', got {show(given)}")
                return None
        if not targets:
            return None
        total = sum((wt for _, wt in targets), Decimal(0))
        return _percent(sum((p * wt for p, wt in targets), Decimal(0)) / total)

    def target(self, o: dict[str, Any], ow: Where) -> float | int | None:
        if ("target" in o) == ("targetPercent" in o):
            self.fail(ow, "write exactly one of target (a fraction, e.g. 0.999) or targetPercent (e.g. 99.9)")
            return None
        if "targetPercent" in o:
            value = _number(o["targetPercent"])
            if value is None:
                self.fail(ow.at("targetPercent"), f"expected a number, got {show(o['targetPercent'])}")
                return None
            return _percent(value)  # the slowatch/v1 validation checks its range
        value = _number(o["target"])
        if value is None or not 0 < value < 1:
            self.fail(ow.at("target"), f"target is a fraction in (0, 1), got {show(o['target'])}: write e.g. "
                      "0.999, or targetPercent: 99.9")
            return None
        return _percent(value * 100)

    def sli(
        self, indicator: tuple[dict[str, Any], Where], o: dict[str, Any], ow: Where, method: str,
        places: dict[str, Where],
    ) -> dict[str, Any] | None:
        spec, w = indicator
        ratio_key = "ratioMetrics" if "ratioMetrics" in spec else "ratioMetric"  # v1alpha: on the objective
        unknown_keys(spec, (ratio_key, "thresholdMetric", "description") if self.version == V1 else
                     (ratio_key, "thresholdMetric"), w, self.problems)
        if (ratio_key in spec) == ("thresholdMetric" in spec):
            self.fail(w, "write exactly one of ratioMetric or thresholdMetric")
            return None
        if ratio_key in spec:
            if (method and method != "Occurrences") or "timeSliceTarget" in o or "timeSliceWindow" in o:
                self.fail(self.where.at("spec", "budgetingMethod"), f"{method} over a ratio is not supported: "
                          "slowatch counts a ratio's events over the whole window; write budgetingMethod: "
                          "Occurrences (and remove timeSliceTarget/timeSliceWindow)")
                return None
            rw = w.at(ratio_key)
            r = mapping(spec[ratio_key], rw, self.problems, "ratioMetric: {counter: true, good: ..., total: ...}")
            ratio = self.ratio(r, rw, places) if r is not None else None
            return {"ratio": ratio} if ratio is not None else None
        tw = w.at("thresholdMetric")
        found = self.query(spec["thresholdMetric"], tw)
        op, value = o.get("op"), o.get("value")
        if found is None:
            return None
        q, qw = found
        if _number(value) is None:
            self.fail(ow.at("value"), f"a thresholdMetric objective needs value (the threshold), got {show(value)}")
            return None
        if op in ("lt", "lte"):
            return self.latency(q, qw, value, method, o, ow, places)
        if op in ("gt", "gte"):
            return self.throughput(q, qw, value, method, o, ow, places)
        self.fail(ow.at("op"), f"expected op lt, lte (latency) or gt, gte (throughput), got {show(op)}")
        return None

    def latency(
        self, q: str, qw: Where, value: object, method: str, o: dict[str, Any], ow: Where, places: dict[str, Where]
    ) -> dict[str, Any] | None:
        if method and method != "Occurrences":
            self.fail(self.where.at("spec", "budgetingMethod"), f"a latency threshold with {method} is not "
                      "supported: slowatch counts the requests under the threshold in a histogram's buckets; "
                      "write budgetingMethod: Occurrences")
            return None
        try:
            node = promql_parser.parse(q)
        except ValueError:
            node = None
        name = getattr(node, "name", None) or ""
        if type(node).__name__ != "VectorSelector" or not name.endswith("_bucket") or not q.startswith(name):
            self.fail(qw, f"a latency threshold is measured from a histogram's buckets: write query as the "
                      f"_bucket selector, e.g. http_request_duration_seconds_bucket{{job=\"api\"}}, got {q!r}")
            return None
        places.update({"sli.latency.histogram": qw, "sli.latency.selector": qw,
                       "sli.latency.threshold": ow.at("value")})
        return {"latency": {"histogram": name.removesuffix("_bucket"), "selector": q[len(name):].strip() or "{}",
                            "threshold": value}}

    def throughput(
        self, q: str, qw: Where, value: object, method: str, o: dict[str, Any], ow: Where, places: dict[str, Where]
    ) -> dict[str, Any] | None:
        if method and method != "Timeslices":
            self.fail(self.where.at("spec", "budgetingMethod"), f"a minimum rate with {method} is not supported: "
                      "slowatch counts good time slices (the query >= value in a slice); write budgetingMethod: "
                      "Timeslices with timeSliceWindow")
            return None
        if "timeSliceTarget" in o:
            self.fail(ow.at("timeSliceTarget"), "a threshold slice is good when the query is >= value (slowatch "
                      "reads it once per slice), so timeSliceTarget has no meaning here: remove it")
            return None
        out: dict[str, Any] = {"query": q, "minimum": value}
        places.update({"sli.throughput.query": qw, "sli.throughput.minimum": ow.at("value")})
        if "timeSliceWindow" in o:
            given = o["timeSliceWindow"]
            # A bare number is minutes (spec: "Default interpretation of unit ... in minutes").
            out["slice"] = f"{given}m" if isinstance(given, int) and not isinstance(given, bool) else given
            places["sli.throughput.slice"] = ow.at("timeSliceWindow")
        return {"throughput": out}

    # --- alerting -------------------------------------------------------------------------------

    def alerting(self, policies: object, w: Where, annotations: object, aw: Where) -> _Alerting | None:
        """(slowatch/v1 alerting, the burn-rate conditions with where they were written), or None
        when the SLO has no alert policy (then no alerts, as in OpenSLO)."""
        extra = self.annotations(annotations, aw)
        if not policies:
            if extra:
                alone = {**extra, "burn_rate": False, "budget_consumed": extra.get("budget_consumed", [])}
                return _Alerting(alone, [], set())
            return None
        if not isinstance(policies, list):
            self.fail(w, f"expected a list of alert policies, got {show(policies)}")
            return None
        rows: list[Any] = []
        no_data = False
        no_data_targets: set[str] = set()
        for index, item in enumerate(policies):
            pw = w.at(index)
            found = self.ref_or_inline(item, pw, "AlertPolicy", "alertPolicyRef")
            if found is None:
                continue
            spec, sw = found
            unknown_keys(spec, ("description", "alertWhenNoData", "alertWhenResolved", "alertWhenBreaching",
                                "conditions", "notificationTargets"), sw, self.problems)
            if spec.get("alertWhenNoData") is True:
                no_data = True
            if spec.get("alertWhenBreaching", True) is not True:
                self.fail(sw.at("alertWhenBreaching"), "slowatch alerts while the budget burns: alertWhenBreaching "
                          "false would leave nothing to alert on; remove the policy to turn alerts off")
            if spec.get("alertWhenResolved", True) is not True:
                self.fail(sw.at("alertWhenResolved"), "Alertmanager is told when an alert resolves (it decides "
                          "whether to notify: send_resolved in its receiver); remove alertWhenResolved: false")
            targets = self.targets(spec.get("notificationTargets"), sw.at("notificationTargets"))
            conditions = spec.get("conditions") or []
            if not isinstance(conditions, list):
                self.fail(sw.at("conditions"), f"expected a list of conditions, got {show(conditions)}")
                continue
            if not conditions:
                no_data_targets.update(targets)  # a policy without conditions only alerts on no data
            for ci, c in enumerate(conditions):
                cond = self.ref_or_inline(c, sw.at("conditions", ci), "AlertCondition", "conditionRef")
                if cond is not None:
                    rows.append((*cond, targets))
        policy: dict[str, Any] = {"burn_rate": bool(rows), "budget_consumed": []}
        if no_data:
            policy["no_data"] = "alert"
        policy.update(extra)
        return _Alerting(policy, rows, no_data_targets)

    def targets(self, value: object, w: Where) -> frozenset[str]:
        """The names of a policy's notification targets: the alerts carry them in the label
        TARGET_LABEL for Alertmanager to route on (as the specification suggests)."""
        if not value:
            return frozenset()
        if not isinstance(value, list):
            self.fail(w, f"expected a list of targets like - targetRef: on-call, got {show(value)}")
            return frozenset()
        names = set()
        for index, item in enumerate(value):
            tw = w.at(index)
            if isinstance(item, dict) and "targetRef" in item:
                if self.catalog.find("AlertNotificationTarget", item["targetRef"], tw.at("targetRef"), self.problems):
                    names.add(str(item["targetRef"]))
                continue
            meta = item.get("metadata") if isinstance(item, dict) else None
            name = meta.get("name") if isinstance(meta, dict) else None
            if not isinstance(name, str):
                self.fail(tw, f"expected - targetRef: <name>, or an inline target with metadata.name, got {show(item)}")
                continue
            names.add(name)
        return frozenset(names)

    def annotations(self, value: object, w: Where) -> dict[str, Any]:
        if not isinstance(value, dict):
            return {}
        out: dict[str, Any] = {}
        for key in ANNOTATIONS:
            if key not in value:
                continue
            v = value[key]
            if key == BUDGET_CONSUMED:
                parts = [p.strip() for p in str(v).split(",") if p.strip()]
                try:
                    out["budget_consumed"] = [float(p) if "." in p else int(p) for p in parts]
                except ValueError:
                    self.fail(w.at(key), f"expected percents separated by commas, e.g. '50,90', got {show(v)}")
            else:
                out["runbook_url"] = v
        return out

    def ref_or_inline(self, item: object, w: Where, kind: str, ref_key: str) -> tuple[dict[str, Any], Where] | None:
        if isinstance(item, str):
            item = {ref_key: item}
        if not isinstance(item, dict):
            self.fail(w, f"expected an inline {kind} or {{{ref_key}: <name>}}, got {show(item)}")
            return None
        if ref_key in item:
            obj = self.catalog.find(kind, item[ref_key], w.at(ref_key), self.problems)
            if obj is None:
                return None
            item, w = obj.data, obj.where
        spec = mapping(item.get("spec"), w.at("spec"), self.problems, f"spec: ... (the {kind}'s fields)")
        return (spec, w.at("spec")) if spec is not None else None

    def rows_match(
        self, conditions: list[Any], window: str | dict[str, str], sli: dict[str, Any]
    ) -> dict[str, set[str]] | None:
        """Every burnrate condition must be a row of slowatch's table for this window, and every
        row must be there: slowatch raises exactly those alerts, so anything else would not be
        honoured. Returns the notification targets of each severity's alerts (None: refused)."""
        routed: dict[str, set[str]] = {}
        if not conditions:
            return routed
        rows = _rows(window, sli)
        if rows is None:
            return routed  # the window itself is reported by the slowatch/v1 validation
        seen: set[str] = set()
        ok = True
        for spec, cw, targets in conditions:
            unknown_keys(spec, ("description", "severity", "condition"), cw, self.problems)
            c = spec.get("condition")
            if not isinstance(c, dict) or c.get("kind") != "burnrate":
                self.fail(cw.at("condition"), f"expected condition kind: burnrate, got {show(c)}")
                ok = False
                continue
            unknown_keys(c, ("kind", "op", "threshold", "lookbackWindow", "alertAfter"), cw.at("condition"),
                         self.problems)
            row = _match(rows, c, spec.get("severity"))
            if row is None:
                listed = "; ".join(_describe(r, f) for r, f in rows)
                self.fail(cw.at("condition"), "this burn-rate condition is not one slowatch raises: its alerts are "
                          f"the multi-window rows of the SRE workbook (table 5-8) for this window: {listed}")
                ok = False
                continue
            seen.add(row.long_window)
            routed.setdefault(row.severity, set()).update(targets)
        missing = [_describe(r, f) for r, f in rows if r.long_window not in seen]
        if ok and missing:
            self.fail(self.where.at("spec", "alertPolicies"), "slowatch raises every burn-rate row together; "
                      f"add conditions for: {'; '.join(missing)}")
            ok = False
        return routed if ok else None


def _rows(window: str | dict[str, str], sli: dict[str, Any]) -> list[tuple[BurnRateAlertWindow, float]] | None:
    try:
        w = (RollingWindow(parse_duration(window)) if isinstance(window, str)
             else CalendarWindow(unit="month" if window["calendar"] == "month" else "week"))
        through = sli.get("throughput")
        slice_ = parse_duration(through.get("slice", "1m")) if isinstance(through, dict) else timedelta(0)
    except (DurationError, AttributeError, TypeError):
        return None
    length = nominal_length(w)
    return [(r, r.factor(length)) for r in alert_windows_for(length, slice_)]


def _match(
    rows: list[tuple[BurnRateAlertWindow, float]], c: dict[str, Any], severity: object
) -> BurnRateAlertWindow | None:
    threshold = _number(c.get("threshold"))
    for row, factor in rows:
        same = (
            threshold is not None and abs(float(threshold) - factor) <= 1e-9 * factor
            and c.get("op", "gte") in ("gte", "gt")
            and _same_duration(c.get("lookbackWindow"), row.long_window)
            and (c.get("alertAfter") is None or _same_duration(c.get("alertAfter"), row.short_window))
            and severity in (None, row.severity)
        )
        if same:
            return row
    return None


def _same_duration(value: object, ours: str) -> bool:
    try:
        return isinstance(value, str) and parse_duration(value) == parse_duration(ours)
    except DurationError:
        return False


def _describe(row: BurnRateAlertWindow, factor: float) -> str:
    return (f"severity {row.severity}, threshold {factor:g}, lookbackWindow {row.long_window}, "
            f"alertAfter {row.short_window}")


def rows_for_window(window: RollingWindow | CalendarWindow, sli: object) -> list[tuple[BurnRateAlertWindow, float]]:
    """The burn-rate rows ``convert --to openslo`` writes as conditions (the same rows read back)."""
    length = nominal_length(window)
    slice_ = sli.slice if isinstance(sli, ThroughputSLI) else timedelta(0)
    return [(r, r.factor(length)) for r in alert_windows_for(length, slice_)]


__all__ = ["API_VERSIONS", "Catalog", "is_openslo", "read", "rows_for_window"]
