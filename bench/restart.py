"""bench.restart: a daemon's first start versus its restart with the saved hour ledger, and what
keeping the ledger costs each hour.

    python -m bench.restart [--slos 1000,10000] [--down 600]

Data: ``bench.data`` (31 days for 5,000 services at a 5-minute step on Prometheus 2.42, built
once and cached). For each SLO count (30-day SLOs, half availability, half latency):

1. *first start*: a fresh process runs the real ``slowatch.daemon.Daemon`` (its HTTP server, its
   scheduler, ``SLOWATCH_STATE_DIR`` empty) with its clock fixed at ``T``; the parent polls
   ``/readyz`` until it is 200, then sends SIGTERM.
2. *restart*: a new process with the same state dir, its clock at ``T + down``: it loads the
   ledger saved by the first and reads only the hours that settled meanwhile. Then it runs the
   next cycle (30 s later) and the one an hour later, when the next hour settles: the hourly upkeep.

Time to ready is from the process' exec (``/proc/self/stat``) to the first 200 from ``/readyz``,
so interpreter start, imports, spec load, ledger load and the first cycle all count. Queries and
samples read are the daemon's own client's (``stats=all``: Prometheus' totalQueryableSamples).

The upkeep section compares, in this process, one hour of ledger upkeep (append the hour that
settled, drop the oldest) for 10,000 SLOs' rows over 720 hours: the ledger before this change
(``GroupLedger.fill`` rebuilding every running sum, loaded from git at ``BASELINE``) and now.
Writes ``bench/results/restart.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import urllib.request
from array import array
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    WORK_DIR,
    BenchError,
    CodeWatch,
    bounded,
    csv_ints,
    log,
    md_table,
    module_at,
    python_json,
    require,
    wait_for_quiet,
    warm_page_cache,
    write_results,
)
from bench.data import Dataset, start_prepared, write_specs

TIME_LIMIT = 60 * 60
CHILD_TIMEOUT = 30 * 60  # one daemon run: the 10,000-SLO first start (~2 minutes quiet, 10+ on a busy machine)
QUIET_WAIT = 20.0
BASELINE = "2a8b3c175b836943cfd8e658ef25513886c1561a"  # the last commit with the per-chunk GroupLedger.fill
HOUR = 3600
UPKEEP_HOURS = 240  # new ledger: 10 days of hourly upkeep, so every row's compaction is in the average
BASELINE_HOURS = 2  # the old fill costs seconds an hour: two hours show it
HELD_HOURS = 720
CHUNK_SLOS = 2000  # the old ledger was kept per chunk of this many SLOs (core.plan.CHUNK)
ROWS_PER_SLO = 2  # every bench SLO reads two rows: (bad or good@0.25, total)
SERVICES = 5000  # the data bench.cycle builds for 10,000 SLOs: a smaller run reuses its cache
# Settings for a 2-core machine: with the default 8 concurrent queries, the six 2,000-SLO instant
# queries of a 10,000-SLO cycle share two cores and each ran past the default 30 s timeout (measured
# while other work loaded the machine), which makes the whole cycle stale. Same for both starts.
QUERY_CONCURRENCY = 2
QUERY_TIMEOUT = timedelta(seconds=120)


# --- the child: one daemon process ---------------------------------------------------------------


def _since_exec() -> float:
    """Seconds since this process was exec'd (clock ticks, 10 ms)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


