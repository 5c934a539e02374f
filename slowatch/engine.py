"""One evaluation cycle at a given instant: measure -> budget -> snapshot.

The instant is passed in, so a cycle is reproducible (``slowatch eval --at``). SLOs are measured
concurrently on a bounded pool; one SLO's failure never touches another's result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from slowatch.core import budget
from slowatch.core.budget import BudgetStatus, Measurement
from slowatch.core.model import SLO
from slowatch.errors import QueryError, SourceError


class Source(Protocol):
    """Measures one SLO at a time."""

    def measure(self, slo: SLO, at: datetime) -> Measurement: ...


@runtime_checkable
class BatchSource(Protocol):
    """Measures many SLOs together (shared queries); a failure is returned per SLO."""

    def measure_all(
        self, slos: Sequence[SLO], at: datetime, executor: Executor
    ) -> Mapping[str, Measurement | SourceError]: ...


@dataclass(frozen=True)
class Outcome:
    """One SLO's result: a status, and the source failure behind a stale one (if any)."""

    status: BudgetStatus
    failure: SourceError | None = None


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    @property
    def statuses(self) -> tuple[BudgetStatus, ...]:
        return tuple(o.status for o in self.outcomes)

    @property
    def failures(self) -> tuple[SourceError, ...]:
        return tuple(o.failure for o in self.outcomes if o.failure is not None)


def evaluate_one(slo: SLO, source: Source, at: datetime, previous: BudgetStatus | None = None) -> Outcome:
    try:
        return outcome(slo, source.measure(slo, at), at, previous)
    except SourceError as exc:
        return outcome(slo, exc, at, previous)
    except Exception as exc:  # a bug for one SLO must not take the others down
        return Outcome(budget.failed(slo, at, "error", f"internal error: {exc!r}"))


def outcome(slo: SLO, measured: Measurement | SourceError, at: datetime, previous: BudgetStatus | None) -> Outcome:
    if isinstance(measured, QueryError):
        # The query itself is wrong for this SLO (rejected, several series): an `error` state.
        return Outcome(budget.failed(slo, at, "error", str(measured)), failure=measured)
    if isinstance(measured, SourceError):
        # The source is down or overloaded: keep the last values, mark them stale.
        return Outcome(budget.failed(slo, at, "stale", str(measured), previous), failure=measured)
    return Outcome(budget.evaluate(slo, measured))


def evaluate(
    slos: Sequence[SLO],
    source: Source | BatchSource,
    at: datetime,
    *,
    previous: Mapping[str, BudgetStatus] | None = None,
    executor: Executor | None = None,
    concurrency: int = 8,
) -> Snapshot:
    previous = previous or {}
    if executor is None:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="eval") as pool:
            return _run(slos, source, at, previous, pool)
    return _run(slos, source, at, previous, executor)


def _run(
    slos: Sequence[SLO], source: Source | BatchSource, at: datetime, previous: Mapping[str, BudgetStatus],
    pool: Executor,
) -> Snapshot:
    if isinstance(source, BatchSource):
        try:
            measured = source.measure_all(slos, at, pool)
        except Exception as exc:  # a bug in planning must leave every SLO stale, not kill the cycle
            measured = {s.id: SourceError(f"internal error: {exc!r}") for s in slos}
        return Snapshot(at=at, outcomes=tuple(
            _safe_outcome(slo, measured.get(slo.id, SourceError("not measured")), at, previous.get(slo.id))
            for slo in slos
        ))
    one: Source = source
    futures = [pool.submit(evaluate_one, slo, one, at, previous.get(slo.id)) for slo in slos]
    return Snapshot(at=at, outcomes=tuple(f.result() for f in futures))


def _safe_outcome(
    slo: SLO, measured: Measurement | SourceError, at: datetime, previous: BudgetStatus | None
) -> Outcome:
    try:
        return outcome(slo, measured, at, previous)
    except Exception as exc:
        return Outcome(budget.failed(slo, at, "error", f"internal error: {exc!r}"))
