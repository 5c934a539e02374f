"""The generated rules against the real tools: ``promtool check rules``, ``promtool test rules``
with test files slowatch generates (core/rules_tests.py), and ``vmalert -dryRun``.

A missing binary fails (never skips), like the other integration tests: CI installs the Debian
packages prometheus (promtool) and victoria-metrics (vmalert).
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slowatch.adapters import rulefiles
from slowatch.core import conventions as c
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
    nominal_length,
)
from slowatch.core.rules import RuleFile, rule_files
from slowatch.core.windows import alert_windows_for
from slowatch.files import write_atomically
from slowatch.spec import load_specs
from tests.support import rules_tests
from tests.support.processes import VERSIONS, ProcessError, find_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = load_specs([REPO / "deploy" / "slos"])
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)

# Every SLI kind and window kind, with policies the example spec does not use.
HAND_BUILT = [
    SLO("shop", "checkout-errors", 99.9, RollingWindow(30 * DAY),
        RatioSLI(total='http_requests_total{job="shop",handler="/checkout"}',
                 errors='http_requests_total{job="shop",handler="/checkout",code=~"5..|429"}'),
        labels=(("team", "payments"),),
        alerting=AlertPolicy(budget_consumed=(50.0, 75.5, 100.0), runbook_url="https://runbooks.example/checkout")),
    SLO("search", "rpc-success", 99.5, RollingWindow(7 * DAY),
        RatioSLI(total='rpc_requests_total{service="search"}',
                 good='rpc_requests_total{service="search",status!~"error|timeout"}')),
    SLO("queue", "jobs", 99, RollingWindow(timedelta(hours=2)),
        RatioSLI(total="queue_jobs_total", good="queue_jobs_succeeded_total")),
    SLO("batch", "raw-ratio", 99, RollingWindow(28 * DAY),
        RatioSLI(total="sum(increase(jobs_total[{{.window}}]))", errors="sum(increase(jobs_failed_total[{{.window}}]))",
                 raw=True)),
    SLO("api", "grpc-latency", 99, RollingWindow(DAY),
        LatencySLI("grpc_server_handling_seconds", '{grpc_service="api"}', 0.25)),
    SLO("ingest", "events-rate", 99, RollingWindow(DAY),
        ThroughputSLI('sum(rate(ingest_events_total{pipeline="main"}[2m]))', 50, MINUTE)),
    SLO("ingest", "hourly-bursts", 90, RollingWindow(7 * DAY),
        ThroughputSLI('max_over_time(sum(rate(ingest_events_total[5m]))[1h:5m])', 500, timedelta(hours=1))),
    SLO("billing", "invoices-monthly", 99.9, CalendarWindow("month"),
        RatioSLI(total="invoices_total", errors='invoices_total{result="failed"}')),
    SLO("billing", "render-weekly", 95, CalendarWindow("week", "Europe/Berlin"),
        LatencySLI("render_seconds", '{app="billing"}', 2.0)),
    SLO("quiet", "no-alerts", 99, RollingWindow(30 * DAY), RatioSLI(total="q_total", errors="q_errors_total"),
        alerting=AlertPolicy(budget_consumed=(), burn_rate=False)),
    # Sundays 02:00 from 1970-01-04: after every scenario, so the scenarios show that windows
    # summed from the (unmasked) steps alert exactly as the counters do.
    SLO("shop", "checkout-maintained", 99.9, RollingWindow(30 * DAY),
        RatioSLI(total='http_requests_total{job="shop",handler="/cart"}',
                 errors='http_requests_total{job="shop",handler="/cart",code=~"5.."}'),
        exclusions=(Exclusion("weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                              duration=2 * timedelta(hours=1), start=datetime(1970, 1, 1, tzinfo=UTC)),)),
    SLO("journey", "checkout", 99.5, RollingWindow(30 * DAY),
        CompositeSLI((Component("shop/checkout-errors", 1), Component("search/rpc-success", 3),
                      Component("queue/jobs", 5)))),
    SLO("journey", "everything", 99, RollingWindow(7 * DAY),
        CompositeSLI((Component("journey/checkout", 1), Component("api/grpc-latency", 2)), "events")),
]
# SLIs whose series the test generator cannot synthesise (their rules are still checked).
UNSUPPORTED = {"batch/raw-ratio", "ingest/hourly-bursts", "gateway/burst-throughput", "journey/checkout",
               "journey/everything"}


def tool(name: str, version: str) -> str:
    try:
        return find_binary(name, version=version)
    except ProcessError as exc:
        pytest.fail(str(exc), pytrace=False)


# Every rules test runs on both tool versions: Debian stable's and the current release (.tools/sid).
@pytest.fixture(params=VERSIONS["promtool"], ids=[f"promtool-{v}" for v in VERSIONS["promtool"]])
def promtool(request: pytest.FixtureRequest) -> str:
    return tool("promtool", request.param)


@pytest.fixture(params=VERSIONS["vmalert"], ids=[f"vmalert-{v}" for v in VERSIONS["vmalert"]])
def vmalert(request: pytest.FixtureRequest) -> str:
    return tool("vmalert", request.param)


def run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, cwd=cwd, check=False)


def write(files: Sequence[RuleFile], out: Path) -> list[Path]:
    return rulefiles.write_rule_files(files, out).written


def ids(slos: Sequence[SLO]) -> list[Any]:
    return [pytest.param(s, id=s.id) for s in slos]


# --- promtool check rules / vmalert -dryRun --------------------------------------------------------


@pytest.mark.parametrize("slos", [pytest.param(EXAMPLE, id="the example spec"),
                                  pytest.param(HAND_BUILT, id="every SLI kind and window kind")])
def test_promtool_accepts_every_generated_file(slos: list[SLO], tmp_path: Path, promtool: str) -> None:
    files = rule_files(slos)
    paths = write(files, tmp_path)
    prometheus_rule = yaml.safe_load(rulefiles.render_prometheus_rule(files))
    unwrapped = tmp_path / "prometheusrule-groups.yaml"  # promtool reads the operator's spec, unwrapped
    unwrapped.write_text(yaml.safe_dump({"groups": prometheus_rule["spec"]["groups"]}))
    result = run([promtool, "check", "rules", *map(str, paths), str(unwrapped)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(paths) + 1


@pytest.mark.parametrize("slos", [pytest.param(EXAMPLE, id="the example spec"),
                                  pytest.param(HAND_BUILT, id="every SLI kind and window kind")])
def test_vmalert_loads_every_generated_file(slos: list[SLO], tmp_path: Path, vmalert: str) -> None:
    paths = write(rule_files(slos), tmp_path)
    result = run([vmalert, *(f"-rule={p}" for p in paths), "-dryRun", "-loggerLevel=ERROR"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_vmalert_dry_run_does_reject_a_broken_file(tmp_path: Path, vmalert: str) -> None:
    """The control for the test above: -dryRun validates expressions and templates."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - record: a\n        expr: sum(rate(x[5m])\n")
    assert run([vmalert, f"-rule={broken}", "-dryRun", "-loggerLevel=ERROR"]).returncode != 0


