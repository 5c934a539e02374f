"""One evaluation from a given instant, over the ports (``slowatch.ports``):

    measure -> budget -> alert step -> save -> deliver -> publish

A failed source keeps the previous values (``stale``) and freezes the SLO's alerts: a Prometheus
hiccup never pages and never resolves. Any other exception while evaluating an SLO (a bug) makes
that SLO ``error`` and is logged once, with its traceback (URLs without their passwords). Either
kind fails the cycle; ``FAILING_AFTER_CYCLES`` failed cycles in a row fire
SLOWatchEvaluationFailing.

The cycle owns the alert book and the running spec; ``run``, ``deliver`` and a spec reload may
come from different threads and take turns on one lock. Prometheus and Alertmanager are only
ever waited for outside it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import datetime

import structlog

from slowatch import engine
from slowatch.adapters.urls import scrub
from slowatch.components.history import StatusHistory
from slowatch.core import alerting
from slowatch.core.alerting import AlertBook
from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import SERVICE_LABEL, SLO_LABEL, rfc3339
from slowatch.core.model import SLO
from slowatch.core.regress import Row as RegressionRow
from slowatch.errors import StateError
from slowatch.ports import AlertSink, BatchSource, Clock, Publisher, Source, StateStore, Telemetry
from slowatch.view import DaemonView

log = structlog.get_logger("slowatch")

# Consecutive failed cycles before SLOWatchEvaluationFailing fires: one blip is not worth a
# ticket, two in a row (a minute at the default interval) is.
FAILING_AFTER_CYCLES = 2


class Cycle:
    def __init__(
        self,
        slos: Sequence[SLO],
        *,
        source: Source | BatchSource,
        sink: AlertSink,
        store: StateStore | None,
        publisher: Publisher,
        telemetry: Telemetry,
        executor: Executor,
        clock: Clock | None = None,
        book: AlertBook | None = None,
        dashboard_url: alerting.DashboardURL | None = None,
        timer: Callable[[], float] = time.monotonic,
        regressions: Callable[[Sequence[SLO], datetime], Mapping[str, Sequence[RegressionRow]]] | None = None,
        spec: Callable[[], Mapping[str, SLO]] | None = None,
    ) -> None:
        """``book``: the alert book saved by a previous run (its sink was built with the saved
        pending resolves). ``clock``: when the cycle delivers: a firing alert's validity counts
        from the post, so a cycle slower than it must not post from its evaluation instant (the
        alert would arrive expired, resolve and fire again). None: at the evaluation instant, for
        simulations whose time is only the instants passed to ``run``. ``timer``:
        seconds, for the cycle-duration histogram. ``spec``: the whole spec by id, where a shard's
        composites find components another shard owns (measured, never published or alerted)."""
        self._slos = tuple(slos)
        self._source = source
        self._sink = sink
        self._store = store
        self._publisher = publisher
        self._telemetry = telemetry
        self._executor = executor
        self._book = book or AlertBook()
        self._dashboard_url = dashboard_url
        self._timer = timer
        self._regressions = regressions
        self._clock = clock
        self._spec = spec
        self._previous: dict[str, BudgetStatus] = {}
        self._history = StatusHistory()
        self._findings: dict[str, Sequence[RegressionRow]] = {}
        self._failed_cycles = 0
        self._spec_error: str | None = None
        self._ready = False
        self._lock = threading.Lock()

    @property
    def slos(self) -> tuple[SLO, ...]:
        with self._lock:
            return self._slos

    @property
    def book(self) -> AlertBook:
        with self._lock:
            return self._book

    # --- one evaluation -----------------------------------------------------------------------

    def run(self, at: datetime) -> engine.Snapshot:
        at = at.replace(microsecond=0)  # every query of the cycle at one whole second
        started = self._timer()
        with self._lock:
            slos = self._slos
            previous = dict(self._previous)
        snapshot = engine.evaluate(slos, self._source, at, previous=previous, executor=self._executor,
                                   spec=self._spec() if self._spec is not None else None)
        _log_internal_errors(snapshot)
        # alerting.regression checks (their own schedule; Prometheus is asked outside the lock). A bug
        # there must not stop the cycle: its tickets stay as they are, and the log says why.
        findings = None
        if self._regressions is not None:
            try:
                findings = self._regressions(slos, at)
            except Exception as exc:
                log.error("regression check failed; its alerts stay as they are", error=scrub(repr(exc)),
                          traceback=scrub(traceback.format_exc()))
        failures = snapshot.failures
        # An SLO whose data the budget refuses (NaN, negative counts, a missing bound) is `error`
        # without a source failure; it is not evaluated all the same, and must not be silent.
        unevaluated = failures or any(s.state == "error" for s in snapshot.statuses)
        with self._lock:
            self._failed_cycles = self._failed_cycles + 1 if unevaluated else 0
            # A reload while measuring may have removed SLOs: their statuses must not fire anything.
            current = {s.id for s in self._slos}
            statuses = [s for s in snapshot.statuses if s.slo.id in current]
            self._book, changes = alerting.step(
                self._book, statuses, at,
                evaluation_failing=self._failed_cycles >= FAILING_AFTER_CYCLES,
                known_slo_ids=current,
                dashboard_url=self._dashboard_url,
                regressions=findings,
            )
            self._findings = dict(findings or {})
            self._previous = {s.slo.id: s for s in statuses}
            self._history.record(statuses, at)
            # Saved before delivery: a crash after posting can never lose what was posted.
            self._save(at)
        for change in changes:
            a = change.alert
            log.warning(f"alert {change.kind}", alertname=a.alertname, labels=dict(a.labels),
                        since=rfc3339(a.starts_at))
        self.deliver(self._clock.now() if self._clock is not None else at)
        with self._lock:
            self._ready = True
        duration = self._timer() - started
        self._telemetry.observe_cycle(duration, ok=not unevaluated, at=at)
        self.publish(at)
        states: dict[str, int] = {}
        for s in snapshot.statuses:
            states[s.state] = states.get(s.state, 0) + 1
        level = log.warning if failures else log.info
        level("evaluation finished", at=rfc3339(at), slos=len(slos), seconds=round(duration, 3), states=states,
              failures=len(failures), first_failure=scrub(str(failures[0])) if failures else None)
        return snapshot

    def deliver(self, now: datetime) -> None:
        """Post the book to the sink (also the resend job, between cycles)."""
        # Posted outside the lock (a slow Alertmanager must not hold up a cycle or a reload); alert
        # ids are stable, so forgetting the delivered resolves afterwards is safe whatever the cycle
        # changed meanwhile.
        report = self._sink.deliver(self.book, now)
        with self._lock:
            if report.delivered:
                self._book = alerting.forget(self._book, report.delivered)
            self._save(now)
        for result in report.results:
            self._telemetry.delivery(result.url, result.sent, result.errors)

    def save(self, now: datetime) -> None:
        with self._lock:
            self._save(now)

    def _save(self, now: datetime) -> None:
        """A failed write is logged and retried with the next save, never allowed to stop a cycle
        (the book in memory stays right; only a restart would lose it)."""
        if self._store is None:
            return
        try:
            self._store.save(self._book, self._sink.pending(), now)
        except StateError as exc:
            log.error("alert state not saved; a restart now would lose it", error=str(exc))

    # --- the spec -----------------------------------------------------------------------------

    def replace_spec(self, slos: Sequence[SLO]) -> tuple[int, int]:
        """A valid reload: the next cycle evaluates ``slos``; alerts of removed SLOs resolve then.
        Returns (added, removed) counts."""
        with self._lock:
            before = {s.id for s in self._slos}
            self._slos = tuple(slos)
            ids = {s.id for s in self._slos}
            self._previous = {k: v for k, v in self._previous.items() if k in ids}
            self._history.retain(ids)
            self._spec_error = None
        self.publish()
        return len(ids - before), len(before - ids)

    def spec_failed(self, error: str) -> None:
        """An invalid reload: the running spec stays, /status says why."""
        with self._lock:
            self._spec_error = error
        self.publish()

    # --- the view -----------------------------------------------------------------------------

    def publish(self, at: datetime | None = None) -> None:
        """A new view for /status and /metrics (``at``: the finished cycle's instant; None keeps
        the last one, for a reload between cycles)."""
        with self._lock:
            ids = {s.id for s in self._slos}
            view = DaemonView(
                at=at or self._publisher.current().at,
                statuses=tuple(self._previous[s.id] for s in self._slos if s.id in self._previous),
                alerts=alerting.views(self._book),
                firing=[labels for labels in alerting.firing_labels(self._book)
                        if SERVICE_LABEL not in labels or f"{labels[SERVICE_LABEL]}/{labels.get(SLO_LABEL)}" in ids],
                ready=self._ready,
                history=self._history.snapshot(),
                spec_error=self._spec_error,
                regressions={k: tuple(v) for k, v in self._findings.items() if k in ids},
            )
        self._publisher.publish(view)


def _log_internal_errors(snapshot: engine.Snapshot) -> None:
    """One line per exception (a batched chunk's SLOs share one), with the scrubbed traceback."""
    by_exception: dict[int, tuple[Exception, list[str]]] = {}
    for o in snapshot.outcomes:
        if o.internal and o.failure is not None:
            by_exception.setdefault(id(o.failure), (o.failure, []))[1].append(o.status.slo.id)
    for exc, slo_ids in by_exception.values():
        log.error("SLO evaluation failed with an internal error; the SLO is in state error",
                  slos=slo_ids, error=scrub(f"{type(exc).__name__}: {exc}"),
                  exception=scrub("".join(traceback.format_exception(exc)).rstrip()))
