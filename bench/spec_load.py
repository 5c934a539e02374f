"""bench.spec_load: loading the spec of 1,000 and 10,000 SLOs, before and after #13's changes.

    python -m bench.spec_load [--slos 1000,10000] [--repeats 3]

The spec is the benches' (``bench.data.write_specs``: one file per service, an availability and a
latency SLO each, 30-day windows). Each load runs in a fresh process (as a daemon's start does:
no warm caches), timing ``load_specs`` alone, wall and CPU (the CPU figure barely depends on what
else the machine runs). Variants, measured in the same run:

* *before*: ``slowatch/spec.py`` as it was at ``BASELINE`` (pure-Python YAML), loaded from git as
  a module of its own over today's other modules;
* *after*: today's ``load_specs(paths)``: libyaml where it reads the text as PyYAML does;
* *after, first start*: ``load_specs(paths, state_dir)`` with an empty state dir (parses, then
  writes the spec cache);
* *after, restart*: the same with the cache the first start wrote (``slowatch.spec_cache``).

The median of ``--repeats`` runs is reported. The before and after SLOs are compared for equality
in this process, and one profiled load of each variant (10,000 SLOs) lists the top costs.
Writes ``bench/results/spec_load.{json,md}``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import (
    WORK_DIR,
    CodeWatch,
    bounded,
    csv_ints,
    log,
    machine_busy,
    md_table,
    module_at,
    python_json,
    wait_for_quiet,
    write_results,
)
from bench.data import write_specs

# The last commit before #13's spec-load changes (pure-Python YAML).
BASELINE = "bd575aa967538abbdf75dfe95e3088f0cdfb5da2"
TIME_LIMIT = 15 * 60
CHILD_TIMEOUT = 120
VARIANTS = ("before", "after", "after_first_start", "after_restart")
TOP = 8  # profile lines shown per variant
QUIET_WAIT = 5  # seconds to wait for a quiet second before each run (the machine is shared)


def baseline_spec() -> ModuleType:
    """``slowatch/spec.py`` at BASELINE, as the module ``baseline_spec``."""
    return module_at(BASELINE, "slowatch/spec.py", "baseline_spec")


def loader(variant: str, state: Path) -> Callable[[Path], list[Any]]:
    if variant == "before":
        old = baseline_spec()
        return lambda specs: list(old.load_specs([specs]))
    from slowatch.spec import load_specs

    if variant == "after":
        return lambda specs: load_specs([specs])
    return lambda specs: load_specs([specs], state)


def child(argv: list[str]) -> int:
    """One load in this fresh process: ``child VARIANT SPECS STATE`` prints its JSON."""
    variant, specs, state = argv[0], Path(argv[1]), Path(argv[2])
    load = loader(variant, state)
    wall, cpu = time.perf_counter(), time.process_time()
    slos = load(specs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"variant": variant, "slos": len(slos), "wall_seconds": wall, "cpu_seconds": cpu,
                      "peak_rss_kib": peak_kib}))
    return 0


def measure(variant: str, specs: Path, state: Path, repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        wait_for_quiet(QUIET_WAIT)
        if variant == "after_first_start":
            shutil.rmtree(state, ignore_errors=True)
        b0, t0 = machine_busy()
        run = python_json(["-m", "bench.spec_load", "child", variant, str(specs), str(state)], CHILD_TIMEOUT)
        b1, t1 = machine_busy()
        runs.append({**run, "machine_busy": round((b1 - b0) / max(1e-9, t1 - t0), 3)})
    return {"variant": variant, "runs": runs,
            "wall_seconds": statistics.median(r["wall_seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs)}


# Own time, summed by where the function lives: (area, what its file path or name holds).
AREAS = (
    ("YAML (PyYAML; libyaml's C parser counts in constructor.get_data)", ("/yaml/", "_yaml")),
    ("pydantic validation", ("pydantic",)),
    ("PromQL parser", ("promql_parser",)),
    ("spec cache (unpickle, hash)", ("Unpickler", "spec_cache.py", "sha256", "zlib")),
    ("slowatch.spec (validators, model, checks)", ("slowatch/spec.py", "slowatch/formats", "slowatch/core")),
)
OTHER = "the rest (files, paths, regexes, interpreter)"


def profile(load: Callable[[Path], list[Any]], specs: Path) -> dict[str, Any]:
    """One profiled load: own seconds by area, and the top functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    load(specs)
    profiler.disable()
    entries = pstats.Stats(profiler).stats.items()  # type: ignore[attr-defined]
    areas = dict.fromkeys([a for a, _ in AREAS] + [OTHER], 0.0)
    for (file, _, name), (_, _, own, _, _) in entries:
        where = f"{file} {name}"
        areas[next((a for a, marks in AREAS if any(m in where for m in marks)), OTHER)] += own
    top = sorted(entries, key=lambda kv: kv[1][2], reverse=True)[:TOP]
    return {"own_seconds_by_area": {a: round(v, 3) for a, v in areas.items()},
            "top": [{"function": f"{Path(f).name}:{line}({name})", "calls": calls, "own_seconds": round(own, 3),
                     "cumulative_seconds": round(cumulative, 3)}
                    for (f, line, name), (_, calls, own, cumulative, _) in top]}


