"""``slowatch run``: the daemon's command. Registering it costs nothing: the daemon and its
dependencies (APScheduler, waitress, prometheus-client) are imported only when it runs, so
``slowatch --help`` and ``slowatch check`` stay light."""

from __future__ import annotations

import argparse

from slowatch.settings import from_flags


def cmd_run(args: argparse.Namespace) -> int:
    from slowatch.daemon import Daemon
    from slowatch.logs import configure

    settings = from_flags(vars(args))
    configure(settings.log_format, settings.log_level)
    return Daemon(settings, args.paths).run_forever()


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
