"""bench.cycle: what ONE evaluation cycle costs, for 100 to 10,000 SLOs over 1d and 30d windows.

    python -m bench.cycle [--slos 100,1000,10000] [--windows 1d,30d] [--cycles 2]

A real Prometheus holds 31 days of synthetic data for 5,000 services (``bench.data``: 179M samples
at a 5-minute step, built and cached once in ``bench/.work``). For every (SLO count, window) a
fresh process (``bench.evaluate``) loads a spec of that many SLOs (half availability ratio, half
latency) and runs the daemon's cycle, ``slowatch.engine.evaluate``, at the data's last instant,
then the next cycle one evaluation interval (30 s) later. The first cycle is what a daemon pays
after a start; the next one what it pays every interval (they differ only if the engine keeps
state between cycles). Writes ``bench/results/cycle.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from bench.common import (
    WORK_DIR,
    BenchError,
    CodeWatch,
    bounded,
    cpu_seconds,
    csv_ints,
    log,
    machine_busy,
    md_table,
    metric,
    python_json,
    require,
    scrape,
    wait_for_quiet,
    warm_page_cache,
    write_results,
)
from bench.data import Dataset, start_prepared, write_specs

TIME_LIMIT = 40 * 60  # the whole benchmark, data build included; measured cycles take ~5-10 minutes
CHILD_TIMEOUT = 15 * 60  # one configuration: 10,000 SLOs over 30 days is the slow one
QUIET_WAIT = 20.0  # seconds to wait, at most, for other processes to leave the cores alone


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def measure(spec: Path, url: str, at: int, prometheus_pid: int, cycles: int, *, per_slo: bool) -> dict[str, Any]:
    wait_for_quiet(QUIET_WAIT)
    busy0, total0 = machine_busy()
    prom0 = cpu_seconds(prometheus_pid)
    started = time.monotonic()
    result = python_json(["-m", "bench.evaluate", str(spec), "--url", url, "--at", str(at), "--cycles", str(cycles),
                          "--prometheus-pid", str(prometheus_pid), *(["--per-slo"] if per_slo else [])],
                         timeout=CHILD_TIMEOUT)
    elapsed = time.monotonic() - started
    busy1, total1 = machine_busy()
    prom = cpu_seconds(prometheus_pid) - prom0
    cores = os.cpu_count() or 1
    # Other processes on the machine during the run: all busy CPU minus Prometheus and the evaluator.
    result["run_seconds"] = elapsed
    result["machine_busy_percent"] = 100 * (busy1 - busy0) / max(1e-9, total1 - total0)
    result["other_processes_cpu_seconds"] = max(0.0, (busy1 - busy0) - prom - result["process_cpu_seconds"])
    result["machine_cores"] = cores
    return result


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _table(rows: list[dict[str, Any]]) -> str:
    table = []
    for r in rows:
        first, *rest = r["cycles"]
        nxt = rest[0] if rest else None
        table.append([
            f"{r['slos']:,}", r["window"], _fmt(first["wall_seconds"]), f"{first['queries']:,}",
            f"{first['samples_read']:,}", f"{first['samples_read'] / r['slos']:,.0f}", _fmt(first["cpu_seconds"]),
            _fmt(first["prometheus_cpu_seconds"]),
            _fmt(nxt["wall_seconds"]) if nxt else "-", f"{nxt['queries']:,}" if nxt else "-",
            f"{nxt['samples_read']:,}" if nxt else "-", _fmt(nxt["cpu_seconds"]) if nxt else "-",
            _fmt(nxt["prometheus_cpu_seconds"]) if nxt else "-",
            _fmt(r["peak_rss_mib"], 0), _fmt(r["spec_load_seconds"]), f"{first['failures']}",
            f"{r['other_processes_cpu_seconds']:.1f}",
        ])
    return md_table(["SLOs", "window", "first cycle s", "queries", "samples read", "samples/SLO", "evaluator CPU s",
                     "Prometheus CPU s", "next cycle s", "next queries", "next samples read", "next evaluator CPU s",
                     "next Prometheus CPU s", "peak RSS MiB", "spec load s", "failed SLOs", "others' CPU s"], table)


def _samples(rows: list[dict[str, Any]], source: str, n: int, window: str, cycle: int) -> int | None:
    for r in rows:
        if r["source"] == source and r["slos"] == n and r["window"] == window and len(r["cycles"]) > cycle:
            value: int = r["cycles"][cycle]["samples_read"]
            return value
    return None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a is not None and b else "-"


def report(rows: list[dict[str, Any]], data: Dataset, notes: dict[str, Any]) -> str:
    planned = [r for r in rows if r["source"] == "planned"]
    per_slo = [r for r in rows if r["source"] == "per-slo"]
    ratios = []
    for n in sorted({r["slos"] for r in rows}):
        p1d, p30d = _samples(rows, "planned", n, "1d", 0), _samples(rows, "planned", n, "30d", 0)
        n1d, n30d = _samples(rows, "planned", n, "1d", 1), _samples(rows, "planned", n, "30d", 1)
        o1d, o30d = _samples(rows, "per-slo", n, "1d", 0), _samples(rows, "per-slo", n, "30d", 0)
        ratios.append([f"{n:,}", _ratio(p30d, p1d), _ratio(n30d, n1d), _ratio(o30d, o1d), _ratio(o30d, n30d)])
    baseline = ""
    if per_slo:
        baseline = f"""
