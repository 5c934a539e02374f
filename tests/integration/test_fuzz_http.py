"""Schemathesis against the real HTTP app: waitress serving a view with SLOs in every state (with
values, burning, exhausted, no data, stale, error with a hostile message, warnings), fuzzed from
its own /openapi.json: every path and parameter, every check schemathesis has (no 500, status code,
content type, headers and body conform to the schema, unsupported methods answered 405).

``MAX_EXAMPLES`` per operation keeps the whole run well under the fuzz budget (90 s)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from slowatch.adapters.http import OPENAPI, App, Server, serve
from slowatch.adapters.metrics import new_registry
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement, evaluate, failed
from slowatch.core.model import Exclusion
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import DaemonView, ViewHolder
from tests.unit.fakes import slo

AT = datetime(2026, 11, 1, 12, tzinfo=UTC)
MAX_EXAMPLES = 100
# Counted by the hook below and reported by the last test: the figure for the README.
CASES: list[str] = []


def measured(good: float, total: float) -> Measurement:
    counts = {w: EventCounts(good=good, total=total) for w in (*BURN_RATE_WINDOWS, SLO_WINDOW)}
    return Measurement(at=AT, counts=counts)


def view() -> DaemonView:
    ok, burning, exhausted = slo("ok"), slo("burning", "pay"), slo("exhausted", "pay")
    nodata, stale, error = slo("quiet", "search"), slo("stale", "search"), slo("bad-data", "ünïcode svc")
    # An exclusion under way: /status carries its occurrence and the excluded seconds per window.
    excluded = replace(slo("excluded", "pay"), exclusions=(Exclusion(
        reason="planned migration", start=AT - timedelta(minutes=20), end=AT + timedelta(hours=1)),))
    statuses = (
        evaluate(ok, Measurement(at=AT, counts=measured(9999, 10000).counts, warnings=("info: not a counter",))),
        evaluate(burning, measured(9800, 10000)),
        evaluate(exhausted, measured(5000, 10000)),
        evaluate(nodata, Measurement(at=AT, counts={})),
        evaluate(excluded, measured(9990, 10000)),
        failed(stale, AT, "stale", "http://127.0.0.1:9 unreachable", evaluate(stale, measured(999, 1000))),
        failed(error, AT, "error", '<script>alert("x")</script> "quotes" \\ and \u2028 separators'),
    )
    return DaemonView(at=AT, statuses=statuses, alerts={}, firing=[], ready=True, history={}, spec_error=None)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    holder = ViewHolder(view())
    registry, _ = new_registry(holder, process=False)
    with serve(App(holder, registry, clock=lambda: AT + timedelta(seconds=30)), "127.0.0.1", 0, threads=4) as s:
        yield s


# One test per operation, named from the app's own description (schemathesis' pytest plugin
# needs the schema at import time; the server only exists inside a fixture).
# /openapi.json itself schemathesis leaves out: it reads it to begin with.
OPERATIONS = [f"GET {path}" for path in OPENAPI["paths"] if path != "/openapi.json"]


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


# Negative cases need a parameter the schema can forbid: the other routes take none, or any string.
NEGATIVE = ("GET /metrics", "GET /status")
RUNS = [pytest.param(label, GenerationMode.POSITIVE, id=f"{label} positive cases") for label in OPERATIONS] + [
    pytest.param(label, GenerationMode.NEGATIVE, id=f"{label} negative cases") for label in NEGATIVE]


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_every_route_answers_as_its_schema_says(api_schema: Any, label: str, mode: GenerationMode) -> None:
    """Positive cases (valid parameters) and negative ones (parameters the schema forbids)."""
    operations = {r.ok().label: r.ok() for r in api_schema.get_all_operations()}
    assert set(operations) == set(OPERATIONS)
    cases: list[str] = []

    @given(case=operations[label].as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case: Any) -> None:
        cases.append(label)
        case.call_and_validate()

    fuzz()
    CASES.extend(cases)
    assert cases, "schemathesis generated cases"


def test_the_fuzz_run_is_counted() -> None:
    """The README's figure: cases run by the tests above (printed with -s)."""
    print(f"schemathesis cases run: {len(CASES)} over {len(set(CASES))} operations")
    assert set(CASES) == set(OPERATIONS)
