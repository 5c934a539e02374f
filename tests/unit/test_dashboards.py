"""Grafana dashboards (adapters/dashboards.py, identities in core/dashboards.py) and their files
(adapters/dashboard_files.py)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

from slowatch.adapters import dashboards as builders
from slowatch.adapters.dashboard_files import write_dashboards, write_provisioning
from slowatch.core import dashboards as dd
from slowatch.core.model import (
    SLO,
    AlertPolicy,
    CalendarWindow,
    Component,
    CompositeSLI,
    Exclusion,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
    nominal_length,
)
from slowatch.core.windows import alert_windows_for
from slowatch.spec import load_specs

REPO = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)


def slo(name: str = "login-availability", service: str = "auth", **kw: Any) -> SLO:
    fields: dict[str, Any] = {
        "objective_percent": 99.9,
        "window": RollingWindow(30 * DAY),
        "sli": RatioSLI(total='http_requests_total{service="auth"}',
                        errors='http_requests_total{service="auth",code=~"5.."}'),
    }
    fields.update(kw)
    return SLO(service=service, name=name, **fields)


# Every SLI kind and window form the spec allows, so every generated query shape gets parsed.
SLOS = [
    pytest.param(slo(), id="a ratio of errors over 30 days"),
    pytest.param(slo(sli=RatioSLI(total="t_total", good="g_total")), id="a ratio of good events"),
    pytest.param(slo(sli=RatioSLI(total="sum(increase(t_total[{{.window}}]))",
                                  good="sum(increase(g_total[{{.window}}]))", raw=True)),
                 id="a raw ratio with the window placeholder"),
    pytest.param(slo(sli=LatencySLI("http_request_duration_seconds", '{service="auth"}', 0.2), objective_percent=95),
                 id="a latency histogram"),
    pytest.param(slo(sli=ThroughputSLI("sum(rate(http_requests_total[1m]))", 200, timedelta(minutes=1)),
                     window=RollingWindow(DAY)), id="a throughput SLI in 1-minute slices over a day"),
    pytest.param(slo(sli=ThroughputSLI("sum(rate(http_requests_total[5m]))", 500, timedelta(hours=1)),
                     window=RollingWindow(7 * DAY)), id="a throughput SLI in hourly slices over a week"),
    pytest.param(slo(window=CalendarWindow("month", "Europe/Paris")), id="a calendar month in Paris"),
    pytest.param(slo(window=CalendarWindow("week")), id="a calendar week"),
    pytest.param(slo(alerting=AlertPolicy(budget_consumed=(), burn_rate=False)), id="an SLO with every alert off"),
    pytest.param(slo(window=RollingWindow(timedelta(hours=12))), id="a 12-hour window too short for any alert row"),
]


def example() -> list[SLO]:
    return load_specs([REPO / "deploy" / "slos"])


def all_dashboards() -> list[dd.Dashboard]:
    return builders.build_dashboards(example())


# Sample values for Grafana's variables, so the queries can be parsed as Prometheus would see them.
VARIABLES = {
    "__rate_interval": "2m",
    "__range": "86400s",
    "__interval": "1m",
    "service": "auth",
    "slo": "login-availability",
}
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return VARIABLES[name]

    return _VAR.sub(value, expr)


def queries(dashboard: dd.Dashboard) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            out.append((f"{panel['title']} {target['refId']}", target["expr"]))
    for ann in dashboard["annotations"]["list"]:
        if "expr" in ann:
            out.append((f"annotation {ann['name']}", ann["expr"]))
    return out


def thresholds(field_config: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in field_config["thresholds"]["steps"]]


def panel(dashboard: dd.Dashboard, title: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in dashboard["panels"] if p["title"] == title]
    assert len(found) == 1, f"{len(found)} panels titled {title!r}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Validity.


@pytest.mark.parametrize("dashboard", [pytest.param(d, id=f"{d['uid']} survives the SDK model") for d in
                                       all_dashboards()])
def test_every_dashboard_round_trips_through_the_sdk_model(dashboard: dd.Dashboard) -> None:
    model = dm.Dashboard.from_json(dashboard)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    ours = json.loads(json.dumps(dashboard))
    for ann in ours["annotations"]["list"]:  # the only fields the SDK has no model for
        for key in dd.PROMETHEUS_ANNOTATION_FIELDS:
            ann.pop(key, None)
    assert again == ours


@pytest.mark.parametrize("dashboard", [pytest.param(d, id=f"{d['uid']} has every required field") for d in
                                       all_dashboards()])
def test_every_dashboard_has_the_fields_grafana_needs(dashboard: dd.Dashboard) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert dd.TAG in dashboard["tags"]
    assert dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["h"] > 0, p["title"]
        if p["type"] == "text":
            assert p["options"]["content"]
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": dd.DATASOURCE_UID}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert all(refs) and len(refs) == len(set(refs)), f"{p['title']}: refIds {refs}"
        for t in p["targets"]:
            assert t["expr"] and t["datasource"] == p["datasource"]


def test_panels_do_not_overlap() -> None:
    for dashboard in all_dashboards():
        cells: dict[tuple[int, int], str] = {}
        for p in dashboard["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{dashboard['uid']}: {p['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = p["title"]


@pytest.mark.parametrize("s", SLOS)
def test_every_query_of_an_slo_dashboard_is_valid_promql(s: SLO) -> None:
    dashboard = builders.slo_dashboard(s)
    found = queries(dashboard)
    assert found
    for where, expr in found:
        try:
            promql_parser.parse(substitute(expr))
        except Exception as exc:  # the parser raises plain exceptions
            pytest.fail(f"{where}: {exc}\n{expr}")


@pytest.mark.parametrize("dashboard", [
    pytest.param(builders.overview_dashboard(example()), id="the overview of the example spec"),
    pytest.param(builders.overview_dashboard([]), id="the overview of no SLO at all"),
    pytest.param(builders.performance_dashboard(), id="the performance dashboard"),
])
def test_every_query_of_the_shared_dashboards_is_valid_promql(dashboard: dd.Dashboard) -> None:
    for where, expr in queries(dashboard):
        try:
            promql_parser.parse(substitute(expr))
        except Exception as exc:
            pytest.fail(f"{where}: {exc}\n{expr}")


# ---------------------------------------------------------------------------------------------
# Identity.


def test_uids_are_stable_unique_and_fit_grafana() -> None:
    first, second = all_dashboards(), all_dashboards()
    uids = [d["uid"] for d in first]
    assert uids == [d["uid"] for d in second]
    assert len(uids) == len(set(uids)) == len(example()) + 2
    for uid in uids:
        assert len(uid) <= dd.UID_MAX and re.fullmatch(r"[a-zA-Z0-9_-]+", uid), uid


@pytest.mark.parametrize(("s", "uid"), [
    pytest.param(slo(), "slo-auth-login-availability-57178024", id="a short id reads as itself plus a hash"),
    pytest.param(slo(service="knowledge", name="search-availability"), "slo-knowledge-search-availabili-ff60957c",
                 id="a long id is cut to 40 characters"),
    pytest.param(slo(service="a.b", name="c"), "slo-a_b-c-fc7cd9c4", id="a dot becomes an underscore"),
])
def test_an_slo_uid_is_pinned(s: SLO, uid: str) -> None:
    # A changed uid orphans the dashboards already in Grafana and breaks links in old alerts.
    assert dd.slo_uid(s) == uid


def test_ids_that_read_alike_once_cut_still_get_different_uids() -> None:
    long = "x" * 60
    a, b = dd.slo_uid(slo(name=long + "a")), dd.slo_uid(slo(name=long + "b"))
    assert a != b and len(a) == len(b) == dd.UID_MAX


@pytest.mark.parametrize(("base", "expected"), [
    pytest.param("https://grafana.example", "https://grafana.example/d/slo-auth-login-availability-57178024"
                 "?var-service=auth&var-slo=login-availability", id="a plain Grafana URL"),
    pytest.param("https://example.com/grafana/", "https://example.com/grafana/d/slo-auth-login-availability-57178024"
                 "?var-service=auth&var-slo=login-availability", id="a sub-path with a trailing slash"),
])
def test_dashboard_url_opens_the_slo_detail_with_its_variables(base: str, expected: str) -> None:
    assert dd.dashboard_url(base, slo()) == expected


def test_a_changed_slo_changes_only_its_own_dashboard() -> None:
    slos = example()
    before = {d["uid"]: d for d in builders.build_dashboards(slos)}
    slos[3] = replace(slos[3], objective_percent=99.0, description="changed")
    after = {d["uid"]: d for d in builders.build_dashboards(slos)}
    assert [uid for uid in before if before[uid] != after[uid]] == [dd.slo_uid(slos[3])]


# ---------------------------------------------------------------------------------------------
# Content.


def test_the_overview_filters_every_slo_query_by_a_multi_value_service_variable() -> None:
    overview = builders.overview_dashboard(example())
    (var,) = overview["templating"]["list"]
    assert (var["name"], var["type"], var["multi"], var["includeAll"]) == ("service", "query", True, True)
    for where, expr in queries(overview):
        if "slowatch_slo_" in expr:
            assert 'service=~"$service"' in expr, where


def test_the_overview_table_has_a_column_for_each_promised_value() -> None:
    table = panel(builders.overview_dashboard(example()), "Service-level objectives")
    names = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
             for o in table["fieldConfig"]["overrides"]}
    shown = {props.get("displayName") for props in names.values()}
    assert {"Objective", "SLI", "Budget remaining", "State", "Burn rate 1h", "Burn rate 6h", "Burn rate 3d",
            "Firing alerts"} <= shown
    remaining = next(p for p in names.values() if p.get("displayName") == "Budget remaining")
    assert [s["color"] for s in remaining["thresholds"]["steps"]] == ["red", "orange", "yellow", "green"]


def test_the_overview_links_each_row_to_the_detail_dashboard_of_its_slo() -> None:
    slos = example()
    index = next(t["expr"] for t in panel(builders.overview_dashboard(slos), "Service-level objectives")["targets"]
                 if t["refId"] == "I")
    for s in slos:
        assert f'"dashboard", "{dd.slo_uid(s)}"' in index


@pytest.mark.parametrize(("window", "pinned"), [
    pytest.param(30 * DAY, [1.0, 6.0, 14.4], id="30 days page at 14.4x and 6x and ticket at 1x"),
    pytest.param(7 * DAY, None, id="7 days draw the factors the alerts use"),
    pytest.param(DAY, None, id="1 day has no 3-day ticket row"),
    pytest.param(3 * DAY, None, id="3 days draw one line where a page and a ticket share a factor"),
])
def test_the_burn_rate_panels_draw_the_alert_thresholds(window: timedelta, pinned: list[float] | None) -> None:
    s = slo(window=RollingWindow(window))
    dashboard = builders.slo_dashboard(s)
    rows = alert_windows_for(nominal_length(s.window))
    factors = sorted({row.factor(window) for row in rows})
    if pinned is not None:  # the SRE workbook's own numbers
        assert factors == pytest.approx(pinned)
    assert ("3d" in {row.long_window for row in rows}) == (window >= 3 * DAY)  # no row looks past the window
    drawn = [v for v, _ in thresholds(panel(dashboard, "Burn rate per window")["fieldConfig"]["defaults"])
             if v is not None]
    assert drawn == pytest.approx(factors)
    for row in rows:
        alert_panel = next(p for p in dashboard["panels"] if p["title"].startswith(
            f"{row.severity.capitalize()}: {row.long_window} and {row.short_window}"))
        assert thresholds(alert_panel["fieldConfig"]["defaults"])[1][0] == pytest.approx(row.factor(window))
        exprs = [t["expr"] for t in alert_panel["targets"]]
        assert any(f'window="{row.long_window}"' in e for e in exprs)
        assert any(f'window="{row.short_window}"' in e for e in exprs)


def test_the_detail_dashboard_has_every_promised_panel_and_alert_annotations() -> None:
    dashboard = builders.slo_dashboard(slo())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Error budget remaining (burn-down)", "SLI against the objective", "Burn rate per window",
            "Good and total events"} <= titles
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["service", "slo"]
    events = panel(dashboard, "Good and total events")
    assert [t["legendFormat"] for t in events["targets"]] == ["good", "bad", "total"]
    assert 'code=~"5.."' in events["targets"][1]["expr"]
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert "slowatch_slo_alert_firing" in annotations["slowatch alerts"]["expr"]
    assert 'ALERTS{alertname=~"SLO.*"' in annotations["Prometheus SLO alerts"]["expr"]


@pytest.mark.parametrize(("window", "time"), [
    pytest.param(RollingWindow(30 * DAY), {"from": "now-30d", "to": "now"}, id="a rolling window looks back over it"),
    pytest.param(RollingWindow(timedelta(hours=36)), {"from": "now-36h", "to": "now"}, id="36h stays in hours"),
    pytest.param(CalendarWindow("month"), {"from": "now/M", "to": "now/M"}, id="a calendar month shows the month"),
    pytest.param(CalendarWindow("week"), {"from": "now/w", "to": "now/w"}, id="a calendar week shows the week"),
])
def test_the_detail_dashboard_shows_the_whole_window(window: RollingWindow | CalendarWindow,
                                                     time: dict[str, str]) -> None:
    assert builders.slo_dashboard(slo(window=window))["time"] == time


def test_the_seed_dashboard_keeps_its_thresholds_range_and_refresh() -> None:
    perf = builders.performance_dashboard()
    assert perf["title"] == "AI Agent Framework - Performance Monitoring"
    assert perf["time"] == {"from": "now-24h", "to": "now"}
    assert perf["refresh"] == "30s"
    assert [p["type"] for p in perf["panels"]] == ["timeseries", "heatmap", "stat"]
    compliance = panel(perf, "Performance SLO Compliance")
    assert thresholds(compliance["fieldConfig"]["defaults"]) == [(0, "red"), (95, "yellow"), (99, "green")]
    assert [t["legendFormat"] for t in compliance["targets"]] == ["Availability %", "P95 Latency (ms)"]
    assert panel(perf, "Response Time Distribution")["targets"][0]["format"] == "heatmap"
    assert "by (endpoint)" in panel(perf, "Request Rate Trend")["targets"][0]["expr"]


def test_the_seed_dashboard_takes_its_metric_names_as_parameters() -> None:
    perf = builders.performance_dashboard(requests_metric="api_calls_total", duration_metric="api_latency_seconds")
    exprs = " ".join(e for _, e in queries(perf))
    assert "api_calls_total" in exprs and "api_latency_seconds_bucket" in exprs
    assert "http_request" not in exprs


def test_availability_divides_sums_so_it_is_not_always_100_percent() -> None:
    # The seed's rate(x{code!~"5.."}) / rate(x) divides each series by itself.
    expr = panel(builders.performance_dashboard(), "Performance SLO Compliance")["targets"][0]["expr"]
    assert expr.count("sum(") == 2


# ---------------------------------------------------------------------------------------------
# Files.


def test_the_committed_grafana_directory_is_what_the_example_spec_generates(tmp_path: Path) -> None:
    written = write_dashboards(example(), tmp_path)
    written += write_provisioning(tmp_path)
    committed = REPO / "grafana"
    for path in written:
        rel = path.relative_to(tmp_path)
        assert (committed / rel).read_bytes() == path.read_bytes(), (
            f"grafana/{rel} is stale: regenerate with `python -m slowatch generate deploy/slos --out .`"
        )
    assert sorted(p.name for p in (committed / "dashboards").glob("*.json")) == sorted(
        p.name for p in written if p.suffix == ".json")


def test_dashboard_files_are_deterministic_sorted_json_with_a_trailing_newline(tmp_path: Path) -> None:
    paths = write_dashboards(example(), tmp_path)
    for path in paths:
        text = path.read_text()
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_rewriting_unchanged_dashboards_leaves_the_files_alone(tmp_path: Path) -> None:
    paths = write_dashboards(example(), tmp_path)
    for path in paths:
        os.utime(path, (1, 1))
    write_dashboards(example(), tmp_path)
    assert all(path.stat().st_mtime == 1 for path in paths)


def test_a_removed_slo_takes_its_dashboard_file_but_not_a_foreign_one(tmp_path: Path) -> None:
    slos = example()
    first = write_dashboards(slos, tmp_path)
    foreign = tmp_path / "dashboards" / "team-own.json"
    foreign.write_text('{"uid": "team-own", "tags": ["team"]}\n')
    second = write_dashboards(slos[1:], tmp_path)
    assert set(first) - set(second) == {tmp_path / "dashboards" / f"{dd.slo_uid(slos[0])}.json"}
    assert not (tmp_path / "dashboards" / f"{dd.slo_uid(slos[0])}.json").exists()
    assert foreign.exists()


# ---------------------------------------------------------------------------------------------
# Composites and exclusions (#12).

LOGIN = slo()
LATENCY = slo("login-latency", sli=LatencySLI("http_request_duration_seconds", '{service="auth"}', 0.2),
              objective_percent=95)
JOURNEY = slo("checkout-journey", service="journey", objective_percent=99.5,
              sli=CompositeSLI((Component("auth/login-availability", 1), Component("auth/login-latency", 2.5))))
EVERYTHING = slo("everything", service="journey", objective_percent=99,
                 sli=CompositeSLI((Component("journey/checkout-journey", 1), Component("auth/login-availability", 3)),
                                  "events"))


@pytest.mark.parametrize(("composite", "legends"), [
    pytest.param(JOURNEY, ["composite", "auth/login-availability (weight 1)", "auth/login-latency (weight 2.5)"],
                 id="weights: the composite and each component from their own queries"),
    pytest.param(EVERYTHING, ["composite", "journey/checkout-journey (weight 1)", "auth/login-availability (weight 3)"],
                 id="events, nested: a composite component is combined from its own components"),
])
def test_a_composite_dashboard_draws_its_sli_and_its_components(composite: SLO, legends: list[str]) -> None:
    every = {s.id: s for s in (LOGIN, LATENCY, JOURNEY, EVERYTHING)}
    dashboard = builders.slo_dashboard(composite, every=every)
    title = "SLI over 5m: the composite and its components"
    drawn = panel(dashboard, title)
    assert [t["legendFormat"] for t in drawn["targets"]] == legends
    assert "slowatch_component" in drawn["targets"][0]["expr"]
    assert all("slowatch_slo_sli_ratio" not in t["expr"] for t in drawn["targets"])
    for _, expr in queries(dashboard):
        promql_parser.parse(substitute(expr))
    about = panel(dashboard, "About this SLO")["options"]["content"]
    assert isinstance(composite.sli, CompositeSLI)
    assert all(c.slo in about and c.slo in drawn["description"] for c in composite.sli.components)
    assert "Good and total events" not in {p["title"] for p in dashboard["panels"]}


def test_a_composite_whose_components_are_elsewhere_reads_their_sli_from_slowatch() -> None:
    drawn = panel(builders.slo_dashboard(JOURNEY), "SLI over 5m: the composite and its components")
    assert [t["expr"] for t in drawn["targets"]] == [
        'max(slowatch_slo_sli_ratio{service="auth",slo="login-availability"})',
        'max(slowatch_slo_sli_ratio{service="auth",slo="login-latency"})',
    ]


def test_the_overview_lists_a_composite_with_a_detail_dashboard() -> None:
    dashboards = builders.build_dashboards([LOGIN, LATENCY, JOURNEY])
    overview = next(d for d in dashboards if d["uid"] == dd.OVERVIEW_UID)
    assert dd.slo_uid(JOURNEY) in json.dumps(overview)
    assert dd.slo_uid(JOURNEY) in {d["uid"] for d in dashboards}


@pytest.mark.parametrize(("exclusions", "annotated"), [
    pytest.param((Exclusion("planned database migration", start=datetime(2026, 11, 20, 2, tzinfo=UTC),
                            end=datetime(2026, 11, 20, 4, tzinfo=UTC)),), True, id="a one-off exclusion is shaded"),
    pytest.param((Exclusion("weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                            duration=timedelta(hours=2), timezone="Europe/Paris"),), True,
                 id="a recurring exclusion is shaded"),
    pytest.param((), False, id="an SLO without exclusions has no exclusion annotation"),
])
def test_exclusions_are_annotations_from_the_daemons_gauge(exclusions: tuple[Exclusion, ...], annotated: bool) -> None:
    dashboard = builders.slo_dashboard(slo(exclusions=exclusions))
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert ("Exclusions" in annotations) == annotated
    about = panel(dashboard, "About this SLO")["options"]["content"]
    assert all(e.reason in about for e in exclusions)
    if annotated:
        ann = annotations["Exclusions"]
        assert ann["expr"] == 'max(slowatch_exclusion_active{service="$service",slo="$slo"}) == 1'
        assert ann["titleFormat"] == dd.EXCLUSION_ANNOTATION_FIELDS["titleFormat"]
        assert annotations["slowatch alerts"]["titleFormat"] == "{{alertname}}"
