"""The one wiring point: settings -> adapters -> cycle, APScheduler jobs, signals.

What runs, on which thread:

    evaluate  every SLOWATCH_EVALUATION_INTERVAL   Cycle.run (measure, budget, alert, save, deliver, publish)
    deliver   every SLOWATCH_ALERT_RESEND_INTERVAL Cycle.deliver (keeps firing alerts alive in Alertmanager)
    spec      every SPEC_POLL_SECONDS              SpecWatcher.check (a changed spec file reloads)
    grafana   its own thread                       GrafanaProvisioner (at start and after each reload)
    main      signals: SIGHUP reloads; SIGTERM/SIGINT finish the cycle in flight, save, exit (resolving nothing)
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from slowatch import shard
from slowatch.adapters.alertmanager import AlertmanagerClient
from slowatch.adapters.http import App, Server, serve
from slowatch.adapters.ledger_store import LedgerStore
from slowatch.adapters.metrics import Prerendering, new_registry
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.adapters.serving import ServingProcess, Shipping
from slowatch.adapters.state import SavedState, StateStore
from slowatch.adapters.urls import redact, scrub
from slowatch.components.grafana_provisioner import GrafanaProvisioner
from slowatch.components.regression import RegressionWatch
from slowatch.components.spec_watcher import SPEC_POLL_SECONDS, SpecWatcher
from slowatch.core import alerting
from slowatch.core.model import SLO
from slowatch.cycle import FAILING_AFTER_CYCLES, Cycle
from slowatch.errors import SettingsError
from slowatch.ports import Clock, SystemClock
from slowatch.settings import Settings
from slowatch.spec import load_specs
from slowatch.view import ViewHolder

__all__ = ["FAILING_AFTER_CYCLES", "Daemon"]

log = structlog.get_logger("slowatch")


class Daemon:
    def __init__(self, settings: Settings, paths: Sequence[str | Path], *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.paths = [Path(p) for p in paths]
        self.clock = clock or SystemClock()
        try:
            self.shard = shard.resolve(settings.shard, os.environ, socket.gethostname())
        except shard.ShardError as exc:
            raise SettingsError(str(exc)) from exc
        self.holder = ViewHolder()
        self._spec: dict[str, SLO] = {}
        self._last_spec: dict[str, SLO] = {}
        self.registry, self.metrics = new_registry(self.holder, windows=settings.metrics_windows)
        self.app = App(self.holder, self.registry, stale_after=3 * settings.evaluation_interval)
        # The public listener in a process of its own (adapters/serving.py): each published view is
        # shipped to it; /metrics and /healthz come back to self.app over a private Unix socket.
        self.serving = ServingProcess(
            self.app, *settings.listen_host_port, web_config=settings.web_config_file,
            stale_after=3 * settings.evaluation_interval, log_format=settings.log_format,
            log_level=settings.log_level, registry=self.registry.own,
        ) if settings.http_process else None
        slos = self._load()  # an invalid spec at start is fatal (SpecError -> exit 1)
        self.metrics.spec_reload(True, self.clock.now())
        self.prometheus = PrometheusSource(
            settings.prometheus_url, timeout=settings.query_timeout, retries=settings.query_retries,
            bearer_token_file=settings.prometheus_bearer_token_file,
        )
        self.store = StateStore(settings.state_dir) if settings.state_dir else None
        saved = self.store.load_or_set_aside() if self.store else SavedState()
        self.alertmanager = AlertmanagerClient.from_settings(settings, pending=saved.pending)
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="eval")
        # Batched queries and the hour ledger: a cycle's cost does not grow with the window length.
        # With a state dir the ledger survives restarts: loaded in the first cycle (so /readyz
        # turns ready only once a cycle ran with it), saved after each hour is added.
        self.source = PlannedSource(self.prometheus,
                                    store=LedgerStore(settings.state_dir) if settings.state_dir else None)
        self.cycle = Cycle(
            slos,
            source=self.source,
            sink=self.alertmanager, store=self.store, telemetry=self.metrics,
            # /metrics rendered off the scrape's path; the view shipped to the serving process.
            publisher=Prerendering(self.holder, self.registry) if self.serving is None
            else Shipping(Prerendering(self.holder, self.registry), self.serving.ship),
            executor=self._pool, clock=self.clock, book=saved.book, dashboard_url=self._dashboard_url(),
            # alerting.regression: checked every few minutes, on the plain client (instant queries).
            regressions=RegressionWatch(self.prometheus).run,
            # A shard's composites measure their components wherever they are (shard.py).
            spec=lambda: self._spec,
        )
        self.grafana = (
            GrafanaProvisioner(settings.grafana_url, settings.grafana_token, self._grafana_slos)
            if settings.grafana_url else None
        )
        self.watcher = SpecWatcher(self.paths, self._load, self.cycle, self.metrics, self.clock,
                                   on_reloaded=self.grafana.request if self.grafana else lambda reason: None)
        self._queries_seen = (0, 0, 0)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.server: Server | ServingProcess | None = None
        self.scheduler: BackgroundScheduler | None = None

    def _load(self) -> list[SLO]:
        every = load_specs(self.paths, self.settings.state_dir)  # unchanged files: from the spec cache
        mine = [s for s in every if shard.in_shard(s.id, self.shard)]
        # The watcher hands the cycle its new SLOs just after this: a cycle in between still finds
        # the components of the previous SLOs' composites (the last load's, not older ones).
        spec = {s.id: s for s in every}
        self._spec, self._last_spec = {**self._last_spec, **spec}, spec
        self.metrics.shard(self.shard, len(every), [s.id for s in mine], shard.set_hash(s.id for s in mine))
        return mine

    def _grafana_slos(self) -> list[SLO]:
        # The overview lists every SLO: each replica writes the whole spec's dashboards, or the
        # shards would keep overwriting each other's overview.
        return load_specs(self.paths) if self.shard is not None else list(self.cycle.slos)

    def _dashboard_url(self) -> alerting.DashboardURL | None:
        if not self.settings.grafana_url:
            return None
        from slowatch.core.dashboards import dashboard_url

        base = redact(self.settings.grafana_url)  # alerts travel far: never with a password in them
        return lambda slo: dashboard_url(base, slo)

    # --- jobs ---------------------------------------------------------------------------------

    def evaluate(self) -> None:
        self.cycle.run(self.clock.now())
        q = self.prometheus.stats
        now = (q.queries, q.errors, q.samples_read)
        before, self._queries_seen = self._queries_seen, now
        self.metrics.add_queries(now[0] - before[0], now[1] - before[1], now[2] - before[2])

    def deliver(self) -> None:
        self.cycle.deliver(self.clock.now())

    def reload(self, reason: str) -> bool:
        return self.watcher.reload(reason)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        host, port = self.settings.listen_host_port
        interval = self.settings.evaluation_interval
        self.server = self.serving.start() if self.serving is not None else \
            serve(self.app, host, port, web_config=self.settings.web_config_file)
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # One cycle at a time; a late cycle runs once, not once per missed slot.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": int(interval.total_seconds())},
        )
        scheduler.add_job(_safe(self.evaluate), "interval", seconds=interval.total_seconds(), id="evaluate",
                          next_run_time=self.clock.now())
        if self.settings.alertmanager_urls:
            resend = self.settings.alert_resend_interval
            scheduler.add_job(_safe(self.deliver), "interval", seconds=resend.total_seconds(), id="deliver")
        scheduler.add_job(_safe(self.watcher.check), "interval", seconds=SPEC_POLL_SECONDS, id="spec")
        scheduler.start()
        self.scheduler = scheduler
        if self.grafana is not None:
            self.grafana.start()
        log.info("slowatch started", listen=self.server.url, prometheus=redact(self.settings.prometheus_url),
                 slos=len(self.cycle.slos), interval=str(interval), alertmanagers=len(self.settings.alertmanager_urls),
                 state_dir=str(self.settings.state_dir) if self.settings.state_dir else None, shard=self.settings.shard)

    def stop(self) -> None:
        """Finish the cycle in flight, save, stop serving. Resolves nothing."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        if self.grafana is not None:
            self.grafana.stop()
        self.cycle.save(self.clock.now())
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
                    _safe(lambda: self.reload("SIGHUP"))()  # a failed reload must not end the daemon
        finally:
            self.stop()
        return 0


def _safe(job: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            job()
        except Exception as exc:  # a failed job must not kill the scheduler thread or the daemon
            log.error("job failed", job=getattr(job, "__name__", str(job)), error=scrub(f"{type(exc).__name__}: {exc}"),
                      exception=scrub(traceback.format_exc().rstrip()))

    return run
