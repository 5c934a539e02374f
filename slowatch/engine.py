"""One evaluation cycle at a given instant: measure -> budget -> snapshot.

The instant is passed in, so a cycle is reproducible (``slowatch eval --at``). SLOs are measured
concurrently on a bounded pool; one SLO's failure never touches another's result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from slowatch.core import budget
from slowatch.core.budget import BudgetStatus, Measurement
from slowatch.core.model import SLO
from slowatch.errors import QueryError, SourceError


class Source(Protocol):
    def measure(self, slo: SLO, at: datetime) -> Measurement: ...


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
        measurement = source.measure(slo, at)
    except QueryError as exc:
        # The query itself is wrong for this SLO (rejected, several series): an `error` state.
        return Outcome(budget.failed(slo, at, "error", str(exc)), failure=exc)
    except SourceError as exc:
        # The source is down or overloaded: keep the last values, mark them stale.
        return Outcome(budget.failed(slo, at, "stale", str(exc), previous), failure=exc)
    except Exception as exc:  # a bug for one SLO must not take the others down
        return Outcome(budget.failed(slo, at, "error", f"internal error: {exc!r}"))
    return Outcome(budget.evaluate(slo, measurement))


def evaluate(
    slos: Sequence[SLO],
    source: Source,
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
    slos: Iterable[SLO], source: Source, at: datetime, previous: Mapping[str, BudgetStatus], pool: Executor
) -> Snapshot:
    futures = [pool.submit(evaluate_one, slo, source, at, previous.get(slo.id)) for slo in slos]
    return Snapshot(at=at, outcomes=tuple(f.result() for f in futures))
