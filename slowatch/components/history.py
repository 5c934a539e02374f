"""The status page's charts: each SLO's budget remaining over recent hours, thinned to a fixed
number of points. Pure bookkeeping (the caller passes the instant and holds the lock)."""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import EVALUATED_STATES

# The page charts the budget over this much recent time, at most this many points (one per
# minute: enough to see an incident's shape, small enough to ship with every /status page).
HISTORY_SPAN = timedelta(hours=6)
HISTORY_POINTS = 360


class StatusHistory:
    def __init__(self, span: timedelta = HISTORY_SPAN, points: int = HISTORY_POINTS) -> None:
        self._points = points
        self._spacing = span / points
        self._series: dict[str, deque[tuple[datetime, float]]] = {}

    def record(self, statuses: Sequence[BudgetStatus], at: datetime) -> None:
        for s in statuses:
            if s.state not in EVALUATED_STATES or s.sli is None:  # no fresh budget: nothing to chart
                continue
            points = self._series.setdefault(s.slo.id, deque(maxlen=self._points))
            if not points or at - points[-1][0] >= self._spacing:
                points.append((at, s.remaining))

    def retain(self, slo_ids: Collection[str]) -> None:
        """Forget the SLOs that left the spec."""
        self._series = {k: v for k, v in self._series.items() if k in slo_ids}

    def snapshot(self) -> Mapping[str, tuple[tuple[datetime, float], ...]]:
        return {k: tuple(v) for k, v in self._series.items()}
