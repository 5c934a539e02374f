"""SLO -> Grafana dashboards, as data: an overview of every SLO, one detail dashboard per SLO, and
the performance dashboard of the seed ("Performance Monitoring Dashboard").

The dashboards are built with grafana-foundation-sdk's typed builders (pure data builders) and
returned as plain JSON dicts: what the file writer stores and the HTTP API sends. No I/O here;
what identifies them (uids, tags, folder, serialisation) is ``core.dashboards``, their event
queries ``core.measure``.

**Why one detail dashboard per SLO** (rather than one shared dashboard whose thresholds come
from a query): the burn-rate alert thresholds depend on the SLO's window (14.4x / 6x / 1x for 30
days, 3.36x and 1.4x for the pages of 7 days) and the event queries depend on the SLI kind (a ratio of
counters, histogram buckets, throughput time slices). slowatch exports neither the window length
nor the thresholds as metrics, so a shared dashboard would have to re-implement the factor
formula in PromQL, or OR together every SLO's event queries (Prometheus evaluates every branch on
every refresh). Per SLO, the thresholds are the exact constants of ``alert_windows_for`` and
``factor()`` (the numbers the alerts use), each panel runs only its own SLO's queries, and a
changed SLO changes only its own dashboard, so provisioning rewrites only that one.

The detail dashboards still have ``service`` and ``slo`` variables (constants), so the URL that
alerts carry (``dashboard_url``) names the SLO with ``var-service``/``var-slo`` like a shared
dashboard would, and every panel query reads ``{service="$service",slo="$slo"}``.

Every slowatch series is aggregated with ``max by`` before it is drawn: two replicas (the
Kubernetes example runs two) export the same series, differing only by ``instance``/``pod``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, stat, table, text, timeseries
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm
from grafana_foundation_sdk.models import text as tm

from slowatch.core.conventions import EXCLUSION_ACTIVE, rfc3339
from slowatch.core.dashboards import (
    BURN_RATE,
    DATASOURCE_UID,
    EVENT_RANGE,
    EVENT_RANGE_SECONDS,
    EXCLUSION_ANNOTATION_FIELDS,
    EXCLUSIONS_ANNOTATION,
    EXHAUSTION,
    FIRING,
    LAST_SUCCESS,
    OBJECTIVE,
    OVERVIEW_UID,
    PERFORMANCE_UID,
    PROMETHEUS_ANNOTATION_FIELDS,
    REMAINING,
    SLI,
    SLO_TAG,
    STATE,
    STATE_COLORS,
    TAG,
    Dashboard,
    slo_uid,
)
from slowatch.core.measure import CompositePart, composite_counts, event_queries, range_ratio
from slowatch.core.model import (
    EVENTS,
    SLO,
    CalendarWindow,
    CompositeSLI,
    LatencySLI,
    RatioSLI,
    ThroughputSLI,
    alert_rows,
    nominal_length,
)
from slowatch.core.promql import go_float, quote
from slowatch.core.rules import event_counts
from slowatch.core.windows import SRE_WORKBOOK_TABLE_5_8, BurnRateAlertWindow, format_duration, parse_duration

__all__ = [
    "build_dashboards",
    "overview_dashboard",
    "performance_dashboard",
    "slo_dashboard",
]


def _ds(uid: str) -> dm.DataSourceRef:
    return dm.DataSourceRef(type_val="prometheus", uid=uid)


def _selector(metric: str, **matchers: str) -> str:
    """``metric{k="v",...}``; a value starting with ``=~`` becomes a regex matcher. Values here are
    Grafana variables or label-safe names, so they need no escaping beyond ``quote``."""
    parts = []
    for key, value in matchers.items():
        if value.startswith("=~"):
            parts.append(f"{key}=~{quote(value[2:])}")
        else:
            parts.append(f"{key}={quote(value)}")
    return f"{metric}{{{','.join(parts)}}}"


def _query(expr: str, ref: str, legend: str | None = None, *, instant: bool = False,
           fmt: pm.PromQueryFormat | None = None) -> prom.Dataquery:
    q = prom.Dataquery().expr(expr).ref_id(ref).editor_mode(pm.QueryEditorMode.CODE)
    q = q.instant() if instant else q.range()
    if legend is not None:
        q = q.legend_format(legend)
    if fmt is not None:
        q = q.format(fmt)
    return q


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps]
    )


def _legend() -> cb.VizLegendOptions:
    return (cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE).placement(cm.LegendPlacement.BOTTOM)
            .show_legend(True).calcs(["lastNotNull", "max"]))


def _tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def _timeseries(title: str, ds: dm.DataSourceRef, *, unit: str, description: str = "") -> timeseries.Panel:
    return (timeseries.Panel().title(title).description(description).datasource(ds).unit(unit)
            .legend(_legend()).tooltip(_tooltip()).line_width(1).fill_opacity(10).show_points(cm.VisibilityMode.NEVER)
            .span_nulls(False))


def _stat(title: str, ds: dm.DataSourceRef, *, unit: str, description: str = "") -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(ds).unit(unit)
            .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def _state_mappings() -> list[dm.ValueMapping]:
    return [dm.ValueMap(options={
        state: dm.ValueMappingResult(text=label, color=color, index=i)
        for i, (state, (label, color)) in enumerate(STATE_COLORS.items())
    })]


def _remaining_thresholds() -> db.ThresholdsConfig:
    # Overspent below 0; the rest of the budget graded so a row stands out before it runs out.
    return _thresholds((None, "red"), (0.0, "orange"), (0.25, "yellow"), (0.5, "green"))


def _override(name: str, *props: tuple[str, object]) -> tuple[str, list[dm.DynamicConfigValue]]:
    return name, [dm.DynamicConfigValue(id_val=k, value=v) for k, v in props]


def _link_to(title: str, uid: str) -> db.DashboardLink:
    return (db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(f"/d/{uid}").icon("dashboard")
            .include_vars(False).keep_time(True).target_blank(False).as_dropdown(False).tooltip("").tags([]))


def _slo_menu() -> db.DashboardLink:
    return (db.DashboardLink("SLO details").type(dm.DashboardLinkType.DASHBOARDS).tags([SLO_TAG]).as_dropdown(True)
            .include_vars(False).keep_time(False).target_blank(False).icon("external link").tooltip("").url(""))


def _to_json(model: dm.Dashboard) -> Dashboard:
    data: Dashboard = json.loads(json.dumps(model, cls=JSONEncoder))
    return data


def build_dashboards(slos: Sequence[SLO], *, datasource_uid: str = DATASOURCE_UID) -> list[Dashboard]:
    """Every dashboard for ``slos``, ordered by uid: the overview, one per SLO, the performance one."""
    out = [overview_dashboard(slos, datasource_uid=datasource_uid),
           performance_dashboard(datasource_uid=datasource_uid)]
    every = {s.id: s for s in slos}
    out += [slo_dashboard(slo, datasource_uid=datasource_uid, every=every) for slo in slos]
    uids = [d["uid"] for d in out]
    dupes = sorted({u for u in uids if uids.count(u) > 1})
    if dupes:  # only reachable with a duplicate SLO id, which the spec loader already refuses
        raise ValueError(f"duplicate dashboard uids {dupes}: two SLOs share a service and name")
    return sorted(out, key=lambda d: str(d["uid"]))


# ---------------------------------------------------------------------------------------------
# Overview.


def _alert_long_windows() -> list[str]:
    seen: list[str] = []
    for row in SRE_WORKBOOK_TABLE_5_8:
        if row.long_window not in seen:
            seen.append(row.long_window)
    return seen


def _index_query(slos: Iterable[SLO], service_filter: str) -> str:
    """Constant series, one per SLO, labelled with what only the spec knows (its window and its
    detail dashboard's uid), kept only for SLOs slowatch reports; the table joins on service/slo."""
    rows = []
    for slo in sorted(slos, key=lambda s: s.id):
        expr = "vector(1)"
        for label, value in (("service", slo.service), ("slo", slo.name), ("slo_window", slo.window.name),
                             ("dashboard", slo_uid(slo))):
            expr = f"label_replace({expr}, {quote(label)}, {quote(value)}, \"\", \"\")"
        rows.append(expr)
    if not rows:
        return "vector(0) > 1"  # no SLO: an empty result, still valid PromQL
    union = "\n  or ".join(rows)
    return f"(\n  {union}\n) and on (service, slo) {_selector(OBJECTIVE, service=service_filter)}"


def overview_dashboard(slos: Sequence[SLO], *, datasource_uid: str = DATASOURCE_UID) -> Dashboard:
    """Every SLO in one table (objective, SLI, budget remaining, burn rates, state, firing alerts),
    filtered by a ``service`` variable (multi-value, with All)."""
    ds = _ds(datasource_uid)
    svc = "=~$service"

    def per_slo(metric: str, **extra: str) -> str:
        return f"max by (service, slo) ({_selector(metric, service=svc, **extra)})"

    def count_state(*states: str) -> str:
        match = states[0] if len(states) == 1 else "=~" + "|".join(states)
        return f"count({per_slo(STATE, state=match)} == 1) or vector(0)"

    firing_per_alert = f"max by (service, slo, alertname, severity) ({_selector(FIRING, service=svc)} == 1)"
    long_windows = _alert_long_windows()
    targets: list[tuple[str, str]] = [
        ("A", per_slo(OBJECTIVE)),
        ("B", per_slo(SLI)),
        ("C", per_slo(REMAINING)),
    ]
    burn_refs = {}
    for i, w in enumerate(long_windows):
        ref = "D" + str(i)
        burn_refs[w] = ref
        targets.append((ref, per_slo(BURN_RATE, window=w)))
    targets += [
        ("S", f"max by (service, slo, state) ({_selector(STATE, service=svc)} == 1)"),
        ("F", f"count by (service, slo) ({firing_per_alert}) or 0 * {per_slo(OBJECTIVE)}"),
        ("I", _index_query(slos, svc)),
    ]
    tbl = (table.Panel().title("Service-level objectives").datasource(ds).height(12).span(24)
           .description("One row per SLO, worst error budget first. Burn rates are multiples of the rate that "
                        "spends exactly the budget over the window; click an SLO for its detail dashboard.")
           .show_header(True).cell_height(cm.TableCellHeight.SM)
           .sort_by([cb.TableSortByFieldState().display_name("Budget remaining").desc(False)])
           .footer(cb.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False).fields([])))
    for ref, expr in targets:
        tbl = tbl.with_target(_query(expr, ref, instant=True, fmt=pm.PromQueryFormat.TABLE))
    tbl = tbl.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    order = ["service", "slo", "slo_window", "Value #A", "Value #B", "Value #C", "state",
             *(f"Value #{burn_refs[w]}" for w in long_windows), "Value #F", "dashboard"]
    tbl = tbl.with_transformation(dm.DataTransformerConfig(id_val="organize", options={
        # Time is the query instant; the state and index values are constant 1s.
        "excludeByName": {"Time": True, "Value #S": True, "Value #I": True},
        "indexByName": {name: i for i, name in enumerate(order)},
        "renameByName": {},
    }))
    background = {"type": cm.TableCellDisplayMode.COLOR_BACKGROUND.value, "mode": "basic"}
    colored_text = {"type": cm.TableCellDisplayMode.COLOR_TEXT.value}
    detail_link = {
        "title": "SLO detail",
        "url": "/d/${__data.fields.dashboard}?var-service=${__data.fields.service}&var-slo=${__data.fields.slo}",
    }
    overrides = [
        _override("service", ("displayName", "Service")),
        _override("slo", ("displayName", "SLO"), ("links", [detail_link])),
        _override("slo_window", ("displayName", "Window")),
        _override("Value #A", ("displayName", "Objective"), ("unit", "percentunit"), ("decimals", 3)),
        _override("Value #B", ("displayName", "SLI"), ("unit", "percentunit"), ("decimals", 3)),
        _override("Value #C", ("displayName", "Budget remaining"), ("unit", "percentunit"), ("decimals", 1),
                  ("thresholds", _remaining_thresholds().build()), ("custom.cellOptions", background)),
        _override("state", ("displayName", "State"), ("mappings", _state_mappings()),
                  ("custom.cellOptions", background)),
        _override("Value #F", ("displayName", "Firing alerts"), ("decimals", 0),
                  ("thresholds", _thresholds((None, "green"), (1.0, "red")).build()),
                  ("custom.cellOptions", colored_text)),
        _override("dashboard", ("custom.hidden", True)),
    ]
    for w in long_windows:
        overrides.append(_override(
            f"Value #{burn_refs[w]}", ("displayName", f"Burn rate {w}"), ("unit", "suffix:x"), ("decimals", 2),
            # Above 1x the budget runs out before the window ends, if the rate holds.
            ("thresholds", _thresholds((None, "green"), (1.0, "orange")).build()),
            ("custom.cellOptions", colored_text),
        ))
    for name, props in overrides:
        tbl = tbl.override_by_name(name, props)

    def counter(title: str, expr: str, description: str, bad: str = "red") -> stat.Panel:
        return (_stat(title, ds, unit="none", description=description).height(4).span(4)
                .with_target(_query(expr, "A", instant=True))
                .thresholds(_thresholds((None, "green"), (1.0, bad))))

    freshness = (_stat("Last evaluation", ds, unit="s",
                       description="Seconds since slowatch last finished an evaluation cycle; "
                                   "SLO values are that old.")
                 .height(4).span(4)
                 .with_target(_query(f"time() - max({LAST_SUCCESS})", "A", instant=True))
                 .thresholds(_thresholds((None, "green"), (120.0, "orange"), (600.0, "red"))))
    remaining_over_time = (
        _timeseries("Error budget remaining", ds, unit="percentunit",
                    description="Fraction of each SLO's error budget left; below 0 the budget is overspent.")
        .height(9).span(24)
        .with_target(_query(per_slo(REMAINING), "A", "{{service}} / {{slo}}"))
        .thresholds(_remaining_thresholds()).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.OFF))
    )
    dashboard = (
        db.Dashboard("SLOs: overview").uid(OVERVIEW_UID).tags([TAG])
        .description("Generated by slowatch from the spec; do not edit (regenerate with `slowatch generate`).")
        .editable().timezone("browser").time("now-24h", "now").refresh("1m").tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.QueryVariable("service").label("Service").datasource(ds)
                       .query(f"label_values({OBJECTIVE}, service)")
                       .multi(True).include_all(True).all_value(".*")
                       .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
                       .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))
        .link(_slo_menu())
        .link(_link_to("Performance", PERFORMANCE_UID))
        .with_panel(counter("Burning", count_state("burning"), "SLOs with a burn-rate alert firing.", "orange"))
        .with_panel(counter("Exhausted", count_state("exhausted"), "SLOs whose error budget is spent."))
        .with_panel(counter("No data, stale or error", count_state("no_data", "stale", "error"),
                            "SLOs slowatch cannot measure right now.", "purple"))
        .with_panel(counter("Pages firing",
                            f"count(max by (service, slo, alertname, severity) "
                            f"({_selector(FIRING, service=svc, severity='page')} == 1)) or vector(0)",
                            "Firing page alerts, every SLO."))
        .with_panel(counter("Tickets open",
                            f"count(max by (service, slo, alertname, severity) "
                            f"({_selector(FIRING, service=svc, severity='ticket')} == 1)) or vector(0)",
                            "Firing ticket alerts, every SLO.", "orange"))
        .with_panel(freshness)
        .with_panel(tbl)
        .with_panel(remaining_over_time)
    )
    return _finish(dashboard.build())


