"""Accuracy by engine: the worst relative error of slowatch's numbers against the generator's exact
counts, per query engine and version, at sample-aligned instants, between samples, and for the
generated rules evaluated as Prometheus schedules them.

    .venv/bin/python -m bench.accuracy            # writes bench/results/accuracy.{json,md}

Each engine (Prometheus 2.42 and 3.5, VictoriaMetrics 1.79 and 1.145; ``tests/support/processes``
starts them) serves the 31-day test history (``tests/support/generator``: a counter reset, two
incidents, series that vanish 2 hours before the end). Compared, for every ratio and latency SLO
of ``deploy/slos`` (throughput SLOs count slices, not events: their exactness is tested in
``tests/integration/test_eval.py``), the budget consumed and the burn rate of every window
(5m .. 3d and the SLO window):

* **daemon aligned**: ``slowatch eval`` at instants that are multiples of the 60 s sample step
  (the end of the auth incident, 4 minutes after the agent counters reset, the end of the history
  2 hours after the knowledge series vanished, 2 days after the history starts);
* **daemon unaligned**: the same instants plus 17 s and 41.5 s (between two samples);
  each split by whether the window (or the lookback before it) holds the counter reset;
* **rules as scheduled**: the generated recording rules evaluated at the instants a real rule
  group evaluates: every 5 minutes plus an offset Prometheus hashes from the group (here 13.2 s
  and 186.7 s, the offset of one example group on 2.42). The period group's steps are evaluated
  by one range query per SLO starting at that offset (what the rule manager and ``promtool tsdb
  create-blocks-from rules`` record), summed over the SLO window as ``sum_over_time`` does; the
  windows group's event counts are instant queries at the last evaluation. Prometheus' rule
  manager evaluates only "now", so this is how past evaluations are reproduced. On
  VictoriaMetrics the same expressions are what vmalert would send. Column "SLO window": the
  budget consumed of the period group; "burn rates": the windows group, 5m .. 3d.

The truth at an instant ``t`` is the events the scrapes up to ``t`` saw in ``(t - W, t]``: the
generator's counts between the last samples at or before ``t - W`` and ``t``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import REPO_DIR, CodeWatch, log, md_table, write_results
from slowatch.cli import main as slowatch
from slowatch.core import conventions as c
from slowatch.core.measure import le_spellings, split_selector
from slowatch.core.model import SLO, LatencySLI, RatioSLI, RollingWindow
from slowatch.core.rules import event_counts, period_group
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration
from slowatch.spec import load_specs
from tests.conftest import HISTORY_END
from tests.support.generator import DAY, History, generate
from tests.support.processes import (
    PROMETHEUS_VERSIONS,
    VICTORIA_METRICS_VERSIONS,
    Server,
    create_blocks,
    start_prometheus,
    start_victoria_metrics,
)

EXAMPLE = REPO_DIR / "deploy" / "slos"
STEP = int(parse_duration(c.STEP).total_seconds())
# Offsets of a rule group's evaluations past each 5-minute mark (Prometheus hashes them from the
# group and file name): one near the mark, and one example group's on Prometheus 2.42.
RULE_OFFSETS = (13.2, 186.7)
UNALIGNED = (17.0, 41.5)
LOOKBACK = 300  # Prometheus' default lookback: where the sample before a window may lie
ALIGNED, BETWEEN, RESET = "daemon aligned", "daemon unaligned", ", counter reset in window"
RULES_BUDGET, RULES_BURN = "rules as scheduled: SLO window", "rules as scheduled: burn rates"
COLUMNS = (ALIGNED, ALIGNED + RESET, BETWEEN, BETWEEN + RESET, RULES_BUDGET, RULES_BURN)
Labels = dict[str, str | frozenset[str]]


def _filters(history: History, metric: str, selector: str) -> tuple[str, Labels]:
    """A selector as the generator's label filters: regex and negative matchers become the set
    of values the history holds that match them."""
    name, other, equal = split_selector(selector)
    labels: Labels = dict(equal)
    for label, op, value in other:
        values = {dict(s.labels).get(label, "") for s in history.series if s.name == (name or metric)}
        labels[label] = frozenset(v for v in values if _matches(op, value, v))
    return name or metric, labels


def _matches(op: str, want: str, value: str) -> bool:
    if op in ("=", "!="):
        return (value == want) == (op == "=")
    return (re.fullmatch(want, value) is not None) == (op == "=~")


def truth(history: History, slo: SLO, start: int, end: int) -> tuple[int, int]:
    """(bad, total) events of ``slo`` in ``(start, end]``."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        total = history.increase(*_filters(history, "", sli.total), start, end)
        part = history.increase(*_filters(history, "", sli.good or sli.errors or ""), start, end)
        return (total - part if sli.good else part), total
    assert isinstance(sli, LatencySLI)
    sel = sli.histogram + (sli.selector if sli.selector.strip() else "{}")
    metric, labels = _filters(history, sli.histogram, sel)
    total = history.increase(metric + "_count", labels, start, end)
    good = history.increase(metric + "_bucket", {**labels, "le": frozenset(le_spellings(sli.threshold_seconds))},
                            start, end)
    return total - good, total


