"""`slowatch backtest` over the generated history on real engines: the alerts it replays are the
daemon's, to one step.

Three witnesses over the same six hours around the auth incident (30 minutes at 20% errors):
* the backtest, reading the history from the engine through range queries;
* the daemon itself: its ``Cycle`` over the real batched source, stepped minute by minute (the
  daemon's code from measuring to the alert book; only the clock and the Alertmanager are fakes);
* the truth: the daemon's budget maths and alert state machine fed the generator's exact counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slowatch.adapters.metrics import new_registry
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.cli import main
from slowatch.core import alerting, budget
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.model import SLO
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration
from slowatch.cycle import Cycle
from slowatch.spec import load_specs
from slowatch.view import ViewHolder
from tests.support.generator import REQUESTS_TOTAL, History
from tests.support.processes import Server
from tests.unit.fakes import FakeAlertmanager, MemoryStore

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
STEP = 60
AUTH = {"service": "auth", "endpoint": "/auth/login"}
E5XX = {"500", "503"}


def incident(history: History, name: str = "auth-incident") -> tuple[int, int]:
    (ep,) = [e for e in history.scenario.episodes if e.name == name]
    return ep.start, ep.end


def period(history: History) -> tuple[int, int]:
    start, end = incident(history)
    return start - 2 * 3600, end + 3 * 3600 + 30 * 60


def availability(slos: list[SLO]) -> SLO:
    (s,) = [s for s in slos if s.id == "auth/login-availability"]
    return s


def utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


Interval = tuple[str, str, int, int | None]  # (alertname, window or threshold, start, end)


def intervals(alerts: list[dict[str, Any]]) -> list[Interval]:
    def key(labels: dict[str, str]) -> str:
        return labels.get("long_window") or labels.get("threshold") or ""

    out = []
    for a in alerts:
        start = int(datetime.fromisoformat(a["starts_at"].replace("Z", "+00:00")).timestamp())
        end = None if a["ends_at"] is None else int(datetime.fromisoformat(a["ends_at"].replace("Z", "+00:00"))
                                                    .timestamp())
        out.append((a["alertname"], key(a["labels"]), start, end))
    return sorted(out, key=lambda x: (x[2], x[1]))


def truth(history: History, slo: SLO, start: int, end: int) -> list[Interval]:
    """The daemon's code fed exact counts at every step: the alerts that should have fired."""
    book = alerting.AlertBook()
    runs: dict[alerting.Labels, list[list[int | None]]] = {}
    windows = {w: int(parse_duration(w).total_seconds()) for w in BURN_RATE_WINDOWS}
    windows[SLO_WINDOW] = int(slo.window.duration.total_seconds())  # type: ignore[union-attr]
    for t in range(start + STEP, end + 1, STEP):
        counts = {}
        for name, seconds in windows.items():
            total = history.increase(REQUESTS_TOTAL, AUTH, t - seconds, t)
            bad = history.increase(REQUESTS_TOTAL, {**AUTH, "code": E5XX}, t - seconds, t)
            counts[name] = EventCounts(good=total - bad, total=total)
        status = budget.evaluate(slo, Measurement(at=utc(t), counts=counts))
        book, changes = alerting.step(book, [status], utc(t), evaluation_failing=False, known_slo_ids=[slo.id])
        for c in changes:
            if c.kind == "fired":
                runs.setdefault(c.alert.labels, []).append([t, None])
            else:
                runs[c.alert.labels][-1][1] = int(c.alert.ends_at.timestamp())  # type: ignore[union-attr]
    out: list[Interval] = []
    for labels, rs in runs.items():
        d = dict(labels)
        out += [(d["alertname"], d.get("long_window") or d.get("threshold") or "", a, b) for a, b in rs]  # type: ignore[misc]
    return sorted(out, key=lambda x: (x[2], x[1]))


