"""Specs of all three formats mixed in one directory evaluate, against real Prometheus, to the
numbers of their native twins and of the generator's exact counts.

Tolerances. The OpenSLO twins are the same selectors and queries as the native SLOs, so their
numbers are asserted equal (rel 1e-12: the same floats, whatever order a batch sums them in).
The Sloth twins are written as Sloth users write them, ``rate(...[{{.window}}])``: Prometheus'
rate is the extrapolated increase divided by the range in seconds, the same divisor for errors
and total, so the ratio of rates is the ratio of increases. At the sample-aligned instants used
here the extrapolation factor is exactly 1 (test_eval.py), leaving float rounding: one division
per series before the sum instead of one after, and for latency the difference of two rates
(count - bucket), which loses a few digits. Measured on this history: the OpenSLO twins equal
their native twins exactly, the Sloth twins within 9.1e-13 relative. We assert 1e-9 relative, as
test_eval.py does against the exact counts, and show the ratio of rates equal to the ratio of
increases at that tolerance.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from slowatch.cli import main
from tests.integration.test_eval import BURN_WINDOWS, REL, expected_burn_rate, latency_truth, ratio_truth, slo
from tests.support.generator import DAY, History
from tests.support.processes import Server

ROOT = Path(__file__).parents[2]
SPECS = (ROOT / "deploy" / "slos" / "auth.yaml", ROOT / "deploy" / "slos" / "platform.yaml",
         ROOT / "tests" / "data" / "openslo" / "mixed-auth.yaml", ROOT / "tests" / "data" / "sloth" / "mixed-auth.yml")
SAME = 1e-12
LOGIN = {"service": "auth", "endpoint": "/auth/login"}

INSTANTS: dict[str, Callable[[History], int]] = {
    "at the end of the auth incident": lambda h: h.scenario.episode("auth-incident").end,
    "2 days after the history starts": lambda h: h.start + 2 * DAY,
    "at the end of the history": lambda h: h.end,
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory holding slowatch/v1, OpenSLO and Sloth files."""
    out = tmp_path_factory.mktemp("mixed")
    for spec in SPECS:
        shutil.copy(spec, out / spec.name)
    return out


