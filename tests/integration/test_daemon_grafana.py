"""`slowatch run` with Grafana configured: dashboards provisioned through the HTTP API at start and
after every spec reload, and alerts linking to the SLO's detail dashboard.

No Grafana server can be installed on these machines (it is not packaged in Debian, on PyPI or
on npm), so the documented HTTP API is served by a double, ``FakeGrafana`` (tests/grafana_double.py):
the endpoints provisioning uses, checking the bearer token and every payload and storing
dashboards the way Grafana does (``id`` and ``version`` assigned on each save). Everything else
is real: Prometheus over 7 days of generated history reaching the present (backfilled up to now,
then scraped live from the generator), a real Alertmanager notifying a webhook recorder, and the
daemon as a subprocess. The spec is small (auth's login availability, later also its latency) to
keep the run short; an auth incident in the 15 minutes before the start makes the first cycle page.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from slowatch.adapters import dashboards as builders
from slowatch.core import dashboards as dd
from slowatch.spec import load_specs
from tests.grafana_double import TOKEN, FakeGrafana
from tests.integration.alertmanager_fixtures import Notified, WebhookReceiver, alertmanager_config
from tests.integration.test_daemon import Daemon, firing, wait_until
from tests.support.generator import Episode, generate
from tests.support.live import LiveExporter
from tests.support.processes import (
    Alertmanager,
    Server,
    create_blocks,
    free_port,
    start_alertmanager,
    start_prometheus,
)

INTERVAL = "2s"
INCIDENT_MINUTES = 15
PROVISIONED = "grafana dashboards provisioned"
FAILED = "grafana provisioning failed; dashboards not updated"

LOGIN_AVAILABILITY = """\
  - name: login-availability
    description: Login requests that do not fail with a 5xx.
    objective: 99.95
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{service="auth",endpoint="/auth/login",code=~"5.."}
        total: http_requests_total{service="auth",endpoint="/auth/login"}
"""
LOGIN_LATENCY = """\
  - name: login-latency
    description: Logins answered within 200 ms.
    objective: 95
    window: 30d
    sli:
      latency:
        histogram: http_request_duration_seconds
        selector: '{service="auth",endpoint="/auth/login"}'
        threshold: 200ms
"""


def spec_text(*slos: str) -> str:
    return "apiVersion: slowatch/v1\nservice: auth\nlabels: {team: identity}\nslos:\n" + "".join(slos)


@dataclass
class World:
    now: int
    prometheus: Server
    exporter: LiveExporter
    am: Alertmanager
    webhook: WebhookReceiver
    grafana: FakeGrafana
    spec: Path
    daemon: Daemon
    env: dict[str, str]
    work: Path


def log_events(path: Path) -> list[dict[str, Any]]:
    """The daemon's structlog JSON lines (the standard library's few plain lines are skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            out.append(event)
    return out


def provisioning_runs(path: Path, event: str = PROVISIONED) -> list[dict[str, Any]]:
    return [e for e in log_events(path) if e.get("event") == event]


def stored_versions(grafana: FakeGrafana) -> dict[str, int]:
    return {uid: int(d["dashboard"]["version"]) for uid, d in dict(grafana.dashboards).items()}


def without_volatile(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("daemon-grafana")
    now = int(time.time()) // 60 * 60
    incident = Episode("live-auth-incident", "auth", ("/auth/login",), now - INCIDENT_MINUTES * 60, now,
                       error_ratio=0.2, note="pages at the first cycle")
    history = generate(now + 3 * 3600, days=7, extra_episodes=[incident])
    blocks = create_blocks(history.series, work / "blocks", until=now + 60)
    exporter = LiveExporter(history)
    prometheus = start_prometheus(work / "prometheus", blocks, scrape_configs=[{
        "job_name": "live", "scrape_interval": "5s", "static_configs": [{"targets": [exporter.target]}],
    }])
    webhook = WebhookReceiver()
    am = start_alertmanager(work / "am", alertmanager_config(webhook.url))
    grafana = FakeGrafana().__enter__()
    specs = work / "slos"
    specs.mkdir()
    spec = specs / "auth.yaml"
    spec.write_text(spec_text(LOGIN_AVAILABILITY))
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLOWATCH_ALERT_RESEND_INTERVAL": "3s",
        "SLOWATCH_QUERY_RETRIES": "1",
        "SLOWATCH_QUERY_TIMEOUT": "5s",
        "SLOWATCH_LOG_LEVEL": "debug",  # the most the daemon ever logs: still no token
        "SLOWATCH_GRAFANA_URL": grafana.url,
        "SLOWATCH_GRAFANA_TOKEN": TOKEN,
    }
    daemon = Daemon(
        args=[str(specs), "--prometheus-url", prometheus.url, "--listen", listen, "--alertmanager-urls", am.url,
              "--evaluation-interval", INTERVAL, "--log-format", "json"],
        env=env, listen=listen, log=work / "daemon.log",
    )
    try:
        daemon.start()
        yield World(now, prometheus, exporter, am, webhook, grafana, spec, daemon, env, work)
    finally:
        daemon.stop()
        for closer in (am.stop, prometheus.stop, exporter.close, webhook.close, lambda: grafana.__exit__(None)):
            closer()


