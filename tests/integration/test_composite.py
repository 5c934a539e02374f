"""Composite SLOs on every engine (Prometheus 2.42 and 3.5, VictoriaMetrics 1.79 and 1.145)
against the generator's exact counts (issue #12): a composite
equals the weighted mean of its components' exact SLIs in every window, a component without
events in a window leaving both sums, and ``weighting: events`` equals Σgood/Σtotal. Run through
``slowatch eval`` and through the daemon's batched ``PlannedSource`` (with its hour ledger and
without), as a shard owning only the composites, whose components are measured from the spec.

The instants are multiples of the 60 s sample step, so every count is a difference of integers
(``tests/integration/test_eval.py`` says why 1e-9 relative is then far stricter than any real bias).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from slowatch import engine, shard
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.adapters.render import slo_document
from slowatch.cli import main
from slowatch.core.model import CompositeSLI
from slowatch.daemon import Daemon
from slowatch.settings import Settings
from slowatch.spec import load_specs
from tests.integration.test_eval import BURN_WINDOWS, latency_truth, ratio_truth
from tests.support.generator import DAY, History
from tests.support.processes import Server

REL = 1e-9
WINDOW = 30 * DAY
SHARDS = 3

COMPONENTS = """\
apiVersion: slowatch/v1
service: auth
slos:
  - name: login-availability
    objective: 99.95
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{service="auth",endpoint="/auth/login",code=~"5.."}
        total: http_requests_total{service="auth",endpoint="/auth/login"}
  - name: login-latency
    objective: 95
    window: 30d
    sli:
      latency:
        histogram: http_request_duration_seconds
        selector: '{service="auth",endpoint="/auth/login"}'
        threshold: 200ms
---
apiVersion: slowatch/v1
service: knowledge
slos:
  - name: search-availability
    objective: 99.5
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{service="knowledge",endpoint="/knowledge/search",code=~"5.."}
        total: http_requests_total{service="knowledge",endpoint="/knowledge/search"}
"""

JOURNEYS = """\
apiVersion: slowatch/v1
service: journeys
slos:
  - name: sign-in
    objective: 99
    window: 30d
    sli:
      composite:
        components:
          - {slo: auth/login-availability, weight: 1}
          - {slo: auth/login-latency, weight: 2}
          - {slo: knowledge/search-availability, weight: 3}
  - name: sign-in-events
    objective: 99.5
    window: 30d
    sli:
      composite:
        weighting: events
        components:
          - {slo: auth/login-availability}
          - {slo: knowledge/search-availability}
  - name: site
    objective: 99
    window: 30d
    sli:
      composite:
        components:
          - {slo: journeys/sign-in, weight: 1}
          - {slo: auth/login-availability, weight: 4}
"""

Truth = Callable[[History, int, int], tuple[int, int]]
"""(bad, total) events of a component in (start, end]."""

LOGIN: Truth = lambda h, a, b: ratio_truth(h, {"service": "auth", "endpoint": "/auth/login"}, a, b)  # noqa: E731
LATENCY: Truth = lambda h, a, b: latency_truth(  # noqa: E731
    h, {"service": "auth", "endpoint": "/auth/login"}, "0.2", a, b)
SEARCH: Truth = lambda h, a, b: ratio_truth(  # noqa: E731
    h, {"service": "knowledge", "endpoint": "/knowledge/search"}, a, b)


def weighted(parts: list[tuple[float, Callable[[int, int], float | None]]]) -> Callable[[int, int], float | None]:
    """The weighted mean of the parts' SLIs over (start, end], a part without events left out."""
    def sli(start: int, end: int) -> float | None:
        known = [(w, s) for w, f in parts if (s := f(start, end)) is not None]
        return sum(w * s for w, s in known) / sum(w for w, _ in known) if known else None
    return sli


def exact_sli(history: History, truth: Truth) -> Callable[[int, int], float | None]:
    def sli(start: int, end: int) -> float | None:
        bad, total = truth(history, start, end)
        return None if total == 0 else 1 - bad / total
    return sli


def expected(history: History) -> dict[str, tuple[float, Callable[[int, int], float | None]]]:
    """Composite id -> (objective, its exact SLI over (start, end]) from the generator's counts."""
    login, latency, search = (exact_sli(history, t) for t in (LOGIN, LATENCY, SEARCH))
    sign_in = weighted([(1, login), (2, latency), (3, search)])

    def summed(start: int, end: int) -> float | None:
        counts = [t(history, start, end) for t in (LOGIN, SEARCH)]
        total = sum(t for _, t in counts)
        return None if total == 0 else 1 - sum(b for b, _ in counts) / total

    return {
        "journeys/sign-in": (99.0, sign_in),
        "journeys/sign-in-events": (99.5, summed),
        "journeys/site": (99.0, weighted([(1, sign_in), (4, login)])),
    }


INSTANTS: dict[str, Callable[[History], int]] = {
    "at the end of the auth incident": lambda h: h.scenario.episode("auth-incident").end,
    "at the end, the knowledge series gone for 2 hours (no events in its short windows)": lambda h: h.end,
}


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("composite-spec")
    (d / "components.yaml").write_text(COMPONENTS)
    (d / "journeys.yaml").write_text(JOURNEYS)
    return d


@pytest.fixture
def server(engine: Server) -> Server:
    """Each query engine and version (conftest's ``engine``: Prometheus 2.42 and 3.5, VictoriaMetrics
    1.79 and 1.145), under a name that leaves the ``slowatch.engine`` module its own."""
    return engine


