"""Delivery against a real Alertmanager (each version of the matrix): what its webhook receiver is
notified of, and when.

The daemon's own ``Cycle`` runs here with the real ``AlertmanagerClient`` and the real state
store; only the source is scripted (tests/unit/fakes.py), so a test says what Prometheus would
measure and the cycle does the rest. ``evaluate()`` is one cycle at the wall clock (it delivers
too); ``pump()`` is the resend job between cycles (its interval shortened, so backoff and retries
take seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.state import SavedState, StateStore
from slowatch.core.alerting import BUDGET_BURN, BUDGET_CONSUMED
from slowatch.core.model import SLO, AlertPolicy, RatioSLI, RollingWindow
from slowatch.cycle import Cycle
from slowatch.ports import SystemClock
from slowatch.view import ViewHolder
from tests.integration.alertmanager_fixtures import ALERTMANAGERS, Notified, WebhookReceiver, launch_alertmanager
from tests.support.processes import Alertmanager, ProcessError
from tests.unit.fakes import Answer, Ratios, ScriptedSource

pytestmark = pytest.mark.integration

# The daemon's resend interval, shortened: firing alerts stay valid for 4 of them (8 s) and a
# failing URL is retried after 2 s, 4 s, then every MAX_BACKOFF.
RESEND = timedelta(seconds=2)
MAX_BACKOFF = timedelta(seconds=4)
# After the expected notifications, how long to keep re-sending before asserting none followed
# (several GROUP_INTERVALs: Alertmanager would have notified a change by then).
QUIET_SECONDS = 4.0
# Alertmanager records a notification in its log (which decides whether a later resolve is
# notified) just after the webhook answered; a stop in between would lose that record.
NFLOG_SETTLE_SECONDS = 1.0

SLO_A = SLO(
    service="auth", name="login", objective_percent=99.95, window=RollingWindow(timedelta(days=30)),
    sli=RatioSLI(total="t", errors="e"), labels=(("team", "identity"),),
    alerting=AlertPolicy(runbook_url="https://runbooks.example/auth"),
)
# What the source measures for SLO_A (budget 0.05%): 60% of the budget consumed and nothing
# burning now; recovered (10% consumed); and a fresh burn of 40x on the 1h and 5m windows only,
# which fires exactly one alert, the fast page.
CONSUMED_60 = Ratios(recent=0.0, window=0.0003)
RECOVERED = Ratios(recent=0.0, window=0.00005)
FAST_BURN = Ratios(recent=0.02, window=0.00005, burning=("5m", "1h"))


def now() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """The daemon's cycle over a scripted source, started from ``store``'s saved state (an empty
    one without a store), delivering to a real Alertmanager."""

    def __init__(self, am: Alertmanager, pool: ThreadPoolExecutor, store: StateStore | None = None) -> None:
        saved = store.load() if store else SavedState()
        self.answer: Answer = RECOVERED
        self.client = AlertmanagerClient([am.url], resend_interval=RESEND, max_backoff=MAX_BACKOFF,
                                         pending=saved.pending)
        holder = ViewHolder()
        self.cycle = Cycle(
            [SLO_A], source=ScriptedSource(lambda slo, at: self.answer), sink=self.client, store=store,
            publisher=holder, telemetry=new_registry(holder, process=False)[1], executor=pool, clock=SystemClock(),
            book=saved.book,
        )

    def evaluate(self, answer: Answer) -> None:
        self.answer = answer
        self.cycle.run(now())

    def pump(self) -> None:
        self.cycle.deliver(now())


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def stop_after_notifying(am: Alertmanager) -> None:
    time.sleep(NFLOG_SETTLE_SECONDS)
    am.stop()  # SIGTERM: Alertmanager writes its notification log to its storage on the way out


def quiet_period(daemon: Daemon) -> None:
    deadline = time.monotonic() + QUIET_SECONDS
    while time.monotonic() < deadline:
        daemon.pump()
        time.sleep(RESEND.total_seconds() / 4)


def has(status_: str, alertname: str) -> Callable[[list[Notified]], bool]:
    return lambda seen: any(n.status == status_ and n.alertname == alertname for n in seen)


def summary(seen: list[Notified]) -> list[tuple[str, str]]:
    return sorted((n.alertname, n.status) for n in seen)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(params=ALERTMANAGERS)
def alertmanager(request: pytest.FixtureRequest, tmp_path: Path, webhook: WebhookReceiver) -> Iterator[Alertmanager]:
    try:
        am = launch_alertmanager(tmp_path / "alertmanager", webhook, version=request.param)
    except ProcessError as exc:  # a missing binary fails the test: CI must install prometheus-alertmanager
        pytest.fail(str(exc), pytrace=False)
    yield am
    am.stop()


def test_a_firing_alert_is_notified_once_with_its_labels_and_annotations(
    alertmanager: Alertmanager, webhook: WebhookReceiver, pool: ThreadPoolExecutor
) -> None:
    daemon = Daemon(alertmanager, pool)
    daemon.evaluate(CONSUMED_60)
    (alert,) = daemon.cycle.book.firing
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)
    quiet_period(daemon)  # re-sent every round, as the daemon does: still one notification

    (n,) = webhook.notified()
    assert n.status == "firing"
    assert n.labels == {
        "alertname": BUDGET_CONSUMED, "service": "auth", "slo": "login", "severity": "ticket",
        "slowatch_source": "daemon", "threshold": "50", "team": "identity",
    }
    assert n.annotations["runbook_url"] == "https://runbooks.example/auth"
    assert n.annotations["summary"] == "auth/login has consumed 60.0% of its 30d error budget (threshold 50%)"
    assert "consumed 60.00%, remaining 40.00%" in n.annotations["description"]
    assert n.starts_at == alert.starts_at
    (stats,) = daemon.client.stats()
    assert (stats.errors, stats.consecutive_failures) == (0, 0)
    assert stats.sent >= 2


def test_a_resolve_is_notified_as_resolved(
    alertmanager: Alertmanager, webhook: WebhookReceiver, pool: ThreadPoolExecutor
) -> None:
    daemon = Daemon(alertmanager, pool)
    daemon.evaluate(CONSUMED_60)
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)

    daemon.evaluate(RECOVERED)  # resolves and delivers the resolve in the same cycle
    seen = webhook.wait_for(has("resolved", BUDGET_CONSUMED), while_waiting=daemon.pump)
    assert summary(seen) == [(BUDGET_CONSUMED, "firing"), (BUDGET_CONSUMED, "resolved")]
    (firing,) = [n for n in seen if n.status == "firing"]
    assert seen[-1].ends_at is not None and seen[-1].ends_at > firing.starts_at
    # Accepted by the only Alertmanager: it left the book and the bookkeeping.
    assert daemon.cycle.book.resolved == ()
    assert daemon.client.pending() == {alertmanager.url: ()}


def test_nothing_is_lost_while_alertmanager_is_down(
    alertmanager: Alertmanager, webhook: WebhookReceiver, pool: ThreadPoolExecutor
) -> None:
    daemon = Daemon(alertmanager, pool)
    alertmanager.stop()

    # Fires while Alertmanager is down: counted, kept, retried with backoff.
    daemon.evaluate(CONSUMED_60)
    daemon.pump()  # at once again: backing off, not attempted
    (stats,) = daemon.client.stats()
    assert (stats.errors, stats.consecutive_failures) == (1, 1)
    assert stats.next_attempt_at is not None

    alertmanager.start()
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)

    # Down again: the alert resolves and a page fires meanwhile.
    stop_after_notifying(alertmanager)
    daemon.evaluate(FAST_BURN)
    daemon.pump()
    assert [a.alertname for a in daemon.cycle.book.resolved] == [BUDGET_CONSUMED]
    assert [(a.alertname, a.label("long_window")) for a in daemon.cycle.book.firing] == [(BUDGET_BURN, "1h")]
    assert daemon.client.stats()[0].errors == 2

    alertmanager.start()  # same port, same storage (its notification log)
    seen = webhook.wait_for(
        lambda s: has("resolved", BUDGET_CONSUMED)(s) and has("firing", BUDGET_BURN)(s),
        while_waiting=daemon.pump,
    )
    quiet_period(daemon)
    assert summary(webhook.notified()) == summary(seen) == [
        (BUDGET_BURN, "firing"), (BUDGET_CONSUMED, "firing"), (BUDGET_CONSUMED, "resolved"),
    ]
    assert not daemon.cycle.book.resolved
    assert daemon.client.stats()[0].consecutive_failures == 0


def test_a_restart_from_saved_state_sends_no_second_notification_and_keeps_starts_at(
    tmp_path: Path, alertmanager: Alertmanager, webhook: WebhookReceiver, pool: ThreadPoolExecutor
) -> None:
    store = StateStore(tmp_path / "state")
    daemon = Daemon(alertmanager, pool, store)
    daemon.evaluate(CONSUMED_60)
    (alert,) = daemon.cycle.book.firing
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)
    del daemon  # SIGKILL: only what the cycle saved survives

    restarted = Daemon(alertmanager, pool, store)
    restarted.evaluate(CONSUMED_60)
    quiet_period(restarted)

    assert summary(webhook.notified()) == [(BUDGET_CONSUMED, "firing")]
    (again,) = restarted.cycle.book.firing
    assert again.starts_at == alert.starts_at
    (active,) = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=10).json()
    assert active["status"]["state"] == "active"
    assert active["labels"]["alertname"] == BUDGET_CONSUMED
    # Alertmanager reports milliseconds.
    reported = datetime.fromisoformat(active["startsAt"])
    assert abs(reported - alert.starts_at) < timedelta(milliseconds=1)


def test_a_resolve_owed_at_a_crash_is_delivered_after_the_restart(
    tmp_path: Path, alertmanager: Alertmanager, webhook: WebhookReceiver, pool: ThreadPoolExecutor
) -> None:
    store = StateStore(tmp_path / "state")
    daemon = Daemon(alertmanager, pool, store)
    daemon.evaluate(CONSUMED_60)
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)
    stop_after_notifying(alertmanager)
    daemon.evaluate(RECOVERED)  # the resolve cannot be delivered: owed, and saved as owed
    (owed,) = daemon.cycle.book.resolved
    assert daemon.client.pending() == {alertmanager.url: (owed.id,)}
    assert store.load().pending == {alertmanager.url: (owed.id,)}
    del daemon

    alertmanager.start()
    restarted = Daemon(alertmanager, pool, store)
    seen = webhook.wait_for(has("resolved", BUDGET_CONSUMED), while_waiting=restarted.pump)
    assert summary(seen) == [(BUDGET_CONSUMED, "firing"), (BUDGET_CONSUMED, "resolved")]
    assert seen[-1].ends_at == owed.ends_at
    assert restarted.cycle.book.resolved == ()
