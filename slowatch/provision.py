"""``slowatch provision grafana PATH... [--grafana-url URL]``: create or update the SLO dashboards
in a running Grafana through its HTTP API (only those whose content changed).

Settings: ``SLOWATCH_GRAFANA_URL`` (``--grafana-url`` wins) and ``SLOWATCH_GRAFANA_TOKEN``, a
service account token with the Editor role.
"""

from __future__ import annotations

import argparse

from slowatch.core.dashboards import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID
from slowatch.errors import GrafanaError

__all__ = ["cmd_provision_grafana", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("provision", help="push the SLO dashboards to a running Grafana")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    g = targets.add_parser(
        "grafana",
        help="create or update the dashboards in the Grafana at SLOWATCH_GRAFANA_URL (only those that changed)",
        description="Creates the folder if needed, then creates or updates every dashboard whose content "
        "differs from what Grafana has. The token (SLOWATCH_GRAFANA_TOKEN) needs the Editor role.",
    )
    g.add_argument("paths", nargs="+", metavar="PATH", help="spec file or directory of *.yaml")
    g.add_argument("--grafana-url", help="Grafana base URL (SLOWATCH_GRAFANA_URL)")
    g.add_argument("--datasource-uid", default=DATASOURCE_UID,
                   help=f"uid of the Prometheus datasource the dashboards query (default {DATASOURCE_UID}, "
                   "the one grafana/provisioning creates)")
    g.add_argument("--folder-uid", default=FOLDER_UID, help=f"folder to put the dashboards in (default {FOLDER_UID})")
    g.add_argument("--folder-title", default=FOLDER_TITLE, help="title of the folder when it is created")
    g.set_defaults(func=cmd_provision_grafana)


def cmd_provision_grafana(args: argparse.Namespace) -> int:
    from slowatch.adapters.dashboards import build_dashboards
    from slowatch.adapters.grafana import GrafanaClient, provision
    from slowatch.settings import from_flags
    from slowatch.spec import load_specs

    slos = load_specs(args.paths)
    settings = from_flags({"grafana_url": args.grafana_url})
    if not settings.grafana_url:
        raise GrafanaError("no Grafana to provision: set SLOWATCH_GRAFANA_URL or pass --grafana-url")
    client = GrafanaClient(settings.grafana_url, settings.grafana_token)
    result = provision(client, build_dashboards(slos, datasource_uid=args.datasource_uid),
                       folder_uid=args.folder_uid, folder_title=args.folder_title)
    if result.folder_created:
        print(f"created folder {args.folder_uid}")
    for uid in result.created:
        print(f"created {uid}")
    for uid in result.updated:
        print(f"updated {uid}")
    print(f"ok: {len(result.created)} created, {len(result.updated)} updated, "
          f"{len(result.unchanged)} unchanged in {client.url}")
    return 0
