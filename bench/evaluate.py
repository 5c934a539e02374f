"""One evaluator process: load a spec, then run evaluation cycles the way the daemon does, and print
one JSON line with what each cycle cost. Run by ``bench.cycle`` and ``bench.vs_slo_generator`` in
a process of its own, so its CPU seconds and peak RSS are the evaluator's alone.

    python -m bench.evaluate SPEC_DIR --url URL --at UNIX [--cycles 2] [--interval 30]
        [--prometheus-pid PID] [--concurrency N] [--dump FILE] [--per-slo]

The daemon's cycle (``slowatch.cycle.Cycle.run``) calls ``slowatch.engine.evaluate`` with a
long-lived thread pool of ``Settings().concurrency`` workers, the previous cycle's statuses, and
the source it built at start: a ``PlannedSource`` (batched queries, hour ledger) over a
``PrometheusSource``. This builds the same, with ``stats=True`` so Prometheus reports the samples
each query read (``stats=all``, totalQueryableSamples). ``--per-slo`` measures the cost without
the hour ledger: the same batched queries, every window read live over its whole range
(``PlannedSource(ledger=False)``, what raw-query SLOs always cost).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from slowatch import engine
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.budget import BudgetStatus
from slowatch.settings import Settings
from slowatch.spec import load_specs


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _proc_cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    from bench.common import cpu_seconds

    return cpu_seconds(pid)


def daemon_source(settings: Settings, *, per_slo: bool) -> tuple[engine.Source | engine.BatchSource,
                                                                  PrometheusSource, str]:
    """The source ``Daemon.__init__`` builds (with stats on), the PrometheusSource under it, a name."""
    prometheus = PrometheusSource(settings.prometheus_url, timeout=settings.query_timeout,
                                  retries=settings.query_retries, stats=True)
    from slowatch.adapters.planned import PlannedSource

    if per_slo:  # every window read live over its whole range: the cost without the hour ledger
        return PlannedSource(prometheus, ledger=False), prometheus, "per-slo"
    return PlannedSource(prometheus), prometheus, "planned"


def _status(s: BudgetStatus) -> dict[str, Any]:
    return {
        "id": s.slo.id,
        "kind": s.slo.kind,
        "state": s.state,
        "sli": s.sli,
        "error": s.error,
        "counts": {w: {"good": c.good, "total": c.total} for w, c in s.counts.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--url", required=True)
    parser.add_argument("--at", type=float, required=True, help="unix seconds of the first cycle")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--interval", type=float, default=None,
                        help="seconds between cycle instants (default: Settings().evaluation_interval)")
    parser.add_argument("--prometheus-pid", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None, help="default: Settings().concurrency")
    parser.add_argument("--dump", type=Path, default=None, help="write every status of the first cycle here")
    parser.add_argument("--per-slo", action="store_true", help="one query per SLO instead of the daemon's plan")
    args = parser.parse_args()

    from bench.common import code_fingerprint, git_commit

    code = {"commit": git_commit(), "fingerprint": code_fingerprint()}  # what this process imported
    settings = Settings(prometheus_url=args.url)
    concurrency = args.concurrency or settings.concurrency
    interval = timedelta(seconds=args.interval) if args.interval is not None else settings.evaluation_interval

    started = time.perf_counter()
    slos = load_specs([args.spec])
    load_seconds = time.perf_counter() - started
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    source, prometheus, source_name = daemon_source(settings, per_slo=args.per_slo)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="eval")
    previous: dict[str, BudgetStatus] = {}
    cycles: list[dict[str, Any]] = []
    first_at = datetime.fromtimestamp(args.at, UTC)
    try:
        for k in range(args.cycles):
            at = first_at + k * interval
            stats = prometheus.stats
            q0, s0, e0 = stats.queries, stats.samples_read, stats.errors
            cpu0, prom0, t0 = _cpu(), _proc_cpu(args.prometheus_pid), time.perf_counter()
            snapshot = engine.evaluate(slos, source, at, previous=previous, executor=pool)
            wall = time.perf_counter() - t0
            cpu1, prom1 = _cpu(), _proc_cpu(args.prometheus_pid)
            previous = {s.slo.id: s for s in snapshot.statuses}
            states = Counter(s.state for s in snapshot.statuses)
            failures = snapshot.failures
            cycles.append({
                "at": at.isoformat(),
                "wall_seconds": wall,
                "cpu_seconds": cpu1 - cpu0,
                "prometheus_cpu_seconds": None if prom0 is None or prom1 is None else prom1 - prom0,
                "queries": stats.queries - q0,
                "query_errors": stats.errors - e0,
                "samples_read": stats.samples_read - s0,
                "states": dict(sorted(states.items())),
                "failures": len(failures),
                "first_failure": str(failures[0]) if failures else None,
            })
            if k == 0 and args.dump is not None:
                args.dump.write_text(json.dumps([_status(s) for s in snapshot.statuses]))
    finally:
        pool.shutdown(wait=True)
        prometheus.close()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "slos": len(slos),
        "source": source_name,
        "code": code,
        "concurrency": concurrency,
        "interval_seconds": interval.total_seconds(),
        "spec_load_seconds": load_seconds,
        "process_cpu_seconds": _cpu(),
        "peak_rss_mib": peak_kib / 1024,
        "peak_rss_before_cycles_mib": loaded_kib / 1024,
        "cycles": cycles,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