def test_the_dashboards_are_provisioned_at_start(world: World) -> None:
    wanted = builders.build_dashboards(load_specs([world.spec]))
    wait_until(lambda: bool(provisioning_runs(world.daemon.log)), what="the first provisioning run")
    run = provisioning_runs(world.daemon.log)[0]
    assert run["reason"] == "start"
    assert (run["folder_created"], run["created"], run["updated"], run["unchanged"]) == (True, len(wanted), 0, 0)
    assert run["grafana"] == world.grafana.url
    assert world.grafana.problems == []
    assert world.grafana.folders == {dd.FOLDER_UID: dd.FOLDER_TITLE}
    assert sorted(world.grafana.dashboards) == sorted(d["uid"] for d in wanted)
    for d in wanted:
        stored = world.grafana.dashboards[d["uid"]]
        assert stored["folderUid"] == dd.FOLDER_UID
        assert without_volatile(stored["dashboard"]) == d


def test_an_added_slo_creates_exactly_its_dashboard(world: World) -> None:
    wait_until(lambda: bool(provisioning_runs(world.daemon.log)), what="the first provisioning run")
    before = stored_versions(world.grafana)
    requests_before = len(world.grafana.requests)

    world.spec.write_text(spec_text(LOGIN_AVAILABILITY, LOGIN_LATENCY))  # the daemon polls the file
    wait_until(lambda: len(provisioning_runs(world.daemon.log)) >= 2, what="provisioning after the reload")

    run = provisioning_runs(world.daemon.log)[1]
    slos = load_specs([world.spec])
    added = next(s for s in slos if s.name == "login-latency")
    assert run["reason"] == "spec file changed"
    # The overview's table lists every SLO, so it changes with the spec; no other dashboard does.
    assert (run["folder_created"], run["created"], run["updated"], run["unchanged"]) == (False, 1, 1, len(before) - 1)
    after = stored_versions(world.grafana)
    assert set(after) - set(before) == {dd.slo_uid(added)}
    assert after[dd.slo_uid(added)] == 1
    assert {uid: v for uid, v in after.items() if uid in before} == {
        uid: v + 1 if uid == dd.OVERVIEW_UID else v for uid, v in before.items()}
    saves = [p for m, p in world.grafana.requests[requests_before:] if m == "POST"]
    assert saves == ["/api/dashboards/db"] * 2, "only the new SLO's dashboard and the overview are written"
    for d in builders.build_dashboards(slos):
        assert without_volatile(world.grafana.dashboards[d["uid"]]["dashboard"]) == d
    assert world.grafana.problems == []