# ---------------------------------------------------------------------------------------------
# SLO detail.


def _time_range(slo: SLO) -> tuple[str, str]:
    """The whole window: a rolling window back from now, a calendar one from its start to its end."""
    window = slo.window
    if isinstance(window, CalendarWindow):
        unit = "M" if window.unit == "month" else "w"
        return f"now/{unit}", f"now/{unit}"
    seconds = int(window.duration.total_seconds())
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"now-{seconds // size}{suffix}", "now"
    return f"now-{seconds}s", "now"


def _sli_text(slo: SLO) -> str:
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        kind = "good" if sli.good is not None else "errors"
        first = sli.good if sli.good is not None else sli.errors
        form = "raw queries" if sli.raw else "counter selectors"
        return f"ratio of {kind} to total events ({form}):\n\n```\n{kind}: {first}\ntotal: {sli.total}\n```"
    if isinstance(sli, LatencySLI):
        return (f"latency: events of `{sli.histogram}{sli.selector}` under "
                f"{go_float(sli.threshold_seconds)} s are good.")
    if isinstance(sli, CompositeSLI):
        parts = ", ".join(f"{c.slo} (weight {go_float(c.weight)})" for c in sli.components)
        how = "good over total events summed" if sli.weighting == EVENTS else "the weighted mean of their SLIs"
        return f"composite of {parts}: {how}."
    return (f"throughput: a {format_duration(sli.slice)} slice is good when the query is at least "
            f"{go_float(sli.minimum)}:\n\n```\n{sli.query}\n```")


