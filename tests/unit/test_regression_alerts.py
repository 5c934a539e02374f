"""alerting.regression in the daemon: SLORegression tickets for high and critical regressions,
checked every few minutes, and frozen while a check cannot run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from slowatch.components.regression import RegressionWatch
from slowatch.core import alerting, budget
from slowatch.core.budget import EventCounts, Measurement
from slowatch.core.model import SLO, AlertPolicy, LatencySLI, RegressionPolicy, RollingWindow
from slowatch.core.regress import Direction, Row
from slowatch.errors import SourceUnavailable
from slowatch.spec import load_specs

T0 = datetime(2026, 11, 1, tzinfo=UTC)
POLICY = RegressionPolicy(baseline=timedelta(days=7), threshold=10.0, window=timedelta(days=1))
SLO_ = SLO("auth", "login-latency", 95, RollingWindow(timedelta(days=30)),
           LatencySLI("http_request_duration_seconds", '{service="auth"}', 0.2),
           alerting=AlertPolicy(budget_consumed=(), regression=POLICY))


def healthy(at: datetime) -> budget.BudgetStatus:
    counts = {w: EventCounts(good=100, total=100) for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d", "slo")}
    return budget.evaluate(SLO_, Measurement(at=at, counts=counts))


def row(metric: str, change: float, severity: str) -> Row:
    return Row(metric, 1.0, 1.0 + change / 100, change, severity not in ("none", "missing"), severity,
               Direction.HIGHER_IS_WORSE)


def step(book: alerting.AlertBook, at: datetime, findings: dict[str, Sequence[Row]] | None) -> alerting.AlertBook:
    book, _ = alerting.step(book, [healthy(at)], at, evaluation_failing=False, known_slo_ids=[SLO_.id],
                            regressions=findings)
    return book


def regressions(book: alerting.AlertBook) -> list[tuple[str, str]]:
    return sorted((a.label("metric") or "", a.severity) for a in book.firing if a.alertname == "SLORegression")


@pytest.mark.parametrize(("severity", "fires"), [
    pytest.param("critical", True, id="a critical regression opens a ticket"),
    pytest.param("high", True, id="a high regression opens a ticket"),
    pytest.param("medium", False, id="a medium regression is only shown"),
    pytest.param("none", False, id="no regression, no alert"),
])
def test_which_severities_open_a_ticket(severity: str, fires: bool) -> None:
    book = step(alerting.AlertBook(), T0, {SLO_.id: [row("p95_latency", 60.0, severity)]})
    assert regressions(book) == ([("p95_latency", "ticket")] if fires else [])


def test_the_ticket_names_the_metric_and_resolves_when_the_regression_is_gone() -> None:
    book = step(alerting.AlertBook(), T0, {SLO_.id: [row("p95_latency", 60.0, "critical")]})
    (alert,) = [a for a in book.firing if a.alertname == "SLORegression"]
    assert dict(alert.labels)["service"] == "auth" and dict(alert.labels)["slo"] == "login-latency"
    assert "p95_latency regressed +60.0% against the same window 7d earlier (critical)" in dict(alert.annotations)[
        "summary"]
    # A check that could not run leaves it firing; a check that finds nothing resolves it.
    book = step(book, T0 + timedelta(minutes=1), None)
    assert regressions(book) == [("p95_latency", "ticket")]
    book = step(book, T0 + timedelta(minutes=5), {SLO_.id: [row("p95_latency", 2.0, "none")]})
    assert regressions(book) == []


@dataclass
class Value:
    value: float


class Scripted:
    """p95 latency 0.2 s a week ago and 0.35 s now (+75%: critical); fails when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    def flavour(self) -> str:
        if self.down:
            raise SourceUnavailable("http://prometheus:9090 unreachable")
        return "prometheus"

    def query(self, promql: str, at: datetime, *, context: str) -> Sequence[Value]:
        self.calls += 1
        if self.down:
            raise SourceUnavailable("http://prometheus:9090 unreachable")
        now = at >= T0
        if "histogram_quantile(0.95" in promql:
            return [Value(0.35 if now else 0.2)]
        return [Value(1.0)]


