"""Composite SLOs (``sli.composite``) in process: ``core.composite.combine`` against the formula of
issue #12, the engine combining them after measuring (never asking the source for them), a failed
component failing its composite by name, the spec's refusals, /status and the page, and the
composite's own alerts through the real Cycle with fakes of our ports."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from slowatch import engine
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.page import render_page
from slowatch.adapters.render import slo_document, table
from slowatch.checks import live_problems
from slowatch.core import budget, composite
from slowatch.core.alerting import BUDGET_BURN, BUDGET_CONSUMED
from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement
from slowatch.core.model import EVENTS, SLO, AlertPolicy, Component, CompositeSLI, RollingWindow, Weighting
from slowatch.core.plan import group_slos
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.cycle import Cycle
from slowatch.errors import QueryError, SourceUnavailable, SpecError
from slowatch.spec import load_specs
from slowatch.view import DaemonView, ViewHolder
from tests.unit.fakes import (
    START,
    Answer,
    BatchedSource,
    FakeAlertmanager,
    MemoryStore,
    Ratios,
    ScriptedSource,
    SteppedClock,
    slo,
)

LOGIN, SIGNUP, PAY = slo("login"), slo("signup"), slo("payment", service="shop")


def journey(name: str, *parts: tuple[SLO | str, float], weighting: Weighting = "weights",
            objective: float = 99.9) -> SLO:
    return SLO(service="shop", name=name, objective_percent=objective, window=RollingWindow(timedelta(days=30)),
               sli=CompositeSLI(components=tuple(Component(p if isinstance(p, str) else p.id, w) for p, w in parts),
                                weighting=weighting),
               alerting=AlertPolicy(budget_consumed=(50.0,)))


def measured(**windows: tuple[float, float]) -> Measurement:
    return Measurement(at=START, counts={w.replace("w_", ""): EventCounts(good=g, total=t)
                                         for w, (g, t) in windows.items()})


def sli(good: float, total: float) -> float:
    return good / total


# --- combine: the formula -------------------------------------------------------------------------

CHECKOUT = journey("checkout", (LOGIN, 1), (PAY, 2))
CHECKOUT_EVENTS = journey("checkout-events", (LOGIN, 1), (PAY, 2), weighting=EVENTS)

COMBINE = [
    pytest.param(CHECKOUT, {LOGIN.id: measured(slo=(990, 1000)), PAY.id: measured(slo=(95, 100))},
                 {"slo": ((1 * sli(990, 1000) + 2 * sli(95, 100)), 3)},
                 id="weights: good is the weighted sum of the SLIs and total the sum of the weights"),
    pytest.param(CHECKOUT_EVENTS, {LOGIN.id: measured(slo=(990, 1000)), PAY.id: measured(slo=(95, 100))},
                 {"slo": (990 + 95, 1000 + 100)},
                 id="events: good and total are the components' sums, whatever the weights"),
    pytest.param(CHECKOUT, {LOGIN.id: measured(slo=(990, 1000), w_5m=(10, 10)), PAY.id: measured(slo=(95, 100))},
                 {"slo": ((1 * sli(990, 1000) + 2 * sli(95, 100)), 3), "5m": (1.0, 1)},
                 id="a component without the window leaves both sums of that window"),
    pytest.param(CHECKOUT, {LOGIN.id: measured(w_1h=(0, 0)), PAY.id: measured(w_1h=(3, 4))},
                 {"1h": (2 * sli(3, 4), 2)},
                 id="a component with zero events in a window leaves both sums"),
    pytest.param(CHECKOUT, {LOGIN.id: measured(w_1h=(0, 0)), PAY.id: measured(w_1h=(0, 0))},
                 {"1h": (0, 0)},
                 id="a window where no component has events has none either"),
    pytest.param(CHECKOUT_EVENTS, {LOGIN.id: measured(w_1h=(0, 0)), PAY.id: measured(w_1h=(3, 4))},
                 {"1h": (3, 4)},
                 id="events: a component with zero events adds nothing"),
]


@pytest.mark.parametrize(("composite_slo", "components", "expected"), COMBINE)
def test_combine_is_the_weighted_mean_of_the_components_slis_or_their_summed_events(
    composite_slo: SLO, components: dict[str, Measurement], expected: dict[str, tuple[float, float]],
) -> None:
    got = composite.combine(composite_slo, components)
    assert sorted(got.counts) == sorted(expected)
    for w, (good, total) in expected.items():
        assert (got.counts[w].good, got.counts[w].total) == pytest.approx((good, total), rel=1e-15), w
    assert got.problems == ()


def test_a_nested_composite_is_combined_first_and_weighs_in_with_its_own_sli() -> None:
    inner = journey("auth", (LOGIN, 1), (SIGNUP, 1))
    outer = journey("site", (inner, 3), (PAY, 1))
    m = {LOGIN.id: measured(slo=(90, 100)), SIGNUP.id: measured(slo=(50, 100)), PAY.id: measured(slo=(99, 100))}
    order = composite.evaluation_order([outer, LOGIN, inner, SIGNUP, PAY])
    assert [s.id for s in order] == [inner.id, outer.id]
    for c in order:
        m[c.id] = composite.combine(c, m)
    whole = m[outer.id].counts["slo"]
    assert whole.good / whole.total == pytest.approx((3 * (0.9 + 0.5) / 2 + 1 * 0.99) / 4, rel=1e-15)


@pytest.mark.parametrize(("component", "named"), [
    pytest.param(measured(slo=(11, 10)), "component auth/login: window 30d: good events 11 exceed total 10",
                 id="good over total in a component is the composite's problem, naming the component and window"),
    pytest.param(measured(w_5m=(math.nan, 10)),
                 "component auth/login: window 5m: good=nan total=10 is not a finite count",
                 id="a NaN count is never averaged in"),
    pytest.param(Measurement(at=START, counts={}, problems=("latency threshold 0.3s is not an `le` bound",)),
                 "component auth/login: latency threshold 0.3s is not an `le` bound",
                 id="a component's own problem is the composite's"),
])
def test_a_component_with_unusable_data_makes_the_composite_an_error_naming_it(
    component: Measurement, named: str,
) -> None:
    got = composite.combine(CHECKOUT, {LOGIN.id: component, PAY.id: measured(slo=(95, 100))})
    assert got.counts == {}
    assert len(got.problems) == 1 and got.problems[0].startswith(named)
    status = budget.evaluate(CHECKOUT, got)
    assert status.state == "error" and status.error is not None and status.error.startswith(named)


def test_closure_adds_the_components_of_nested_composites_from_the_whole_spec() -> None:
    inner = journey("auth", (LOGIN, 1), (SIGNUP, 1))
    outer = journey("site", (inner, 3), (PAY, 1))
    every = {s.id: s for s in (LOGIN, SIGNUP, PAY, inner, outer, slo("unrelated"))}
    assert sorted(s.id for s in composite.closure([outer], every)) == sorted([outer.id, inner.id, LOGIN.id,
                                                                               SIGNUP.id, PAY.id])


# --- the engine -------------------------------------------------------------------------------------

LOGIN_RATIOS = Ratios(recent=0.05, window=0.0015)
PAY_RATIOS = Ratios(recent=0.0, window=0.0001)


@dataclass
class Asked:
    ids: list[str]

    def script(self, s: SLO, at: datetime) -> Answer:
        self.ids.append(s.id)
        return LOGIN_RATIOS if s.id == LOGIN.id else PAY_RATIOS


PATHS = [pytest.param(False, id="one SLO at a time"), pytest.param(True, id="batched")]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


def expected_rate(login_error: float, pay_error: float, objective: float = 99.9) -> float:
    """The composite's burn rate: its weighted error ratio (1 x login, 2 x payment) over the budget."""
    return ((1 * login_error + 2 * pay_error) / 3) / ((100 - objective) / 100)


