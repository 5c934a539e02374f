"""OpenSLO in: the specification's examples load or give the documented error, every construct
slowatch cannot honour is refused at its file, document and field, and what maps, maps exactly."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slowatch.core.model import (
    SLO,
    AlertExtras,
    AlertPolicy,
    CalendarWindow,
    Component,
    CompositeSLI,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
)
from slowatch.errors import SpecError, SpecProblem
from slowatch.formats.openslo import ONE_PER_WINDOW
from slowatch.spec import load_specs

DATA = Path(__file__).parents[1] / "data" / "openslo"
DEPLOY = Path(__file__).parents[2] / "deploy" / "slos"
AUTH = 'http_requests_total{service="auth"}'
AUTH_5XX = 'http_requests_total{service="auth",code=~"5.."}'
DOWN = "1 - avg(avg_over_time(up[{{.window}}]))"


def problems_of(paths: list[Path]) -> list[SpecProblem]:
    with pytest.raises(SpecError) as exc:
        load_specs(paths)
    return exc.value.problems


def metric(query: str, **source: Any) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}, **source}}


def slo_doc(**spec: Any) -> dict[str, Any]:
    """A valid OpenSLO v1 SLO (auth, 99.9% of requests without a 5xx over 28d); ``spec`` overrides."""
    base: dict[str, Any] = {
        "service": "auth",
        "indicator": {"metadata": {"name": "errors"}, "spec": {"ratioMetric": {
            "counter": True, "bad": metric(AUTH_5XX), "total": metric(AUTH)}}},
        "timeWindow": [{"duration": "28d", "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [{"target": 0.999}],
    }
    base.update(spec)
    return {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "login"}, "spec": base}


def target(name: str) -> dict[str, Any]:
    return {"apiVersion": "openslo/v1", "kind": "AlertNotificationTarget", "metadata": {"name": name},
            "spec": {"target": name}}


def burn_policy(severity: str, threshold: float, lookback: str, after: str, *targets: str) -> dict[str, Any]:
    """An inline policy with one burn-rate condition (the specification allows one per policy)."""
    return {"kind": "AlertPolicy", "metadata": {"name": f"{severity}-{lookback}"}, "spec": {
        "alertWhenBreaching": True, "notificationTargets": [{"targetRef": t} for t in targets],
        "conditions": [{"kind": "AlertCondition", "metadata": {"name": f"{severity}-{lookback}"}, "spec": {
            "severity": severity, "condition": {"kind": "burnrate", "op": "gte", "threshold": threshold,
                                                "lookbackWindow": lookback, "alertAfter": after}}}]}}


def composite_doc(weights: tuple[float, float] = (1, 2), **spec: Any) -> dict[str, Any]:
    """An OpenSLO v1 composite (the Go SDK's shape): a checkout journey over an inline login
    indicator (99.9%) and a referenced payment SLI (99%), weighted ``weights``."""
    base: dict[str, Any] = {
        "service": "checkout",
        "timeWindow": [{"duration": "28d", "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [
            {"displayName": "Login", "indicator": {"metadata": {"name": "login"}, "spec": {"ratioMetric": {
                "counter": True, "bad": metric(AUTH_5XX), "total": metric(AUTH)}}},
             "target": 0.999, "compositeWeight": weights[0]},
            {"displayName": "Payment", "indicatorRef": "payment", "target": 0.99, "compositeWeight": weights[1]},
        ],
    }
    base.update(spec)
    return {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "journey"}, "spec": base}


PAYMENT_SLI = {"apiVersion": "openslo/v1", "kind": "SLI", "metadata": {"name": "payment"}, "spec": {"ratioMetric": {
    "counter": True, "good": metric('pay_total{code="200"}'), "total": metric("pay_total")}}}


def write(tmp_path: Path, *docs: dict[str, Any], name: str = "slo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def strip(slos: list[SLO]) -> list[SLO]:
    return sorted((replace(s, source="") for s in slos), key=lambda s: s.id)


EXAMPLES = [
    pytest.param("occurences-slo.yaml", [
        ("doc[0].spec.indicator.spec.thresholdMetric.metricSource.type", "metric source type 'Any' is not supported"),
    ], id="the occurrences example is refused for its non-Prometheus metric source"),
    pytest.param("ratio-timeslices.yaml", [
        ("doc[0].spec.budgetingMethod", "RatioTimeslices over a ratio is not supported"),
    ], id="the ratio-timeslices example is refused for RatioTimeslices over a ratio"),
    pytest.param("readme-examples.yaml", [
        ("doc[0].spec.type", "data source type 'CloudWatch' is not supported"),
        ("doc[1].spec.timeWindow", "expected a list of exactly one window"),
        ("doc[1].spec.budgetingMethod", "budgetingMethod must be Occurrences, Timeslices or RatioTimeslices"),
        ("doc[1].spec.indicator.spec.ratioMetric.good.metricSource.metricSourceRef",
         "no DataSource named 'datadog-datasource'"),
        ("doc[1].spec.indicator.spec.ratioMetric.good.metricSource.type", "metric source type 'Datadog'"),
        ("doc[1].spec.indicator.spec.ratioMetric.total.metricSource.metricSourceRef",
         "no DataSource named 'datadog-datasource'"),
        ("doc[1].spec.indicator.spec.ratioMetric.total.metricSource.type", "metric source type 'Datadog'"),
    ], id="the README's examples are refused for their CloudWatch and Datadog sources and missing fields"),
    pytest.param("timeslices-slo.yaml", [
        ("doc[0].spec.timeWindow[0].calendar.startTime", "start at 00:00 on each Monday"),
        ("doc[0].spec.budgetingMethod", "Timeslices over a ratio is not supported"),
    ], id="the low-traffic timeslices example is refused for its noon start and Timeslices over a ratio"),
]


@pytest.mark.parametrize(("name", "expected"), EXAMPLES)
def test_the_specifications_examples_give_the_documented_error(name: str, expected: list[tuple[str, str]]) -> None:
    problems = problems_of([DATA / name])
    assert [p.path for p in problems] == [path for path, _ in expected]
    for problem, (_, text) in zip(problems, expected, strict=True):
        assert text in problem.message
        assert problem.file == str(DATA / name)


def test_an_slo_whose_objects_live_in_another_file_equals_the_native_one() -> None:
    native = [s for s in load_specs([DEPLOY]) if s.id == "auth/login-availability"]
    assert strip(load_specs([DATA / "ref"])) == strip(native)


def one(tmp_path: Path, doc: dict[str, Any]) -> SLO:
    [slo] = load_specs([write(tmp_path, doc)])
    return slo


@pytest.mark.parametrize(
    ("spec", "check"),
    [
        pytest.param({}, lambda s: s == SLO(
            service="auth", name="login", objective_percent=99.9, window=RollingWindow(timedelta(days=28)),
            sli=RatioSLI(total=AUTH, errors=AUTH_5XX), alerting=AlertPolicy(budget_consumed=(), burn_rate=False),
            source=s.source), id="a counter ratio is a selector ratio, and no alert policy means no alerts"),
        pytest.param({"indicator": {"spec": {"ratioMetric": {
            "counter": False, "good": metric("sum(increase(ok[{{.window}}]))"),
            "total": metric("sum(increase(all[{{.window}}]))")}}}},
            lambda s: s.sli == RatioSLI(total="sum(increase(all[{{.window}}]))", good="sum(increase(ok[{{.window}}]))",
                                        raw=True),
            id="a non-counter ratio is the raw form with its window placeholder"),
        pytest.param({"indicator": {"spec": {"ratioMetric": {"rawType": "failure", "raw": metric(DOWN)}}}},
                     lambda s: s.sli == RatioSLI(total=ONE_PER_WINDOW, errors=DOWN, raw=True),
                     id="a precomputed failure ratio is errors over one event per window"),
        pytest.param({"indicator": {"spec": {"thresholdMetric": metric('lat_seconds_bucket{job="api"}')}},
                      "objectives": [{"op": "lte", "value": 0.25, "targetPercent": 95}]},
                     lambda s: s.sli == LatencySLI("lat_seconds", '{job="api"}', 0.25) and s.objective_percent == 95,
                     id="a threshold under a histogram's bucket selector is latency, targetPercent its objective"),
        pytest.param({"indicator": {"spec": {"thresholdMetric": metric("sum(rate(x[1m]))")}},
                      "budgetingMethod": "Timeslices",
                      "objectives": [{"op": "gte", "value": 200, "target": 0.99, "timeSliceWindow": "5m"}]},
                     lambda s: s.sli == ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=5)),
                     id="a threshold over a rate with Timeslices is throughput, the slice its timeSliceWindow"),
        pytest.param({"timeWindow": [{"duration": "1M", "isRolling": False,
                                      "calendar": {"startTime": "2024-03-01 00:00:00", "timeZone": "Europe/Paris"}}]},
                     lambda s: s.window == CalendarWindow("month", "Europe/Paris"),
                     id="a calendar month starting on the 1st at midnight is a calendar month in its zone"),
    ],
)
def test_each_construct_maps_onto_the_model(tmp_path: Path, spec: dict[str, Any], check: Any) -> None:
    doc = slo_doc(**spec)
    assert check(one(tmp_path, doc))


def test_several_objectives_are_one_slo_each_named_by_display_name_or_index(tmp_path: Path) -> None:
    doc = slo_doc(objectives=[{"displayName": "Internal objective", "target": 0.999}, {"target": 0.99}])
    slos = load_specs([write(tmp_path, doc)])
    assert [(s.name, s.objective_percent) for s in slos] == [("login-internal-objective", 99.9), ("login-1", 99.0)]


MISTAKES = [
    pytest.param([slo_doc(indicatorRef="errors")],
                 [("doc[0].spec", "exactly one of indicator")], id="indicator and indicatorRef are one or the other"),
    pytest.param([{**slo_doc(), "spec": {k: v for k, v in slo_doc()["spec"].items() if k != "indicator"}
                   | {"indicatorRef": "missing"}}],
                 [("doc[0].spec.indicatorRef", "no SLI named 'missing'")], id="a reference to no SLI is refused"),
    pytest.param([slo_doc(objectives=[{"target": 99.9}])],
                 [("doc[0].spec.objectives[0].target", "target is a fraction in (0, 1)")],
                 id="a target written as a percent points to targetPercent"),
    pytest.param([slo_doc(objectives=[{"target": 0.999, "indicatorRef": "other"}])],
                 [("doc[0].spec.indicator", "not on the SLO as well"),
                  ("doc[0].spec.objectives[0].indicatorRef", "no SLI named 'other'")],
                 id="a composite's indicators are on its objectives, not on the SLO too"),
    pytest.param([slo_doc(objectives=[{"target": 0.999, "compositeWeight": 2}])],
                 [("doc[0].spec.objectives[0].compositeWeight", "goes with an objective's own indicator")],
                 id="a compositeWeight without an indicator on its objective is refused"),
    pytest.param([composite_doc(weights=(1, 0))],
                 [("doc[0].spec.objectives[1].compositeWeight", "a number > 0, got 0")],
                 id="a composite weight of 0 is refused"),
    pytest.param([{"apiVersion": "openslo/v1alpha", "kind": "SLO", "metadata": {"name": "login"}, "spec": {
        "service": "auth", "timeWindows": [{"unit": "Day", "count": 28, "isRolling": True}],
        "budgetingMethod": "Occurrences", "objectives": [{"target": 0.999, "compositeWeight": 2, "ratioMetrics": {
            "good": {"source": "prometheus", "query": "ok_total"},
            "total": {"source": "prometheus", "query": "all_total"}}}]}}],
                 [("doc[0].spec.objectives[0].compositeWeight", "openslo/v1alpha has no composite SLOs")],
                 id="v1alpha has no composites"),
    pytest.param([slo_doc(timeWindow=[{"duration": "1M", "isRolling": True}])],
                 [("doc[0].spec.timeWindow[0].duration", "has no fixed length")], id="a rolling month is refused"),
    pytest.param([slo_doc(timeWindow=[{"duration": "2w", "isRolling": False, "calendar": {"timeZone": "UTC"}}])],
                 [("doc[0].spec.timeWindow[0].duration", "a month (duration: 1M) or an ISO week")],
                 id="a two-week calendar window is refused"),
    pytest.param([slo_doc(indicator={"spec": {"ratioMetric": {"bad": metric(AUTH_5XX), "total": metric(AUTH)}}})],
                 [("doc[0].spec.indicator.spec.ratioMetric.counter", "expected counter: true")],
                 id="a ratio must say whether it is a counter"),
    pytest.param([slo_doc(indicator={"spec": {"ratioMetric": {
        "counter": True, "bad": {"metricSource": {"type": "Datadog", "spec": {"query": "x"}}},
        "total": metric(AUTH)}}})],
                 [("doc[0].spec.indicator.spec.ratioMetric.bad.metricSource.type", "'Datadog' is not supported")],
                 id="a Datadog metric source is refused"),
    pytest.param([slo_doc(indicator={"spec": {"ratioMetric": {
        "counter": True, "bad": metric(AUTH_5XX, metricSourceRef="dd"), "total": metric(AUTH)}}}),
        {"apiVersion": "openslo/v1", "kind": "DataSource", "metadata": {"name": "dd"}, "spec": {"type": "Datadog"}}],
                 [("doc[1].spec.type", "data source type 'Datadog' is not supported")],
                 id="a Datadog data source is refused where it is defined"),
    pytest.param([slo_doc(indicator={"spec": {"ratioMetric": {
        "counter": False, "bad": metric(AUTH_5XX), "total": metric("sum(increase(all[{{.window}}]))")}}})],
                 [("doc[0].spec.indicator.spec.ratioMetric.bad.metricSource.spec.query", "must contain {{.window}}")],
                 id="a non-counter query without the window placeholder is refused by the native check at its field"),
    pytest.param([slo_doc(indicator={"spec": {"thresholdMetric": metric("histogram_quantile(0.99, x)")}},
                          objectives=[{"op": "lt", "value": 0.5, "target": 0.99}])],
                 [("doc[0].spec.indicator.spec.thresholdMetric.metricSource.spec.query", "histogram's buckets")],
                 id="a quantile threshold is refused: latency is counted from buckets"),
    pytest.param([slo_doc(alertPolicies=[{"kind": "AlertPolicy", "metadata": {"name": "p"}, "spec": {
        "conditions": [{"kind": "AlertCondition", "metadata": {"name": "c"}, "spec": {
            "condition": {"kind": "burnrate", "op": "gte", "threshold": 2, "lookbackWindow": "1h"}}}]}}])],
                 [("doc[0].spec.alertPolicies[0].spec.conditions[0].spec.condition", "not one slowatch raises")],
                 id="a burn-rate condition that is no row of slowatch's table is refused"),
    pytest.param([slo_doc(alertPolicies=[{"kind": "AlertPolicy", "metadata": {"name": "p"}, "spec": {
        "alertWhenResolved": False, "notificationTargets": [{"targetRef": "pagerduty"}], "conditions": []}}])],
                 [("doc[0].spec.alertPolicies[0].spec.alertWhenResolved", "send_resolved"),
                  ("doc[0].spec.alertPolicies[0].spec.notificationTargets[0].targetRef",
                   "no AlertNotificationTarget named 'pagerduty'")],
                 id="alertWhenResolved false is refused (Alertmanager's send_resolved) and a target must exist"),
    pytest.param([target("slack"), target("slack")],
                 [("doc[1].metadata.name", "a second AlertNotificationTarget named 'slack'")],
                 id="two objects of one kind and name are refused: a reference would be ambiguous"),
    pytest.param([slo_doc(objectives=[{"targetPercent": 100}])],
                 [("doc[0].spec.objectives[0].targetPercent", "100% leaves no error budget")],
                 id="the native objective check speaks at targetPercent"),
    pytest.param([{"apiVersion": "openslo/v1", "kind": "Widget"}],
                 [("doc[0].kind", "unknown OpenSLO kind 'Widget'")], id="an unknown kind is refused"),
]


@pytest.mark.parametrize(("docs", "expected"), MISTAKES)
def test_each_unsupported_construct_is_named_at_its_document_and_field(
    tmp_path: Path, docs: list[dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    path = write(tmp_path, *docs)
    problems = problems_of([path])
    assert [p.path for p in problems] == [want for want, _ in expected], problems
    for problem, (_, text) in zip(problems, expected, strict=True):
        assert text in problem.message, problem
        assert problem.file == str(path)


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, slo_doc(objectives=[{"target": 99.9}]), name="a.yaml")
    second = write(tmp_path, slo_doc(), slo_doc(timeWindow=[{"duration": "1Q"}]), name="b.yaml")
    problems = problems_of([tmp_path])
    assert [(Path(p.file).name, p.path) for p in problems] == [
        ("a.yaml", "doc[0].spec.objectives[0].target"),
        ("b.yaml", "doc[1].spec.timeWindow[0].duration"),
    ]
    assert first.exists() and second.exists()


def test_v1alpha_reads_time_windows_and_objective_ratio_metrics(tmp_path: Path) -> None:
    doc = {"apiVersion": "openslo/v1alpha", "kind": "SLO", "metadata": {"name": "login"}, "spec": {
        "service": "auth", "timeWindows": [{"unit": "Day", "count": 28, "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [{"target": 0.999, "ratioMetrics": {
            "incremental": True, "good": {"source": "prometheus", "queryType": "promql", "query": "ok_total"},
            "total": {"source": "prometheus", "queryType": "promql", "query": "all_total"}}}]}}
    slo = one(tmp_path, doc)
    assert (slo.sli, slo.window, slo.objective_percent) == (
        RatioSLI(total="all_total", good="ok_total"), RollingWindow(timedelta(days=28)), 99.9)


def test_notification_targets_become_a_label_on_their_severitys_alerts(tmp_path: Path) -> None:
    """The specification leaves delivery to the implementation and suggests a label Alertmanager
    routes on: page rows notify pagerduty, the ticket row slack (28d window: 13.44, 5.6, 1)."""
    policies = [burn_policy("page", 13.44, "1h", "5m", "pagerduty"), burn_policy("page", 5.6, "6h", "30m", "pagerduty"),
                burn_policy("ticket", 1, "3d", "6h", "slack")]
    path = write(tmp_path, slo_doc(alertPolicies=policies), target("pagerduty"), target("slack"))
    [slo] = load_specs([path])
    assert slo.alerting == AlertPolicy(budget_consumed=(), burn_rate=True, extras=(
        ("page", AlertExtras(labels=(("notification_target", "pagerduty"),))),
        ("ticket", AlertExtras(labels=(("notification_target", "slack"),))),
    ))


def test_a_time_slice_window_given_as_a_number_is_minutes(tmp_path: Path) -> None:
    doc = slo_doc(indicator={"spec": {"thresholdMetric": metric("sum(rate(x[1m]))")}}, budgetingMethod="Timeslices",
                  objectives=[{"op": "gte", "value": 200, "target": 0.99, "timeSliceWindow": 5}])
    assert one(tmp_path, doc).sli == ThroughputSLI("sum(rate(x[1m]))", 200, timedelta(minutes=5))


def test_one_file_may_hold_documents_of_every_format_each_reported_at_its_index(tmp_path: Path) -> None:
    native: dict[str, Any] = {"apiVersion": "slowatch/v1", "service": "native", "slos": [
        {"name": "a", "objective": 0.999, "window": "30d", "sli": {"ratio": {"total": "t", "errors": "e"}}}]}
    sloth: dict[str, Any] = {"version": "prometheus/v1", "service": "sloth", "slos": [
        {"name": "a", "objective": 99.9, "sli": {"events": {"error_query": "e", "total_query": "t"}}}]}
    path = write(tmp_path, slo_doc(), native, sloth)
    problems = problems_of([path])
    assert [p.path for p in problems] == [
        "doc[1].slos[0].objective", "doc[2].slos[0].sli.events.total_query", "doc[2].slos[0].sli.events.error_query"]
    native["slos"][0]["objective"] = 99.9
    sloth["slos"][0]["sli"]["events"] = {"error_query": "sum(rate(e[{{.window}}]))",
                                         "total_query": "sum(rate(t[{{.window}}]))"}
    slos = load_specs([write(tmp_path, slo_doc(), native, sloth)])
    assert [s.id for s in slos] == ["auth/login", "native/a", "sloth/a"]


# --- composite SLOs ------------------------------------------------------------------------------


def test_an_openslo_composite_is_its_objectives_as_components_and_their_weighted_mean(tmp_path: Path) -> None:
    slos = {s.id: s for s in load_specs([write(tmp_path, composite_doc(), PAYMENT_SLI)])}
    assert sorted(slos) == ["checkout/journey", "checkout/journey-login", "checkout/journey-payment"]
    journey = slos["checkout/journey"]
    assert journey.sli == CompositeSLI(components=(Component("checkout/journey-login", 1.0),
                                                   Component("checkout/journey-payment", 2.0)))
    # With no slowatch/composite-objective: the weighted mean of the targets, (99.9 + 2 * 99) / 3.
    assert journey.objective_percent == pytest.approx(99.3, rel=1e-15)
    assert slos["checkout/journey-login"].sli == RatioSLI(total=AUTH, errors=AUTH_5XX)
    assert slos["checkout/journey-payment"].sli == RatioSLI(total="pay_total", good='pay_total{code="200"}')
    assert [slos[f"checkout/journey-{n}"].objective_percent for n in ("login", "payment")] == [99.9, 99.0]
    assert not slos["checkout/journey-login"].alerting.burn_rate  # the alert policies are the composite's


@pytest.mark.parametrize("annotations", [
    pytest.param({}, id="a foreign composite"),
    pytest.param({"slowatch/composite-objective": "99.5", "slowatch/composite-weighting": "events"},
                 id="a composite with slowatch's objective and events weighting"),
])
def test_an_openslo_composite_round_trips_read_write_read_to_the_same_slos(
        tmp_path: Path, annotations: dict[str, str]) -> None:
    from slowatch.formats import writer

    doc = composite_doc(alertPolicies=[burn_policy("page", 13.44, "1h", "5m"), burn_policy("page", 5.6, "6h", "30m"),
                                       burn_policy("ticket", 1, "3d", "6h")])
    doc["metadata"]["annotations"] = annotations
    first = load_specs([write(tmp_path, doc, PAYMENT_SLI)])
    assert next(s for s in first if s.name == "journey").alerting.burn_rate
    documents, notes = writer.to_openslo(first)
    assert notes == []
    (tmp_path / "again").mkdir()
    for service, docs in documents.items():
        (tmp_path / "again" / f"{service}.yaml").write_text(writer.dump(docs))
    assert strip(load_specs([tmp_path / "again"])) == strip(first)
