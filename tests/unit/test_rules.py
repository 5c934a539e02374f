"""Generated Prometheus rules (core/rules.py), their writer, their test generator, and the golden
files. The golden files are refreshed with

    python -m slowatch generate deploy/slos --out . --prometheusrule deploy/kubernetes/prometheusrule.yaml
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import promql_parser
import pytest
import yaml

from slowatch import generate
from slowatch.adapters import rulefiles
from slowatch.core import conventions as c
from slowatch.core.measure import event_queries, left_open
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
    Weighting,
    Window,
)
from slowatch.core.rules import (
    AlertingRule,
    RecordingRule,
    RuleGroup,
    alerts_group,
    budget_fraction,
    objective_fraction,
    period_group,
    recording_groups,
    rule_files,
    windows_group,
)
from slowatch.core.windows import BURN_RATE_WINDOWS, alert_windows_for, parse_duration
from tests.support import rules_tests

REPO = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)
ERRORS = RatioSLI(total='http_requests_total{service="a"}', errors='http_requests_total{service="a",code=~"5.."}')
RAW = RatioSLI(total="sum(increase(t[{{.window}}]))", errors="sum(increase(e[{{.window}}]))", raw=True)
THIRTY_DAYS = RollingWindow(30 * DAY)


def make(sli: RatioSLI | LatencySLI | ThroughputSLI = ERRORS, window: Window = THIRTY_DAYS,
         objective: float = 99.9, alerting: AlertPolicy | None = None,
         labels: tuple[tuple[str, str], ...] = ()) -> SLO:
    return SLO(service="shop", name="checkout", objective_percent=objective, window=window, sli=sli,
               alerting=alerting or AlertPolicy(), labels=labels)


SLIS = [
    pytest.param(ERRORS, id="a ratio of errors and total"),
    pytest.param(RatioSLI(total="t_total", good='t_total{code!~"5.."}'), id="a ratio of good and total"),
    pytest.param(RAW, id="a raw ratio with the window placeholder"),
    pytest.param(LatencySLI("http_request_duration_seconds", '{service="a",path="/x\\"y"}', 0.2),
                 id="a latency histogram with an escaped label value"),
    pytest.param(ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=1)), id="a throughput query"),
]
WINDOWS = [
    pytest.param(RollingWindow(30 * DAY), id="rolling 30d"),
    pytest.param(RollingWindow(DAY), id="rolling 1d"),
    pytest.param(RollingWindow(timedelta(hours=2)), id="rolling 2h"),
    pytest.param(CalendarWindow("month"), id="calendar month"),
    pytest.param(CalendarWindow("week", "Europe/Berlin"), id="calendar week in Berlin"),
]


def every_group(slo: SLO) -> list[RuleGroup]:
    alerts = alerts_group(slo)
    return [*recording_groups(slo), *([alerts] if alerts else [])]


def burn_alerts(slo: SLO) -> list[AlertingRule]:
    group = alerts_group(slo)
    rules = group.rules if group else ()
    return [r for r in rules if isinstance(r, AlertingRule) and r.alert == c.BUDGET_BURN]


def factor_in(rule: AlertingRule) -> tuple[float, float]:
    """The thresholds written after ``>=`` on the long and the short window's line."""
    long, _, short = rule.expr.splitlines()
    found = [re.search(r">= (\S+)$", line) for line in (long, short)]
    assert found[0] and found[1], rule.expr
    return float(found[0][1]), float(found[1][1])


# --- burn-rate alerts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("window", "expected"), [
    pytest.param(THIRTY_DAYS, [("page", "1h", "5m"), ("page", "6h", "30m"), ("ticket", "3d", "6h")],
                 id="30d has all three rows"),
    pytest.param(RollingWindow(7 * DAY), [("page", "1h", "5m"), ("page", "6h", "30m"), ("ticket", "3d", "6h")],
                 id="7d keeps the 3d ticket row"),
    pytest.param(RollingWindow(DAY), [("page", "1h", "5m"), ("page", "6h", "30m")], id="1d drops the 3d ticket row"),
    pytest.param(RollingWindow(timedelta(hours=2)), [("page", "1h", "5m")], id="2h keeps only the 1h page row"),
    pytest.param(RollingWindow(timedelta(minutes=30)), [], id="30m has no row at all"),
])
def test_rows_whose_long_window_exceeds_the_slo_window_are_dropped(
    window: Window, expected: list[tuple[str, str, str]],
) -> None:
    got = [tuple(dict(r.labels)[k] for k in (c.SEVERITY_LABEL, c.LONG_WINDOW_LABEL, c.SHORT_WINDOW_LABEL))
           for r in burn_alerts(make(window=window))]
    assert got == expected


