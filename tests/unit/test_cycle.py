"""The daemon's cycle in process: fakes for its ports (tests/unit/fakes.py), a stepped clock, the
real alert state machine, view and self-metrics. Each scenario runs in milliseconds what the
end-to-end tests would wait minutes for."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from slowatch.adapters.metrics import SelfMetrics, new_registry
from slowatch.components.spec_watcher import SpecWatcher
from slowatch.core.alerting import BUDGET_BURN, BUDGET_CONSUMED, EVALUATION_FAILING
from slowatch.core.model import SLO
from slowatch.cycle import FAILING_AFTER_CYCLES, Cycle
from slowatch.errors import QueryError, SourceUnavailable
from slowatch.ports import BatchSource, Source
from slowatch.spec import load_specs
from slowatch.view import DaemonView, ViewHolder
from tests.unit.fakes import (
    Answer,
    BatchedSource,
    FakeAlertmanager,
    MemoryStore,
    Ratios,
    Script,
    ScriptedSource,
    SteppedClock,
    slo,
)

INTERVAL = timedelta(seconds=30)
LOGIN, SIGNUP = slo("login"), slo("signup")
# Error ratios (recent windows, whole SLO window) and what they make of a 99.9% SLO.
HEALTHY = Ratios(recent=0.0, window=0.0001)  # ok: 10% of the budget consumed
INCIDENT = Ratios(recent=0.02, window=0.0006)  # burning: 20x in every burn-rate window pages; 60% consumed
INTERNAL_ERROR = "SLO evaluation failed with an internal error; the SLO is in state error"
PASSWORD = "s3cret"


def parse_answer(body: str) -> float:
    """Stands in for code with a bug: the traceback must name it."""
    raise ValueError(f"unexpected answer {body!r} from http://admin:{PASSWORD}@prometheus:9090/api/v1/query")


def buggy() -> Exception:
    try:
        parse_answer("[]")
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


@dataclass
class World:
    cycle: Cycle
    clock: SteppedClock
    alertmanager: FakeAlertmanager
    store: MemoryStore
    holder: ViewHolder
    registry: CollectorRegistry
    telemetry: SelfMetrics

    def run(self, cycles: int = 1) -> DaemonView:
        for _ in range(cycles):
            self.cycle.run(self.clock.now())
            self.clock.step(INTERVAL)
        return self.holder.get()

    def status(self, s: SLO) -> Any:
        found = self.holder.get().status(s.service, s.name)
        assert found is not None, f"{s.id} not in the view"
        return found

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def firing(self) -> set[tuple[str, str | None]]:
        return {(a.alertname, a.label("slo")) for a in self.cycle.book.firing}


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def world(
    pool: ThreadPoolExecutor, script: Script, *, batched: bool = False, slos: tuple[SLO, ...] = (LOGIN, SIGNUP),
    store: MemoryStore | None = None, alertmanager: FakeAlertmanager | None = None, clock: SteppedClock | None = None,
    source: Source | BatchSource | None = None,
) -> World:
    holder = ViewHolder()
    registry, metrics = new_registry(holder, process=False)
    store = store or MemoryStore()
    saved = store.load()
    alertmanager = alertmanager or FakeAlertmanager(pending_ids=[i for ids in saved.pending.values() for i in ids])
    source = source or (BatchedSource(script) if batched else ScriptedSource(script))
    clock = clock or SteppedClock()
    cycle = Cycle(slos, source=source, sink=alertmanager, store=store, publisher=holder, telemetry=metrics,
                  executor=pool, clock=clock, book=saved.book)
    return World(cycle, clock, alertmanager, store, holder, registry, metrics)


def login_fails_after_one_cycle(failure: Exception) -> Script:
    """LOGIN burns at the first cycle and then cannot be evaluated; SIGNUP stays healthy."""
    def script(s: SLO, at: datetime) -> Answer:
        if s is not LOGIN:
            return HEALTHY
        return INCIDENT if at == SteppedClock().now() else failure
    return script


PATHS = [pytest.param(False, id="one SLO at a time"), pytest.param(True, id="batched")]
FAILURES = [
    pytest.param(SourceUnavailable(f"http://admin:{PASSWORD}@prometheus:9090 unreachable: connection refused"),
                 "stale", "http://prometheus:9090 unreachable: connection refused",
                 id="an unreachable source makes the SLO stale, without the URL's password"),
    pytest.param(QueryError("slo=auth/login: 2 series for one window"), "error",
                 "slo=auth/login: 2 series for one window", id="a rejected query puts the SLO in error"),
    pytest.param(buggy(), "error",
                 "internal error: ValueError: unexpected answer '[]' from http://prometheus:9090/api/v1/query",
                 id="an unexpected exception puts the SLO in error, without the URL's password"),
]


@pytest.mark.parametrize("batched", PATHS)
@pytest.mark.parametrize(("failure", "state", "message"), FAILURES)
def test_a_failed_evaluation_freezes_the_slos_alerts_and_fires_evaluation_failing_after_two_cycles(
    pool: ThreadPoolExecutor, batched: bool, failure: Exception, state: str, message: str
) -> None:
    w = world(pool, login_fails_after_one_cycle(failure), batched=batched)
    w.run()
    burning = w.status(LOGIN)
    assert burning.state == "burning"
    assert w.firing() == {(BUDGET_CONSUMED, "login"), (BUDGET_BURN, "login")}
    frozen = w.cycle.book.firing

    for cycle in range(1, FAILING_AFTER_CYCLES + 1):
        w.run()
        failed = w.status(LOGIN)
        assert (failed.state, failed.error) == (state, message)
        # stale keeps the last values (never zeroed); error has none.
        assert failed.sli == (burning.sli if state == "stale" else None)
        assert w.status(SIGNUP).state == "ok"
        assert {a for a in w.cycle.book.firing if a.slo_id is not None} == set(frozen)
        assert w.alertmanager.resolved(BUDGET_BURN) == [] and w.alertmanager.resolved(BUDGET_CONSUMED) == []
        assert bool(w.alertmanager.firing(EVALUATION_FAILING)) == (cycle >= FAILING_AFTER_CYCLES)

    assert w.metric("slowatch_evaluations_total", result="failure") == FAILING_AFTER_CYCLES
    assert w.metric("slowatch_evaluations_total", result="success") == 1


@pytest.mark.parametrize("batched", PATHS)
def test_an_unexpected_exception_is_logged_with_its_traceback_the_slo_errs_and_evaluation_failing_is_delivered(
    pool: ThreadPoolExecutor, batched: bool
) -> None:
    w = world(pool, lambda s, at: buggy() if s is LOGIN else HEALTHY, batched=batched)
    with capture_logs() as logs:
        w.run(FAILING_AFTER_CYCLES)

    internal = [e for e in logs if e["event"] == INTERNAL_ERROR]
    assert len(internal) == FAILING_AFTER_CYCLES  # one line per cycle (per exception), not per SLO or retry
    for event in internal:
        assert event["log_level"] == "error"
        assert event["slos"] == ["auth/login"]
        trace = event["exception"]
        assert trace.startswith("Traceback (most recent call last):")
        assert "in parse_answer" in trace and trace.endswith(
            "ValueError: unexpected answer '[]' from http://prometheus:9090/api/v1/query")
    assert PASSWORD not in repr(logs)
    assert (w.status(LOGIN).state, w.status(SIGNUP).state) == ("error", "ok")
    (alert,) = w.alertmanager.firing(EVALUATION_FAILING)
    assert alert.labels == {"alertname": EVALUATION_FAILING, "severity": "ticket", "slowatch_source": "daemon"}


def test_evaluation_failing_resolves_at_the_first_cycle_without_failures(pool: ThreadPoolExecutor) -> None:
    broken = {"now": True}
    w = world(pool, lambda s, at: SourceUnavailable("down") if broken["now"] else HEALTHY)
    w.run(FAILING_AFTER_CYCLES)
    assert w.firing() == {(EVALUATION_FAILING, None)}
    broken["now"] = False
    w.run()
    assert w.firing() == set()
    (resolved,) = w.alertmanager.resolved(EVALUATION_FAILING)
    assert resolved.starts_at == w.alertmanager.firing(EVALUATION_FAILING)[0].starts_at
    assert w.cycle.book.resolved == ()  # accepted: forgotten


def test_a_bug_in_the_batched_source_itself_puts_every_slo_in_error(pool: ThreadPoolExecutor) -> None:
    class Broken(BatchedSource):
        def measure_all(self, slos: Any, at: datetime, executor: Any) -> Any:
            raise KeyError("group signature")

    w = world(pool, lambda s, at: HEALTHY, source=Broken(lambda s, at: HEALTHY))
    with capture_logs() as logs:
        w.run()
    assert [(s.state, s.error) for s in w.holder.get().statuses] == [
        ("error", "internal error: KeyError: 'group signature'")] * 2
    (event,) = [e for e in logs if e["event"] == INTERNAL_ERROR]
    assert event["slos"] == ["auth/login", "auth/signup"]


# --- resend, resolve, restart -------------------------------------------------------------------


def burns_for(cycles: int) -> Script:
    """LOGIN burns for the first ``cycles`` cycles, then recovers."""
    last = SteppedClock().now() + (cycles - 1) * INTERVAL
    return lambda s, at: INCIDENT if s is LOGIN and at <= last else HEALTHY


def test_a_firing_alert_is_re_sent_on_every_delivery_with_its_first_starts_at(pool: ThreadPoolExecutor) -> None:
    w = world(pool, burns_for(3))
    w.run()
    first = w.clock.now() - INTERVAL
    w.cycle.deliver(w.clock.now())  # the resend job between cycles
    w.run(2)
    pages = [p for p in w.alertmanager.firing(BUDGET_BURN) if p.labels["long_window"] == "1h"]
    assert len(pages) == 4  # 3 cycles and 1 resend
    assert {p.starts_at for p in pages} == {first}


def test_a_slow_cycle_delivers_at_the_time_it_posts_not_at_its_evaluation_instant(pool: ThreadPoolExecutor) -> None:
    # A firing alert is valid for a few resend intervals from the post: counted from an instant
    # long past, it would reach Alertmanager expired, resolve there, and fire again.
    clock = SteppedClock()
    slow = timedelta(seconds=90)

    def script(s: SLO, at: datetime) -> Answer:
        if s is LOGIN:
            clock.step(slow)  # the measuring takes this long
        return INCIDENT if s is LOGIN else HEALTHY

    w = world(pool, script, clock=clock)
    evaluated = clock.now()
    w.cycle.run(evaluated)
    assert w.alertmanager.last_delivery == evaluated + slow
    assert {a.starts_at for a in w.cycle.book.firing} == {evaluated}  # alerts still start at the instant


def test_the_page_resolves_once_the_burn_stops_and_leaves_the_book_once_delivered(pool: ThreadPoolExecutor) -> None:
    w = world(pool, burns_for(1))
    w.run(2)
    assert w.firing() == set()
    resolved = [(p.alertname, p.labels.get("long_window")) for p in w.alertmanager.received() if p.state == "resolved"]
    assert sorted(resolved) == [(BUDGET_BURN, "1h"), (BUDGET_BURN, "3d"), (BUDGET_BURN, "6h"), (BUDGET_CONSUMED, None)]
    assert w.cycle.book.resolved == ()
    assert w.store.saved.pending == {w.alertmanager.url: ()}


def test_a_resolve_owed_while_alertmanager_is_down_survives_a_restart_from_saved_state(
    pool: ThreadPoolExecutor,
) -> None:
    store, clock = MemoryStore(), SteppedClock()
    w = world(pool, burns_for(1), store=store, clock=clock)
    w.run()
    w.alertmanager.down = True
    w.run()  # resolves while Alertmanager is down: owed, saved
    (owed,) = [a for a in store.saved.book.resolved if a.alertname == BUDGET_BURN and a.label("long_window") == "1h"]
    assert owed.id in store.saved.pending[w.alertmanager.url]
    del w  # SIGKILL: only the store survives

    restarted = world(pool, burns_for(0), store=store, clock=clock)
    assert restarted.alertmanager.pending_ids == list(store.saved.pending[restarted.alertmanager.url])
    restarted.run()
    (resolved,) = [p for p in restarted.alertmanager.resolved(BUDGET_BURN) if p.labels["long_window"] == "1h"]
    assert resolved.starts_at == owed.starts_at
    assert restarted.cycle.book.resolved == ()


def test_a_restart_from_saved_state_keeps_starts_at_and_fires_nothing_new(pool: ThreadPoolExecutor) -> None:
    store, clock = MemoryStore(), SteppedClock()
    w = world(pool, burns_for(10), store=store, clock=clock)
    w.run()
    before = {a.labels: a.starts_at for a in w.cycle.book.firing}
    restarted = world(pool, burns_for(10), store=store, clock=clock)
    with capture_logs() as logs:
        restarted.run(2)
    assert {a.labels: a.starts_at for a in restarted.cycle.book.firing} == before
    assert [e for e in logs if e["event"] in ("alert fired", "alert resolved")] == []


def test_a_failed_save_is_logged_and_the_cycle_goes_on(pool: ThreadPoolExecutor) -> None:
    w = world(pool, burns_for(1), store=MemoryStore(broken=True))
    with capture_logs() as logs:
        w.run()
    assert w.status(LOGIN).state == "burning"
    assert w.alertmanager.firing(BUDGET_BURN) != []
    assert [e["error"] for e in logs if e["event"] == "alert state not saved; a restart now would lose it"] == [
        "/state/alerts.json: No space left on device"] * 2  # after the step, and after delivery


# --- reload -------------------------------------------------------------------------------------

SPEC = """\
apiVersion: slowatch/v1
service: auth
slos:
{slos}"""
ONE_SLO = """\
  - name: {name}
    objective: 99.9
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{{code=~"5.."}}
        total: http_requests_total
