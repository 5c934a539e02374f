"""Fakes for the daemon's ports (``slowatch.ports``), for in-process tests of the cycle: a stepped
clock, a scripted source (one SLO at a time, or batched the way ``PlannedSource`` is), an
Alertmanager that records what it was sent and can be down, and a state store in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from slowatch.core.alerting import AlertBook
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.model import SLO, AlertPolicy, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.errors import StateError

START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
EVENTS = 100_000.0
"""Events counted in every window of a scripted measurement."""


def slo(name: str, service: str = "auth", objective: float = 99.9) -> SLO:
    return SLO(service=service, name=name, objective_percent=objective, window=RollingWindow(timedelta(days=30)),
               sli=RatioSLI(total="t", errors="e"), alerting=AlertPolicy(budget_consumed=(50.0,)))


class SteppedClock:
    def __init__(self, start: datetime = START) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def step(self, by: timedelta) -> datetime:
        self.at += by
        return self.at


@dataclass(frozen=True)
class Ratios:
    """Error ratios a scripted source reports: ``recent`` in the burn-rate windows named in
    ``burning`` (every one by default; 0 in the others), ``window`` over the SLO's window."""

    recent: float
    window: float
    burning: tuple[str, ...] = BURN_RATE_WINDOWS

    def measurement(self, at: datetime) -> Measurement:
        counts = {w: EventCounts(good=EVENTS * (1 - (self.recent if w in self.burning else 0.0)), total=EVENTS)
                  for w in BURN_RATE_WINDOWS}
        counts[SLO_WINDOW] = EventCounts(good=EVENTS * (1 - self.window), total=EVENTS)
        return Measurement(at=at, counts=counts)


# What a scripted source answers for one SLO at one instant: error ratios, or an exception to raise.
Answer = Ratios | Exception
Script = Callable[[SLO, datetime], Answer]


class ScriptedSource:
    """``ports.Source``: measures one SLO at a time from ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script

    def measure(self, slo: SLO, at: datetime) -> Measurement:
        answer = self.script(slo, at)
        if isinstance(answer, Exception):
            raise answer
        return answer.measurement(at)


class BatchedSource:
    """``ports.BatchSource``: each SLO measured on the executor, and an exception returned, not
    raised, as ``PlannedSource`` does for each of a chunk's SLOs."""

    def __init__(self, script: Script) -> None:
        self.one = ScriptedSource(script)

    def measure_all(
        self, slos: Sequence[SLO], at: datetime, executor: Executor
    ) -> Mapping[str, Measurement | Exception]:
        futures: list[tuple[SLO, Future[Measurement]]] = [(s, executor.submit(self.one.measure, s, at)) for s in slos]
        out: dict[str, Measurement | Exception] = {}
        for s, future in futures:
            try:
                out[s.id] = future.result()
            except Exception as exc:
                out[s.id] = exc
        return out


@dataclass(frozen=True)
class Posted:
    """One alert as the fake Alertmanager received it."""

    alertname: str
    state: str  # firing or resolved
    labels: dict[str, str]
    starts_at: datetime


@dataclass(frozen=True)
class UrlResult:
    url: str
    sent: int = 0
    errors: int = 0


@dataclass(frozen=True)
class Report:
    delivered: frozenset[str]
    results: tuple[UrlResult, ...]


@dataclass
class FakeAlertmanager:
    """``ports.AlertSink`` for one Alertmanager: accepts every post unless ``down``; resolves it
    has not accepted stay pending (and are saved with the book), as ``AlertmanagerClient`` does."""

    url: str = "http://alertmanager:9093"
    down: bool = False
    pending_ids: list[str] = field(default_factory=list)
    posts: list[list[Posted]] = field(default_factory=list)
    last_delivery: datetime | None = None
    """When the last deliver call came (one value: a simulated month must not grow with it)."""

    def deliver(self, book: AlertBook, now: datetime) -> Report:
        self.last_delivery = now
        for a in book.resolved:
            if a.id not in self.pending_ids:
                self.pending_ids.append(a.id)
        self.pending_ids = [i for i in self.pending_ids if i in {a.id for a in book.resolved}]
        if self.down:
            return Report(frozenset(), (UrlResult(self.url, errors=1),))
        resolved = {a.id: a for a in book.resolved}
        post = [Posted(resolved[i].alertname, "resolved", dict(resolved[i].labels), resolved[i].starts_at)
                for i in self.pending_ids]
        post += [Posted(a.alertname, "firing", dict(a.labels), a.starts_at) for a in book.firing]
        if post:
            self.posts.append(post)
        delivered = frozenset(self.pending_ids)
        self.pending_ids = []
        return Report(delivered, (UrlResult(self.url, sent=len(post)),))

    def pending(self) -> dict[str, tuple[str, ...]]:
        return {self.url: tuple(self.pending_ids)}

    def received(self) -> Iterator[Posted]:
        return (p for post in self.posts for p in post)

    def firing(self, alertname: str) -> list[Posted]:
        return [p for p in self.received() if p.alertname == alertname and p.state == "firing"]

    def resolved(self, alertname: str) -> list[Posted]:
        return [p for p in self.received() if p.alertname == alertname and p.state == "resolved"]


@dataclass(frozen=True)
class Saved:
    book: AlertBook = field(default_factory=AlertBook)
    pending: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass
class MemoryStore:
    """``ports.StateStore`` in memory; ``broken`` makes every save fail like a full disk."""

    saved: Saved = field(default_factory=Saved)
    saves: int = 0
    broken: bool = False

    def load(self) -> Saved:
        return self.saved

    def save(self, book: AlertBook, pending: Mapping[str, Sequence[str]], now: datetime) -> None:
        if self.broken:
            raise StateError("/state/alerts.json: No space left on device")
        self.saved = Saved(book, {k: tuple(v) for k, v in pending.items()})
        self.saves += 1
