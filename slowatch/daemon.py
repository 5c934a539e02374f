"""The one wiring point: settings -> adapters -> engine, APScheduler jobs, signals.

Each cycle: measure every SLO at one instant (bounded pool) -> budgets -> alert state machine ->
persist the alert book -> deliver to every Alertmanager -> publish an immutable view for
/status and /metrics. A failed source keeps the previous values (``stale``) and freezes the
SLO's alerts: a Prometheus hiccup never pages and never resolves.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from slowatch import engine
from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.http import App, Server, serve
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.adapters.state import SavedState, StateStore
from slowatch.core import alerting
from slowatch.core.budget import BudgetStatus
from slowatch.core.model import SLO
from slowatch.errors import GrafanaError, SpecError, StateError
from slowatch.settings import Settings
from slowatch.spec import load_specs
from slowatch.view import DaemonView, ViewHolder

if TYPE_CHECKING:
    from slowatch.adapters.grafana import GrafanaClient

log = structlog.get_logger("slowatch")

# Consecutive cycles with source failures before SLOWatchEvaluationFailing fires: one blip is
# not worth a ticket, two in a row (a minute at the default interval) is.
FAILING_AFTER_CYCLES = 2
# The status page charts the budget over this much recent time, at most this many points.
HISTORY_SPAN = timedelta(hours=6)
HISTORY_POINTS = 360
# How often spec files are checked for changes (SIGHUP reloads at once).
SPEC_POLL_SECONDS = 5.0
# After a failed Grafana provisioning run (GrafanaClient already retried), try again this much later.
GRAFANA_RETRY_SECONDS = 300.0


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` (1 <= K <= N) or None."""
    if not text:
        return None
    k, _, n = text.partition("/")
    shard, count = int(k), int(n)
    if not 1 <= shard <= count:
        raise ValueError(f"shard must be K/N with 1 <= K <= N, got {text!r}")
    return shard, count