def test_the_watch_checks_every_five_minutes_and_keeps_its_findings_while_a_check_fails() -> None:
    source = Scripted()
    watch = RegressionWatch(source)
    found = watch.run([SLO_], T0)
    by_metric = {r.metric_name: r for r in found[SLO_.id]}
    assert by_metric["p95_latency"].severity == "critical"
    assert by_metric["p95_latency"].change_percentage == pytest.approx(75.0)
    calls = source.calls
    assert watch.run([SLO_], T0 + timedelta(minutes=4)) == found and source.calls == calls  # not due yet
    source.down = True
    assert watch.run([SLO_], T0 + timedelta(minutes=5)) == {}  # failed: no findings, alerts stay frozen


def test_the_spec_reads_alerting_regression(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""apiVersion: slowatch/v1
service: auth
slos:
  - name: login-latency
    objective: 95
    window: 30d
    sli: {latency: {histogram: h, selector: '{a="b"}', threshold: 200ms}}
    alerting: {regression: {baseline: 7d, threshold: 15}}
""")
    (slo,) = load_specs([path])
    assert slo.alerting.regression == RegressionPolicy(baseline=timedelta(days=7), threshold=15,
                                                       window=timedelta(days=1))
    assert Decimal(repr(slo.alerting.regression.threshold)) == Decimal(15)


def test_the_cycle_runs_the_check_and_metrics_export_the_change_as_a_ratio() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from slowatch.adapters.metrics import new_registry
    from slowatch.cycle import Cycle
    from slowatch.view import ViewHolder
    from tests.unit.fakes import FakeAlertmanager, MemoryStore

    class Healthy:
        def measure(self, slo: SLO, at: datetime) -> Measurement:
            return Measurement(at=at, counts=healthy(at).counts)

    watch = RegressionWatch(Scripted())
    holder = ViewHolder()
    registry, metrics = new_registry(holder, process=False)
    sink = FakeAlertmanager()
    with ThreadPoolExecutor(max_workers=2) as pool:
        cycle = Cycle([SLO_], source=Healthy(), sink=sink, store=MemoryStore(), publisher=holder,
                      telemetry=metrics, executor=pool, regressions=watch.run)
        cycle.run(T0)
    labels = {"service": "auth", "slo": "login-latency", "metric": "p95_latency"}
    assert registry.get_sample_value("slowatch_slo_regression_change_ratio", labels) == pytest.approx(0.75)
    assert [(p.labels["metric"], p.state) for p in sink.firing("SLORegression")] == [("p95_latency", "firing")]


def test_a_bug_in_the_regression_check_leaves_the_cycle_running_and_its_tickets_frozen() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from structlog.testing import capture_logs

    from slowatch.adapters.metrics import new_registry
    from slowatch.cycle import Cycle
    from slowatch.view import ViewHolder
    from tests.unit.fakes import FakeAlertmanager, MemoryStore

    class Healthy:
        def measure(self, slo: SLO, at: datetime) -> Measurement:
            return Measurement(at=at, counts=healthy(at).counts)

    calls = [0]

    def flaky(slos: Sequence[SLO], at: datetime) -> dict[str, tuple[Row, ...]]:
        calls[0] += 1
        if calls[0] > 1:
            raise KeyError("p95_latency")
        return {SLO_.id: (row("p95_latency", 60.0, "critical"),)}

    holder = ViewHolder()
    _, metrics = new_registry(holder, process=False)
    sink = FakeAlertmanager()
    with ThreadPoolExecutor(max_workers=2) as pool, capture_logs() as logs:
        cycle = Cycle([SLO_], source=Healthy(), sink=sink, store=MemoryStore(), publisher=holder,
                      telemetry=metrics, executor=pool, regressions=flaky)
        cycle.run(T0)
        cycle.run(T0 + timedelta(minutes=5))
    assert regressions(cycle.book) == [("p95_latency", "ticket")]  # frozen, not resolved
    assert holder.get().at == T0 + timedelta(minutes=5)  # the cycle went on and published
    assert any(e["event"].startswith("regression check failed") and "KeyError" in e["traceback"] for e in logs)
