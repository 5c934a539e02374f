"""``slowatch convert PATH... --to openslo|slowatch --out DIR``: one file per service,
``DIR/<service>.yaml``, from specs in any format slowatch reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slowatch.files import write_atomically
from slowatch.formats import writer

TARGETS = {"openslo": writer.to_openslo, "slowatch": writer.to_slowatch}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = subparsers.add_parser(
        "convert",
        help="write the SLOs as OpenSLO or slowatch/v1 files, one per service",
        description="Reads slowatch/v1, OpenSLO (openslo/v1, v1alpha) and Sloth (prometheus/v1, "
        "PrometheusServiceLevel) specs and writes DIR/<service>.yaml in the chosen format. What the "
        "target format cannot hold is printed as a note on stderr.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")
    sp.add_argument("--to", required=True, choices=sorted(TARGETS), help="the format to write")
    sp.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    sp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from slowatch.spec import load_specs

    slos = load_specs(args.paths)
    documents, notes = TARGETS[args.to](slos)
    for service, docs in documents.items():
        path = args.out / f"{service}.yaml"
        write_atomically(path, writer.dump(docs))
        print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