def _about(slo: SLO, rows: Sequence[BurnRateAlertWindow]) -> str:
    length = nominal_length(slo.window)
    lines = [
        f"**{slo.service} / {slo.name}**: {slo.description or 'no description'}",
        "",
        f"Objective **{go_float(slo.objective_percent)}%** over **{slo.window.name}**; "
        f"error budget {go_float(round(slo.budget * 100, 10))}% of "
        f"{'time slices' if isinstance(slo.sli, ThroughputSLI) else 'events'}.",
        "",
        f"SLI: {_sli_text(slo)}",
        "",
    ]
    consumed = ", ".join(f"{go_float(p)}%" for p in slo.alerting.budget_consumed) or "none"
    lines.append(f"Budget-consumed alerts at: {consumed}.")
    if slo.alerting.burn_rate and rows:
        lines.append("Burn-rate alerts (SRE workbook table 5-8, scaled to the window):")
        lines.append("")
        for row in rows:
            lines.append(f"- {row.severity} when both {row.long_window} and {row.short_window} burn at "
                         f">= {_factor_text(row.factor(length))}x (the table's {go_float(row.budget_percent)}%-in-"
                         f"{row.long_window} row)")
    else:
        lines.append("Burn-rate alerts: off.")
    if slo.exclusions:
        lines += ["", "Exclusions (their events count neither as good nor as total; shaded on the graphs):", ""]
        for e in slo.exclusions:
            when = (f"`{e.rrule}` for {format_duration(e.duration)} ({e.timezone})" if e.rrule is not None
                    else f"{rfc3339(e.start)} to {rfc3339(e.end)}" if e.start and e.end else "")
            lines.append(f"- {e.reason}: {when}")
    if slo.alerting.runbook_url:
        lines += ["", f"Runbook: <{slo.alerting.runbook_url}>"]
    if slo.source:  # the file name only: a path would depend on where `generate` was run from
        lines += ["", f"Defined in `{slo.source.replace(chr(92), '/').rsplit('/', 1)[-1]}`."]
    return "\n".join(lines)


