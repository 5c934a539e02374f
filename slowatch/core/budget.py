"""Event counts per window -> SLI, error budget, burn rates, time to exhaustion, state.

Raw floats throughout: nothing is rounded before it is compared (rounding is for display).
Missing data is a state (``no_data``), never a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from slowatch.core.conventions import State
from slowatch.core.exclusions import excluded_seconds, intervals, merged
from slowatch.core.model import SLO, Exclusion, alert_rows, nominal_length, window_span
from slowatch.core.windows import (
    BURN_RATE_WINDOWS,
    CURRENT_BURN_WINDOW,
    BurnRateAlertWindow,
    parse_duration,
)

# Key of the SLO's own window in a Measurement (its display name goes into the document).
SLO_WINDOW = "slo"


@dataclass(frozen=True)
class EventCounts:
    """Good and total events (or time slices) counted in one window."""

    good: float
    total: float

    @property
    def bad(self) -> float:
        return self.total - self.good


@dataclass(frozen=True)
class Measurement:
    """Everything measured for one SLO at one instant: counts per window name
    (``BURN_RATE_WINDOWS`` and ``SLO_WINDOW``; a missing window had no events), and problems the
    source found in the data (e.g. a latency threshold that is no bucket bound)."""

    at: datetime
    counts: Mapping[str, EventCounts]
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    """Notes the query API attached to answers it still vouched for (Prometheus 3's ``infos``):
    the values stand, /status shows the notes."""


@dataclass(frozen=True)
class Occurrence:
    """The exclusion covering an instant, with the bounds of its current occurrence."""

    exclusion: Exclusion
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BudgetStatus:
    slo: SLO
    at: datetime
    state: State
    sli: float | None
    budget_total: float
    consumed: float
    burn_rates: Mapping[str, float | None]
    """Per window name in ``BURN_RATE_WINDOWS`` plus the SLO window's display name."""
    exhaustion_at: datetime | None
    burning: tuple[BurnRateAlertWindow, ...] = ()
    """The burn-rate alert rows whose long and short windows both burn at or above the factor."""
    counts: Mapping[str, EventCounts] = field(default_factory=dict)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    """The measurement's ``warnings``, shown in /status."""
    excluded_seconds: Mapping[str, float] = field(default_factory=dict)
    """Seconds of each window excluded (``SLO.exclusions``), keyed as ``burn_rates``; empty for an
    SLO without exclusions."""
    exclusion: Occurrence | None = None
    """The exclusion covering ``at``, if any."""
    components: Mapping[str, Mapping[str, EventCounts]] = field(default_factory=dict)
    """A composite's components' counts per window (keyed as ``counts``), by component id: /status
    shows each one's SLI beside the composite's (``core.composite``)."""

    @property
    def remaining(self) -> float:
        return 1.0 - self.consumed


def quality_problem(name: str, c: EventCounts) -> str | None:
    if any(math.isnan(v) or math.isinf(v) for v in (c.good, c.total)):
        return f"window {name}: good={c.good} total={c.total} is not a finite count"
    if c.total < 0 or c.good < 0:
        return f"window {name}: negative count (good={c.good!r}, total={c.total!r}): errors exceed total?"
    if c.good > c.total:
        return f"window {name}: good events {c.good!r} exceed total {c.total!r}; check the selectors"
    return None


def burn_rate(counts: EventCounts | None, budget: float) -> float | None:
    """Error rate divided by the budgeted error rate; None when the window saw no events."""
    if counts is None or counts.total <= 0:
        return None
    return (counts.bad / counts.total) / budget


def window_excluded_seconds(slo: SLO, at: datetime) -> dict[str, float]:
    """Seconds of each window ending at ``at`` that ``slo``'s exclusions cover, keyed as
    ``BudgetStatus.burn_rates``; empty without exclusions."""
    if not slo.exclusions:
        return {}
    lengths = {w: parse_duration(w) for w in BURN_RATE_WINDOWS}
    lengths[slo.window.name] = window_span(slo.window, at).elapsed
    return {w: excluded_seconds(merged(slo.exclusions, at - d, at)) for w, d in lengths.items()}


def occurrence(exclusions: Sequence[Exclusion], at: datetime) -> Occurrence | None:
    """The first exclusion (in spec order) covering ``at``, with its current occurrence."""
    for e in exclusions:
        # An occurrence holding `at` starts after `at - duration` and ends by `at + duration`, so
        # this range returns it unclipped (a one-off one: its own start and end).
        reach = e.duration if e.rrule is not None else timedelta(0)
        lo, hi = (at - reach, at + reach) if e.rrule is not None else (e.start or at, e.end or at)
        for start, end in intervals(e, lo, hi):
            if start <= at < end:
                return Occurrence(e, start, end)
    return None


def _with_exclusions(status: BudgetStatus) -> BudgetStatus:
    slo, at = status.slo, status.at
    if not slo.exclusions:
        return status
    return replace(status, excluded_seconds=window_excluded_seconds(slo, at),
                   exclusion=occurrence(slo.exclusions, at))


def evaluate(slo: SLO, m: Measurement) -> BudgetStatus:
    """The budget of ``slo`` from the counts measured at ``m.at``."""
    return _with_exclusions(_evaluate(slo, m))


def _evaluate(slo: SLO, m: Measurement) -> BudgetStatus:
    window_name = slo.window.name
    budget = slo.budget

    problems = list(m.problems)
    for name, c in m.counts.items():
        p = quality_problem(window_name if name == SLO_WINDOW else name, c)
        if p:
            problems.append(p)
    if problems:
        return BudgetStatus(
            slo=slo, at=m.at, state="error", sli=None, budget_total=budget, consumed=0.0,
            burn_rates={}, exhaustion_at=None, counts=m.counts, error="; ".join(problems),
        )

    rates: dict[str, float | None] = {w: burn_rate(m.counts.get(w), budget) for w in BURN_RATE_WINDOWS}
    whole = m.counts.get(SLO_WINDOW)
    rates[window_name] = burn_rate(whole, budget)

    if whole is None or whole.total <= 0:
        return BudgetStatus(
            slo=slo, at=m.at, state="no_data", sli=None, budget_total=budget, consumed=0.0,
            burn_rates=rates, exhaustion_at=None, counts=m.counts,
        )

    sli = whole.good / whole.total
    consumed = (whole.bad / whole.total) / budget
    span = window_span(slo.window, m.at)

    burning: tuple[BurnRateAlertWindow, ...] = ()
    if slo.alerting.burn_rate:
        burning = tuple(
            row for row in alert_rows(slo)
            if _at_least(rates.get(row.long_window), row.factor(nominal_length(slo.window)))
            and _at_least(rates.get(row.short_window), row.factor(nominal_length(slo.window)))
        )

    exhaustion_at = None
    current = rates.get(CURRENT_BURN_WINDOW)
    if current is not None and current > 0 and consumed < 1:
        # At burn rate b the whole budget goes in length/b; what is left goes in remaining*length/b.
        candidate = m.at + (1.0 - consumed) * span.length / current
        if candidate <= span.end or span.end == m.at:  # calendar budgets reset at the period end
            exhaustion_at = candidate

    state: State = "exhausted" if consumed >= 1 else "burning" if burning else "ok"
    return BudgetStatus(
        slo=slo, at=m.at, state=state, sli=sli, budget_total=budget, consumed=consumed,
        burn_rates=rates, exhaustion_at=exhaustion_at, burning=burning, counts=m.counts,
    )


def _at_least(value: float | None, threshold: float) -> bool:
    return value is not None and value >= threshold


def failed(slo: SLO, at: datetime, state: Literal["error", "stale"], error: str,
           previous: BudgetStatus | None = None) -> BudgetStatus:
    """An SLO that could not be evaluated at ``at``.

    ``error``: it cannot be (a rejected query, unusable data): no values. ``stale``: the source
    failed; the previous values are kept with their own time, never zeroed, so nothing downstream
    reads a failure as a recovery or an outage.
    """
    if state == "stale" and previous is not None:
        return replace(previous, state="stale", error=error)
    return _with_exclusions(BudgetStatus(
        slo=slo, at=at, state=state, sli=None, budget_total=slo.budget, consumed=0.0,
        burn_rates={}, exhaustion_at=None, error=error,
    ))
