"""bench.metrics_load: /metrics at 10,000 SLOs, full and with SLOWATCH_METRICS_WINDOWS.

    python -m bench.metrics_load [--slos 10000] [--windows 5m,1h,6h,30d] [--prometheus-seconds 40]

The view: the bench's spec (``bench.data.write_specs``: half availability, half latency SLOs with
30d windows) loaded by ``slowatch.spec.load_specs``, each SLO's budget computed by
``slowatch.core.budget.evaluate`` from synthetic counts (a closed form of the SLO's index, so the
states, exhaustion times and burn rates vary as a fleet's do). No Prometheus is read: this measures
the exposition, not the cycle (bench.cycle does that).

For each window setting, the daemon's HTTP app (``slowatch.adapters.http.App`` on waitress, as
``slowatch run`` serves it) is asked for /metrics in the text format and in OpenMetrics (Prometheus
2.42's scrape Accept header), plain and gzip: once right after a new view is published (the
scrape that renders the view), then ``CACHED_SCRAPES`` times (the same view). Then ``wrk`` on the
gzip OpenMetrics scrape. The baseline is prometheus_client encoding the same registry (what every
scrape cost before the per-view rendering). Last, a real Prometheus scrapes the daemon every
``SCRAPE_INTERVAL`` while a new view is published every ``VIEW_INTERVAL`` through
``Prerendering`` (as ``slowatch run`` publishes: the view is rendered in the background for the
formats scraped before): its own ``scrape_duration_seconds`` and ``scrape_samples_scraped``. Writes
``bench/results/metrics_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from prometheus_client.exposition import generate_latest

from bench.common import (
    WORK_DIR,
    CodeWatch,
    bounded,
    code_fingerprint,
    cpu_seconds,
    log,
    machine_busy,
    md_table,
    memory_kib,
    require,
    write_results,
)
from bench.data import write_specs
from bench.status_load import parse_wrk
from slowatch.adapters.http import App, serve
from slowatch.adapters.metrics import Prerendering, Registry, negotiate, new_registry
from slowatch.adapters.urls import scrub
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate
from slowatch.core.model import SLO
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.settings import from_flags
from slowatch.spec import load_specs
from slowatch.view import DaemonView, ViewHolder
from tests.support.processes import instant_query, start_prometheus

TIME_LIMIT = 10 * 60
CACHED_SCRAPES = 10
SCRAPE_INTERVAL = "5s"
VIEW_INTERVAL = 10.0  # seconds between published views during the Prometheus run
# Prometheus 2.42's scrape header (scrape/scrape.go, scrapeAcceptHeader): OpenMetrics 1.0.0 first.
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
FORMATS = {"text": "", "openmetrics": PROMETHEUS_ACCEPT}
AT = datetime(2026, 11, 29, 12, tzinfo=UTC)
EVENTS = 1_000_000.0


def synthetic_status(index: int, slo: SLO) -> BudgetStatus:
    """``slo``'s budget from counts that are a closed form of ``index``: burn rates 0-4x by window,
    a tenth of the SLOs over budget, one in fifty without events."""
    if index % 50 == 49:
        return evaluate(slo, Measurement(AT, {}))
    counts = {w: EventCounts(EVENTS - EVENTS * slo.budget * ((index * 7 + i * 3) % 41) / 10, EVENTS)
              for i, w in enumerate(BURN_RATE_WINDOWS)}
    consumed = 1.2 if index % 10 == 0 else (index % 97) / 100
    counts[SLO_WINDOW] = EventCounts(EVENTS - EVENTS * slo.budget * consumed, EVENTS)
    return evaluate(slo, Measurement(AT, counts))


def timed_get(url: str, headers: dict[str, str]) -> tuple[float, requests.Response]:
    started = time.perf_counter()
    r = requests.get(url, headers=headers, timeout=60)
    r.raise_for_status()
    return time.perf_counter() - started, r


def measure(url: str, publish: Callable[[], None]) -> list[dict[str, Any]]:
    rows = []
    for fmt, accept in FORMATS.items():
        for gzipped in (False, True):
            headers = {"Accept": accept, "Accept-Encoding": "gzip" if gzipped else "identity"}
            publish()  # a new view: this scrape renders it
            first, r = timed_get(url, headers)
            cached = [timed_get(url, headers)[0] for _ in range(CACHED_SCRAPES)]
            raw = r.content  # decoded by requests; the size on the wire is Content-Length
            wire = int(r.headers["Content-Length"])
            lines = [ln for ln in raw.decode("utf-8").splitlines() if ln and not ln.startswith("#")]
            rows.append({"format": fmt, "gzip": gzipped, "first_scrape_s": first,
                         "cached_scrape_median_s": statistics.median(cached), "cached_scrape_max_s": max(cached),
                         "wire_bytes": wire, "text_bytes": len(raw), "samples": len(lines),
                         "slo_samples": sum(ln.startswith("slowatch_slo_") for ln in lines)})
            log(f"  {fmt} gzip={gzipped}: first {first:.3f}s, cached {statistics.median(cached) * 1000:.1f} ms, "
                f"{wire:,} bytes on the wire, {len(lines):,} samples")
    return rows


def baseline(registry: Any) -> dict[str, float]:
    """Every scrape before the per-view rendering: prometheus_client encodes, then scrub, then gzip.
    Wall time, and this thread's CPU time (what a shared machine disturbs least)."""
    started, cpu = time.perf_counter(), time.thread_time()
    body = scrub(generate_latest(registry).decode("utf-8")).encode("utf-8")
    encoded, encoded_cpu = time.perf_counter(), time.thread_time()
    gzip.compress(body)
    return {"text_s": encoded - started, "text_gzip_s": time.perf_counter() - started, "bytes": len(body),
            "text_cpu_s": encoded_cpu - cpu, "text_gzip_cpu_s": time.thread_time() - cpu}