def _factor_text(factor: float) -> str:
    return f"{factor:.4g}"


def _burn_thresholds(rows: Sequence[BurnRateAlertWindow], length: timedelta) -> list[tuple[float | None, str]]:
    """Green below every alert factor, then one step per factor: the highest red, lower ones
    orange, the ticket ones yellow."""
    pages = {row.factor(length) for row in rows if row.severity == "page"}
    steps: list[tuple[float | None, str]] = [(None, "green")]
    for factor in sorted({row.factor(length) for row in rows}):  # one step per value, a page winning
        steps.append((factor, "orange" if factor in pages else "yellow"))
    page_steps = [i for i, (_, c) in enumerate(steps) if c == "orange"]
    if page_steps:
        steps[page_steps[-1]] = (steps[page_steps[-1]][0], "red")
    return steps


def _event_targets(slo: SLO) -> tuple[list[tuple[str, str]], str, str]:
    """(legend, expr) per series of the events panel, its unit and its axis label."""
    sli = slo.sli
    if isinstance(sli, ThroughputSLI):
        # Slices, not requests: count them over a range holding several slices.
        rng = format_duration(max(timedelta(hours=1), sli.slice * 6))
        divide, unit, axis = "", "none", f"slices per {rng}"
    else:
        rng = EVENT_RANGE
        divide, unit, axis = f" / {EVENT_RANGE_SECONDS}", "short", f"events/s ({rng} average)"
    q = event_queries(slo, parse_duration(rng))
    total = q["total"]
    if "good" in q:
        good, bad = q["good"], f"({total}) - (({q['good']}) or vector(0))"
    else:
        good, bad = f"({total}) - (({q['bad']}) or vector(0))", q["bad"]
    series = [("good", good), ("bad", bad), ("total", total)]
    return [(legend, f"({expr}){divide}" if divide else expr) for legend, expr in series], unit, axis