class _FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def _peak_rss_mib() -> float:
    """This process' peak RSS (VmHWM: ru_maxrss would carry the parent's peak across the exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError("no VmHWM in /proc/self/status")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--url", required=True)
    parser.add_argument("--at", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prometheus-pid", type=int, required=True)
    parser.add_argument("--upkeep", action="store_true", help="after ready, the next cycle and the next hour's")
    args = parser.parse_args(argv)

    from bench.common import cpu_seconds
    from slowatch import logs
    from slowatch.daemon import Daemon
    from slowatch.settings import Settings

    logs.configure("console", "info")  # to stderr, which the parent passes through: the ledger's load, failures

    prometheus_cpu = cpu_seconds(args.prometheus_pid)

    settings = Settings(prometheus_url=args.url, state_dir=args.state, listen=f"127.0.0.1:{args.port}",
                        evaluation_interval=timedelta(hours=6),  # one scheduled cycle; the others are run below
                        concurrency=QUERY_CONCURRENCY, query_timeout=QUERY_TIMEOUT)
    clock = _FixedClock(datetime.fromtimestamp(args.at, UTC))
    daemon = Daemon(settings, [args.spec], clock=clock)
    daemon.prometheus.with_stats = True  # samples read, as Prometheus counts them
    daemon.start()
    url = f"http://127.0.0.1:{args.port}/readyz"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.05)
    ready = _since_exec()
    stats, source = daemon.prometheus.stats, daemon.source
    first = {"queries": stats.queries, "samples_read": stats.samples_read, "errors": stats.errors,
             "cpu_seconds": _cpu(), "prometheus_cpu_seconds": cpu_seconds(args.prometheus_pid) - prometheus_cpu,
             "ledger_cpu_seconds": source.stats.ledger_cpu_seconds,
             "save_seconds": source.stats.save_seconds,
             "failures": sum(1 for s in daemon.holder.current().statuses if s.state in ("error", "stale"))}
    rss_ready = _peak_rss_mib()
    ledger_file = args.state / "ledger.bin"
    rows = [r for g in source.ledger.groups.values() for r in g.rows.values()]
    out: dict[str, Any] = {
        "slos": len(daemon.cycle.slos), "ready_seconds": ready, "first_cycle": first,
        "peak_rss_mib_at_ready": rss_ready,
        "ledger_rows": len(rows), "ledger_array_bytes": sum(r.cum.buffer_info()[1] * r.cum.itemsize for r in rows),
        "ledger_file_bytes": ledger_file.stat().st_size if ledger_file.exists() else 0,
    }
    if args.upkeep:
        cycles = []
        for later in (30, HOUR):
            q0, s0, c0 = stats.queries, stats.samples_read, _cpu()
            l0, v0, t0 = source.stats.ledger_cpu_seconds, source.stats.save_seconds, time.perf_counter()
            daemon.cycle.run(clock.at + timedelta(seconds=later))
            cycles.append({"after_seconds": later, "wall_seconds": time.perf_counter() - t0,
                           "cpu_seconds": _cpu() - c0, "queries": stats.queries - q0,
                           "samples_read": stats.samples_read - s0,
                           "ledger_cpu_seconds": source.stats.ledger_cpu_seconds - l0,
                           "save_seconds": source.stats.save_seconds - v0})
        out["later_cycles"] = cycles
    daemon.stop()
    print(json.dumps(out))
    return 0


# --- upkeep, in process -----------------------------------------------------------------------


def _baseline_plan() -> Any:
    """core/plan.py as it was at ``BASELINE``, as a module of its own."""
    return module_at(BASELINE, "slowatch/core/plan.py", "baseline_plan")


def _hourly(fill_hour: Callable[[int], None], hours: int) -> dict[str, float]:
    per_hour = []
    for k in range(hours):
        t0 = time.process_time()
        fill_hour(k)
        per_hour.append(time.process_time() - t0)
    return {"hours": hours, "mean_cpu_seconds": sum(per_hour) / hours, "max_cpu_seconds": max(per_hour)}


def upkeep(slos: int) -> dict[str, Any]:
    """CPU of one hour's upkeep for ``slos`` SLOs' rows holding ``HELD_HOURS`` hours."""
    from slowatch.core.plan import GroupLedger

    rows = [("total", (f"svc-{i:05d}",)) for i in range(slos * ROWS_PER_SLO)]
    held = range(HOUR, (HELD_HOURS + 1) * HOUR, HOUR)
    full = array("d", [1.0] * HELD_HOURS)
    one = array("d", [1.0])

    new = GroupLedger()
    new.fill(held, dict.fromkeys(rows, full), rows)
    before = sum(r.cum.buffer_info()[1] for r in new.rows.values())

    def new_hour(k: int) -> None:
        end = held[-1] + (k + 1) * HOUR
        new.fill(range(end, end + 1, HOUR), dict.fromkeys(rows, one), rows, keep_from=end - (HELD_HOURS - 1) * HOUR)

    now = _hourly(new_hour, UPKEEP_HOURS)
    slack = sum(r.cum.buffer_info()[1] for r in new.rows.values()) / before - 1

    old_plan = _baseline_plan()
    per_chunk = CHUNK_SLOS * ROWS_PER_SLO
    chunks = [rows[i:i + per_chunk] for i in range(0, len(rows), per_chunk)]
    old = [old_plan.GroupLedger() for _ in chunks]
    for gl, chunk in zip(old, chunks, strict=True):
        gl.fill(held, dict.fromkeys(chunk, full), chunk, keep_from=held[0])

    def old_hour(k: int) -> None:
        end = held[-1] + (k + 1) * HOUR
        for gl, chunk in zip(old, chunks, strict=True):
            gl.fill(range(end, end + 1, HOUR), dict.fromkeys(chunk, one), chunk,
                    keep_from=end - (HELD_HOURS - 1) * HOUR)

    then = _hourly(old_hour, BASELINE_HOURS)
    return {"slos": slos, "rows": len(rows), "held_hours": HELD_HOURS, "now": now, "baseline": then,
            "baseline_commit": BASELINE, "array_slack_after": slack}


# --- the parent ----------------------------------------------------------------------------------


def _free_port() -> int:
    from tests.support.processes import free_port

    return free_port()


def run_daemon(spec: Path, url: str, pid: int, at: int, state: Path, *, upkeep_cycles: bool) -> dict[str, Any]:
    wait_for_quiet(QUIET_WAIT)
    started = time.monotonic()
    result = python_json(["-m", "bench.restart", "child", str(spec), "--url", url, "--at", str(at), "--state",
                          str(state), "--port", str(_free_port()), "--prometheus-pid", str(pid),
                          *(["--upkeep"] if upkeep_cycles else [])],
                         timeout=CHILD_TIMEOUT)
    result["process_wall_seconds"] = time.monotonic() - started
    return result


def _f(v: float, digits: int = 2) -> str:
    return f"{v:,.{digits}f}"


def report(rows: list[dict[str, Any]], up: dict[str, Any], data: Dataset, down: int) -> str:
    table = []
    for r in rows:
        f, s = r["first"], r["restart"]
        table.append([f"{r['slos']:,}", _f(f["ready_seconds"]), _f(s["ready_seconds"]),
                      f"{s['ready_seconds'] / f['ready_seconds']:.3f}",
                      f"{f['first_cycle']['queries']:,}", f"{s['first_cycle']['queries']:,}",
                      f"{f['first_cycle']['samples_read']:,}", f"{s['first_cycle']['samples_read']:,}",
                      f"{100 * s['first_cycle']['samples_read'] / f['first_cycle']['samples_read']:.2f}%",
                      f"{_f(f['first_cycle']['cpu_seconds'], 1)} + {_f(f['first_cycle']['prometheus_cpu_seconds'], 1)}",
                      f"{_f(s['first_cycle']['cpu_seconds'], 1)} + {_f(s['first_cycle']['prometheus_cpu_seconds'], 1)}",
                      f"{s['first_cycle']['failures']}"])
    cost = []
    for r in rows:
        s = r["restart"]
        c30, c1h = s["later_cycles"]
        cost.append([f"{r['slos']:,}", _f(c30["wall_seconds"]), _f(c1h["wall_seconds"]), f"{c1h['queries']}",
                     f"{c1h['samples_read']:,}", _f(c1h["ledger_cpu_seconds"], 3), _f(c1h["save_seconds"], 3),
                     f"{s['ledger_file_bytes'] / 2**20:,.1f}", f"{s['ledger_file_bytes'] / r['slos']:,.0f}",
                     f"{s['ledger_array_bytes'] / r['slos']:,.0f}", _f(s["peak_rss_mib_at_ready"], 0)])
    now, then = up["now"], up["baseline"]
    return f"""## Restart versus first start (the daemon's path)

