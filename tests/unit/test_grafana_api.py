"""Provisioning through Grafana's HTTP API (adapters/grafana.py, the `provision grafana` command).

No real Grafana runs here: none can be installed on these machines (it is not packaged in Debian,
on PyPI or on npm). So these tests run against an HTTP double, ``FakeGrafana`` (tests/grafana_double.py):
the endpoints provisioning uses, as Grafana documents them, checking the bearer token and every
payload. What it cannot show is a real Grafana's quirks beyond that documented behaviour; an
end-to-end run against a real Grafana is left to the compose example (deploy/compose).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from slowatch import cli
from slowatch.adapters import dashboards as builders
from slowatch.adapters.grafana import GrafanaClient, provision
from slowatch.core import dashboards as dd
from slowatch.errors import GrafanaError
from slowatch.spec import load_specs
from tests.grafana_double import TOKEN, FakeGrafana

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def client(fake: FakeGrafana, token: str | None = TOKEN, backoff: float = 0.0) -> GrafanaClient:
    # No backoff by default: the retries are real requests, the waits between them only slow the test.
    return GrafanaClient(fake.url, SecretStr(token) if token is not None else None, timeout=5, retries=3,
                         backoff=backoff)


def dashboards() -> list[dd.Dashboard]:
    return builders.build_dashboards(load_specs([REPO / "deploy" / "slos"]))


# ---------------------------------------------------------------------------------------------
# The flow.


def test_a_first_run_creates_the_folder_and_every_dashboard(grafana: FakeGrafana) -> None:
    wanted = dashboards()
    result = provision(client(grafana), wanted)
    assert result.folder_created
    assert result.created == tuple(d["uid"] for d in wanted)
    assert result.updated == result.unchanged == ()
    assert grafana.folders == {dd.FOLDER_UID: dd.FOLDER_TITLE}
    assert grafana.posts() == ["/api/folders"] + ["/api/dashboards/db"] * len(wanted)
    assert grafana.problems == []
    for d in wanted:
        stored = grafana.dashboards[d["uid"]]
        assert stored["folderUid"] == dd.FOLDER_UID
        assert {k: v for k, v in stored["dashboard"].items() if k not in ("id", "version")} == d


def test_a_second_run_changes_nothing(grafana: FakeGrafana) -> None:
    wanted = dashboards()
    provision(client(grafana), wanted)
    grafana.requests.clear()
    result = provision(client(grafana), dashboards())
    assert not result.changed
    assert result.unchanged == tuple(d["uid"] for d in wanted)
    assert grafana.posts() == []


def test_a_changed_slo_updates_only_its_own_dashboard(grafana: FakeGrafana) -> None:
    slos = load_specs([REPO / "deploy" / "slos"])
    provision(client(grafana), builders.build_dashboards(slos))
    grafana.requests.clear()
    slos[0] = replace(slos[0], objective_percent=99.5)
    result = provision(client(grafana), builders.build_dashboards(slos))
    assert result.updated == (dd.slo_uid(slos[0]),)
    assert result.created == () and not result.folder_created
    assert grafana.posts() == ["/api/dashboards/db"]
    assert grafana.dashboards[dd.slo_uid(slos[0])]["dashboard"]["version"] == 2


def test_a_dashboard_moved_to_another_folder_is_moved_back(grafana: FakeGrafana) -> None:
    wanted = dashboards()
    provision(client(grafana), wanted)
    grafana.folders["elsewhere"] = "Elsewhere"
    grafana.dashboards[dd.OVERVIEW_UID]["folderUid"] = "elsewhere"
    result = provision(client(grafana), wanted)
    assert result.updated == (dd.OVERVIEW_UID,)
    assert grafana.dashboards[dd.OVERVIEW_UID]["folderUid"] == dd.FOLDER_UID


# ---------------------------------------------------------------------------------------------
# Failures: every message says what to do, and none holds the token.


@pytest.mark.parametrize(("script", "token", "says"), [
    pytest.param([], "glsa_wrong-token", ["401", "SLOWATCH_GRAFANA_TOKEN", "invalid"],
                 id="a wrong token is reported as invalid, not shown"),
    pytest.param([], None, ["401", "set SLOWATCH_GRAFANA_TOKEN"], id="a missing token asks for one"),
    pytest.param([("POST", "/api/folders", 403)], TOKEN, ["403", "Editor role", "folders:create"],
                 id="a token that may not create folders names the role it needs"),
    pytest.param([("POST", "/api/dashboards/db", 403)], TOKEN, ["403", "Editor role", "saving dashboard"],
                 id="a token that may not save dashboards names the role it needs"),
    pytest.param([("GET", "/api/health", 404)], TOKEN, ["no Grafana API", "SLOWATCH_GRAFANA_URL", "sub-path"],
                 id="a URL without Grafana behind it points at SLOWATCH_GRAFANA_URL"),
    pytest.param([("POST", "/api/dashboards/db", 404)], TOKEN, ["404", "not found", "saving dashboard"],
                 id="a missing endpoint says what was not found"),
    pytest.param([("GET", "/api/health", 503)] * 4, TOKEN, ["unavailable", "4 times", "503"],
                 id="a Grafana still down after the retries is unavailable"),
    pytest.param([("POST", "/api/dashboards/db", 400)], TOKEN, ["HTTP 400", "scripted 400"],
                 id="any other refusal passes Grafana's message on"),
])
def test_failures_give_a_clear_message_without_the_token(
    grafana: FakeGrafana, script: list[tuple[str, str, int]], token: str | None, says: list[str]
) -> None:
    for method, path, status in script:
        grafana.answer(method, path, status)
    with pytest.raises(GrafanaError) as info:
        provision(client(grafana, token), dashboards())
    message = str(info.value)
    for part in says:
        assert part in message
    assert TOKEN not in message and "glsa_wrong-token" not in message
    assert "\n" not in message


def test_a_folder_created_by_a_retried_post_counts_as_created(grafana: FakeGrafana) -> None:
    # The first POST timed out on our side but Grafana created the folder; the retry gets a 409.
    grafana.folders[dd.FOLDER_UID] = dd.FOLDER_TITLE
    client(grafana).create_folder(dd.FOLDER_UID, dd.FOLDER_TITLE)  # no error: the folder is there
    assert grafana.requests[-2:] == [("POST", "/api/folders"), ("GET", f"/api/folders/{dd.FOLDER_UID}")]


def test_a_folder_title_taken_by_another_folder_says_how_to_resolve_it(grafana: FakeGrafana) -> None:
    grafana.folders["team-slos"] = dd.FOLDER_TITLE
    with pytest.raises(GrafanaError, match=r"409.*--folder-uid.*--folder-title"):
        provision(client(grafana), dashboards())


def test_a_token_echoed_by_the_server_is_scrubbed_from_the_message(grafana: FakeGrafana) -> None:
    grafana.answer("POST", "/api/folders", 400, {"message": f"bad header Bearer {TOKEN}"})
    with pytest.raises(GrafanaError) as info:
        provision(client(grafana), dashboards())
    assert TOKEN not in str(info.value) and "***" in str(info.value)


def test_the_token_is_not_in_the_clients_repr(grafana: FakeGrafana) -> None:
    assert TOKEN not in repr(client(grafana)) and TOKEN not in client(grafana).url


@pytest.mark.parametrize(("method", "path", "statuses"), [
    pytest.param("GET", "/api/health", [503], id="a 503 from the health check is retried"),
    pytest.param("POST", "/api/dashboards/db", [502, 504], id="two gateway errors on a save are retried"),
    pytest.param("GET", f"/api/dashboards/uid/{dd.OVERVIEW_UID}", [429], id="a 429 is retried"),
])
def test_transient_failures_are_retried_with_backoff(
    grafana: FakeGrafana, method: str, path: str, statuses: list[int]
) -> None:
    with FakeGrafana() as clean:
        provision(client(clean), dashboards())
    for status in statuses:
        grafana.answer(method, path, status)
    result = provision(client(grafana), dashboards())
    assert len(result.created) == len(dashboards())
    assert grafana.requests.count((method, path)) == clean.requests.count((method, path)) + len(statuses)


def test_the_retries_back_off_exponentially(grafana: FakeGrafana) -> None:
    # urllib3's Retry: no wait before the first retry, then backoff * 2**(n-1): 0 + 0.1 + 0.2 s.
    for _ in range(3):
        grafana.answer("GET", "/api/health", 500)
    started = time.monotonic()
    client(grafana, backoff=0.05).health()
    assert time.monotonic() - started >= 0.3
    assert grafana.requests.count(("GET", "/api/health")) == 4


def test_an_unreachable_grafana_is_retried_then_reported() -> None:
    with FakeGrafana() as fake:
        url = fake.url
    c = GrafanaClient(url, SecretStr(TOKEN), timeout=2, retries=2, backoff=0.0)
    with pytest.raises(GrafanaError, match=r"unavailable.*3 times.*ConnectionError"):
        c.health()


# ---------------------------------------------------------------------------------------------
# The command.


@pytest.fixture
def provision_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # cli.py's owner adds "slowatch.provision" to COMMAND_MODULES; until then, add it here.
    modules = tuple(dict.fromkeys((*cli.COMMAND_MODULES, "slowatch.provision")))
    monkeypatch.setattr(cli, "COMMAND_MODULES", modules)
    for name in ("SLOWATCH_GRAFANA_URL", "SLOWATCH_GRAFANA_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("provision_command")
def test_the_command_provisions_then_finds_nothing_to_do(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLOWATCH_GRAFANA_TOKEN", TOKEN)
    args = ["provision", "grafana", str(REPO / "deploy" / "slos"), "--grafana-url", grafana.url]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert f"created folder {dd.FOLDER_UID}" in first and f"created {dd.OVERVIEW_UID}" in first
    assert cli.main(args) == 0
    assert f"0 created, 0 updated, {len(dashboards())} unchanged" in capsys.readouterr().out


@pytest.mark.usefixtures("provision_command")
@pytest.mark.parametrize(("env", "says"), [
    pytest.param({}, "set SLOWATCH_GRAFANA_URL or pass --grafana-url", id="no Grafana URL asks for one"),
    pytest.param({"SLOWATCH_GRAFANA_URL": "FAKE", "SLOWATCH_GRAFANA_TOKEN": "glsa_bad"}, "401",
                 id="a bad token fails with exit status 1 and one line"),
])
def test_the_command_fails_with_one_line(
    grafana: FakeGrafana, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    env: dict[str, str], says: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, grafana.url if value == "FAKE" else value)
    assert cli.main(["provision", "grafana", str(REPO / "deploy" / "slos")]) == 1
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "glsa_bad" not in err