def _counts(slo: SLO, every: Mapping[str, SLO], rng: str) -> tuple[str, str] | None:
    """(good, total) events of ``slo`` in the last ``rng`` from the SLIs' own queries; a composite's
    from its components' (``measure.composite_counts``), None when one is not among ``every``."""
    sli = slo.sli
    if not isinstance(sli, CompositeSLI):
        return event_counts(slo, rng)
    parts: list[CompositePart] = []
    for component in sli.components:
        found = every.get(component.slo)
        counts = _counts(found, every, rng) if found is not None else None
        if counts is None:
            return None
        parts.append((component.slo, component.weight, *counts))
    return composite_counts(parts, sli.weighting)


def _ratio(counts: tuple[str, str]) -> str:
    good, total = counts
    return f"({good}) / (({total}) > 0)"


def _composite_targets(slo: SLO, every: Mapping[str, SLO]) -> list[tuple[str, str]]:
    """(legend, expr): the composite's SLI over the last EVENT_RANGE and each component's, from their
    own queries; a component not among ``every`` is read from slowatch's SLI of its own window."""
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    mine = _counts(slo, every, EVENT_RANGE)
    out = [] if mine is None else [("composite", _ratio(mine))]
    for component in sli.components:
        legend = f"{component.slo} (weight {go_float(component.weight)})"
        found = every.get(component.slo)
        counts = _counts(found, every, EVENT_RANGE) if found is not None else None
        if counts is not None:
            out.append((legend, _ratio(counts)))
        else:
            service, name = component.slo.split("/", 1)
            out.append((legend + ", slowatch", f"max({_selector(SLI, service=service, slo=name)})"))
    return out


