"""The spec loader: valid files map to the exact core dataclasses; every mistake is reported
with its file, field path and a hint, all at once."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slowatch.core.model import (
    SLO,
    AlertPolicy,
    CalendarWindow,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
)
from slowatch.errors import SpecError, SpecProblem
from slowatch.spec import load_specs

FULL = """\
apiVersion: slowatch/v1
service: auth
labels: {team: identity, tier: "1"}
slos:
  - name: login-availability
    description: Login requests that do not fail with a 5xx.
    objective: 99.95
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{service="auth",code=~"5.."}
        total:  http_requests_total{service="auth"}
    alerting:
      budget_consumed: [75, 25, 50]
      burn_rate: false
      runbook_url: https://runbooks.example/auth
      no_data: alert
  - name: login-raw
    objective: 99.9
    window: 1d12h
    sli:
      ratio:
        good_query: sum(increase(http_requests_total{code!~"5.."}[{{.window}}]))
        total_query: sum(increase(http_requests_total[{{.window}}]))
    alerting:
      budget_consumed: 90
  - name: login-latency
    objective: 95
    window: {calendar: month, timezone: Europe/Paris}
    sli:
      latency:
        histogram: http_request_duration_seconds
        selector: '{service="auth",endpoint="/login"}'
        threshold: 200ms
  - name: peak-throughput
    objective: 99
    window: {calendar: week}
    sli:
      throughput:
        query: sum(rate(http_requests_total{service="auth"}[1m]))
        minimum: 200
