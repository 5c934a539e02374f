"""The serving process (adapters/serving.py) of a real daemon evaluating the example SLOs on a
real Prometheus over the generated history: it answers /status from the view the daemon shipped,
forwards /metrics and /healthz to the daemon (basic auth checked first), is restarted when it
dies, exits with the daemon, and a start-up error fails the daemon as in-process serving did."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import bcrypt
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from slowatch.adapters.http import App, serve
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.serving import ServingProcess
from slowatch.daemon import Daemon
from slowatch.errors import WebConfigError
from slowatch.settings import Settings
from slowatch.view import ViewHolder
from tests.conftest import HISTORY_END
from tests.support.processes import Server, free_port, wait_until
from tests.unit.fakes import SteppedClock

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
USER, PASSWORD = "prometheus", "scrape-Pa55"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def web_config(path: Path) -> Path:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # the lowest cost: format, not cost
    path.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    return path


def get(url: str, auth: bool = False, **headers: str) -> requests.Response:
    return requests.get(url, auth=(USER, PASSWORD) if auth else None, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def daemon(prometheus: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("serving")
    settings = Settings(prometheus_url=prometheus.url, listen=f"127.0.0.1:{free_port()}",
                        evaluation_interval=timedelta(hours=1),  # one cycle: the view stays put
                        web_config_file=web_config(work / "web.yml"))
    d = Daemon(settings, [EXAMPLE], clock=SteppedClock(datetime.fromtimestamp(HISTORY_END - 3600, UTC)))
    d.start()
    try:
        serving = d.serving
        assert serving is not None and d.server is serving
        wait_until(lambda: get(f"{serving.url}/readyz").status_code == 200 and serving.last_ship is not None,
                   what="the first view served by the serving process")
        yield d
    finally:
        d.stop()


def in_daemon(d: Daemon, path: str) -> bytes:
    """``path`` as the daemon's own App answers it for the daemon's current view."""
    code, _, body = d.app.handle({"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""})
    assert code.startswith("200"), (path, code)
    return body


def test_status_is_answered_by_another_process_from_the_daemons_view(daemon: Daemon) -> None:
    assert daemon.serving is not None and daemon.serving.pid not in (None, os.getpid())
    url = daemon.serving.url
    view = daemon.holder.get()
    assert view.ready and len(view.statuses) == len(daemon.cycle.slos)
    assert any(s.sli is not None for s in view.statuses), "the cycle measured the history"
    paths = ["/status", "/openapi.json",
             *(f"/status/{quote(s.slo.service, safe='')}/{quote(s.slo.name, safe='')}" for s in view.statuses)]
    for path in paths:
        got = get(f"{url}{path}", auth=True)
        assert got.status_code == 200 and got.content == in_daemon(daemon, path), path
    # A document's ETag is its bytes' hash: the serving process's cache gives the daemon's.
    first = get(f"{url}/status", auth=True)
    assert get(f"{url}/status", auth=True, **{"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_metrics_need_the_password_and_come_from_the_daemon(daemon: Daemon) -> None:
    assert daemon.serving is not None
    url = daemon.serving.url
    assert get(f"{url}/metrics").status_code == 401
    assert get(f"{url}/status").status_code == 401
    got = get(f"{url}/metrics", auth=True, Accept=OPENMETRICS, **{"Accept-Encoding": "gzip"})
    assert got.status_code == 200
    assert got.headers["Content-Type"].startswith("application/openmetrics-text")
    assert got.headers["Content-Encoding"] == "gzip" and got.headers["Vary"] == "Accept-Encoding"
    text = get(f"{url}/metrics", auth=True).text
    samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]
    consumed = {(s.labels["service"], s.labels["slo"]): s.value for s in samples
                if s.name == "slowatch_slo_error_budget_consumed_ratio"}
    measured = {(s.slo.service, s.slo.name): s.consumed for s in daemon.holder.get().statuses if s.sli is not None}
    assert measured and consumed == measured  # the daemon's registry, from its own view
    # Counted by the daemon (its registry), not by the serving process.
    assert [s.value for s in samples if s.name == "slowatch_http_process_restarts_total"] == [0.0]


def test_healthz_is_forwarded_and_open(daemon: Daemon) -> None:
    assert daemon.serving is not None
    got = get(f"{daemon.serving.url}/healthz")
    assert (got.status_code, got.text) == (200, "ok\n")


def test_head_of_a_forwarded_path_has_the_length_of_its_get(daemon: Daemon) -> None:
    assert daemon.serving is not None
    head = requests.head(f"{daemon.serving.url}/healthz", timeout=10)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "3", b"")


def test_tls_is_served_by_the_serving_process(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI makes the test certificate"
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    config = web_config(tmp_path / "web.yml")
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()),
                                      "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"}}))
    holder = ViewHolder()
    registry, _ = new_registry(holder)
    with ServingProcess(App(holder, registry), "127.0.0.1", 0, web_config=config, registry=registry.own).start() as sp:
        assert sp.url.startswith("https://")
        metrics = requests.get(f"{sp.url}/metrics", auth=(USER, PASSWORD), verify=str(cert), timeout=10)
        assert metrics.status_code == 200 and "slowatch_http_process_restarts_total 0.0" in metrics.text
        assert requests.get(f"{sp.url}/status", verify=str(cert), timeout=10).status_code == 401
        with pytest.raises(requests.exceptions.SSLError):  # no plain HTTP, no unverified peer
            requests.get(f"{sp.url}/healthz", timeout=10)


def restarts(url: str) -> float:
    text = get(f"{url}/metrics", auth=True).text
    return next(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                if s.name == "slowatch_http_process_restarts_total")


def test_a_killed_serving_process_is_restarted_and_serves_the_view_again(daemon: Daemon) -> None:
    serving = daemon.serving
    assert serving is not None and serving.pid is not None
    before, killed, url = restarts(serving.url), serving.pid, serving.url
    os.kill(killed, signal.SIGKILL)

    def serving_again() -> bool:
        try:
            return serving.pid not in (None, killed) and get(f"{url}/readyz").status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(serving_again, what="a new serving process on the same address, with the view")
    assert serving.url == url
    assert get(f"{url}/status", auth=True).content == in_daemon(daemon, "/status")
    assert restarts(url) == before + 1


# --- start-up errors: as in-process serving raised them --------------------------------------------

def test_a_port_in_use_fails_the_start_with_the_in_process_error(prometheus: Server, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        holder = ViewHolder()
        with pytest.raises(OSError) as in_process:
            serve(App(holder, new_registry(holder)[0]), "127.0.0.1", port)
        d = Daemon(Settings(prometheus_url=prometheus.url, listen=f"127.0.0.1:{port}"), [EXAMPLE])
        with pytest.raises(OSError) as separate:
            d.start()
        d.stop()
    assert separate.value.errno == in_process.value.errno == errno.EADDRINUSE
    assert str(separate.value) == str(in_process.value)


def test_a_wrong_web_config_fails_the_start_with_the_in_process_error(prometheus: Server, tmp_path: Path) -> None:
    config = tmp_path / "web.yml"
    config.write_text(yaml.safe_dump({"basic_auth_users": {USER: "not a bcrypt hash"}}))
    holder = ViewHolder()
    with pytest.raises(WebConfigError) as in_process:
        serve(App(holder, new_registry(holder)[0]), "127.0.0.1", 0, web_config=config)
    d = Daemon(Settings(prometheus_url=prometheus.url, listen=f"127.0.0.1:{free_port()}", web_config_file=config),
               [EXAMPLE])
    with pytest.raises(WebConfigError) as separate:
        d.start()
    d.stop()
    assert str(separate.value) == str(in_process.value) and str(config) in str(separate.value)


# --- the processes' lives: `slowatch run` as a subprocess ----------------------------------------

def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def serving_child(pid: int) -> int:
    """The serving process among ``pid``'s children (multiprocessing also runs a resource tracker)."""
    for child in children(pid):
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError(f"no serving process under {pid}: {children(pid)}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def run(prometheus: Server, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    listen = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "slowatch", "run", str(EXAMPLE), "--prometheus-url", prometheus.url,
                             "--listen", listen, "--evaluation-interval", "1h"],
                            stdout=subprocess.DEVNULL, stderr=log, env={"PATH": os.environ.get("PATH", "")})
    url = f"http://{listen}"

    def up() -> bool:
        try:
            return get(f"{url}/healthz").status_code == 200
        except requests.ConnectionError:
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            return False

    try:
        wait_until(up, what="slowatch run serving")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_sigterm_stops_the_daemon_and_its_serving_process(run: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, _ = run
    child = serving_child(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    wait_until(lambda: not alive(child), what="the serving process gone with the daemon", timeout=10)


def test_a_stopped_daemon_fails_healthz_while_status_still_answers(run: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = run
    wait_until(lambda: get(f"{url}/readyz").status_code == 200, what="the first cycle served")
    os.kill(proc.pid, signal.SIGSTOP)  # the daemon hangs: its GIL, its threads, everything
    try:
        started = time.monotonic()
        assert get(f"{url}/readyz").status_code == 200  # the serving process answers alone
        assert get(f"{url}/status").json()["slos"]
        assert time.monotonic() - started < 5
        with pytest.raises(requests.ReadTimeout):  # liveness is the daemon's, forwarded to it
            requests.get(f"{url}/healthz", timeout=2)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert get(f"{url}/healthz").text == "ok\n"


def test_a_killed_daemon_takes_its_serving_process_with_it(run: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = run
    child = serving_child(proc.pid)
    proc.kill()
    proc.wait(10)
    wait_until(lambda: not alive(child), what="the orphaned serving process exiting at the pipe's end", timeout=10)
    with pytest.raises(requests.ConnectionError):
        get(f"{url}/healthz")

