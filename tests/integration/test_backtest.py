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


def auth_counts(history: History, lo: int, hi: int, excluded: tuple[int, int] | None = None) -> tuple[int, int]:
    """Exact (total, 5xx) login events in ``(lo, hi]``, less those in ``excluded``."""
    total = history.increase(REQUESTS_TOTAL, AUTH, lo, hi)
    bad = history.increase(REQUESTS_TOTAL, {**AUTH, "code": E5XX}, lo, hi)
    if excluded is not None and max(lo, excluded[0]) < min(hi, excluded[1]):
        out_total, out_bad = auth_counts(history, max(lo, excluded[0]), min(hi, excluded[1]))
        total, bad = total - out_total, bad - out_bad
    return total, bad


def truth(history: History, slo: SLO, start: int, end: int, excluded: tuple[int, int] | None = None
          ) -> list[Interval]:
    """The daemon's code fed exact counts at every step: the alerts that should have fired
    (without the events of ``excluded``, ``(lo, hi]``, in every window)."""
    book = alerting.AlertBook()
    runs: dict[alerting.Labels, list[list[int | None]]] = {}
    windows = {w: int(parse_duration(w).total_seconds()) for w in BURN_RATE_WINDOWS}
    windows[SLO_WINDOW] = int(slo.window.duration.total_seconds())  # type: ignore[union-attr]
    for t in range(start + STEP, end + 1, STEP):
        counts = {}
        for name, seconds in windows.items():
            total, bad = auth_counts(history, t - seconds, t, excluded)
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
             *extra: str, paths: tuple[Path, ...] = (EXAMPLE,)) -> dict[str, Any]:
    code = main(["backtest", *map(str, paths), "--prometheus-url", engine.url, "--from", str(start), "--to", str(end),
                 "--step", "1m", "--format", "json", *extra])
    out, err = capsys.readouterr()
    assert code == 0, out + err
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
    ended = [e for e in resets if e is not None]
    assert report["time_to_reset_seconds"] == (max(ended) - inc_end if len(ended) == len(resets) else None)
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
    daemon: list[Interval] = sorted([(a, k, s, e) for (a, k), runs in fired.items() for s, e in runs if s is not None],
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


def auth_with(tmp_path: Path, extra: str) -> Path:
    """The example's auth.yaml with ``extra`` YAML at file level (e.g. exclusions)."""
    text = (EXAMPLE / "auth.yaml").read_text()
    out = tmp_path / "auth.yaml"
    out.write_text(text.replace("slos:\n", f"{extra}slos:\n", 1))
    return out


def test_an_exclusion_over_the_incident_removes_its_pages_and_its_events_from_the_budget(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History, tmp_path: Path) -> None:
    start, end = period(history)
    inc_start, inc_end = incident(history)
    spec = auth_with(tmp_path, f"exclusions:\n  - {{start: {utc(inc_start).isoformat()}, "
                               f"end: {utc(inc_end).isoformat()}, reason: planned failover drill}}\n")
    doc = backtest(capsys, prometheus, start, end, "--incident", f"{inc_start}/{inc_end}=auth",
                   "--slo", "auth/login-availability", paths=(spec,))
    (auth,) = doc["slos"]
    slo = availability(load_specs([spec]))
    want = truth(history, slo, start, end, excluded=(inc_start, inc_end))
    assert intervals(auth["alerts"]) == want  # the daemon's code on the exact counts less the incident's
    assert not any(a["severity"] == "page" for a in auth["alerts"])
    assert auth["incidents"][0]["detected_at"] is None
    # Budget at --to: the exact counts of the 30-day window less the incident's events.
    total, bad = auth_counts(history, end - 30 * 86400, end, excluded=(inc_start, inc_end))
    assert auth["budget_consumed_end"] == (bad / total) / slo.budget
    incident_total, incident_bad = auth_counts(history, inc_start, inc_end)
    assert incident_bad > 0.05 * incident_total  # the excluded hour was a real incident
    assert (auth["excluded_seconds"], auth["excluded_events"]) == (inc_end - inc_start, incident_total)


def test_a_composite_of_the_auth_slos_replays_the_weighted_mean_of_their_exact_slis(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History, tmp_path: Path) -> None:
    start, end = period(history)
    journey = tmp_path / "journey.yaml"
    journey.write_text("apiVersion: slowatch/v1\nservice: journeys\nslos:\n  - name: login\n    objective: 99.5\n"
                       "    window: 30d\n    sli:\n      composite:\n        components:\n"
                       "          - {slo: auth/login-availability, weight: 1}\n"
                       "          - {slo: auth/login-latency, weight: 2}\n")
    doc = backtest(capsys, prometheus, start, end, "--slo", "journeys", paths=(EXAMPLE / "auth.yaml", journey))
    (login,) = doc["slos"]  # the components are read for it, not reported
    assert login["slo"] == "login"
    lo = end - 30 * 86400
    total, bad = auth_counts(history, lo, end)
    fast = history.increase("http_request_duration_seconds_bucket", {**AUTH, "le": "0.2"}, lo, end)
    count = history.increase("http_request_duration_seconds_count", AUTH, lo, end)
    sli = (1 * (total - bad) / total + 2 * fast / count) / 3
    assert login["budget_consumed_end"] == pytest.approx((1 - sli) / 0.005, rel=1e-12)


def test_an_exclusion_inside_the_steps_is_split_at_the_raw_samples(
        capsys: pytest.CaptureFixture[str], prometheus: Server, history: History, tmp_path: Path) -> None:
    # At a 5-minute step an exclusion from 2 minutes into the incident to 2 minutes after it cuts two
    # steps; the reader keeps those steps' samples, so exactly the samples in (lo, hi] leave the counts.
    start, end = period(history)
    inc_start, inc_end = incident(history)
    lo, hi = inc_start + 120, inc_end + 120
    assert lo % 300 and hi % 300 and start % 300 == 0 == end % 300  # the boundaries fall inside steps
    spec = auth_with(tmp_path, f"exclusions:\n  - {{start: {utc(lo).isoformat()}, end: {utc(hi).isoformat()}, "
                               "reason: late drill}\n")
    code = main(["backtest", str(spec), "--prometheus-url", prometheus.url, "--from", str(start), "--to", str(end),
                 "--step", "5m", "--format", "json", "--slo", "auth/login-availability"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (auth,) = json.loads(out)["slos"]
    total, bad = auth_counts(history, end - 30 * 86400, end, excluded=(lo, hi))
    assert auth["budget_consumed_end"] == (bad / total) / availability(load_specs([spec])).budget
    assert auth["excluded_events"] == auth_counts(history, lo, hi)[0]
    # Whole steps would have taken out other events: the split is what makes it exact.
    assert auth_counts(history, lo - 120, hi - 120)[0] != auth_counts(history, lo, hi)[0]
