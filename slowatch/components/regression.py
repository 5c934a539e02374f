"""The live regression check: an SLO's last window against the same window one baseline earlier.

Used by ``slowatch regress PATH... --baseline`` once, and by the daemon for the SLOs whose spec
has ``alerting.regression``, every ``CHECK_EVERY`` (the compared windows are hours or days long:
checking each 30 s cycle would ask Prometheus the same thing a hundred times).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import structlog

from slowatch.core import regress
from slowatch.core.measure import PROMETHEUS, Flavour, regression_queries
from slowatch.core.model import SLO
from slowatch.errors import SourceError

log = structlog.get_logger("slowatch")

CHECK_EVERY = timedelta(minutes=5)
# What each measure's direction is: latency and the error ratio are worse higher, throughput lower.
DIRECTIONS: Mapping[str, regress.Direction] = {
    "error_ratio": regress.Direction.HIGHER_IS_WORSE, "throughput": regress.Direction.LOWER_IS_WORSE,
}


class Sample(Protocol):
    @property
    def value(self) -> float: ...


class InstantSource(Protocol):
    def query(self, promql: str, at: datetime, *, context: str) -> Sequence[Sample]: ...

    def flavour(self) -> Flavour:
        """Which query language the engine speaks (asked once; may raise SourceError)."""
        ...


def direction(measure: str) -> regress.Direction:
    return DIRECTIONS.get(measure, regress.direction_of(measure))


def measures(source: InstantSource, slo: SLO, window: timedelta, at: datetime, then: datetime,
             flavour: Flavour = PROMETHEUS) -> tuple[dict[str, Decimal | None], dict[str, Decimal | None]]:
    """(baseline, current) value of each measure; None where the window has no such data."""
    baseline: dict[str, Decimal | None] = {}
    current: dict[str, Decimal | None] = {}
    for measure, promql in regression_queries(slo, window, flavour).items():
        for when, into in ((then, baseline), (at, current)):
            samples = source.query(promql, when, context=f"slo={slo.id} regression {measure}")
            values = [s.value for s in samples if math.isfinite(s.value)]
            into[measure] = Decimal(repr(values[0])) if len(values) == 1 else None
    return baseline, current


def rows(slo: SLO, baseline: Mapping[str, Decimal | None], current: Mapping[str, Decimal | None],
         threshold: Decimal) -> list[regress.Row]:
    return regress.compare(baseline, current, threshold, {m: direction(m) for m in {*baseline, *current}},
                           zero_baseline_shown=True)


class RegressionWatch:
    """The daemon's regression checks; ``findings`` is what ``alerting.step`` takes."""

    def __init__(self, source: InstantSource, every: timedelta = CHECK_EVERY) -> None:
        self._source = source
        self._every = every
        self._last: datetime | None = None
        self._findings: dict[str, tuple[regress.Row, ...]] = {}

    def run(self, slos: Sequence[SLO], at: datetime) -> Mapping[str, tuple[regress.Row, ...]]:
        """Check the SLOs with a regression policy when due; the findings of the last check of each
        (an SLO whose check failed this time is left out, so its alerts stay as they are)."""
        watched = [s for s in slos if s.alerting.regression is not None]
        if self._last is not None and at - self._last < self._every:
            return self.findings(watched)
        self._last = at
        if not watched:
            return {}
        try:
            # VictoriaMetrics gets its own flavour of the queries, as the daemon's measuring does.
            flavour = self._source.flavour()
        except SourceError as exc:
            log.warning("regression checks skipped; their alerts stay as they are", error=str(exc))
            self._findings.clear()
            return {}
        for slo in watched:
            policy = slo.alerting.regression
            assert policy is not None
            try:
                old, new = measures(self._source, slo, policy.window, at, at - policy.baseline, flavour)
            except SourceError as exc:
                log.warning("regression check failed; its alerts stay as they are", slo=slo.id, error=str(exc))
                self._findings.pop(slo.id, None)
                continue
            self._findings[slo.id] = tuple(rows(slo, old, new, Decimal(repr(policy.threshold))))
        return self.findings(watched)

    def findings(self, slos: Sequence[SLO]) -> dict[str, tuple[regress.Row, ...]]:
        ids = {s.id for s in slos}
        self._findings = {k: v for k, v in self._findings.items() if k in ids}
        return dict(self._findings)
