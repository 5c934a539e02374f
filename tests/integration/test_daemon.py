"""`slowatch run` end to end on real components: Prometheus with 31 days of generated history
reaching the present (backfilled up to now, then scraped live from the generator), real
Alertmanagers notifying a webhook recorder, and the daemon as a subprocess.

The scenario puts an auth incident (20% 5xx) in the 15 minutes up to a minute before the test
starts, so the daemon's first cycle pages (1h and 5m burn far above 14.4x), and the page resolves
once the incident leaves the 5-minute window (about three minutes in: the workbook's short window
is what makes a page reset quickly). The tests below run in order while that happens; the ones
that need no resolved page (the replica pair) come before it, to use that wait.

The cycle's behaviour (stale and error states, SLOWatchEvaluationFailing, resend, resolve, restart
from saved state, reload) is covered in process by tests/unit/test_cycle.py, and delivery to a
down or restarted Alertmanager by test_alertmanager_delivery.py; these tests keep what only real
processes show: the wiring, signals, and two replicas behind a clustered Alertmanager pair.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.alertmanager_fixtures import ALERTMANAGERS, Notified, WebhookReceiver, alertmanager_config
from tests.support.generator import Episode, History, generate
from tests.support.live import LiveExporter
from tests.support.processes import (
    Alertmanager,
    Server,
    create_blocks,
    free_port,
    start_alertmanager,
    start_prometheus,
    wait_until,
)

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
INTERVAL = "2s"
INCIDENT_MINUTES = 15
# The incident ends this long before the test starts: the first cycle still pages, and the page
# resolves a minute sooner (4 minutes after the incident's end).
INCIDENT_ENDED_SECONDS_AGO = 60


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


def firing(notes: list[Notified], alertname: str, **labels: str) -> list[Notified]:
    return [n for n in notes if n.status == "firing" and n.alertname == alertname
            and all(n.labels.get(k) == v for k, v in labels.items())]


def resolved(notes: list[Notified], alertname: str, **labels: str) -> list[Notified]:
    return [n for n in notes if n.status == "resolved" and n.alertname == alertname
            and all(n.labels.get(k) == v for k, v in labels.items())]


def cluster_ready(am: Alertmanager, *, members: int) -> bool:
    """The Alertmanager's gossip has settled with ``members`` peers (``GET /api/v2/status``)."""
    cluster = requests.get(f"{am.url}/api/v2/status", timeout=5).json()["cluster"]
    return bool(cluster["status"] == "ready" and len(cluster.get("peers") or ()) == members)


PAGE = {"service": "auth", "slo": "login-availability", "severity": "page", "long_window": "1h", "short_window": "5m"}


@dataclass
class World:
    history: History
    incident_end: int
    prometheus: Server
    exporter: LiveExporter
    am: Alertmanager
    webhook: WebhookReceiver
    daemon: Daemon
    work: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("daemon")
    now = int(time.time()) // 60 * 60
    ended = now - INCIDENT_ENDED_SECONDS_AGO
    incident = Episode("live-auth-incident", "auth", ("/auth/login",), ended - INCIDENT_MINUTES * 60, ended,
                       error_ratio=0.2, note="pages at the first cycle, resolves ~3 minutes later")
    history = generate(now + 3 * 3600, extra_episodes=[incident])
    blocks = create_blocks(history.series, work / "blocks", until=now + 60)
    exporter = LiveExporter(history)
    prometheus = start_prometheus(work / "prometheus", blocks, scrape_configs=[{
        "job_name": "live", "scrape_interval": "5s", "static_configs": [{"targets": [exporter.target]}],
    }])
    webhook = WebhookReceiver()
    am = start_alertmanager(work / "am", alertmanager_config(webhook.url))
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLOWATCH_ALERT_RESEND_INTERVAL": "3s",
        "SLOWATCH_QUERY_RETRIES": "1",
        "SLOWATCH_QUERY_TIMEOUT": "5s",
    }
    daemon = Daemon(
        args=[str(EXAMPLE), "--prometheus-url", prometheus.url, "--listen", listen,
              "--alertmanager-urls", am.url,
              "--evaluation-interval", INTERVAL, "--state-dir", str(work / "state"), "--log-format", "json"],
        env=env, listen=listen, log=work / "daemon.log",
    )
    daemon.start()
    w = World(history, ended, prometheus, exporter, am, webhook, daemon, work)
    yield w
    daemon.stop()
    for closer in (am.stop, prometheus.stop, exporter.close, webhook.close):
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


