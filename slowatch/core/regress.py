"""The seed's performance regression detector, exact at its band edges.

Source: shared/seed/performance-benchmarks-framework.md, "Performance Regression Detection"
(``PerformanceRegressionDetector``). Each metric present in the baseline is compared with the
current value; the change is ``(current - baseline) / baseline * 100``; a regression is a change
*past* the threshold (strictly, as the seed's ``>``) in the bad direction, named by the metric's
suffix; its severity comes from the bands below.

Better than the seed, on purpose:
* changes are computed in decimal from the numbers as written, so 0.2 -> 0.3 is exactly +50%
  (critical), not 49.999...% (high) as binary floats would have it;
* a metric on one side only is reported (``severity: "missing"``), never silently dropped;
* a zero or negative baseline is an error (a percentage of it means nothing), not a skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum


class Direction(Enum):
    HIGHER_IS_WORSE = "higher_is_worse"
    LOWER_IS_WORSE = "lower_is_worse"
    NEUTRAL = "neutral"


# The seed's ``_analyze_metric_change``: latency and duration are worse when higher,
# throughput and rate per second when lower; any other name is never a regression.
DIRECTION_BY_SUFFIX: tuple[tuple[str, Direction], ...] = (
    ("_duration", Direction.HIGHER_IS_WORSE),
    ("_latency", Direction.HIGHER_IS_WORSE),
    ("_throughput", Direction.LOWER_IS_WORSE),
    ("_rps", Direction.LOWER_IS_WORSE),
)
# The seed's ``_calculate_severity``: (lowest change in percent, severity), highest band first.
SEVERITY_BANDS: tuple[tuple[Decimal, str], ...] = (
    (Decimal(50), "critical"),
    (Decimal(25), "high"),
    (Decimal(10), "medium"),
)
BELOW_BANDS = "low"
NOT_A_REGRESSION = "none"
MISSING = "missing"
# The seed's default threshold, in percent.
DEFAULT_THRESHOLD = Decimal(10)


class BaselineError(ValueError):
    """A baseline value a percentage cannot be taken of (zero or negative)."""


@dataclass(frozen=True)
class Row:
    """One metric: the seed's ``RegressionResult`` fields, plus a note for missing metrics."""

    metric_name: str
    baseline_value: float | None
    current_value: float | None
    change_percentage: float | None
    is_regression: bool
    severity: str
    direction: Direction
    note: str = ""


def direction_of(name: str, overrides: Mapping[str, Direction] | None = None) -> Direction:
    if overrides and name in overrides:
        return overrides[name]
    for suffix, direction in DIRECTION_BY_SUFFIX:
        if name.endswith(suffix):
            return direction
    return Direction.NEUTRAL


def severity_of(change: Decimal) -> str:
    """The band of a change's size in percent (the seed's ``_calculate_severity``)."""
    size = abs(change)
    for lowest, severity in SEVERITY_BANDS:
        if size >= lowest:
            return severity
    return BELOW_BANDS


def compare_one(name: str, baseline: Decimal, current: Decimal, threshold: Decimal = DEFAULT_THRESHOLD,
                direction: Direction = Direction.NEUTRAL) -> Row:
    if baseline <= 0:
        raise BaselineError(f"metric {name}: baseline {baseline} is not positive: no change is a percentage of it")
    change = (current - baseline) / baseline * 100
    worse = (direction is Direction.HIGHER_IS_WORSE and change > threshold) or (
        direction is Direction.LOWER_IS_WORSE and change < -threshold)
    return Row(
        metric_name=name, baseline_value=float(baseline), current_value=float(current),
        change_percentage=float(change), is_regression=worse,
        severity=severity_of(change) if worse else NOT_A_REGRESSION, direction=direction,
    )


def compare(baseline: Mapping[str, Decimal | None], current: Mapping[str, Decimal | None],
            threshold: Decimal = DEFAULT_THRESHOLD, overrides: Mapping[str, Direction] | None = None, *,
            zero_baseline_shown: bool = False) -> list[Row]:
    """Every metric of either side, in the baseline's order then the current's new ones. A value
    of None is a metric that is there but has no usable number. ``zero_baseline_shown``: a
    baseline of exactly 0 (a live error ratio with no errors a week ago) is shown and not judged,
    instead of being an error (a result file's 0 is a broken file)."""
    rows = []
    for name in [*baseline, *(n for n in current if n not in baseline)]:
        direction = direction_of(name, overrides)
        old, new = baseline.get(name), current.get(name)
        if old == 0 and new is not None and zero_baseline_shown:
            rows.append(Row(name, 0.0, float(new), None, False, NOT_A_REGRESSION, direction,
                            note="baseline is 0: no percentage change"))
            continue
        if old is None or new is None:
            side = "baseline" if old is None else "current"
            where = baseline if old is None else current
            why = "has no usable value" if name in where else "is missing"
            rows.append(Row(
                metric_name=name, baseline_value=_float(old), current_value=_float(new),
                change_percentage=None, is_regression=False, severity=MISSING, direction=direction,
                note=f"{name} {why} in the {side} results",
            ))
            continue
        rows.append(compare_one(name, old, new, threshold, direction))
    return rows


def has_critical(rows: list[Row]) -> bool:
    return any(r.is_regression and r.severity == SEVERITY_BANDS[0][1] for r in rows)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
