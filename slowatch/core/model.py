"""The domain model: frozen dataclasses the rest of the core computes on.

The spec file (``slowatch.spec``, pydantic) maps into these types; nothing in ``slowatch.core``
knows about files, pydantic, HTTP or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from slowatch.core.windows import BurnRateAlertWindow, alert_windows_for, calendar_bounds, format_duration

CalendarUnit = Literal["month", "week"]


@dataclass(frozen=True)
class RollingWindow:
    """The last ``duration`` before the evaluation instant."""

    duration: timedelta

    @property
    def name(self) -> str:
        return format_duration(self.duration)


@dataclass(frozen=True)
class CalendarWindow:
    """The current calendar month or ISO week (Monday first) in ``timezone``."""

    unit: CalendarUnit
    timezone: str = "UTC"

    @property
    def name(self) -> str:
        return self.unit if self.timezone == "UTC" else f"{self.unit}/{self.timezone}"


Window = RollingWindow | CalendarWindow


@dataclass(frozen=True)
class WindowSpan:
    """A window resolved at an instant: the range to count events over, and the whole period
    the budget is for (equal for rolling windows; the whole month or week for calendar ones)."""

    start: datetime
    end: datetime
    at: datetime

    @property
    def elapsed(self) -> timedelta:
        return self.at - self.start

    @property
    def length(self) -> timedelta:
        return self.end - self.start


def window_span(window: Window, at: datetime) -> WindowSpan:
    if isinstance(window, RollingWindow):
        return WindowSpan(start=at - window.duration, end=at, at=at)
    start, end = calendar_bounds(window.unit, window.timezone, at)
    return WindowSpan(start=start, end=end, at=at)


def nominal_length(window: Window) -> timedelta:
    """The window's length for scaling burn-rate factors: a calendar month counts as 30 days
    and a week as 7, so the alert thresholds do not move from month to month."""
    if isinstance(window, RollingWindow):
        return window.duration
    return timedelta(days=30 if window.unit == "month" else 7)


@dataclass(frozen=True)
class RatioSLI:
    """Event based: good (or errors) and total events, counted by one query per window.

    Either selector form (``errors``/``good`` + ``total`` are series selectors of counters), or
    raw form (``*_query`` are PromQL expressions holding the ``{{.window}}`` placeholder and each
    returning one sample: the number of events in that window).
    """

    total: str
    good: str | None = None
    errors: str | None = None
    raw: bool = False


@dataclass(frozen=True)
class LatencySLI:
    """Classic histogram: events under ``threshold_seconds`` are good."""

    histogram: str
    selector: str
    threshold_seconds: float


@dataclass(frozen=True)
class ThroughputSLI:
    """Time slices: a slice is good when ``query`` (a rate, in its own unit) is >= ``minimum``."""

    query: str
    minimum: float
    slice: timedelta


@dataclass(frozen=True)
class Component:
    """One SLO of a composite, by id (``service/name``), with its weight (> 0)."""

    slo: str
    weight: float = 1.0


Weighting = Literal["weights", "events"]
WEIGHTS: Weighting = "weights"
"""The composite SLI is the weighted mean of the components' SLIs (a component with no events in
a window leaves both sums)."""
EVENTS: Weighting = "events"
"""The composite SLI is the components' good events over their total events, summed."""


@dataclass(frozen=True)
class CompositeSLI:
    """A journey or system made of other SLOs (``sli.composite``): measured from its components'
    counts in the same windows, never by a query of its own."""

    components: tuple[Component, ...]
    weighting: Weighting = WEIGHTS


SLI = RatioSLI | LatencySLI | ThroughputSLI | CompositeSLI


@dataclass(frozen=True)
class Exclusion:
    """``exclusions[]``: a span whose events count neither as good nor as total, in every window
    (planned maintenance; a past one added later is a budget adjustment).

    One-off: ``start`` .. ``end``. Recurring: ``rrule`` (RFC 5545, read by python-dateutil), each
    occurrence starting at its wall time in ``timezone`` and lasting ``duration``; ``start``, when
    given with an ``rrule``, is its DTSTART (the anchor of INTERVAL and of the fields the rule
    leaves out), else ``core.exclusions.RRULE_ANCHOR`` in ``timezone``.
    """

    reason: str
    start: datetime | None = None
    end: datetime | None = None
    rrule: str | None = None
    duration: timedelta = timedelta(0)
    timezone: str = "UTC"


@dataclass(frozen=True)
class AlertExtras:
    """Labels and annotations added to the alerts of one severity (imported from Sloth's
    ``alerting``): labels slowatch sets itself (RESERVED_LABELS) are refused when loading."""

    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RegressionPolicy:
    """``alerting.regression``: compare the SLO's last ``window`` with the same window one
    ``baseline`` earlier (latency percentiles, error ratio, throughput) and raise an SLORegression
    ticket for a high or critical regression past ``threshold`` percent (the seed's detector)."""

    baseline: timedelta
    threshold: float = 10.0
    window: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class AlertPolicy:
    budget_consumed: tuple[float, ...] = (50.0,)
    """Percents of the window's budget; an alert fires at each."""
    burn_rate: bool = True
    runbook_url: str | None = None
    no_data: Literal["ignore", "alert"] = "ignore"
    """What a window with no events does to alerts: nothing (default) or an SLONoData ticket."""
    extras: tuple[tuple[str, AlertExtras], ...] = ()
    """(severity, what its alerts also carry), e.g. Sloth's page_alert/ticket_alert labels."""
    regression: RegressionPolicy | None = None
    burn_rows: tuple[BurnRateAlertWindow, ...] = ()
    """Burn-rate rows replacing the workbook's table (``slowatch backtest --factors``); empty: the table."""


@dataclass(frozen=True)
class SLO:
    service: str
    name: str
    objective_percent: float
    window: Window
    sli: SLI
    description: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    alerting: AlertPolicy = field(default_factory=AlertPolicy)
    source: str = ""
    """Where the SLO was defined (file path), for error messages."""
    exclusions: tuple[Exclusion, ...] = ()
    """The SLO's own and its file's exclusions."""

    @property
    def id(self) -> str:
        return f"{self.service}/{self.name}"

    @property
    def objective(self) -> float:
        """The objective as a fraction, e.g. 0.999 (in decimal, so 99.9 gives 0.999, not
        0.9990000000000001)."""
        return float(Decimal(repr(self.objective_percent)) / 100)

    @property
    def budget(self) -> float:
        """The error budget as a fraction of events (or slices), e.g. 0.001 (in decimal too)."""
        return float((100 - Decimal(repr(self.objective_percent))) / 100)

    @property
    def kind(self) -> str:
        return {RatioSLI: "ratio", LatencySLI: "latency", ThroughputSLI: "throughput",
                CompositeSLI: "composite"}[type(self.sli)]


def alert_rows(slo: SLO) -> tuple[BurnRateAlertWindow, ...]:
    """The burn-rate alert rows of ``slo`` (workbook table 5-8, fitted to its window and slice)."""
    min_short = slo.sli.slice if isinstance(slo.sli, ThroughputSLI) else timedelta(0)
    return alert_windows_for(nominal_length(slo.window), min_short, slo.alerting.burn_rows or None)
