"""bench.vs_slo_generator: slowatch against google's slo-generator on the same Prometheus, data and SLOs.

    python -m bench.vs_slo_generator [--services 100] [--passes 2]

The Prometheus and data of ``bench.cycle`` (built and cached if missing); 100 services, each
with an availability SLO (99.9%, errors = code 500) and a latency SLO (95% under 250 ms), 30d
windows: 200 SLOs. slo-generator 2.6.0 runs from its own virtualenv
(``bench/.work/slo-generator-venv``, created here, never a slowatch dependency): ``good_bad_ratio``
with ``filter_good``/``filter_valid`` for availability, ``distribution_cut`` for latency, and an
error-budget policy with the very windows slowatch computes (5m, 30m, 1h, 2h, 6h, 1d, 3d and the
30d SLO window), so both produce the same information. Both talk to Prometheus through a counting
proxy on 127.0.0.1 (``bench.proxy``), which also pins slo-generator's ``time=`` to the benchmark
instant (it always sends "now"). Writes ``bench/results/vs_slo_generator.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    WORK_DIR,
    BenchError,
    CodeWatch,
    bounded,
    log,
    md_table,
    metric,
    python_json,
    require,
    scrape,
    wait_for_quiet,
    warm_page_cache,
    write_results,
)
from bench.data import BUCKET, REQUESTS, THRESHOLD, Dataset, service_name, start_prepared, write_specs
from bench.proxy import CountingProxy

VENV = WORK_DIR / "slo-generator-venv"
VENV_PYTHON = VENV / "bin" / "python"
SLO_GENERATOR = "slo-generator[prometheus]==2.6.0"
# slo-generator imports pkg_resources, which setuptools 81 removed.
SETUPTOOLS = "setuptools<81"
TIME_LIMIT = 30 * 60
QUIET_WAIT = 20.0
# The windows slowatch measures for a 30d SLO: its burn-rate windows and the SLO window.
WINDOWS = (("5m", 300), ("30m", 1800), ("1h", 3600), ("2h", 7200), ("6h", 21600), ("1d", 86400),
           ("3d", 259200), ("30d", 2592000))
SLO_WINDOW = "30d"


def ensure_venv() -> str:
    """slo-generator's own virtualenv, created on first use; its version string."""
    probe = [str(VENV_PYTHON), "-c", "import importlib.metadata as m; print(m.version('slo-generator'))"]
    if VENV_PYTHON.exists():
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == "2.6.0":
            return done.stdout.strip()
    log(f"creating {VENV.relative_to(WORK_DIR.parent.parent)} with {SLO_GENERATOR}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    done = subprocess.run([str(VENV_PYTHON), "-m", "pip", "install", "-q", SETUPTOOLS, SLO_GENERATOR],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"pip install {SLO_GENERATOR} failed:\n{done.stderr[-2000:]}")
    done = subprocess.run(probe, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"slo-generator does not import in {VENV}:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def write_slo_generator_configs(directory: Path, services: int, prometheus_url: str) -> Path:
    """One SLO config per SLO (slo-generator's v2 format) and the shared config; returns the latter."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for index in range(services):
        name = service_name(index)
        availability: dict[str, Any] = {
            "apiVersion": "sre.google.com/v2", "kind": "ServiceLevelObjective",
            "metadata": {"name": f"{name}-availability",
                         "labels": {"service_name": name, "feature_name": "bench", "slo_name": "availability"}},
            "spec": {
                "description": "requests not failing with a 500", "backend": "prometheus",
                "method": "good_bad_ratio", "exporters": [], "goal": 0.999,
                "service_level_indicator": {
                    "filter_good": f'{REQUESTS}{{service="{name}",code="200"}}',
                    "filter_valid": f'{REQUESTS}{{service="{name}"}}',
                },
            },
        }
        latency: dict[str, Any] = {
            "apiVersion": "sre.google.com/v2", "kind": "ServiceLevelObjective",
            "metadata": {"name": f"{name}-latency",
                         "labels": {"service_name": name, "feature_name": "bench", "slo_name": "latency"}},
            "spec": {
                "description": "requests answered within 250 ms", "backend": "prometheus",
                "method": "distribution_cut", "exporters": [], "goal": 0.95,
                "service_level_indicator": {"expression": f'{BUCKET}{{service="{name}"}}',
                                            "threshold_bucket": THRESHOLD},
            },
        }
        for doc in (availability, latency):
            (directory / f"{doc['metadata']['name']}.yaml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    shared = {
        "backends": {"prometheus": {"url": prometheus_url}},
        "error_budget_policies": {"default": {"steps": [
            {"name": name, "window": seconds, "burn_rate_threshold": 14.4, "alert": False,
             "message_alert": "burning", "message_ok": "ok"} for name, seconds in WINDOWS
        ]}},
    }
    path = directory.parent / "shared.yaml"
    path.write_text(json.dumps(shared, indent=2))
    return path


ROUNDING = 5e-7  # slo-generator rounds its SLI to 6 digits


def _agree(row: dict[str, Any]) -> bool:
    a, b = row["slowatch_sli"], row["slo_generator_sli"]
    return a is not None and b is not None and abs(a - b) <= ROUNDING


def compare(statuses: list[dict[str, Any]], reports: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """SLI per SLO and window from both tools, and how far apart they are."""
    rows: list[dict[str, Any]] = []
    for s in statuses:
        service, name = s["id"].split("/")
        for r in reports.get(f"{service}-{name}", []):
            key = "slo" if r["step"] == SLO_WINDOW else r["step"]
            counts = s["counts"].get(key)
            ours = counts["good"] / counts["total"] if counts and counts["total"] > 0 else None
            theirs = r["sli_measurement"] if r.get("valid") else None
            rows.append({
                "slo": s["id"], "window": r["step"], "slowatch_sli": ours, "slo_generator_sli": theirs,
                "slowatch_good": counts["good"] if counts else None,
                "slowatch_total": counts["total"] if counts else None,
                "slo_generator_good": r.get("good_events_count"),
                "slo_generator_total": (r["good_events_count"] + r["bad_events_count"]) if r.get("valid") else None,
                "slo_generator_errors": r.get("errors") or None,
            })
    both = [r for r in rows if r["slowatch_sli"] is not None and r["slo_generator_sli"] is not None]
    diffs = [abs(r["slowatch_sli"] - r["slo_generator_sli"]) for r in both]
    slo_window = [r for r in both if r["window"] == SLO_WINDOW]
    return {
        "pairs": len(rows),
        "pairs_with_both": len(both),
        "only_slowatch": sum(1 for r in rows if r["slowatch_sli"] is not None and r["slo_generator_sli"] is None),
        "only_slo_generator": sum(1 for r in rows if r["slowatch_sli"] is None and r["slo_generator_sli"] is not None),
        "max_abs_sli_difference": max(diffs) if diffs else None,
        "max_abs_sli_difference_slo_window": max((abs(r["slowatch_sli"] - r["slo_generator_sli"])
                                                  for r in slo_window), default=None),
        "agree_within_rounding": sum(1 for d in diffs if d <= ROUNDING),
        # Every SLO's SLO window, and any pair that does not agree (the rest only agrees).
        "rows": [r for r in rows if r["window"] == SLO_WINDOW or r["window"] == "1h" or not _agree(r)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=100, help="SLOs = 2 x services (availability + latency)")
    parser.add_argument("--passes", type=int, default=2, help="slo-generator passes over all SLOs (best is reported)")
    parser.add_argument("--cycles", type=int, default=3, help="slowatch cycles (30 s apart) per process")
    args = parser.parse_args(argv)
    require("prometheus", "promtool", hint="install Debian's prometheus package (apt-get install prometheus)")
    version = ensure_venv()

    data = Dataset(services=5000)  # bench.cycle's data, the same cached TSDB
    if args.services > data.services:
        raise BenchError(f"--services must be at most {data.services}")
    work = WORK_DIR / "vs_slo_generator"
    slos = 2 * args.services
    at = data.end
    code = CodeWatch()
    with bounded("vs_slo_generator", TIME_LIMIT):
        server = start_prepared(data)
        proxy = CountingProxy(server.url, pin_time=at)
        try:
            warm_page_cache(server.log_path.parent / "data")
            spec = write_specs(work / "slowatch", slos, SLO_WINDOW)
            shared = write_slo_generator_configs(work / "slo-generator" / "slos", args.services, proxy.url)
            runs: dict[str, Any] = {}

            def prom_queries() -> float:
                return metric(scrape(server.url), "prometheus_http_requests_total", handler="/api/v1/query")

            variants: list[tuple[str, list[str], int]] = [
                ("slowatch", [], args.cycles),
                ("slowatch_per_slo", ["--per-slo"], 1),
                ("slowatch_per_slo_sequential", ["--per-slo", "--concurrency", "1"], 1),
            ]
            for label, extra, cycles in variants:
                wait_for_quiet(QUIET_WAIT)
                log(f"{label}: {slos} SLOs, {cycles} cycle(s)")
                before = prom_queries()
                proxy.reset()
                dump = work / f"{label}-statuses.json"
                result = python_json(["-m", "bench.evaluate", str(spec), "--url", proxy.url, "--at", str(at),
                                      "--cycles", str(cycles), "--dump", str(dump), *extra], timeout=600)
                result["proxy_requests"] = sum(proxy.reset().values())
                result["prometheus_query_requests"] = prom_queries() - before
                runs[label] = result
                log(f"  first cycle {result['cycles'][0]['wall_seconds']:.2f}s, "
                    f"{result['cycles'][0]['queries']} queries")
            wait_for_quiet(QUIET_WAIT)
            log(f"slo-generator {version}: {slos} SLOs x {len(WINDOWS)} windows, {args.passes} passes")
            before = prom_queries()
            proxy.reset()
            sg = python_json([str(Path(__file__).with_name("slo_generator_driver.py")), "--configs",
                              str(shared.parent / "slos"), "--shared", str(shared), "--at", str(at),
                              "--passes", str(args.passes)], timeout=1200, python=str(VENV_PYTHON))
            sg["proxy_requests"] = proxy.reset()
            sg["prometheus_query_requests"] = prom_queries() - before
            log(f"  passes {[round(p['wall_seconds'], 2) for p in sg['passes']]}s")
        finally:
            proxy.close()
            server.stop()

    reports = sg.pop("reports")
    agreement = compare(json.loads((work / "slowatch-statuses.json").read_text()), reports)
    agreement_per_slo = compare(json.loads((work / "slowatch_per_slo-statuses.json").read_text()), reports)
    agreement["per_slo_path"] = {k: v for k, v in agreement_per_slo.items() if k != "rows"}
    sg_requests = sum(sg["proxy_requests"].values())
    sg["proxy_requests"] = {f"{m} {p}": n for (m, p), n in sg["proxy_requests"].items()}
    summary = summarize(runs, sg, slos, args.passes, sg_requests)
    write_results("vs_slo_generator", {
        "slos": slos, "windows": [w for w, _ in WINDOWS], "at": at, "slo_generator_version": version,
        "summary": summary, "slowatch": runs, "slo_generator": sg, "agreement": agreement,
    }, report(summary, agreement, version), "bench.vs_slo_generator: slowatch vs slo-generator",
       code, measured=[r["code"]["fingerprint"] for r in runs.values()])
    return 0


def summarize(runs: dict[str, Any], sg: dict[str, Any], slos: int, passes: int, sg_requests: int) -> dict[str, Any]:
    best = min(sg["passes"], key=lambda p: p["wall_seconds"])
    by_kind: dict[str, list[float]] = {"availability": [], "latency": []}
    for p in best["per_slo"]:
        by_kind["latency" if p["name"].endswith("-latency") else "availability"].append(p["seconds"])
    sg_row = {
        "seconds_per_slo": best["wall_seconds"] / slos,
        "queries_per_slo": sg_requests / slos / passes,
        "cpu_seconds_per_slo": best["cpu_seconds"] / slos,
        "samples_read_per_slo": None,
        "prometheus_requests_per_slo": sg["prometheus_query_requests"] / slos / passes,
        "seconds_per_slo_by_kind": {k: statistics.mean(v) for k, v in by_kind.items() if v},
    }
    rows: dict[str, dict[str, Any]] = {}
    columns = [("slowatch first cycle", "slowatch", 0), ("slowatch next cycle", "slowatch", 1),
               ("slowatch per-SLO path", "slowatch_per_slo", 0),
               ("slowatch per-SLO path, sequential", "slowatch_per_slo_sequential", 0)]
    for name, run, k in columns:
        if run not in runs or len(runs[run]["cycles"]) <= k:
            continue
        c = runs[run]["cycles"][k] if k == 0 else _median_cycle(runs[run]["cycles"][1:])
        rows[name] = {
            "seconds_per_slo": c["wall_seconds"] / slos, "queries_per_slo": c["queries"] / slos,
            "cpu_seconds_per_slo": c["cpu_seconds"] / slos, "samples_read_per_slo": c["samples_read"] / slos,
        }
    for row in rows.values():
        row["slo_generator_time_ratio"] = sg_row["seconds_per_slo"] / row["seconds_per_slo"]
        row["slo_generator_queries_ratio"] = sg_row["queries_per_slo"] / row["queries_per_slo"]
        row["slo_generator_cpu_ratio"] = sg_row["cpu_seconds_per_slo"] / max(1e-12, row["cpu_seconds_per_slo"])
    return {"slo_generator": sg_row, "slowatch": rows,
            "proxy_requests_per_cycle": {k: v["proxy_requests"] / len(v["cycles"]) for k, v in runs.items()}}


def _median_cycle(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(cycles, key=lambda c: c["wall_seconds"])
    return ordered[len(ordered) // 2]


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def _sli(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


def report(s: dict[str, Any], agreement: dict[str, Any], version: str) -> str:
    sg = s["slo_generator"]
    rows = [[f"slo-generator {version} (sequential)", _ms(sg["seconds_per_slo"]), f"{sg['queries_per_slo']:.2f}",
             _ms(sg["cpu_seconds_per_slo"]), "-", "1x", "1x"]]
    for name, r in s["slowatch"].items():
        rows.append([name, _ms(r["seconds_per_slo"]), f"{r['queries_per_slo']:.2f}", _ms(r["cpu_seconds_per_slo"]),
                     f"{r['samples_read_per_slo']:,.0f}", f"{r['slo_generator_time_ratio']:.1f}x",
                     f"{r['slo_generator_queries_ratio']:.1f}x"])
    table = md_table(["", "ms per SLO (wall)", "queries per SLO", "evaluator CPU ms per SLO", "samples read per SLO",
                      "slo-generator / this, time", "slo-generator / this, queries"], rows)
    picks: list[dict[str, Any]] = []
    slo_rows = [r for r in agreement["rows"] if r["window"] == SLO_WINDOW]
    picks += slo_rows[:2]
    worst = sorted((r for r in slo_rows if r["slowatch_sli"] is not None), key=lambda r: r["slowatch_sli"])[:3]
    picks += [r for r in worst if r not in picks]
    short = [r for r in agreement["rows"] if r["window"] == "1h" and r["slowatch_sli"] is not None]
    picks += sorted(short, key=lambda r: r["slowatch_sli"])[:1]
    sample = md_table(["SLO", "window", "slowatch SLI", "slo-generator SLI", "slowatch good / total",
                       "slo-generator good / total"], [
        [r["slo"], r["window"], _sli(r["slowatch_sli"]), _sli(r["slo_generator_sli"]),
         f"{r['slowatch_good']:,.1f} / {r['slowatch_total']:,.1f}" if r["slowatch_total"] is not None else "-",
         f"{r['slo_generator_good']:,} / {r['slo_generator_total']:,}" if r["slo_generator_total"] is not None else "-"]
        for r in picks
    ])
    diff = agreement["max_abs_sli_difference"]
    per_slo = agreement.get("per_slo_path", {})
    per_slo_diff = per_slo.get("max_abs_sli_difference")
    kinds = sg["seconds_per_slo_by_kind"]
    availability, latency = _ms(kinds.get("availability")), _ms(kinds.get("latency"))
    return f"""## Time and queries per SLO

{table}

Both compute the same 8 windows per SLO (the 5m ... 3d burn-rate windows and the 30d SLO window).
slowatch's rows are cycles over all SLOs in a fresh process: the daemon's path (batched queries
and the hour ledger; its first cycle fills the ledger) and the per-SLO path (one query per SLO,
8 at a time, or one at a time like slo-generator). slo-generator: the best of its passes, run
sequentially as its `compute` CLI does (availability {availability} ms, latency {latency} ms per SLO),
two queries per window. Queries are HTTP requests counted by the counting proxy; Prometheus' own
`prometheus_http_requests_total` counts {sg['prometheus_requests_per_slo']:.1f} per SLO for slo-generator.

## Do they agree?

Daemon path vs slo-generator: {agreement['pairs_with_both']} of {agreement['pairs']} (SLO, window) pairs have an SLI
from both; {agreement['agree_within_rounding']} agree within slo-generator's 6-digit rounding; largest difference
{'-' if diff is None else f'{diff:.2e}'}; SLI only from slowatch: {agreement['only_slowatch']}, only from
slo-generator: {agreement['only_slo_generator']}. Per-SLO path vs slo-generator: largest difference
{'-' if per_slo_diff is None else f'{per_slo_diff:.2e}'}, {per_slo.get('agree_within_rounding', '-')} agree.

{sample}
"""


if __name__ == "__main__":
    raise SystemExit(main())