@pytest.mark.parametrize("batched", PATHS)
def test_the_engine_combines_composites_after_measuring_and_never_sends_them_to_the_source(
    batched: bool, pool: ThreadPoolExecutor,
) -> None:
    asked = Asked([])
    source = BatchedSource(asked.script) if batched else ScriptedSource(asked.script)
    snap = engine.evaluate([CHECKOUT, LOGIN, PAY], source, START, executor=pool)
    assert sorted(asked.ids) == sorted([LOGIN.id, PAY.id])
    status = next(s for s in snap.statuses if s.slo.id == CHECKOUT.id)
    assert status.sli == pytest.approx(1 - (0.0015 + 2 * 0.0001) / 3, rel=1e-12)
    assert status.consumed == pytest.approx(expected_rate(0.0015, 0.0001), rel=1e-12)
    for w in BURN_RATE_WINDOWS:
        assert status.burn_rates[w] == pytest.approx(expected_rate(0.05, 0.0), rel=1e-12), w
    assert status.state == "burning"
    assert [(r.long_window, r.short_window) for r in status.burning] == [("1h", "5m"), ("6h", "30m"), ("3d", "6h")]
    assert set(status.components) == {LOGIN.id, PAY.id}
    assert status.components[LOGIN.id]["1h"] == EventCounts(good=100_000 * 0.95, total=100_000)


