"""``slowatch check --live``: does the data the spec names exist in Prometheus?

Each series selector an SLO reads must match series in its window, and each latency threshold
must equal an existing ``le`` bound (else the SLI would silently read 0%); the problem lists the
bounds that do exist. A throughput query's rate() or increase() range must hold two samples at
its series' scrape interval: Prometheus 3's ranges are left-open, (t - d, t], so ``rate(x[1m])``
over 60 s samples holds one sample and the SLI has no slice at all (Prometheus 2's closed range
holds two only when the scrapes land on both edges). An error, not a warning: the SLO would be
no_data for good, and the fix is one edit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import promql_parser

from slowatch.core.measure import le_spellings
from slowatch.core.model import SLO, CompositeSLI, LatencySLI, RatioSLI, ThroughputSLI, window_span
from slowatch.core.promql import WINDOW_PLACEHOLDER, go_float, selector_with
from slowatch.core.windows import format_duration

# Functions that need two samples in their range (one sample gives no value).
TWO_SAMPLE_FUNCTIONS = frozenset({"rate", "increase", "irate"})
MIN_SAMPLES_IN_RANGE = 2
# How far back the scrape interval is measured: 3 samples at Prometheus' default 1m, 2 at 5m.
SCRAPE_INTERVAL_LOOKBACK = timedelta(minutes=10)


class SeriesSource(Protocol):
    """What the check reads: Prometheus' series API (``adapters.prometheus.PrometheusSource``)."""

    def series(self, selector: str, start: datetime, end: datetime) -> Sequence[Mapping[str, str]]: ...

    def raw_samples(self, selector: str, start: datetime, end: datetime, *, context: str
                    ) -> Sequence[tuple[Mapping[str, str], Sequence[tuple[float, float]]]]: ...


def selectors_in(expr: str) -> list[str]:
    """Every series selector in a PromQL expression, in order."""
    found: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(str(node))

    promql_parser.walk(promql_parser.parse(expr.replace(WINDOW_PLACEHOLDER, "5m")), pre_visit=visit)
    return found


def _selectors(slo: SLO) -> list[str]:
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        exprs = [e for e in (sli.total, sli.good, sli.errors) if e]
        return [s for e in exprs for s in (selectors_in(e) if sli.raw else [e])]
    if isinstance(sli, LatencySLI):
        return [selector_with(f"{sli.histogram}_count", sli.selector)]
    assert isinstance(sli, ThroughputSLI)
    return selectors_in(sli.query)


def rate_ranges_in(expr: str) -> list[tuple[str, timedelta]]:
    """(selector, range) of every rate(), increase() and irate() in a PromQL expression."""
    found: list[tuple[str, timedelta]] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name in TWO_SAMPLE_FUNCTIONS:
            arg = node.args[0]
            if isinstance(arg, promql_parser.MatrixSelector):
                found.append((str(arg.vector_selector), arg.range))

    promql_parser.walk(promql_parser.parse(expr), pre_visit=visit)
    return found


def scrape_interval(source: SeriesSource, selector: str, at: datetime) -> timedelta | None:
    """The slowest series' interval (each series' smallest gap, so a missed scrape does not
    count) over the lookback before ``at``; None with fewer than two samples in every series."""
    gaps = [min(b - a for (a, _), (b, _) in itertools.pairwise(points))
            for _, points in source.raw_samples(selector, at - SCRAPE_INTERVAL_LOOKBACK, at,
                                                context=f"scrape interval of {selector}")
            if len(points) >= MIN_SAMPLES_IN_RANGE]
    return timedelta(seconds=max(gaps)) if gaps else None


def _short_ranges(where: str, sli: ThroughputSLI, source: SeriesSource, at: datetime) -> list[str]:
    problems = []
    for selector, rng in dict.fromkeys(rate_ranges_in(sli.query)):
        interval = scrape_interval(source, selector, at)
        if interval is not None and rng < MIN_SAMPLES_IN_RANGE * interval:
            problems.append(
                f"{where}: rate/increase(...[{format_duration(rng)}]) over {selector}'s "
                f"{format_duration(interval)} samples holds one sample on Prometheus 3: "
                f"use [{format_duration(MIN_SAMPLES_IN_RANGE * interval)}] or more")
    return problems


def _parse_le(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def live_problems(slos: Sequence[SLO], source: SeriesSource, at: datetime) -> list[str]:
    problems: list[str] = []
    for slo in slos:
        if isinstance(slo.sli, CompositeSLI):
            continue  # no query of its own: its components are checked as the SLOs they are
        span = window_span(slo.window, at)
        where = f"{slo.source}: {slo.id}"
        for selector in dict.fromkeys(_selectors(slo)):
            if not source.series(selector, span.start, at):
                problems.append(f"{where}: no series match {selector} in the window ({slo.window.name})")
        sli = slo.sli
        if isinstance(sli, ThroughputSLI):
            problems.extend(_short_ranges(where, sli, source, at))
        if isinstance(sli, LatencySLI):
            bucket = selector_with(f"{sli.histogram}_bucket", sli.selector)
            les = {s.get("le", "") for s in source.series(bucket, span.start, at)}
            bounds = {b for le in les if (b := _parse_le(le)) is not None}
            # The daemon's own bound match (core/measure.le_spellings), not a numeric one: "0.20"
            # equals 0.2 as a number, but no query would select it.
            if bounds and not les & set(le_spellings(sli.threshold_seconds)):
                shown = ", ".join(go_float(b) for b in sorted(bounds) if not math.isinf(b))
                problems.append(
                    f"{where}: sli.latency.threshold {go_float(sli.threshold_seconds)}s is not a bucket bound "
                    f"of {sli.histogram}; existing bounds (seconds): {shown}"
                )
            elif not bounds:
                problems.append(f"{where}: no series match {bucket} in the window ({slo.window.name})")
    return problems
