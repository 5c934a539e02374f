"""A hostile query API: the daemon's Cycle (real batched source, real AlertmanagerClient) measures
a real Prometheus through a fault-injecting proxy (tests/support/fault_proxy.py) and delivers to a
real Alertmanager. The history holds an auth incident that ended a minute before the test starts,
so a page is firing at Alertmanager when the faults begin.

Each fault kind is one scenario, run the same way:

1. a healthy cycle: the alerts active at Alertmanager are the baseline (the page among them);
2. the fault, for ``FAULT_CYCLES`` cycles: every SLO's state is the expected one (``stale`` for
   a transient fault, ``error`` with a message for wrong data), Alertmanager holds no alert that
   was not in the baseline but SLOWatchEvaluationFailing (no false page), and every baseline alert
   is still active (no false resolve);
3. the fault gone: one cycle and every SLO is back to its healthy state, by itself.

The Cycle never raises: a fault that escaped it would fail the scenario with its traceback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.conventions import EVALUATION_FAILING
from slowatch.core.model import SLO
from slowatch.cycle import FAILING_AFTER_CYCLES, Cycle
from slowatch.spec import load_specs
from slowatch.view import ViewHolder
from tests.integration.alertmanager_fixtures import WebhookReceiver, alertmanager_config
from tests.support import fault_proxy as faults
from tests.support.fault_proxy import Answer, FaultProxy
from tests.support.generator import Episode, generate
from tests.support.processes import Alertmanager, Server, create_blocks, start_alertmanager, start_prometheus
from tests.unit.fakes import MemoryStore

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
# The client's read timeout (the shared test machine answers within it), and a delay that outlasts it.
QUERY_TIMEOUT = timedelta(seconds=8)
FAULT_CYCLES = FAILING_AFTER_CYCLES  # enough for SLOWatchEvaluationFailing to fire
LATENCY_SLO = "agent/simple-task-latency"
# agent/simple-task-latency's threshold (2s) as an le label may be spelled.
LATENCY_THRESHOLD_LE = ("2", "2.0", "2e+00")


# The generator's knowledge service is silent in the history's last two hours (its Silence): its
# live windows hold no events, and a negated zero is no wrong data.
SLO_IDS = frozenset(s.id for s in load_specs([EXAMPLE]))
SILENT = frozenset(i for i in SLO_IDS if i.startswith("knowledge/"))


@dataclass(frozen=True)
class Scenario:
    answer: Answer
    state: str
    """Every SLO's state under the fault (``only``: just those SLOs; the others stay healthy)."""
    message: str
    """In every affected SLO's ``error``."""
    failing: bool = True
    """SLOWatchEvaluationFailing fires: the source failed (stale), rejected the answer (QueryError),
    or the budget refused the data (NaN, negative counts, a missing bound: those SLOs are `error`,
    not evaluated, and a monitor that cannot evaluate an SLO must say so)."""
    only: frozenset[str] | None = None
    either: frozenset[str] = frozenset()
    """SLOs whose state under the fault depends on the wall-clock minute (checked as ok or the fault's state)."""


SCENARIOS = [
    pytest.param(Scenario(faults.delay(QUERY_TIMEOUT.total_seconds() + 1), "stale", "unreachable: "),
                 id="a query that outlasts the timeout: stale"),
    *(pytest.param(Scenario(faults.status(code), "stale", f"answered {code}"), id=f"{code}: stale")
      for code in (429, 502, 503, 504)),
    pytest.param(Scenario(faults.reset(), "stale", "unreachable: "), id="a connection reset: stale"),
    pytest.param(Scenario(faults.truncated(0.5), "stale", "IncompleteRead"),
                 id="a body cut short: stale"),
    pytest.param(Scenario(faults.annotations(warnings=["PromQL warning: encountered a mix of histograms and floats"]),
                          "stale", "the query API warned: PromQL warning"),
                 id="an answer with warnings is not used: stale"),
    pytest.param(Scenario(faults.partial(), "stale", "the query API warned: partial response"),
                 id="a partial response (Thanos-style): stale"),
    pytest.param(Scenario(faults.values(math.nan), "error", "is not a finite count"),
                 id="NaN values: error"),
    pytest.param(Scenario(faults.values(math.inf), "error", "is not a finite count"),
                 id="+Inf values: error"),
    # The silent service's short windows hold no events, but the tail of its 2h and 6h windows
    # (before its silence) does or does not, by the minute the test runs at: either state is right.
    pytest.param(Scenario(faults.values(lambda v: -v - 1), "error", "negative count",
                          only=frozenset(SLO_IDS - SILENT), either=SILENT),
                 id="negative values: error where there were events"),
    pytest.param(Scenario(faults.extra_series(), "error", "several series"),
                 id="an extra series (a counter re-created with another label): error"),
    pytest.param(Scenario(faults.vanished(), "stale", "vanished"),
                 id="every series vanished from one answer: stale, not zero events"),
    pytest.param(Scenario(faults.vanished("le", *LATENCY_THRESHOLD_LE), "error", "is not an `le` bound",
                          only=frozenset({LATENCY_SLO})),
                 id="a vanished histogram bucket: error for the latency SLO only"),
]


