"""Sloth in: its examples load or give the documented error, events and raw SLIs map onto the
raw ratio form, and alerting keeps its labels and annotations per severity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from slowatch.core.alerting import AlertBook, step
from slowatch.core.budget import BudgetStatus
from slowatch.core.model import AlertExtras, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS, SRE_WORKBOOK_TABLE_5_8
from slowatch.errors import SpecError
from slowatch.formats.openslo import ONE_PER_WINDOW
from slowatch.spec import load_specs

DATA = Path(__file__).parents[1] / "data" / "sloth"
ERRORS = 'sum(rate(http_requests_total{service="auth",code=~"5.."}[{{.window}}]))'
TOTAL = 'sum(rate(http_requests_total{service="auth"}[{{.window}}]))'

EXAMPLES = [
    pytest.param("getting-started.yml", [
        ("doc[0].slo_plugins", "Sloth SLO plugins (sloth.dev/contrib/alert_for/v1) are not supported"),
        ("doc[0].slos[0].alerting.page_alert.for", "unknown or unsupported key `for`"),
        ("doc[0].slos[0].alerting.ticket_alert.for", "unknown or unsupported key `for`"),
    ], id="getting-started is refused for its plugin chain and the alerts' for"),
    pytest.param("plugin-getting-started.yml", [
        ("doc[0].slos[0].sli.plugin", "Sloth SLI plugin 'getting_started_availability' is not supported"),
    ], id="the plugin example is refused naming its plugin"),
]
@pytest.mark.parametrize(("name", "expected"), EXAMPLES)
def test_sloths_examples_give_the_documented_error(name: str, expected: list[tuple[str, str]]) -> None:
    with pytest.raises(SpecError) as exc:
        load_specs([DATA / name])
    problems = exc.value.problems
    assert [p.path for p in problems] == [path for path, _ in expected]
    for problem, (_, text) in zip(problems, expected, strict=True):
        assert text in problem.message


@pytest.mark.parametrize("name", [
    pytest.param("k8s-getting-started.yml", id="the PrometheusServiceLevel example loads"),
    pytest.param("raw-home-wifi.yml", id="the raw example (camelCase key in a prometheus/v1 file) loads"),
])
def test_sloths_severity_labels_are_kept_as_sloth_severity_beside_ours(name: str) -> None:
    slos = load_specs([DATA / name])
    assert slos
    for slo in slos:
        by_severity = {sev: dict(x.labels) for sev, x in slo.alerting.extras}
        assert set(by_severity) == {"page", "ticket"}
        assert all("severity" not in labels and "sloth_severity" in labels for labels in by_severity.values())


def test_the_no_alerts_example_loads_as_a_30_day_raw_ratio_without_alerts() -> None:
    [slo] = load_specs([DATA / "no-alerts.yml"])
    assert (slo.id, slo.objective_percent, slo.window, slo.labels) == (
        "myapp/http-availability", 99.99, RollingWindow(timedelta(days=30)), (("owner", "myteam"),))
    assert isinstance(slo.sli, RatioSLI) and slo.sli.raw and "{{.window}}" in slo.sli.total
    assert (slo.alerting.burn_rate, slo.alerting.budget_consumed, slo.alerting.extras) == (False, (), ())


def write(tmp_path: Path, slo: dict[str, Any], **top: Any) -> Path:
    path = tmp_path / "sloth.yaml"
    path.write_text(yaml.safe_dump({"version": "prometheus/v1", "service": "auth", **top, "slos": [slo]}))
    return path


def events(**slo: Any) -> dict[str, Any]:
    return {"name": "login", "objective": 99.9, "sli": {"events": {"error_query": ERRORS, "total_query": TOTAL}},
            **slo}


def test_events_are_the_raw_ratio_and_alerting_keeps_labels_and_annotations_per_severity(tmp_path: Path) -> None:
    alerting = {"name": "AuthHighErrorRate", "labels": {"category": "availability"},
                "annotations": {"summary": "auth errors"},
                "page_alert": {"labels": {"routing_key": "identity"}},
                "ticket_alert": {"labels": {"slack_channel": "#auth"}, "annotations": {"summary": "auth ticket"}}}
    [slo] = load_specs([write(tmp_path, events(alerting=alerting), labels={"team": "identity"})])
    assert slo.sli == RatioSLI(total=TOTAL, errors=ERRORS, raw=True)
    assert slo.labels == (("team", "identity"),)
    assert (slo.alerting.burn_rate, slo.alerting.budget_consumed) == (True, ())
    assert slo.alerting.extras == (
        ("page", AlertExtras(labels=(("category", "availability"), ("routing_key", "identity"),
                                     ("sloth_alertname", "AuthHighErrorRate")),
                             annotations=(("summary", "auth errors"),))),
        ("ticket", AlertExtras(labels=(("category", "availability"), ("slack_channel", "#auth"),
                                       ("sloth_alertname", "AuthHighErrorRate")),
                               annotations=(("summary", "auth ticket"),))),
    )


def test_a_raw_error_ratio_is_errors_over_one_event_per_window(tmp_path: Path) -> None:
    ratio = "1 - avg(avg_over_time(up[{{.window}}]))"
    [slo] = load_specs([write(tmp_path, {"name": "up", "objective": 99, "sli": {"raw": {"error_ratio_query": ratio}}})])
    assert slo.sli == RatioSLI(total=ONE_PER_WINDOW, errors=ratio, raw=True)


MISTAKES = [
    pytest.param(events(alerting={"page_alert": {"disable": True}}),
                 ("doc[0].slos[0].alerting.page_alert.disable", "page and ticket burn-rate alerts together"),
                 id="disabling only page alerts is refused"),
    pytest.param(events(sli={"events": {"error_query": "sum(rate(x[5m]))", "total_query": TOTAL}}),
                 ("doc[0].slos[0].sli.events.error_query", "must contain {{.window}}"),
                 id="an events query without the window placeholder is refused at its key"),
    pytest.param(events(objective=100),
                 ("doc[0].slos[0].objective", "100% leaves no error budget"),
                 id="the native objective check speaks at the Sloth objective"),
    pytest.param(events(name="login page"), ("doc[0].slos[0].name", "is not label-safe"),
                 id="a name that is no label value is refused at its key"),
]


@pytest.mark.parametrize(("slo", "expected"), MISTAKES)
def test_each_mistake_is_named_at_its_document_and_field(
    tmp_path: Path, slo: dict[str, Any], expected: tuple[str, str]
) -> None:
    path = write(tmp_path, slo)
    with pytest.raises(SpecError) as exc:
        load_specs([path])
    [problem] = exc.value.problems
    assert (problem.file, problem.path) == (str(path), expected[0])
    assert expected[1] in problem.message


def test_the_daemons_alerts_carry_sloths_labels_and_annotations_on_their_severity(tmp_path: Path) -> None:
    alerting = {"name": "AuthHighErrorRate", "annotations": {"summary": "auth errors"},
                "page_alert": {"labels": {"routing_key": "identity"}}}
    [slo] = load_specs([write(tmp_path, events(alerting=alerting))])
    page = SRE_WORKBOOK_TABLE_5_8[0]
    at = datetime(2026, 11, 1, tzinfo=UTC)
    status = BudgetStatus(slo=slo, at=at, state="burning", sli=0.98, budget_total=slo.budget, consumed=0.5,
                          burn_rates=dict.fromkeys(BURN_RATE_WINDOWS, 20.0), exhaustion_at=None, burning=(page,))
    book, _ = step(AlertBook(), [status], at, evaluation_failing=False, known_slo_ids={slo.id})
    [alert] = book.firing
    assert dict(alert.labels) == {
        "alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "login",
        "long_window": "1h", "short_window": "5m", "slowatch_source": "daemon",
        "routing_key": "identity", "sloth_alertname": "AuthHighErrorRate",
    }
    assert dict(alert.annotations)["summary"] == "auth errors"
