"""``slowatch generate PATH... --out DIR [--prometheusrule FILE]``.

Writes ``DIR/rules/<service>.yaml`` (recording rules), ``DIR/alerts/<service>.yaml`` (alerts),
``DIR/grafana/`` (dashboards, when that writer is installed) and, when asked, one
prometheus-operator PrometheusRule holding all the rules. The repository's own copies are
refreshed with

    python -m slowatch generate deploy/slos --out . --prometheusrule deploy/kubernetes/prometheusrule.yaml
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path

from slowatch.core.conventions import GRAFANA_DIR
from slowatch.core.model import SLO

DASHBOARD_WRITER = "slowatch.adapters.dashboard_files"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "generate",
        help="write Prometheus recording rules, alerts (and dashboards) for the SLOs",
        description="Write DIR/rules/<service>.yaml, DIR/alerts/<service>.yaml and DIR/grafana/. "
        "The alerts duplicate the daemon's (label slowatch_source=prometheus): deliver one of the two.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")
    sp.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    sp.add_argument("--prometheusrule", type=Path, metavar="FILE",
                    help="also write every rule as one prometheus-operator PrometheusRule to FILE")
    sp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slowatch.adapters import rulefiles
    from slowatch.core.rules import rule_files
    from slowatch.spec import load_specs

    slos = load_specs(args.paths)
    out_dir: Path = args.out
    files = rule_files(slos)
    report = rulefiles.write_rule_files(files, out_dir)
    for path in report.written:
        print(f"wrote {path}")
    for path in report.removed:
        print(f"removed {path} (its service is no longer in the spec)")
    if args.prometheusrule is not None:
        print(f"wrote {rulefiles.write_prometheus_rule(files, args.prometheusrule)}")
    for path in write_dashboards(slos, out_dir):
        print(f"wrote {path}")
    return 0


def write_dashboards(slos: Sequence[SLO], out_dir: Path) -> list[Path]:
    """DASHBOARDS: the single call site writing ``OUT/grafana/`` (the writer puts them in its
    ``dashboards/``). The writer is another module, imported only when present, so generate
    works without it."""
    if importlib.util.find_spec(DASHBOARD_WRITER) is None:
        return []
    module = importlib.import_module(DASHBOARD_WRITER)
    written = module.write_dashboards(slos, out_dir / GRAFANA_DIR)
    if isinstance(written, str | Path):
        return [Path(written)]
    return [Path(p) for p in written] if isinstance(written, Iterable) else []