def eval_doc(prometheus: Server, spec: Path, at: int) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["eval", str(spec), "--at", str(at), "--format", "json", "--prometheus-url", prometheus.url])
    assert code == 0, out.getvalue()
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def daemon_docs(prometheus: Server, spec: Path, at: int, *, ledger: bool) -> list[dict[str, Any]]:
    """The daemon's path for a shard owning only the composites: their components come from the spec."""
    every = load_specs([spec])
    mine = [s for s in every if s.kind == "composite"]
    source = PlannedSource(PrometheusSource(prometheus.url), ledger=ledger)
    snap = engine.evaluate(mine, source, datetime.fromtimestamp(at, UTC), spec={s.id: s for s in every})
    assert [s.slo.id for s in snap.statuses] == [s.id for s in mine]
    return [slo_document(s) for s in snap.statuses]


def check(docs: list[dict[str, Any]], history: History, at: int) -> None:
    truths = expected(history)
    composites = [d for d in docs if d["kind"] == "composite"]
    assert sorted(f"{d['service']}/{d['slo']}" for d in composites) == sorted(truths)
    for d in composites:
        objective, sli = truths[f"{d['service']}/{d['slo']}"]
        budget = 1 - objective / 100
        whole = sli(at - WINDOW, at)
        assert whole is not None
        assert d["sli"] == pytest.approx(whole, rel=REL), d["slo"]
        assert d["error_budget"]["consumed"] == pytest.approx((1 - whole) / budget, rel=REL), d["slo"]
        for w, seconds in {**BURN_WINDOWS, "30d": WINDOW}.items():
            part = sli(at - seconds, at)
            want = None if part is None else (1 - part) / budget
            got = d["burn_rates"][w]
            assert got == (want if want is None else pytest.approx(want, rel=REL, abs=1e-12)), (d["slo"], w)


@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
def test_eval_composites_equal_the_weighted_mean_of_the_components_exact_slis(
    server: Server, history: History, spec_dir: Path, instant: str,
) -> None:
    at = INSTANTS[instant](history)
    doc = eval_doc(server, spec_dir, at)
    check(doc["slos"], history, at)
    # /status shows each component's own SLI: the exact one, in every window.
    sign_in = next(d for d in doc["slos"] if d["slo"] == "sign-in")
    own = {"auth/login-availability": LOGIN, "auth/login-latency": LATENCY, "knowledge/search-availability": SEARCH}
    assert [(f"{c['service']}/{c['slo']}", c["weight"]) for c in sign_in["composite"]["components"]] == [
        ("auth/login-availability", 1.0), ("auth/login-latency", 2.0), ("knowledge/search-availability", 3.0)]
    for c in sign_in["composite"]["components"]:
        for w, seconds in {**BURN_WINDOWS, "30d": WINDOW}.items():
            want = exact_sli(history, own[f"{c['service']}/{c['slo']}"])(at - seconds, at)
            assert c["sli"][w] == (want if want is None else pytest.approx(want, rel=REL)), (c["slo"], w)


def test_at_the_end_the_vanished_component_leaves_the_short_windows_of_the_composite(
    server: Server, history: History, spec_dir: Path,
) -> None:
    """Not vacuous: the knowledge component really has no events in the last hour, and the
    composite's 1h SLI is the other two components' weighted mean alone."""
    at = history.end
    assert SEARCH(history, at - 3600, at) == (0, 0)
    doc = eval_doc(server, spec_dir, at)
    sign_in = next(d for d in doc["slos"] if d["slo"] == "sign-in")
    login, latency = (exact_sli(history, t)(at - 3600, at) for t in (LOGIN, LATENCY))
    assert login is not None and latency is not None
    assert sign_in["burn_rates"]["1h"] == pytest.approx((1 - (login + 2 * latency) / 3) / 0.01, rel=REL)


@pytest.mark.parametrize("ledger", [pytest.param(True, id="with the hour ledger"),
                                    pytest.param(False, id="every window read live")])
@pytest.mark.parametrize("instant", list(INSTANTS), ids=list(INSTANTS))
def test_the_daemons_batched_path_gives_the_same_exact_composites_for_a_shard_owning_only_them(
    server: Server, history: History, spec_dir: Path, instant: str, ledger: bool,
) -> None:
    at = INSTANTS[instant](history)
    check(daemon_docs(server, spec_dir, at, ledger=ledger), history, at)


@dataclass
class FixedClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


def test_sharded_daemons_each_publish_their_own_slos_and_composites_read_components_of_other_shards(
    prometheus: Server, history: History, spec_dir: Path, tmp_path: Path,
) -> None:
    at = INSTANTS["at the end of the auth incident"](history)
    every = load_specs([spec_dir])
    composites = {s.id: s.sli for s in every if isinstance(s.sli, CompositeSLI)}
    # Not vacuous: some composite's owner does not own one of its components.
    assert any(shard.owner(c.slo, SHARDS) != shard.owner(slo_id, SHARDS)
               for slo_id, sli in composites.items() for c in sli.components)
    daemons = [Daemon(Settings(prometheus_url=prometheus.url, shard=f"{k}/{SHARDS}"), [spec_dir],
                      clock=FixedClock(datetime.fromtimestamp(at, UTC))) for k in range(1, SHARDS + 1)]
    try:
        published: list[dict[str, Any]] = []
        for k, d in enumerate(daemons, start=1):
            d.evaluate()
            statuses = d.holder.get().statuses
            assert {s.slo.id for s in statuses} == {s.id for s in every if shard.owner(s.id, SHARDS) == k}
            assert {a.label("slo") for a in d.cycle.book.firing} <= {s.slo.name for s in statuses}
            published += [slo_document(s) for s in statuses]
        assert sorted(f"{p['service']}/{p['slo']}" for p in published) == sorted(s.id for s in every)
        check(published, history, at)
    finally:
        for d in daemons:
            d.stop()
