"""``slowatch backtest PATH... --from TIME --to TIME [--step D] [--incident START/END]... [--slo SERVICE[/SLO]]...
[--format table|json]``.

Replays the daemon's alert policy over history (slowatch.core.backtest) and reports, per SLO,
every alert that would have fired, pages and tickets per week, flaps, the budget consumed at
``--to``, the time its exclusions covered and the events they took out, and for each given
incident the detection delay and the time to reset. A composite is replayed from its
components, which are read even when ``--slo`` leaves them out of the report.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from slowatch.args import duration, instant
from slowatch.core.conventions import rfc3339
from slowatch.core.model import nominal_length
from slowatch.core.windows import format_duration, rows_with_factors
from slowatch.settings import from_flags

EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "backtest",
        help="replay the alert policy over past data: which alerts would have fired, and when",
        description="Steps through (--from, --to] as the daemon would, with the same budget maths and alert "
        "state machine, reading each sample of the history once. Reports every alert, pages and tickets "
        "per week, flaps (a re-fire within an hour of a resolve), the budget consumed at --to, and per "
        "--incident the detection delay and the time to reset.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")
    sp.add_argument("--prometheus-url", help="query API base URL (SLOWATCH_PROMETHEUS_URL)")
    sp.add_argument("--from", dest="start", required=True, type=instant, metavar="TIME",
                    help="RFC 3339 or unix seconds")
    sp.add_argument("--to", dest="end", required=True, type=instant, metavar="TIME", help="RFC 3339 or unix seconds")
    sp.add_argument("--step", type=duration, help="evaluation step (default: SLOWATCH_EVALUATION_INTERVAL)")
    sp.add_argument("--incident", action="append", default=[], type=_interval, metavar="START/END[=SERVICE[/SLO]]",
                    help="a known incident (repeatable): its detection delay and time to reset are reported, "
                    "for the SLOs of SERVICE (or that one SLO) when given, else for every SLO")
    sp.add_argument("--factors", type=_factors, metavar="PAGE_1H,PAGE_6H,TICKET_3D",
                    help="replay with other burn-rate factors on the table's rows (1h/5m, 6h/30m, 3d/6h), for every "
                    "SLO: e.g. 14.4,6,1 is the SRE workbook's for 30 days")
    sp.add_argument("--slo", action="append", default=[], metavar="SERVICE[/SLO]",
                    help="report only these SLOs (repeatable; default: every SLO of the paths); the components of "
                    "a composite are read all the same")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.set_defaults(func=run)


def _factors(text: str) -> tuple[float, ...]:
    try:
        factors = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"factors are three numbers like 14.4,6,1, got {text!r}") from None
    if len(factors) != 3 or any(not f > 0 for f in factors):
        raise argparse.ArgumentTypeError(f"factors are three positive numbers like 14.4,6,1, got {text!r}")
    return factors


def _interval(text: str) -> tuple[datetime, datetime, str]:
    interval, _, scope = text.partition("=")
    start, sep, end = interval.partition("/")
    if not sep:
        raise argparse.ArgumentTypeError(f"an incident is START/END[=SERVICE[/SLO]], got {text!r}")
    return instant(start), instant(end), scope


def run(args: argparse.Namespace) -> int:
    from slowatch.adapters.history import read_all
    from slowatch.adapters.prometheus import PrometheusSource
    from slowatch.core.backtest import BacktestError, Incident, check_step, excluded_spans, reach, replay
    from slowatch.core.composite import closure
    from slowatch.spec import load_specs

    every = load_specs(args.paths)
    if args.factors is not None:
        # The same rows with other factors, fitted to each SLO's window as the table is.
        every = [replace(s, alerting=replace(
            s.alerting, burn_rows=rows_with_factors(args.factors, nominal_length(s.window)))) for s in every]
    slos = [s for s in every if not args.slo or s.service in args.slo or s.id in args.slo]
    if not slos:
        print(f"error: --slo {' '.join(args.slo)} names no SLO of {' '.join(args.paths)}", file=sys.stderr)
        return EXIT_USAGE
    by_id = {s.id: s for s in every}
    named = {s.id for s in slos}
    components = [s for s in closure(slos, by_id) if s.id not in named]
    settings = from_flags(vars(args))
    step: timedelta = args.step or settings.evaluation_interval
    try:
        step_s = check_step(step)
        if args.end <= args.start:
            raise BacktestError(f"--to ({rfc3339(args.end)}) must be after --from ({rfc3339(args.start)})")
    except BacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source = PrometheusSource(settings.prometheus_url, timeout=settings.query_timeout, retries=settings.query_retries,
                              bearer_token_file=settings.prometheus_bearer_token_file)
    # Tiles start on a step boundary at or before what the longest window needs (a composite's
    # window reaches into its components').
    starts = {}
    for sid, first_at in reach(slos, by_id, args.start).items():
        first = int(first_at.timestamp())
        starts[sid] = datetime.fromtimestamp(first - first % step_s, args.start.tzinfo)
    end = datetime.fromtimestamp(int(args.end.timestamp()) - int(args.end.timestamp()) % step_s, args.end.tzinfo)
    read = [*slos, *components]
    since = min(starts.values())
    boundaries = {b for s in read for span in excluded_spans(s, since, end) for b in span}
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency), thread_name_prefix="backtest") as pool:
        tiles = read_all(source, read, starts, end, step, pool, boundaries)
    incidents = [Incident(a, b, scope) for a, b, scope in args.incident]
    report = replay(slos, tiles, args.start, end, step, incidents, components=components)
    doc = document(report)
    print(json.dumps(doc, indent=2) if args.format == "json" else table(doc))
    return 0


def document(report: Any) -> dict[str, Any]:
    """The JSON of INTERFACES.md's backtest row."""
    def when(t: datetime | None) -> str | None:
        return None if t is None else rfc3339(t)

    def seconds(d: timedelta | None) -> float | None:
        return None if d is None else d.total_seconds()

    return {
        "from": when(report.start), "to": when(report.end), "step": format_duration(report.step),
        "slos": [{
            "service": r.slo.service, "slo": r.slo.name,
            "alerts": [{"alertname": a.alertname, "severity": a.severity, "labels": dict(a.labels),
                        "starts_at": when(a.starts_at), "ends_at": when(a.ends_at)} for a in r.alerts],
            "pages_per_week": r.pages_per_week, "tickets_per_week": r.tickets_per_week, "flaps": r.flaps,
            "budget_consumed_end": r.budget_consumed_end,
            "excluded_seconds": r.excluded_seconds, "excluded_events": r.excluded_events,
            "incidents": [{"start": when(i.start), "end": when(i.end), "detected_at": when(i.detected_at),
                           "detection_delay_seconds": seconds(i.detection_delay), "reset_at": when(i.reset_at),
                           "time_to_reset_seconds": seconds(i.time_to_reset)} for i in r.incidents],
        } for r in report.slos],
    }


