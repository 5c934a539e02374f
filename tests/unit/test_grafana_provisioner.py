"""Grafana provisioning on its own thread, against the HTTP double of Grafana's API: a failed run
is one log line without the token and is tried again after the retry interval (shortened here
from five minutes to a few milliseconds)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from slowatch.components.grafana_provisioner import FAILED, GrafanaProvisioner
from tests.grafana_double import TOKEN, FakeGrafana
from tests.unit.fakes import slo

PROVISIONED = "grafana dashboards provisioned"
RETRY_SECONDS = 0.05
WAIT_SECONDS = 10.0
SLOS = [slo("login"), slo("signup")]


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def events(logs: Sequence[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == name]


def test_a_failed_run_is_logged_without_the_token_and_retried_after_the_retry_interval(grafana: FakeGrafana) -> None:
    rotated = "glsa_rotated-t0ken-not-yet-in-grafana_987654321"
    provisioner = GrafanaProvisioner(grafana.url, SecretStr(rotated), lambda: SLOS, retry_seconds=RETRY_SECONDS)
    with capture_logs() as logs:
        provisioner.start()
        try:
            wait_for(lambda: bool(events(logs, FAILED)), "the first run to fail (Grafana does not know the token)")
            grafana.token = rotated  # the token is accepted now: the retry succeeds
            wait_for(lambda: bool(events(logs, PROVISIONED)), "the retry to provision")
        finally:
            provisioner.stop()

    failed = events(logs, FAILED)[0]
    assert (failed["reason"], failed["retry_in"], failed["grafana"]) == ("start", f"{RETRY_SECONDS:g}s", grafana.url)
    (done,) = events(logs, PROVISIONED)
    assert done["reason"] == "retry after a failure"
    assert done["created"] == len(grafana.dashboards) > len(SLOS)  # one per SLO, plus the overview
    assert rotated not in repr(logs) and TOKEN not in repr(logs)


def test_a_request_after_a_run_provisions_again_with_its_reason(grafana: FakeGrafana) -> None:
    provisioner = GrafanaProvisioner(grafana.url, SecretStr(TOKEN), lambda: SLOS, retry_seconds=RETRY_SECONDS)
    with capture_logs() as logs:
        provisioner.start()
        try:
            wait_for(lambda: len(events(logs, PROVISIONED)) == 1, "the run at start")
            provisioner.request("spec file changed")
            wait_for(lambda: len(events(logs, PROVISIONED)) == 2, "the run after the request")
        finally:
            provisioner.stop()
    first, second = events(logs, PROVISIONED)
    assert (first["reason"], first["created"], first["unchanged"]) == ("start", len(grafana.dashboards), 0)
    assert (second["reason"], second["created"], second["updated"]) == ("spec file changed", 0, 0)
    assert second["unchanged"] == len(grafana.dashboards)
    assert events(logs, FAILED) == []
