"""``slowatch regress BASELINE.json CURRENT.json [--threshold 10] [--format table|json]`` and
``slowatch regress PATH... --baseline 7d [--window 1d]``.

The seed's regression detector (slowatch.core.regress) over two result files, for a CI pipeline:
exit 1 when any regression is critical, 0 otherwise, 2 when a file cannot be used. Live, it
compares each SLO's last window with the same window one baseline earlier, on Prometheus:
latency percentiles, the error ratio and throughput (core/measure.py builds the queries).

Result files: the seed's ``{"metrics": {NAME: {"p95"|"avg"|"value": number}}}`` (in that order of
preference) and k6's ``--summary-export`` JSON (``"p(95)"``, and ``"rate"`` for counters), flat or
with the numbers under ``"values"`` as k6's ``handleSummary`` data has them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from slowatch.args import duration, instant
from slowatch.core import regress
from slowatch.errors import SlowatchError
from slowatch.settings import from_flags

EXIT_OK, EXIT_CRITICAL, EXIT_UNUSABLE = 0, 1, 2
# Which number stands for a metric: the seed's order (p95, avg, value), with k6's spellings of the
# same statistics beside them, and a counter's per-second rate last.
VALUE_KEYS: tuple[str, ...] = ("p95", "p(95)", "avg", "value", "rate")
COLUMNS = ("metric_name", "baseline_value", "current_value", "change_percentage", "is_regression", "severity")


class ResultsFileError(SlowatchError):
    """A results file that is missing, not JSON, or not in a known shape."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "regress",
        help="compare benchmark results with a baseline (the seed's regression detector)",
        description="Compare CURRENT with BASELINE metric by metric. A regression is a change past --threshold "
        "percent in the bad direction: names ending _duration or _latency are worse when higher, _throughput "
        "or _rps when lower (--higher-is-worse / --lower-is-worse override). Severity: critical >= 50%%, "
        "high >= 25%%, medium >= 10%%, low below. Exit 1 when a regression is critical, 2 when a file "
        "cannot be used.",
    )
    sp.add_argument("inputs", nargs="+", metavar="BASELINE.json CURRENT.json | PATH",
                    help="two result files; or, with --baseline, spec files or directories")
    sp.add_argument("--baseline", type=duration, metavar="DURATION",
                    help="live: compare each SLO's last --window with the same window this long ago")
    sp.add_argument("--window", type=duration, default=timedelta(days=1), metavar="DURATION",
                    help="live: the window compared (default 1d)")
    sp.add_argument("--at", type=instant, metavar="TIME", help="live: the instant compared (default now)")
    sp.add_argument("--prometheus-url", help="live: query API base URL (SLOWATCH_PROMETHEUS_URL)")
    sp.add_argument("--threshold", type=Decimal, default=regress.DEFAULT_THRESHOLD,
                    help="percent past which a change is a regression (default 10)")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--higher-is-worse", action="append", default=[], metavar="METRIC",
                    help="treat METRIC as worse when it grows (repeatable)")
    sp.add_argument("--lower-is-worse", action="append", default=[], metavar="METRIC",
                    help="treat METRIC as worse when it shrinks (repeatable)")
    sp.set_defaults(func=run)