def table(doc: dict[str, Any]) -> str:
    lines = [f"backtest {doc['from']} .. {doc['to']} every {doc['step']}",
             f"{'SLO':<40} {'PAGES/WK':>9} {'TICKETS/WK':>11} {'FLAPS':>6} {'CONSUMED':>9} {'EXCLUDED':>9}"]
    for r in doc["slos"]:
        consumed = "-" if r["budget_consumed_end"] is None else f"{100 * r['budget_consumed_end']:.1f}%"
        excluded = _span(r["excluded_seconds"]) if r["excluded_seconds"] else "-"
        lines.append(f"{r['service'] + '/' + r['slo']:<40} {r['pages_per_week']:>9.2f} {r['tickets_per_week']:>11.2f} "
                     f"{r['flaps']:>6} {consumed:>9} {excluded:>9}")
        if r["excluded_events"]:
            lines.append(f"    excluded {r['excluded_events']:.0f} events in {_span(r['excluded_seconds'])}")
        for a in r["alerts"]:
            windows = f" {a['labels'].get('long_window')}/{a['labels'].get('short_window')}" \
                if "long_window" in a["labels"] else f" {a['labels'].get('threshold', '')}%" \
                if "threshold" in a["labels"] else ""
            ends = a["ends_at"] or "firing"
            lines.append(f"    {a['severity']:<6} {a['alertname']}{windows}  {a['starts_at']} -> {ends}")
        for i in r["incidents"]:
            delay = "not detected" if i["detection_delay_seconds"] is None else \
                f"detected after {_span(i['detection_delay_seconds'])}"
            reset = "still firing" if i["time_to_reset_seconds"] is None else \
                f"reset {_span(i['time_to_reset_seconds'])} after its end"
            lines.append(f"    incident {i['start']} .. {i['end']}: {delay}, {reset}")
    return "\n".join(lines)


def _span(seconds: float) -> str:
    return format_duration(timedelta(seconds=seconds)) if seconds > 0 else "0s"