"""


def _expected_full(source: str) -> list[SLO]:
    labels = (("team", "identity"), ("tier", "1"))
    return [
        SLO(
            service="auth",
            name="login-availability",
            objective_percent=99.95,
            window=RollingWindow(duration=timedelta(days=30)),
            sli=RatioSLI(
                total='http_requests_total{service="auth"}',
                errors='http_requests_total{service="auth",code=~"5.."}',
            ),
            description="Login requests that do not fail with a 5xx.",
            labels=labels,
            alerting=AlertPolicy(
                budget_consumed=(25.0, 50.0, 75.0),
                burn_rate=False,
                runbook_url="https://runbooks.example/auth",
                no_data="alert",
            ),
            source=source,
        ),
        SLO(
            service="auth",
            name="login-raw",
            objective_percent=99.9,
            window=RollingWindow(duration=timedelta(days=1, hours=12)),
            sli=RatioSLI(
                total="sum(increase(http_requests_total[{{.window}}]))",
                good='sum(increase(http_requests_total{code!~"5.."}[{{.window}}]))',
                raw=True,
            ),
            labels=labels,
            alerting=AlertPolicy(budget_consumed=(90.0,)),
            source=source,
        ),
        SLO(
            service="auth",
            name="login-latency",
            objective_percent=95.0,
            window=CalendarWindow(unit="month", timezone="Europe/Paris"),
            sli=LatencySLI(
                histogram="http_request_duration_seconds",
                selector='{service="auth",endpoint="/login"}',
                threshold_seconds=0.2,
            ),
            labels=labels,
            source=source,
        ),
        SLO(
            service="auth",
            name="peak-throughput",
            objective_percent=99.0,
            window=CalendarWindow(unit="week", timezone="UTC"),
            sli=ThroughputSLI(
                query='sum(rate(http_requests_total{service="auth"}[1m]))',
                minimum=200.0,
                slice=timedelta(minutes=1),
            ),
            labels=labels,
            source=source,
        ),
    ]


# A minimal valid file as data; cases change one thing in it.
BASE: dict[str, Any] = {
    "apiVersion": "slowatch/v1",
    "service": "auth",
    "slos": [
        {
            "name": "login-availability",
            "objective": 99.9,
            "window": "30d",
            "sli": {"ratio": {"errors": 'http_requests_total{code=~"5.."}', "total": "http_requests_total"}},
        }
    ],
}
LATENCY = {"histogram": "http_request_duration_seconds", "selector": '{service="auth"}', "threshold": "200ms"}
THROUGHPUT = {"query": "sum(rate(http_requests_total[1m]))", "minimum": 200}


def doc(top: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **slo: Any) -> dict[str, Any]:
    """BASE with top-level keys ``top`` set, SLO keys ``slo`` set (None deletes), ``drop`` removed."""
    out = copy.deepcopy(BASE)
    out.update(top or {})
    for key in drop:
        out.pop(key)
    for key, value in slo.items():
        if value is None:
            out["slos"][0].pop(key, None)
        else:
            out["slos"][0][key] = value
    return out


def write(directory: Path, name: str, content: dict[str, Any] | str) -> Path:
    path = directory / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def problems_of(paths: list[Path | str]) -> list[SpecProblem]:
    with pytest.raises(SpecError) as info:
        load_specs(paths)
    return info.value.problems


def test_a_full_file_loads_into_the_exact_core_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path, "auth.yaml", FULL)
    assert load_specs([path]) == _expected_full(str(path))


@pytest.mark.parametrize(
    ("content", "read", "expected"),
    [
        pytest.param(doc(), lambda s: s.objective_percent, 99.9, id="an objective of 99.9 is kept as a percent"),
        pytest.param(
            doc(window="1d12h"),
            lambda s: s.window,
            RollingWindow(timedelta(hours=36)),
            id="a compound duration is a rolling window",
        ),
        pytest.param(
            doc(window={"calendar": "month"}),
            lambda s: s.window,
            CalendarWindow("month", "UTC"),
            id="a calendar window without timezone is in UTC",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": 0.25}}),
            lambda s: s.sli.threshold_seconds,
            0.25,
            id="a latency threshold may be a number of seconds",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "2s"}}),
            lambda s: s.sli.threshold_seconds,
            2.0,
            id="a latency threshold of 2s is 2 seconds",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "2.5s"}}),
            lambda s: s.sli.threshold_seconds,
            2.5,
            id="a latency threshold of 2.5s is the le=2.5 bucket bound",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "250ms"}}),
            lambda s: s.sli.threshold_seconds,
            0.25,
            id="a latency threshold of 250ms is 0.25 seconds",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "0.25s"}}),
            lambda s: s.sli.threshold_seconds,
            0.25,
            id="a latency threshold of 0.25s is 0.25 seconds",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "300ms"}}),
            lambda s: s.sli.threshold_seconds,
            float("0.3"),
            id="300ms is exactly the float Prometheus reads from le=0.3, not 300 * 0.001",
        ),
        pytest.param(
            doc(sli={"latency": {**LATENCY, "threshold": "1.5m"}}),
            lambda s: s.sli.threshold_seconds,
            90.0,
            id="a latency threshold of 1.5m is 90 seconds",
        ),
        pytest.param(
            doc(sli={"latency": {"histogram": "h", "threshold": "1s"}}),
            lambda s: s.sli.selector,
            "{}",
            id="an omitted latency selector matches every series",
        ),
        pytest.param(
            doc(sli={"throughput": {**THROUGHPUT, "slice": "5m"}}),
            lambda s: s.sli.slice,
            timedelta(minutes=5),
            id="a throughput slice is a duration",
        ),
        pytest.param(
            doc(alerting={"budget_consumed": 30}),
            lambda s: s.alerting.budget_consumed,
            (30.0,),
            id="a single budget_consumed number is a list of one",
        ),
        pytest.param(
            doc(alerting={"budget_consumed": [80, 20, 80]}),
            lambda s: s.alerting.budget_consumed,
            (20.0, 80.0),
            id="budget_consumed is sorted and without repeats",
        ),
        pytest.param(doc(), lambda s: s.alerting, AlertPolicy(), id="alerting defaults to the documented policy"),
        pytest.param(doc(description=None), lambda s: s.description, "", id="an omitted description is empty"),
        pytest.param(
            doc(top={"labels": {"b": "2", "a": "1"}}),
            lambda s: s.labels,
            (("a", "1"), ("b", "2")),
            id="labels are sorted pairs",
        ),
    ],
)
def test_valid_variants(tmp_path: Path, content: dict[str, Any], read: Any, expected: object) -> None:
    [slo] = load_specs([write(tmp_path, "auth.yaml", content)])
    assert read(slo) == expected


MISTAKES = [
    # objective
    pytest.param(
        doc(objective=0.999),
        [("slos[0].objective", "objective is a percent in (0, 100), got 0.999: did you mean 99.9?")],
        id="an objective of 0.999 suggests 99.9",
    ),
    pytest.param(
        doc(objective=100),
        [("slos[0].objective", "got 100: 100% leaves no error budget")],
        id="an objective of 100 leaves no budget",
    ),
    pytest.param(
        doc(objective=-5), [("slos[0].objective", "got -5: write e.g. 99.9")], id="a negative objective is refused"
    ),
    pytest.param(
        doc(objective="99.9"),
        [("slos[0].objective", "expected a number, got '99.9' (remove the quotes)")],
        id="a quoted objective asks to remove the quotes",
    ),
    pytest.param(
        doc(objective=True),
        [("slos[0].objective", "expected a number, got true")],
        id="a boolean objective is not taken as 1",
    ),
    pytest.param(
        doc(objective=None),
        [("slos[0].objective", "`objective` is required: add e.g. `objective: 99.9`")],
        id="a missing objective says what to add",
    ),
    # unknown keys
    pytest.param(
        doc(objective=None, objectiv=99.9),
        [
            ("slos[0].objective", "is required"),
            ("slos[0].objectiv", "unknown key `objectiv`: did you mean `objective`?"),
        ],
        id="a typo in objective names the closest valid key",
    ),
    pytest.param(
        doc(top={"servce": "auth"}, drop=("service",)),
        [("service", "is required"), ("servce", "did you mean `service`?")],
        id="a typo in a top-level key names the closest valid key",
    ),
    pytest.param(
        doc(alerting={"burn_rates": False}),
        [("slos[0].alerting.burn_rates", "did you mean `burn_rate`?")],
        id="a typo inside alerting names the closest alerting key",
    ),
    pytest.param(
        doc(window={"calendar": "month", "tz": "UTC"}),
        [("slos[0].window.tz", "unknown key `tz` (valid keys: calendar, timezone)")],
        id="an unknown key in a calendar window lists the valid ones",
    ),
    # names and labels
    pytest.param(
        doc(top={"service": "my service"}),
        [("service", "not label-safe"), ("service", "did you mean 'my-service'?")],
        id="a service name with a space suggests a dash",
    ),
    pytest.param(
        doc(name="9 lives"),
        [("slos[0].name", "did you mean '_9-lives'?")],
        id="an SLO name starting with a digit suggests a safe one",
    ),
    pytest.param(
        doc(top={"labels": {"severity": "high"}}),
        [("labels.severity", "label 'severity' is reserved")],
        id="a label named like an alert label is reserved",
    ),
    pytest.param(
        doc(top={"labels": {"team-name": "x"}}),
        [("labels.team-name", "not a Prometheus label name"), ("labels.team-name", "e.g. 'team_name'")],
        id="a label name with a dash suggests an underscore",
    ),
    pytest.param(
        doc(top={"labels": {"tier": 1}}),
        [("labels.tier", "expected text, got 1: quote it")],
        id="a numeric label value asks for quotes",
    ),
    # windows
    pytest.param(doc(window="30x"), [("slos[0].window", "not a duration: '30x'")], id="a window of 30x is no duration"),
    pytest.param(
        doc(window=30),
        [("slos[0].window", "window must be a duration like 30d, or a mapping")],
        id="a bare number window says what a window looks like",
    ),
    pytest.param(
        doc(window={"calendar": "monthly"}),
        [("slos[0].window.calendar", "expected 'month' or 'week', got 'monthly'")],
        id="an unknown calendar unit lists month and week",
    ),
    pytest.param(
        doc(window={"calendar": "month", "timezone": "Europe/Pari"}),
        [("slos[0].window.timezone", "unknown timezone 'Europe/Pari': did you mean Europe/Paris?")],
        id="a misspelt timezone suggests the closest one",
    ),
    # sli kinds
    pytest.param(
        doc(sli={}),
        [("slos[0].sli", "exactly one of ratio, latency, throughput or composite, got none")],
        id="an sli without kind lists the kinds",
    ),
    pytest.param(
        doc(sli={**BASE["slos"][0]["sli"], "throughput": THROUGHPUT}),
        [("slos[0].sli", "got ratio and throughput")],
        id="an sli with two kinds is refused",
    ),
    pytest.param(
        doc(sli="ratio"),
        [("slos[0].sli", "expected a mapping (`key: value` lines), got 'ratio'")],
        id="an sli given as text asks for a mapping",
    ),
    pytest.param(
        doc(sli={"ratio": None}),
        [("slos[0].sli", "ratio is empty: write e.g. ratio: {total:")],
        id="an empty ratio shows what to write",
    ),
    # ratio
    pytest.param(
        doc(sli={"ratio": {"good": "a", "errors": "b", "total": "c"}}),
        [("slos[0].sli.ratio", "not both")],
        id="a ratio with good and errors is refused",
    ),
    pytest.param(
        doc(sli={"ratio": {"good": "a"}}),
        [("slos[0].sli.ratio", "ratio needs total")],
        id="a ratio without total asks for it",
    ),
    pytest.param(
        doc(sli={"ratio": {"total": "c"}}),
        [("slos[0].sli.ratio", "ratio needs good or errors next to total")],
        id="a ratio with only total asks for good or errors",
    ),
    pytest.param(
        doc(sli={"ratio": {"total": "sum(rate(x[5m]))", "good": "y"}}),
        [("slos[0].sli.ratio.total", "expected a series selector"), ("slos[0].sli.ratio.total", "total_query")],
        id="an expression where a selector belongs points to the raw form",
    ),
    pytest.param(
        doc(sli={"ratio": {"total": "x", "errors": 'y{code="5'}}),
        [("slos[0].sli.ratio.errors", "invalid PromQL 'y{code=\"5'")],
        id="a selector that does not parse reports the parser's error",
    ),
    pytest.param(
        doc(sli={"ratio": {"total": "x offset 5m", "errors": "y"}}),
        [("slos[0].sli.ratio.total", "no offset or @ modifier")],
        id="a selector with offset is refused",
    ),
    pytest.param(
        doc(sli={"ratio": {"total": "x", "good_query": "sum(increase(y[{{.window}}]))"}}),
        [("slos[0].sli.ratio", "mixes selector keys (total) with raw keys (good_query)")],
        id="mixing selector and raw keys is refused",
    ),
    pytest.param(
        doc(sli={"ratio": {"total_query": "sum(increase(x[5m]))", "errors_query": "sum(increase(y[{{.window}}]))"}}),
        [("slos[0].sli.ratio.total_query", "must contain {{.window}}")],
        id="a raw query without the window placeholder is refused",
    ),
    pytest.param(
        doc(sli={"ratio": {"total_query": "sum(increase(x[{{.window}}])", "good_query": "y[{{.window}}]"}}),
        [
            ("slos[0].sli.ratio.total_query", "invalid PromQL"),
            ("slos[0].sli.ratio.good_query", "returns a range vector"),
        ],
        id="raw queries are parsed with the placeholder filled in",
    ),
    # latency
    pytest.param(
        doc(sli={"latency": {**LATENCY, "threshold": 0}}),
        [("slos[0].sli.latency.threshold", "threshold must be positive, got 0: write a duration like 200ms")],
        id="a latency threshold of 0 is refused",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "threshold": "-200ms"}}),
        [("slos[0].sli.latency.threshold", "threshold must be a positive duration, got '-200ms'")],
        id="a negative latency threshold is refused",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "threshold": "2.5 s"}}),
        [("slos[0].sli.latency.threshold", "must be a positive duration, got '2.5 s': write a duration like")],
        id="a latency threshold with a space before its unit is refused",
    ),
    pytest.param(
        doc(window="1.5d"),
        [("slos[0].window", "not a duration: '1.5d'")],
        id="a window stays a whole Prometheus duration",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "threshold": None}}),
        [("slos[0].sli.latency.threshold", "got an empty value")],
        id="an empty latency threshold is refused",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "histogram": "http_request_duration_seconds_bucket"}}),
        [("slos[0].sli.latency.histogram", "without _bucket: write http_request_duration_seconds")],
        id="a histogram ending in _bucket suggests dropping the suffix",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "selector": {'service="auth"': None}}}),
        [
            ("slos[0].sli.latency.selector", "expected text, got a mapping"),
            ("slos[0].sli.latency.selector", "quote it"),
        ],
        id="an unquoted brace selector that YAML read as a mapping asks for quotes",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "selector": 'service="auth"'}}),
        [("slos[0].sli.latency.selector", "label matchers in braces")],
        id="a selector without braces shows the brace form",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "selector": '{le="0.2"}'}}),
        [("slos[0].sli.latency.selector", "must not match on le")],
        id="a latency selector matching on le is refused",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "selector": '{service="auth"'}}),
        [("slos[0].sli.latency.selector", "label matchers in braces")],
        id="an unclosed latency selector is refused",
    ),
    pytest.param(
        doc(sli={"latency": {**LATENCY, "selector": '{service=~"("}'}}),
        [("slos[0].sli.latency.selector", "invalid PromQL")],
        id="a latency selector with a bad regex is refused",
    ),
    # throughput
    pytest.param(
        doc(sli={"throughput": {**THROUGHPUT, "minimum": 0}}),
        [("slos[0].sli.throughput.minimum", "must be a number > 0, got 0")],
        id="a throughput minimum of 0 is refused",
    ),
    pytest.param(
        doc(sli={"throughput": {**THROUGHPUT, "query": "rate(x[1m]"}}),
        [("slos[0].sli.throughput.query", "invalid PromQL")],
        id="a throughput query that does not parse is refused",
    ),
    pytest.param(
        doc(sli={"throughput": {**THROUGHPUT, "slice": "1.5s"}}),
        [("slos[0].sli.throughput.slice", "not a duration: '1.5s'")],
        id="a fractional throughput slice is refused",
    ),
    pytest.param(
        doc(sli={"throughput": {"query": "sum(rate(x[1m]))"}}),
        [("slos[0].sli.throughput.minimum", "`minimum` is required: add e.g. `minimum: 200`")],
        id="a throughput without minimum says what to add",
    ),
    # alerting
    pytest.param(
        doc(alerting={"budget_consumed": [50, 150]}),
        [("slos[0].alerting.budget_consumed[1]", "percents in (0, 100], got 150")],
        id="a budget_consumed over 100 names its position",
    ),
    pytest.param(
        doc(alerting={"runbook_url": "runbooks.example/auth"}),
        [("slos[0].alerting.runbook_url", "expected an http(s) URL")],
        id="a runbook_url without scheme is refused",
    ),
    pytest.param(
        doc(alerting={"no_data": "page"}),
        [("slos[0].alerting.no_data", "expected 'ignore' or 'alert', got 'page'")],
        id="an unknown no_data mode lists the modes",
    ),
    pytest.param(
        doc(alerting={"burn_rate": "sometimes"}),
        [("slos[0].alerting.burn_rate", "expected true or false, got 'sometimes'")],
        id="a burn_rate that is not a boolean is refused",
    ),
    # whole file
    pytest.param(
        doc(top={"apiVersion": "slowatch/v2", "foo": 1}),
        [("apiVersion", "unsupported apiVersion 'slowatch/v2': write `apiVersion: slowatch/v1`")],
        id="a wrong apiVersion is the only problem reported",
    ),
    pytest.param(
        doc(drop=("apiVersion",)),
        [("apiVersion", "add e.g. `apiVersion: slowatch/v1`")],
        id="a missing apiVersion says what to add",
    ),
    pytest.param(
        doc(top={"slos": []}), [("slos", "slos is empty: list at least one SLO")], id="an empty slos list is refused"
    ),
    pytest.param(
        doc(top={"slos": {"name": "x"}}), [("slos", "expected a list")], id="slos given as a mapping asks for a list"
    ),
    pytest.param(
        "apiVersion: slowatch/v1\nservice: auth\nslos:\n  - name: x\n   objective: 99\n",
        [("", "invalid YAML at line 5, column 4"), ("", "check the indentation")],
        id="a YAML syntax error names the line",
    ),
    pytest.param(
        "apiVersion: slowatch/v1\nservice: auth\nservice: login\nslos: []\n",
        [("", "invalid YAML at line 3, column 1: key 'service' appears twice in one mapping")],
        id="a key given twice is refused instead of silently keeping the last",
    ),
    pytest.param("", [("", "the file is empty")], id="an empty file is refused"),
    pytest.param("# only a comment\n", [("", "the file is empty")], id="a file of comments is empty"),
    pytest.param(
        "- a\n- b\n",
        [("", "expected a mapping with apiVersion, service and slos")],
        id="a file holding a list is refused",
    ),
    pytest.param(
        doc(top={"slos": [BASE["slos"][0], BASE["slos"][0]]}),
        [("slos[1].name", "duplicate SLO auth/login-availability: already defined in slos[0]")],
        id="two SLOs with one name in a file are refused",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MISTAKES)
def test_each_mistake_names_its_field_and_what_to_write(
    tmp_path: Path, content: dict[str, Any] | str, expected: list[tuple[str, str]]
) -> None:
    path = write(tmp_path, "auth.yaml", content)
    problems = problems_of([path])
    assert all(p.file == str(path) for p in problems)
    # One problem per distinct path; several substrings may be asserted for one problem.
    assert sorted({p.path for p in problems}) == sorted({want for want, _ in expected}), problems
    for want_path, want_text in expected:
        messages = [p.message for p in problems if p.path == want_path]
        assert any(want_text in m for m in messages), (want_text, messages)
    assert len(problems) == len({want for want, _ in expected})


def test_five_mistakes_in_one_file_are_five_problems(tmp_path: Path) -> None:
    content = doc(top={"labels": {"slo": "x"}}, objective=0.999, window="30x")
    content["slos"].append(
        {
            "name": "login-latency",
            "objective": 99,
            "window": "30d",
            "sli": {"latency": {**LATENCY, "threshold": -1}},
            "alertng": {},
        }
    )
    path = write(tmp_path, "auth.yaml", content)
    problems = problems_of([path])
    assert [(p.file, p.path) for p in problems] == [
        (str(path), "labels.slo"),
        (str(path), "slos[0].objective"),
        (str(path), "slos[0].window"),
        (str(path), "slos[1].sli.latency.threshold"),
        (str(path), "slos[1].alertng"),
    ]
    assert "did you mean `alerting`?" in problems[4].message


def _slo(name: str, **changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE["slos"][0]), "name": name, **changes}


def _file(slos: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), "slos": slos, **top}


# Files with five mistakes each, one of them a repeated SLO name, and the (file, path) of each
# problem in the order `slowatch check` prints them.
REPEATED_NAMES = [
    pytest.param(
        {"a.yaml": _file(
            [_slo("login", window="30x"), _slo("login", objective=0.999, alertng={})], labels={"slo": "x"}
        )},
        [("a.yaml", "labels.slo"), ("a.yaml", "slos[0].window"), ("a.yaml", "slos[1].objective"),
         ("a.yaml", "slos[1].alertng"), ("a.yaml", "slos[1].name")],
        id="a repeated name is reported although the repeated entry itself is invalid",
    ),
    pytest.param(
        {"a.yaml": _file(
            [_slo("login", objective=0.999), _slo("logout", window="30x"), _slo("signup", sli={}), _slo("login")],
            labels={"state": "x"},
        )},
        [("a.yaml", "labels.state"), ("a.yaml", "slos[0].objective"), ("a.yaml", "slos[1].window"),
         ("a.yaml", "slos[2].sli"), ("a.yaml", "slos[3].name")],
        id="a repeated name is reported although other entries of the file are invalid",
    ),
    pytest.param(
        {"a.yaml": _file([_slo("login")]),
         "b.yaml": _file([_slo("logout", objective=100), _slo("login", window="30x", sli={}), _slo("x y")])},
        [("b.yaml", "slos[0].objective"), ("b.yaml", "slos[1].window"), ("b.yaml", "slos[1].sli"),
         ("b.yaml", "slos[2].name"), ("b.yaml", "slos[1].name")],
        id="a name repeated from another file is reported although its own file is invalid",
    ),
]


@pytest.mark.parametrize(("files", "expected"), REPEATED_NAMES)
def test_five_mistakes_with_a_repeated_name_are_five_problems(
    tmp_path: Path, files: dict[str, dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    for name, content in files.items():
        write(tmp_path, name, content)
    problems = problems_of([tmp_path])
    assert [(Path(p.file).name, p.path) for p in problems] == expected
    assert sum("duplicate SLO auth/login: already defined in" in p.message for p in problems) == 1


@pytest.mark.parametrize(("files", "expected"), REPEATED_NAMES)
def test_slowatch_check_prints_one_line_per_mistake(
    tmp_path: Path, files: dict[str, dict[str, Any]], expected: list[tuple[str, str]]
) -> None:
    for name, content in files.items():
        write(tmp_path, name, content)
    result = subprocess.run(
        [sys.executable, "-m", "slowatch", "check", str(tmp_path)], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert [line.split(": ")[1:3] for line in result.stderr.splitlines()] == [
        [str(tmp_path / file), path] for file, path in expected
    ]
    assert all(line.startswith("error: ") for line in result.stderr.splitlines())


def test_problems_of_two_files_are_reported_together(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", doc(objective=0.99))
    second = write(tmp_path, "b.yaml", "")
    problems = problems_of([first, second])
    assert [(p.file, p.path) for p in problems] == [(str(first), "slos[0].objective"), (str(second), "")]
    assert "did you mean 99?" in problems[0].message


def test_the_error_text_is_one_line_per_problem_with_file_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", doc(objective=0.999, window="30x"))
    with pytest.raises(SpecError) as info:
        load_specs([path])
    lines = str(info.value).splitlines()
    assert lines[0] == (f"{path}: slos[0].objective: objective is a percent in (0, 100), got 0.999: did you mean 99.9?")
    assert lines[1].startswith(f"{path}: slos[0].window: not a duration")
    assert len(lines) == 2


def test_a_duplicate_slo_across_files_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", doc())
    second = write(tmp_path, "b.yaml", doc())
    problems = problems_of([tmp_path])
    assert problems == [
        SpecProblem(
            file=str(second),
            path="slos[0].name",
            message=f"duplicate SLO auth/login-availability: already defined in {first} at slos[0]; rename one of them",
        )
    ]


def test_two_files_may_share_a_service(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", doc())
    write(tmp_path, "b.yaml", doc(name="login-latency"))
    assert [s.id for s in load_specs([tmp_path])] == ["auth/login-availability", "auth/login-latency"]


def test_a_directory_loads_its_yaml_files_sorted_and_not_recursively(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", doc(top={"service": "b"}))
    write(tmp_path, "a.yaml", doc(top={"service": "a"}))
    write(tmp_path, "notes.txt", "not a spec")
    write(tmp_path, ".hidden.yaml", "not: a spec")
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested", "c.yaml", doc(top={"service": "c"}))
    slos = load_specs([tmp_path])
    assert [(s.service, s.source) for s in slos] == [
        ("a", str(tmp_path / "a.yaml")),
        ("b", str(tmp_path / "b.yml")),
    ]


def test_a_file_named_directly_and_through_its_directory_loads_once(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", doc())
    assert len(load_specs([tmp_path, path])) == 1


def test_a_missing_path_and_an_empty_directory_are_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    missing = str(tmp_path / "missing.yaml")
    problems = problems_of([missing, tmp_path / "empty"])
    assert problems == [
        SpecProblem(file=missing, path="", message="no such file or directory"),
        SpecProblem(
            file=str(tmp_path / "empty"),
            path="",
            message="no *.yaml or *.yml files in this directory: add one spec file per service",
        ),
    ]


def test_other_files_still_report_when_one_path_is_missing(tmp_path: Path) -> None:
    good = write(tmp_path, "a.yaml", doc(objective=100))
    problems = problems_of([tmp_path / "nope", good])
    assert [(p.file, p.path) for p in problems] == [(str(tmp_path / "nope"), ""), (str(good), "slos[0].objective")]