def run(args: argparse.Namespace) -> int:
    overrides = {m: regress.Direction.HIGHER_IS_WORSE for m in args.higher_is_worse}
    overrides.update({m: regress.Direction.LOWER_IS_WORSE for m in args.lower_is_worse})
    if args.baseline is not None:
        rows = live_rows(args, overrides)
    else:
        if len(args.inputs) != 2:
            print("error: give two result files (BASELINE.json CURRENT.json), or spec paths with --baseline",
                  file=sys.stderr)
            return EXIT_UNUSABLE
        try:
            baseline, current = (read_results(Path(p)) for p in args.inputs)
            rows = regress.compare(baseline, current, args.threshold, overrides)
        except (ResultsFileError, regress.BaselineError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
    print(render_json(rows) if args.format == "json" else render_table(rows))
    return EXIT_CRITICAL if regress.has_critical(rows) else EXIT_OK


def live_rows(args: argparse.Namespace, overrides: Mapping[str, regress.Direction]) -> list[regress.Row]:
    """Each SLO's measures over the last --window, now and one --baseline earlier."""
    from slowatch.adapters.prometheus import PrometheusSource
    from slowatch.components.regression import direction, measures
    from slowatch.spec import load_specs

    slos = load_specs(args.inputs)
    settings = from_flags(vars(args))
    source = PrometheusSource(settings.prometheus_url, timeout=settings.query_timeout, retries=settings.query_retries)
    at: datetime = args.at or datetime.now(UTC).replace(microsecond=0)
    baseline: dict[str, Decimal | None] = {}
    current: dict[str, Decimal | None] = {}
    directions = dict(overrides)
    flavour = source.flavour()
    for slo in slos:
        old, new = measures(source, slo, args.window, at, at - args.baseline, flavour)
        for measure in old:
            name = f"{slo.id}:{measure}"
            directions.setdefault(name, direction(measure))
            baseline[name], current[name] = old[measure], new[measure]
    return regress.compare(baseline, current, args.threshold, directions, zero_baseline_shown=True)


def read_results(path: Path) -> dict[str, Decimal | None]:
    """Metric name -> its number (None when the metric has none of VALUE_KEYS)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    metrics = doc.get("metrics") if isinstance(doc, dict) else None
    if not isinstance(metrics, dict):
        raise ResultsFileError(f'{path}: expected {{"metrics": {{NAME: {{"p95"|"avg"|"value": number}}}}}} '
                               "or k6 --summary-export JSON")
    return {str(name): _value(path, str(name), data) for name, data in metrics.items()}


def _value(path: Path, name: str, data: Any) -> Decimal | None:
    if isinstance(data, Decimal):
        return data
    if not isinstance(data, Mapping):
        raise ResultsFileError(f"{path}: metrics.{name}: expected an object with p95, avg or value")
    if isinstance(data.get("values"), Mapping):
        data = data["values"]
    for key in VALUE_KEYS:
        if key in data:
            value = data[key]
            try:
                number = Decimal(value)
            except (InvalidOperation, TypeError, ValueError):
                raise ResultsFileError(f"{path}: metrics.{name}.{key}: {value!r} is not a number") from None
            if not number.is_finite():
                raise ResultsFileError(f"{path}: metrics.{name}.{key}: {value!r} is not a finite number")
            return number
    return None


def as_dicts(rows: list[regress.Row]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        row: dict[str, Any] = {c: getattr(r, c) for c in COLUMNS}
        row["direction"] = r.direction.value
        if r.note:
            row["note"] = r.note
        out.append(row)
    return out


def render_json(rows: list[regress.Row]) -> str:
    return json.dumps({"regressions": as_dicts(rows), "critical": regress.has_critical(rows)}, indent=2)


def render_table(rows: list[regress.Row]) -> str:
    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.6g}"

    lines = [f"{'METRIC':<32} {'BASELINE':>12} {'CURRENT':>12} {'CHANGE':>9}  {'REGRESSION':<10} SEVERITY"]
    for r in rows:
        change = "-" if r.change_percentage is None else f"{r.change_percentage:+.1f}%"
        lines.append(f"{r.metric_name:<32} {fmt(r.baseline_value):>12} {fmt(r.current_value):>12} {change:>9}  "
                     f"{'yes' if r.is_regression else 'no':<10} {r.severity}" + (f" ({r.note})" if r.note else ""))
    critical = [r for r in rows if r.is_regression and r.severity == "critical"]
    lines.append(f"{len(critical)} critical regression(s)" if critical else "no critical regression")
    return "\n".join(lines)