@pytest.mark.parametrize("batched", PATHS)
def test_a_shards_composite_measures_components_it_does_not_own_without_reporting_them(
    batched: bool, pool: ThreadPoolExecutor,
) -> None:
    asked = Asked([])
    source = BatchedSource(asked.script) if batched else ScriptedSource(asked.script)
    every = {s.id: s for s in (CHECKOUT, LOGIN, PAY, SIGNUP)}
    snap = engine.evaluate([CHECKOUT], source, START, executor=pool, spec=every)
    assert sorted(asked.ids) == sorted([LOGIN.id, PAY.id])
    assert [s.slo.id for s in snap.statuses] == [CHECKOUT.id]
    assert snap.statuses[0].sli == pytest.approx(1 - (0.0015 + 2 * 0.0001) / 3, rel=1e-12)


PREVIOUS = budget.evaluate(CHECKOUT, Measurement(at=START - timedelta(seconds=30), counts={
    SLO_WINDOW: EventCounts(good=99.0, total=100.0)}))


@pytest.mark.parametrize("batched", PATHS)
@pytest.mark.parametrize(("failure", "state", "message"), [
    pytest.param(SourceUnavailable("prometheus unreachable"), "stale", "component shop/payment: prometheus unreachable",
                 id="a component whose source is down makes the composite stale, with its last values"),
    pytest.param(QueryError("2 series for one window"), "error", "component shop/payment: 2 series for one window",
                 id="a component whose query is rejected makes the composite an error naming it"),
    pytest.param(KeyError("le"), "error", "internal error: ComponentError: component shop/payment: KeyError: 'le'",
                 id="a bug measuring a component makes the composite an error naming it"),
])
def test_a_failed_component_fails_the_composite_and_names_the_component(
    batched: bool, failure: Exception, state: str, message: str, pool: ThreadPoolExecutor,
) -> None:
    def script(s: SLO, at: datetime) -> Answer:
        return failure if s.id == PAY.id else LOGIN_RATIOS

    source = BatchedSource(script) if batched else ScriptedSource(script)
    snap = engine.evaluate([CHECKOUT, LOGIN, PAY], source, START, executor=pool, previous={CHECKOUT.id: PREVIOUS})
    by_id = {o.status.slo.id: o for o in snap.outcomes}
    got = by_id[CHECKOUT.id]
    assert (got.status.state, got.status.error) == (state, message)
    assert got.failure is not None and got.failure.__cause__ is failure
    if state == "stale":
        assert (got.status.sli, got.status.at) == (PREVIOUS.sli, PREVIOUS.at)
    assert by_id[LOGIN.id].status.state == "exhausted"  # 0.15% errors: 150% of its 0.1% budget


def test_a_failed_nested_composite_fails_the_composite_over_it(pool: ThreadPoolExecutor) -> None:
    inner = journey("auth", (LOGIN, 1), (SIGNUP, 1))
    outer = journey("site", (inner, 1), (PAY, 1))
    script = lambda s, at: SourceUnavailable("down") if s.id == SIGNUP.id else PAY_RATIOS  # noqa: E731
    snap = engine.evaluate([outer, inner, LOGIN, SIGNUP, PAY], ScriptedSource(script), START, executor=pool)
    got = {s.slo.id: (s.state, s.error) for s in snap.statuses}
    assert got[inner.id] == ("stale", "component auth/signup: down")
    assert got[outer.id] == ("stale", "component shop/auth: component auth/signup: down")


# --- the spec ---------------------------------------------------------------------------------------

AUTH = """\
apiVersion: slowatch/v1
service: auth
exclusions:
  - {start: "2026-11-20T02:00:00Z", end: "2026-11-20T04:00:00Z", reason: migration}
slos:
  - name: login
    objective: 99.9
    window: 30d
    sli: {ratio: {errors: 'r{code="5"}', total: r}}
  - name: slices
    objective: 99
    window: 30d
    sli: {throughput: {query: 'sum(rate(r[2m]))', minimum: 1}}
  - name: week
    objective: 99.9
    window: 7d
    sli: {ratio: {errors: 'r{code="5"}', total: r}}
"""


