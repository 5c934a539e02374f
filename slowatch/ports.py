"""The daemon's boundaries, as small Protocols: what a ``Cycle`` needs from the world.

    Source       measures SLOs at an instant (one at a time, or many together: ``BatchSource``)
    AlertSink    Alertmanager delivery: sends firing alerts, re-sends them, queues resolves
    StateStore   loads and saves the alert book with the sink's pending resolves
    Publisher    holds the latest view (for /status, the page and /metrics)
    Telemetry    the daemon's own counters (cycles, deliveries, reloads)
    Clock        the wall clock; everything else is given its instant

The adapters (``PrometheusSource``/``PlannedSource``, ``AlertmanagerClient``, ``adapters.state``,
``ViewHolder``, ``SelfMetrics``) satisfy them structurally; in-process tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from slowatch.core.alerting import AlertBook
from slowatch.core.budget import Measurement
from slowatch.core.model import SLO
from slowatch.view import DaemonView


class Source(Protocol):
    """Measures one SLO at a time; raises ``SourceError`` when the source fails."""

    def measure(self, slo: SLO, at: datetime) -> Measurement: ...


@runtime_checkable
class BatchSource(Protocol):
    """Measures many SLOs together (shared queries). A failure comes back per SLO as the exception
    itself: a ``SourceError`` when the source failed, anything else when the code did."""

    def measure_all(
        self, slos: Sequence[SLO], at: datetime, executor: Executor
    ) -> Mapping[str, Measurement | Exception]: ...


class UrlDelivery(Protocol):
    """What one delivery did for one Alertmanager (URL without credentials)."""

    @property
    def url(self) -> str: ...

    @property
    def sent(self) -> int: ...

    @property
    def errors(self) -> int: ...


class Delivery(Protocol):
    @property
    def delivered(self) -> frozenset[str]:
        """Ids of resolved alerts every Alertmanager has accepted (they may leave the book)."""
        ...

    @property
    def results(self) -> Sequence[UrlDelivery]: ...


class AlertSink(Protocol):
    """Posts the book (resolves owed, then firing alerts); never raises for a delivery failure."""

    def deliver(self, book: AlertBook, now: datetime) -> Delivery: ...

    def pending(self) -> Mapping[str, Sequence[str]]:
        """Per Alertmanager: ids of the resolved alerts it still has to receive (saved with the book)."""
        ...


class Saved(Protocol):
    @property
    def book(self) -> AlertBook: ...

    @property
    def pending(self) -> Mapping[str, Sequence[str]]: ...


class StateStore(Protocol):
    """The alert book and the pending resolves, saved together so they never disagree."""

    def load(self) -> Saved: ...

    def save(self, book: AlertBook, pending: Mapping[str, Sequence[str]], now: datetime) -> None:
        """Raises ``StateError`` when the write failed."""
        ...


class Publisher(Protocol):
    """Holds the latest view: /status, the page and the SLO series of /metrics read only that."""

    def publish(self, view: DaemonView) -> None: ...

    def current(self) -> DaemonView: ...


class Telemetry(Protocol):
    """The daemon's own counters (``slowatch_evaluations_total``, delivery and reload metrics)."""

    def observe_cycle(self, duration_s: float, ok: bool, at: datetime) -> None: ...

    def delivery(self, url: str, sent: int, errors: int = 0) -> None: ...

    def spec_reload(self, ok: bool, at: datetime) -> None: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
