"""``slowatch demo``: the whole thing on one machine, on an embedded default.

31 days of generated traffic for the example spec (deploy/slos) are backfilled into a real
Prometheus; from "now" on Prometheus scrapes the same generator live, with an auth incident under
way, so a page fires and later resolves. A real Alertmanager notifies a webhook that prints each
notification here, and the daemon serves /status, /metrics and the status page.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_SPEC = Path(__file__).resolve().parents[2] / "deploy" / "slos"
# The demo's own incident: auth logins fail at 20% from 10 minutes before start for 20 minutes,
# about 400x the 99.95% SLO's budget rate: the fast-burn page fires at the first cycle.
INCIDENT_BEFORE_START = 10 * 60
INCIDENT_LENGTH = 20 * 60
# Generated traffic goes this far past the start; the live scrape target serves it as time passes.
LIVE_HORIZON = 24 * 3600


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port


class _Printer:
    """A webhook receiver for Alertmanager that prints every notification on one line."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.end_headers()
                for a in body.get("alerts", []):
                    labels = a["labels"]
                    what = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                                     if k not in ("alertname", "slowatch_source", "team"))
                    print(f"\n>>> Alertmanager notification: {a['status'].upper()} {labels.get('alertname')} "
                          f"({what})\n    {a['annotations'].get('summary', '')}", flush=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def cmd_demo(args: argparse.Namespace) -> int:
    from slowatch.daemon import Daemon
    from slowatch.logs import configure
    from slowatch.settings import Settings
    from tests.support.generator import Episode, generate
    from tests.support.live import LiveExporter
    from tests.support.processes import create_blocks, start_alertmanager, start_prometheus

    configure("console", "info")
    work = Path(args.work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    now = int(time.time()) // 60 * 60
    print(f"slowatch demo: generating {args.days} days of traffic for {EXAMPLE_SPEC} ...", flush=True)
    incident = Episode("demo-auth-incident", "auth", ("/auth/login",), now - INCIDENT_BEFORE_START,
                       now - INCIDENT_BEFORE_START + INCIDENT_LENGTH, error_ratio=0.2,
                       note="the demo's live incident: pages, then resolves")
    history = generate(now + LIVE_HORIZON, days=args.days + 1, extra_episodes=[incident])
    print("backfilling it into Prometheus blocks with promtool (about half a minute) ...", flush=True)
    blocks = create_blocks(history.series, work / f"blocks-{now}", until=now + 60)
    exporter = LiveExporter(history)
    daemon_port = _port(args.port)
    prometheus = start_prometheus(
        work / f"prometheus-{now}", blocks, port=_port(9090), scrape_configs=[
            {"job_name": "traffic", "scrape_interval": "15s", "static_configs": [{"targets": [exporter.target]}]},
            {"job_name": "slowatch", "scrape_interval": "15s",
             "static_configs": [{"targets": [f"127.0.0.1:{daemon_port}"]}]},
        ])
    printer = _Printer()
    am_config = yaml.safe_dump({
        "route": {"receiver": "print", "group_by": ["alertname", "service", "slo", "severity"],
                  "group_wait": "5s", "group_interval": "30s", "repeat_interval": "4h"},
        "receivers": [{"name": "print", "webhook_configs": [{"url": printer.url, "send_resolved": True}]}],
    })
    alertmanager = start_alertmanager(work / f"alertmanager-{now}", am_config, port=_port(9093))
    settings = Settings(
        prometheus_url=prometheus.url, alertmanager_urls=[alertmanager.url], listen=f"127.0.0.1:{daemon_port}",
        evaluation_interval=args.interval, state_dir=work / f"state-{now}", log_format="console",
    )
    daemon = Daemon(settings, [EXAMPLE_SPEC])
    url = f"http://127.0.0.1:{daemon_port}"
    print(f"""
  Prometheus    {prometheus.url}   (31 days of history + live traffic; an auth incident is under way)
  Alertmanager  {alertmanager.url}   (notifications are printed below)
  slowatch      {url}
      status page   {url}/
      /status       curl -s {url}/status | python3 -m json.tool
      one SLO       curl -s {url}/status/auth/login-availability
      /metrics      curl -s {url}/metrics | grep ^slowatch_slo
  Ctrl-C stops everything. Started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC.
""", flush=True)
    try:
        return daemon.run_forever()
    finally:
        for stop in (alertmanager.stop, prometheus.stop, exporter.close, printer.server.shutdown):
            stop()


def main() -> int:
    """``python -m tests.support.demo``: the same flags as ``slowatch demo`` (one parser, in the CLI)."""
    import sys

    from slowatch.cli import main as cli_main

    return cli_main(["demo", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
