"""Reads an SLO's events over a stretch of history as counts per tile, for the backtest.

Each role (good or bad, and total events) is one range query whose expression is the measuring
module's count of the events in ``(t - tile, t]`` (core/measure.py: the same text the daemon and
``eval`` use), evaluated at every tile end. Adjacent tiles share their boundary samples, so the
query reads each sample of the history about once, and never once per step of the replay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.backtest import Tiles
from slowatch.core.measure import event_queries
from slowatch.core.model import SLO
from slowatch.errors import QueryError

# Prometheus refuses a range query of more than 11,000 points per series ("exceeded maximum
# resolution of 11,000 points per timeseries"): a long history is read in pieces of this many.
MAX_POINTS = 11_000


def read_tiles(source: PrometheusSource, slo: SLO, start: datetime, end: datetime, tile: timedelta) -> Tiles:
    """Good and total events of ``slo`` per tile in ``(start, end]``; ``start`` and ``end`` are
    whole tiles. A tile with no answer had no events (an empty sum)."""
    t0, t1, step = int(start.timestamp()), int(end.timestamp()), int(tile.total_seconds())
    n = (t1 - t0) // step
    queries = event_queries(slo, tile, source.flavour())
    per_role: dict[str, list[float]] = {}
    for role, promql in queries.items():
        values = [0.0] * n
        first = t0 + step
        while first <= t1:
            last = min(t1, first + (MAX_POINTS - 1) * step)
            answer = source.query_range(promql, datetime.fromtimestamp(first, UTC), datetime.fromtimestamp(last, UTC),
                                        tile, context=f"slo={slo.id} backtest {role}")
            if len(answer) > 1:
                raise QueryError(f"slo={slo.id} backtest {role}: {len(answer)} series where one is expected; "
                                 "aggregate the query, e.g. sum(...)")
            for _, points in answer:
                for t, v in points:
                    i = (t - t0) // step - 1
                    if 0 <= i < n:
                        values[i] = v
            first = last + step
        per_role[role] = values
    total = per_role["total"]
    if "good" in per_role:
        good = per_role["good"]
    else:
        good = [t - b if math.isfinite(t) and math.isfinite(b) else math.nan
                for t, b in zip(total, per_role["bad"], strict=True)]
    return Tiles(start=t0, tile=step, good=good, total=total)


def read_all(source: PrometheusSource, slos: Sequence[SLO], starts: Mapping[str, datetime], end: datetime,
             tile: timedelta, executor: Executor) -> dict[str, Tiles]:
    futures = {s.id: executor.submit(read_tiles, source, s, starts[s.id], end, tile) for s in slos}
    return {k: f.result() for k, f in futures.items()}