def slo_dashboard(slo: SLO, *, datasource_uid: str = DATASOURCE_UID, every: Mapping[str, SLO] | None = None,
                  ) -> Dashboard:
    """One SLO: status, budget burn-down, SLI against the objective, burn rate per window with the
    alert thresholds, good and total events (a composite: its components' SLIs), its alerts and
    exclusions as annotations. ``every``: the SLOs by id, where a composite finds its components."""
    ds = _ds(datasource_uid)
    this = {"service": "$service", "slo": "$slo"}
    length = nominal_length(slo.window)
    rows = alert_rows(slo) if slo.alerting.burn_rate else ()
    time_from, time_to = _time_range(slo)

    def one(metric: str, by: str = "", **extra: str) -> str:
        return f"max{f' by ({by})' if by else ''} ({_selector(metric, **this, **extra)})"

    status_w = 4
    status = [
        _stat("Objective", ds, unit="percentunit").decimals(3)
        .with_target(_query(one(OBJECTIVE), "A", instant=True))
        .color_mode(cm.BigValueColorMode.NONE),
        _stat(f"SLI ({slo.window.name})", ds, unit="percentunit",
              description="Good events over total events in the window.").decimals(3)
        .with_target(_query(one(SLI), "A", instant=True))
        .thresholds(_thresholds((None, "red"), (slo.objective, "green"))),
        _stat("Error budget remaining", ds, unit="percentunit").decimals(1)
        .with_target(_query(one(REMAINING), "A", instant=True))
        .thresholds(_remaining_thresholds()),
        _stat("State", ds, unit="none", description="ok, burning, exhausted, no data, stale or error.")
        .with_target(_query(f"max by (state) ({_selector(STATE, **this)} == 1)", "A", instant=True,
                            fmt=pm.PromQueryFormat.TABLE))
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/^state$/"))
        .mappings(_state_mappings()),
        _stat("Budget runs out", ds, unit="dateTimeFromNow",
              description="When the budget is spent if the 1h burn rate holds.")
        .with_target(_query(f"{one(EXHAUSTION)} * 1000", "A", instant=True))
        .no_value("not at this rate").color_mode(cm.BigValueColorMode.NONE),
        _stat("Firing alerts", ds, unit="none")
        .with_target(_query(f"count({one(FIRING, 'alertname, severity')} == 1) or vector(0)", "A", instant=True))
        .thresholds(_thresholds((None, "green"), (1.0, "red"))),
    ]

    budget_alerts = sorted({1 - p / 100 for p in slo.alerting.budget_consumed if 0 < p < 100})
    budget_steps: list[tuple[float | None, str]] = [(None, "red"), (0.0, "orange")]
    budget_steps += [(r, "yellow") for r in budget_alerts[:-1]]
    budget_steps.append((budget_alerts[-1] if budget_alerts else 0.5, "green"))
    burndown = (
        _timeseries("Error budget remaining (burn-down)", ds, unit="percentunit",
                    description="Fraction of the window's budget left; dashed lines are the budget-consumed "
                                "alerts, below 0 the budget is overspent.")
        .height(9).span(12)
        .with_target(_query(one(REMAINING), "A", "remaining"))
        .thresholds(_thresholds(*budget_steps))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED_AND_AREA))
    )
    sli_panel = (
        _timeseries("SLI against the objective", ds, unit="percentunit",
                    description=f"Good over total events in the {slo.window.name} window, and the objective.")
        .height(9).span(12).decimals(3)
        .with_target(_query(one(SLI), "A", f"SLI ({slo.window.name})"))
        .with_target(_query(one(OBJECTIVE), "B", "objective"))
        .override_by_name("objective", [
            dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
        ])
    )
    factors = [row.factor(length) for row in rows]
    burn_all = (
        _timeseries("Burn rate per window", ds, unit="suffix:x",
                    description="Error rate over the rate that spends exactly the budget in the window. Dashed: "
                                + ("; ".join(f"{r.severity} at {_factor_text(r.factor(length))}x "
                                             f"({r.long_window} and {r.short_window})" for r in rows)
                                   or "no burn-rate alerts") + ".")
        .height(9).span(24).decimals(2)
        .with_target(_query(one(BURN_RATE, "window"), "A", "{{window}}"))
        .thresholds(_thresholds(*_burn_thresholds(rows, length)))
        .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED))
    )
    if factors:
        burn_all = burn_all.axis_soft_max(max(factors) * 1.2)
    per_alert = []
    for row in rows:
        factor = row.factor(length)
        color = "yellow" if row.severity == "ticket" else "red"
        per_alert.append(
            _timeseries(f"{row.severity.capitalize()}: {row.long_window} and {row.short_window} "
                        f"over {_factor_text(factor)}x", ds, unit="suffix:x",
                        description=f"Fires when both windows burn at >= {_factor_text(factor)}x: fast enough "
                                    f"over {row.long_window} to matter, and still burning over the last "
                                    f"{row.short_window}, so it resolves soon after the burn stops.")
            .height(8).span(24 // len(rows)).decimals(2)
            .with_target(_query(one(BURN_RATE, "window", window=row.long_window), "A", row.long_window))
            .with_target(_query(one(BURN_RATE, "window", window=row.short_window), "B", row.short_window))
            .thresholds(_thresholds((None, "green"), (factor, color)))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED))
            .axis_soft_max(factor * 1.2)
        )
    if isinstance(slo.sli, CompositeSLI):
        how = ("summed good over summed total events" if slo.sli.weighting == EVENTS
               else "the weighted mean of the SLIs of the components with events")
        events = (
            _timeseries(f"SLI over {EVENT_RANGE}: the composite and its components", ds, unit="percentunit",
                        description=f"The composite is {how}: "
                                    + ", ".join(f"{c.slo} weight {go_float(c.weight)}" for c in slo.sli.components)
                                    + ". Read straight from the components' own queries (not from slowatch).")
            .height(9).span(24).decimals(3)
        )
        for i, (legend, expr) in enumerate(_composite_targets(slo, every or {})):
            events = events.with_target(_query(expr, chr(ord("A") + i), legend))
    else:
        event_series, event_unit, event_axis = _event_targets(slo)
        events = (
            _timeseries("Good and total events", ds, unit=event_unit,
                        description="Read straight from the SLI's own queries (not from slowatch), so they show "
                                    "even while slowatch is down.")
            .height(9).span(12 if isinstance(slo.sli, ThroughputSLI) else 24).axis_label(event_axis).min(0)
        )
        for i, (legend, expr) in enumerate(event_series):
            events = events.with_target(_query(expr, chr(ord("A") + i), legend))
        events = events.override_by_name("bad", [
            dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])

    dashboard = (
        db.Dashboard(f"SLO: {slo.service} / {slo.name}").uid(slo_uid(slo))
        .tags([TAG, SLO_TAG, f"service:{slo.service}"])
        .description(f"{slo.description} Generated by slowatch from the spec; do not edit.".strip())
        .editable().timezone(slo.window.timezone if isinstance(slo.window, CalendarWindow) else "browser")
        .week_start("monday").time(time_from, time_to).refresh("1m").tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(db.ConstantVariable("service").value(slo.service))
        .with_variable(db.ConstantVariable("slo").value(slo.name))
        .link(_link_to("SLO overview", OVERVIEW_UID))
        .link(_slo_menu())
        .annotation(db.AnnotationQuery().name("slowatch alerts").datasource(ds).enable(True).hide(False)
                    .icon_color("red").expr(f"{one(FIRING, 'alertname, severity')} == 1"))
        .annotation(db.AnnotationQuery().name("Prometheus SLO alerts").datasource(ds).enable(False).hide(False)
                    .icon_color("orange")
                    .expr(f"max by (alertname, severity) "
                          f"({_selector('ALERTS', alertname='=~SLO.*', alertstate='firing', **this)})"))
    )
    if slo.exclusions:
        dashboard = dashboard.annotation(
            db.AnnotationQuery().name(EXCLUSIONS_ANNOTATION).datasource(ds).enable(True).hide(False)
            .icon_color("blue").expr(f"max({_selector(EXCLUSION_ACTIVE, **this)}) == 1"))
    if slo.alerting.runbook_url:
        dashboard = dashboard.link(
            db.DashboardLink("Runbook").type(dm.DashboardLinkType.LINK).url(slo.alerting.runbook_url)
            .icon("doc").include_vars(False).keep_time(False).target_blank(True).as_dropdown(False)
            .tooltip("").tags([]))
    dashboard = dashboard.with_panel(
        text.Panel().title("About this SLO").height(7).span(24).mode(tm.TextMode.MARKDOWN).content(_about(slo, rows))
    )
    for status_panel in status:
        dashboard = dashboard.with_panel(status_panel.height(4).span(status_w))
    dashboard = dashboard.with_panel(burndown).with_panel(sli_panel).with_panel(burn_all)
    for panel in per_alert:
        dashboard = dashboard.with_panel(panel)
    dashboard = dashboard.with_panel(events)
    if isinstance(slo.sli, ThroughputSLI):
        dashboard = dashboard.with_panel(
            _timeseries("Throughput against the minimum", ds, unit="none",
                        description=f"A {format_duration(slo.sli.slice)} slice is good while this is at least "
                                    f"{go_float(slo.sli.minimum)} (dashed).")
            .height(9).span(12).min(0)
            .with_target(_query(slo.sli.query, "A", "throughput"))
            .thresholds(_thresholds((None, "red"), (slo.sli.minimum, "green")))
            .thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED))
        )
    return _finish(dashboard.build(), annotation_titles=True)