@cache
def evaluate(url: str, path: Path, at: int) -> dict[str, Any]:
    """``slowatch eval --format json`` of ``path`` at ``at`` (once per instant)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", str(path), "--at", str(at), "--format", "json", "--prometheus-url", url])
    doc: dict[str, Any] = json.loads(out.getvalue())
    assert code == 0, doc
    return doc


def numbers(got: dict[str, Any]) -> dict[str, Any]:
    return {"sli": got["sli"], "consumed": got["error_budget"]["consumed"], **got["burn_rates"]}


TWINS = [
    pytest.param("auth", "login-availability", "auth-openslo", SAME,
                 id="an OpenSLO counter ratio equals its native twin"),
    pytest.param("auth", "login-latency", "auth-openslo", SAME,
                 id="an OpenSLO bucket threshold equals its native twin"),
    pytest.param("gateway", "sustained-throughput", "auth-openslo", SAME,
                 id="an OpenSLO Timeslices threshold equals its native throughput twin"),
    pytest.param("auth", "login-availability", "auth-sloth", REL, id="a Sloth events ratio of rates equals its twin"),
    pytest.param("auth", "login-latency", "auth-sloth", REL, id="a Sloth latency as events of rates equals its twin"),
]


@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
@pytest.mark.parametrize(("service", "name", "twin", "rel"), TWINS)
def test_a_foreign_slo_evaluates_to_its_native_twins_numbers(
    prometheus: Server, history: History, mixed: Path, instant: str, service: str, name: str, twin: str, rel: float
) -> None:
    doc = evaluate(prometheus.url, mixed, INSTANTS[instant](history))
    native, foreign = numbers(slo(doc, service, name)), numbers(slo(doc, twin, name))
    assert native.keys() == foreign.keys()
    for key, want in native.items():
        assert foreign[key] == (want if want is None else pytest.approx(want, rel=rel)), key


TRUTHS = [
    pytest.param("login-availability", 99.95, lambda h, a, b: ratio_truth(h, LOGIN, a, b),
                 id="Sloth's login availability equals the exact counts"),
    pytest.param("login-latency", 95.0, lambda h, a, b: latency_truth(h, LOGIN, "0.2", a, b),
                 id="Sloth's login latency equals the exact counts"),
]


@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
@pytest.mark.parametrize(("name", "objective", "truth"), TRUTHS)
def test_a_sloth_slo_equals_the_ground_truth(
    prometheus: Server, history: History, mixed: Path, instant: str, name: str, objective: float,
    truth: Callable[[History, int, int], tuple[int, int]],
) -> None:
    at = INSTANTS[instant](history)
    got = slo(evaluate(prometheus.url, mixed, at), "auth-sloth", name)
    budget = 1 - objective / 100
    bad, total = truth(history, at - 30 * DAY, at)
    assert got["error_budget"]["consumed"] == pytest.approx(bad / total / budget, rel=REL)
    assert got["sli"] == pytest.approx(1 - bad / total, rel=REL)
    for w, seconds in BURN_WINDOWS.items():
        wb, wt = truth(history, at - seconds, at)
        want = expected_burn_rate(wb, wt, budget)
        assert got["burn_rates"][w] == (want if want is None else pytest.approx(want, rel=REL)), w


def instant_value(url: str, query: str, at: int) -> float:
    with urlopen(f"{url}/api/v1/query?{urlencode({'query': query, 'time': at})}", timeout=30) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1])


@pytest.mark.parametrize("window", ["5m", "1h", "1d", "30d"])
@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
def test_the_ratio_of_rates_is_the_ratio_of_increases(
    prometheus: Server, history: History, instant: str, window: str
) -> None:
    at = INSTANTS[instant](history)
    sel, bad = 'service="auth",endpoint="/auth/login"', ',code=~"5.."'
    rates = (instant_value(prometheus.url, f"sum(rate(http_requests_total{{{sel}{bad}}}[{window}]))", at)
             / instant_value(prometheus.url, f"sum(rate(http_requests_total{{{sel}}}[{window}]))", at))
    increases = (instant_value(prometheus.url, f"sum(increase(http_requests_total{{{sel}{bad}}}[{window}]))", at)
                 / instant_value(prometheus.url, f"sum(increase(http_requests_total{{{sel}}}[{window}]))", at))
    assert rates == pytest.approx(increases, rel=REL)


def openslo_journey(out: Path) -> Path:
    """An OpenSLO v1 composite as other tools write it (objectives with their own indicator and
    compositeWeight): login availability weight 2, login latency under 200 ms weight 1."""
    def prometheus(query: str) -> dict[str, Any]:
        return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}

    sel = '{service="auth",endpoint="/auth/login"}'
    doc = {"apiVersion": "openslo/v1", "kind": "SLO", "metadata": {"name": "login"}, "spec": {
        "service": "journeys", "timeWindow": [{"duration": "30d", "isRolling": True}],
        "budgetingMethod": "Occurrences", "objectives": [
            {"displayName": "availability", "target": 0.9995, "compositeWeight": 2, "indicator": {
                "metadata": {"name": "availability"}, "spec": {"ratioMetric": {
                    "counter": True, "bad": prometheus(f'http_requests_total{sel[:-1]},code=~"5.."}}'),
                    "total": prometheus(f"http_requests_total{sel}")}}}},
            {"displayName": "latency", "target": 0.95, "compositeWeight": 1, "op": "lte", "value": 0.2,
             "indicator": {"metadata": {"name": "latency"}, "spec": {
                 "thresholdMetric": prometheus(f"http_request_duration_seconds_bucket{sel}")}}},
        ]}}
    path = out / "journey.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
def test_an_openslo_composite_is_the_weighted_mean_of_its_objectives_exact_slis(
    prometheus: Server, history: History, tmp_path: Path, instant: str
) -> None:
    at = INSTANTS[instant](history)
    got = slo(evaluate(prometheus.url, openslo_journey(tmp_path), at), "journeys", "login")
    budget = 1 - (2 * 99.95 + 95) / 3 / 100  # no slowatch/composite-objective: the weighted mean of the targets

    def sli(start: int) -> float | None:
        parts = [(2, ratio_truth(history, LOGIN, start, at)), (1, latency_truth(history, LOGIN, "0.2", start, at))]
        seen = [(w, 1 - bad / total) for w, (bad, total) in parts if total > 0]  # no events: leaves both sums
        return sum(w * s for w, s in seen) / sum(w for w, _ in seen) if seen else None

    whole = sli(at - 30 * DAY)
    assert whole is not None and got["sli"] == pytest.approx(whole, rel=REL)
    assert got["error_budget"]["consumed"] == pytest.approx((1 - whole) / budget, rel=REL)
    for w, seconds in BURN_WINDOWS.items():
        part = sli(at - seconds)
        want = None if part is None else (1 - part) / budget
        assert got["burn_rates"][w] == (want if want is None else pytest.approx(want, rel=REL)), w
