"""`slowatch run` end to end on real components: Prometheus with 31 days of generated history
reaching the present (backfilled up to now, then scraped live from the generator), real
Alertmanagers notifying a webhook recorder, and the daemon as a subprocess.

The scenario puts an auth incident (20% 5xx) in the 15 minutes before the test starts, so the
daemon's first cycle pages (1h and 5m burn far above 14.4x), and the page resolves once the
incident leaves the 5-minute window (about five minutes in: the workbook's short window is what
makes a page reset quickly). The tests below run in order while that happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.alertmanager_fixtures import Notified, WebhookReceiver, alertmanager_config
from tests.support.generator import Episode, History, generate
from tests.support.live import LiveExporter
from tests.support.processes import (
    Alertmanager,
    Server,
    create_blocks,
    free_port,
    start_alertmanager,
    start_prometheus,
)

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
INTERVAL = "2s"
INCIDENT_MINUTES = 15
WAIT = 60.0  # seconds for something that should happen within a few cycles


@dataclass
class Daemon:
    """A `slowatch run` subprocess; restartable with the same state directory."""

    args: list[str]
    env: dict[str, str]
    listen: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slowatch", "run", *self.args], env=self.env,
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"),
        )
        wait_until(self.ready, what=f"daemon on {self.listen} ready")

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except requests.ConnectionError:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            return False

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = requests.get(f"{self.url}/status", timeout=5).json()
        return doc

    def slo(self, service: str, name: str) -> dict[str, Any]:
        doc: dict[str, Any] = requests.get(f"{self.url}/status/{service}/{name}", timeout=5).json()
        return doc

    def signal(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)


def wait_until(check: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.25)


def firing(notes: list[Notified], alertname: str, **labels: str) -> list[Notified]:
    return [n for n in notes if n.status == "firing" and n.alertname == alertname
            and all(n.labels.get(k) == v for k, v in labels.items())]


def resolved(notes: list[Notified], alertname: str, **labels: str) -> list[Notified]:
    return [n for n in notes if n.status == "resolved" and n.alertname == alertname
            and all(n.labels.get(k) == v for k, v in labels.items())]


PAGE = {"service": "auth", "slo": "login-availability", "severity": "page", "long_window": "1h", "short_window": "5m"}


@dataclass
class World:
    history: History
    now: int
    prometheus: Server
    exporter: LiveExporter
    am: Alertmanager
    webhook: WebhookReceiver
    late_am_port: int
    late_webhook: WebhookReceiver
    daemon: Daemon
    work: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("daemon")
    now = int(time.time()) // 60 * 60
    incident = Episode("live-auth-incident", "auth", ("/auth/login",), now - INCIDENT_MINUTES * 60, now,
                       error_ratio=0.2, note="pages at the first cycle, resolves ~5 minutes later")
    history = generate(now + 3 * 3600, extra_episodes=[incident])
    blocks = create_blocks(history.series, work / "blocks", until=now + 60)
    exporter = LiveExporter(history)
    prometheus = start_prometheus(work / "prometheus", blocks, scrape_configs=[{
        "job_name": "live", "scrape_interval": "5s", "static_configs": [{"targets": [exporter.target]}],
    }])
    webhook, late_webhook = WebhookReceiver(), WebhookReceiver()
    am = start_alertmanager(work / "am", alertmanager_config(webhook.url))
    late_am_port = free_port()  # an Alertmanager that is down when the daemon starts
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLOWATCH_ALERT_RESEND_INTERVAL": "3s",
        "SLOWATCH_QUERY_RETRIES": "1",
        "SLOWATCH_QUERY_TIMEOUT": "5s",
    }
    daemon = Daemon(
        args=[str(EXAMPLE), "--prometheus-url", prometheus.url, "--listen", listen,
              "--alertmanager-urls", f"{am.url},http://127.0.0.1:{late_am_port}",
              "--evaluation-interval", INTERVAL, "--state-dir", str(work / "state"), "--log-format", "json"],
        env=env, listen=listen, log=work / "daemon.log",
    )
    daemon.start()
    w = World(history, now, prometheus, exporter, am, webhook, late_am_port, late_webhook, daemon, work)
    yield w
    daemon.stop()
    for closer in (am.stop, prometheus.stop, exporter.close, webhook.close, late_webhook.close):
        closer()


def test_the_incident_pages_at_once(world: World) -> None:
    notes = world.webhook.wait_for(lambda n: bool(firing(n, "SLOErrorBudgetBurn", **PAGE)))
    page = firing(notes, "SLOErrorBudgetBurn", **PAGE)[0]
    assert page.labels["team"] == "identity"
    assert "burn rate" in page.annotations["description"].lower()
    assert page.annotations["runbook_url"] == "https://runbooks.example/slowatch/auth"
    slo = world.daemon.slo("auth", "login-availability")
    assert slo["state"] == "burning"
    assert slo["burn_rates"]["1h"] > 14.4 and slo["burn_rates"]["5m"] > 14.4


def test_an_slo_past_half_its_budget_notifies_once_and_a_healthy_one_never(world: World) -> None:
    consumed = {"service": "auth", "slo": "login-availability", "threshold": "50"}
    world.webhook.wait_for(lambda n: bool(firing(n, "SLOErrorBudgetConsumed", **consumed)))
    time.sleep(8)  # several cycles and resends later: still exactly one notification
    notes = world.webhook.notified()
    assert len(firing(notes, "SLOErrorBudgetConsumed", **consumed)) == 1
    assert world.daemon.slo("auth", "login-availability")["error_budget"]["consumed"] >= 0.5
    healthy = world.daemon.slo("gateway", "overall-availability")
    assert healthy["error_budget"]["consumed"] < 0.5
    assert [n for n in notes if n.labels.get("slo") == "overall-availability"] == []


def test_status_and_metrics_equal_eval_at_the_same_instant(world: World) -> None:
    # The live sample of minute m is scraped within 5 s of m; compare at an instant whose data was
    # complete when the daemon evaluated it (second 15..55 of its minute).
    def settled() -> bool:
        at = datetime.fromisoformat(world.daemon.status()["evaluated_at"].replace("Z", "+00:00"))
        return 15 <= at.second <= 55

    wait_until(settled, what="a cycle in the settled part of a minute")
    status = world.daemon.status()
    metrics = requests.get(f"{world.daemon.url}/metrics", timeout=5).text
    at = status["evaluated_at"]
    out = subprocess.run(
        [sys.executable, "-m", "slowatch", "eval", str(EXAMPLE), "--at", at, "--format", "json",
         "--prometheus-url", world.prometheus.url], capture_output=True, text=True, timeout=120, check=False,
    )
    expected = json.loads(out.stdout)
    assert expected["evaluated_at"] == at
    samples = {
        (s.name, s.labels.get("service"), s.labels.get("slo"), s.labels.get("window")): s.value
        for fam in text_string_to_metric_families(metrics) for s in fam.samples
    }
    compared = 0
    for want in expected["slos"]:
        got = next(s for s in status["slos"] if (s["service"], s["slo"]) == (want["service"], want["slo"]))
        if got["evaluated_at"] != at:
            continue  # stale SLOs keep an older instant
        compared += 1
        key = (want["service"], want["slo"])
        assert got["sli"] == want["sli"], key
        assert got["error_budget"] == want["error_budget"], key
        assert got["burn_rates"] == want["burn_rates"], key
        assert got["state"] == want["state"], key
        if want["sli"] is not None:
            assert samples[("slowatch_slo_sli_ratio", *key, want["window"])] == pytest.approx(want["sli"], rel=1e-15)
            assert samples[("slowatch_slo_error_budget_consumed_ratio", *key, None)] == pytest.approx(
                want["error_budget"]["consumed"], rel=1e-15)
        for window, rate in want["burn_rates"].items():
            if rate is not None:
                assert samples[("slowatch_slo_burn_rate", *key, window)] == pytest.approx(rate, rel=1e-15)
    assert compared == len(expected["slos"]), "every SLO was evaluated at the compared instant"


def test_prometheus_down_makes_status_stale_and_alerts_on_evaluation_not_on_slos(world: World) -> None:
    before = world.webhook.notified()
    world.prometheus.kill()
    try:
        wait_until(lambda: all(s["state"] == "stale" for s in world.daemon.status()["slos"]),
                   what="every SLO stale")
        world.webhook.wait_for(lambda n: bool(firing(n, "SLOWatchEvaluationFailing")))
        page = world.daemon.slo("auth", "login-availability")
        assert page["state"] == "stale" and page["error"] and page["sli"] is not None  # previous values kept
        assert [a["alertname"] for a in page["alerts"]].count("SLOErrorBudgetBurn") >= 1
        time.sleep(6)  # a few cycles with Prometheus down
        during = [n for n in world.webhook.notified()[len(before):] if n.alertname != "SLOWatchEvaluationFailing"]
        assert during == [], "no SLO alert may fire or resolve while Prometheus is down"
    finally:
        world.prometheus.restart()
    wait_until(lambda: not any(s["state"] == "stale" for s in world.daemon.status()["slos"]),
               what="recovery after Prometheus is back")
    world.webhook.wait_for(lambda n: bool(resolved(n, "SLOWatchEvaluationFailing")))
    assert len(firing(world.webhook.notified(), "SLOWatchEvaluationFailing")) == 1


def test_an_alertmanager_that_was_down_gets_the_alerts_once_it_is_back(world: World) -> None:
    assert world.late_webhook.notified() == []
    late = start_alertmanager(world.work / "late-am", alertmanager_config(world.late_webhook.url),
                              port=world.late_am_port)
    try:
        notes = world.late_webhook.wait_for(
            lambda n: bool(firing(n, "SLOErrorBudgetBurn", **PAGE)) and bool(firing(n, "SLOErrorBudgetConsumed")),
            timeout=400,  # the daemon backs off exponentially while a URL is down
        )
        assert firing(notes, "SLOErrorBudgetBurn", **PAGE)
    finally:
        late.stop()


def test_a_sigkilled_daemon_restarts_without_a_second_notification(world: World) -> None:
    since = {a["alertname"]: a["since"] for a in world.daemon.slo("auth", "login-availability")["alerts"]}
    before = world.webhook.notified()
    assert world.daemon.signal(signal.SIGKILL) == -signal.SIGKILL
    world.daemon.start()
    time.sleep(8)  # several cycles and resends after the restart
    after = {a["alertname"]: a["since"] for a in world.daemon.slo("auth", "login-availability")["alerts"]}
    assert after == since, "startsAt must survive a restart"
    new = world.webhook.notified()[len(before):]
    assert [n for n in new if n.status == "firing" and n.labels.get("slo") == "login-availability"] == []


def test_sigterm_finishes_cleanly_and_resolves_nothing(world: World) -> None:
    before = world.webhook.notified()
    assert world.daemon.signal(signal.SIGTERM) == 0
    time.sleep(3)
    assert [n for n in world.webhook.notified()[len(before):] if n.status == "resolved"] == []
    world.daemon.start()


def test_the_page_resolves_once_the_burn_stops(world: World) -> None:
    # The incident's last sample (at `now`) counts the minute before it; increase() over the 5m
    # window sees that minute only while the sample before it (now - 60) is inside: until now + 4m.
    notes = world.webhook.wait_for(lambda n: bool(resolved(n, "SLOErrorBudgetBurn", **PAGE)), timeout=420)
    done = resolved(notes, "SLOErrorBudgetBurn", **PAGE)[0]
    assert done.ends_at is not None and done.ends_at.timestamp() >= world.now + 4 * 60
    # The 1h/5m page is over (the 6h/30m page may still hold: 30 minutes hold the incident longer).
    assert world.daemon.slo("auth", "login-availability")["burn_rates"]["5m"] < 14.4
    assert len(firing(notes, "SLOErrorBudgetBurn", **PAGE)) == 1


def test_two_replicas_and_two_clustered_alertmanagers_notify_once(
    world: World, tmp_path: Path
) -> None:
    hook = WebhookReceiver()
    config = alertmanager_config(hook.url)
    first = start_alertmanager(tmp_path / "am1", config, cluster=True)
    second = start_alertmanager(tmp_path / "am2", config, cluster_peers=[first.cluster_address])
    spec = tmp_path / "auth.yaml"
    spec.write_text((EXAMPLE / "auth.yaml").read_text())
    replicas = [
        Daemon(args=[str(spec), "--prometheus-url", world.prometheus.url, "--listen", f"127.0.0.1:{free_port()}",
                     "--alertmanager-urls", f"{first.url},{second.url}", "--evaluation-interval", INTERVAL,
                     "--state-dir", str(tmp_path / f"state{i}")],
               env=world.daemon.env, listen="", log=tmp_path / f"replica{i}.log")
        for i in (1, 2)
    ]
    try:
        for r in replicas:
            r.listen = r.args[r.args.index("--listen") + 1]
            r.start()
        consumed = {"slo": "login-availability", "threshold": "50"}
        hook.wait_for(lambda n: bool(firing(n, "SLOErrorBudgetConsumed", **consumed)))
        time.sleep(10)  # both replicas resend to both Alertmanagers several times
        assert len(firing(hook.notified(), "SLOErrorBudgetConsumed", **consumed)) == 1
    finally:
        for r in replicas:
            r.stop()
        first.stop()
        second.stop()
        hook.close()