# --- promtool test rules with generated tests ----------------------------------------------------------


def generated_test(slo: SLO, work: Path, scenarios: Sequence[rules_tests.Scenario] | None = None,
                   ) -> tuple[Path, dict[str, Any]]:
    """This SLO's rules alone (another SLO's rules could match the same synthetic series) and a
    promtool test file for ``scenarios`` (default: every scenario that applies to it)."""
    files = rule_files([slo])
    pairs = []
    for f in files:
        path = work / f"{f.kind}.yaml"
        write_atomically(path, rulefiles.render_rule_file(f))
        pairs.append((path.name, f))
    doc = rules_tests.build_document(slo, pairs, rules_tests.scenarios_for(slo) if scenarios is None else scenarios)
    test_file = work / "test.yaml"
    write_atomically(test_file, rulefiles.render_mapping(doc, (f"promtool test rules for {slo.id}",)))
    return test_file, doc


def expected(doc: dict[str, Any], scenario: str, eval_time: str, alertname: str) -> list[dict[str, Any]]:
    [case] = [t for t in doc["tests"] if t["name"].endswith(scenario)]
    [check] = [a for a in case["alert_rule_test"] if (a["eval_time"], a["alertname"]) == (eval_time, alertname)]
    alerts: list[dict[str, Any]] = check["exp_alerts"]
    return alerts


SUPPORTED = [s for s in EXAMPLE + HAND_BUILT if s.id not in UNSUPPORTED]


