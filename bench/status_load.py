"""bench.status_load: /status under load while the daemon keeps evaluating 1,000 SLOs.

    python -m bench.status_load [--slos 1000] [--wrk-seconds 10] [--rate 1000] [--duration 30]

Live data: 31 days of ``bench.data`` history for 500 services backfilled up to now, and from now
on served by ``tests.support.live.LiveExporter`` (Prometheus scrapes it every 15 s, keeping
the samples' own timestamps), so the daemon evaluates "now" on data that reaches the present.
``slowatch run`` (a subprocess, default settings: a cycle every 30 s, 8 concurrent queries) loads
1,000 SLOs (500 availability + 500 latency, 30d windows); once its first cycle is done, each
client of ``scenarios`` (the whole document plain, gzip, an If-None-Match poller, every
``/status/{service}/{slo}`` in turn, every ``?service=`` in turn) is measured while cycles go on:
``wrk -t2 -c16 --latency`` (a closed loop: capacity and latency at saturation), then ``open_loop``
at ``--rate`` requests/s (a fixed schedule, latency from each request's due time; 0 turns it off),
its latencies split into those due between and during cycles. The daemon serves HTTP from its
serving process (``slowatch/adapters/serving.py``): "daemon CPU" and memory add up both processes.
Before the daemon starts, ``ship_cost`` times what shipping a view to the serving process costs at
``--ship-sizes`` SLOs (synthetic statuses, a full 6-hour status-page history). Writes
``bench/results/status_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

from bench.common import (
    WORK_DIR,
    BenchError,
    Child,
    CodeWatch,
    bounded,
    code_fingerprint,
    cpu_seconds,
    log,
    machine_busy,
    md_table,
    memory_kib,
    require,
    wait_for_quiet,
    write_results,
)
from bench.data import (
    BUCKET,
    COUNT,
    DURATION,
    REQUESTS,
    THRESHOLD,
    Dataset,
    build_blocks,
    prometheus_args,
    write_specs,
)
from tests.support.generator import CounterReset, History, Scenario, Series, Silence
from tests.support.live import LiveExporter
from tests.support.processes import free_port, start_prometheus

TIME_LIMIT = 20 * 60
SCRAPE_INTERVAL = "15s"
# The open loop's sockets: at 1,000 req/s a 64 ms stall of the daemon still finds one free.
OPEN_LOOP_CONNECTIONS = 64
PERCENTILES = (50, 90, 99, 99.9)


def live_history(data: Dataset) -> History:
    """The dataset as ``slowatch.synth`` Series (what LiveExporter serves)."""
    n = data.samples_per_series
    series: list[Series] = []
    for svc in data.all_services:
        values = data.values(svc, 0, n)

        def increments(v: list[int]) -> array[int]:
            return array("q", [v[0], *(b - a for a, b in pairwise(v))])

        base = (("service", svc.name),)
        for code in ("200", "500"):
            series.append(Series("bench_requests", "counter", REQUESTS, (*base, ("code", code)), data.start, data.step,
                                 increments(values[code]), n - 1))
        series.append(Series(DURATION, "histogram", BUCKET, (*base, ("le", THRESHOLD)), data.start, data.step,
                             increments(values["bucket"]), n - 1))
        series.append(Series(DURATION, "histogram", COUNT, base, data.start, data.step, increments(values["count"]),
                             n - 1))
    scenario = Scenario(start=data.start, end=data.end, step=data.step, seed=data.seed, episodes=(),
                        reset=CounterReset("", data.start), silence=Silence("", data.end, data.end))
    return History(scenario=scenario, series=tuple(series))


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    result: dict[str, Any] = {"latency_percentiles_ms": {}}
    for pct, value in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M):
        result["latency_percentiles_ms"][f"p{pct}"] = _seconds(value) * 1000
    m = re.search(r"^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        result["latency_mean_ms"] = _seconds(m.group(1)) * 1000
        result["latency_max_ms"] = _seconds(m.group(3)) * 1000
    m = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if m:
        result["requests"] = int(m.group(1))
        result["duration_seconds"] = _seconds(m.group(2))
        result["read"] = m.group(3)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["requests_per_second"] = float(m.group(1)) if m else None
    m = re.search(r"Transfer/sec:\s+(\S+)", out)
    result["transfer_per_second"] = m.group(1) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) \
        if m else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(m.group(1)) if m else 0
    if "p99" not in result["latency_percentiles_ms"] or result["requests_per_second"] is None:
        raise BenchError(f"cannot read wrk's output:\n{out}")
    return result


@dataclass(frozen=True)
class Client:
    """One kind of client: the paths it asks for (in turn), its headers, and whether it sends back
    the last ETag it got (a poller)."""

    name: str
    paths: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    poller: bool = False


def open_loop(host: str, port: int, client: Client, rate: float, seconds: float,
              connections: int = OPEN_LOOP_CONNECTIONS) -> dict[str, Any]:
    """Request ``i`` is due at ``start + i / rate`` whatever the answers before it did (an open
    loop: wrk2's model, as wrk2 is not installed); its latency is counted from that due time, so a
    stall is charged to every request it delays (no coordinated omission). Raw HTTP/1.1 on
    ``connections`` kept-alive sockets from asyncio, to spend little CPU on the load itself."""
    return asyncio.run(_open_loop(host, port, client, rate, seconds, connections))


async def _open_loop(host: str, port: int, client: Client, rate: float, seconds: float,
                     connections: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    start = loop.time() + 0.5
    wall_start = time.time() + (start - loop.time())
    due_wall = array("d")
    latency = array("d")
    codes: dict[int, int] = {}
    received = [0]
    next_index = [0]
    late_start = [0]
    reconnects = [0]
    extra = "".join(f"{k}: {v}\r\n" for k, v in client.headers)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        etag = ""
        try:
            while True:
                i = next_index[0]
                next_index[0] += 1
                if i >= total:
                    return
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.001:
                    late_start[0] += 1  # every connection was busy when it fell due
                path = client.paths[i % len(client.paths)]
                conditional = f"If-None-Match: {etag}\r\n" if client.poller and etag else ""
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}{conditional}\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                code = int(lines[0].split()[1])
                fields = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                size = int(fields.get("content-length", "0"))
                if size:
                    await reader.readexactly(size)
                done = loop.time()
                if fields.get("connection", "").lower() == "close":  # waitress closes after every 304
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    reconnects[0] += 1
                etag = fields.get("etag", etag)
                due_wall.append(wall_start + (due - start))
                latency.append(done - due)
                codes[code] = codes.get(code, 0) + 1
                received[0] += len(head) + size
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"rate": rate, "seconds": seconds, "connections": connections, "requests": len(latency),
            "codes": {str(k): v for k, v in sorted(codes.items())}, "bytes_received": received[0],
            "sent_late": late_start[0], "reconnects": reconnects[0], "due_wall": list(due_wall),
            "latency_s": list(latency)}


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the daemon, its serving process, multiprocessing's tracker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # it exited meanwhile
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):  # it exited meanwhile
            total += cpu_seconds(p)
    return total


def tree_memory_kib(pid: int) -> dict[str, dict[str, int]]:
    """VmRSS and VmHWM of the daemon and of each process under it, by pid and command."""
    out = {}
    for p in tree(pid):
        try:
            command = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            role = "serving" if "spawn_main" in command else "tracker" if "resource_tracker" in command else "daemon"
            out[f"{p} {role}"] = memory_kib(p)
        except OSError:
            continue
    return out


def ship_cost(n: int) -> dict[str, Any]:
    """What a view of ``n`` SLOs costs to ship: the first (every SLO object) and a steady one (new
    statuses of the same SLOs, one history point more each), against pickling it whole. Statuses from
    bench.metrics_load; each SLO's history full (components/history.py: 360 points, 6 hours), with
    one instant shared by all SLOs per point, as StatusHistory records it."""
    import pickle
    from dataclasses import replace
    from datetime import timedelta

    from bench.metrics_load import AT, synthetic_status
    from slowatch.adapters.serving import ViewDecoder, ViewEncoder
    from slowatch.components.history import HISTORY_POINTS, HISTORY_SPAN
    from slowatch.spec import load_specs
    from slowatch.view import DaemonView

    slos = load_specs([write_specs(WORK_DIR / "status_load" / f"ship{n}", n, "30d")])
    statuses = tuple(synthetic_status(i, s) for i, s in enumerate(slos))
    spacing = HISTORY_SPAN / HISTORY_POINTS
    instants = [AT - spacing * (HISTORY_POINTS - k) for k in range(HISTORY_POINTS + 1)]

    def view(shift: int, of: tuple[Any, ...]) -> DaemonView:
        return DaemonView(at=AT + timedelta(seconds=30 * shift), statuses=of, ready=True, history={
            s.slo.id: tuple((instants[k], (i + k) % 100 / 100) for k in range(shift, shift + HISTORY_POINTS))
            for i, s in enumerate(of)})

    first, steady = view(0, statuses), view(1, tuple(replace(s, consumed=s.consumed * 0.99) for s in statuses))
    encoder, decoder = ViewEncoder(), ViewDecoder(freeze=True)  # as the serving process decodes
    out: dict[str, Any] = {"slos": n, "history_points": HISTORY_POINTS}
    for name, v in (("first", first), ("steady", steady)):
        t0 = time.perf_counter()
        messages = list(encoder.messages(v))
        encode = time.perf_counter() - t0
        slowest, total = 0.0, 0.0
        for m in messages:
            t1 = time.perf_counter()
            decoder.take(m)
            took = time.perf_counter() - t1
            slowest, total = max(slowest, took), total + took
        out[name] = {"messages": len(messages), "bytes": sum(map(len, messages)), "encode_s": encode,
                     "decode_s": total, "decode_slowest_message_ms": slowest * 1000}
    t0 = time.perf_counter()
    whole = pickle.dumps(steady, protocol=pickle.HIGHEST_PROTOCOL)
    t1 = time.perf_counter()
    pickle.loads(whole)
    out["whole"] = {"bytes": len(whole), "encode_s": t1 - t0, "decode_s": time.perf_counter() - t1}
    log(f"  ship {n:,} SLOs: first {out['first']['bytes']:,} B in {out['first']['encode_s']:.3f} s, steady "
        f"{out['steady']['bytes']:,} B in {out['steady']['encode_s']:.3f} s (decode {out['steady']['decode_s']:.3f} s, "
        f"slowest message {out['steady']['decode_slowest_message_ms']:.1f} ms); whole pickle {len(whole):,} B "
        f"{out['whole']['encode_s']:.3f} s / {out['whole']['decode_s']:.3f} s")
    return out


def percentiles(latency_s: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latency_s)
    if not ordered:
        return {}
    return {f"p{p:g}": ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000 for p in PERCENTILES} | \
        {"max": ordered[-1] * 1000}


def split_by_cycles(run: dict[str, Any], cycles: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Latencies of the requests that fell due while a cycle was evaluating, and of the others."""
    spans = [(_epoch(c["timestamp"]) - c["seconds"], _epoch(c["timestamp"]))
             for c in cycles if c["timestamp"] and c["seconds"] is not None]
    inside: list[float] = []
    outside: list[float] = []
    for due, lat in zip(run["due_wall"], run["latency_s"], strict=True):
        (inside if any(lo <= due <= hi for lo, hi in spans) else outside).append(lat)
    return inside, outside


def wrk_script(work: Path, client: Client) -> Path:
    """A wrk Lua script asking for the scenario's paths in turn (a poller: with the last ETag)."""
    paths = ", ".join(json.dumps(p) for p in client.paths)
    headers = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in client.headers)
    poller = """
response = function(status, headers, body)
  local tag = headers["ETag"] or headers["Etag"]
  if tag then wrk.headers["If-None-Match"] = tag end
end
""" if client.poller else ""
    path = work / f"{client.name}.lua"
    path.write_text(f"""paths = {{{paths}}}
{headers}i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
{poller}""")
    return path


