"""Measure -> budget at a given instant: a ``Snapshot`` of every SLO's status.

The instant is passed in, so an evaluation is reproducible (``slowatch eval --at``). SLOs are
measured concurrently on a bounded pool; one SLO's failure never touches another's result.

Every failure lands in the SLO's outcome, whichever path measured it (one SLO at a time, or a
batch), with a message fit for /status (a URL in it loses its user and password):

    SourceUnavailable (source down)      stale: the previous values kept, alerts frozen
    QueryError (query or data unusable)  error
    any other exception (a bug)          error ("internal error: ..."), the exception kept with its
                                         traceback in ``Outcome.failure`` for the caller to log
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from slowatch.adapters.urls import scrub
from slowatch.core import budget
from slowatch.core.budget import BudgetStatus, Measurement
from slowatch.core.model import SLO
from slowatch.errors import QueryError, SourceError
from slowatch.ports import BatchSource, Source

__all__ = ["BatchSource", "Outcome", "Snapshot", "Source", "evaluate", "evaluate_one", "outcome"]


@dataclass(frozen=True)
class Outcome:
    """One SLO's result: a status, and the failure behind a stale or failed one (if any)."""

    status: BudgetStatus
    failure: Exception | None = None

    @property
    def internal(self) -> bool:
        """The failure is a bug (not the source's): it deserves a traceback in the log."""
        return self.failure is not None and not isinstance(self.failure, SourceError)


@dataclass(frozen=True)
class Snapshot:
    at: datetime
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)

    @property
    def statuses(self) -> tuple[BudgetStatus, ...]:
        return tuple(o.status for o in self.outcomes)

    @property
    def failures(self) -> tuple[Exception, ...]:
        """Every failed evaluation (source failures and internal errors): the cycle failed."""
        return tuple(o.failure for o in self.outcomes if o.failure is not None)


def evaluate_one(slo: SLO, source: Source, at: datetime, previous: BudgetStatus | None = None) -> Outcome:
    try:
        measured: Measurement | Exception = source.measure(slo, at)
    except Exception as exc:  # a bug for one SLO must not take the others down
        measured = exc
    return outcome(slo, measured, at, previous)


def outcome(slo: SLO, measured: Measurement | Exception, at: datetime, previous: BudgetStatus | None) -> Outcome:
    if isinstance(measured, QueryError):
        # The query itself is wrong for this SLO (rejected, several series): an `error` state.
        return Outcome(budget.failed(slo, at, "error", scrub(str(measured))), failure=measured)
    if isinstance(measured, SourceError):
        # The source is down or overloaded: keep the last values, mark them stale.
        return Outcome(budget.failed(slo, at, "stale", scrub(str(measured)), previous), failure=measured)
    if isinstance(measured, Exception):
        return _internal(slo, at, measured)
    try:
        status = budget.evaluate(slo, measured)
    except Exception as exc:
        return _internal(slo, at, exc)
    # Never dropped: what the query API noted about the answer goes to /status with the values.
    return Outcome(replace(status, warnings=tuple(scrub(w) for w in measured.warnings)) if measured.warnings
                   else status)


def _internal(slo: SLO, at: datetime, exc: Exception) -> Outcome:
    message = scrub(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}")
    return Outcome(budget.failed(slo, at, "error", message), failure=exc)


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
        measured: Mapping[str, Measurement | Exception]
        try:
            measured = source.measure_all(slos, at, pool)
        except Exception as exc:  # a bug in planning fails every SLO (one exception, logged once)
            measured = dict.fromkeys((s.id for s in slos), exc)
        return Snapshot(at=at, outcomes=tuple(
            outcome(slo, measured.get(slo.id, _not_measured(slo)), at, previous.get(slo.id)) for slo in slos
        ))
    one: Source = source
    futures = [pool.submit(evaluate_one, slo, one, at, previous.get(slo.id)) for slo in slos]
    return Snapshot(at=at, outcomes=tuple(f.result() for f in futures))


def _not_measured(slo: SLO) -> Exception:
    return LookupError(f"the batched source returned no measurement for {slo.id}")