def test_status_and_metrics_equal_eval_at_the_same_instant(world: World) -> None:
    # The live sample of minute m is scraped within 5 s of m; compare at an instant whose data was
    # complete when the daemon evaluated it (second 15..55 of its minute), in a cycle where every
    # query answered (on a loaded machine one may time out: that SLO is stale, not comparable), and
    # /status and /metrics read from that one cycle.
    seen: dict[str, Any] = {}

    def settled() -> bool:
        status = world.daemon.status()
        metrics = requests.get(f"{world.daemon.url}/metrics", timeout=5).text
        at = datetime.fromisoformat(status["evaluated_at"].replace("Z", "+00:00"))
        seen.update(status=status, metrics=metrics)
        return (15 <= at.second <= 55 and all(s["state"] != "stale" for s in status["slos"])
                and world.daemon.status()["evaluated_at"] == status["evaluated_at"])

    wait_until(settled, what="a cycle in the settled part of a minute, every SLO evaluated")
    status, metrics = seen["status"], seen["metrics"]
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
        assert got["sli"] == want["sli"], (key, got["state"], got["error"])
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


@pytest.mark.parametrize("version", ALERTMANAGERS)
def test_two_replicas_and_two_clustered_alertmanagers_notify_once(
    world: World, tmp_path: Path, version: str
) -> None:
    hook = WebhookReceiver()
    config = alertmanager_config(hook.url)
    first = start_alertmanager(tmp_path / "am1", config, cluster=True, version=version)
    second = start_alertmanager(tmp_path / "am2", config, cluster_peers=[first.cluster_address], version=version)
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
        # A pair still settling its gossip is not yet the HA set-up under test: each member could
        # notify before it hears of the other's notification log.
        wait_until(lambda: all(cluster_ready(am, members=2) for am in (first, second)),
                   what="the Alertmanager pair gossiping as one cluster")
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


def test_the_page_resolves_once_the_burn_stops(world: World) -> None:
    # The incident's last sample (at its end) counts the minute before it; increase() over the 5m
    # window sees that minute only while the sample before it is inside: until the end + 4m.
    notes = world.webhook.wait_for(lambda n: bool(resolved(n, "SLOErrorBudgetBurn", **PAGE)), timeout=420)
    done = resolved(notes, "SLOErrorBudgetBurn", **PAGE)[0]
    assert done.ends_at is not None and done.ends_at.timestamp() >= world.incident_end + 4 * 60
    # The 1h/5m page is over (the 6h/30m page may still hold: 30 minutes hold the incident longer).
    assert world.daemon.slo("auth", "login-availability")["burn_rates"]["5m"] < 14.4
    assert len(firing(notes, "SLOErrorBudgetBurn", **PAGE)) == 1


def test_sigterm_finishes_cleanly_resolves_nothing_and_a_restart_keeps_every_alert(world: World) -> None:
    # After the 1h/5m page resolved: the alerts left (budget consumed, the slower burn rows) hold
    # for many minutes, so any resolve or new notification here would be the restart's doing.
    since = {a["alertname"]: a["since"] for a in world.daemon.slo("auth", "login-availability")["alerts"]}
    before = world.webhook.notified()
    assert world.daemon.signal(signal.SIGTERM) == 0
    world.daemon.start()  # from the saved state
    time.sleep(3)  # past the group wait and a resend: Alertmanager would have notified a change
    after = {a["alertname"]: a["since"] for a in world.daemon.slo("auth", "login-availability")["alerts"]}
    assert after == since, "startsAt must survive a restart"
    new = world.webhook.notified()[len(before):]
    assert [n for n in new if n.status == "resolved"] == []
    assert [n for n in new if n.status == "firing" and n.labels.get("slo") == "login-availability"] == []
