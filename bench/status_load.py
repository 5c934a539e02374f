"""bench.status_load: /status under load while the daemon keeps evaluating 1,000 SLOs.

    python -m bench.status_load [--slos 1000] [--duration 30] [--rate 10]

Live data: 31 days of ``bench.data`` history for 500 services backfilled up to now, and from now
on served by ``tests.support.live.LiveExporter`` (Prometheus scrapes it every 15 s, keeping
the samples' own timestamps), so the daemon evaluates "now" on data that reaches the present.
``slowatch run`` (a subprocess, default settings: a cycle every 30 s, 8 concurrent queries) loads
1,000 SLOs (500 availability + 500 latency, 30d windows); once its first cycle is done,
``wrk -t2 -c16 -d30s --latency`` hammers ``/status`` while cycles go on. Then (``--rate``, 10 req/s by default)
a fixed-rate Python load generator measures latency at a steady request rate (wrk, closed loop,
only measures it at saturation; 0 turns it off). Writes ``bench/results/status_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from array import array
from itertools import pairwise
from pathlib import Path
from typing import Any

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


def fixed_rate(url: str, rate: float, seconds: float, workers: int = 16) -> dict[str, Any]:
    """Requests sent on a fixed schedule (``rate`` per second, from ``workers`` threads, each request
    timed from its scheduled send time, so a stall is charged to every request it delays)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)
    next_index = [0]

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= total:
                return
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                ok = session.get(url, timeout=10).status_code == 200
            except requests.RequestException:
                ok = False
            done = time.monotonic()
            with lock:
                latencies.append(done - due)
                errors += not ok

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {"rate": rate, "seconds": seconds, "requests": len(latencies), "errors": errors,
            "latency_percentiles_ms": {f"p{p}": pct(p) for p in (50, 90, 99)} if latencies else {}}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=30, help="seconds of wrk (and of the fixed-rate run)")
    parser.add_argument("--rate", type=float, default=10,
                        help="then a fixed-rate load at this many req/s (0: none)")
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
            slos_served = len(body.json().get("slos", []))
            log(f"daemon ready ({slos_served} SLOs on /status, {status_bytes:,} bytes); wrk for {args.duration}s")
            pid, prom_pid = process.pid, server.process.pid
            idle0, prom_idle0, t_idle = cpu_seconds(pid), cpu_seconds(prom_pid), time.monotonic()
            time.sleep(5)
            idle_cpu = (cpu_seconds(pid) - idle0) / (time.monotonic() - t_idle)
            prom_idle = (cpu_seconds(prom_pid) - prom_idle0) / (time.monotonic() - t_idle)

            wait_for_quiet(30)
            cpu0, prom0, (busy0, total0), t0 = cpu_seconds(pid), cpu_seconds(prom_pid), machine_busy(), time.time()
            wrk = subprocess.run([binaries["wrk"], "-t2", "-c16", f"-d{args.duration}s", "--latency", f"{url}/status"],
                                 capture_output=True, text=True, timeout=args.duration + 60, check=False)
            t1 = time.time()
            cpu1, prom1, (busy1, total1) = cpu_seconds(pid), cpu_seconds(prom_pid), machine_busy()
            memory = memory_kib(pid)
            if wrk.returncode != 0:
                raise BenchError(f"wrk failed ({wrk.returncode}): {wrk.stderr.strip()}")
            wrk_result = parse_wrk(wrk.stdout)
            wrk_result["output"] = wrk.stdout
            pcts = wrk_result["latency_percentiles_ms"]
            log(f"  {wrk_result['requests_per_second']:.1f} req/s, p50 {pcts['p50']:.1f} ms, p99 {pcts['p99']:.1f} ms")
            rate_result = None
            if args.rate > 0:
                log(f"fixed rate: {args.rate} req/s for {args.duration}s")
                rate_result = fixed_rate(f"{url}/status", args.rate, args.duration)
                rate_result["daemon_memory_kib"] = memory_kib(pid)
            status_after = requests.get(f"{url}/status", timeout=30).json()
        finally:
            if daemon is not None:
                daemon.stop(60)
            if server is not None:
                server.stop()
            exporter.close()
    all_cycles = cycles_from_log(work / "daemon.log")
    during = [c for c in all_cycles if c["timestamp"] and t0 <= _epoch(c["timestamp"]) <= t1 + 1]
    states: dict[str, int] = {}
    for s in status_after.get("slos", []):
        states[s.get("state", "?")] = states.get(s.get("state", "?"), 0) + 1
    result = {
        "slos": args.slos, "status_bytes": status_bytes, "slos_on_status": slos_served,
        "wrk_command": f"wrk -t2 -c16 -d{args.duration}s --latency URL/status", "wrk": wrk_result,
        "daemon_cpu_cores_during_wrk": (cpu1 - cpu0) / (t1 - t0),
        "daemon_cpu_cores_idle_between_requests": idle_cpu,
        "prometheus_cpu_cores_during_wrk": (prom1 - prom0) / (t1 - t0),
        "prometheus_cpu_cores_before_wrk": prom_idle,
        "machine_busy_percent_during_wrk": 100 * (busy1 - busy0) / max(1e-9, total1 - total0),
        "daemon_memory_kib_after_wrk": memory,
        "cycles_during_wrk": during, "cycles_all": all_cycles,
        "states_after": states, "fixed_rate": rate_result,
    }
    write_results("status_load", result, report(result), "bench.status_load: /status under load", code,
                  measured=daemon_code)
    return 0


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def report(r: dict[str, Any]) -> str:
    w = r["wrk"]
    p = w["latency_percentiles_ms"]
    mem = r["daemon_memory_kib_after_wrk"]
    cycle_seconds = [c["seconds"] for c in r["cycles_all"] if c["seconds"] is not None]
    during = ", ".join(f"{c['seconds']:.1f}" for c in r["cycles_during_wrk"] if c["seconds"] is not None)
    rows = [
        ["requests/s (wrk, 2 threads, 16 connections)", f"{w['requests_per_second']:,.1f}"],
        ["latency p50 / p75 / p90 / p99 (ms)",
         " / ".join(f"{p.get(k, float('nan')):,.1f}" for k in ("p50", "p75", "p90", "p99"))],
        ["latency max (ms)", f"{w.get('latency_max_ms', float('nan')):,.1f}"],
        ["requests, errors (socket / non-2xx)",
         f"{w.get('requests', 0):,}, {sum(w['socket_errors'].values())} / {w['non_2xx']}"],
        ["/status body", f"{r['status_bytes']:,} bytes ({r['slos_on_status']} SLOs)"],
        ["daemon CPU during wrk", f"{r['daemon_cpu_cores_during_wrk']:.2f} cores"],
        ["daemon CPU with no requests (5 s before wrk)", f"{r['daemon_cpu_cores_idle_between_requests']:.2f} cores"],
        ["daemon RSS after / peak (VmRSS / VmHWM)",
         f"{mem.get('VmRSS', 0) / 1024:,.0f} / {mem.get('VmHWM', 0) / 1024:,.0f} MiB"],
        ["Prometheus CPU during wrk", f"{r['prometheus_cpu_cores_during_wrk']:.2f} cores"],
        ["machine busy during wrk", f"{r['machine_busy_percent_during_wrk']:.0f}% of all cores"],
        ["cycles finished during wrk (seconds each)",
         f"{len(r['cycles_during_wrk'])} ({during})"],
        ["cycle seconds, all cycles (median)",
         f"{statistics.median(cycle_seconds):.1f} over {len(cycle_seconds)}" if cycle_seconds else "-"],
    ]
    fixed = r.get("fixed_rate")
    if fixed:
        fp = fixed["latency_percentiles_ms"]
        rows.append([f"fixed rate {fixed['rate']:g} req/s: p50 / p90 / p99 (ms), errors",
                     f"{fp.get('p50', 0):,.1f} / {fp.get('p90', 0):,.1f} / {fp.get('p99', 0):,.1f}, {fixed['errors']}"])
    return f"""## /status under load

`slowatch run` evaluating {r['slos']:,} SLOs (30d windows, live data, a cycle every 30 s) while
`{r['wrk_command']}` runs. wrk is a closed loop: 16 connections each send the next request when
the previous answer arrives, so requests/s is the daemon's capacity and the latencies are those at
saturation, on the same 2 cores as the daemon, Prometheus and wrk itself.

{md_table(["", "value"], rows)}

States after the run: {', '.join(f'{k} {v}' for k, v in sorted(r['states_after'].items()))}.
"""


if __name__ == "__main__":
    raise SystemExit(main())
