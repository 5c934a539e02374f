"""With a real Prometheus scraping a running slowatch over generated data, every SLO panel query
returns data; and a composite's panel queries, run on each Prometheus version over the session's
history, return the daemon's combination (``core.composite.combine``) of the generator's exact
counts.

Prometheus holds 7 days of generated history reaching the present (backfilled up to now, then
scraped live from the generator) and scrapes the daemon's ``/metrics`` every 2 s; the daemon
evaluates the example spec (deploy/slos: ratio, latency and throughput SLIs), test_composite's
composites and an SLO under an exclusion covering the present, every 2 s. Once a
few cycles have been scraped, every panel target of the generated overview, of each SLO's detail
dashboard and of the seed's performance dashboard is run the way Grafana would run it, with its
variables replaced: an instant query, and for a range panel whose instant query is empty a range
query over the last minute. Every empty panel is listed in the failure message.

The history is generated at a 15 s step, a usual scrape interval, so that ``$__rate_interval``
(Grafana's floor is four scrape intervals) can be ``1m`` over the raw ``http_*`` series as well as
over slowatch's own series. No Grafana runs here (none can be installed on these machines); what
Grafana adds on top of Prometheus' answers (transformations, value mappings) is not exercised.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from slowatch.adapters import dashboards as builders
from slowatch.core import dashboards as dd
from slowatch.core.budget import EventCounts, Measurement
from slowatch.core.composite import combine
from slowatch.core.conventions import rfc3339
from slowatch.core.exclusions import excluded_seconds, merged
from slowatch.core.model import SLO, Component, CompositeSLI, RollingWindow, ThroughputSLI, Weighting
from slowatch.core.promql import go_float
from slowatch.core.windows import format_duration, parse_duration
from slowatch.spec import load_specs
from tests.integration.test_composite import JOURNEYS, LATENCY, LOGIN, SEARCH
from tests.integration.test_daemon import Daemon
from tests.support.generator import History, generate
from tests.support.live import LiveExporter
from tests.support.processes import (
    PROMETHEUS_VERSIONS,
    Server,
    create_blocks,
    free_port,
    instant_query,
    start_prometheus,
    wait_until,
)

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
STEP = 15  # seconds between generated samples
SCRAPE_SLOWATCH = "2s"
CYCLES = 5  # evaluation cycles Prometheus must have scraped before the queries run

# What Grafana would put in place of its variables for a 1-hour view at a 15 s resolution.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
# Label values are put into the queries as they are, so they must need no regex or string escaping.
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/-]+$")


def maintained(now: int) -> str:
    """auth's login availability again, under an exclusion from 10 minutes ago to 30 from now."""
    start, end = (rfc3339(datetime.fromtimestamp(t, UTC)) for t in (now - 600, now + 1800))
    return f"""\
apiVersion: slowatch/v1
service: maintained
slos:
  - name: login-availability
    objective: 99.95
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{{service="auth",endpoint="/auth/login",code=~"5.."}}
        total: http_requests_total{{service="auth",endpoint="/auth/login"}}
    exclusions:
      - start: {start}
        end: {end}
        reason: planned database migration
"""


