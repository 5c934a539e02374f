"""``slowatch check --live``: does the data the spec names exist in Prometheus?

Each series selector an SLO reads must match series in its window, and each latency threshold
must equal an existing ``le`` bound (else the SLI would silently read 0%); the problem lists the
bounds that do exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

import promql_parser

from slowatch.core.measure import le_spellings
from slowatch.core.model import SLO, LatencySLI, RatioSLI, ThroughputSLI, window_span
from slowatch.core.promql import WINDOW_PLACEHOLDER, go_float, selector_with


class SeriesSource(Protocol):
    """What the check reads: Prometheus' series API (``adapters.prometheus.PrometheusSource``)."""

    def series(self, selector: str, start: datetime, end: datetime) -> Sequence[Mapping[str, str]]: ...


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


def _parse_le(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def live_problems(slos: Sequence[SLO], source: SeriesSource, at: datetime) -> list[str]:
    problems: list[str] = []
    for slo in slos:
        span = window_span(slo.window, at)
        where = f"{slo.source}: {slo.id}"
        for selector in dict.fromkeys(_selectors(slo)):
            if not source.series(selector, span.start, at):
                problems.append(f"{where}: no series match {selector} in the window ({slo.window.name})")
        sli = slo.sli
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