## Baseline: the same batched queries without the hour ledger

The same configurations through `PlannedSource(ledger=False)` (`bench.evaluate --per-slo`): the
same batched queries and the same exact counting (`core.measure`), but every window read live over
its whole range, as with no ledger. Stateless, so one cycle each. Failed SLOs, if any, are query
timeouts (30 s): reading 30 days live for 2,000 SLOs per query is what the ledger avoids.

{_table(per_slo)}
"""
    source = planned[0]["source"] if planned else "-"
    concurrency = planned[0]["concurrency"] if planned else "-"
    return f"""## One evaluation cycle (the daemon's path)

Data: {data.services:,} services x 4 series, {data.days} days at a {data.step}s step
({data.series * data.samples_per_series / 1e6:.0f}M samples), Prometheus 2.42 with 54h blocks. Each row is a
fresh evaluator process (`bench.evaluate`) running `slowatch.engine.evaluate` as `slowatch.cycle.Cycle.run`
does (source `{source}`, {concurrency} concurrent queries) at the data's last instant; "next" is the
cycle 30 s later. The first cycle of a fresh process includes filling the hour ledger (range
queries over the whole window).

{_table(planned)}
{baseline}
## 30d / 1d: samples read

{md_table(["SLOs", "daemon path, first cycle", "daemon path, next cycle", "without ledger",
           "without ledger / daemon path next cycle (30d)"], ratios)}

A "1d" SLO still has the 3d burn-rate window, so without the ledger 30d/1d is ~8x, not 30x.
Samples read scale with 1/step: with a 1-minute scrape interval multiply them (and most of the
Prometheus CPU) by 5, with 15 s by 20. "others' CPU s": CPU seconds that processes other than
Prometheus and the evaluator used on the machine ({notes['cores']} cores) during that row's run: a
row with a large value was slowed down by other work ({notes['other_cpu_note']}).
Prometheus compactions during the benchmark: {notes['compactions']:.0f}.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=csv_ints, default=[100, 1000, 10000])
    parser.add_argument("--windows", type=_csv, default=["1d", "30d"])
    parser.add_argument("--cycles", type=int, default=2, help="cycles per configuration (the first, then the next)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline without the hour ledger")
    args = parser.parse_args(argv)
    require("prometheus", "promtool", hint="install Debian's prometheus package (apt-get install prometheus)")

    data = Dataset(services=max(args.slos) // 2)
    code = CodeWatch()
    rows: list[dict[str, Any]] = []
    sources = [("planned", False)] if args.no_baseline else [("planned", False), ("per-slo", True)]
    with bounded("cycle", TIME_LIMIT):
        server = start_prepared(data)
        try:
            assert server.process is not None
            pid = server.process.pid
            warmed = warm_page_cache(server.log_path.parent / "data")
            log(f"Prometheus {server.url} (pid {pid}); read {warmed / 2**20:,.0f} MiB of blocks into the page cache")
            compactions0 = metric(scrape(server.url), "prometheus_tsdb_compactions_total")
            for name, per_slo in sources:
                for n in args.slos:
                    for window in args.windows:
                        spec = write_specs(WORK_DIR / "cycle" / "specs" / f"{n}-{window}", n, window)
                        log(f"{name}: {n} SLOs, {window} windows, in a fresh process")
                        cycles = 1 if per_slo else args.cycles  # per-SLO queries keep no state
                        r = measure(spec, server.url, data.end, pid, cycles, per_slo=per_slo)
                        r["window"] = window
                        rows.append(r)
                        for k, c in enumerate(r["cycles"]):
                            log(f"  cycle {k + 1}: {c['wall_seconds']:.2f}s, {c['queries']} queries, "
                                f"{c['samples_read']:,} samples, CPU {c['cpu_seconds']:.2f}s, "
                                f"Prometheus CPU {c['prometheus_cpu_seconds']:.2f}s, failures {c['failures']}")
                            if c["failures"]:
                                log(f"  first failure: {c['first_failure']}")
                        log(f"  peak RSS {r['peak_rss_mib']:.0f} MiB")
            compactions = metric(scrape(server.url), "prometheus_tsdb_compactions_total") - compactions0
        finally:
            server.stop()
    if any(c["failures"] == r["slos"] for r in rows for c in r["cycles"]):
        raise BenchError("every SLO of a configuration failed: see the first_failure in the log above")
    others = sum(r["other_processes_cpu_seconds"] for r in rows)
    notes = {"cores": os.cpu_count(), "compactions": compactions,
             "other_cpu_note": f"{others:,.0f} CPU seconds of other processes over all rows"}
    write_results("cycle", {
        "data": {"services": data.services, "series": data.series, "days": data.days, "step_seconds": data.step,
                 "samples": data.series * data.samples_per_series, "end": data.end, "seed": data.seed},
        "prometheus_compactions_during_benchmark": compactions,
        "configurations": rows,
    }, report(rows, data, notes), "bench.cycle: one evaluation cycle", code,
        measured=[r["code"]["fingerprint"] for r in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