@dataclass
class World:
    prometheus: Server
    exporter: LiveExporter
    daemon: Daemon
    slos: list[SLO]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("dashboard-queries")
    now = int(time.time()) // 60 * 60
    # The history ends 3 h ahead so that the scenario's last-2-hours silence stays in the future.
    history = generate(now + 3 * 3600, days=7, step=STEP)
    # Backfilled up to the current step; the exporter serves the steps after it.
    blocks = create_blocks(history.series, work / "blocks", until=int(time.time()) // STEP * STEP + STEP)
    exporter = LiveExporter(history)
    listen = f"127.0.0.1:{free_port()}"
    prometheus = start_prometheus(work / "prometheus", blocks, scrape_configs=[
        {"job_name": "live", "scrape_interval": "5s", "static_configs": [{"targets": [exporter.target]}]},
        {"job_name": "slowatch", "scrape_interval": SCRAPE_SLOWATCH, "static_configs": [{"targets": [listen]}]},
    ])
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLOWATCH_QUERY_RETRIES": "1",
        "SLOWATCH_QUERY_TIMEOUT": "10s",
    }
    specs = [EXAMPLE, work / "journeys.yaml", work / "maintained.yaml"]
    specs[1].write_text(JOURNEYS)
    specs[2].write_text(maintained(now))
    daemon = Daemon(
        args=[*map(str, specs), "--prometheus-url", prometheus.url, "--listen", listen, "--evaluation-interval", "2s",
              "--log-format", "json"],
        env=env, listen=listen, log=work / "daemon.log",
    )
    try:
        daemon.start()
        slos = load_specs(specs)

        def scraped_cycles() -> bool:
            result = query(prometheus, f"count_over_time({dd.LAST_SUCCESS}[1m]) >= {CYCLES}", time.time())
            return isinstance(result, list) and bool(result)

        wait_until(scraped_cycles, what=f"{CYCLES} scrapes of slowatch's /metrics after successful cycles",
                   timeout=120)
        # Every SLO evaluated (none stale or in error) and its values scraped at least once since.
        wait_until(lambda: all(s["state"] not in ("stale", "error") for s in daemon.status()["slos"]),
                   what="every SLO evaluated")
        time.sleep(2 * float(SCRAPE_SLOWATCH.rstrip("s")))
        yield World(prometheus, exporter, daemon, slos)
    finally:
        daemon.stop()
        prometheus.stop()
        exporter.close()


