"""Delivery against a real Alertmanager: what its webhook receiver is notified of, and when.

The daemon's resend loop is played by the tests: ``pump()`` delivers with the wall clock, the
way the daemon does every resend interval (shortened here so backoff and retries take seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.state import StateStore
from slowatch.core.alerting import BUDGET_BURN, BUDGET_CONSUMED, AlertBook, forget, step
from slowatch.core.budget import BudgetStatus
from slowatch.core.model import SLO, AlertPolicy, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS, SRE_WORKBOOK_TABLE_5_8
from tests.integration.alertmanager_fixtures import Notified, WebhookReceiver, launch_alertmanager
from tests.support.processes import Alertmanager, ProcessError

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
PAGE_FAST = SRE_WORKBOOK_TABLE_5_8[0]


def now() -> datetime:
    return datetime.now(UTC)


def status(consumed: float, *, burning: bool = False) -> BudgetStatus:
    return BudgetStatus(
        slo=SLO_A, at=now(), state="burning" if burning else "ok", sli=1 - consumed * SLO_A.budget,
        budget_total=SLO_A.budget, consumed=consumed, burn_rates=dict.fromkeys(BURN_RATE_WINDOWS, 20.0),
        exhaustion_at=None, burning=(PAGE_FAST,) if burning else (),
    )


@dataclass
class Daemon:
    """The alerting half of the daemon: a book, a client, and the step/deliver/forget loop."""

    client: AlertmanagerClient
    book: AlertBook = field(default_factory=AlertBook)

    def evaluate(self, s: BudgetStatus) -> None:
        self.book, _ = step(self.book, [s], now(), evaluation_failing=False, known_slo_ids={SLO_A.id})

    def pump(self) -> None:
        report = self.client.deliver(self.book, now())
        self.book = forget(self.book, report.delivered)


def new_daemon(am: Alertmanager, pending: Mapping[str, Collection[str]] | None = None) -> Daemon:
    return Daemon(AlertmanagerClient([am.url], resend_interval=RESEND, max_backoff=MAX_BACKOFF, pending=pending))


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


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: WebhookReceiver) -> Iterator[Alertmanager]:
    try:
        am = launch_alertmanager(tmp_path / "alertmanager", webhook)
    except ProcessError as exc:  # a missing binary fails the test: CI must install prometheus-alertmanager
        pytest.fail(str(exc), pytrace=False)
    yield am
    am.stop()


def test_a_firing_alert_is_notified_once_with_its_labels_and_annotations(
    alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    daemon = new_daemon(alertmanager)
    daemon.evaluate(status(0.6))
    (alert,) = daemon.book.firing
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


def test_a_resolve_is_notified_as_resolved(alertmanager: Alertmanager, webhook: WebhookReceiver) -> None:
    daemon = new_daemon(alertmanager)
    daemon.evaluate(status(0.6))
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)

    daemon.evaluate(status(0.1))
    (resolved,) = daemon.book.resolved
    seen = webhook.wait_for(has("resolved", BUDGET_CONSUMED), while_waiting=daemon.pump)
    assert summary(seen) == [(BUDGET_CONSUMED, "firing"), (BUDGET_CONSUMED, "resolved")]
    assert seen[-1].ends_at == resolved.ends_at
    # Accepted by the only Alertmanager: it left the book and the bookkeeping.
    assert daemon.book.resolved == ()
    assert daemon.client.pending() == {alertmanager.url: ()}


def test_nothing_is_lost_while_alertmanager_is_down(alertmanager: Alertmanager, webhook: WebhookReceiver) -> None:
    daemon = new_daemon(alertmanager)
    alertmanager.stop()

    # Fires while Alertmanager is down: counted, kept, retried with backoff.
    daemon.evaluate(status(0.6))
    daemon.pump()
    daemon.pump()  # at once again: backing off, not attempted
    (stats,) = daemon.client.stats()
    assert (stats.errors, stats.consecutive_failures) == (1, 1)
    assert stats.next_attempt_at is not None

    alertmanager.start()
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)

    # Down again: the alert resolves and a page fires meanwhile.
    stop_after_notifying(alertmanager)
    daemon.evaluate(status(0.1, burning=True))
    daemon.pump()
    assert len(daemon.book.resolved) == 1
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
    assert not daemon.book.resolved
    assert daemon.client.stats()[0].consecutive_failures == 0


def test_a_restart_from_saved_state_sends_no_second_notification_and_keeps_starts_at(
    tmp_path: Path, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    store = StateStore(tmp_path / "state")
    daemon = new_daemon(alertmanager)
    daemon.evaluate(status(0.6))
    (alert,) = daemon.book.firing
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)
    store.save(daemon.book, daemon.client.pending(), now())
    del daemon  # SIGKILL: nothing else survives

    saved = store.load()
    restarted = new_daemon(alertmanager, pending=saved.pending)
    restarted.book = saved.book
    restarted.evaluate(status(0.6))
    quiet_period(restarted)

    assert summary(webhook.notified()) == [(BUDGET_CONSUMED, "firing")]
    (again,) = restarted.book.firing
    assert again.starts_at == alert.starts_at
    (active,) = requests.get(f"{alertmanager.url}/api/v2/alerts", timeout=10).json()
    assert active["status"]["state"] == "active"
    assert active["labels"]["alertname"] == BUDGET_CONSUMED
    # Alertmanager reports milliseconds.
    reported = datetime.fromisoformat(active["startsAt"])
    assert abs(reported - alert.starts_at) < timedelta(milliseconds=1)


def test_a_resolve_owed_at_a_crash_is_delivered_after_the_restart(
    tmp_path: Path, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    store = StateStore(tmp_path / "state")
    daemon = new_daemon(alertmanager)
    daemon.evaluate(status(0.6))
    webhook.wait_for(has("firing", BUDGET_CONSUMED), while_waiting=daemon.pump)
    stop_after_notifying(alertmanager)
    daemon.evaluate(status(0.1))
    daemon.pump()
    (owed,) = daemon.book.resolved
    assert daemon.client.pending() == {alertmanager.url: (owed.id,)}
    store.save(daemon.book, daemon.client.pending(), now())
    del daemon

    alertmanager.start()
    saved = store.load()
    restarted = new_daemon(alertmanager, pending=saved.pending)
    restarted.book = saved.book
    seen = webhook.wait_for(has("resolved", BUDGET_CONSUMED), while_waiting=restarted.pump)
    assert summary(seen) == [(BUDGET_CONSUMED, "firing"), (BUDGET_CONSUMED, "resolved")]
    assert restarted.book.resolved == ()