@pytest.mark.parametrize("window", [pytest.param(THIRTY_DAYS, id="99.9% over 30d"),
                                    pytest.param(CalendarWindow("month"), id="a calendar month, as 30 days")])
def test_thirty_days_page_at_14_4x_and_6x_and_ticket_at_1x(window: Window) -> None:
    assert [factor_in(r) for r in burn_alerts(make(window=window))] == [(14.4, 14.4), (6.0, 6.0), (1.0, 1.0)]


@pytest.mark.parametrize("window", WINDOWS)
def test_factors_are_the_tables_computed_ones_to_the_bit(window: Window) -> None:
    slo = make(window=window)
    length = timedelta(days=30) if window == CalendarWindow("month") else (
        timedelta(days=7) if isinstance(window, CalendarWindow) else window.duration)
    rows = alert_windows_for(length)
    for rule, row in zip(burn_alerts(slo), rows, strict=True):
        assert factor_in(rule) == (row.factor(length), row.factor(length))


def test_burn_alert_is_long_and_short_window_at_or_above_the_factor_without_the_window_label() -> None:
    rule = burn_alerts(make())[0]
    assert rule.expr == (
        'max without (window) (slowatch:slo_burn_rate:ratio{service="shop",slo="checkout",window="1h"}) >= 14.4\n'
        "and\n"
        'max without (window) (slowatch:slo_burn_rate:ratio{service="shop",slo="checkout",window="5m"}) >= 14.4'
    )


@pytest.mark.parametrize(("policy", "names"), [
    pytest.param(AlertPolicy(), [c.BUDGET_CONSUMED] + [c.BUDGET_BURN] * 3, id="the default policy: 50% and 3 rows"),
    pytest.param(AlertPolicy(budget_consumed=(50.0, 75.5, 100.0), burn_rate=False), [c.BUDGET_CONSUMED] * 3,
                 id="three thresholds and no burn-rate alerts"),
    pytest.param(AlertPolicy(budget_consumed=(), burn_rate=False), [], id="no alerts at all: no group"),
])
def test_the_alert_policy_decides_which_alerts_exist(policy: AlertPolicy, names: list[str]) -> None:
    group = alerts_group(make(alerting=policy))
    if not names:
        assert group is None
        return
    assert group is not None
    assert [r.alert for r in group.rules if isinstance(r, AlertingRule)] == names


def test_alert_labels_are_the_daemons_plus_the_source() -> None:
    slo = make(labels=(("team", "payments"), ("window", "spec-must-not-win")),
               alerting=AlertPolicy(budget_consumed=(75.5,), runbook_url="https://runbooks.example/x"))
    group = alerts_group(slo)
    assert group is not None
    consumed, page = group.rules[0], group.rules[1]
    assert isinstance(consumed, AlertingRule) and isinstance(page, AlertingRule)
    assert dict(consumed.labels) == {"service": "shop", "slo": "checkout", "severity": "ticket", "threshold": "75.5",
                                     "team": "payments", "slowatch_source": "prometheus"}
    assert dict(page.labels) == {"service": "shop", "slo": "checkout", "severity": "page", "long_window": "1h",
                                 "short_window": "5m", "team": "payments", "slowatch_source": "prometheus"}
    assert consumed.expr.endswith(">= 0.755")
    assert dict(page.annotations)["runbook_url"] == "https://runbooks.example/x"
    assert "14.4x" in dict(page.annotations)["summary"]


# --- recording rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("sli", SLIS)
@pytest.mark.parametrize("window", WINDOWS)
def test_every_expression_is_valid_promql(sli: RatioSLI | LatencySLI | ThroughputSLI, window: Window) -> None:
    for group in every_group(make(sli, window)):
        for rule in group.rules:
            promql_parser.parse(rule.expr)