def _rel(got: float | None, want: float | None) -> float:
    if got is None or want is None:
        return 0.0 if got is None and want is None else float("inf")
    return abs(got - want) / abs(want) if want else abs(got)


@dataclass
class Worst:
    """The worst relative error seen, and where."""

    error: float = 0.0
    where: str = ""

    def add(self, error: float, where: str) -> None:
        if error > self.error or not self.where:
            self.error, self.where = error, where


def windows(slo: SLO) -> dict[str, int]:
    out = {w: int(parse_duration(w).total_seconds()) for w in BURN_RATE_WINDOWS}
    out[slo.window.name] = int(parse_duration(slo.window.name).total_seconds())
    return out


def _reset_in(history: History, start: int, end: int) -> bool:
    """The counter reset lies in the window or in the lookback before it (where the base sample is)."""
    return start - LOOKBACK < history.scenario.reset.at <= end


def eval_errors(url: str, slos: Sequence[SLO], history: History, at: float, rows: Mapping[str, Worst],
                column: str) -> None:
    """The daemon's errors at ``at`` into ``rows[column]`` (``column + RESET`` for windows
    holding the counter reset)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        slowatch(["eval", str(EXAMPLE), "--at", repr(at), "--format", "json", "--prometheus-url", url])
    got = {(s["service"], s["slo"]): s for s in json.loads(out.getvalue())["slos"]}
    t = int(at)  # the last sample at or before `at` (samples are on whole minutes)
    for slo in slos:
        status = got[(slo.service, slo.name)]
        budget = 1 - slo.objective_percent / 100
        length = windows(slo)[slo.window.name]
        bad, total = truth(history, slo, t - length, t)
        worst = rows[column + (RESET if _reset_in(history, t - length, t) else "")]
        worst.add(_rel(status["error_budget"]["consumed"], bad / total / budget), f"{slo.id} budget at {at}")
        for w, seconds in windows(slo).items():
            wb, wt = truth(history, slo, t - seconds, t)
            worst = rows[column + (RESET if _reset_in(history, t - seconds, t) else "")]
            worst.add(_rel(status["burn_rates"][w], wb / wt / budget if wt else None), f"{slo.id} {w} at {at}")


def _query(url: str, path: str, form: Mapping[str, str]) -> list[dict[str, Any]]:
    r = requests.post(url + path, data=form, timeout=600)
    body = r.json()
    if body.get("status") != "success":
        raise RuntimeError(f"{url}{path}: {body.get('error')}: {form.get('query', '')[:200]}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _one(result: list[dict[str, Any]]) -> float:
    return float(result[0]["value"][1]) if result else 0.0


def rule_errors(url: str, slos: Sequence[SLO], history: History, end: int, offset: float,
                rows: Mapping[str, Worst]) -> None:
    """The generated rules' budget consumed and burn rates at the group's last evaluation before
    ``end``, evaluated every 5 minutes at ``offset`` past the mark."""
    last = (end // STEP) * STEP + offset
    if last > end:
        last -= STEP
    t = int(last)
    for slo in slos:
        assert isinstance(slo.window, RollingWindow)
        group = period_group(slo)
        assert group is not None
        step = {r.record: r.expr for r in group.rules if hasattr(r, "record")}
        length = int(slo.window.duration.total_seconds())
        first = last - length + STEP  # the steps in (last - W, last]
        sums = []
        for record in (c.STEP_EVENTS_GOOD, c.STEP_EVENTS_TOTAL):
            series = _query(url, "/api/v1/query_range", {"query": step[record], "start": repr(first),
                                                            "end": repr(last), "step": str(STEP)})
            sums.append(sum(float(v) for s in series for _, v in s["values"]))
        good, total = sums
        budget = 1 - slo.objective_percent / 100
        bad_true, total_true = truth(history, slo, t - length, t)
        rows[RULES_BUDGET].add(_rel((1 - good / total) / budget, bad_true / total_true / budget),
                               f"{slo.id} rules budget, offset {offset}s, at {last}")
        for w in BURN_RATE_WINDOWS:
            good_q, total_q = event_counts(slo, w)
            g = _one(_query(url, "/api/v1/query", {"query": good_q, "time": repr(last)}))
            tt = _one(_query(url, "/api/v1/query", {"query": total_q, "time": repr(last)}))
            seconds = int(parse_duration(w).total_seconds())
            wb, wt = truth(history, slo, t - seconds, t)
            rows[RULES_BURN].add(_rel((1 - g / tt) / budget if tt else None, wb / wt / budget if wt else None),
                                 f"{slo.id} rules {w}, offset {offset}s, at {last}")


@contextlib.contextmanager
def engines(history: History, work: Path, urls: Path | None) -> Iterator[dict[str, str]]:
    """name -> URL of every engine over the history (``urls``: ones already serving it)."""
    if urls is not None:
        yield json.loads(urls.read_text())
        return
    servers: dict[str, Server] = {}
    try:
        blocks = create_blocks(history.series, work / "blocks")
        for v in PROMETHEUS_VERSIONS:
            log(f"starting prometheus {v}")
            servers[f"prometheus-{v}"] = start_prometheus(work / f"prometheus-{v}", blocks, version=v)
        for v in VICTORIA_METRICS_VERSIONS:
            log(f"starting victoria-metrics {v}")
            vm = start_victoria_metrics(work / f"victoria-metrics-{v}", version=v)
            servers[f"victoria-metrics-{v}"] = vm
            vm.import_series(history.series, work / f"victoria-metrics-{v}")
        yield {name: s.url for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()


def measure(urls: Mapping[str, str], history: History) -> dict[str, dict[str, Worst]]:
    slos = [s for s in load_specs([EXAMPLE]) if isinstance(s.sli, RatioSLI | LatencySLI)]
    rolling = [s for s in slos if isinstance(s.window, RollingWindow)]
    incident = history.scenario.episode("auth-incident").end
    aligned = [incident, history.scenario.reset.at + 240, history.end, history.start + 2 * DAY]
    out: dict[str, dict[str, Worst]] = {}
    for name, url in urls.items():
        rows = {column: Worst() for column in COLUMNS}
        for at in aligned:
            log(f"{name}: eval at {at}")
            eval_errors(url, slos, history, float(at), rows, ALIGNED)
            for shift in UNALIGNED:
                eval_errors(url, slos, history, at + shift, rows, BETWEEN)
        for offset in RULE_OFFSETS:
            for end in (incident, history.scenario.reset.at + 3 * 3600):
                log(f"{name}: rules at offset {offset}s before {end}")
                rule_errors(url, rolling, history, end, offset, rows)
        out[name] = rows
    return out


def _fmt(error: float) -> str:
    return "0 (exact)" if error == 0 else f"{error:.2e}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n\n")[0])
    p.add_argument("--urls", type=Path, help="a JSON file {engine: url} of engines already serving the "
                                             "test history (default: start them)")
    args = p.parse_args(argv)
    code = CodeWatch()
    history = generate(HISTORY_END)
    with tempfile.TemporaryDirectory(prefix="slowatch-accuracy-") as tmp, \
            engines(history, Path(tmp), args.urls) as urls:
        results = measure(urls, history)
    columns = COLUMNS
    table = md_table(["engine", *columns], [[name, *(_fmt(r[col].error) for col in columns)]
                                            for name, r in results.items()])
    where = md_table(["engine", "column", "worst case"], [[name, col, r[col].where] for name, r in results.items()
                                                           for col in columns if r[col].error > 0])
    body = (f"Worst relative error of the budget consumed and of every burn rate (5m .. 3d and the SLO "
            f"window) against the generator's exact counts, over {len(load_specs([EXAMPLE]))} example "
            f"SLOs (ratio and latency).\n\n{table}\n\nWhere the worst errors are:\n\n{where}\n\n"
            f"How each column is measured: the docstring of `bench/accuracy.py`.\n")
    data = {name: {col: {"error": r[col].error, "where": r[col].where} for col in columns}
            for name, r in results.items()}
    write_results("accuracy", {"results": data}, body, "Accuracy by engine", code)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