def cycles_from_log(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "evaluation finished":
            out.append({"timestamp": event.get("timestamp"), "seconds": event.get("seconds"),
                        "failures": event.get("failures"), "states": event.get("states")})
    return out


def wait_http(url: str, timeout: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and child.process.poll() is not None:
            raise BenchError(f"{what}: the process exited with {child.process.returncode}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise BenchError(f"{what}: {url} not 200 after {timeout:.0f}s")


def scenarios(doc: dict[str, Any]) -> list[Client]:
    """The clients measured, from the daemon's own /status document."""
    ids = [(s["service"], s["slo"]) for s in doc["slos"]]
    services = sorted({svc for svc, _ in ids})
    gzip = (("Accept-Encoding", "gzip"),)
    return [
        Client("full", ("/status",)),
        Client("full-gzip", ("/status",), gzip),
        Client("full-poller", ("/status",), gzip, poller=True),
        Client("one", tuple(f"/status/{quote(svc, safe='')}/{quote(name, safe='')}" for svc, name in ids)),
        Client("filtered", tuple(f"/status?{urlencode({'service': svc})}" for svc in services)),
    ]


# What each scenario is, in the report.
DESCRIPTIONS = {
    "full": "`/status`, the whole document, no gzip (the measurement before this change)",
    "full-gzip": "`/status`, the whole document, `Accept-Encoding: gzip`",
    "full-poller": "`/status` with gzip and `If-None-Match` of the last ETag received (a poller: 304 until a "
                   "new cycle)",
    "one": "`/status/{service}/{slo}`, every SLO in turn",
    "filtered": "`/status?service=...`, every service in turn (2 SLOs each)",
}
OPEN_LOOP_SCENARIOS = ("one", "filtered", "full-gzip", "full-poller")


def measure(work: Path, wrk: str, url: str, pid: int, prom_pid: int, client: Client, wrk_seconds: int,
            rate: float, seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    wait_for_quiet(10)
    script = wrk_script(work, client)
    cpu0, prom0, busy0, t0 = tree_cpu_seconds(pid), cpu_seconds(prom_pid), machine_busy(), time.time()
    done = subprocess.run([wrk, "-t2", "-c16", f"-d{wrk_seconds}s", "--latency", "-s", str(script), url],
                          capture_output=True, text=True, timeout=wrk_seconds + 60, check=False)
    t1, busy1 = time.time(), machine_busy()
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    closed = parse_wrk(done.stdout) | {"output": done.stdout, "seconds": [t0, t1],
                                       "daemon_cpu_cores": (tree_cpu_seconds(pid) - cpu0) / (t1 - t0),
                                       "prometheus_cpu_cores": (cpu_seconds(prom_pid) - prom0) / (t1 - t0),
                                       "machine_busy_percent": 100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1])}
    pc = closed["latency_percentiles_ms"]
    log(f"  {client.name} wrk: {closed['requests_per_second']:,.0f} req/s, p50 {pc['p50']:.1f} ms, "
        f"p99 {pc['p99']:.1f} ms")
    opened = None
    if rate > 0 and client.name in OPEN_LOOP_SCENARIOS:
        wait_for_quiet(10)
        cpu0, busy0, t0 = tree_cpu_seconds(pid), machine_busy(), time.time()
        opened = open_loop(host, int(port), client, rate, seconds)
        t1, busy1 = time.time(), machine_busy()
        opened |= {"daemon_cpu_cores": (tree_cpu_seconds(pid) - cpu0) / (t1 - t0), "wall": [t0, t1],
                   "machine_busy_percent": 100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]),
                   "latency_ms": percentiles(opened["latency_s"])}
        po = opened["latency_ms"]
        log(f"  {client.name} open loop {rate:g}/s: p50 {po['p50']:.1f} ms, p99 {po['p99']:.1f} ms, "
            f"p99.9 {po['p99.9']:.1f} ms, codes {opened['codes']}")
    return {"scenario": client.name, "paths": len(client.paths), "wrk": closed, "open_loop": opened}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--wrk-seconds", type=int, default=10, help="seconds of wrk per scenario")
    parser.add_argument("--rate", type=float, default=1000, help="the open loop's requests/s (0: none)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of the open loop per scenario")
    parser.add_argument("--ship-sizes", default="1000,10000",
                        help="SLO counts whose view shipping ship_cost times (empty: none)")
    args = parser.parse_args(argv)
    binaries = require("prometheus", "promtool", "wrk",
                       hint="install them: apt-get install prometheus wrk (wrk is not in scripts/setup yet)")

    work = WORK_DIR / "status_load"
    now = int(time.time())
    step = 300
    cut = now - now % step
    data = Dataset(services=args.slos // 2, end=cut + 2 * 3600, days=31, step=step)
    code = CodeWatch()
    with bounded("status_load", TIME_LIMIT):
        ships = [ship_cost(int(n)) for n in args.ship_sizes.split(",") if n.strip()]
        log(f"live data: {data.services} services, history backfilled up to {cut}, then served live")
        started = time.monotonic()
        samples = build_blocks(data, work / "prometheus" / "data", until=cut + 1)
        history = live_history(data)
        log(f"backfilled {samples / 1e6:.1f}M samples in {time.monotonic() - started:.0f}s")
        exporter = LiveExporter(history)
        spec = write_specs(work / "specs", args.slos, "30d")
        server = None
        daemon: Child | None = None
        try:
            server = start_prometheus(work / "prometheus", None, extra_args=prometheus_args(), scrape_configs=[{
                "job_name": "bench-live", "scrape_interval": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [exporter.target]}],
                # The live samples continue the backfilled series: same labels, no job/instance.
                "metric_relabel_configs": [{"action": "labeldrop", "regex": "job|instance"}],
            }])
            assert server.process is not None
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log_path = work / "daemon.log"
            daemon_code = [code_fingerprint()]  # what `slowatch run` imports as it starts
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "-m", "slowatch", "run", str(spec), "--prometheus-url", server.url,
                     "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
                    stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    env={k: v for k, v in os.environ.items() if not k.startswith("SLOWATCH_")},
                )
            daemon = Child(process)
            wait_http(f"{url}/readyz", 600, "slowatch run: first cycle", daemon)
            daemon_code.append(code_fingerprint())
            body = requests.get(f"{url}/status", timeout=30)
            status_bytes = len(body.content)
            doc = body.json()
            gzip_bytes = len(requests.get(f"{url}/status", headers={"Accept-Encoding": "gzip"}, timeout=30,
                                          stream=True).raw.read())
            log(f"daemon ready ({len(doc['slos'])} SLOs on /status, {status_bytes:,} bytes, {gzip_bytes:,} gzipped)")
            pid, prom_pid = process.pid, server.process.pid
            memory_ready = tree_memory_kib(pid)
            idle0, t_idle = tree_cpu_seconds(pid), time.monotonic()
            time.sleep(5)
            idle_cpu = (tree_cpu_seconds(pid) - idle0) / (time.monotonic() - t_idle)
            runs = [measure(work, binaries["wrk"], url, pid, prom_pid, client, args.wrk_seconds, args.rate,
                            args.duration) for client in scenarios(doc)]
            memory = tree_memory_kib(pid)
            status_after = requests.get(f"{url}/status", timeout=30).json()
        finally:
            if daemon is not None:
                daemon.stop(60)
            if server is not None:
                server.stop()
            exporter.close()
    all_cycles = cycles_from_log(work / "daemon.log")
    for run in runs:
        opened = run["open_loop"]
        if opened:
            lo, hi = opened["wall"]
            inside, outside = split_by_cycles(opened, all_cycles)
            opened["cycles"] = [c for c in all_cycles if c["timestamp"] and lo <= _epoch(c["timestamp"]) <= hi + 1]
            opened["requests_during_cycles"] = len(inside)
            opened["latency_ms_during_cycles"] = percentiles(inside)
            opened["latency_ms_between_cycles"] = percentiles(outside)
            del opened["due_wall"], opened["latency_s"]  # ~30,000 numbers each: the percentiles stay
    states: dict[str, int] = {}
    for s in status_after.get("slos", []):
        states[s.get("state", "?")] = states.get(s.get("state", "?"), 0) + 1
    result = {
        "slos": args.slos, "status_bytes": status_bytes, "status_gzip_bytes": gzip_bytes,
        "slos_on_status": len(doc["slos"]), "wrk_command": "wrk -t2 -c16 -dNs --latency -s SCENARIO.lua URL",
        "runs": runs, "daemon_cpu_cores_idle": idle_cpu, "daemon_memory_kib_ready": memory_ready,
        "daemon_memory_kib_end": memory, "cycles_all": all_cycles, "states_after": states, "ship_cost": ships,
    }
    write_results("status_load", result, report(result), "bench.status_load: /status under load", code,
                  measured=daemon_code)
    return 0


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def report(r: dict[str, Any]) -> str:
    def pcts(p: dict[str, float], keys: Sequence[str] = ("p50", "p90", "p99")) -> str:
        return " / ".join(f"{p[k]:,.1f}" if k in p else "-" for k in keys)

    closed = [[run["scenario"], f"{run['wrk']['requests_per_second']:,.0f}", pcts(run["wrk"]["latency_percentiles_ms"]),
               f"{run['wrk']['latency_max_ms']:,.1f}", run["wrk"]["read"],
               f"{run['wrk']['daemon_cpu_cores']:.2f}",
               f"{1000 * run['wrk']['daemon_cpu_cores'] / run['wrk']['requests_per_second']:.3f}",
               f"{run['wrk']['machine_busy_percent']:.0f}%"]
              for run in r["runs"]]
    opened = []
    for run in r["runs"]:
        o = run["open_loop"]
        if not o:
            continue
        inside, outside = o["latency_ms_during_cycles"], o["latency_ms_between_cycles"]
        opened.append([run["scenario"], f"{o['rate']:g} x {o['seconds']:g} s", f"{o['requests']:,}",
                       pcts(o["latency_ms"], ("p50", "p90", "p99", "p99.9")), f"{o['latency_ms']['max']:,.1f}",
                       f"{len(o['cycles'])} ({', '.join(format(c['seconds'], '.1f') for c in o['cycles'])})",
                       f"{o['requests'] - o['requests_during_cycles']:,}: {pcts(outside, ('p50', 'p99'))}",
                       f"{o['requests_during_cycles']:,}: {pcts(inside, ('p50', 'p99'))}",
                       ", ".join(f"{k}: {v:,}" for k, v in o["codes"].items()),
                       f"{o['daemon_cpu_cores']:.2f}", f"{o['machine_busy_percent']:.0f}%"])
    def memory(by_process: dict[str, dict[str, int]]) -> str:
        return ", ".join(f"{name.split()[1]} {m.get('VmRSS', 0) / 1024:,.0f} / {m.get('VmHWM', 0) / 1024:,.0f}"
                         for name, m in by_process.items())

    ships = [[f"{c['slos']:,}", f"{c['first']['bytes'] / 1e6:.2f} MB, {c['first']['encode_s'] * 1000:,.0f} ms",
              f"{c['steady']['bytes'] / 1e6:.2f} MB, {c['steady']['encode_s'] * 1000:,.0f} ms",
              f"{c['steady']['decode_s'] * 1000:,.0f} ms in {c['steady']['messages']} messages, slowest "
              f"{c['steady']['decode_slowest_message_ms']:.1f} ms",
              f"{c['whole']['bytes'] / 1e6:.2f} MB, {c['whole']['encode_s'] * 1000:,.0f} / "
              f"{c['whole']['decode_s'] * 1000:,.0f} ms"] for c in r.get("ship_cost", [])]
    cycle_seconds = [c["seconds"] for c in r["cycles_all"] if c["seconds"] is not None]
    described = "\n".join(f"- **{k}**: {v}" for k, v in DESCRIPTIONS.items())
    return f"""## /status under load

`slowatch run` evaluating {r['slos']:,} SLOs (30d windows, live data, a cycle every 30 s: median
cycle {statistics.median(cycle_seconds) if cycle_seconds else float('nan'):.1f} s over {len(cycle_seconds)}
cycles), all on the same 2 cores as Prometheus, the load generators and, on this shared machine,
other engineers' tests (the "machine busy" columns: all of that together). /status is
{r['status_bytes']:,} bytes ({r['status_gzip_bytes']:,} gzipped) for {r['slos_on_status']:,} SLOs.

{described}

### Fixed rate (open loop)

wrk2 is not installed, so `bench.status_load.open_loop` (asyncio, raw HTTP/1.1 on 64 kept-alive
connections) sends request i at start + i/rate whatever happened before, and counts its latency
from that due time: a stall is charged to every request it delays (no coordinated omission).
"during cycles": the requests that fell due while an evaluation cycle ran (from the daemon's log).

{md_table(["scenario", "rate", "requests", "latency p50 / p90 / p99 / p99.9 ms", "max ms",
           "cycles (s each)", "between cycles: n: p50 / p99 ms", "during cycles: n: p50 / p99 ms", "answers",
           "daemon CPU", "machine busy"], opened)}

### Capacity (wrk, closed loop, 2 threads, 16 connections)

Each connection sends its next request when the answer arrives: requests/s is the capacity and
the latencies are those at saturation.

{md_table(["scenario", "req/s", "latency p50 / p90 / p99 ms", "max ms", "read", "daemon CPU",
           "daemon CPU ms per request", "machine busy"], closed)}

"daemon CPU ms per request" is what one answer costs the daemon whatever else runs: at 1,000
req/s it needs that many CPU seconds each second (0.25 ms: a quarter of a core).

RSS (VmRSS / peak VmHWM, MiB) ready: {memory(r['daemon_memory_kib_ready'])}; after the load:
{memory(r['daemon_memory_kib_end'])}. Daemon CPU (both processes) with no requests:
{r['daemon_cpu_cores_idle']:.2f} cores. States after the run:
{', '.join(f'{k} {v}' for k, v in sorted(r['states_after'].items()))}.

### Shipping a view to the serving process

After each cycle the daemon's "slowatch-serving" thread sends the new view over a pipe
(`slowatch/adapters/serving.py`): the SLO objects once, then the statuses in messages of 64 and only
the history points the cycle added. Synthetic statuses (bench.metrics_load), each SLO with a full
6-hour history of 360 points (a bench run itself is too short to reach that), timed in this process
before the daemon starts. The serving process decodes between requests, a message at a time.

{md_table(["SLOs", "first view: size, encode (daemon)", "steady view: size, encode (daemon)",
           "steady view: decode (serving process)", "the steady view pickled whole: size, dumps / loads"], ships)}
"""


if __name__ == "__main__":
    raise SystemExit(main())