def render_cpu(registry: Registry, publish: Callable[[], None]) -> dict[str, float]:
    """CPU seconds of this thread to render a new view, per format, and to gzip it (level 1)."""
    out = {}
    for fmt, accept in FORMATS.items():
        publish()
        _, _, negotiated = negotiate(accept)
        assert negotiated is not None
        cpu = time.thread_time()
        rendered = registry.rendered(negotiated)
        out[f"{fmt}_cpu_s"] = time.thread_time() - cpu
        cpu = time.thread_time()
        rendered.gzipped(b"")
        out[f"{fmt}_gzip_cpu_s"] = time.thread_time() - cpu
    return out


def run_wrk(wrk: str, url: str, seconds: int) -> dict[str, Any]:
    cmd = [wrk, "-t1", "-c2", f"-d{seconds}s", "--latency", "-H", "Accept-Encoding: gzip",
           "-H", f"Accept: {PROMETHEUS_ACCEPT}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return {**parse_wrk(done.stdout), "command": " ".join(cmd[:-1]) + " URL/metrics"}


def prometheus_scrapes(url: str, publish: Callable[[], None], seconds: float) -> dict[str, Any]:
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    work = WORK_DIR / "metrics_load" / "prometheus"
    shutil.rmtree(work, ignore_errors=True)  # no series of an earlier run in the answers
    server = start_prometheus(work, scrape_configs=[{
        "job_name": "slowatch", "scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
        "static_configs": [{"targets": [host_port]}]}])
    stop = threading.Event()

    def cycles() -> None:
        while not stop.wait(VIEW_INTERVAL):
            publish()

    thread = threading.Thread(target=cycles, daemon=True)
    try:
        assert server.process is not None
        thread.start()
        cpu0 = cpu_seconds(server.process.pid)
        time.sleep(seconds)
        prometheus_cpu = cpu_seconds(server.process.pid) - cpu0
        at = time.time()
        window = f"{int(seconds)}s"
        target = f'job="slowatch",instance="{host_port}"'

        def one(expr: str) -> float | None:
            result = instant_query(server.url, expr, at)
            return float(result[0]["value"][1]) if result else None

        return {
            "scrape_interval": SCRAPE_INTERVAL, "view_interval_s": VIEW_INTERVAL, "seconds": seconds,
            "scrapes": one(f"count_over_time(up{{{target}}}[{window}])"),
            "up_min": one(f"min_over_time(up{{{target}}}[{window}])"),
            "duration_max_s": one(f"max_over_time(scrape_duration_seconds{{{target}}}[{window}])"),
            "duration_avg_s": one(f"avg_over_time(scrape_duration_seconds{{{target}}}[{window}])"),
            "samples_scraped": one(f"scrape_samples_scraped{{{target}}}"),
            "prometheus_cpu_s": prometheus_cpu,
        }
    finally:
        stop.set()
        thread.join(VIEW_INTERVAL + 5)
        server.stop()


def one_setting(slos: list[SLO], windows: str | None, wrk: str, prometheus_seconds: float) -> dict[str, Any]:
    settings = from_flags({"metrics_windows": windows or ""})
    statuses = tuple(synthetic_status(i, s) for i, s in enumerate(slos))
    holder = ViewHolder(DaemonView(at=AT, statuses=statuses, ready=True))
    registry, _ = new_registry(holder, windows=settings.metrics_windows)
    base = baseline(registry)
    log(f"baseline (prometheus_client encodes every scrape): {base['text_s']:.2f}s text, "
        f"{base['text_gzip_s']:.2f}s with gzip")
    views = [0]

    def publish() -> None:  # an equal view that is a new object: as a cycle publishes
        views[0] += 1
        holder.publish(replace(holder.get(), at=AT + timedelta(seconds=30 * views[0])))

    rendering = render_cpu(registry, publish)
    log(f"rendering a view: {rendering['text_cpu_s']:.2f} CPU s text, {rendering['openmetrics_cpu_s']:.2f} "
        f"OpenMetrics (+{rendering['openmetrics_gzip_cpu_s']:.2f} gzip); prometheus_client: "
        f"{base['text_cpu_s']:.2f} CPU s")
    with serve(App(holder, registry), "127.0.0.1", 0) as server:
        url = f"{server.url}/metrics"
        rows = measure(url, publish)
        wrk_result = run_wrk(wrk, url, 10)
        p99 = wrk_result["latency_percentiles_ms"]["p99"]
        log(f"  wrk: {wrk_result['requests_per_second']:.0f} req/s, p99 {p99:.1f} ms")
        # As `slowatch run` publishes: each view rendered in the background for the formats scraped so far.
        publisher = Prerendering(holder, registry)

        def publish_rendered() -> None:
            views[0] += 1
            publisher.publish(replace(holder.get(), at=AT + timedelta(seconds=30 * views[0])))

        scraped = prometheus_scrapes(url, publish_rendered, prometheus_seconds) if prometheus_seconds > 0 else None
        if scraped:
            log(f"  Prometheus: scrape_duration_seconds max {scraped['duration_max_s']:.3f}s "
                f"avg {scraped['duration_avg_s']:.3f}s over {scraped['scrapes']:.0f} scrapes")
    return {"windows": windows or "all", "baseline": base, "rendering_cpu": rendering, "scrapes": rows,
            "wrk": wrk_result, "prometheus": scraped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=int, default=10_000)
    parser.add_argument("--windows", default="5m,1h,6h,30d", help="the limited SLOWATCH_METRICS_WINDOWS run")
    parser.add_argument("--prometheus-seconds", type=float, default=40,
                        help="how long a real Prometheus scrapes each setting (0: not at all)")
    args = parser.parse_args(argv)
    binaries = require("wrk", "prometheus", hint="apt-get install wrk prometheus")
    code = CodeWatch()
    measured = [code_fingerprint()]
    with bounded("metrics_load", TIME_LIMIT):
        slos = load_specs([write_specs(WORK_DIR / "metrics_load" / "specs", args.slos, "30d")])
        rss_spec = memory_kib_self()
        busy0 = machine_busy()
        settings = [one_setting(slos, None, binaries["wrk"], args.prometheus_seconds),
                    one_setting(slos, args.windows, binaries["wrk"], args.prometheus_seconds)]
        busy1 = machine_busy()
        rss_end = memory_kib_self()
    measured.append(code_fingerprint())
    result = {"slos": args.slos, "settings": settings, "rss_kib_after_spec": rss_spec, "rss_kib_at_end": rss_end,
              "machine_busy_percent": 100 * (busy1[0] - busy0[0]) / max(1e-9, busy1[1] - busy0[1])}
    write_results("metrics_load", result, report(result), "bench.metrics_load: /metrics for a big fleet", code,
                  measured=measured)
    return 0


def memory_kib_self() -> dict[str, int]:
    return memory_kib(os.getpid())


def report(r: dict[str, Any]) -> str:
    rows = []
    for s in r["settings"]:
        for row in s["scrapes"]:
            rows.append([s["windows"], row["format"], "gzip" if row["gzip"] else "plain",
                         f"{row['samples']:,}", f"{row['wire_bytes']:,}", f"{row['first_scrape_s']:.3f}",
                         f"{row['cached_scrape_median_s'] * 1000:.1f} / {row['cached_scrape_max_s'] * 1000:.1f}"])
    base = [[s["windows"], f"{s['baseline']['bytes']:,}",
             f"{s['baseline']['text_s']:.2f} / {s['baseline']['text_cpu_s']:.2f}",
             f"{s['baseline']['text_gzip_s']:.2f} / {s['baseline']['text_gzip_cpu_s']:.2f}",
             f"{s['rendering_cpu']['text_cpu_s']:.2f}",
             f"{s['rendering_cpu']['openmetrics_cpu_s']:.2f} + {s['rendering_cpu']['openmetrics_gzip_cpu_s']:.2f}"]
            for s in r["settings"]]
    wrk = [[s["windows"], f"{s['wrk']['requests_per_second']:,.0f}",
            " / ".join(f"{s['wrk']['latency_percentiles_ms'][k]:.1f}" for k in ("p50", "p90", "p99")),
            f"{s['wrk']['non_2xx']}"] for s in r["settings"]]
    prom = [[s["windows"], f"{p['scrapes']:.0f}", f"{p['up_min']:.0f}", f"{p['duration_avg_s']:.3f}",
             f"{p['duration_max_s']:.3f}", f"{p['samples_scraped']:,.0f}",
             f"{p['prometheus_cpu_s'] / p['scrapes']:.2f}"]
            for s in r["settings"] if (p := s["prometheus"])]
    mib = {k: v / 1024 for k, v in r["rss_kib_at_end"].items()}
    return f"""## /metrics at {r['slos']:,} SLOs

The view: {r['slos']:,} SLOs of the bench spec (30d windows), budgets from synthetic counts
(`bench/metrics_load.py`). Served by `slowatch.adapters.http.App` on waitress in this process.
The machine was shared with other engineers' work: {r['machine_busy_percent']:.0f}% of its 2 cores
were busy over the run (this benchmark included).

### One scrape (seconds; "first" renders a newly published view, "cached" is the same view again)

{md_table(["burn-rate windows", "format", "encoding", "samples", "bytes on the wire", "first scrape s",
           "cached ms (median / max)"], rows)}

### Rendering a view: before (prometheus_client encoding every scrape) and now (once per view)

Wall seconds / CPU seconds of the thread: CPU time is what a busy shared machine disturbs least.
"now" renders the SLO part once per view (`Registry.rendered`); gzip is its level-1 stream.

{md_table(["burn-rate windows", "bytes", "before: text s (wall / CPU)", "before: text + gzip s (wall / CPU)",
           "now: text, CPU s", "now: OpenMetrics + gzip, CPU s"], base)}

### wrk, gzip OpenMetrics (Prometheus' own request), 1 thread, 2 connections, 10 s

{md_table(["burn-rate windows", "req/s", "latency p50 / p90 / p99 ms", "non-2xx"], wrk)}

### A real Prometheus scraping every {SCRAPE_INTERVAL}, a new view every {VIEW_INTERVAL:.0f} s, rendered as published

{md_table(["burn-rate windows", "scrapes", "up (min)", "scrape_duration_seconds avg", "max",
           "scrape_samples_scraped", "Prometheus CPU s per scrape"], prom)}

Prometheus' `scrape_duration_seconds` includes its own parsing and appending of every sample, so
on a busy machine it mostly measures how much CPU Prometheus got.

Memory of this process at the end (both settings' views and renderings alive in the last one):
VmRSS {mib.get('VmRSS', 0):,.0f} MiB, peak {mib.get('VmHWM', 0):,.0f} MiB.
"""


if __name__ == "__main__":
    raise SystemExit(main())