@pytest.mark.parametrize("slo", ids(SUPPORTED))
def test_generated_rules_alert_as_the_daemon_would(slo: SLO, tmp_path: Path, promtool: str) -> None:
    test_file, doc = generated_test(slo, tmp_path)
    result = run([promtool, "test", "rules", test_file.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "SUCCESS" in result.stdout

    # The expectations are not vacuous: a healthy service is silent, half the budget consumed
    # fires the 50% ticket (rolling windows: calendar ones leave it to the daemon), an hour of
    # errors pages whenever an hour of errors can reach the page factor.
    healthy = rules_tests.healthy(slo)
    assert healthy is not None
    for case in doc["tests"]:
        if case["name"].endswith(healthy.name):
            assert all(a["exp_alerts"] == [] for a in case["alert_rule_test"])
    half = rules_tests.half_budget(slo)
    if half is not None and isinstance(slo.window, RollingWindow) and 50.0 in slo.alerting.budget_consumed:
        before, after = (f"{t}m" for t in half.checks)
        assert expected(doc, half.name, before, c.BUDGET_CONSUMED) == []
        fired = expected(doc, half.name, after, c.BUDGET_CONSUMED)
        assert [a["exp_labels"]["threshold"] for a in fired] == ["50"]
    outage = rules_tests.incident(slo)
    assert outage is not None
    pages = [a for a in expected(doc, outage.name, "120m", c.BUDGET_BURN) if a["exp_labels"]["severity"] == "page"]
    assert expected(doc, outage.name, "60m", c.BUDGET_BURN) == []
    first = alert_windows_for(nominal_length(slo.window))[:1]
    if slo.alerting.burn_rate and first and 1 / slo.budget >= first[0].factor(nominal_length(slo.window)):
        assert {(a["exp_labels"]["long_window"], a["exp_labels"]["short_window"]) for a in pages} >= {("1h", "5m")}
        assert all(a["exp_labels"][c.SOURCE_LABEL] == "prometheus" for a in pages)


def test_an_incident_pages_with_the_daemons_labels(tmp_path: Path) -> None:
    slo = HAND_BUILT[0]
    _, doc = generated_test(slo, tmp_path)
    outage = rules_tests.incident(slo)
    assert outage is not None
    page = next(a for a in expected(doc, outage.name, "120m", c.BUDGET_BURN) if a["exp_labels"]["long_window"] == "1h")
    assert page["exp_labels"] == {
        "service": "shop", "slo": "checkout-errors", "severity": "page", "long_window": "1h", "short_window": "5m",
        "team": "payments", "slowatch_source": "prometheus",
    }
    assert page["exp_annotations"]["runbook_url"] == "https://runbooks.example/checkout"


@pytest.mark.parametrize("slo", ids([s for s in EXAMPLE + HAND_BUILT if s.id in UNSUPPORTED]))
def test_slis_without_synthesisable_series_say_so(slo: SLO) -> None:
    with pytest.raises(rules_tests.UnsupportedSLI):
        rules_tests.build_document(slo, [(f.kind, f) for f in rule_files([slo])], rules_tests.scenarios_for(slo))


def test_a_step_group_evaluated_every_minute_would_count_every_event_five_times(tmp_path: Path, promtool: str) -> None:
    """Why the period group's interval is pinned to the step: promtool ignores group intervals,
    so evaluating at 1m shows what a Prometheus with a 1m group interval would record."""
    slo = next(s for s in HAND_BUILT if s.id == "api/grpc-latency")
    test_file, doc = generated_test(slo, tmp_path)
    doc["evaluation_interval"] = "1m"
    write_atomically(test_file, rulefiles.render_mapping(doc))
    result = run([promtool, "test", "rules", test_file.name], cwd=tmp_path)
    assert result.returncode != 0
    pairs = re.findall(r'exp: \{__name__="slowatch:slo_period_events_total:sum".*\} (\S+)\n\s*'
                       r'got: \{__name__="slowatch:slo_period_events_total:sum".*\} (\S+)', result.stderr)
    assert pairs, result.stderr[-3000:]
    # Nearly five times: the first steps of the series see less than 5 minutes of counter.
    assert all(4.5 * float(exp) < float(got) <= 5 * float(exp) for exp, got in pairs if float(exp) > 0)


# --- exclusions and composites ------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # promtool's time 0
EXCLUDED_INCIDENT = rules_tests.Scenario(
    "an hour of nothing but errors, then an hour of healthy traffic",
    (rules_tests.Phase(60, 0.0), rules_tests.Phase(60, 1.0), rules_tests.Phase(60, 0.0)), (60, 90, 120, 180))
ALL_PAGES = {("1h", "page"), ("6h", "page"), ("3d", "ticket")}


@pytest.mark.parametrize(("exclusions", "at_120m"), [
    pytest.param((), ALL_PAGES, id="without an exclusion the hour of errors pages"),
    pytest.param((Exclusion("migration", start=EPOCH + timedelta(minutes=60), end=EPOCH + timedelta(minutes=120)),),
                 set(), id="a one-off exclusion over the hour of errors pages nobody"),
    pytest.param((Exclusion("nightly batch", rrule="FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0",
                            duration=timedelta(hours=1), start=EPOCH),),
                 set(), id="a recurring exclusion over the hour of errors pages nobody"),
])
def test_an_excluded_incident_does_not_page_and_its_steps_record_no_events(
    exclusions: tuple[Exclusion, ...], at_120m: set[tuple[str, str]], tmp_path: Path, promtool: str,
) -> None:
    slo = replace(HAND_BUILT[0], exclusions=exclusions)
    test_file, doc = generated_test(slo, tmp_path, [EXCLUDED_INCIDENT])
    result = run([promtool, "test", "rules", test_file.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    fired = {(a["exp_labels"]["long_window"], a["exp_labels"]["severity"])
             for a in expected(doc, EXCLUDED_INCIDENT.name, "120m", c.BUDGET_BURN)}
    assert fired == at_120m
    if exclusions:
        # promtool checked these: the step ending inside the exclusion records 0, the one before it
        # its five minutes of events.
        [case] = doc["tests"]
        steps = {(t["eval_time"], t["expr"].split("{")[0]): [x["value"] for x in t["exp_samples"]]
                 for t in case["promql_expr_test"]}
        assert steps[("60m", c.STEP_EVENTS_TOTAL)] == [5 * rules_tests.EVENTS_PER_MINUTE]
        assert steps[("90m", c.STEP_EVENTS_TOTAL)] == [0]
        assert steps[("120m", c.STEP_EVENTS_GOOD)] == [0]


COMPOSITE_PARTS = {s.id: s for s in HAND_BUILT if s.id in ("shop/checkout-errors", "search/rpc-success", "queue/jobs")}


@pytest.mark.parametrize("weighting", [pytest.param("weights", id="weights: the weighted mean of the SLIs"),
                                       pytest.param("events", id="events: summed good over summed total")])
def test_a_composites_recorded_sli_is_the_daemons_combination_of_its_components(
    weighting: Weighting, tmp_path: Path, promtool: str,
) -> None:
    """shop/checkout-errors (weight 1) fails 20% for its second hour, search/rpc-success (weight 3)
    1% throughout, queue/jobs (weight 5) has no events: it leaves both sums."""
    composite = SLO("journey", "checkout", 99.5, RollingWindow(30 * DAY), CompositeSLI(
        (Component("shop/checkout-errors", 1), Component("search/rpc-success", 3), Component("queue/jobs", 5)),
        weighting))
    parts = list(COMPOSITE_PARTS.values())
    files = rule_files([*parts, composite])
    paths = write(files, tmp_path)
    scenarios = {
        "shop/checkout-errors": rules_tests.Scenario("", (rules_tests.Phase(60, 0.0), rules_tests.Phase(60, 0.2)), ()),
        "search/rpc-success": rules_tests.Scenario("", (rules_tests.Phase(120, 0.01),), ()),
        "queue/jobs": None,
    }
    case = rules_tests.composite_case(composite, {i: (COMPOSITE_PARTS[i], s) for i, s in scenarios.items()},
                                      (60, 120))
    last = c.windows_group("journey", "checkout"), c.period_group("journey", "checkout")
    doc = {
        "rule_files": [str(p.relative_to(tmp_path)) for p in paths],
        "evaluation_interval": rules_tests.EVALUATION_INTERVAL,
        # The components' groups first: the composite reads what they record at the same instant.
        "group_eval_order": [g.name for f in files if f.kind == "rules" for g in f.groups if g.name not in last]
                            + list(last),
        "tests": [case],
    }
    test_file = tmp_path / "composite-test.yaml"
    write_atomically(test_file, rulefiles.render_mapping(doc))
    result = run([promtool, "test", "rules", test_file.name], cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

    # What promtool checked is the weighted mean (or the event ratio) of the components' SLIs,
    # written out here from the scenario: over the last hour at 120m, 80% and 99% good.
    values = {(t["eval_time"], t["expr"]): [x["value"] for x in t["exp_samples"]] for t in case["promql_expr_test"]}
    [one_hour] = values[("120m", 'slowatch:slo_sli:ratio{service="journey",slo="checkout",window="1h"}')]
    n = rules_tests.EVENTS_PER_MINUTE * 60
    want = (1 * 0.8 + 3 * 0.99) / (1 + 3) if weighting == "weights" else (0.8 * n + 0.99 * n) / (2 * n)
    assert math.isclose(one_hour, want, rel_tol=1e-12)
    assert values[("60m", 'slowatch:slo_period_sli:ratio{service="journey",slo="checkout",window="30d"}')]
