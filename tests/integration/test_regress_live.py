"""`slowatch regress PATH... --baseline D --window W` on a real Prometheus over the generated
history: the error ratio and throughput it compares are the exact counts' (1e-9 relative), and
the auth incident is a critical regression against the same hour a day earlier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slowatch.cli import main
from tests.support.generator import REQUESTS_TOTAL, History
from tests.support.processes import Server

AUTH_SPEC = Path(__file__).parents[2] / "deploy" / "slos" / "auth.yaml"
AUTH = {"service": "auth", "endpoint": "/auth/login"}
E5XX = {"500", "503"}
HOUR, DAY = 3600, 86400
REL = 1e-9


def regress_live(capsys: pytest.CaptureFixture[str], prometheus: Server, at: int) -> tuple[int, dict[str, Any]]:
    code = main(["regress", str(AUTH_SPEC), "--baseline", "1d", "--window", "1h", "--at", str(at),
                 "--prometheus-url", prometheus.url, "--format", "json"])
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, {r["metric_name"]: r for r in doc["regressions"]}


def exact(history: History, end: int) -> tuple[float, float]:
    total = history.increase(REQUESTS_TOTAL, AUTH, end - HOUR, end)
    bad = history.increase(REQUESTS_TOTAL, {**AUTH, "code": E5XX}, end - HOUR, end)
    return bad / total, total / HOUR


def test_the_auth_incident_is_a_critical_regression_of_the_error_ratio(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History) -> None:
    (incident,) = [e for e in history.scenario.episodes if e.name == "auth-incident"]
    at = incident.end
    code, rows = regress_live(capsys, prometheus, at)
    errors = rows["auth/login-availability:error_ratio"]
    now_ratio, now_rps = exact(history, at)
    then_ratio, then_rps = exact(history, at - DAY)
    assert errors["current_value"] == pytest.approx(now_ratio, rel=REL)
    assert errors["baseline_value"] == pytest.approx(then_ratio, rel=REL)
    assert errors["is_regression"] is True and errors["severity"] == "critical"
    throughput = rows["auth/login-availability:throughput"]
    assert throughput["current_value"] == pytest.approx(now_rps, rel=REL)
    assert throughput["baseline_value"] == pytest.approx(then_rps, rel=REL)
    assert {f"auth/login-latency:{p}_latency" for p in ("p50", "p95", "p99")} <= rows.keys()
    assert code == 1  # a critical regression stops the pipeline


def test_a_quiet_hour_against_the_day_before_is_no_critical_regression(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History) -> None:
    (incident,) = [e for e in history.scenario.episodes if e.name == "auth-incident"]
    at = incident.start - 6 * HOUR  # before the incident, and a day after nothing special either
    code, rows = regress_live(capsys, prometheus, at)
    assert rows["auth/login-availability:throughput"]["severity"] in ("none", "low", "medium")
    assert code == 0
