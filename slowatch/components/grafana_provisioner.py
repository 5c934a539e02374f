"""Grafana dashboards kept in step with the spec, on a thread of their own: a slow or down
Grafana never delays a cycle. Requests made while a run is in flight coalesce into one more run;
a failed run (``GrafanaClient`` already retried each request) is tried again
``GRAFANA_RETRY_SECONDS`` later. Every failure is one log line that never holds the token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from pydantic import SecretStr

from slowatch.core.model import SLO
from slowatch.errors import GrafanaError, SpecError

if TYPE_CHECKING:  # the Grafana SDK is imported only when Grafana is configured
    from slowatch.adapters.grafana import GrafanaClient

log = structlog.get_logger("slowatch")

# After a failed provisioning run, try again this much later (Grafana restarts take a minute or
# two; five leaves it room without leaving dashboards stale for long).
GRAFANA_RETRY_SECONDS = 300.0
FAILED = "grafana provisioning failed; dashboards not updated"


class GrafanaProvisioner:
    def __init__(
        self,
        url: str,
        token: SecretStr | None,
        slos: Callable[[], list[SLO]],
        *,
        retry_seconds: float = GRAFANA_RETRY_SECONDS,
    ) -> None:
        """``slos``: the SLOs whose dashboards to write, read at each run."""
        self._url = url
        self._token = token
        self._slos = slos
        self._retry_seconds = retry_seconds
        self._wanted = threading.Event()
        self._reason = "start"
        self._stop = threading.Event()  # the running thread's; a new one per start()
        self._thread: threading.Thread | None = None

    def request(self, reason: str) -> None:
        """Ask for a run (at once, or right after the one in flight)."""
        self._reason = reason
        self._wanted.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self.request("start")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,), name="grafana", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A run in flight is abandoned (a daemon thread), not awaited."""
        if self._thread is not None:
            self._stop.set()
            self._wanted.set()
            self._thread = None

    def _loop(self, stop: threading.Event) -> None:
        from slowatch.adapters.grafana import GrafanaClient

        client = GrafanaClient(self._url, self._token)
        retry_in: float | None = None
        while True:
            asked = self._wanted.wait(retry_in)
            if stop.is_set():
                return
            self._wanted.clear()
            ok = self.run(client, self._reason if asked else "retry after a failure")
            retry_in = None if ok else self._retry_seconds

    def run(self, client: GrafanaClient, reason: str) -> bool:
        """One provisioning run; False when it failed."""
        from slowatch.adapters.dashboards import build_dashboards
        from slowatch.adapters.grafana import provision

        retry_in = f"{self._retry_seconds:g}s"
        try:
            result = provision(client, build_dashboards(self._slos()))
        except (GrafanaError, SpecError) as exc:  # GrafanaError messages are scrubbed of the token
            log.error(FAILED, reason=reason, grafana=client.url, error=" ".join(str(exc).split()), retry_in=retry_in)
            return False
        except Exception as exc:  # the thread must live on for later reloads; no traceback, it may hold the token
            token = self._token.get_secret_value() if self._token else ""
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            log.error(FAILED, reason=reason, grafana=client.url, error=error.replace(token, "***") if token else error,
                      retry_in=retry_in)
            return False
        log.info("grafana dashboards provisioned", reason=reason, grafana=client.url,
                 folder_created=result.folder_created, created=len(result.created), updated=len(result.updated),
                 unchanged=len(result.unchanged))
        return True