@pytest.mark.parametrize("sli", SLIS)
def test_each_window_counts_events_with_the_daemons_queries(sli: RatioSLI | LatencySLI | ThroughputSLI) -> None:
    slo = make(sli)
    records = {(r.record, dict(r.labels).get("window")): r.expr for r in windows_group(slo).rules
               if isinstance(r, RecordingRule)}
    for w in BURN_RATE_WINDOWS:
        q = event_queries(slo, parse_duration(w))
        assert q["total"] in records[(c.EVENTS_TOTAL, w)]
        assert (q.get("good") or q["bad"]) in records[(c.EVENTS_GOOD, w)]
        assert records[(c.SLI, w)].startswith(f"{c.EVENTS_GOOD}{{")
        assert f"({c.EVENTS_TOTAL}{{" in records[(c.SLI, w)] and records[(c.SLI, w)].endswith("> 0)")


@pytest.mark.parametrize("sli", SLIS)
def test_the_slo_window_is_a_ratio_of_sums_of_steps_recorded_every_step(
    sli: RatioSLI | LatencySLI | ThroughputSLI,
) -> None:
    slo = make(sli)
    group = period_group(slo)
    assert group is not None and group.interval == c.STEP == "5m"
    rules = {r.record: r.expr for r in group.rules if isinstance(r, RecordingRule)}
    assert event_queries(slo, parse_duration(c.STEP))["total"] in rules[c.STEP_EVENTS_TOTAL]
    assert rules[c.PERIOD_EVENTS_GOOD] == (
        f'sum_over_time({c.STEP_EVENTS_GOOD}{{service="shop",slo="checkout"}}[29d23h59m59s999ms])')
    assert rules[c.PERIOD_EVENTS_TOTAL] == (
        f'sum_over_time({c.STEP_EVENTS_TOTAL}{{service="shop",slo="checkout"}}[29d23h59m59s999ms])')
    assert rules[c.PERIOD_SLI].startswith(f"{c.PERIOD_EVENTS_GOOD}{{") and f"/ ({c.PERIOD_EVENTS_TOTAL}{{" in rules[
        c.PERIOD_SLI]
    every = " ".join(r.expr for g in every_group(slo) for r in g.rules)
    assert "avg_over_time" not in every, "an average of ratios weighs a quiet 5m like a busy one"


@pytest.mark.parametrize(("duration", "expected"), [
    pytest.param("30d", "29d23h59m59s999ms", id="30d holds (t-30d, t] as 30d minus 1ms"),
    pytest.param("7d", "6d23h59m59s999ms", id="a week is written in days"),
    pytest.param("5m", "4m59s999ms", id="one throughput step"),
])
def test_left_open_ranges_are_one_millisecond_short(duration: str, expected: str) -> None:
    assert left_open(parse_duration(duration)) == expected


@pytest.mark.parametrize("window", [pytest.param(CalendarWindow("month"), id="calendar month"),
                                    pytest.param(CalendarWindow("week", "Europe/Berlin"), id="calendar week")])
def test_calendar_windows_get_no_period_rules_and_say_why(window: Window) -> None:
    slo = make(window=window)
    assert period_group(slo) is None
    assert any("calendar window" in line for line in windows_group(slo).comment)
    group = alerts_group(slo)
    assert group is not None
    assert c.BUDGET_CONSUMED not in {r.alert for r in group.rules if isinstance(r, AlertingRule)}
    assert any(c.BUDGET_CONSUMED in line for line in group.comment)


@pytest.mark.parametrize(("objective", "fraction", "budget"), [
    pytest.param(99.95, "0.9995", "0.0005", id="99.95 is 0.9995 and 0.0005, without float noise"),
    pytest.param(95, "0.95", "0.05", id="95 is 0.95 and 0.05"),
    pytest.param(99.999, "0.99999", "0.00001", id="99.999 is written without an exponent"),
])
def test_objective_and_budget_are_exact_decimals(objective: float, fraction: str, budget: str) -> None:
    slo = make(objective=objective)
    assert (objective_fraction(slo), budget_fraction(slo)) == (fraction, budget)


def test_an_absent_errors_series_counts_as_no_errors() -> None:
    good = next(r for r in windows_group(make()).rules if isinstance(r, RecordingRule) and r.record == c.EVENTS_GOOD)
    assert good.expr.endswith("or vector(0))")


# --- files -----------------------------------------------------------------------------------------