def in_shard(slo: SLO, shard: tuple[int, int] | None) -> bool:
    """A stable hash of the SLO id picks its replica (the same on every host and Python run)."""
    if shard is None:
        return True
    k, n = shard
    digest = hashlib.sha256(slo.id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        paths: Sequence[str | Path],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.paths = [Path(p) for p in paths]
        self.clock = clock
        self.shard = parse_shard(settings.shard)
        self.slos = self._load()  # an invalid spec at start is fatal (SpecError -> exit 1)
        self._spec_stamp = self._stamp()
        self.holder = ViewHolder()
        self.registry, self.metrics = new_registry(self.holder)
        self.metrics.spec_reload(True, clock())
        self.prometheus = PrometheusSource(
            settings.prometheus_url, timeout=settings.query_timeout, retries=settings.query_retries
        )
        # Batched queries and the hour ledger: a cycle's cost does not grow with the window length.
        self.source = PlannedSource(self.prometheus)
        self.store = StateStore(settings.state_dir) if settings.state_dir else None
        saved = self.store.load() if self.store else SavedState()
        self.book = saved.book
        self.alertmanager = AlertmanagerClient.from_settings(settings, pending=saved.pending)
        self.previous: dict[str, BudgetStatus] = {}
        self.history: dict[str, deque[tuple[datetime, float]]] = {}
        self.failed_cycles = 0
        self.spec_error: str | None = None
        self.ready = False
        self._lock = threading.Lock()  # the book and the spec: cycle, delivery and reload take turns
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="eval")
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._queries_seen = (0, 0, 0)
        self.server: Server | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.dashboard_url = self._dashboard_url()
        # Grafana provisioning runs on its own thread (a slow or down Grafana never delays a cycle);
        # requests made while a run is in flight coalesce into one more run.
        self._grafana_wanted = threading.Event()
        self._grafana_reason = "start"
        self._grafana_stop = threading.Event()  # the running Grafana thread's; a new one per start()
        self._grafana_thread: threading.Thread | None = None

    # --- spec ---------------------------------------------------------------------------------

    def _load(self) -> list[SLO]:
        return [s for s in load_specs(self.paths) if in_shard(s, self.shard)]

    def _stamp(self) -> tuple[tuple[str, float, int], ...]:
        files: list[Path] = []
        for p in self.paths:
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        out = []
        for f in files:
            try:
                st = f.stat()
                out.append((str(f), st.st_mtime, st.st_size))
            except OSError:
                out.append((str(f), -1.0, -1))
        return tuple(out)

    def reload(self, reason: str) -> bool:
        """Load the spec again; an invalid one keeps the running spec (as Prometheus does)."""
        self._spec_stamp = self._stamp()
        now = self.clock()
        try:
            slos = self._load()
        except SpecError as exc:
            self.spec_error = "; ".join(str(p) for p in exc.problems)
            self.metrics.spec_reload(False, now)
            log.error("spec reload failed; keeping the running spec", reason=reason, problems=len(exc.problems),
                      error=self.spec_error)
            self._publish()
            return False
        with self._lock:
            before = {s.id for s in self.slos}
            self.slos = slos
            ids = {s.id for s in slos}
            self.previous = {k: v for k, v in self.previous.items() if k in ids}
            self.history = {k: v for k, v in self.history.items() if k in ids}
        self.spec_error = None
        self.metrics.spec_reload(True, now)
        log.info("spec reloaded", reason=reason, slos=len(slos), added=len(ids - before), removed=len(before - ids))
        self._publish()
        self._provision_soon(reason)
        return True

    def _watch_spec(self) -> None:
        if self._stamp() != self._spec_stamp:
            self.reload("spec file changed")

    # --- one cycle ----------------------------------------------------------------------------

    def cycle(self) -> engine.Snapshot:
        at = self.clock().replace(microsecond=0)
        started = time.monotonic()
        with self._lock:
            slos = list(self.slos)
            previous = dict(self.previous)
        snapshot = engine.evaluate(slos, self.source, at, previous=previous, executor=self._pool)
        failures = snapshot.failures
        self.failed_cycles = self.failed_cycles + 1 if failures else 0
        with self._lock:
            # A reload while measuring may have removed SLOs: their statuses must not fire anything.
            current = {s.id for s in self.slos}
            statuses = [s for s in snapshot.statuses if s.slo.id in current]
            book, changes = alerting.step(
                self.book, statuses, at,
                evaluation_failing=self.failed_cycles >= FAILING_AFTER_CYCLES,
                known_slo_ids=current,
                dashboard_url=self.dashboard_url,
            )
            self.book = book
            self.previous = {s.slo.id: s for s in statuses}
            self._record_history(statuses, at)
            # Saved before delivery: a crash after posting can never lose what was posted.
            self._save(at)
        for change in changes:
            a = change.alert
            log.warning(f"alert {change.kind}", alertname=a.alertname, labels=dict(a.labels),
                        since=a.starts_at.isoformat())
        self._deliver(at)
        self.ready = True
        duration = time.monotonic() - started
        self.metrics.observe_cycle(duration, ok=not failures, at=at)
        self._count_queries()
        self._publish(at)
        states: dict[str, int] = {}
        for s in snapshot.statuses:
            states[s.state] = states.get(s.state, 0) + 1
        level = log.warning if failures else log.info
        level("evaluation finished", at=at.isoformat(), slos=len(slos), seconds=round(duration, 3), states=states,
              failures=len(failures), first_failure=str(failures[0]) if failures else None)
        return snapshot

    def _save(self, at: datetime) -> None:
        """Save the alert book; a failed write is logged and retried with the next save, never
        allowed to stop a cycle (the book in memory stays right, only a restart would lose it)."""
        if self.store is None:
            return
        try:
            self.store.save(self.book, self.alertmanager.pending(), at)
        except StateError as exc:
            log.error("alert state not saved; a restart now would lose it", error=str(exc))

    def deliver(self) -> None:
        """The resend job: keeps firing alerts alive in Alertmanager between cycles."""
        self._deliver(self.clock())

    def _deliver(self, now: datetime) -> None:
        # Posted outside the lock (a slow Alertmanager must not hold up a cycle or a reload); alert
        # ids are stable, so forgetting the delivered resolves afterwards is safe whatever the cycle
        # changed meanwhile. With no URL, deliver() reports every resolve delivered.
        with self._lock:
            book = self.book
        report = self.alertmanager.deliver(book, now)
        with self._lock:
            if report.delivered:
                self.book = alerting.forget(self.book, report.delivered)
            self._save(now)
        for result in report.results:
            self.metrics.delivery(result.url, result.sent, result.errors)

    def _count_queries(self) -> None:
        q = self.prometheus.stats
        now = (q.queries, q.errors, q.samples_read)
        before = self._queries_seen
        self.metrics.add_queries(now[0] - before[0], now[1] - before[1], now[2] - before[2])
        self._queries_seen = now

    def _record_history(self, statuses: Sequence[BudgetStatus], at: datetime) -> None:
        spacing = HISTORY_SPAN / HISTORY_POINTS
        for s in statuses:
            if s.state in ("stale", "error", "no_data") or s.sli is None:
                continue
            points = self.history.setdefault(s.slo.id, deque(maxlen=HISTORY_POINTS))
            if not points or at - points[-1][0] >= spacing:
                points.append((at, s.remaining))

    def _publish(self, at: datetime | None = None) -> None:
        with self._lock:
            current = self.holder.get()
            ids = {s.id for s in self.slos}
            statuses = tuple(self.previous[s.id] for s in self.slos if s.id in self.previous)
            view = DaemonView(
                at=at or current.at,
                statuses=statuses,
                alerts=alerting.views(self.book),
                firing=[labels for labels in alerting.firing_labels(self.book)
                        if labels.get("service") is None or f"{labels['service']}/{labels.get('slo')}" in ids],
                ready=self.ready,
                history={k: tuple(v) for k, v in self.history.items()},
                spec_error=self.spec_error,
            )
        self.holder.set(view)

    def _dashboard_url(self) -> alerting.DashboardURL | None:
        if not self.settings.grafana_url:
            return None
        from slowatch.adapters.urls import redact
        from slowatch.core.dashboards import dashboard_url

        base = redact(self.settings.grafana_url)  # alerts travel far: never with a password in them

        def url(slo: SLO) -> str | None:
            return dashboard_url(base, slo)

        return url

    # --- Grafana ------------------------------------------------------------------------------

    def _provision_soon(self, reason: str) -> None:
        """Ask the Grafana thread (started by ``start()``) to provision the current spec's dashboards."""
        if self.settings.grafana_url:
            self._grafana_reason = reason
            self._grafana_wanted.set()

    def _grafana_loop(self, stop: threading.Event) -> None:
        from slowatch.adapters.grafana import GrafanaClient

        client = GrafanaClient(self.settings.grafana_url or "", self.settings.grafana_token)
        retry_in: float | None = None
        while True:
            asked = self._grafana_wanted.wait(retry_in)
            if stop.is_set():
                return
            self._grafana_wanted.clear()
            ok = self._provision(client, self._grafana_reason if asked else "retry after a failure")
            retry_in = None if ok else GRAFANA_RETRY_SECONDS

    def _provision(self, client: GrafanaClient, reason: str) -> bool:
        """One provisioning run (GrafanaClient retries transient failures); False when it failed,
        logged on one line that never holds the token."""
        from slowatch.adapters.grafana import provision
        from slowatch.core.dashboards import build_dashboards

        failed = "grafana provisioning failed; dashboards not updated"
        try:
            with self._lock:
                slos = list(self.slos)
            if self.shard is not None:
                # The overview lists every SLO: each replica writes the whole spec's dashboards, or
                # the shards would keep overwriting each other's overview.
                slos = load_specs(self.paths)
            result = provision(client, build_dashboards(slos))
        except (GrafanaError, SpecError) as exc:  # GrafanaError messages are scrubbed of the token
            log.error(failed, reason=reason, grafana=client.url, error=" ".join(str(exc).split()),
                      retry_in=f"{GRAFANA_RETRY_SECONDS:g}s")
            return False
        except Exception as exc:  # the thread must live on for later reloads; no traceback, it may hold the token
            token = self.settings.grafana_token.get_secret_value() if self.settings.grafana_token else ""
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            log.error(failed, reason=reason, grafana=client.url, error=error.replace(token, "***") if token else error,
                      retry_in=f"{GRAFANA_RETRY_SECONDS:g}s")
            return False
        log.info("grafana dashboards provisioned", reason=reason, grafana=client.url,
                 folder_created=result.folder_created, created=len(result.created), updated=len(result.updated),
                 unchanged=len(result.unchanged))
        return True

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        host, port = self.settings.listen_host_port
        interval = self.settings.evaluation_interval
        self.server = serve(App(self.holder, self.registry, stale_after=3 * interval), host, port)
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # One cycle at a time; a late cycle runs once, not once per missed slot.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(interval.total_seconds())},
        )
        scheduler.add_job(self._safe(self.cycle), "interval", seconds=interval.total_seconds(), id="evaluate",
                          next_run_time=self.clock())
        if self.settings.alertmanager_urls:
            resend = self.settings.alert_resend_interval
            scheduler.add_job(self._safe(self.deliver), "interval", seconds=resend.total_seconds(), id="deliver")
        scheduler.add_job(self._safe(self._watch_spec), "interval", seconds=SPEC_POLL_SECONDS, id="spec")
        scheduler.start()
        self.scheduler = scheduler
        if self.settings.grafana_url and self._grafana_thread is None:
            self._provision_soon("start")
            self._grafana_stop = threading.Event()
            self._grafana_thread = threading.Thread(target=self._grafana_loop, args=(self._grafana_stop,),
                                                    name="grafana", daemon=True)
            self._grafana_thread.start()
        log.info("slowatch started", listen=self.server.url, prometheus=self.settings.prometheus_url,
                 slos=len(self.slos), interval=str(interval), alertmanagers=len(self.settings.alertmanager_urls),
                 state_dir=str(self.settings.state_dir) if self.settings.state_dir else None, shard=self.settings.shard)

    def _safe(self, job: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception:  # a failed job must not kill the scheduler thread or the daemon
                log.exception("job failed", job=getattr(job, "__name__", str(job)))

        return run

    def stop(self) -> None:
        """Finish the cycle in flight, save, stop serving. Resolves nothing."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self._grafana_thread is not None:  # a run in flight is abandoned (daemon thread), not awaited
            self._grafana_stop.set()
            self._grafana_wanted.set()
            self._grafana_thread = None
        with self._lock:
            self._save(self.clock())
        self._pool.shutdown(wait=True)
        if self.server is not None:
            self.server.close()
            self.server = None
        self.alertmanager.close()
        self.prometheus.close()
        log.info("slowatch stopped")

    def run_forever(self) -> int:
        def on_term(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received; finishing the cycle in flight", signal=signal.Signals(signum).name)
            self._stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        self.start()
        try:
            while not self._stop.wait(0.5):
                if self._reload.is_set():
                    self._reload.clear()
                    try:
                        self.reload("SIGHUP")
                    except Exception:  # a failed reload must not end the daemon
                        log.exception("spec reload failed")
        finally:
            self.stop()
        return 0


def cmd_run(args: argparse.Namespace) -> int:
    from slowatch.cli import _settings
    from slowatch.logs import configure

    settings = _settings(args)
    configure(settings.log_format, settings.log_level)
    daemon = Daemon(settings, args.paths)
    return daemon.run_forever()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser(
        "run", help="the daemon: evaluate continuously, alert, serve /status and /metrics",
        description="Evaluate every SLO each interval, send budget and burn-rate alerts to Alertmanager, "
        "serve /status, /metrics, /healthz, /readyz and a status page. SIGHUP (or a changed spec file) "
        "reloads the spec; SIGTERM finishes the cycle in flight and exits.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")
    sp.add_argument("--prometheus-url", help="SLOWATCH_PROMETHEUS_URL (default http://127.0.0.1:9090)")
    sp.add_argument("--alertmanager-urls", help="SLOWATCH_ALERTMANAGER_URLS, comma-separated (empty: no delivery)")
    sp.add_argument("--listen", help="SLOWATCH_LISTEN host:port (default 127.0.0.1:9099)")
    sp.add_argument("--evaluation-interval", help="SLOWATCH_EVALUATION_INTERVAL (default 30s)")
    sp.add_argument("--state-dir", help="SLOWATCH_STATE_DIR: alert state survives restarts here")
    sp.add_argument("--log-format", choices=("json", "console"), help="SLOWATCH_LOG_FORMAT (default console)")
    sp.add_argument("--shard", help="K/N: evaluate only this replica's share of the SLOs (stable hash)")
    sp.set_defaults(func=cmd_run)

