"""Durations, the windows burn rates are reported for, and the multi-window burn-rate table.

The alert table is data with its source cited; factors are computed from it, never typed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 365 * 86400}
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


class DurationError(ValueError):
    pass


@lru_cache(maxsize=4096)  # pure, and asked for the same few window names per SLO every cycle
def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus duration ("5m", "1h30m", "30d", "200ms")."""
    text = text.strip()
    if not _DURATION.match(text):
        raise DurationError(f"not a duration: {text!r} (write e.g. 5m, 1h, 30d, 1h30m, 200ms)")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise DurationError(f"duration must be positive: {text!r}")
    return timedelta(seconds=seconds)


# A latency threshold may be fractional ("2.5s", "0.25s", "1.5m"): a histogram's le bounds are
# (le="2.5"). Windows keep Prometheus' integer grammar above: they become PromQL ranges.
_LATENCY_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
_LATENCY = re.compile(rf"^(?:{_LATENCY_PART.pattern})+$")
_DECIMAL_UNITS = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}


def parse_latency(text: str) -> float:
    """Seconds in a latency threshold: "200ms", "2.5s", "0.25s", "1.5m", "1m30s".

    Computed in decimal and rounded once, so "300ms" and "0.3s" give exactly the float that
    Prometheus reads from ``le="0.3"`` (300 * 0.001 in floats is 0.30000000000000004).
    """
    text = text.strip()
    if not _LATENCY.match(text):
        raise DurationError(f"not a latency: {text!r} (write e.g. 200ms, 2.5s, 0.25s or 1m)")
    seconds = sum((Decimal(n) * _DECIMAL_UNITS[u] for n, u in _LATENCY_PART.findall(text)), Decimal(0))
    if seconds <= 0:
        raise DurationError(f"a latency must be positive: {text!r}")
    return float(seconds)


def format_duration(d: timedelta) -> str:
    """The shortest Prometheus duration for ``d`` ("30d", "1h30m", "500ms")."""
    ms = round(d.total_seconds() * 1000)
    if ms <= 0:
        raise DurationError(f"duration must be positive: {d}")
    out = []
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):  # "7d", never "1w"
        n, ms = divmod(ms, size)
        if n:
            out.append(f"{n}{unit}")
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)


# The windows every SLO reports a burn rate for (INTERFACES.md, /status "burn_rates").
BURN_RATE_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

# The burn rate behind time to exhaustion: the page alert's long window, short enough to follow
# an incident, long enough not to swing with every 5-minute blip.
CURRENT_BURN_WINDOW = "1h"

Severity = Literal["page", "ticket"]


@dataclass(frozen=True)
class BurnRateAlertWindow:
    """One row of a multi-window multi-burn-rate table.

    Fires when ``budget_percent`` of the budget of ``period`` would be consumed within
    ``long_window``, confirmed by ``short_window`` (which makes the alert reset quickly).
    """

    severity: Severity
    budget_percent: float
    long_window: str
    short_window: str
    period: str = "30d"

    def factor(self, slo_window: timedelta) -> float:
        """The burn-rate threshold for an SLO whose window is ``slo_window``.

        factor = budget fraction * SLO window / long window: for 30d that gives the workbook's
        14.4, 6 and 1; for other windows the same budget fraction in the same long window, never
        below ``MIN_BURN_RATE_FACTOR``.
        """
        return burn_rate_factor(self.budget_percent, slo_window, parse_duration(self.long_window))


# A burn rate below 1 spends less than the budget over the window, so it can never break the SLO:
# alerting on it is noise. Short SLO windows would otherwise get factors under 1 (a 7d SLO's
# ticket row: 10% of the budget in 3d = 0.23x; a 1d SLO's page row: 2% in 1h = 0.48x).
MIN_BURN_RATE_FACTOR = 1.0


def burn_rate_factor(budget_percent: float, slo_window: timedelta, long_window: timedelta) -> float:
    return max(MIN_BURN_RATE_FACTOR, (budget_percent / 100.0) * (slo_window / long_window))


# Google SRE workbook, "Alerting on SLOs", table 5-8 (recommended parameters for a 99.9% SLO
# over 30 days): 2% of the budget in 1h (5m short) pages, 5% in 6h (30m short) pages, 10% in
# 3d (6h short) opens a ticket. https://sre.google/workbook/alerting-on-slos/
SRE_WORKBOOK_TABLE_5_8: tuple[BurnRateAlertWindow, ...] = (
    BurnRateAlertWindow(severity="page", budget_percent=2, long_window="1h", short_window="5m"),
    BurnRateAlertWindow(severity="page", budget_percent=5, long_window="6h", short_window="30m"),
    BurnRateAlertWindow(severity="ticket", budget_percent=10, long_window="3d", short_window="6h"),
)


def alert_windows_for(slo_window: timedelta, min_short: timedelta = timedelta(0),
                      table: Sequence[BurnRateAlertWindow] | None = None) -> tuple[BurnRateAlertWindow, ...]:
    """The table rows (the workbook's, unless ``table``) that make sense for an SLO window: a long
    window longer than the SLO window itself would look at events outside the window, so that row
    is dropped; so is a row whose short window is shorter than ``min_short`` (a throughput SLO's
    slice: a 5m window holds a 1h slice only 5 minutes an hour, and the alert would flap)."""
    return tuple(w for w in (SRE_WORKBOOK_TABLE_5_8 if table is None else table)
                 if parse_duration(w.long_window) <= slo_window and parse_duration(w.short_window) >= min_short)


def rows_with_factors(factors: Sequence[float], slo_window: timedelta) -> tuple[BurnRateAlertWindow, ...]:
    """The workbook's rows with other burn-rate factors (one per row, in the table's order) for an
    SLO window: each row's budget share is what gives that factor over its long window."""
    if len(factors) != len(SRE_WORKBOOK_TABLE_5_8):
        raise ValueError(f"give {len(SRE_WORKBOOK_TABLE_5_8)} factors (page 1h/5m, page 6h/30m, ticket 3d/6h), "
                         f"got {len(factors)}")
    return tuple(
        replace(row, budget_percent=100 * f * (parse_duration(row.long_window) / slo_window))
        for row, f in zip(SRE_WORKBOOK_TABLE_5_8, factors, strict=True)
    )


def calendar_bounds(unit: str, timezone: str, at: datetime) -> tuple[datetime, datetime]:
    """Start and end (exclusive) of the calendar month or ISO week holding ``at``, in UTC."""
    tz = ZoneInfo(timezone)
    local = at.astimezone(tz)
    if unit == "month":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(
            month=start.month + 1
        )
    elif unit == "week":
        day = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=local.weekday())
        start = day
        end = (start + timedelta(days=7)).replace(tzinfo=None).replace(tzinfo=tz)
    else:
        raise DurationError(f"unknown calendar unit {unit!r} (write month or week)")
    # Recreate with tzinfo so DST offsets are those of the wall-clock instants themselves.
    start = start.replace(tzinfo=None).replace(tzinfo=tz)
    end = end.replace(tzinfo=None).replace(tzinfo=tz)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))