def sample_slos() -> list[SLO]:
    return [
        SLO("b-svc", "avail", 99.9, RollingWindow(30 * DAY), ERRORS, source="specs/b.yaml"),
        SLO("a-svc", "latency", 95, CalendarWindow("week"), LatencySLI("h", '{a="b"}', 0.25), source="specs/a.yaml"),
        SLO("b-svc", "throughput", 99, RollingWindow(DAY), ThroughputSLI("sum(rate(x[1m]))", 5, timedelta(minutes=1)),
            source="specs/b.yaml"),
    ]


def test_output_is_deterministic_and_sorted_by_service() -> None:
    first = [rulefiles.render_rule_file(f) for f in rule_files(sample_slos())]
    again = [rulefiles.render_rule_file(f) for f in rule_files(sample_slos())]
    assert first == again
    files = rule_files(sample_slos())
    assert [(f.service, f.kind) for f in files] == [("a-svc", "rules"), ("a-svc", "alerts"),
                                                    ("b-svc", "rules"), ("b-svc", "alerts")]
    assert rulefiles.render_prometheus_rule(files) == rulefiles.render_prometheus_rule(rule_files(sample_slos()))


def test_rule_files_are_yaml_with_the_generated_header_and_fixed_key_order() -> None:
    files = rule_files(sample_slos())
    text = rulefiles.render_rule_file(files[2])
    assert text.startswith("# Generated by slowatch generate from specs/b.yaml. Do not edit.\n")
    doc = yaml.safe_load(text)
    group = doc["groups"][1]
    assert list(group) == ["name", "interval", "rules"] and group["interval"] == "5m"
    assert list(group["rules"][0]) == ["record", "expr", "labels"]
    alerts = yaml.safe_load(rulefiles.render_rule_file(files[3]))
    assert list(alerts["groups"][0]["rules"][0]) == ["alert", "expr", "labels", "annotations"]
    assert "not both" in rulefiles.render_rule_file(files[3])


def test_the_prometheusrule_holds_every_group() -> None:
    files = rule_files(sample_slos())
    doc = yaml.safe_load(rulefiles.render_prometheus_rule(files))
    assert (doc["apiVersion"], doc["kind"], doc["metadata"]["name"]) == (
        "monitoring.coreos.com/v1", "PrometheusRule", "slowatch-slos")
    assert [g["name"] for g in doc["spec"]["groups"]] == [g.name for f in files for g in f.groups]


def test_writing_replaces_our_files_and_removes_those_of_gone_services(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "gone.yaml").write_text("# Generated by slowatch generate from x.yaml. Do not edit.\n")
    (tmp_path / "rules" / "handwritten.yaml").write_text("groups: []\n")
    report = rulefiles.write_rule_files(rule_files(sample_slos()), tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in report.written] == [
        "rules/a-svc.yaml", "alerts/a-svc.yaml", "rules/b-svc.yaml", "alerts/b-svc.yaml"]
    assert report.removed == [tmp_path / "rules" / "gone.yaml"]
    assert (tmp_path / "rules" / "handwritten.yaml").exists()


# --- the promtool test generator ---------------------------------------------------------------


@pytest.mark.parametrize(("increments", "text"), [
    pytest.param([0, 5, 5, 5, 7], "0 5+5x2 22", id="runs of equal increments use a+bxn"),
    pytest.param([0, 0, 0], "0 0+0x1", id="a flat counter"),
])
def test_counter_values_are_exact(increments: list[int], text: str) -> None:
    assert rules_tests._values(increments) == text


def test_synthetic_series_match_the_selectors_they_stand_for() -> None:
    series = rules_tests._ratio_series('x_total{job="a",code=~"5..|429"}', 'x_total{job="a"}', [0, 1], [0, 3])
    assert series == [('x_total{job="a",code="500"}', [0, 1]), ('x_total{job="a"}', [0, 2])]
    good = rules_tests._ratio_series('x_total{job="a",code!~"5.."}', 'x_total{job="a"}', [0, 2], [0, 3])
    assert good == [('x_total{job="a"}', [0, 2]), ('x_total{job="a",code="500"}', [0, 1])]


def test_raw_queries_cannot_be_synthesised() -> None:
    with pytest.raises(rules_tests.UnsupportedSLI):
        rules_tests.build_case(make(RAW), rule_files([make()]), rules_tests.Scenario("x", (), ()))