def compare(specs: Path, state: Path) -> dict[str, Any]:
    """Before and after give equal SLOs (and so does a restart from the cache); and the profiles."""
    from slowatch.spec import load_specs

    old = baseline_spec()
    before = list(old.load_specs([specs]))
    shutil.rmtree(state, ignore_errors=True)
    after, cached_first, cached = load_specs([specs]), load_specs([specs], state), load_specs([specs], state)
    # The baseline's SLOs are today's core dataclasses (only spec.py is old): == compares them.
    same = before == after == cached_first == cached
    profiles = {"before": profile(lambda s: list(old.load_specs([s])), specs),
                "after": profile(lambda s: load_specs([s]), specs),
                "after_restart": profile(lambda s: load_specs([s], state), specs)}
    return {"slos": len(after), "same_slos": same, "profiles": profiles}


def report(rows: list[dict[str, Any]], check: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], variant: str) -> str:
        m = row[variant]
        return f"{m['wall_seconds']:.3f} ({m['cpu_seconds']:.3f})"

    table = md_table(
        ["SLOs", "before: s (CPU s)", "after: s (CPU s)", "after / before", "first start with a state dir: s",
         "restart from the spec cache: s", "restart / before", "busy (max of runs)"],
        [[f"{r['slos']:,}", cell(r, "before"), cell(r, "after"),
          f"{r['after']['wall_seconds'] / r['before']['wall_seconds']:.3f}", cell(r, "after_first_start"),
          cell(r, "after_restart"), f"{r['after_restart']['wall_seconds'] / r['before']['wall_seconds']:.3f}",
          f"{max(run['machine_busy'] for v in VARIANTS for run in r[v]['runs']):.0%}"]
         for r in rows],
    )
    variants = list(check["profiles"])
    by_area = md_table(["own seconds in", *variants],
                       [[area, *(check["profiles"][v]["own_seconds_by_area"][area] for v in variants)]
                        for area in [a for a, _ in AREAS] + [OTHER]]
                       + [["total", *(round(sum(check["profiles"][v]["own_seconds_by_area"].values()), 3)
                                      for v in variants)]])
    profiles = by_area + "\n\n" + "\n\n".join(
        f"**{variant}**: the top functions by own time\n\n"
        + md_table(["function", "calls", "own s", "cumulative s"],
                   [[p["function"], f"{p['calls']:,}", p["own_seconds"], p["cumulative_seconds"]]
                    for p in prof["top"]])
        for variant, prof in check["profiles"].items()
    )
    return f"""
## `load_specs` of the benches' spec (30-day SLOs, one file per service)

Each load runs in a fresh process; the median of its runs, wall seconds (CPU seconds in
parentheses). *before*: `slowatch/spec.py` at `{BASELINE[:7]}` (pure-Python YAML), loaded from git over
today's other modules; *after*: today's `load_specs(paths)` (no cache); *first start*:
`load_specs(paths, state_dir)` with an empty state dir (parses, then writes the cache); *restart*:
the same with the cache the first start wrote. "busy" is how busy the machine's cores were
during the runs (the machine is shared: the CPU seconds are the steadier figure).

{table}

The before and after SLOs are equal (`==` on the core dataclasses, {check['slos']:,} SLOs), and so
are those read back from the cache: **{check['same_slos']}**.

## Where the time goes

One profiled load of {check['slos']:,} SLOs per variant, in this process (cProfile slows Python
code about 2x, C code not at all, so the shares matter more than the sums).

{profiles}
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slos", type=csv_ints, default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    code = CodeWatch()
    rows: list[dict[str, Any]] = []
    with bounded("spec_load", TIME_LIMIT):
        for n in args.slos:
            specs = write_specs(WORK_DIR / "spec_load" / "specs" / str(n), n, "30d")
            state = WORK_DIR / "spec_load" / "state" / str(n)
            row: dict[str, Any] = {"slos": n}
            for variant in VARIANTS:
                row[variant] = measure(variant, specs, state, args.repeats)
                log(f"{n:,} SLOs, {variant}: {row[variant]['wall_seconds']:.3f} s "
                    f"({row[variant]['cpu_seconds']:.3f} CPU s)")
            rows.append(row)
        n = max(args.slos)
        log(f"comparing before and after, and profiling, at {n:,} SLOs")
        check = compare(WORK_DIR / "spec_load" / "specs" / str(n), WORK_DIR / "spec_load" / "state" / "compare")
        write_results("spec_load", {"baseline_commit": BASELINE, "repeats": args.repeats, "rows": rows,
                                    "check": check},
                      report(rows, check), "bench.spec_load: loading the spec", code)
    return 0 if check["same_slos"] else 1


if __name__ == "__main__":
    sys.exit(main())
