"""Measure -> budget at a given instant: a ``Snapshot`` of every SLO's status.

The instant is passed in, so an evaluation is reproducible (``slowatch eval --at``). SLOs are
measured concurrently on a bounded pool; one SLO's failure never touches another's result.

Every failure lands in the SLO's outcome, whichever path measured it (one SLO at a time, or a
batch), with a message fit for /status (a URL in it loses its user and password):

    SourceUnavailable (source down)      stale: the previous values kept, alerts frozen
    QueryError (query or data unusable)  error
    any other exception (a bug)          error ("internal error: ..."), the exception kept with its
                                         traceback in ``Outcome.failure`` for the caller to log

Composites (``sli.composite``) are never sent to the source: after measuring, each is combined
from its components' measurements (``core.composite``, nested ones first), then evaluated like
any SLO. A component that failed fails the composite the same way (stale, error), the message
naming the component. A composite's components outside ``slos`` (another shard's SLOs) are
looked up in ``spec`` and measured too, without an outcome of their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime

from slowatch.adapters.urls import scrub
from slowatch.core import budget, composite
from slowatch.core.budget import BudgetStatus, EventCounts, Measurement
from slowatch.core.model import SLO, CompositeSLI
from slowatch.errors import ComponentError, QueryError, SourceError, SourceUnavailable
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
    return outcome(slo, _measure_one(slo, source, at), at, previous)


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
    spec: Mapping[str, SLO] | None = None,
) -> Snapshot:
    """``spec``: every SLO of the spec by id, where the components of ``slos``' composites are found
    when they are not in ``slos`` (a shard's composite over another shard's SLOs)."""
    previous = previous or {}
    if executor is None:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="eval") as pool:
            return _run(slos, source, at, previous, pool, spec or {})
    return _run(slos, source, at, previous, executor, spec or {})


def _run(
    slos: Sequence[SLO], source: Source | BatchSource, at: datetime, previous: Mapping[str, BudgetStatus],
    pool: Executor, spec: Mapping[str, SLO],
) -> Snapshot:
    measuring = composite.closure(slos, {**spec, **{s.id: s for s in slos}})
    # Composites have no query: only the SLOs with one go to the source.
    queried = [s for s in measuring if not composite.is_composite(s)]
    measured: dict[str, Measurement | Exception]
    if isinstance(source, BatchSource):
        try:
            measured = dict(source.measure_all(queried, at, pool))
        except Exception as exc:  # a bug in planning fails every SLO (one exception, logged once)
            measured = dict.fromkeys((s.id for s in queried), exc)
    else:
        one: Source = source
        futures = [(slo.id, pool.submit(_measure_one, slo, one, at)) for slo in queried]
        measured = {slo_id: f.result() for slo_id, f in futures}
    for slo in queried:  # what a batch left out fails its SLO and the composites over it alike
        measured.setdefault(slo.id, _not_measured(slo))
    for c in composite.evaluation_order(measuring):
        measured[c.id] = _combined(c, measured)
    outcomes = []
    for slo in slos:
        result = outcome(slo, measured[slo.id], at, previous.get(slo.id))
        if composite.is_composite(slo) and result.failure is None:
            result = replace(result, status=replace(result.status, components=_component_counts(slo, measured)))
        outcomes.append(result)
    return Snapshot(at=at, outcomes=tuple(outcomes))


def _measure_one(slo: SLO, source: Source, at: datetime) -> Measurement | Exception:
    try:
        return source.measure(slo, at)
    except Exception as exc:  # a bug for one SLO must not take the others down
        return exc


def _combined(slo: SLO, measured: Mapping[str, Measurement | Exception]) -> Measurement | Exception:
    """The composite's measurement, or the failure of its first failed component (a query error
    or a bug before a source failure: those are ``error``, the composite cannot be evaluated)."""
    absent = composite.missing(slo, measured)
    if absent:
        return LookupError(f"component {absent[0]} is not in the spec this evaluation was given")
    failures = [(c, f) for c in _ids(slo) if isinstance(f := measured[c], Exception)]
    if not failures:
        return composite.combine(slo, {c: m for c in _ids(slo) if isinstance(m := measured[c], Measurement)})
    name, exc = next(((c, f) for c, f in failures if not isinstance(f, SourceUnavailable)), failures[0])
    message = f"component {name}: {exc}"
    wrapped: Exception
    if isinstance(exc, QueryError):
        wrapped = QueryError(message)
    elif isinstance(exc, SourceError):
        wrapped = SourceUnavailable(message)
    else:  # a bug: the composite is `error`, the component's traceback kept as the cause
        wrapped = ComponentError(f"component {name}: {type(exc).__name__}: {exc}")
    wrapped.__cause__ = exc
    return wrapped


def _ids(slo: SLO) -> list[str]:
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    return [c.slo for c in sli.components]


def _component_counts(
    slo: SLO, measured: Mapping[str, Measurement | Exception],
) -> dict[str, Mapping[str, EventCounts]]:
    return {c: m.counts for c in _ids(slo) if isinstance(m := measured.get(c), Measurement)}


def _not_measured(slo: SLO) -> Exception:
    return LookupError(f"the batched source returned no measurement for {slo.id}")
