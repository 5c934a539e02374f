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

Exclusions: for the few tiles an exclusion boundary cuts (``core.backtest.cut_tiles``) the reader
also keeps each sample's events and time, so the replay takes out exactly the events of the
samples inside the interval, as the measuring module counts them. A range-query tile is whole.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.backtest import Tiles, cut_tiles
from slowatch.core.composite import is_composite
from slowatch.core.measure import LOOKBACK_MS, CounterRole, event_queries, le_spellings, shape_of
from slowatch.core.model import SLO, LatencySLI
from slowatch.errors import QueryError

# Prometheus refuses a range query of more than 11,000 points per series ("exceeded maximum
# resolution of 11,000 points per timeseries"): a long history is read in pieces of this many.
MAX_POINTS = 11_000
# Raw samples are read a week at a time: at a 15 s scrape that is 40,320 samples per series, inside
# Prometheus' default --query.max-samples (50M) for selectors of up to a thousand series, and few
# enough queries that their fixed cost does not dominate (a day at a time: 7x the queries, 2x the time).
RAW_PIECE = timedelta(days=7)


# SLOs of one shape read together per raw query (their keys in one regex), as the daemon batches
# them: the query's fixed cost is paid once per group, not once per SLO.
GROUP = 500


Cut = dict[int, list[tuple[float, float]]]
"""(time, events) of each sample of the tiles an exclusion boundary cuts, by tile index."""


def read_all(source: PrometheusSource, slos: Sequence[SLO], starts: Mapping[str, datetime], end: datetime,
             tile: timedelta, executor: Executor, boundaries: Collection[float] = ()) -> dict[str, Tiles]:
    """Good and total events of each SLO per tile in ``(starts[id], end]`` (whole tiles). A tile
    with no sample had no events. Composites have none of their own (their components do).
    ``boundaries``: where exclusions begin and end (unix seconds), for ``Tiles.cut_good/cut_total``."""
    t1, step = int(end.timestamp()), int(tile.total_seconds())
    slos = [s for s in slos if not is_composite(s)]
    roles: dict[str, dict[str, tuple[list[float], Cut]]] = {s.id: {} for s in slos}
    batched: dict[tuple[str, str], list[SLO]] = {}
    ranged = []
    for slo in slos:
        shape = shape_of(slo)
        for role, measure in shape.roles.items():
            if isinstance(measure, CounterRole):
                batched.setdefault((shape.signature, role), []).append(slo)
            else:
                ranged.append((slo, role))
    futures = []
    for (_, role), members in batched.items():
        for i in range(0, len(members), GROUP):
            futures.append(executor.submit(_counted_group, source, members[i:i + GROUP], role, starts, t1, step,
                                           boundaries))
    for slo, role in ranged:
        futures.append(executor.submit(_ranged_one, source, slo, role, int(starts[slo.id].timestamp()), t1, tile))
    for f in futures:
        for sid, got in f.result().items():
            roles[sid].update(got)
    out = {}
    for slo in slos:
        per_role = roles[slo.id]
        total, cut_total = per_role["total"]
        if "good" in per_role:
            good, cut_good = per_role["good"]
        else:
            bad, cut_bad = per_role["bad"]
            good = [t - b if math.isfinite(t) and math.isfinite(b) else math.nan
                    for t, b in zip(total, bad, strict=True)]
            # Good events of a cut tile's samples: its total's, less its errors' (as negative events).
            cut_good = {i: [*cut_total.get(i, []), *((t, -v) for t, v in cut_bad.get(i, []))]
                        for i in cut_total.keys() | cut_bad.keys()}
        out[slo.id] = Tiles(start=int(starts[slo.id].timestamp()), tile=step, good=good, total=total,
                            cut_good=cut_good, cut_total=cut_total)
    return out


def _counted_group(source: PrometheusSource, members: Sequence[SLO], role: str, starts: Mapping[str, datetime],
                   t1: int, step: int, boundaries: Collection[float] = ()
                   ) -> dict[str, dict[str, tuple[list[float], Cut]]]:
    """One role of SLOs sharing a shape, from one raw read of all their series: events per tile
    per SLO (summed over its series; latency buckets over the spellings of its own bound)."""
    shapes = {s.id: shape_of(s) for s in members}
    measure = shapes[members[0].id].roles[role]
    assert isinstance(measure, CounterRole)
    thresholds = {s.id: s.sli.threshold_seconds for s in members if isinstance(s.sli, LatencySLI)}
    selector = measure.selector([shapes[s.id].keys[role] for s in members], thresholds=thresholds.values(),
                                alone=len(members) == 1)
    t0 = min(int(starts[s.id].timestamp()) for s in members)
    n = (t1 - t0) // step
    # Events per tile of each series group the SLOs read: (key, le) -> counts.
    counts: dict[tuple[tuple[str, ...], str], array[float]] = {}
    cuts = cut_tiles(boundaries, t0, step)
    samples: dict[tuple[tuple[str, ...], str], Cut] = {}
    last: dict[tuple[tuple[str, str], ...], float] = {}  # each series' previous sample value
    piece = int(RAW_PIECE.total_seconds())
    # The base sample of the first tile may lie up to a lookback before it (as an instant selector finds it).
    lo = t0 - LOOKBACK_MS // 1000
    context = f"backtest {role} of {members[0].id}" + (f" and {len(members) - 1} more" if len(members) > 1 else "")
    while lo < t1:
        hi = min(t1, lo + piece)
        for labels, points in source.raw_samples(selector, _utc(lo), _utc(hi), context=context):
            series = tuple(sorted(labels.items()))
            group = (tuple(labels.get(name, "") for name in measure.key_labels), labels.get("le", ""))
            row = counts.get(group)
            if row is None:
                row = counts[group] = array("d", bytes(8 * n))
            before = last.get(series)
            for t, v in points:
                if before is not None and t > t0:
                    # A drop is a reset: the counter counted v since it restarted from zero.
                    i = math.ceil((t - t0) / step) - 1
                    events = v - before if v >= before else v
                    row[i] += events
                    if i in cuts:
                        samples.setdefault(group, {}).setdefault(i, []).append((t, events))
                before = v
            if before is not None:
                last[series] = before
        lo = hi
    out: dict[str, dict[str, tuple[list[float], Cut]]] = {}
    for slo in members:
        key = shapes[slo.id].keys[role]
        spellings = set(le_spellings(thresholds[slo.id])) if measure.le and slo.id in thresholds else None
        groups = [g for g in counts if g[0] == key and (spellings is None or g[1] in spellings)]
        skip = (int(starts[slo.id].timestamp()) - t0) // step
        total = [0.0] * (n - skip)
        cut: Cut = {}
        for g in groups:
            total = [a + b for a, b in zip(total, counts[g][skip:], strict=True)]
            for i, points in samples.get(g, {}).items():
                if i >= skip:
                    cut.setdefault(i - skip, []).extend(points)
        out[slo.id] = {role: (total, cut)}
    return out


def _ranged_one(source: PrometheusSource, slo: SLO, role: str, t0: int, t1: int, tile: timedelta
                ) -> dict[str, dict[str, tuple[list[float], Cut]]]:
    return {slo.id: {role: (_ranged(source, slo, role, t0, t1, tile), {})}}


def _ranged(source: PrometheusSource, slo: SLO, role: str, t0: int, t1: int, tile: timedelta) -> list[float]:
    """Events per tile as a range query of the measuring module's count of the last tile."""
    step = int(tile.total_seconds())
    n = (t1 - t0) // step
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
