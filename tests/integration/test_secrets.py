"""No secret ever leaves the daemon: `slowatch run` with a password in the Prometheus URL, a bearer
token file, an Alertmanager URL with credentials and a Grafana token, against a real Prometheus and
a real Alertmanager behind auth-checking proxies (tests/support/fault_proxy.py). The credentials
must reach the servers as Authorization headers; then Prometheus, Alertmanager and Grafana become
unreachable, so every error path that names a URL runs; then the logs, /status, the page, /metrics,
the state file and the alerts Alertmanager holds are searched for every secret, in every spelling.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.components.grafana_provisioner import FAILED as GRAFANA_FAILED
from slowatch.core.measure import PROMETHEUS
from tests.integration.alertmanager_fixtures import WebhookReceiver, alertmanager_config
from tests.support.fault_proxy import FaultProxy
from tests.support.generator import Episode, generate
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
# Secrets with characters a URL must percent-encode, so a leak of either spelling is caught.
PROMETHEUS_PASSWORD = "prom-P@ss/w0rd"
ALERTMANAGER_PASSWORD = "am-S3cret:42"
GRAFANA_PASSWORD = "graf-Pa55-in-url"
GRAFANA_TOKEN = "glsa_grafanaTOKENzzz123"
TOKENS = ("bearer-TOKEN-one-7f3a", "bearer-TOKEN-two-9c1e")
SECRETS = (PROMETHEUS_PASSWORD, ALERTMANAGER_PASSWORD, GRAFANA_PASSWORD, GRAFANA_TOKEN, *TOKENS)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}


@dataclass
class World:
    prometheus: Server
    am: Alertmanager
    prom_proxy: FaultProxy
    am_proxy: FaultProxy
    daemon: subprocess.Popen[bytes]
    listen: str
    log: Path
    token_file: Path
    state_dir: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(f"http://{self.listen}{path}", timeout=5)

    def alerts(self) -> list[dict[str, object]]:
        alerts: list[dict[str, object]] = requests.get(f"{self.am.url}/api/v2/alerts", timeout=5).json()
        return alerts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("secrets")
    now = int(time.time()) // 60 * 60
    incident = Episode("secrets-incident", "auth", ("/auth/login",), now - 16 * 60, now - 60, error_ratio=0.2,
                       note="pages at the first cycle")
    history = generate(now + 3600, days=7, extra_episodes=[incident])
    prometheus = start_prometheus(work / "prometheus", create_blocks(history.series, work / "blocks", until=now + 60))
    webhook = WebhookReceiver()
    am = start_alertmanager(work / "am", alertmanager_config(webhook.url))
    prom_proxy = FaultProxy(prometheus.url, require_auth=f"Bearer {TOKENS[0]}")
    am_proxy = FaultProxy(am.url, require_auth=basic("slowatch", ALERTMANAGER_PASSWORD))
    token_file = work / "token"
    token_file.write_text(TOKENS[0] + "\n")
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLOWATCH_PROMETHEUS_URL": prom_proxy.url.replace("://", f"://slowatch:{quote(PROMETHEUS_PASSWORD, safe='')}@"),
        "SLOWATCH_PROMETHEUS_BEARER_TOKEN_FILE": str(token_file),
        "SLOWATCH_ALERTMANAGER_URLS": am_proxy.url.replace("://", f"://slowatch:{quote(ALERTMANAGER_PASSWORD)}@"),
        "SLOWATCH_GRAFANA_URL": f"http://admin:{GRAFANA_PASSWORD}@127.0.0.1:{free_port()}",
        "SLOWATCH_GRAFANA_TOKEN": GRAFANA_TOKEN,
        "SLOWATCH_LISTEN": listen,
        "SLOWATCH_EVALUATION_INTERVAL": "1s",
        "SLOWATCH_ALERT_RESEND_INTERVAL": "2s",
        "SLOWATCH_QUERY_RETRIES": "0",
        "SLOWATCH_QUERY_TIMEOUT": "5s",
        "SLOWATCH_LOG_FORMAT": "json",
        "SLOWATCH_LOG_LEVEL": "debug",
        "SLOWATCH_STATE_DIR": str(work / "state"),
    }
    log = work / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "slowatch", "run", str(EXAMPLE)], env=env,
                              stdout=log.open("ab"), stderr=subprocess.STDOUT)
    w = World(prometheus, am, prom_proxy, am_proxy, daemon, listen, log, token_file, work / "state")
    try:
        yield w
    finally:
        if daemon.poll() is None:
            daemon.terminate()
            daemon.wait(timeout=60)
        for closer in (prom_proxy.close, am_proxy.close, am.stop, prometheus.stop, webhook.close):
            closer()


def _page_at_alertmanager(w: World) -> bool:
    return any(a["labels"].get("severity") == "page" for a in w.alerts())  # type: ignore[attr-defined]


def test_the_credentials_reach_prometheus_and_alertmanager_as_headers(world: World) -> None:
    wait_until(lambda: _page_at_alertmanager(world), what="the page at Alertmanager, through both proxies")
    prom = {s.authorization for s in world.prom_proxy.seen}
    assert prom == {f"Bearer {TOKENS[0]}"}, "the token file wins over the URL's password, and is always sent"
    am = {s.authorization for s in world.am_proxy.seen}
    assert am == {basic("slowatch", ALERTMANAGER_PASSWORD)}
    assert all(s.status == 200 for s in world.am_proxy.seen)


def test_a_rotated_token_file_is_read_again(world: World) -> None:
    world.token_file.write_text(TOKENS[1] + "\n")
    world.prom_proxy.require_auth = f"Bearer {TOKENS[1]}"
    seen = len(world.prom_proxy.seen)
    wait_until(lambda: any(s.authorization == f"Bearer {TOKENS[1]}" and s.status == 200
                           for s in world.prom_proxy.seen[seen:]), what="a query with the new token")


def test_unreachable_servers_and_every_surface_hold_no_secret(world: World) -> None:
    proxy_url = world.prom_proxy.url
    world.prom_proxy.close()
    wait_until(lambda: any(a["labels"].get("alertname") == "SLOWatchEvaluationFailing"  # type: ignore[attr-defined]
                           for a in world.alerts()), what="SLOWatchEvaluationFailing at Alertmanager")
    world.am_proxy.close()
    wait_until(lambda: "alertmanager delivery failed" in world.log.read_text(), what="a failed delivery logged")
    status = world.get("/status").text
    # The error paths that quote the URLs did run: the secrets are missing because they were cut.
    assert f"{proxy_url} unreachable" in status
    surfaces = {
        "log": world.log.read_text(),
        "/status": status,
        "/": world.get("/").text,
        "/metrics": world.get("/metrics").text,
        "alerts at Alertmanager": json.dumps(world.alerts()),
        "state file": (world.state_dir / "alerts.json").read_text(),
    }
    assert GRAFANA_FAILED in surfaces["log"], "the Grafana error path (URL and token at hand) ran"
    leaks = sorted((name, secret) for name, text in surfaces.items() for secret in SECRETS
                   for spelling in spellings(secret) if spelling in text)
    assert leaks == []
    assert world.daemon.poll() is None, "the daemon is still running"


def test_a_password_in_the_prometheus_url_is_sent_as_basic_auth(prometheus_for_auth: Server) -> None:
    with FaultProxy(prometheus_for_auth.url, require_auth=basic("reader", PROMETHEUS_PASSWORD)) as proxy:
        url = proxy.url.replace("://", f"://reader:{quote(PROMETHEUS_PASSWORD, safe='')}@")
        source = PrometheusSource(url, retries=0)
        assert source.url == proxy.url
        assert source.flavour() == PROMETHEUS
        assert [s.authorization for s in proxy.seen] == [basic("reader", PROMETHEUS_PASSWORD)]


@pytest.fixture(scope="module")
def prometheus_for_auth(world: World) -> Server:
    return world.prometheus
