"""Delivery of the alert book to every Alertmanager (API v2, ``POST /api/v2/alerts``).

Each ``deliver(book, now)`` posts, to every URL:

* the resolved alerts that URL has not accepted yet, with their own ``endsAt``, oldest first, and
  then
* every firing alert, with ``endsAt = now + 4 * resend_interval``: the daemon calls ``deliver``
  every resend interval, so a live slowatch refreshes an alert long before it expires, while the
  alerts of a dead one resolve by themselves (Prometheus does the same: rules/alerting.go sets
  ``ValidUntil = ts + 4 * resendDelay``).

Resolves go before firing alerts because Alertmanager keeps the last alert posted for a label set:
an old resolved episode posted after a new firing one with the same labels would hide it.

A URL that fails (connection, timeout, 5xx, ...) is logged and counted, keeps everything for the
next call, and is retried with exponential backoff (resend interval doubling up to
``max_backoff``), so a dead Alertmanager is not hammered. Nothing here raises into the daemon loop.
A resolved alert leaves the book (``alerting.forget``) once every URL has accepted it; the ids are
in ``DeliveryReport.delivered``.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

import requests
import structlog

import slowatch
from slowatch.adapters.sessions import session_auth
from slowatch.adapters.urls import scrub
from slowatch.core.alerting import Alert, AlertBook
from slowatch.core.conventions import rfc3339

API_PATH = "/api/v2/alerts"
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
# Firing alerts are valid for this many resend intervals (Prometheus' notifier uses 4).
VALIDITY_RESENDS = 4
# Backoff cap: Alertmanager's default resolve_timeout, so an Alertmanager that comes back gets the
# firing alerts again within the time it would itself wait for an alert to be refreshed.
MAX_BACKOFF = timedelta(minutes=5)
# A scheduler runs a job a little early or late; a call this close to the retry time is the retry.
SCHEDULER_SLACK = timedelta(seconds=1)
# How much of an error response body goes into a log line.
BODY_EXCERPT = 300

log = structlog.get_logger()


class Settings(Protocol):
    """What delivery reads from ``slowatch.settings.Settings``."""

    @property
    def alertmanager_urls(self) -> list[str]: ...

    @property
    def alert_resend_interval(self) -> timedelta: ...

    @property
    def external_url(self) -> str | None: ...


@dataclass(frozen=True)
class UrlStats:
    """Cumulative counters for one Alertmanager (URL without credentials)."""

    url: str
    sent: int = 0
    """Alerts accepted."""
    errors: int = 0
    """Posts that failed or were refused."""
    consecutive_failures: int = 0
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    """While backing off: the first instant the URL is tried again."""


@dataclass(frozen=True)
class UrlResult:
    """What one ``deliver`` call did for one URL (feed these to the metrics' counters)."""

    url: str
    sent: int = 0
    errors: int = 0
    skipped: bool = False
    """Not attempted: the URL is backing off after failures."""


@dataclass(frozen=True)
class DeliveryReport:
    delivered: frozenset[str]
    """Ids of resolved alerts every URL has accepted: pass them to ``alerting.forget``."""
    results: tuple[UrlResult, ...]


class _Target:
    """Mutable per-URL bookkeeping; guarded by the client's lock."""

    def __init__(self, url: str, pending: Iterable[str] = ()) -> None:
        self.url = url
        self.pending: dict[str, None] = dict.fromkeys(pending)  # an ordered set of alert ids
        self.sent = 0
        self.errors = 0
        self.failures = 0
        self.last_error: str | None = None
        self.next_attempt_at: datetime | None = None

    def stats(self) -> UrlStats:
        return UrlStats(
            url=self.url, sent=self.sent, errors=self.errors, consecutive_failures=self.failures,
            last_error=self.last_error, next_attempt_at=self.next_attempt_at,
        )


class AlertmanagerClient:
    """Posts the book to every Alertmanager; thread-safe (one delivery at a time)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        resend_interval: timedelta = timedelta(minutes=1),
        session: requests.Session | None = None,
        pending: Mapping[str, Collection[str]] | None = None,
        status_url: str | None = None,
        max_backoff: timedelta = MAX_BACKOFF,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
    ) -> None:
        """``pending``: the bookkeeping saved by a previous run (``pending()``), by redacted URL.
        ``status_url``: slowatch's external base URL; alerts then link to ``/status/{service}/{slo}``.
        """
        if resend_interval <= timedelta(0):
            raise ValueError("resend_interval must be positive")
        # Credentials in a URL travel only as the request's Authorization header, never in a URL kept.
        self._urls = {bare: auth for bare, auth in map(session_auth, urls)}
        pending = pending or {}
        self._targets = {key: _Target(key, pending.get(key, ())) for key in self._urls}
        # Resolved alerts already queued for every URL (so one is queued once, not on every call).
        self._queued: set[str] = {i for t in self._targets.values() for i in t.pending}
        self._resend = resend_interval
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._own_session = session is None
        self._session = session or requests.Session()
        self._status_url = status_url.rstrip("/") if status_url else None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        session: requests.Session | None = None,
        pending: Mapping[str, Collection[str]] | None = None,
    ) -> AlertmanagerClient:
        return cls(
            settings.alertmanager_urls, resend_interval=settings.alert_resend_interval, session=session,
            pending=pending, status_url=settings.external_url,
        )

    def deliver(self, book: AlertBook, now: datetime) -> DeliveryReport:
        """Post the book to every URL that is not backing off. Never raises for a delivery failure."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        with self._lock:
            resolved = {a.id: a for a in book.resolved}
            for alert_id in resolved.keys() - self._queued:
                for target in self._targets.values():
                    target.pending[alert_id] = None
                self._queued.add(alert_id)
            self._queued &= resolved.keys()  # forgotten alerts leave the bookkeeping
            for target in self._targets.values():
                for gone in [i for i in target.pending if i not in resolved]:
                    del target.pending[gone]

            firing = [self._payload(a, ends_at=now + VALIDITY_RESENDS * self._resend) for a in book.firing]
            results = tuple(self._deliver_one(t, resolved, firing, now) for t in self._targets.values())
            waiting = {i for t in self._targets.values() for i in t.pending}
            return DeliveryReport(delivered=frozenset(resolved.keys() - waiting), results=results)

    def pending(self) -> dict[str, tuple[str, ...]]:
        """Per URL (credentials removed): ids of the resolved alerts it still has to receive."""
        with self._lock:
            return {t.url: tuple(t.pending) for t in self._targets.values()}

    def stats(self) -> tuple[UrlStats, ...]:
        with self._lock:
            return tuple(t.stats() for t in self._targets.values())

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    # --- one URL ------------------------------------------------------------------------------

    def _deliver_one(
        self, target: _Target, resolved: Mapping[str, Alert], firing: list[dict[str, Any]], now: datetime
    ) -> UrlResult:
        if target.next_attempt_at is not None and now + SCHEDULER_SLACK < target.next_attempt_at:
            return UrlResult(target.url, skipped=True)
        sending = list(target.pending)
        body = [self._payload(resolved[i]) for i in sending] + firing
        if not body:
            return UrlResult(target.url)
        try:
            response = self._session.post(target.url + API_PATH, json=body, timeout=self._timeout,
                                          auth=self._urls[target.url],
                                          headers={"User-Agent": f"slowatch/{slowatch.__version__}"})
        except requests.RequestException as exc:
            return self._failed(target, now, scrub(f"{type(exc).__name__}: {exc}"))
        # Alertmanager stores the valid alerts of a batch and answers 400 for the invalid ones;
        # those will never be accepted, so retrying them would only keep resolves forever.
        refused = response.status_code == requests.codes.bad_request
        if refused:
            log.error("alertmanager refused some alerts", url=target.url, status=response.status_code,
                      body=response.text[:BODY_EXCERPT])
            target.errors += 1
        elif not response.ok:
            return self._failed(target, now, f"HTTP {response.status_code}: {response.text[:BODY_EXCERPT]}")
        for alert_id in sending:
            del target.pending[alert_id]
        target.sent += len(body)
        if target.failures:
            log.info("alertmanager delivery recovered", url=target.url, after_failures=target.failures)
        target.failures = 0
        target.next_attempt_at = None
        return UrlResult(target.url, sent=len(body), errors=int(refused))

    def _failed(self, target: _Target, now: datetime, error: str) -> UrlResult:
        target.errors += 1
        target.failures += 1
        target.last_error = error
        delay = min(self._resend * 2 ** (target.failures - 1), self._max_backoff)
        target.next_attempt_at = now + delay
        log.warning("alertmanager delivery failed", url=target.url, error=error, failures=target.failures,
                    retry_at=_rfc3339(target.next_attempt_at), pending_resolved=len(target.pending))
        return UrlResult(target.url, errors=1)

    def _payload(self, alert: Alert, ends_at: datetime | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "labels": dict(alert.labels),
            # Last line of defence: annotations quote errors and URLs, and alerts travel far.
            "annotations": {k: scrub(v) for k, v in alert.annotations},
            "startsAt": _rfc3339(alert.starts_at),
            "endsAt": _rfc3339(ends_at if ends_at is not None else alert.ends_at or alert.starts_at),
        }
        if self._status_url:
            service, slo = alert.label("service"), alert.label("slo")
            path = f"/status/{quote(service, safe='')}/{quote(slo, safe='')}" if service and slo else "/status"
            out["generatorURL"] = self._status_url + path
        return out


def _rfc3339(t: datetime) -> str:
    # Full precision: Alertmanager parses RFC 3339 with fractions, and the exact startsAt is the
    # alert's identity across restarts.
    return rfc3339(t, exact=True)