def query(prometheus: Server, expr: str, at: float, *, over: float = 0.0) -> list[dict[str, Any]] | str:
    """The result of an instant query at ``at`` (a range query over ``(at - over, at]`` at the
    panel resolution when ``over``), or the error Prometheus gave."""
    if over:
        path = "/api/v1/query_range"
        data = {"query": expr, "start": str(at - over), "end": str(at), "step": GRAFANA_VARIABLES["__interval"]}
    else:
        path, data = "/api/v1/query", {"query": expr, "time": str(at)}
    # POST, as the provisioned datasource does (httpMethod: POST): the overview's queries are long.
    r = requests.post(prometheus.url + path, data=data, timeout=60)
    body = r.json()
    if body.get("status") != "success":
        return f"error: {body.get('error', r.text[:300])}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def substitute(expr: str, variables: dict[str, str]) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in variables:
            raise AssertionError(f"no value for Grafana variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(value, expr)


@dataclass(frozen=True)
class Empty:
    where: str
    expr: str
    why: str

    def __str__(self) -> str:
        return f"- {self.where}: {self.why}\n    {' '.join(self.expr.split())}"


def empty_panels(prometheus: Server, dashboard: dd.Dashboard, variables: dict[str, str]) -> list[Empty]:
    """Every panel target of ``dashboard`` that returns no data (or an error)."""
    at = time.time()
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets") or []:
            where = f"{dashboard['title']} / {panel['title']} / {target['refId']}"
            expr = substitute(target["expr"], {**GRAFANA_VARIABLES, **variables})
            result = query(prometheus, expr, at)
            if result == [] and not target.get("instant"):  # a range panel: is the last minute empty too?
                result = query(prometheus, expr, at, over=60)
            if isinstance(result, str):
                out.append(Empty(where, expr, result))
            elif not result:
                out.append(Empty(where, expr, "empty (instant" + ("" if target.get("instant") else
                                                                  " and last-minute range") + " query)"))
    return out


def targets(dashboard: dd.Dashboard) -> int:
    return sum(len(p.get("targets") or []) for p in dashboard["panels"])


def failure(empties: list[Empty], total: int) -> str:
    return f"{len(empties)} of {total} panel queries return no data:\n" + "\n".join(map(str, empties))


def test_every_overview_panel_returns_data(world: World) -> None:
    services = sorted({s.service for s in world.slos})
    assert all(_PLAIN.match(s) for s in services)
    overview = builders.overview_dashboard(world.slos)
    # The multi-value ``service`` variable with every service selected, as Grafana formats it for a regex.
    empties = empty_panels(world.prometheus, overview, {"service": f"({'|'.join(services)})"})
    assert not empties, failure(empties, targets(overview))


def test_the_overviews_service_variable_lists_every_service(world: World) -> None:
    (variable,) = builders.overview_dashboard(world.slos)["templating"]["list"]
    match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"])
    assert match, variable["query"]
    metric, label = match.groups()
    r = requests.get(f"{world.prometheus.url}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=30)
    assert sorted(r.json()["data"]) == sorted({s.service for s in world.slos})


BURN_RATE_WINDOW = re.compile(rf'{dd.BURN_RATE}{{[^}}]*window="(\w+)"')


def window_shorter_than_slice(slo: SLO, expr: str) -> str | None:
    """Why ``expr`` may be empty when it reads a burn rate over a window shorter than ``slo``'s time
    slice: such a window holds a slice only right after a slice boundary (a 5m window of hourly
    slices: from hh:00 to hh:05), so slowatch has no burn rate for it the rest of the time."""
    match = BURN_RATE_WINDOW.search(expr)
    if match and isinstance(slo.sli, ThroughputSLI) and parse_duration(match[1]) < slo.sli.slice:
        return f"the {match[1]} window is shorter than the {format_duration(slo.sli.slice)} slice"
    return None


def window_wholly_excluded(slo: SLO, expr: str) -> str | None:
    """Why ``expr`` may be empty when it reads a burn rate over a window an exclusion covers
    wholly: no events, so no burn rate (the daemon's ``null``)."""
    match = BURN_RATE_WINDOW.search(expr)
    if match is None or not slo.exclusions:
        return None
    end = datetime.now(UTC)
    length = parse_duration(match[1])
    if excluded_seconds(merged(slo.exclusions, end - length, end)) >= length.total_seconds():
        return f"the {match[1]} window lies wholly in an exclusion"
    return None


def test_every_slo_detail_panel_returns_data(world: World) -> None:
    empties: list[Empty] = []
    total = 0
    by_design: list[str] = []
    every = {s.id: s for s in world.slos}
    for slo in world.slos:
        assert _PLAIN.match(slo.service) and _PLAIN.match(slo.name)
        dashboard = builders.slo_dashboard(slo, every=every)
        total += targets(dashboard)
        found = empty_panels(world.prometheus, dashboard, {"service": slo.service, "slo": slo.name})
        status = world.daemon.slo(slo.service, slo.name)
        for empty in found:
            # "Budget runs out" is empty by design (it shows "not at this rate") while the budget is not
            # being spent over the last hour or is spent already: exactly when /status has no exhaustion_at.
            if empty.where.endswith("/ Budget runs out / A") and status["exhaustion_at"] is None:
                by_design.append(f"{empty.where}: no exhaustion at the current rate ({status['state']}, 1h burn "
                                 f"rate {status['burn_rates'].get('1h')})")
                continue
            why = window_shorter_than_slice(slo, empty.expr) or window_wholly_excluded(slo, empty.expr)
            if why is not None:
                by_design.append(f"{empty.where}: {why} (/status burn rates {status['burn_rates']})")
                continue
            empties.append(empty)
    assert not empties, failure(empties, total)
    print(f"{len(by_design)} of {total} panel queries empty by design:", *by_design, sep="\n  ")
    # At least one SLO draws the exhaustion panel, so its query is known to work.
    assert sum("Budget runs out" in line for line in by_design) < len(world.slos)


def test_the_exclusion_annotation_marks_an_active_exclusion(world: World) -> None:
    excluded = [s for s in world.slos if s.exclusions]
    assert [s.id for s in excluded] == ["maintained/login-availability"]
    for slo in excluded:
        [annotation] = [a for a in builders.slo_dashboard(slo)["annotations"]["list"] if a["name"] == "Exclusions"]
        expr = substitute(annotation["expr"], {"service": slo.service, "slo": slo.name})
        result = query(world.prometheus, expr, time.time())
        assert isinstance(result, list) and [r["value"][1] for r in result] == ["1"], (expr, result)


def test_every_performance_panel_returns_data(world: World) -> None:
    performance = builders.performance_dashboard()
    empties = empty_panels(world.prometheus, performance, {})
    assert not empties, failure(empties, targets(performance))


# --- composites: the panel queries against the generator's exact counts ------------------------------

# The generator's exact (bad, total) events of each component (test_composite's truths).
TRUTHS = {"auth/login-availability": LOGIN, "auth/login-latency": LATENCY, "knowledge/search-availability": SEARCH}


def exact(history: History, slo_id: str, start: int, end: int) -> EventCounts:
    bad, total = TRUTHS[slo_id](history, start, end)
    return EventCounts(good=total - bad, total=total)


@pytest.fixture(scope="module", params=PROMETHEUS_VERSIONS, ids=[f"prometheus-{v}" for v in PROMETHEUS_VERSIONS])
def history_prometheus(request: pytest.FixtureRequest, blocks: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Each Prometheus version over the session's generated history (no daemon needed here)."""
    if request.param == PROMETHEUS_VERSIONS[0]:
        yield request.getfixturevalue("prometheus")
        return
    server = start_prometheus(tmp_path_factory.mktemp(f"prometheus-{request.param}"), blocks, version=request.param)
    yield server
    server.stop()


@pytest.mark.parametrize("weighting", [pytest.param("weights", id="weights"), pytest.param("events", id="events")])
@pytest.mark.parametrize("instant", [
    pytest.param("auth-incident", id="at the end of the auth incident, every component with events"),
    pytest.param("silence", id="in the knowledge silence, knowledge leaving both sums"),
])
def test_a_composites_panel_queries_return_the_weighted_mean_of_the_exact_counts(
    history: History, history_prometheus: Server, weighting: Weighting, instant: str,
) -> None:
    every = {s.id: s for s in load_specs([EXAMPLE])}
    composite = SLO("journey", "checkout", 99.5, RollingWindow(timedelta(days=30)), CompositeSLI(
        (Component("auth/login-availability", 1), Component("auth/login-latency", 2),
         Component("knowledge/search-availability", 3)), weighting))
    at = (history.scenario.episode("auth-incident").end if instant == "auth-incident"
          else history.scenario.silence.start + 3600)
    assert at % history.step == 0
    span = int(parse_duration(dd.EVENT_RANGE).total_seconds())
    counts = {i: exact(history, i, at - span, at) for i in TRUTHS}
    assert (counts["knowledge/search-availability"].total == 0) == (instant == "silence")
    moment = datetime.fromtimestamp(at, UTC)
    combined = combine(composite, {i: Measurement(at=moment, counts={"5m": x}) for i, x in counts.items()})
    want = {"composite": combined.counts["5m"]}
    assert isinstance(composite.sli, CompositeSLI)
    for c in composite.sli.components:
        want[f"{c.slo} (weight {go_float(c.weight)})"] = counts[c.slo]

    dashboard = builders.slo_dashboard(composite, every={**every, composite.id: composite})
    [drawn] = [p for p in dashboard["panels"] if p["title"].startswith("SLI over 5m")]
    got: dict[str, float | None] = {}
    for target in drawn["targets"]:
        result = instant_query(history_prometheus.url, target["expr"], at)
        assert len(result) <= 1, result
        got[target["legendFormat"]] = float(result[0]["value"][1]) if result else None
    expected = {k: (x.good / x.total if x.total > 0 else None) for k, x in want.items()}
    assert got.keys() == expected.keys()
    for legend, value in expected.items():
        assert (got[legend] is None) == (value is None), (legend, got[legend], value)
        if value is not None:
            assert got[legend] == pytest.approx(value, rel=1e-12, abs=0), legend
    if weighting == "weights" and instant == "auth-incident":  # the weighted mean, written out
        slis = [x.good / x.total for x in counts.values()]
        assert expected["composite"] == pytest.approx((slis[0] + 2 * slis[1] + 3 * slis[2]) / 6, rel=1e-12)
        assert slis[0] < 0.9  # the incident's 20% of errors is in the window