def shop(sli: str, extra: str = "") -> str:
    return f"""\
apiVersion: slowatch/v1
service: shop
exclusions:
  - {{start: "2026-11-21T02:00:00Z", end: "2026-11-21T04:00:00Z", reason: file-wide}}
slos:
  - name: pay
    objective: 99.9
    window: 30d
    sli: {{ratio: {{errors: 'p{{code="5"}}', total: p}}}}
  - name: journey
    objective: 99.5
    window: 30d
    sli: {sli}
{extra}"""


def load(tmp_path: Path, shop_text: str) -> list[SLO]:
    (tmp_path / "auth.yaml").write_text(AUTH)
    (tmp_path / "shop.yaml").write_text(shop_text)
    return load_specs([tmp_path])


SPEC_PROBLEMS = [
    pytest.param(shop("{composite: {components: [{slo: auth/login}]}}",
                      "    exclusions:\n      - {start: '2026-11-22T00:00:00Z', end: '2026-11-22T01:00:00Z', "
                      "reason: x}\n"),
                 "slos[1].exclusions", "a composite SLO takes its events from its components",
                 id="an exclusion on a composite is refused: its components apply their own"),
    pytest.param(shop("{composite: {components: [{slo: auth/login}]}}",
                      "    alerting: {regression: {baseline: 7d}}\n"),
                 "slos[1].alerting", "a composite has no query of its own",
                 id="a regression check on a composite is refused"),
    pytest.param(shop("{composite: {components: [{slo: auth/login}, {slo: auth/week}]}}"),
                 "slos[1].sli.composite.components[1].slo", "auth/week has a 7d window and this composite a 30d one",
                 id="a component with another window is refused"),
    pytest.param(shop("{composite: {weighting: events, components: [{slo: auth/login}, {slo: auth/slices}]}}"),
                 "slos[1].sli.composite.components[1].slo", "weighting: events sums the components' counts, and "
                 "auth/slices counts time slices where auth/login counts events",
                 id="weighting events over events and time slices is refused"),
    pytest.param(shop("{composite: {components: [{slo: auth/logn}]}}"),
                 "slos[1].sli.composite.components[0].slo", "no SLO auth/logn: did you mean auth/login?",
                 id="a component that does not exist is refused with the closest name"),
    pytest.param(shop("{composite: {components: [{slo: auth/login, weight: 0}]}}"),
                 "slos[1].sli.composite.components[0].weight", "",
                 id="a weight of 0 is refused"),
    pytest.param(shop("{composite: {components: [{slo: shop/journey}]}}"),
                 "slos[1].sli.composite.components[0].slo", "composites form a cycle: shop/journey -> shop/journey",
                 id="a composite containing itself is refused"),
]


