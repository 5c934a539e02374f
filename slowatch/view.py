"""The read model the daemon serves: one immutable ``DaemonView`` per finished cycle.

The cycle builds a new view after each evaluation and publishes it with
``ViewHolder.publish``; HTTP requests and metric scrapes only ever read the latest one, so they never
wait for Prometheus and never see a cycle half-applied.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slowatch.core.budget import BudgetStatus
from slowatch.core.regress import Row as RegressionRow

AlertView = Mapping[str, Any]
"""One alert as /status shows it (``alerting.views``): alertname, severity, since, labels."""


@dataclass(frozen=True)
class DaemonView:
    at: datetime | None
    """The instant of the last finished cycle (None before the first)."""
    statuses: tuple[BudgetStatus, ...] = ()
    alerts: Mapping[str, Sequence[AlertView]] = field(default_factory=dict)
    """Alerts as /status shows them, by SLO id (``service/name``)."""
    firing: Sequence[Mapping[str, str]] = ()
    """Label sets of the firing alerts (``slowatch_slo_alert_firing``)."""
    ready: bool = False
    """The first evaluation finished (``/readyz``)."""
    history: Mapping[str, Sequence[tuple[datetime, float]]] = field(default_factory=dict)
    """Budget remaining over recent hours, oldest first, by SLO id (the status page's charts)."""
    spec_error: str | None = None
    """Why the last spec reload failed, if it did (the previous spec is still served)."""
    regressions: Mapping[str, Sequence[RegressionRow]] = field(default_factory=dict)
    """The last regression check of each SLO with ``alerting.regression``, by SLO id."""

    def status(self, service: str, name: str) -> BudgetStatus | None:
        for s in self.statuses:
            if s.slo.service == service and s.slo.name == name:
                return s
        return None


EMPTY_VIEW = DaemonView(at=None)
"""What is served before the first cycle: no SLOs, not ready."""


class ViewHolder:
    """The latest published view; ``get`` and ``set`` are safe from any thread."""

    def __init__(self, view: DaemonView = EMPTY_VIEW) -> None:
        self._view = view
        self._lock = threading.Lock()

    def get(self) -> DaemonView:
        with self._lock:
            return self._view

    def set(self, view: DaemonView) -> None:
        with self._lock:
            self._view = view

    # The ``ports.Publisher`` names.
    publish = set
    current = get