"""


def spec_text(*names: str) -> str:
    return SPEC.format(slos="".join(ONE_SLO.format(name=n) for n in names))


@dataclass
class Reloading:
    world: World
    watcher: SpecWatcher
    spec: Path


def reloading(pool: ThreadPoolExecutor, tmp_path: Path, script: Script) -> Reloading:
    spec = tmp_path / "auth.yaml"
    spec.write_text(spec_text("login", "signup"))
    w = world(pool, script, slos=tuple(load_specs([tmp_path])))
    watcher = SpecWatcher([tmp_path], lambda: load_specs([tmp_path]), w.cycle, w.telemetry, w.clock)
    return Reloading(w, watcher, spec)


def by_name(s: SLO, at: datetime) -> Answer:
    return INCIDENT if s.name == "login" else HEALTHY


def test_an_invalid_spec_keeps_the_running_one_and_says_so(pool: ThreadPoolExecutor, tmp_path: Path) -> None:
    r = reloading(pool, tmp_path, by_name)
    r.world.run()
    firing = {(a.labels, a.starts_at) for a in r.world.cycle.book.firing}
    r.spec.write_text(spec_text("login").replace("99.9", "100"))
    with capture_logs() as logs:
        assert r.watcher.reload("SIGHUP") is False
    assert r.world.holder.get().spec_error == (
        f"{r.spec}: slos[0].objective: objective is a percent in (0, 100), got 100: 100% leaves no error budget; "
        "write e.g. 99.9")
    assert r.world.metric("slowatch_spec_reload_success") == 0
    assert [e["event"] for e in logs] == ["spec reload failed; keeping the running spec"]
    r.world.run()
    assert [s.slo.name for s in r.world.holder.get().statuses] == ["login", "signup"]
    assert {(a.labels, a.starts_at) for a in r.world.cycle.book.firing} == firing  # the same alerts still fire

    r.spec.write_text(spec_text("signup"))  # fixed, and login removed: its alerts resolve
    assert r.watcher.check() is True
    assert r.world.holder.get().spec_error is None
    assert r.world.metric("slowatch_spec_reload_success") == 1
    r.world.run()
    assert r.world.firing() == set()
    assert {p.alertname for p in r.world.alertmanager.received() if p.state == "resolved"} == {
        BUDGET_BURN, BUDGET_CONSUMED}


@pytest.mark.parametrize(("name", "reloads"), [
    pytest.param("payments.yaml", True, id="a new yaml file reloads"),
    pytest.param("PAYMENTS.YML", True, id="a new yml file in capitals reloads, as the loader reads it"),
    pytest.param(".payments.yaml", False, id="a dotfile is not watched, as the loader skips it"),
    pytest.param("payments.yaml.bak", False, id="a backup file is not watched"),
])
def test_hot_reload_watches_exactly_the_files_the_loader_reads(
    pool: ThreadPoolExecutor, tmp_path: Path, name: str, reloads: bool
) -> None:
    r = reloading(pool, tmp_path, by_name)
    (tmp_path / name).write_text(SPEC.format(slos=ONE_SLO.format(name="checkout")).replace("auth", "payments"))
    assert r.watcher.check() is reloads
    assert len(r.world.cycle.slos) == (3 if reloads else 2)
    assert r.watcher.check() is False  # nothing changed since


@pytest.mark.parametrize("batched", PATHS)
def test_data_the_budget_refuses_is_an_error_and_fires_evaluation_failing_after_two_cycles(
    pool: ThreadPoolExecutor, batched: bool
) -> None:
    import math

    refused = Ratios(recent=math.nan, window=math.nan)  # NaN counts: the budget refuses them
    w = world(pool, login_fails_after_one_cycle(refused), batched=batched)  # type: ignore[arg-type]
    w.run()
    for cycle in range(1, FAILING_AFTER_CYCLES + 1):
        w.run()
        failed = w.status(LOGIN)
        assert failed.state == "error" and failed.error is not None and "not a finite count" in failed.error
        assert bool(w.alertmanager.firing(EVALUATION_FAILING)) == (cycle >= FAILING_AFTER_CYCLES)
    assert w.metric("slowatch_evaluations_total", result="failure") == FAILING_AFTER_CYCLES
