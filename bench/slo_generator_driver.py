"""Runs google's slo-generator ``compute`` over a folder of SLO configs, timing each SLO.

Run ONLY with the Python of ``bench/.work/slo-generator-venv`` (slo-generator is never a
dependency of slowatch); ``bench.vs_slo_generator`` does. It does what ``slo-generator compute
-f DIR -c shared.yaml -t AT`` does (``utils.load_configs`` + ``compute.compute`` per SLO,
sequentially), without the CLI's start-up and log output, and prints one JSON line.

    python slo_generator_driver.py --configs DIR --shared FILE --at UNIX [--passes 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

from slo_generator import utils  # type: ignore[import-not-found]
from slo_generator.compute import compute  # type: ignore[import-not-found]

REPORT_KEYS = ("window", "sli_measurement", "good_events_count", "bad_events_count", "valid", "errors")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", required=True)
    parser.add_argument("--shared", required=True)
    parser.add_argument("--at", type=float, required=True)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()

    shared = utils.load_config(args.shared)
    slo_configs = utils.load_configs(args.configs, kind="ServiceLevelObjective")
    passes: list[dict[str, Any]] = []
    reports: dict[str, list[dict[str, Any]]] = {}
    for k in range(args.passes):
        per_slo: list[dict[str, Any]] = []
        cpu0, t0 = _cpu(), time.perf_counter()
        for config in slo_configs:
            started = time.perf_counter()
            out = compute(config, shared, timestamp=args.at, do_export=False)
            per_slo.append({"name": config["metadata"]["name"], "seconds": time.perf_counter() - started})
            if k == 0:
                reports[config["metadata"]["name"]] = [
                    {"step": r.get("error_budget_policy_step_name"), **{key: r.get(key) for key in REPORT_KEYS}}
                    for r in out
                ]
        passes.append({"wall_seconds": time.perf_counter() - t0, "cpu_seconds": _cpu() - cpu0, "per_slo": per_slo})
    print(json.dumps({
        "slos": len(slo_configs),
        "passes": passes,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reports": reports,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