@pytest.mark.parametrize(("text", "path", "message"), SPEC_PROBLEMS)
def test_the_spec_refuses_what_a_composite_cannot_mean(tmp_path: Path, text: str, path: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    found = [(p.file, p.path) for p in caught.value.problems if message in p.message]
    assert found == [(str(tmp_path / "shop.yaml"), path)], caught.value.problems


def test_a_files_exclusions_apply_to_its_slos_but_not_to_its_composites(tmp_path: Path) -> None:
    slos = {s.id: s for s in load(tmp_path, shop("{composite: {components: [{slo: auth/login}, {slo: shop/pay, "
                                                 "weight: 2}]}}"))}
    assert [e.reason for e in slos["shop/pay"].exclusions] == ["file-wide"]
    assert slos["shop/journey"].exclusions == ()
    assert slos["shop/journey"].sli == CompositeSLI(components=(Component("auth/login", 1.0),
                                                                Component("shop/pay", 2.0)))


def test_check_live_asks_nothing_about_a_composite(tmp_path: Path) -> None:
    asked: list[str] = []

    class Series:
        def series(self, selector: str, start: datetime, end: datetime) -> list[dict[str, str]]:
            asked.append(selector)
            return [{"__name__": selector}]

        def raw_samples(self, selector: str, start: datetime, end: datetime, *, context: str) -> list[
                tuple[dict[str, str], list[tuple[float, float]]]]:
            return []

    slos = [s for s in load(tmp_path, shop("{composite: {components: [{slo: auth/login}]}}"))
            if s.id in ("shop/journey", "auth/login")]
    assert live_problems(slos, Series(), START) == []
    assert sorted(asked) == ["r", 'r{code="5"}']


# --- /status, the page, the table ----------------------------------------------------------------


def test_status_shows_the_components_with_their_weights_and_own_sli_per_window(pool: ThreadPoolExecutor) -> None:
    snap = engine.evaluate([CHECKOUT, LOGIN, PAY], ScriptedSource(Asked([]).script), START, executor=pool)
    status = snap.statuses[0]
    doc = slo_document(status)
    assert doc["kind"] == "composite"
    window = {w: w for w in BURN_RATE_WINDOWS} | {"slo": "30d"}
    assert doc["composite"] == {"weighting": "weights", "components": [
        {"service": "auth", "slo": "login", "weight": 1.0,
         "sli": {shown: 1 - (0.05 if w != "slo" else 0.0015) for w, shown in window.items()}},
        {"service": "shop", "slo": "payment", "weight": 2.0,
         "sli": {shown: 1 - (0.0 if w != "slo" else 0.0001) for w, shown in window.items()}},
    ]}
    assert "composite" not in slo_document(snap.statuses[1])
    assert "shop/checkout: composite (weights) of auth/login x1 (99.850%), shop/payment x2 (99.990%)" in \
        table(START, snap.statuses)
    page = render_page(DaemonView(at=START, statuses=snap.statuses, ready=True), now=START)
    assert "1 \u00d7 auth/login \u00b7 99.850%" in page and "2 \u00d7 shop/payment \u00b7 99.990%" in page


# --- the composite's own alerts, through the Cycle ----------------------------------------------------

INTERVAL = timedelta(seconds=30)


def test_a_composites_own_page_and_budget_alert_fire_when_its_components_burn(pool: ThreadPoolExecutor) -> None:
    """A shard owning only the composite: its components are measured, never published or alerted."""
    holder = ViewHolder()
    registry, metrics = new_registry(holder, process=False)
    alertmanager = FakeAlertmanager()
    every = {s.id: s for s in (CHECKOUT, LOGIN, PAY)}
    cycle = Cycle([CHECKOUT], source=BatchedSource(Asked([]).script), sink=alertmanager, store=MemoryStore(),
                  publisher=holder, telemetry=metrics, executor=pool, clock=SteppedClock(), spec=lambda: every)
    cycle.run(START)
    # 1h page at 14.4x, 6h at 6x, 3d ticket at 1x: the composite burns at (0.05/3)/0.001 = 16.7x.
    assert expected_rate(0.05, 0.0) >= 14.4
    # Budget: (0.0015 + 2 x 0.0001)/3 / 0.001 = 56.7% consumed, past the 50% alert.
    assert expected_rate(0.0015, 0.0001) == pytest.approx(0.5667, abs=1e-4)
    fired = {(a.alertname, a.label("slo"), a.label("long_window")) for a in cycle.book.firing}
    assert fired == {(BUDGET_CONSUMED, "checkout", None), (BUDGET_BURN, "checkout", "1h"),
                     (BUDGET_BURN, "checkout", "3d"), (BUDGET_BURN, "checkout", "6h")}
    assert [s.slo.id for s in holder.get().statuses] == [CHECKOUT.id]
    assert {p.labels["slo"] for p in alertmanager.received()} == {"checkout"}
    # /metrics carries it as any SLO.
    key = {"service": "shop", "slo": "checkout"}
    assert registry.get_sample_value("slowatch_slo_sli_ratio", {**key, "window": "30d"}) == pytest.approx(
        1 - (0.0015 + 2 * 0.0001) / 3, rel=1e-12)
    assert registry.get_sample_value("slowatch_slo_burn_rate", {**key, "window": "1h"}) == pytest.approx(
        expected_rate(0.05, 0.0), rel=1e-12)
    assert registry.get_sample_value("slowatch_slo_sli_ratio", {"service": "auth", "slo": "login", "window": "30d"}) \
        is None


def test_the_planner_refuses_a_composite_so_none_ever_reaches_a_query() -> None:
    with pytest.raises(ValueError, match="shop/checkout is a composite"):
        group_slos([LOGIN, CHECKOUT])


def test_a_composite_from_another_format_with_exclusions_is_refused_at_its_exclusions_field() -> None:
    from slowatch.core.model import Exclusion
    from slowatch.spec import _composite_problems

    excluded = replace(CHECKOUT, exclusions=(Exclusion(reason="migration", start=START, end=START + INTERVAL),))
    where = {s.id: ("shop.yaml", f"slos[{i}].name") for i, s in enumerate((LOGIN, PAY, excluded))}
    got = [(p.file, p.path) for p in _composite_problems([LOGIN, PAY, excluded], where)]
    assert got == [("shop.yaml", "slos[2].exclusions")]