def backtest(capsys: pytest.CaptureFixture[str], engine: Server, start: int, end: int,
             *extra: str) -> dict[str, Any]:
    code = main(["backtest", str(EXAMPLE), "--prometheus-url", engine.url, "--from", str(start), "--to", str(end),
                 "--step", "1m", "--format", "json", *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    doc: dict[str, Any] = json.loads(out)
    return doc


def within_one_step(got: list[Interval], want: list[Interval]) -> bool:
    if [(a, k) for a, k, _, _ in got] != [(a, k) for a, k, _, _ in want]:
        return False
    for (_, _, s1, e1), (_, _, s2, e2) in zip(got, want, strict=True):
        if abs(s1 - s2) > STEP or (e1 is None) != (e2 is None) or (e1 is not None and abs(e1 - e2) > STEP):  # type: ignore[operator]
            return False
    return True


@pytest.fixture(scope="module")
def example() -> list[SLO]:
    return load_specs([EXAMPLE])


def test_the_backtest_pages_for_the_auth_incident_when_the_exact_counts_say_so(
        capsys: pytest.CaptureFixture[str], engine: Server, history: History, example: list[SLO]) -> None:
    start, end = period(history)
    inc_start, inc_end = incident(history)
    doc = backtest(capsys, engine, start, end, "--incident", f"{inc_start}/{inc_end}=auth")
    (auth,) = [s for s in doc["slos"] if s["slo"] == "login-availability"]
    got = intervals(auth["alerts"])
    want = truth(history, availability(example), start, end)
    assert want and any(k == "1h" for _, k, _, _ in want)  # the incident does page on 1h/5m
    assert got == want  # exact data, the same code: the same minutes
    (report,) = auth["incidents"]
    first_page = min(s for a, k, s, _ in want if a == "SLOErrorBudgetBurn")
    assert report["detection_delay_seconds"] == first_page - inc_start
    resets = [e for a, _, s, e in want if a == "SLOErrorBudgetBurn" and s <= inc_end and (e is None or e > inc_end)]
    assert report["time_to_reset_seconds"] == (max(resets) - inc_end if None not in resets else None)  # type: ignore[type-var]
    # Every other SLO of the example spec is healthy in these hours: no page.
    others = [s for s in doc["slos"] if s["service"] != "auth"]
    assert others and all(s["pages_per_week"] == 0 for s in others), [(s["slo"], s["alerts"]) for s in others]
    assert all(s["incidents"] == [] for s in others)  # the incident was scoped to auth


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def test_the_daemon_stepped_over_the_same_hours_fires_the_same_alerts(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History, example: list[SLO],
        pool: ThreadPoolExecutor) -> None:
    inc_start, inc_end = incident(history)
    start, end = inc_start - 10 * 60, inc_end + 40 * 60  # both page rows fire and resolve in here
    slos = [availability(example)]
    holder = ViewHolder()
    _, metrics = new_registry(holder, process=False)
    sink = FakeAlertmanager()
    cycle = Cycle(slos, source=PlannedSource(PrometheusSource(prometheus.url)), sink=sink, store=MemoryStore(),
                  publisher=holder, telemetry=metrics, executor=pool)
    fired: dict[tuple[str, str], list[list[int | None]]] = {}
    for t in range(start + STEP, end + 1, STEP):
        before = {a.labels: a for a in cycle.book.firing}
        cycle.run(utc(t))
        after = {a.labels: a for a in cycle.book.firing}
        for labels in after.keys() - before.keys():
            d = dict(labels)
            fired.setdefault((d["alertname"], d.get("long_window") or d.get("threshold") or ""), []).append([t, None])
        for labels in before.keys() - after.keys():
            d = dict(labels)
            fired[(d["alertname"], d.get("long_window") or d.get("threshold") or "")][-1][1] = t
    daemon = sorted([(a, k, s, e) for (a, k), runs in fired.items() for s, e in runs],  # type: ignore[misc]
                    key=lambda x: (x[2], x[1]))
    capsys.readouterr()  # the daemon's log lines
    doc = backtest(capsys, prometheus, start, end)
    (auth,) = [s for s in doc["slos"] if s["slo"] == "login-availability"]
    assert daemon, "the daemon paged for nothing: the comparison would be vacuous"
    assert within_one_step(intervals(auth["alerts"]), daemon), (intervals(auth["alerts"]), daemon)


def test_a_step_that_does_not_tile_the_windows_is_a_one_line_usage_error(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History) -> None:
    start, end = period(history)
    code = main(["backtest", str(EXAMPLE), "--prometheus-url", prometheus.url, "--from", str(start),
                 "--to", str(end), "--step", "7s"])
    err = capsys.readouterr().err
    assert code == 2 and "must divide" in err and len(err.strip().splitlines()) == 1
