"""A real Alertmanager whose only receiver is a webhook served by this test process, so a test
sees exactly the notifications Alertmanager sends (and when).

The launcher is ``tests.support.processes.start_alertmanager``; it raises (the test fails, it is
not skipped) when the ``prometheus-alertmanager`` binary is missing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import ALERTMANAGER_VERSIONS, Alertmanager, start_alertmanager

HOOK_PATH = "/hook"
# Short groupings so notifications come within a second or two; a long repeat interval so any
# second notification of an unchanged alert is a real duplicate, never a scheduled repeat.
GROUP_WAIT = "1s"
GROUP_INTERVAL = "1s"
REPEAT_INTERVAL = "1h"
# How long a test waits for a notification Alertmanager should send after about GROUP_WAIT.
NOTIFY_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.2
# Every Alertmanager the tests run against: Debian stable's and the current release.
ALERTMANAGERS = [pytest.param(v, id=f"alertmanager-{v}") for v in ALERTMANAGER_VERSIONS]


@dataclass(frozen=True)
class Notified:
    """One alert in one webhook notification."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


class WebhookReceiver:
    """A threaded HTTP server recording every notification posted to ``HOOK_PATH``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payloads: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200 if self.path == HOOK_PATH else 404)
                self.send_header("Content-Length", "0")  # the answer is complete here, not at close
                self.end_headers()
                # Recorded once answered, so a test that saw it knows Alertmanager got the 200.
                if self.path == HOOK_PATH:
                    with receiver._lock:
                        receiver._payloads.append(json.loads(body))

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{HOOK_PATH}"

    def notified(self) -> list[Notified]:
        with self._lock:
            payloads = list(self._payloads)
        return [
            Notified(
                status=a["status"], labels=a["labels"], annotations=a["annotations"],
                starts_at=_parse_go_time(a["startsAt"]), ends_at=_ends_at(a["endsAt"]),
            )
            for p in payloads for a in p["alerts"]
        ]

    def wait_for(self, predicate: Callable[[list[Notified]], bool], *, while_waiting: Callable[[], None] | None = None,
                 timeout: float = NOTIFY_TIMEOUT_SECONDS) -> list[Notified]:
        """Poll until ``predicate(notified())`` holds, calling ``while_waiting`` each round (a test
        passes the daemon's delivery there, as its resend loop would). Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if while_waiting is not None:
                while_waiting()
            seen = self.notified()
            if predicate(seen):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching notification within {timeout}s; got {seen}")
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def alertmanager_config(webhook_url: str) -> str:
    return yaml.safe_dump({
        "route": {
            "receiver": "hook",
            "group_by": ["..."],  # every alert its own group: one alert per notification
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }, sort_keys=False)


def launch_alertmanager(work_dir: Path, webhook: WebhookReceiver, version: str | None = None) -> Alertmanager:
    """A ready Alertmanager (free loopback port, no clustering) notifying ``webhook``.
    ``stop()`` then ``start()`` brings it back on the same port with the same storage."""
    return start_alertmanager(work_dir, alertmanager_config(webhook.url), version=version)


def _parse_go_time(text: str) -> datetime:
    # Go writes up to nine fractional digits; Python reads six.
    head, dot, rest = text.partition(".")
    if dot:
        digits = rest.rstrip("Z")
        text = f"{head}.{digits[:6].ljust(6, '0')}Z"
    return datetime.fromisoformat(text)


def _ends_at(text: str) -> datetime | None:
    # Go's zero time means "no end" in a webhook payload.
    return None if text.startswith("0001-01-01") else _parse_go_time(text)