# ---------------------------------------------------------------------------------------------
# The seed's performance dashboard.


def performance_dashboard(
    *,
    requests_metric: str = "http_requests_total",
    duration_metric: str = "http_request_duration_seconds",
    endpoint_label: str = "endpoint",
    code_label: str = "code",
    p95_target_ms: float = 2000.0,
    datasource_uid: str = DATASOURCE_UID,
) -> Dashboard:
    """The seed's "AI Agent Framework - Performance Monitoring" dashboard: request rate by endpoint,
    response time heatmap and an SLO compliance stat (availability % and P95 latency in ms,
    thresholds red 0 / yellow 95 / green 99); last 24 hours, refreshed every 30 s.

    Two queries differ from the seed on purpose. Availability is ``sum(good) / sum(total)``: the
    seed's ``rate(x{code!~"5.."}) / rate(x)`` matches series label by label, so each non-5xx series
    is divided by itself and the result is always 100%; and it is counted over the dashboard's
    range (``$__range``, 24 hours by default) instead of averaging 5-minute ratios, which weighs a
    quiet night like a busy day. P95 is over the same range; red/yellow/green at 0/95/99 only makes
    sense for a percentage, so the latency field gets its own thresholds (green under
    ``p95_target_ms``, the seed's "P95 < 2s" target). The rate and heatmap panels use
    ``$__rate_interval`` instead of the seed's fixed 5m, so they stay right at any zoom level.
    """
    ds = _ds(datasource_uid)
    bucket = f"{duration_metric}_bucket"
    request_rate = (
        _timeseries("Request Rate Trend", ds, unit="reqps").grid_pos(dm.GridPos(h=8, w=12, x=0, y=0))
        .axis_label("Requests/sec").min(0)
        .with_target(_query(f"sum by ({endpoint_label}) (rate({requests_metric}[$__rate_interval]))", "A",
                            f"{{{{{endpoint_label}}}}}"))
    )
    distribution = (
        heatmap.Panel().title("Response Time Distribution").datasource(ds).grid_pos(dm.GridPos(h=8, w=12, x=12, y=0))
        .description("Requests per latency bucket; the buckets are the histogram's own (no re-bucketing).")
        # Prometheus buckets are already a heatmap: Grafana draws them as they are, where the seed's
        # old heatmap re-bucketed raw points (xBucketSize/yBucketSize).
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s").axis_placement(cm.AxisPlacement.LEFT))
        .color(heatmap.HeatmapColorOptions().mode(hm.HeatmapColorMode.SCHEME).scheme("Oranges")
               .fill("dark-orange").scale(hm.HeatmapColorScale.EXPONENTIAL).exponent(0.5).steps(64)
               .reverse(False))
        .cell_values(heatmap.CellValues().unit("reqps"))
        .rows_frame(heatmap.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.LE))
        .show_legend().show_tooltip().hide_y_histogram()
        .with_target(_query(f"sum by (le) (rate({bucket}[$__rate_interval]))", "A", "{{le}}",
                            fmt=pm.PromQueryFormat.HEATMAP))
    )
    good = f"{requests_metric}{{{code_label}!~\"5..\"}}"
    availability = f"100 * {range_ratio(good, requests_metric, '$__range')}"
    p95 = f"1000 * histogram_quantile(0.95, sum by (le) (rate({bucket}[$__range])))"
    compliance = (
        _stat("Performance SLO Compliance", ds, unit="none",
              description="Availability (non-5xx over all requests) and P95 latency over the dashboard's range.")
        .grid_pos(dm.GridPos(h=4, w=24, x=0, y=8)).decimals(2)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .with_target(_query(availability, "A", "Availability %", instant=True))
        .with_target(_query(p95, "B", "P95 Latency (ms)", instant=True))
        .thresholds(_thresholds((0.0, "red"), (95.0, "yellow"), (99.0, "green")))
        .override_by_name("P95 Latency (ms)", [
            dm.DynamicConfigValue(id_val="unit", value="ms"),
            dm.DynamicConfigValue(id_val="thresholds", value=_thresholds(
                (None, "green"), (p95_target_ms, "red")).build()),
        ])
        .override_by_name("Availability %", [dm.DynamicConfigValue(id_val="unit", value="percent")])
    )
    dashboard = (
        db.Dashboard("AI Agent Framework - Performance Monitoring").uid(PERFORMANCE_UID)
        .tags(["performance", "ai-agent-framework", TAG])
        .description("The performance benchmarks framework's dashboard. Generated by slowatch; do not edit.")
        .editable().timezone("utc").time("now-24h", "now").refresh("30s")
        .link(_link_to("SLO overview", OVERVIEW_UID))
        .with_panel(request_rate).with_panel(distribution).with_panel(compliance)
    )
    return _finish(dashboard.build())


# ---------------------------------------------------------------------------------------------


def _finish(model: dm.Dashboard, *, annotation_titles: bool = False) -> Dashboard:
    """JSON with what the SDK leaves out or gets wrong: panel ids in layout order (Grafana needs
    unique ids for links and `viewPanel`), one datasource on every target, and the Prometheus
    annotation fields (title, tags) the SDK's annotation model does not have."""
    data = _to_json(model)
    for key in ("annotations", "templating"):
        data.setdefault(key, {}).setdefault("list", [])
    for i, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = i
        for target in panel.get("targets") or []:
            target.setdefault("datasource", panel.get("datasource"))
    if annotation_titles:
        for ann in data["annotations"]["list"]:
            ann.update(EXCLUSION_ANNOTATION_FIELDS if ann["name"] == EXCLUSIONS_ANNOTATION
                       else PROMETHEUS_ANNOTATION_FIELDS)
    return data

