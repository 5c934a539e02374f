"""Start and stop real Prometheus, VictoriaMetrics and Alertmanager servers on loopback ports,
and backfill generated history into Prometheus blocks.

For tests, benchmarks and the demo: every server gets a free 127.0.0.1 port, its own process
group (stopping it stops its children), a log file in its work directory, and is ready (its
readiness endpoint answered) when the start function returns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import requests
import yaml

from tests.support.generator import Series, write_openmetrics, write_vm_jsonl

# promtool (2.42) re-reads its whole input once per 2h block, so the input is cut into files of
# one block each: every byte is parsed once and the files convert in parallel.
BLOCK_SECONDS = 2 * 3600


class ProcessError(RuntimeError):
    """A server could not be found, started or made ready; the message says which and why."""


# The versions the tests run side by side (INTERFACES: Prometheus 2.42 and 3.5, Alertmanager 0.25
# and 0.33, VictoriaMetrics 1.79 and 1.145): Debian stable's packages on PATH, and the current
# releases from Debian unstable that scripts/setup unpacks into .tools/sid (never on PATH).
SID_BIN = Path(__file__).resolve().parents[2] / ".tools" / "sid" / "usr" / "bin"
STABLE, CURRENT = "stable", "current"
VERSIONS: Mapping[str, Mapping[str, str]] = {
    # component: {version: where}; "where" is STABLE (PATH) or CURRENT (SID_BIN)
    "prometheus": {"2.42": STABLE, "3.5": CURRENT},
    "promtool": {"2.42": STABLE, "3.5": CURRENT},
    "alertmanager": {"0.25": STABLE, "0.33": CURRENT},
    "victoria-metrics": {"1.79": STABLE, "1.145": CURRENT},
    "vmalert": {"1.79": STABLE, "1.145": CURRENT},
}
PROMETHEUS_VERSIONS = tuple(VERSIONS["prometheus"])
ALERTMANAGER_VERSIONS = tuple(VERSIONS["alertmanager"])
VICTORIA_METRICS_VERSIONS = tuple(VERSIONS["victoria-metrics"])
# Binaries that print "<name>, version X.Y.Z ..." on --version (VictoriaMetrics' Debian build prints
# an empty version, so it is told apart by where it lives only).
_SELF_REPORTING = ("prometheus", "promtool", "alertmanager")


def find_binary(*names: str, env: str | None = None, version: str | None = None, component: str | None = None) -> str:
    """The first of ``names`` on PATH (or the path in the environment variable ``env``).

    With ``version`` (a key of ``VERSIONS[component]``; ``component`` defaults to ``names[0]``),
    the binary of that version: PATH for Debian stable's, .tools/sid for the current release; a
    binary that reports another version is an error, never a silent substitute.
    """
    if version is not None:
        component = component or names[0]
        where = VERSIONS.get(component, {}).get(version)
        if where is None:
            raise ProcessError(f"no {component} {version} in the test matrix {dict(VERSIONS.get(component, {}))}")
        if where == CURRENT:
            for name in names:
                path = SID_BIN / name
                if os.access(path, os.X_OK):
                    return _checked(str(path), component, version)
            raise ProcessError(
                f"{component} {version} is not in {SID_BIN}: run scripts/setup (it fetches Debian unstable's "
                f"{component} with apt-get download and unpacks it there)"
            )
        return _checked(find_binary(*names, env=env), component, version)
    if env and os.environ.get(env):
        given = os.environ[env]
        if not os.access(given, os.X_OK):
            raise ProcessError(f"{env}={given} is not an executable file")
        return given
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    hint = f" or set {env}" if env else ""
    raise ProcessError(
        f"none of {', '.join(names)} is on PATH: install it (Debian: apt-get install prometheus "
        f"prometheus-alertmanager victoria-metrics){hint}"
    )


_version_seen: dict[str, str] = {}


def _checked(path: str, component: str, version: str) -> str:
    if component not in _SELF_REPORTING:
        return path
    if path not in _version_seen:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
        words = (out.stdout + out.stderr).split()
        _version_seen[path] = words[2] if len(words) > 2 and words[1] == "version" else ""
    found = _version_seen[path]
    if not (found == version or found.startswith(version + ".")):
        raise ProcessError(f"{path} is {component} {found or '(unknown version)'}, not {version}")
    return path


# How long a test waits for something that should happen within a few daemon cycles.
WAIT = 60.0


def wait_until(check: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until it holds; after ``timeout`` seconds fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.25)


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick for port 0; small race, fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One server process. ``restart()`` runs the same command: same port, same data."""

    name: str
    command: list[str]
    port: int
    ready_path: str
    log_path: Path
    ready_timeout: float = 120.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            raise ProcessError(f"{self.name} is already running on {self.url}")
        with self.log_path.open("ab") as log:
            log.write(f"\n--- {' '.join(self.command)}\n".encode())
            log.flush()
            # A new session makes the server a process-group leader: stop() reaches its children too.
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ProcessError(f"{self.name} exited with {self.process.returncode} before it was ready; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            try:
                r = requests.get(self.url + self.ready_path, timeout=2)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text.strip()[:200]}"
            except requests.RequestException as exc:
                last = str(exc)
            time.sleep(0.1)
        self.kill()
        raise ProcessError(f"{self.name} not ready at {self.url}{self.ready_path} after {self.ready_timeout}s "
                           f"({last}); log {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group and wait; SIGKILL it if it has not exited in ``timeout``."""
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the process group: a crash, with no clean shutdown."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def instant_query(url: str, expr: str, at: float) -> list[dict[str, Any]]:
    """The ``result`` of an instant query at ``at`` on a Prometheus-compatible ``url`` (a vector
    of ``{"metric": {...}, "value": [t, "v"]}``); any API error is raised with its message."""
    r = requests.get(url + "/api/v1/query", params={"query": expr, "time": str(at)}, timeout=120)
    body: dict[str, Any] = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    if r.status_code != 200 or body.get("status") != "success":
        raise ProcessError(f"{url}: query {expr!r} at {at} failed: {r.status_code} {body.get('error') or r.text[:300]}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _link_or_copy(src: str, dst: str) -> object:
    # Hard links are free and safe: Prometheus never rewrites a block's files, it writes new ones.
    try:
        os.link(src, dst)
        return dst
    except OSError:
        return shutil.copy2(src, dst)


def _install_blocks(blocks_dir: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    for block in sorted(blocks_dir.iterdir()):
        if block.is_dir() and not (data_dir / block.name).exists():
            shutil.copytree(block, data_dir / block.name, copy_function=_link_or_copy)


def start_prometheus(
    work_dir: Path,
    blocks_dir: Path | None = None,
    *,
    scrape_configs: Sequence[Mapping[str, Any]] = (),
    rule_files: Sequence[Path] = (),
    config: Mapping[str, Any] | None = None,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    binary: str | None = None,
    version: str | None = None,
    ready_timeout: float = 120.0,
) -> Server:
    """Prometheus with its TSDB in ``work_dir/data`` (``blocks_dir``'s blocks linked in first),
    config ``work_dir/prometheus.yml`` (``config`` merged over the generated top level), log
    ``work_dir/prometheus.log``. Remote-write receiver and lifecycle API are on."""
    work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = work_dir / "data"
    if blocks_dir is not None:
        _install_blocks(blocks_dir, data_dir)
    document: dict[str, Any] = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "scrape_configs": [dict(c) for c in scrape_configs],
    }
    if rule_files:
        document["rule_files"] = [str(p) for p in rule_files]
    document.update(config or {})
    config_path = work_dir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    port = port or free_port()
    server = Server(
        name="prometheus",
        command=[
            binary or find_binary("prometheus", env="SLOWATCH_PROMETHEUS_BIN", version=version),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
            "--web.enable-remote-write-receiver",
            "--web.enable-lifecycle",
            *extra_args,
        ],
        port=port, ready_path="/-/ready", log_path=work_dir / "prometheus.log", ready_timeout=ready_timeout,
    )
    server.start()
    return server


@dataclass
class VictoriaMetrics(Server):
    def import_series(self, series: Sequence[Series], work_dir: Path) -> int:
        """Import ``series`` (JSON lines through ``/api/v1/import``), then flush so that queries
        see every sample at once; returns the sample count."""
        path = work_dir / "import.jsonl"
        count = write_vm_jsonl(series, path)
        with path.open("rb") as body:
            r = requests.post(self.url + "/api/v1/import", data=body, timeout=600)
        path.unlink()
        if r.status_code // 100 != 2:
            raise ProcessError(f"victoria-metrics import failed: {r.status_code} {r.text[:500]}")
        self.flush()
        return count

    def flush(self) -> None:
        r = requests.get(self.url + "/internal/force_flush", timeout=60)
        r.raise_for_status()


def start_victoria_metrics(
    work_dir: Path,
    *,
    scrape_configs: Sequence[Mapping[str, Any]] = (),
    extra_args: Sequence[str] = (),
    port: int | None = None,
    binary: str | None = None,
    version: str | None = None,
    ready_timeout: float = 60.0,
) -> VictoriaMetrics:
    """Single-node VictoriaMetrics with data in ``work_dir/data`` and log ``work_dir/victoria-metrics.log``.

    Flags so that backfilled history is queryable at once and exactly: retention 100y (the
    default, one month, drops older samples on import), no response cache (it would keep answers
    computed before an import), no latency offset (recent points are not hidden), and room for
    a 30d:1m subquery (43,200 points; the default limit of 30,000 rejects it with a 422).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        binary or find_binary("victoria-metrics", "victoria-metrics-prod", env="SLOWATCH_VICTORIA_METRICS_BIN",
                              version=version),
        f"-storageDataPath={work_dir / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",
        "-search.disableCache",
        "-search.latencyOffset=0s",
        "-search.maxPointsPerTimeseries=1000000",
    ]
    if scrape_configs:
        config_path = work_dir / "scrape.yml"
        config_path.write_text(yaml.safe_dump({"scrape_configs": [dict(c) for c in scrape_configs]}))
        args.append(f"-promscrape.config={config_path}")
    server = VictoriaMetrics(
        name="victoria-metrics", command=[*args, *extra_args], port=port, ready_path="/health",
        log_path=work_dir / "victoria-metrics.log", ready_timeout=ready_timeout,
    )
    server.start()
    return server


@dataclass
class Alertmanager(Server):
    cluster_port: int | None = None

    @property
    def cluster_address(self) -> str:
        """``host:port`` other members pass as a peer (clustering must be on)."""
        if self.cluster_port is None:
            raise ProcessError("this alertmanager was started without clustering")
        return f"127.0.0.1:{self.cluster_port}"


def start_alertmanager(
    work_dir: Path,
    config_text: str,
    *,
    cluster: bool = False,
    cluster_peers: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    port: int | None = None,
    binary: str | None = None,
    version: str | None = None,
    ready_timeout: float = 60.0,
) -> Alertmanager:
    """Alertmanager with ``config_text`` as its config, state and log in ``work_dir``.

    Clustering is off unless ``cluster`` or ``cluster_peers`` (``Alertmanager.cluster_address``
    of running members) is given; then it gossips on its own free loopback port.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    config_path = work_dir / "alertmanager.yml"
    config_path.write_text(config_text)
    port = port or free_port()
    cluster_port = free_port() if cluster or cluster_peers else None
    args = [
        binary or find_binary("prometheus-alertmanager", "alertmanager", env="SLOWATCH_ALERTMANAGER_BIN",
                              version=version, component="alertmanager"),
        f"--config.file={config_path}",
        f"--storage.path={work_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if cluster_port is None:
        args.append("--cluster.listen-address=")  # empty disables clustering
    else:
        address = f"127.0.0.1:{cluster_port}"
        args += [f"--cluster.listen-address={address}", f"--cluster.advertise-address={address}"]
        args += [f"--cluster.peer={p}" for p in cluster_peers]
    server = Alertmanager(
        name="alertmanager", command=[*args, *extra_args], port=port, ready_path="/-/ready",
        log_path=work_dir / "alertmanager.log", ready_timeout=ready_timeout, cluster_port=cluster_port,
    )
    server.start()
    return server


def create_blocks(
    series: Sequence[Series],
    blocks_dir: Path,
    *,
    work_dir: Path | None = None,
    promtool: str | None = None,
    jobs: int | None = None,
    until: int | None = None,
) -> Path:
    """Backfill ``series`` into TSDB blocks in ``blocks_dir`` with ``promtool tsdb
    create-blocks-from openmetrics``, one 2h block per input file, converted in parallel.
    ``until``: only samples before it (the rest is served live, see ``tests.support.live``)."""
    promtool = promtool or find_binary("promtool", env="SLOWATCH_PROMTOOL_BIN")
    work_dir = work_dir or blocks_dir.parent / f"{blocks_dir.name}.openmetrics"
    work_dir.mkdir(parents=True, exist_ok=True)
    blocks_dir.mkdir(parents=True, exist_ok=True)
    first = min(s.start for s in series)
    last = max(s.timestamp(s.last) for s in series)
    if until is not None:
        last = min(last, until - 1)

    def convert(path: Path) -> None:
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path),
                               str(blocks_dir)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ProcessError(f"promtool failed on {path}: {done.stderr.strip()[-2000:]}")
        path.unlink()

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        pending: list[Future[None]] = []
        for lo in _block_starts(first, last):
            path = work_dir / f"{lo}.om"
            hi = lo + BLOCK_SECONDS if until is None else min(lo + BLOCK_SECONDS, until)
            if write_openmetrics(series, path, lo, hi):
                pending.append(pool.submit(convert, path))
            else:
                path.unlink()
        for f in pending:
            f.result()
    shutil.rmtree(work_dir, ignore_errors=True)
    return blocks_dir


def _block_starts(first: int, last: int) -> Iterable[int]:
    # promtool aligns blocks to multiples of the block length since the epoch: cut there too.
    return range(first - first % BLOCK_SECONDS, last + 1, BLOCK_SECONDS)
