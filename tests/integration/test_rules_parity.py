"""Parity: over the same history, the generated recording and alerting rules compute the daemon's
numbers. Burn rate per window (5m .. 3d), the SLO window's SLI, the error budget consumed and
remaining, and which ``SLOErrorBudgetBurn`` / ``SLOErrorBudgetConsumed`` alerts fire, from
``slowatch generate`` on one side and ``slowatch eval --at T --format json`` (the ``/status``
document) on the other, at a few instants T of the generated history.

How the rules are evaluated at T (fixture ``rules_prometheus``, ``RuleSet.inline``):

1. ``slowatch generate deploy/slos --out TMP``; everything below reads the rules from those files.
2. Backfill: the rules whose series another rule reads over a range (the ``*-period`` groups' step
   rules, ``slowatch:slo_step_events_{good,total}:increase5m``) are evaluated as
   ``promtool tsdb create-blocks-from rules`` does it: a range query on the Prometheus holding the
   history with the group's interval as step, the rule's labels over the result's, ``__name__``
   the record; the samples become TSDB blocks (``promtool tsdb create-blocks-from openmetrics``)
   and a second Prometheus serves the history blocks plus these.
   We do not run ``create-blocks-from rules`` itself. Prometheus' backfiller (like its rule
   manager) evaluates a group at ``Group.EvalTimestamp``: multiples of the interval *plus an
   offset hashed from the group and file name*, e.g. 186.7 s past every 5-minute mark. A step is a
   difference of instant values (``core.measure``), so its steps tile at that offset too, but
   then T's window is the one the last evaluation before T saw; ``bench/accuracy.py`` measures
   the rules at hashed offsets against the truth at that evaluation. Here the range queries start
   on a multiple of 5m, so the rules are compared with the daemon at T itself. (It is also far
   cheaper: one block per 2h in all, where promtool writes one per rule per 2h.)
3. At T every other rule is one instant query: each recorded series it reads at an instant
   (``slowatch:...{service=..,slo=..,window=..}``) is replaced by the parenthesised expression of
   the one rule recording it, recursively, down to raw series and the backfilled steps. That is
   what Prometheus records when the groups are evaluated at T with their inputs fresh (the
   windows group's SLI and burn rate read its event rules of the same evaluation, the period
   group's SLI reads its sums). Alert expressions are inlined the same way; an alert fires when
   its query returns a sample (the generated alerts have no ``for:``).

Why 1e-9 holds. T is a multiple of 5m and of the 60 s sample step. Every window, the daemon's
and each rule's, is counted as ``core.measure`` counts a span: a difference of integer counters
(across a reset, ``increase`` over one more millisecond with that millisecond undone), exact. The steps sit on
multiples of 5m and tile ``(T - W, T]`` (``sum_over_time`` over ``W - 1ms`` holds exactly W/5m of
them, see core/rules.py); the daemon adds up the same events as tail + whole hours + head
(core/plan.py). Integers below 2**53 add exactly in float64, so both sides hold the same counts.
What remains is a few correctly rounded operations that differ in form: the rules compute
``(1 - good/total) / 0.0005``, the daemon ``((total - good)/total) / budget``. ``1 - good/total``
cancels when good is close to total, so the rules' error is ~1e-16 / (bad/total): measured at most
~7e-13 here (a 99.95% SLO's 30m window). 1e-9 leaves three orders of magnitude above that, and is
still far below any real bias (extrapolation, a step missed or counted twice, averaged ratios).

Throughput SLOs count time slices in (T - w, T] on both sides, for the burn-rate windows and
the SLO window alike.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from slowatch.cli import main
from slowatch.core import conventions as c
from slowatch.core.conventions import rfc3339
from slowatch.core.exclusions import merged
from slowatch.core.model import SLO, CompositeSLI, RollingWindow, alert_rows, nominal_length
from slowatch.core.windows import BURN_RATE_WINDOWS, parse_duration
from slowatch.spec import load_specs
from tests.integration.test_composite import JOURNEYS
from tests.support.generator import DAY, History
from tests.support.processes import ProcessError, Server, find_binary, instant_query, start_prometheus

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "slos"
SPEC = {s.id: s for s in load_specs([EXAMPLE])}
REL = 1e-9
HOUR = 3600

# Recorded series named in an expression: `slowatch:name{matchers}`, and whether a range follows.
_REFERENCE = re.compile(r"(?P<name>" + re.escape(c.PREFIX) + r":[A-Za-z0-9_:]+)\{(?P<matchers>[^}]*)\}(?P<range>\[)?")
_MATCHER = re.compile(r'(?P<label>[A-Za-z_][A-Za-z0-9_]*)="(?P<value>[^"\\]*)"')


# --- the generated rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    group: str
    interval: int | None
    record: str
    expr: str
    labels: dict[str, str]


@dataclass(frozen=True)
class Alerting:
    group: str
    alert: str
    expr: str
    labels: dict[str, str]


@dataclass
class RuleSet:
    recording: list[Recording]
    alerting: list[Alerting]
    _inlined: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, out: Path) -> RuleSet:
        recording: list[Recording] = []
        alerting: list[Alerting] = []
        for kind in (c.RULES_DIR, c.ALERTS_DIR):
            for path in sorted((out / kind).glob("*.yaml")):
                for group in yaml.safe_load(path.read_text())["groups"]:
                    interval = group.get("interval")
                    seconds = None if interval is None else int(parse_duration(interval).total_seconds())
                    for r in group["rules"]:
                        labels = {k: str(v) for k, v in r.get("labels", {}).items()}
                        if "record" in r:
                            recording.append(Recording(group["name"], seconds, r["record"], r["expr"], labels))
                        else:  # without `for:` an alert fires as soon as its expression has a sample
                            assert "for" not in r and "keep_firing_for" not in r, r["alert"]
                            alerting.append(Alerting(group["name"], r["alert"], r["expr"], labels))
        return cls(recording, alerting)

    @property
    def stored(self) -> set[str]:
        """Series some rule reads over a range: they need their history, so they are backfilled."""
        return {m["name"] for r in self.recording for m in _REFERENCE.finditer(r.expr) if m["range"]}

    def backfilled(self, slo_ids: Sequence[str]) -> list[Recording]:
        rules = [r for r in self.recording if r.record in self.stored and _slo_id(r.labels) in slo_ids]
        for r in rules:
            assert not _REFERENCE.search(r.expr), f"{r.record} reads recorded series: backfill in order"
            assert r.interval is not None, f"{r.group}: a backfilled group needs its own interval"
        return rules

    def recorder(self, name: str, matchers: dict[str, str]) -> Recording:
        found = [r for r in self.recording if r.record == name and matchers.items() <= r.labels.items()]
        assert len(found) == 1, f"{name}{matchers} is recorded by {len(found)} rules, expected one"
        return found[0]

    def inline(self, expr: str) -> str:
        """``expr`` with every recorded series it reads at an instant replaced by the expression
        recording it (recursively); series read over a range must be stored (backfilled)."""

        def replace(m: re.Match[str]) -> str:
            name, text = m["name"], m["matchers"]
            if name in self.stored:
                return m[0]
            assert not m["range"], f"{name} is read over a range but not backfilled"
            matchers = {x["label"]: x["value"] for x in _MATCHER.finditer(text)}
            assert ",".join(f'{k}="{v}"' for k, v in matchers.items()) == text, f"unexpected matchers {text!r}"
            key = name + "{" + text + "}"
            if key not in self._inlined:
                self._inlined[key] = "(" + self.inline(self.recorder(name, matchers).expr) + ")"
            return self._inlined[key]

        return _REFERENCE.sub(replace, expr)

    def value(self, server: Server, record: str, matchers: dict[str, str], at: int) -> float | None:
        """What ``record{matchers}`` is when its rule is evaluated at ``at``; None when absent."""
        result = instant_query(server.url, self.inline(self.recorder(record, matchers).expr), at)
        if not result:
            return None
        assert len(result) == 1, f"{record}{matchers}: {len(result)} samples"
        return float(result[0]["value"][1])

    def alerts_of(self, slo: SLO) -> list[Alerting]:
        return [a for a in self.alerting if _slo_id(a.labels) == slo.id]

    def fires(self, server: Server, alert: Alerting, at: int) -> bool:
        return bool(instant_query(server.url, self.inline(alert.expr), at))


def _slo_id(labels: dict[str, str]) -> str:
    return f"{labels.get(c.SERVICE_LABEL)}/{labels.get(c.SLO_LABEL)}"


# --- the SLOs and instants compared -------------------------------------------------------------

EVENTS = [  # ratio and latency SLOs: events
    pytest.param("auth/login-availability", id="auth login 99.95% available over 30d"),
    pytest.param("gateway/overall-availability", id="every request 99.9% available over 30d, across a counter reset"),
    pytest.param("agent/execution-availability", id="agent executions 99.9% available over 30d"),
    pytest.param("knowledge/search-availability", id="knowledge search 99.5% available over 30d, quiet hour included"),
    pytest.param("auth/login-latency", id="95% of logins under 200ms over 30d"),
    pytest.param("agent/complex-task-latency", id="95% of complex agent tasks under 8s over 7d"),
    pytest.param("agent/simple-task-latency", id="95% of simple agent tasks under 2s over 7d"),
    pytest.param("knowledge/search-latency", id="95% of knowledge searches under 800ms over 7d"),
    pytest.param("gateway/api-latency", id="99% of gateway requests under 100ms over 24h"),
]
SLICES = [  # throughput SLOs: time slices
    pytest.param("gateway/sustained-throughput", id="minutes at 200 req/s, 95% over 1d"),
    pytest.param("gateway/burst-throughput", id="hours with a 500 req/s burst, 90% over 7d"),
]
COMPARED = [p.values[0] for p in EVENTS + SLICES]

INSTANTS = [
    pytest.param("auth-incident", id="at the end of the auth incident"),
    pytest.param("agent-incident", id="at the end of the agent incident"),
    pytest.param("gateway-dip", id="at the end of the gateway dip"),
    pytest.param("knowledge-quiet-hour", id="at the end of the knowledge quiet hour"),
    pytest.param("quiet", id="on a quiet evening three hours before the history ends"),
]


@pytest.fixture(scope="module")
def instants(history: History) -> dict[str, int]:
    """Each instant is a multiple of 5m (the step rules' interval) and of the sample step, and
    before the last 2h, where the knowledge service writes no samples."""
    out = {p.values[0]: history.scenario.episode(p.values[0]).end for p in INSTANTS if p.values[0] != "quiet"}
    out["quiet"] = history.end - 3 * HOUR
    for name, at in out.items():
        assert at % 300 == 0 and at % history.step == 0, name
        assert history.start < at <= history.scenario.silence.start, name
    return out


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    out = tmp_path_factory.mktemp("generated")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["generate", str(EXAMPLE), "--out", str(out)]) == 0
    return RuleSet.load(out)


@pytest.fixture(scope="module")
def daemon(prometheus: Server, instants: dict[str, int]) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``/status`` document of ``slowatch eval --at T`` per instant, SLOs by id."""
    docs = {}
    for name, at in instants.items():
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(["eval", str(EXAMPLE), "--at", str(at), "--format", "json", "--prometheus-url", prometheus.url])
        assert code == 0, f"eval at {name} failed"
        doc = json.loads(stdout.getvalue())
        docs[name] = {f"{s['service']}/{s['slo']}": s for s in doc["slos"]}
    return docs


# --- the backfill --------------------------------------------------------------------------------


def _series_line(labels: dict[str, str], value: str, at: int) -> str:
    name = labels["__name__"]
    rest = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
    return f"{name}{{{rest}}} {value} {at}\n"


def backfill(source: Server, rules: Sequence[Recording], start: int, end: int, out: Path) -> int:
    """Evaluate ``rules`` at every multiple of their interval in ``[start, end]`` on ``source``
    (a range query per rule and day, as promtool does per rule and block, but clock-aligned) and
    write the samples into TSDB blocks in ``out``; returns the sample count."""
    promtool = find_binary("promtool", env="SLOWATCH_PROMTOOL_BIN")
    work = out.parent / f"{out.name}.openmetrics"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    session = requests.Session()

    def day(lo: int) -> int:
        samples: dict[str, list[str]] = {}
        for r in rules:
            assert r.interval is not None
            first = -(-max(lo, start) // r.interval) * r.interval
            last = min(end, lo + DAY - 1)
            if first > last:
                continue
            resp = session.get(source.url + "/api/v1/query_range", timeout=120,
                               params={"query": r.expr, "start": first, "end": last, "step": r.interval})
            body = resp.json()
            assert body.get("status") == "success", f"{r.record}: {body.get('error')}"
            for series in body["data"]["result"]:
                labels = {**series["metric"], **r.labels, "__name__": r.record}
                lines = samples.setdefault(r.record, [])
                lines += [_series_line(labels, v, int(t)) for t, v in series["values"]]
        if not samples:
            return 0
        path = work / f"{lo}.om"
        with path.open("w", encoding="utf-8") as f:
            for name, lines in samples.items():
                f.write(f"# TYPE {name} gauge\n")
                f.writelines(lines)
            f.write("# EOF\n")
        # One file per day: promtool re-reads its input once per 2h block it writes.
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(path), str(out)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ProcessError(f"promtool failed on {path}: {done.stderr.strip()[-2000:]}")
        path.unlink()
        return sum(len(lines) for lines in samples.values())

    with ThreadPoolExecutor(max_workers=8) as pool:
        count = sum(pool.map(day, range(start - start % DAY, end + 1, DAY)))
    work.rmdir()
    return count


@pytest.fixture(scope="module")
def rules_prometheus(
    prometheus: Server, blocks: Path, history: History, rules: RuleSet, instants: dict[str, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """A Prometheus over the history plus the backfilled step series of the compared SLOs."""
    work = tmp_path_factory.mktemp("rules-prometheus")
    steps = rules.backfilled(COMPARED)
    assert {r.record for r in steps} == {c.STEP_EVENTS_GOOD, c.STEP_EVENTS_TOTAL}
    longest = max(nominal_length(SPEC[i].window).total_seconds() for i in COMPARED)
    start = max(history.start, min(instants.values()) - int(longest))
    assert backfill(prometheus, steps, start, max(instants.values()), work / "data") > 0
    try:
        server = start_prometheus(work, blocks)
    except ProcessError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


# --- comparing -----------------------------------------------------------------------------------

Row = tuple[str, float | None, float | None]
"""What is compared, the rules' value and the daemon's (None: absent / no events)."""


def same(rule: float | None, daemon: float | None) -> bool:
    if rule is None or daemon is None:
        return rule is daemon
    return math.isclose(rule, daemon, rel_tol=REL, abs_tol=0.0)


def relative_difference(rule: float | None, daemon: float | None) -> float:
    if rule is None or daemon is None or rule == daemon:
        return 0.0 if rule == daemon else math.inf
    return abs(rule - daemon) / max(abs(rule), abs(daemon))


def assert_same(rows: Sequence[Row]) -> None:
    wrong = [f"{what}: rules {r!r}, daemon {d!r}, relative difference {relative_difference(r, d):.3g}"
             for what, r, d in rows if not same(r, d)]
    assert not wrong, "\n".join(wrong)


def labels_of(slo: SLO, window: str | None = None) -> dict[str, str]:
    out = {c.SERVICE_LABEL: slo.service, c.SLO_LABEL: slo.name}
    if window is not None:
        out[c.WINDOW_LABEL] = window
    return out


def burn_rate_rows(rules: RuleSet, server: Server, slo: SLO, got: dict[str, Any], at: int) -> list[Row]:
    return [(f"burn rate {w}", rules.value(server, c.BURN_RATE, labels_of(slo, w), at), got["burn_rates"][w])
            for w in BURN_RATE_WINDOWS]


def slo_window_rows(rules: RuleSet, server: Server, slo: SLO, got: dict[str, Any], at: int) -> list[Row]:
    window = slo.window.name
    consumed = rules.value(server, c.BUDGET_CONSUMED_RATIO, labels_of(slo, window), at)
    return [
        ("error budget", rules.value(server, c.ERROR_BUDGET, labels_of(slo), at), got["error_budget"]["total"]),
        (f"SLI over {window}", rules.value(server, c.PERIOD_SLI, labels_of(slo, window), at), got["sli"]),
        ("budget consumed", consumed, got["error_budget"]["consumed"]),
        ("budget remaining", rules.value(server, c.BUDGET_REMAINING_RATIO, labels_of(slo, window), at),
         got["error_budget"]["remaining"]),
        # The daemon's burn rate over the SLO window itself is the budget consumed.
        (f"burn rate {window}", consumed, got["burn_rates"][window]),
    ]


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("slo_id", EVENTS)
def test_burn_rates_equal_the_daemons(
    rules: RuleSet, rules_prometheus: Server, daemon: dict[str, dict[str, dict[str, Any]]],
    instants: dict[str, int], slo_id: str, instant: str,
) -> None:
    got = daemon[instant][slo_id]
    assert got["state"] not in ("error", "stale", "no_data"), got
    assert_same(burn_rate_rows(rules, rules_prometheus, SPEC[slo_id], got, instants[instant]))


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("slo_id", EVENTS + SLICES)
def test_slo_window_sli_and_budget_equal_the_daemons(
    rules: RuleSet, rules_prometheus: Server, daemon: dict[str, dict[str, dict[str, Any]]],
    instants: dict[str, int], slo_id: str, instant: str,
) -> None:
    """The event-weighted period group (sums of 5m steps) against the daemon's SLO window; for
    throughput SLOs both count the slices in (T - W, T]."""
    slo = SPEC[slo_id]
    assert isinstance(slo.window, RollingWindow)
    got = daemon[instant][slo_id]
    assert got["state"] not in ("error", "stale", "no_data"), got
    assert_same(slo_window_rows(rules, rules_prometheus, slo, got, instants[instant]))


@pytest.mark.parametrize(("slo_id", "instant"), [
    pytest.param("gateway/sustained-throughput", "gateway-dip",
                 id="at the end of the gateway dip, 20 bad minutes of 30 in 30m on both sides"),
    pytest.param("gateway/burst-throughput", "auth-incident",
                 id="at hh:30, 30m holds no whole hour: no data on both sides"),
    pytest.param("gateway/sustained-throughput", "agent-incident",
                 id="before the dip, every minute is good on both sides"),
    pytest.param("gateway/burst-throughput", "quiet",
                 id="on the hour, every window holds the same hours on both sides"),
])
def test_throughput_burn_rates_equal_the_daemons(
    rules: RuleSet, rules_prometheus: Server, daemon: dict[str, dict[str, dict[str, Any]]],
    instants: dict[str, int], slo_id: str, instant: str,
) -> None:
    """Time-slice SLOs count the slices in (t - w, t] on both sides, including where the slice at
    t - w would change the answer (a closed range would count w/slice + 1 slices)."""
    got = daemon[instant][slo_id]
    assert_same(burn_rate_rows(rules, rules_prometheus, SPEC[slo_id], got, instants[instant]))


# --- alerts ---------------------------------------------------------------------------------------


def daemon_fires(slo: SLO, alert: Alerting, got: dict[str, Any]) -> tuple[bool, float | None, float]:
    """Whether the daemon fires ``alert`` given its /status numbers: (fires, value, threshold)."""
    if alert.alert == c.BUDGET_CONSUMED:
        threshold = float(alert.labels[c.THRESHOLD_LABEL]) / 100.0
        consumed = got["error_budget"]["consumed"]
        return consumed >= threshold, consumed, threshold
    assert alert.alert == c.BUDGET_BURN
    long, short = alert.labels[c.LONG_WINDOW_LABEL], alert.labels[c.SHORT_WINDOW_LABEL]
    (row,) = [r for r in alert_rows(slo) if (r.long_window, r.short_window) == (long, short)]
    factor = row.factor(nominal_length(slo.window))
    rates = [got["burn_rates"][long], got["burn_rates"][short]]
    fires = all(r is not None and r >= factor for r in rates)
    return fires, min((r for r in rates if r is not None), default=None), factor


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("slo_id", EVENTS + SLICES)
def test_alerts_fire_exactly_when_the_daemon_says(
    rules: RuleSet, rules_prometheus: Server, daemon: dict[str, dict[str, dict[str, Any]]],
    instants: dict[str, int], slo_id: str, instant: str,
) -> None:
    slo = SPEC[slo_id]
    got = daemon[instant][slo_id]
    alerts = rules.alerts_of(slo)
    rows = {(a.labels[c.LONG_WINDOW_LABEL], a.labels[c.SHORT_WINDOW_LABEL]) for a in alerts if a.alert == c.BUDGET_BURN}
    assert rows == {(r.long_window, r.short_window) for r in alert_rows(slo)}
    thresholds = sorted(float(a.labels[c.THRESHOLD_LABEL]) for a in alerts if a.alert == c.BUDGET_CONSUMED)
    assert thresholds == sorted(slo.alerting.budget_consumed)

    burning = False
    for alert in alerts:
        expected, value, threshold = daemon_fires(slo, alert, got)
        # A value within REL of its threshold could fall either way: the instant would prove nothing.
        assert value is None or not math.isclose(value, threshold, rel_tol=REL), (alert.labels, value)
        fired = rules.fires(rules_prometheus, alert, instants[instant])
        assert fired == expected, f"{alert.alert} {alert.labels}: rules fire={fired}, daemon {value} vs {threshold}"
        burning |= fired and alert.alert == c.BUDGET_BURN
    consumed = got["error_budget"]["consumed"]
    assert got["state"] == ("exhausted" if consumed >= 1 else "burning" if burning else "ok")


def test_the_instants_show_firing_and_quiet_alerts(
    rules: RuleSet, rules_prometheus: Server, instants: dict[str, int]
) -> None:
    """The alert comparison is not vacuous: the scenario's incidents fire what it says they fire."""
    def firing(slo_id: str, instant: str) -> set[str]:
        return {
            a.labels.get(c.LONG_WINDOW_LABEL) or f"consumed {a.labels[c.THRESHOLD_LABEL]}%"
            for a in rules.alerts_of(SPEC[slo_id]) if rules.fires(rules_prometheus, a, instants[instant])
        }

    assert firing("auth/login-availability", "auth-incident") == {"1h", "6h", "3d", "consumed 50%"}
    assert firing("agent/execution-availability", "agent-incident") == {"6h", "3d"}  # 12x on 1h: no fast page
    assert firing("knowledge/search-availability", "knowledge-quiet-hour") == {"1h"}
    assert firing("gateway/sustained-throughput", "gateway-dip") == {"1h", "6h"}
    assert firing("auth/login-availability", "quiet") == {"consumed 50%"}
    assert firing("gateway/overall-availability", "quiet") == set()


# --- composites ------------------------------------------------------------------------------------

COMPOSITES = [pytest.param("journeys/sign-in", id="weights: login availability, latency x2 and search x3"),
              pytest.param("journeys/sign-in-events", id="events: login and search requests"),
              pytest.param("journeys/site", id="nested: sign-in and login availability x4")]


@dataclass(frozen=True)
class Journeys:
    rules: RuleSet
    daemon: dict[str, dict[str, dict[str, Any]]]
    slos: dict[str, SLO]


@pytest.fixture(scope="module")
def journeys(prometheus: Server, instants: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> Journeys:
    """The example spec plus two composites of its SLOs: generated rules and ``eval`` per instant."""
    work = tmp_path_factory.mktemp("journeys")
    spec = work / "journeys.yaml"
    spec.write_text(JOURNEYS)
    paths = [str(EXAMPLE), str(spec)]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["generate", *paths, "--out", str(work / "out")]) == 0
    docs = {}
    for name, at in instants.items():
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(["eval", *paths, "--at", str(at), "--format", "json", "--prometheus-url", prometheus.url]) == 0
        docs[name] = {f"{s['service']}/{s['slo']}": s for s in json.loads(stdout.getvalue())["slos"]}
    return Journeys(RuleSet.load(work / "out"), docs, {s.id: s for s in load_specs([EXAMPLE, spec])})


def leaves(slos: dict[str, SLO], slo_id: str) -> list[str]:
    """The non-composite SLOs a composite is made of, through nested composites."""
    sli = slos[slo_id].sli
    return [x for c in sli.components for x in leaves(slos, c.slo)] if isinstance(sli, CompositeSLI) else [slo_id]


@pytest.mark.parametrize("instant", INSTANTS)
@pytest.mark.parametrize("slo_id", COMPOSITES)
def test_a_composites_rules_equal_the_daemons(
    journeys: Journeys, rules_prometheus: Server, instants: dict[str, int], slo_id: str, instant: str,
) -> None:
    """A composite's recorded burn rates, SLO-window SLI and budget, from its components' recorded
    series and steps (backfilled as for the SLOs above), against ``eval``'s composite."""
    slo = journeys.slos[slo_id]
    assert all(leaf in COMPARED for leaf in leaves(journeys.slos, slo_id))  # their steps are backfilled
    got = journeys.daemon[instant][slo_id]
    assert got["state"] not in ("error", "stale", "no_data"), got
    at = instants[instant]
    assert_same(burn_rate_rows(journeys.rules, rules_prometheus, slo, got, at)
                + slo_window_rows(journeys.rules, rules_prometheus, slo, got, at))
    for alert in journeys.rules.alerts_of(slo):
        expected, value, threshold = daemon_fires(slo, alert, got)
        assert value is None or not math.isclose(value, threshold, rel_tol=REL), (alert.labels, value)
        assert journeys.rules.fires(rules_prometheus, alert, at) == expected, alert.labels


def test_a_composites_alerts_are_not_vacuous(journeys: Journeys, rules_prometheus: Server,
                                             instants: dict[str, int]) -> None:
    """At the end of the auth incident: the events composite, dominated by the login requests,
    pages on 1h and 5m (14.44x against 14.4x); the weighted one (objective 99%, beside a 95%
    latency SLO weighted twice) tickets on 3d and is past half its budget; the nested one, where
    login availability weighs 4 of 5 but the objective is 99%, stays quiet."""
    def firing(slo_id: str) -> set[str]:
        return {a.labels.get(c.LONG_WINDOW_LABEL) or f"consumed {a.labels[c.THRESHOLD_LABEL]}%"
                for a in journeys.rules.alerts_of(journeys.slos[slo_id])
                if journeys.rules.fires(rules_prometheus, a, instants["auth-incident"])}

    assert firing("journeys/sign-in-events") == {"1h"}
    assert firing("journeys/sign-in") == {"3d", "consumed 50%"}
    assert firing("journeys/site") == set()


# --- exclusions -------------------------------------------------------------------------------------

EXCLUDED_ID = "auth/login-maintained"


def excluded_spec(history: History) -> str:
    """auth's login availability with the auth incident excluded, and a weekly maintenance in Paris
    wall time (Sundays 02:00-04:00, four of them in the 30 days before the incident)."""
    incident = history.scenario.episode("auth-incident")
    start, end = (rfc3339(datetime.fromtimestamp(t, UTC)) for t in (incident.start, incident.end))
    return f"""\
apiVersion: slowatch/v1
service: auth
exclusions:
  - rrule: "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0"
    duration: 2h
    timezone: Europe/Paris
    reason: weekly maintenance
slos:
  - name: login-maintained
    objective: 99.95
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{{service="auth",endpoint="/auth/login",code=~"5.."}}
        total: http_requests_total{{service="auth",endpoint="/auth/login"}}
    exclusions:
      - start: {start}
        end: {end}
        reason: load test against production
"""


def write_gauge(slo: SLO, start: int, end: int, path: Path) -> None:
    """``slowatch_exclusion_active`` of ``slo`` as the daemon exports it, one sample a minute in
    ``[start, end]`` (without the daemon's lag), as OpenMetrics."""
    spans = [(lo.timestamp(), hi.timestamp()) for lo, hi in
             merged(slo.exclusions, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end + 1, UTC))]
    labels = f'{c.SERVICE_LABEL}="{slo.service}",{c.SLO_LABEL}="{slo.name}"'
    with path.open("w", encoding="utf-8") as f:
        f.write(f"# TYPE {c.EXCLUSION_ACTIVE} gauge\n")
        for t in range(start, end + 1, 60):
            f.write(f"{c.EXCLUSION_ACTIVE}{{{labels}}} {int(any(lo <= t < hi for lo, hi in spans))} {t}\n")
        f.write("# EOF\n")


@dataclass(frozen=True)
class Excluded:
    rules: RuleSet
    server: Server
    daemon: dict[str, dict[str, Any]]
    slo: SLO


@pytest.fixture(scope="module")
def excluded(prometheus: Server, blocks: Path, history: History, instants: dict[str, int],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Excluded]:
    """The rules of the excluded SLO over the history: its steps backfilled from a Prometheus that
    also holds the daemon's exclusion gauge, then served beside the history; ``eval`` per instant."""
    work = tmp_path_factory.mktemp("excluded")
    spec = work / "auth-maintained.yaml"
    spec.write_text(excluded_spec(history))
    [slo] = load_specs([spec])
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["generate", str(spec), "--out", str(work / "out")]) == 0
    rules = RuleSet.load(work / "out")
    start = max(history.start, min(instants.values()) - int(nominal_length(slo.window).total_seconds()))
    end = max(instants.values())
    gauge = work / "gauge.om"
    write_gauge(slo, start - 600, end, gauge)
    promtool = find_binary("promtool", env="SLOWATCH_PROMTOOL_BIN")
    (work / "source" / "data").mkdir(parents=True)
    made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(gauge),
                           str(work / "source" / "data")], capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr[-2000:]
    source = start_prometheus(work / "source", blocks)
    try:
        assert backfill(source, rules.backfilled([slo.id]), start, end, work / "rules" / "data") > 0
    finally:
        source.stop()
    server = start_prometheus(work / "rules", blocks)
    docs = {}
    for name, at in instants.items():
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(["eval", str(spec), "--at", str(at), "--format", "json", "--prometheus-url",
                         prometheus.url]) == 0
        [doc] = json.loads(stdout.getvalue())["slos"]
        docs[name] = doc
    yield Excluded(rules, server, docs, slo)
    server.stop()


@pytest.mark.parametrize("instant", INSTANTS)
def test_excluded_events_leave_the_rules_as_they_leave_the_daemon(
    excluded: Excluded, instants: dict[str, int], instant: str,
) -> None:
    """Burn rates of every window, the SLO window's SLI and budget, and the alerts: the masked
    steps (the exclusions' bounds fall on 5-minute steps) against the daemon's exact exclusion."""
    got, at = excluded.daemon[instant], instants[instant]
    assert got["exclusions"]["excluded_seconds"][excluded.slo.window.name] > 0, got
    rows = (burn_rate_rows(excluded.rules, excluded.server, excluded.slo, got, at)
            + slo_window_rows(excluded.rules, excluded.server, excluded.slo, got, at))
    assert_same(rows)
    for alert in excluded.rules.alerts_of(excluded.slo):
        expected, value, threshold = daemon_fires(excluded.slo, alert, got)
        assert value is None or not math.isclose(value, threshold, rel_tol=REL), (alert.labels, value)
        assert excluded.rules.fires(excluded.server, alert, at) == expected, alert.labels


def test_the_excluded_incident_pages_nobody_where_the_same_slo_without_it_pages(
    excluded: Excluded, rules: RuleSet, rules_prometheus: Server, instants: dict[str, int],
) -> None:
    at = instants["auth-incident"]
    example = SPEC["auth/login-availability"]
    assert {a.labels.get(c.SEVERITY_LABEL) for a in rules.alerts_of(example) if a.alert == c.BUDGET_BURN
            and rules.fires(rules_prometheus, a, at)} == {"page", "ticket"}
    fired = [a.labels for a in excluded.rules.alerts_of(excluded.slo) if excluded.rules.fires(excluded.server, a, at)]
    assert fired == []
    # The incident's 5m and 30m lie wholly in the exclusion: no events, no burn rate, on both sides.
    assert excluded.daemon["auth-incident"]["burn_rates"]["5m"] is None
    assert excluded.rules.value(excluded.server, c.BURN_RATE, labels_of(excluded.slo, "5m"), at) is None
