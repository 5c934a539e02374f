"""Reads an SLO's events over a stretch of history as counts per tile, for the backtest.

Counter SLIs (ratios of selectors, latency histograms) are read as their raw samples, once: a
range-vector query per piece of history returns every scraped sample of the SLI's series, and each
series' events are the differences of consecutive samples (a drop is a counter reset: the new
value is what was counted since), put in the tile of the later sample. That is the measuring
module's own definition of a count (core/measure.py: the difference of boundary samples, resets
counted from zero), so the replay sees exactly the daemon's numbers at sample-aligned steps, on
every engine, without any range-boundary or extrapolation semantics, at one read per sample.

Throughput SLIs and raw-PromQL ratios have no samples of their own to read: they are range
queries of the measuring module's count of ``(t - tile, t]`` at every tile end.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.backtest import Tiles
from slowatch.core.measure import LOOKBACK_MS, CounterRole, event_queries, shape_of
from slowatch.core.model import SLO, LatencySLI
from slowatch.errors import QueryError

# Prometheus refuses a range query of more than 11,000 points per series ("exceeded maximum
# resolution of 11,000 points per timeseries"): a long history is read in pieces of this many.
MAX_POINTS = 11_000
# Raw samples are read a week at a time: at a 15 s scrape that is 40,320 samples per series, inside
# Prometheus' default --query.max-samples (50M) for selectors of up to a thousand series, and few
# enough queries that their fixed cost does not dominate (a day at a time: 7x the queries, 2x the time).
RAW_PIECE = timedelta(days=7)


def read_tiles(source: PrometheusSource, slo: SLO, start: datetime, end: datetime, tile: timedelta) -> Tiles:
    """Good and total events of ``slo`` per tile in ``(start, end]``; ``start`` and ``end`` are
    whole tiles. A tile with no sample had no events."""
    t0, t1, step = int(start.timestamp()), int(end.timestamp()), int(tile.total_seconds())
    n = (t1 - t0) // step
    shape = shape_of(slo)
    thresholds = [slo.sli.threshold_seconds] if isinstance(slo.sli, LatencySLI) else []
    per_role: dict[str, list[float]] = {}
    for role, measure in shape.roles.items():
        if isinstance(measure, CounterRole):
            selector = measure.selector([shape.keys[role]], thresholds=thresholds, alone=True)
            per_role[role] = _counted(source, selector, t0, t1, step, n, context=f"slo={slo.id} backtest {role}")
        else:
            per_role[role] = _ranged(source, slo, role, t0, t1, tile, n)
    total = per_role["total"]
    if "good" in per_role:
        good = per_role["good"]
    else:
        good = [t - b if math.isfinite(t) and math.isfinite(b) else math.nan
                for t, b in zip(total, per_role["bad"], strict=True)]
    return Tiles(start=t0, tile=step, good=good, total=total)


def _counted(source: PrometheusSource, selector: str, t0: int, t1: int, step: int, n: int, *,
             context: str) -> list[float]:
    """Events per tile from the raw samples of ``selector``'s series (summed over series)."""
    counts = [0.0] * n
    last: dict[tuple[tuple[str, str], ...], float] = {}  # each series' previous sample value
    piece = int(RAW_PIECE.total_seconds())
    # The base sample of the first tile may lie up to a lookback before it (as an instant selector finds it).
    lo = t0 - LOOKBACK_MS // 1000
    while lo < t1:
        hi = min(t1, lo + piece)
        for labels, points in source.raw_samples(selector, _utc(lo), _utc(hi), context=context):
            key = tuple(sorted(labels.items()))
            before = last.get(key)
            for t, v in points:
                if before is not None and t > t0:
                    # A drop is a reset: the counter counted v since it restarted from zero.
                    k = math.ceil((t - t0) / step) - 1
                    counts[k] += v - before if v >= before else v
                before = v
            if before is not None:
                last[key] = before
        lo = hi
    return counts


def _ranged(source: PrometheusSource, slo: SLO, role: str, t0: int, t1: int, tile: timedelta, n: int) -> list[float]:
    """Events per tile as a range query of the measuring module's count of the last tile."""
    step = int(tile.total_seconds())
    promql = event_queries(slo, tile, source.flavour())[role]
    values = [0.0] * n
    first = t0 + step
    while first <= t1:
        last = min(t1, first + (MAX_POINTS - 1) * step)
        answer = source.query_range(promql, _utc(first), _utc(last), tile, context=f"slo={slo.id} backtest {role}")
        if len(answer) > 1:
            raise QueryError(f"slo={slo.id} backtest {role}: {len(answer)} series where one is expected; "
                             "aggregate the query, e.g. sum(...)")
        for _, points in answer:
            for t, v in points:
                i = (t - t0) // step - 1
                if 0 <= i < n:
                    values[i] = v
        first = last + step
    return values


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def read_all(source: PrometheusSource, slos: Sequence[SLO], starts: Mapping[str, datetime], end: datetime,
             tile: timedelta, executor: Executor) -> dict[str, Tiles]:
    futures = {s.id: executor.submit(read_tiles, source, s, starts[s.id], end, tile) for s in slos}
    return {k: f.result() for k, f in futures.items()}
