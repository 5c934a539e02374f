"""The command line: check, eval, run, generate, provision, demo.

Exit status: 0 success, 1 the spec or the data is wrong (or the evaluation failed), 2 usage.
A SlowatchError prints one line per problem on stderr, no traceback unless --debug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from slowatch import __version__
from slowatch.args import instant
from slowatch.errors import SlowatchError, SpecError
from slowatch.settings import Settings, from_flags

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment; a flag of the same name wins (the one rule: settings.from_flags)."""
    return from_flags(vars(args))


def cmd_check(args: argparse.Namespace) -> int:
    from slowatch.spec import load_specs

    slos = load_specs(args.paths)
    if not args.live:
        print(f"ok: {len(slos)} SLOs in {len(args.paths)} path(s)")
        return EXIT_OK
    from slowatch.adapters.prometheus import PrometheusSource
    from slowatch.checks import live_problems

    settings = _settings(args)
    source = PrometheusSource(settings.prometheus_url, timeout=settings.query_timeout,
                              bearer_token_file=settings.prometheus_bearer_token_file)
    problems = live_problems(slos, source, args.at or datetime.now(UTC))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return EXIT_FAILED
    print(f"ok: {len(slos)} SLOs; every series and latency bound exists in {settings.prometheus_url}")
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from slowatch import engine
    from slowatch.adapters import render
    from slowatch.adapters.planned import PlannedSource
    from slowatch.adapters.prometheus import PrometheusSource
    from slowatch.core.conventions import FAILED_STATES
    from slowatch.spec import load_specs

    slos = load_specs(args.paths)
    settings = _settings(args)
    at = args.at or datetime.now(UTC).replace(microsecond=0)
    source = PlannedSource(PrometheusSource(settings.prometheus_url, timeout=settings.query_timeout,
                                            retries=settings.query_retries,
                                            bearer_token_file=settings.prometheus_bearer_token_file))
    snapshot = engine.evaluate(slos, source, at, concurrency=settings.concurrency)
    failures = [o.failure for o in snapshot.outcomes]
    if failures and all(isinstance(f, SlowatchError) for f in failures) and isinstance(failures[0], SlowatchError):
        raise failures[0]  # the source failed for every SLO: one line, exit 1
    # An internal error (a bug) stays in its SLO's `error` column: the table still prints, exit 1.
    if args.format == "json":
        print(json.dumps(render.status_document(at, snapshot.statuses), indent=2))
    else:
        print(render.table(at, snapshot.statuses))
    return EXIT_FAILED if any(s.state in FAILED_STATES for s in snapshot.statuses) else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="slowatch",
        description="Watches service-level objectives on Prometheus: exact error budgets, "
        "multi-window burn-rate alerts to Alertmanager, /status and /metrics.",
        epilog="Settings come from SLOWATCH_* environment variables; a flag of the same name wins. "
        "Exit status: 0 ok, 1 spec or data wrong / evaluation failed, 2 usage.",
    )
    p.add_argument("--version", action="version", version=f"slowatch {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def paths(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")

    def prometheus(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--prometheus-url", help="query API base URL (SLOWATCH_PROMETHEUS_URL; "
                        "default http://127.0.0.1:9090)")

    sp = sub.add_parser("check", help="validate spec files (and, with --live, the data behind them)")
    paths(sp)
    prometheus(sp)
    sp.add_argument("--live", action="store_true",
                    help="also ask Prometheus that every series exists and every latency threshold is an le bound")
    sp.add_argument("--at", type=instant, help="instant for --live (default now)")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("eval", help="evaluate every SLO once, at an instant")
    paths(sp)
    prometheus(sp)
    sp.add_argument("--at", type=instant, help="RFC 3339 or unix seconds (default now)")
    sp.add_argument("--format", choices=("table", "json"), default="table",
                    help="json prints the /status document")
    sp.set_defaults(func=cmd_eval)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)

    sp = sub.add_parser(
        "demo", help="real Prometheus with generated history, Alertmanager and the daemon (from a source checkout)",
        description="Generates 31 days of traffic for the example spec, backfills it into a real Prometheus, "
        "keeps it flowing live (with an auth incident), starts Alertmanager and runs the daemon on top. "
        "The traffic generator and launchers are test code, not part of the installed package: run this "
        "from a source checkout (bash scripts/demo does all the set-up).",
    )
    sp.add_argument("--port", type=int, default=9099, help="the daemon's port (default 9099, else a free one)")
    sp.add_argument("--interval", default="10s", help="evaluation interval (default 10s)")
    sp.add_argument("--days", type=int, default=30, help="days of history (default 30)")
    sp.add_argument("--work-dir", default=".demo", help="where data and logs go (default .demo)")
    sp.set_defaults(func=cmd_demo)
    return p


def cmd_demo(args: argparse.Namespace) -> int:
    """Runs the checkout's demo (tests/support/demo.py), found from the working directory up."""
    here = Path.cwd().resolve()
    for root in (here, *here.parents):
        if (root / "tests" / "support" / "demo.py").is_file():
            sys.path.insert(0, str(root))
            demo = importlib.import_module("tests.support.demo")
            code: int = demo.cmd_demo(args)
            return code
    raise SlowatchError(
        "the demo needs a source checkout of slowatch (its traffic generator is test code, not in the package): "
        "run `bash scripts/demo` inside the checkout"
    )


# Commands defined next to their wiring: each module has `register(subparsers)` that adds its
# parser with `set_defaults(func=...)`; the func takes the Namespace and returns an exit code.
COMMAND_MODULES: tuple[str, ...] = ("slowatch.run", "slowatch.generate", "slowatch.provision", "slowatch.regress",
                                       "slowatch.formats.convert", "slowatch.backtest")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        if args.debug:
            raise
        return EXIT_FAILED
    except SlowatchError as exc:
        if args.debug:
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