Data: {data.services:,} services x 4 series, {data.days} days at a {data.step}s step, Prometheus 2.42.
30-day SLOs, half availability, half latency. Each start is a fresh process running
`slowatch.daemon.Daemon` (HTTP server, scheduler, `SLOWATCH_STATE_DIR`) with its clock fixed,
`SLOWATCH_CONCURRENCY={QUERY_CONCURRENCY}` and `SLOWATCH_QUERY_TIMEOUT={QUERY_TIMEOUT.total_seconds():.0f}s` (2 cores);
"ready" is exec to the first 200 from `/readyz` (interpreter, imports, spec load, ledger load and
the first cycle). The first start begins with an empty state dir at T; the restart reuses it at
T + {down} s, one hour having settled meanwhile (a SIGTERM and a rollout).

{md_table(["SLOs", "first start: ready s", "restart: ready s", "restart / first", "first: queries",
           "restart: queries", "first: samples read", "restart: samples read", "restart / first samples",
           "first: CPU s to ready (slowatch + Prometheus)", "restart: CPU s to ready", "restart: failed SLOs"],
          table)}

The CPU columns do not depend on what else the machine runs: on a quiet machine with 2 cores,
ready comes at about their sum divided by the cores the two processes keep busy together.

## Keeping the ledger

The restarted daemon's next cycle (30 s later) and the cycle one hour later, when the next hour
settles and is appended (one range query per 2,000 SLOs for that hour, then the ledger is saved).
"ledger CPU s" is the arithmetic alone (missing hours, append, drop); "save s" writes the file
(atomic, fsync). Memory per SLO: the running sums (8 bytes an hour per row, two rows per SLO).

