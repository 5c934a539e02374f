"""bench.backtest: what `slowatch backtest` costs for 30 days of 100 SLOs at a 1-minute step.

    python -m bench.backtest [--slos 100] [--days 30] [--step 1m]

A real Prometheus holds 61 days of synthetic data for 50 services at a 1-minute scrape (``bench.data``:
half availability, half latency SLOs over 30-day windows, so the replay reads 60 days of history;
built and cached once in ``bench/.work``). The backtest runs in this process, split in its two
parts: reading the history (raw samples, ``adapters.history``) and the replay
(``core.backtest``: the daemon's budget maths and alert state machine). Beside it, for scale, the
cost of the naive replay is measured on a sample: one daemon evaluation (``engine.evaluate``, the
batched source with its hour ledger) per step, timed over ``--naive-steps`` steps and extrapolated.
Writes ``bench/results/backtest.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from bench.common import (
    WORK_DIR,
    CodeWatch,
    bounded,
    cpu_seconds,
    log,
    md_table,
    require,
    wait_for_quiet,
    write_results,
)
from bench.data import DAY, Dataset, start_prepared, write_specs
from slowatch import engine
from slowatch.adapters.history import read_all
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.backtest import lookback, replay
from slowatch.core.windows import parse_duration
from slowatch.spec import load_specs

TIME_LIMIT = 30 * 60
# The bar: 30 days of 100 SLOs at a 1-minute step in under a minute on two cores.
GOAL_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--step", default="1m")
    parser.add_argument("--naive-steps", type=int, default=20, help="daemon evaluations timed for the naive replay")
    args = parser.parse_args(argv)
    require("prometheus", "promtool", hint="install Debian's prometheus package (apt-get install prometheus)")
    step = parse_duration(args.step)
    data = Dataset(services=args.slos // 2, days=2 * args.days + 1, step=60)
    code = CodeWatch()
    with bounded("backtest", TIME_LIMIT):
        server = start_prepared(data)
        try:
            assert server.process is not None
            spec = write_specs(WORK_DIR / "backtest" / "specs", args.slos, f"{args.days}d")
            slos = load_specs([spec])
            end = datetime.fromtimestamp(data.end, UTC)
            start = end - timedelta(days=args.days)
            source = PrometheusSource(server.url, stats=True)
            step_s = int(step.total_seconds())
            starts = {s.id: datetime.fromtimestamp(int(lookback(s, start).timestamp()) // step_s * step_s, UTC)
                      for s in slos}
            wait_for_quiet(20.0)
            prom0, me0 = cpu_seconds(server.process.pid), time.process_time()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=4) as pool:
                tiles = read_all(source, slos, starts, end, step, pool)
            read_s = time.perf_counter() - t0
            read_prom_cpu = cpu_seconds(server.process.pid) - prom0
            t1 = time.perf_counter()
            report = replay(slos, tiles, start, end, step)
            replay_s = time.perf_counter() - t1
            my_cpu = time.process_time() - me0
            alerts = sum(len(r.alerts) for r in report.slos)
            pages = sum(1 for r in report.slos for a in r.alerts if a.severity == "page")
            log(f"read {read_s:.1f}s ({source.stats.queries} queries, {source.stats.samples_read:,} samples), "
                f"replay {replay_s:.1f}s, {alerts} alerts ({pages} pages)")

            # The naive way, for scale: the daemon's own evaluation at every step.
            planned = PlannedSource(PrometheusSource(server.url))
            engine.evaluate(slos, planned, start)  # fills the hour ledger once, like a running daemon
            t2 = time.perf_counter()
            for k in range(1, args.naive_steps + 1):
                engine.evaluate(slos, planned, start + k * step)
            naive_per_step = (time.perf_counter() - t2) / args.naive_steps
            steps = args.days * DAY // step_s
            naive_s = naive_per_step * steps
            log(f"naive: {naive_per_step:.3f}s per step, {naive_s / 60:.0f} minutes for {steps:,} steps")
        finally:
            server.stop()
    total = read_s + replay_s
    row = {
        "slos": len(slos), "days": args.days, "step": args.step, "steps": steps,
        "history_days_read": 2 * args.days, "scrape_seconds": data.step,
        "read_seconds": round(read_s, 2), "replay_seconds": round(replay_s, 2), "total_seconds": round(total, 2),
        "queries": source.stats.queries, "samples_read": source.stats.samples_read,
        "samples_in_history": data.series * (2 * args.days * DAY // data.step),
        "prometheus_cpu_seconds_reading": round(read_prom_cpu, 2), "backtest_cpu_seconds": round(my_cpu, 2),
        "alerts": alerts, "pages": pages, "naive_seconds_per_step": round(naive_per_step, 4),
        "naive_seconds_extrapolated": round(naive_s, 1), "naive_over_backtest": round(naive_s / total, 1),
        "goal_seconds": GOAL_SECONDS, "cores": os.cpu_count(),
    }
    body = md_table(
        ["SLOs", "days", "step", "read (s)", "replay (s)", "total (s)", "queries", "samples read",
         "samples in history", "naive, extrapolated (s)", "naive / backtest"],
        [[row["slos"], row["days"], row["step"], row["read_seconds"], row["replay_seconds"], row["total_seconds"],
          f"{row['queries']:,}", f"{row['samples_read']:,}", f"{row['samples_in_history']:,}",
          f"{row['naive_seconds_extrapolated']:,}", f"{row['naive_over_backtest']}x"]],
    ) + (f"\n\nGoal: under {GOAL_SECONDS:.0f} s for 30 days of 100 SLOs at a 1-minute step on "
         f"{row['cores']} cores: **{'met' if total < GOAL_SECONDS else 'missed'}**. Samples read vs. samples in the "
         "history: each sample of the 60 days the replay needs is read about once (counter SLIs are read as raw "
         "samples, a week and a shape of SLOs per query; the excess is the lookback before each piece). "
         "The naive replay (one daemon "
         "evaluation per step) is timed over a sample of steps and extrapolated, in the same run.")
    write_results("backtest", {"data": {"services": data.services, "series": data.series, "step_seconds": data.step,
                                        "days": data.days, "end": data.end}, "result": row},
                  body, "bench.backtest: replaying 30 days of alert policy", code)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