@dataclass
class World:
    prometheus: Server
    am: Alertmanager
    proxy: FaultProxy
    cycle: Cycle
    holder: ViewHolder
    slos: list[SLO]

    def run(self) -> dict[str, tuple[str, str | None]]:
        """One cycle at the wall clock (Alertmanager judges endsAt by it): each SLO's state and error."""
        snapshot = self.cycle.run(datetime.now(UTC))
        return {s.slo.id: (s.state, s.error) for s in snapshot.statuses}

    def active(self) -> set[tuple[tuple[str, str], ...]]:
        """The alerts Alertmanager holds active, as sorted label pairs."""
        alerts = requests.get(f"{self.am.url}/api/v2/alerts", params={"active": "true", "silenced": "false",
                                                                       "inhibited": "false"}, timeout=5).json()
        return {tuple(sorted(a["labels"].items())) for a in alerts if a["status"]["state"] == "active"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("faults")
    now = int(time.time()) // 60 * 60
    incident = Episode("faults-incident", "auth", ("/auth/login",), now - 16 * 60, now - 60, error_ratio=0.2,
                       note="a page is firing when the faults begin")
    # A week ending an hour from now (the scenario's shortest); blocks up to a minute from now.
    history = generate(now + 3600, days=7, extra_episodes=[incident])
    prometheus = start_prometheus(work / "prometheus", create_blocks(history.series, work / "blocks", until=now + 60))
    webhook = WebhookReceiver()
    am = start_alertmanager(work / "am", alertmanager_config(webhook.url))
    proxy = FaultProxy(prometheus.url)
    slos = load_specs([EXAMPLE])
    holder = ViewHolder()
    _, metrics = new_registry(holder, process=False)
    sink = AlertmanagerClient([am.url], resend_interval=timedelta(minutes=1))
    pool = ThreadPoolExecutor(max_workers=4)
    source = PlannedSource(PrometheusSource(proxy.url, timeout=QUERY_TIMEOUT, retries=0))
    cycle = Cycle(slos, source=source, sink=sink, store=MemoryStore(), publisher=holder, telemetry=metrics,
                  executor=pool)
    try:
        yield World(prometheus, am, proxy, cycle, holder, slos)
    finally:
        pool.shutdown(wait=True)
        sink.close()
        for closer in (proxy.close, am.stop, prometheus.stop, webhook.close):
            closer()


def _pages(active: set[tuple[tuple[str, str], ...]]) -> set[tuple[tuple[str, str], ...]]:
    return {a for a in active if ("severity", "page") in a}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_fault_gives_the_right_state_no_false_page_or_resolve_and_recovers(world: World, scenario: Scenario) -> None:
    world.proxy.clear()
    healthy = world.run()
    healthy = world.run()  # a second healthy cycle resolves SLOWatchEvaluationFailing of the last scenario
    assert all(state not in ("stale", "error") for state, _ in healthy.values()), healthy
    time.sleep(1.5)  # Alertmanager has taken the posts in
    baseline = world.active()
    assert _pages(baseline), "the incident's page is firing: a false resolve could be seen"
    assert not any(("alertname", EVALUATION_FAILING) in a for a in baseline)

    before = len(world.proxy.faulted())
    world.proxy.inject(scenario.answer)
    for _ in range(FAULT_CYCLES):
        under = world.run()
    met = len(world.proxy.faulted()) - before
    print(f"{scenario.answer.name}: {met} faulted requests")  # the README's figure (run with -s)
    assert met > 0, "the fault met the daemon's queries"
    affected = scenario.only or set(under)
    assert {i: under[i][0] for i in affected} == dict.fromkeys(affected, scenario.state)
    assert all(scenario.message in (under[i][1] or "") for i in affected), {i: under[i][1] for i in affected}
    if scenario.only is not None:
        others = set(under) - affected - scenario.either
        assert {i: under[i][0] for i in others} == {i: healthy[i][0] for i in others}
        assert all(under[i][0] in (healthy[i][0], scenario.state) for i in scenario.either)
    time.sleep(1.5)
    active = world.active()
    failing = {a for a in active if ("alertname", EVALUATION_FAILING) in a}
    assert bool(failing) == scenario.failing
    assert active - failing == baseline, "no false page, no false resolve"

    world.proxy.clear()
    recovered = world.run()
    assert {i: s for i, (s, _) in recovered.items()} == {i: s for i, (s, _) in healthy.items()}


def test_infos_leave_the_values_standing_and_are_shown_in_status(world: World) -> None:
    world.proxy.clear()
    healthy = world.run()
    info = 'PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "x"'
    world.proxy.inject(faults.annotations(infos=[info]), times=100)
    under = world.run()
    world.proxy.clear()
    assert {i: s for i, (s, _) in under.items()} == {i: s for i, (s, _) in healthy.items()}
    view = world.holder.get()
    assert {s.slo.id: s.warnings for s in view.statuses} == {s.id: (f"info: {info}",) for s in world.slos}

