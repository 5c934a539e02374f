"""SLOWATCH_WEB_CONFIG_FILE (exporter-toolkit's format): TLS from a certificate made here with the
openssl CLI, basic auth with bcrypt hashes, checked with a real HTTPS client against the real
server (waitress behind the TLS terminator). Probes stay open; everything else needs a password."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from slowatch.adapters import webconfig
from slowatch.adapters.http import App, Server, serve
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.webconfig import load
from slowatch.errors import WebConfigError
from slowatch.view import ViewHolder

USER, PASSWORD = "prometheus", "scrape-Pa55"
PROTECTED = ("/status", "/metrics", "/", "/openapi.json", "/status/auth/login")
# Readiness answers 503 before the first evaluation: open, but not ready.
PROBES = {"/healthz": 200, "/readyz": 503}


def bcrypt_hash(password: str, rounds: int = 4) -> str:
    # The lowest cost bcrypt allows: the tests check the format, not the cost.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl CLI makes the test certificate"
    work = tmp_path_factory.mktemp("tls")
    cert, key = work / "server.crt", work / "server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def write_config(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def start(config: Path) -> Server:
    holder = ViewHolder()
    registry, _ = new_registry(holder)
    return serve(App(holder, registry), "127.0.0.1", 0, threads=2, web_config=config)


@pytest.fixture
def tls_server(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[tuple[Server, Path, Path]]:
    cert, key = certificate
    # Relative paths: exporter-toolkit reads them relative to the config file.
    shutil.copy(cert, tmp_path / "server.crt")
    shutil.copy(key, tmp_path / "server.key")
    config = write_config(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "TLS12"},
        "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
    })
    with start(config) as server:
        yield server, config, cert


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        pytest.param(None, 401, id="without credentials: 401"),
        pytest.param((USER, "wrong"), 401, id="with a wrong password: 401"),
        pytest.param(("nobody", PASSWORD), 401, id="with an unknown user: 401"),
        pytest.param((USER, PASSWORD), 200, id="with the right password: 200"),
    ],
)
def test_every_route_but_the_probes_needs_the_password_over_tls(
    tls_server: tuple[Server, Path, Path], path: str, auth: tuple[str, str] | None, expected: int,
) -> None:
    server, _, cert = tls_server
    assert server.url.startswith("https://")
    response = requests.get(server.url + path, auth=auth, verify=str(cert), timeout=10)
    assert response.status_code == (404 if expected == 200 and path == "/status/auth/login" else expected)
    if expected == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="slowatch", charset="UTF-8"'


@pytest.mark.parametrize(("path", "expected"), sorted(PROBES.items()))
def test_probes_stay_open(tls_server: tuple[Server, Path, Path], path: str, expected: int) -> None:
    server, _, cert = tls_server
    assert requests.get(server.url + path, verify=str(cert), timeout=10).status_code == expected


def test_plain_http_on_the_tls_port_gets_no_answer(tls_server: tuple[Server, Path, Path]) -> None:
    server, _, _ = tls_server
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url.replace("https://", "http://") + "/healthz", timeout=10)


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_server: tuple[Server, Path, Path]) -> None:
    server, _, _ = tls_server
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url + "/healthz", timeout=10)


def test_tls_below_the_minimum_version_is_refused(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    config = write_config(tmp_path / "web.yml", {"tls_server_config": {
        "cert_file": str(cert), "key_file": str(key), "min_version": "TLS13"}})
    with start(config) as server:
        context = ssl.create_default_context(cafile=str(cert))
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection((server.host, server.port), timeout=10) as raw, pytest.raises(ssl.SSLError):
            context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_good(tmp_path: Path) -> None:
    config = write_config(tmp_path / "web.yml", {"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}})
    with start(config) as server:
        assert server.url.startswith("http://")
        assert requests.get(server.url + "/status", auth=(USER, PASSWORD), timeout=10).status_code == 200
        write_config(config, {"basic_auth_users": {USER: bcrypt_hash("new-Pa55"), "other": bcrypt_hash("x-y-z")}})
        assert requests.get(server.url + "/status", auth=(USER, PASSWORD), timeout=10).status_code == 401
        assert requests.get(server.url + "/status", auth=(USER, "new-Pa55"), timeout=10).status_code == 200
        config.write_text("basic_auth_users: {prometheus: not-a-hash}\n")
        assert requests.get(server.url + "/status", auth=(USER, "new-Pa55"), timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param({"basic_auth_users": {"alice": "secret"}}, "basic_auth_users.alice: not a bcrypt hash",
                     id="a password in clear is refused"),
        pytest.param({"tls_server_config": {"cert_file": "a.crt"}}, "tls_server_config.key_file: required",
                     id="a certificate without its key is refused"),
        pytest.param({"tls_server_config": {"cert_file": "a.crt", "key_file": "a.key", "min_version": "TLS14"}},
                     "tls_server_config.min_version: 'TLS14' is not one of TLS10, TLS11, TLS12, TLS13",
                     id="an unknown TLS version is refused"),
        pytest.param({"tls_server_config": {"client_ca_file": "ca.crt"}},
                     "tls_server_config.client_ca_file: not supported by slowatch",
                     id="a key slowatch does not implement is named, not ignored"),
        pytest.param({"rate_limit": {"interval": "1s"}}, "rate_limit: not supported by slowatch",
                     id="an unsupported section is named"),
        pytest.param({"tls_server_config": {"cert_file": "missing.crt", "key_file": "missing.key"}},
                     "tls_server_config: cannot load", id="a certificate that does not load is said at start"),
        pytest.param(["a list"], "expected a mapping", id="a document that is not a mapping is refused"),
    ],
)
def test_a_wrong_file_names_the_file_and_field(tmp_path: Path, doc: object, message: str) -> None:
    path = write_config(tmp_path / "web.yml", doc)
    with pytest.raises(WebConfigError) as err:
        load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value) or "cannot load" in message


def test_exporter_toolkits_own_example_loads(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    # docs/web-config.yml of prometheus/exporter-toolkit (its rate_limit section left out: not supported).
    cert, key = certificate
    shutil.copy(cert, tmp_path / "server.crt")
    shutil.copy(key, tmp_path / "server.key")
    (tmp_path / "web-config.yml").write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "basic_auth_users:\n"
        "  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n"
        "  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m\n"
    )
    config = load(tmp_path / "web-config.yml")
    assert sorted(config.users) == ["alice", "bob"]
    assert config.cert_file == tmp_path / "server.crt"


def test_slowatch_run_serves_its_web_config(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """The daemon's wiring: `slowatch run` with SLOWATCH_WEB_CONFIG_FILE answers HTTPS, probes open,
    /status behind the password (Prometheus need not be up for that)."""
    cert, key = certificate
    config = write_config(tmp_path / "web.yml", {
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
    })
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "SLOWATCH_WEB_CONFIG_FILE": str(config), "SLOWATCH_LISTEN": f"127.0.0.1:{port}",
           "SLOWATCH_PROMETHEUS_URL": "http://127.0.0.1:9", "SLOWATCH_QUERY_RETRIES": "0"}
    spec = Path(__file__).parents[2] / "deploy" / "slos"
    proc = subprocess.Popen([sys.executable, "-m", "slowatch", "run", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert requests.get(f"{url}/healthz", verify=str(cert), timeout=5).status_code == 200
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "slowatch run did not serve"
                time.sleep(0.2)
        assert requests.get(f"{url}/status", verify=str(cert), timeout=5).status_code == 401
        assert requests.get(f"{url}/status", auth=(USER, PASSWORD), verify=str(cert), timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=60)


def test_slowatch_run_with_a_broken_web_config_exits_1_naming_the_field(tmp_path: Path) -> None:
    config = write_config(tmp_path / "web.yml", {"basic_auth_users": {"alice": "secret"}})
    env = {"PATH": "/usr/bin:/bin", "SLOWATCH_WEB_CONFIG_FILE": str(config), "SLOWATCH_LISTEN": "127.0.0.1:0"}
    spec = Path(__file__).parents[2] / "deploy" / "slos"
    done = subprocess.run([sys.executable, "-m", "slowatch", "run", str(spec)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"{config}: basic_auth_users.alice: not a bcrypt hash" in done.stderr


def test_connections_beyond_the_cap_are_closed_and_served_again_once_one_ends(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webconfig, "MAX_TLS_CONNECTIONS", 1)
    cert, key = certificate
    config = write_config(tmp_path / "web.yml", {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    context = ssl.create_default_context(cafile=str(cert))
    with start(config) as server:
        idle = context.wrap_socket(socket.create_connection((server.host, server.port), timeout=10),
                                   server_hostname="127.0.0.1")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            requests.get(server.url + "/healthz", verify=str(cert), timeout=10)
        idle.close()
        deadline = time.monotonic() + 10
        while True:  # the idle connection's threads notice its end
            try:
                assert requests.get(server.url + "/healthz", verify=str(cert), timeout=10).status_code == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
