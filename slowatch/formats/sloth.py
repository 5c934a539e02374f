"""Sloth (``version: prometheus/v1`` files and ``apiVersion: sloth.slok.dev/v1`` ``kind:
PrometheusServiceLevel`` resources) -> slowatch/v1.

Specification: https://github.com/slok/sloth (pkg/prometheus/api/v1 and the Kubernetes CRD;
examples/). The resource spells keys in camelCase (errorQuery, pageAlert), the file in snake_case.

    sli.events     error_query / total_query with {{.window}}: slowatch's raw form (a rate over the
                   window is the count divided by the window's seconds, the same for both, so the
                   ratio is the count ratio)
    sli.raw        error_ratio_query: errors over a constant total of one per window
    sli.plugin     refused, naming the plugin: slowatch cannot run Sloth's Go plugins
    window         Sloth's default SLO period, 30d (Sloth's --default-slo-period)
    alerting       burn-rate alerts (page and ticket, as Sloth's); no budget-consumed alerts,
                   which Sloth does not have; labels and annotations kept per severity, the
                   alert's name as the label sloth_alertname (slowatch names its alerts itself)
"""

from __future__ import annotations

from typing import Any

from slowatch.core.conventions import RESERVED_LABELS, TICKET
from slowatch.core.model import AlertExtras
from slowatch.formats.common import Native, Problems, Where, mapping, show, unknown_keys
from slowatch.formats.openslo import ONE_PER_WINDOW

FILE_VERSION = "prometheus/v1"
API_VERSION, KIND = "sloth.slok.dev/v1", "PrometheusServiceLevel"
SLOTH_WINDOW = "30d"  # Sloth's default SLO period
NAME_LABEL = "sloth_alertname"
PAGE = "page"  # the other value of core.windows.Severity (burn-rate rows page or ticket)


def is_sloth(data: dict[str, Any]) -> bool:
    return data.get("version") == FILE_VERSION or data.get("apiVersion") == API_VERSION


def _key(snake: str, camel: bool) -> str:
    if not camel:
        return snake
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def read(data: dict[str, Any], where: Where, problems: Problems) -> list[Native]:
    camel = "apiVersion" in data
    if camel:
        unknown_keys(data, ("apiVersion", "kind", "metadata", "spec"), where, problems)
        if data.get("kind") != KIND:
            problems.append(where.at("kind").problem(f"expected kind: {KIND}, got {show(data.get('kind'))}"))
            return []
        top_where = where.at("spec")
        top = mapping(data.get("spec"), top_where, problems, "spec: {service: ..., slos: [...]}")
        if top is None:
            return []
    else:
        top, top_where = data, where
    return _Reader(camel, problems).file(top, top_where)