{md_table(["SLOs", "next cycle s", "next-hour cycle s", "its queries", "its samples read", "ledger CPU s",
           "save s", "ledger file MiB", "file bytes/SLO", "sums bytes/SLO", "peak RSS MiB"], cost)}

## Hourly upkeep, before and after (in process, {up['slos']:,} SLOs = {up['rows']:,} rows x {up['held_hours']} hours)

{md_table(["ledger", "hours measured", "CPU s per hour (mean)", "CPU s per hour (max)"], [
    [f"before (`{up['baseline_commit'][:7]}`: per-chunk `GroupLedger.fill` rebuilds every sum)",
     then["hours"], _f(then["mean_cpu_seconds"], 3), _f(then["max_cpu_seconds"], 3)],
    ["now (append the hour, drop by offset, compact after a quarter)", now["hours"],
     _f(now["mean_cpu_seconds"], 4), _f(now["max_cpu_seconds"], 4)],
])}

Upkeep is {then['mean_cpu_seconds'] / now['mean_cpu_seconds']:,.0f}x cheaper in this run; the arrays
carry {100 * up['array_slack_after']:.0f}% slack after {now['hours']} hours (dropped hours awaiting compaction).
The machine was shared with other engineers' work (2 cores): wall times are upper bounds.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=csv_ints, default=[1000, 10000])
    parser.add_argument("--down", type=int, default=600, help="seconds between the stop and the restart")
    args = parser.parse_args(argv)
    require("prometheus", "promtool", hint="install Debian's prometheus package (apt-get install prometheus)")
    data = Dataset(services=max(SERVICES, max(args.slos) // 2))
    code = CodeWatch()
    # T: the restart comes `down` seconds later, once the hour ending 2 h before the data's end settled.
    restart_at = data.end - 2 * HOUR + 600
    first_at = restart_at - args.down
    rows: list[dict[str, Any]] = []
    with bounded("restart", TIME_LIMIT):
        log(f"upkeep: {max(args.slos):,} SLOs in process (the baseline from git {BASELINE[:7]})")
        up = upkeep(max(args.slos))
        log(f"  now {up['now']['mean_cpu_seconds']:.4f} CPU s/hour, before {up['baseline']['mean_cpu_seconds']:.3f}")
        server = start_prepared(data)
        try:
            warm_page_cache(server.log_path.parent / "data")
            assert server.process is not None
            pid = server.process.pid
            for n in args.slos:
                spec = write_specs(WORK_DIR / "restart" / "specs" / f"{n}-30d", n, "30d")
                state = WORK_DIR / "restart" / "state" / str(n)
                shutil.rmtree(state, ignore_errors=True)
                log(f"{n:,} SLOs: first start at {first_at}")
                first = run_daemon(spec, server.url, pid, first_at, state, upkeep_cycles=False)
                log(f"  ready in {first['ready_seconds']:.2f}s, {first['first_cycle']['queries']} queries, "
                    f"{first['first_cycle']['samples_read']:,} samples")
                log(f"{n:,} SLOs: restart at {restart_at}")
                again = run_daemon(spec, server.url, pid, restart_at, state, upkeep_cycles=True)
                log(f"  ready in {again['ready_seconds']:.2f}s, {again['first_cycle']['queries']} queries, "
                    f"{again['first_cycle']['samples_read']:,} samples")
                rows.append({"slos": n, "first": first, "restart": again})
                # Written after each size, so a later size that overruns leaves these figures.
                write_results("restart", {"down_seconds": args.down, "first_at": first_at, "restart_at": restart_at,
                                          "runs": rows, "upkeep": up},
                              report(rows, up, data, args.down), "bench.restart: restart versus first start", code)
        finally:
            server.stop()
    failed = [r["slos"] for r in rows
              if r["first"]["first_cycle"]["failures"] or r["restart"]["first_cycle"]["failures"]]
    if failed:
        raise BenchError(f"SLOs failed (stale or error) in the runs of {failed} SLOs: see the daemon's log above")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