def test_the_generated_tests_expect_what_the_daemon_would_alert() -> None:
    slo = make()
    files = rule_files([slo])
    incident = rules_tests.build_case(slo, files, rules_tests.incident(slo))  # type: ignore[arg-type]
    at = {(chk["eval_time"], chk["alertname"]): chk["exp_alerts"] for chk in incident["alert_rule_test"]}
    assert at[("60m", c.BUDGET_BURN)] == []
    pages = {(a["exp_labels"]["long_window"], a["exp_labels"]["severity"]) for a in at[("120m", c.BUDGET_BURN)]}
    assert pages == {("1h", "page"), ("6h", "page"), ("3d", "ticket")}
    half = rules_tests.build_case(slo, files, rules_tests.half_budget(slo))  # type: ignore[arg-type]
    at = {(chk["eval_time"], chk["alertname"]): chk["exp_alerts"] for chk in half["alert_rule_test"]}
    assert at[("120m", c.BUDGET_CONSUMED)] == []
    [fired] = at[("150m", c.BUDGET_CONSUMED)]
    assert fired["exp_labels"]["threshold"] == "50"
    assert fired["exp_annotations"]["summary"] == (
        "shop/checkout has consumed 54% of its 30d error budget (threshold 50%)")


# --- the command and the golden files -----------------------------------------------------------------


def run_generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    generate.register(parser.add_subparsers())
    args = parser.parse_args(["generate", *argv])
    code: int = args.func(args)
    return code


GOLDEN = ["rules", "alerts", "deploy/kubernetes/prometheusrule.yaml"]