def dashboard_of(grafana: FakeGrafana, url: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The dashboard a Grafana URL (``{base}/d/{uid}?...``) opens, and its query parameters."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == grafana.url, url
    prefix, _, uid = parts.path.rpartition("/")
    assert prefix == "/d", url
    assert uid in grafana.dashboards, f"{url} names dashboard {uid}, which was never provisioned"
    return grafana.dashboards[uid]["dashboard"], parse_qs(parts.query)


def assert_links_to_its_detail_dashboard(grafana: FakeGrafana, note: Notified) -> None:
    service, slo = note.labels["service"], note.labels["slo"]
    url = note.annotations.get("dashboard_url")
    assert url, f"{note.alertname} for {service}/{slo} has no dashboard_url: {note.annotations}"
    dashboard, query = dashboard_of(grafana, url)
    assert query == {"var-service": [service], "var-slo": [slo]}
    assert dd.SLO_TAG in dashboard["tags"], "an SLO alert links to the SLO's detail dashboard"
    constants = {v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "constant"}
    assert constants == {"service": service, "slo": slo}


def test_alerts_carry_the_url_of_their_slos_detail_dashboard(world: World) -> None:
    page = {"service": "auth", "slo": "login-availability", "severity": "page"}
    notes = world.webhook.wait_for(lambda n: bool(firing(n, "SLOErrorBudgetBurn", **page)))
    assert_links_to_its_detail_dashboard(world.grafana, firing(notes, "SLOErrorBudgetBurn", **page)[0])
    # The SLO added by the reload links to the dashboard that reload created: about 3.5% of logins
    # take over 200 ms against a 5% budget, so its budget-consumed alert fires.
    latency = {"service": "auth", "slo": "login-latency"}
    notes = world.webhook.wait_for(lambda n: bool(firing(n, "SLOErrorBudgetConsumed", **latency)))
    assert_links_to_its_detail_dashboard(world.grafana, firing(notes, "SLOErrorBudgetConsumed", **latency)[0])


def test_the_token_never_appears_in_the_log(world: World) -> None:
    wait_until(lambda: len(provisioning_runs(world.daemon.log)) >= 1, what="a provisioning run")
    text = world.daemon.log.read_text(errors="replace")
    assert '"event": "evaluation finished"' in text  # the log is there, at debug level
    assert TOKEN not in text


def another_daemon(world: World, name: str, grafana_url: str, token: str) -> Daemon:
    listen = f"127.0.0.1:{free_port()}"
    env = {**world.env, "SLOWATCH_GRAFANA_URL": grafana_url, "SLOWATCH_GRAFANA_TOKEN": token}
    return Daemon(args=[str(world.spec), "--prometheus-url", world.prometheus.url, "--listen", listen,
                        "--evaluation-interval", INTERVAL, "--log-format", "json"],
                  env=env, listen=listen, log=world.work / f"{name}.log")


def test_a_grafana_that_never_answers_delays_no_evaluation(world: World) -> None:
    # Accepts connections (the kernel does, from the backlog) and never answers: every request
    # of the client waits for its 10 s timeout, four times per run.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        host, port = hung.getsockname()
        daemon = another_daemon(world, "hung-grafana", f"http://{host}:{port}", TOKEN)
        started = time.monotonic()
        daemon.start()  # returns once /readyz says the first evaluation finished
        try:
            assert time.monotonic() - started < 20
            first = daemon.status()["evaluated_at"]
            wait_until(lambda: daemon.status()["evaluated_at"] > first, what="later cycles", timeout=10)
            assert provisioning_runs(daemon.log) == provisioning_runs(daemon.log, FAILED) == []  # still waiting
        finally:
            stopping = time.monotonic()
            assert daemon.signal(signal.SIGTERM) == 0
        assert time.monotonic() - stopping < 15, "a provisioning run in flight must not hold up the exit"


def test_a_rejected_token_is_one_log_line_without_the_token_and_the_daemon_goes_on(world: World) -> None:
    wrong = "glsa_wrong-t0ken-must-not-be-logged_987654"
    daemon = another_daemon(world, "wrong-token", world.grafana.url, wrong)
    daemon.start()
    try:
        wait_until(lambda: bool(provisioning_runs(daemon.log, FAILED)), what="the failed provisioning run")
        time.sleep(3)  # more cycles: the failure is logged once, and evaluation goes on
        failures = provisioning_runs(daemon.log, FAILED)
        assert len(failures) == 1
        assert failures[0]["reason"] == "start" and failures[0]["level"] == "error"
        assert "401" in failures[0]["error"] and "SLOWATCH_GRAFANA_TOKEN" in failures[0]["error"]
        assert daemon.ready()
        text = daemon.log.read_text(errors="replace")
        assert wrong not in text and TOKEN not in text
        assert "Traceback" not in text
    finally:
        daemon.stop()