class _Reader:
    def __init__(self, camel: bool, problems: Problems) -> None:
        self.camel, self.problems = camel, problems

    def k(self, snake: str, body: dict[str, Any] | None = None) -> str:
        """The key as this format spells it; in a prometheus/v1 file, the camelCase spelling
        too when that is the one written (Sloth's own examples/raw-home-wifi.yml does)."""
        if body is not None and not self.camel and snake not in body and _key(snake, True) in body:
            return _key(snake, True)
        return _key(snake, self.camel)

    def fail(self, where: Where, message: str) -> None:
        self.problems.append(where.problem(message))

    def file(self, top: dict[str, Any], w: Where) -> list[Native]:
        known = ("service", "labels", "slos", self.k("slo_plugins"))
        unknown_keys(top, known if self.camel else ("version", *known), w, self.problems)
        self.plugins(top.get(self.k("slo_plugins")), w.at(self.k("slo_plugins")))
        slos = top.get("slos")
        if not isinstance(slos, list) or not slos:
            self.fail(w.at("slos"), f"slos must list at least one SLO, got {show(slos)}")
            return []
        labels = top.get("labels") or {}
        out = []
        for index, slo in enumerate(slos):
            sw = w.at("slos", index)
            if not isinstance(slo, dict):
                self.fail(sw, f"expected a mapping with name, objective and sli, got {show(slo)}")
                continue
            native = self.slo(top.get("service"), labels, slo, w, sw)
            if native is not None:
                out.append(native)
        return out

    def plugins(self, value: object, w: Where) -> None:
        if not value:
            return
        chain = value.get("chain") if isinstance(value, dict) else None
        ids = [p.get("id") for p in chain if isinstance(p, dict)] if isinstance(chain, list) else []
        named = ", ".join(str(i) for i in ids) or show(value)
        self.fail(w, f"Sloth SLO plugins ({named}) are not supported: slowatch cannot run Sloth's Go plugins; "
                     "remove them (slowatch computes budgets and burn-rate alerts itself)")

    def slo(self, service: object, labels: object, slo: dict[str, Any], top: Where, sw: Where) -> Native | None:
        unknown_keys(slo, ("name", "objective", "description", "labels", "sli", "alerting",
                           self.k("slo_plugins"), "plugins"), sw, self.problems)
        for key in (self.k("slo_plugins"), "plugins"):
            self.plugins(slo.get(key), sw.at(key))
        places: dict[str, Where] = {
            "slos[0]": sw,
            "slos[0].sli": sw.at("sli"),
            "service": top.at("service"),
            "labels": top.at("labels"),
            "slos[0].name": sw.at("name"),
            "slos[0].objective": sw.at("objective"),
            "slos[0].description": sw.at("description"),
            "slos[0].alerting": sw.at("alerting"),
        }
        sli = self.sli(slo.get("sli"), sw.at("sli"), places)
        merged = {**labels, **(slo.get("labels") or {})} if isinstance(labels, dict) else labels
        if isinstance(slo.get("labels"), dict) and slo["labels"]:
            places["labels"] = sw.at("labels")  # slowatch/v1 cannot tell the two apart: the SLO's wins
        alerting, extras = self.alerting(slo.get("alerting"), sw.at("alerting"))
        if sli is None or alerting is None:
            return None
        entry: dict[str, Any] = {
            "name": slo.get("name"), "objective": slo.get("objective"), "window": SLOTH_WINDOW, "sli": sli,
            "alerting": alerting,
        }
        if slo.get("description"):
            entry["description"] = slo["description"]
        data = {"apiVersion": "slowatch/v1", "service": service, "labels": merged, "slos": [entry]}
        return Native(data=data, where=top, places=places, extras={0: extras} if extras else {})

    def sli(self, value: object, w: Where, places: dict[str, Where]) -> dict[str, Any] | None:
        sli = mapping(value, w, self.problems, "sli: {events: {error_query: ..., total_query: ...}}")
        if sli is None:
            return None
        unknown_keys(sli, ("events", "raw", "plugin"), w, self.problems)
        given = [k for k in ("events", "raw", "plugin") if k in sli]
        if len(given) != 1:
            self.fail(w, f"write exactly one of events, raw or plugin, got {' and '.join(given) or 'none'}")
            return None
        kind = given[0]
        body = mapping(sli[kind], w.at(kind), self.problems, f"{kind}: {{...}}")
        if body is None:
            return None
        if kind == "plugin":
            self.fail(w.at("plugin"), f"Sloth SLI plugin {show(body.get('id'))} is not supported: slowatch cannot "
                      "run Sloth's Go plugins; write the queries the plugin builds as sli.events "
                      "(error_query and total_query with {{.window}})")
            return None
        if kind == "raw":
            key = self.k("error_ratio_query", body)
            unknown_keys(body, (key,), w.at("raw"), self.problems)
            places["slos[0].sli.ratio.errors_query"] = w.at("raw", key)
            return {"ratio": {"errors_query": body.get(key), "total_query": ONE_PER_WINDOW}}
        error, total = self.k("error_query", body), self.k("total_query", body)
        unknown_keys(body, (error, total), w.at("events"), self.problems)
        places["slos[0].sli.ratio.errors_query"] = w.at("events", error)
        places["slos[0].sli.ratio.total_query"] = w.at("events", total)
        return {"ratio": {"errors_query": body.get(error), "total_query": body.get(total)}}

    def alerting(self, value: object, w: Where) -> tuple[dict[str, Any] | None, tuple[tuple[str, AlertExtras], ...]]:
        if value is None:
            return {"budget_consumed": [], "burn_rate": True}, ()
        a = mapping(value, w, self.problems, "alerting: {name: ..., page_alert: ..., ticket_alert: ...}")
        if a is None:
            return None, ()
        page_key, ticket_key = self.k("page_alert", a), self.k("ticket_alert", a)
        unknown_keys(a, ("name", "labels", "annotations", page_key, ticket_key), w, self.problems)
        common_labels = self.pairs(a.get("labels"), w.at("labels"), labels=True)
        if isinstance(a.get("name"), str) and a["name"]:
            common_labels = ((NAME_LABEL, a["name"]), *common_labels)
        common_annotations = self.pairs(a.get("annotations"), w.at("annotations"), labels=False)
        extras: list[tuple[str, AlertExtras]] = []
        disabled = []
        for severity, key in ((PAGE, page_key), (TICKET, ticket_key)):
            one = a.get(key) or {}
            kw = w.at(key)
            if not isinstance(one, dict):
                self.fail(kw, f"expected a mapping with labels, annotations or disable, got {show(one)}")
                continue
            unknown_keys(one, ("disable", "labels", "annotations"), kw, self.problems)
            if one.get("disable") is True:
                disabled.append(key)
            labels = dict((*common_labels, *self.pairs(one.get("labels"), kw.at("labels"), labels=True)))
            annotations = dict((*common_annotations, *self.pairs(one.get("annotations"), kw.at("annotations"),
                                                                  labels=False)))
            if labels or annotations:
                extras.append((severity, AlertExtras(tuple(sorted(labels.items())),
                                                     tuple(sorted(annotations.items())))))
        if len(disabled) == 1:
            self.fail(w.at(disabled[0], "disable"), "slowatch raises page and ticket burn-rate alerts together: "
                      "disable both, or route the unwanted severity to a null receiver in Alertmanager")
            return None, ()
        return {"budget_consumed": [], "burn_rate": not disabled}, tuple(extras)

    def pairs(self, value: object, w: Where, *, labels: bool) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(w, f"expected a mapping of names to values, got {show(value)}")
            return ()
        out = []
        for key, v in value.items():
            if isinstance(v, dict | list) or v is None:
                self.fail(w.at(str(key)), f"expected a text value, got {show(v)}")
                continue
            # slowatch sets severity (page or ticket) and alertname itself; a Sloth file's own value
            # (severity: pageteam, its routing key) is kept beside it as sloth_<label>, as the
            # alert's name is kept as sloth_alertname: routes can move over one label at a time.
            name = f"sloth_{key}" if labels and key in RESERVED_LABELS else str(key)
            out.append((name, str(v)))
        return tuple(out)