def test_the_committed_rules_are_what_the_example_spec_generates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """On failure, refresh with the command in this module's docstring and review the diff."""
    monkeypatch.chdir(REPO)  # the header names the spec files as given: deploy/slos/<service>.yaml
    monkeypatch.setattr(generate, "write_dashboards", lambda slos, out_dir: [])  # not under test here
    assert run_generate(["deploy/slos", "--out", str(tmp_path), "--prometheusrule",
                         str(tmp_path / "deploy/kubernetes/prometheusrule.yaml")]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in GOLDEN:
        fresh, committed = tmp_path / name, REPO / name
        pairs = ([(fresh, committed)] if fresh.is_file() else
                 [(p, committed / p.name) for p in sorted(fresh.glob("*.yaml"))])
        assert pairs
        for new, old in pairs:
            assert old.exists(), f"{old} is missing: regenerate the golden files"
            assert new.read_text() == old.read_text(), f"{old} is stale: regenerate the golden files"
        if fresh.is_dir():
            extra = {p.name for p in committed.glob("*.yaml")} - {p.name for p in fresh.glob("*.yaml")}
            assert not extra, f"{sorted(extra)} in {committed} belong to no service of the spec"


# --- exclusions and composites ----------------------------------------------------------------------

MAINTENANCE = Exclusion("planned maintenance", start=datetime(2026, 11, 20, 2, tzinfo=UTC),
                        end=datetime(2026, 11, 20, 4, tzinfo=UTC))
WEEKLY = Exclusion("weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                   duration=timedelta(hours=2), timezone="Europe/Paris")


def records(groups: Sequence[RuleGroup]) -> dict[tuple[str, str | None], str]:
    return {(r.record, dict(r.labels).get("window")): r.expr for g in groups for r in g.rules
            if isinstance(r, RecordingRule)}


@pytest.mark.parametrize("exclusion", [pytest.param(MAINTENANCE, id="a one-off exclusion"),
                                       pytest.param(WEEKLY, id="a recurring exclusion")])
@pytest.mark.parametrize("window", [pytest.param(THIRTY_DAYS, id="rolling 30d"),
                                    pytest.param(CalendarWindow("month"), id="a calendar month")])
def test_an_slo_with_exclusions_records_empty_steps_while_excluded_and_sums_them_in_every_window(
    exclusion: Exclusion, window: Window,
) -> None:
    slo = replace(make(window=window), exclusions=(exclusion,))
    groups = recording_groups(slo)
    assert [g.name for g in groups] == [c.period_group("shop", "checkout"), c.windows_group("shop", "checkout")]
    got = records(groups)
    gauge = 'max(slowatch_exclusion_active{service="shop",slo="checkout"} offset 2m30s) == 1'
    for record in (c.STEP_EVENTS_GOOD, c.STEP_EVENTS_TOTAL):
        assert got[(record, None)].endswith(f") unless on () ({gauge})\nor 0 * ({gauge})")
    for w in BURN_RATE_WINDOWS:
        assert got[(c.EVENTS_TOTAL, w)] == (
            f'sum_over_time({c.STEP_EVENTS_TOTAL}{{service="shop",slo="checkout"}}[{left_open(parse_duration(w))}])')
    assert ((c.PERIOD_EVENTS_TOTAL, "30d") in got) == isinstance(window, RollingWindow)
    for group in every_group(slo):
        for rule in group.rules:
            promql_parser.parse(rule.expr)


def test_an_slo_without_exclusions_never_reads_the_exclusion_gauge() -> None:
    assert all(c.EXCLUSION_ACTIVE not in r.expr for g in every_group(make()) for r in g.rules)


def composite_of(weighting: Weighting = "weights", window: Window = THIRTY_DAYS) -> SLO:
    return SLO("journey", "checkout", 99.5, window, CompositeSLI(
        (Component("shop/checkout", 1), Component("pay/charge", 2.5)), weighting))


COMPONENTS = {s.id: s for s in (make(), replace(make(), service="pay", name="charge"))}


@pytest.mark.parametrize(("weighting", "good", "total"), [
    pytest.param("weights",
                 "1 * (label_replace(sum(slowatch:slo_events_good:increase{{service=\"shop\",slo=\"checkout\","
                 "window=\"{w}\"}}), \"slowatch_component\", \"shop/checkout\", \"\", \"\") / (label_replace(sum("
                 "slowatch:slo_events_total:increase{{service=\"shop\",slo=\"checkout\",window=\"{w}\"}}), "
                 "\"slowatch_component\", \"shop/checkout\", \"\", \"\") > 0))",
                 "2.5 * (label_replace(sum(slowatch:slo_events_total:increase{{service=\"pay\",slo=\"charge\","
                 "window=\"{w}\"}}), \"slowatch_component\", \"pay/charge\", \"\", \"\") > bool 0)",
                 id="weights: w times each component's SLI over the weights of components with events"),
    pytest.param("events",
                 "(label_replace(sum(slowatch:slo_events_good:increase{{service=\"shop\",slo=\"checkout\","
                 "window=\"{w}\"}}), \"slowatch_component\", \"shop/checkout\", \"\", \"\") and label_replace(sum("
                 "slowatch:slo_events_total:increase{{service=\"shop\",slo=\"checkout\",window=\"{w}\"}}), "
                 "\"slowatch_component\", \"shop/checkout\", \"\", \"\") > 0)",
                 "(label_replace(sum(slowatch:slo_events_total:increase{{service=\"pay\",slo=\"charge\","
                 "window=\"{w}\"}}), \"slowatch_component\", \"pay/charge\", \"\", \"\") > 0)",
                 id="events: the components' good and total events summed"),
])
def test_a_composite_window_combines_its_components_recorded_events(weighting: Weighting, good: str,
                                                                    total: str) -> None:
    slo = composite_of(weighting)
    got = records(recording_groups(slo, COMPONENTS))
    for w in BURN_RATE_WINDOWS:
        assert got[(c.EVENTS_GOOD, w)].startswith("sum(\n  " + good.format(w=w) + "\n  or ")
        assert got[(c.EVENTS_TOTAL, w)].endswith("\n  or " + total.format(w=w) + "\n)")
        assert got[(c.SLI, w)].startswith('slowatch:slo_events_good:increase{service="journey",slo="checkout"')
    # The SLO window: the components' steps summed over the composite's 30d.
    assert ('sum_over_time(slowatch:slo_step_events_good:increase5m{service="pay",slo="charge"}'
            '[29d23h59m59s999ms])') in got[(c.PERIOD_EVENTS_GOOD, "30d")]
    for group in every_group(slo):
        for rule in group.rules:
            promql_parser.parse(rule.expr)


def test_a_composite_over_a_calendar_component_has_no_slo_window_rules_and_says_why() -> None:
    every = {**COMPONENTS, "pay/charge": replace(COMPONENTS["pay/charge"], window=CalendarWindow("month"))}
    slo = composite_of()
    (windows,) = recording_groups(slo, every)
    assert any("pay/charge has a calendar window" in line for line in windows.comment)
    alerts = alerts_group(slo, every)
    assert alerts is not None
    assert [r.alert for r in alerts.rules if isinstance(r, AlertingRule)] == [c.BUDGET_BURN] * 3
    assert any(c.BUDGET_CONSUMED in line for line in alerts.comment)
