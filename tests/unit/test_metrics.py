"""slowatch's own metrics: the SLO collector reads the latest view, the self metrics count."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

import slowatch
from slowatch.adapters.metrics import STATES, SelfMetrics, SLOCollector, exposition, new_registry
from slowatch.adapters.urls import scrub
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate, failed
from slowatch.core.model import SLO, CalendarWindow, RatioSLI, RollingWindow
from slowatch.core.regress import Row
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import DaemonView, ViewHolder

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def slo(name: str, objective: float = 99.9, service: str = "auth", month: bool = False) -> SLO:
    window = CalendarWindow("month") if month else RollingWindow(timedelta(days=30))
    return SLO(service, name, objective, window, RatioSLI(total="t", errors="e"), labels=(("team", "identity"),))


def status(s: SLO, consumed: float | None, rates: Mapping[str, float] | None = None) -> BudgetStatus:
    """``s`` with ``consumed`` of its budget gone in its window and burn rate ``rates`` per window."""
    total = 1_000_000.0
    rates = dict.fromkeys(BURN_RATE_WINDOWS, 0.5) if rates is None else rates
    counts = {w: EventCounts(total - total * r * s.budget, total) for w, r in rates.items()}
    if consumed is not None:
        counts[SLO_WINDOW] = EventCounts(total - total * consumed * s.budget, total)
    return evaluate(s, Measurement(AT, counts))


LOGIN = status(slo("login"), 0.25, {"5m": 0.0, "30m": 0.1, "1h": 0.3, "2h": 0.2, "6h": 0.4, "1d": 0.7, "3d": 0.6})
LATENCY = status(slo("latency", 99), 0.8, dict.fromkeys(BURN_RATE_WINDOWS, 20.0))
CHECKOUT = status(slo("checkout", service="payments", month=True), 1.5)
REFUNDS = status(slo("refunds", service="payments"), None, {})
BROKEN = failed(slo("broken", service="search"), AT, "error", "bad_data: parse error")
STALE = failed(slo("suggest", service="search"), AT, "stale", "unreachable", LOGIN)


def collected(*statuses: BudgetStatus, firing: tuple[Mapping[str, str], ...] = ()) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SLOCollector(ViewHolder(DaemonView(at=AT, statuses=statuses, firing=firing, ready=True))))
    return registry


def labels(s: BudgetStatus, **extra: str) -> dict[str, str]:
    """An SLO series' labels: the spec's own labels (INTERFACES.md copies them onto metrics)."""
    return {**dict(s.slo.labels), "service": s.slo.service, "slo": s.slo.name, **extra}


@pytest.mark.parametrize(
    ("s", "metric", "extra", "expected"),
    [
        pytest.param(LOGIN, "slowatch_slo_objective_ratio", {}, LOGIN.slo.objective, id="the objective is a fraction"),
        pytest.param(LOGIN, "slowatch_slo_sli_ratio", {"window": "30d"}, LOGIN.sli,
                     id="the sli is labelled with the slo window's name"),
        pytest.param(CHECKOUT, "slowatch_slo_sli_ratio", {"window": "month"}, CHECKOUT.sli,
                     id="a calendar window is named by its unit"),
        pytest.param(LOGIN, "slowatch_slo_error_budget_consumed_ratio", {}, LOGIN.consumed,
                     id="consumed budget equals the status"),
        pytest.param(LOGIN, "slowatch_slo_error_budget_remaining_ratio", {}, LOGIN.remaining,
                     id="remaining budget equals the status"),
        pytest.param(CHECKOUT, "slowatch_slo_error_budget_remaining_ratio", {}, CHECKOUT.remaining,
                     id="an overspent budget goes negative"),
        pytest.param(LOGIN, "slowatch_slo_burn_rate", {"window": "1h"}, LOGIN.burn_rates["1h"],
                     id="the 1h burn rate equals the status"),
        pytest.param(LOGIN, "slowatch_slo_burn_rate", {"window": "30d"}, LOGIN.burn_rates["30d"],
                     id="the burn rate over the whole window is exported too"),
        pytest.param(LATENCY, "slowatch_slo_exhaustion_timestamp_seconds", {},
                     LATENCY.exhaustion_at.timestamp() if LATENCY.exhaustion_at else None,
                     id="exhaustion is a unix timestamp"),
        pytest.param(REFUNDS, "slowatch_slo_error_budget_consumed_ratio", {}, 0.0,
                     id="no data leaves the budget untouched"),
        pytest.param(REFUNDS, "slowatch_slo_sli_ratio", {"window": "30d"}, None, id="no data has no sli series"),
        pytest.param(REFUNDS, "slowatch_slo_burn_rate", {"window": "1h"}, None,
                     id="a window without events has no burn rate series"),
        pytest.param(BROKEN, "slowatch_slo_error_budget_remaining_ratio", {}, None,
                     id="an slo in error exports no budget rather than an untouched one"),
        pytest.param(BROKEN, "slowatch_slo_objective_ratio", {}, BROKEN.slo.objective,
                     id="an slo in error keeps its objective"),
        pytest.param(STALE, "slowatch_slo_error_budget_consumed_ratio", {}, LOGIN.consumed,
                     id="a stale slo keeps its last values"),
        pytest.param(CHECKOUT, "slowatch_slo_exhaustion_timestamp_seconds", {}, None,
                     id="an exhausted budget has no exhaustion time"),
    ],
)
def test_collector_values_equal_the_status(
    s: BudgetStatus, metric: str, extra: dict[str, str], expected: float | None
) -> None:
    registry = collected(LOGIN, LATENCY, CHECKOUT, REFUNDS, BROKEN, STALE)
    assert registry.get_sample_value(metric, labels(s, **extra)) == expected


@pytest.mark.parametrize(
    "s",
    [pytest.param(s, id=f"{s.state} is 1 and every other state 0") for s in
     (LOGIN, LATENCY, CHECKOUT, REFUNDS, BROKEN, STALE)],
)
def test_exactly_the_current_state_is_one(s: BudgetStatus) -> None:
    registry = collected(s)
    values = {state: registry.get_sample_value("slowatch_slo_state", labels(s, state=state)) for state in STATES}
    assert values == {state: 1.0 if state == s.state else 0.0 for state in STATES}


def test_the_sample_statuses_cover_every_state() -> None:
    assert {s.state for s in (LOGIN, LATENCY, CHECKOUT, REFUNDS, BROKEN, STALE)} == set(STATES)


def test_series_of_a_removed_slo_disappear() -> None:
    holder = ViewHolder(DaemonView(at=AT, statuses=(LOGIN, CHECKOUT), ready=True))
    registry, _ = new_registry(holder, process=False)
    assert registry.get_sample_value("slowatch_slo_objective_ratio", labels(CHECKOUT)) == CHECKOUT.slo.objective

    holder.set(DaemonView(at=AT, statuses=(LOGIN,), ready=True))

    names = {s.name for fam in registry.collect() for s in fam.samples if s.labels.get("slo") == "checkout"}
    assert names == set()
    assert registry.get_sample_value("slowatch_slo_objective_ratio", labels(LOGIN)) == LOGIN.slo.objective


def test_spec_labels_are_copied_onto_every_slo_series() -> None:
    registry = collected(LOGIN)
    samples = [s for fam in registry.collect() for s in fam.samples]
    assert samples and all(s.labels.get("team") == "identity" for s in samples)
    assert {k for s in samples for k in s.labels} == {"service", "slo", "window", "state", "team"}


def test_a_spec_label_never_overrides_slowatchs_own() -> None:
    clash = SLO("auth", "clash", 99.9, RollingWindow(timedelta(days=30)), RatioSLI(total="t", errors="e"),
                labels=(("service", "other"), ("window", "x")))
    registry = collected(status(clash, 0.1))
    assert registry.get_sample_value("slowatch_slo_objective_ratio", {"service": "auth", "slo": "clash"}) == 0.999


@pytest.mark.parametrize(
    ("firing", "expected"),
    [
        pytest.param(
            ({"alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "latency",
              "long_window": "1h", "short_window": "5m", "team": "identity"},),
            {("auth", "latency", "SLOErrorBudgetBurn", "page"): 1.0},
            id="a firing alert is one series with service slo alertname and severity only",
        ),
        pytest.param(
            ({"alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "latency",
              "long_window": "1h", "short_window": "5m"},
             {"alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "latency",
              "long_window": "6h", "short_window": "30m"}),
            {("auth", "latency", "SLOErrorBudgetBurn", "page"): 1.0},
            id="two page alerts on different windows make one series, not a duplicate sample",
        ),
        pytest.param(
            ({"alertname": "SLOWatchEvaluationFailing", "severity": "ticket"},),
            {("", "", "SLOWatchEvaluationFailing", "ticket"): 1.0},
            id="the daemon's own alert has empty service and slo",
        ),
        pytest.param((), {}, id="nothing firing exports no series"),
    ],
)
def test_firing_alerts(firing: tuple[Mapping[str, str], ...], expected: dict[tuple[str, ...], float]) -> None:
    registry = collected(LATENCY, firing=firing)
    got = {
        (s.labels["service"], s.labels["slo"], s.labels["alertname"], s.labels["severity"]): s.value
        for fam in registry.collect() if fam.name == "slowatch_slo_alert_firing" for s in fam.samples
    }
    assert got == expected


def test_the_collector_describes_its_names_so_a_clash_is_refused() -> None:
    registry = collected(LOGIN)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(SLOCollector(ViewHolder()))


def test_an_empty_view_exports_no_slo_series() -> None:
    registry = CollectorRegistry()
    registry.register(SLOCollector(ViewHolder()))
    assert [s for fam in registry.collect() for s in fam.samples] == []


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        pytest.param(None, {*BURN_RATE_WINDOWS, "30d"}, id="unset, every burn-rate window and the slo window"),
        pytest.param(frozenset({"5m", "1h", "6h", "30d"}), {"5m", "1h", "6h", "30d"},
                     id="a list keeps only the windows it names"),
        pytest.param(frozenset({"1h", "28d"}), {"1h"}, id="a window no slo has exports nothing more"),
        pytest.param(frozenset(), set(), id="an empty set exports no burn rate"),
    ],
)
def test_metrics_windows_limit_the_burn_rates_exported(windows: frozenset[str] | None, expected: set[str]) -> None:
    registry, _ = new_registry(ViewHolder(DaemonView(at=AT, statuses=(LOGIN,), ready=True)), process=False,
                               windows=windows)
    got = {s.labels["window"] for fam in registry.collect() if fam.name == "slowatch_slo_burn_rate"
           for s in fam.samples}
    assert got == expected
    # The sli keeps its window: the setting is about burn rates only.
    assert registry.get_sample_value("slowatch_slo_sli_ratio", labels(LOGIN, window="30d")) == LOGIN.sli


# An SLO whose names and labels need every escape, and a URL with a password in a label.
ODD = status(SLO("we\\ird \"svc\"", "slo\nline%s", 99.5, RollingWindow(timedelta(days=7)),
                 RatioSLI(total="t", errors="e"),
                 labels=(("team", "ïdentity %d"), ("owner", "https://bob:s3cret@wiki.example/x"),
                         ("a_first", "sorted before service"))), 0.5)
REGRESSED = {LOGIN.slo.id: (Row("p99_latency", 1.0, 1.25, 25.0, True, "ticket", "lower"),
                            Row("missing", None, None, None, False, "none", "lower", "no data"))}
FIRING = ({"alertname": "SLOErrorBudgetBurn", "severity": "page", "service": "auth", "slo": "latency"},
          {"alertname": "SLOWatchEvaluationFailing", "severity": "ticket"})


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param("", id="no accept header gets the text format 0.0.4"),
        pytest.param("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                     id="prometheus 2's scrape header gets openmetrics 1.0.0"),
        pytest.param("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
                     "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4", id="prometheus 3's utf-8 names"),
        pytest.param("text/plain;version=1.0.0;escaping=dots", id="the text format with dots escaping"),
        pytest.param("application/openmetrics-text", id="openmetrics without a version"),
    ],
)
@pytest.mark.parametrize("windows", [None, frozenset({"1h", "30d"})], ids=["all windows", "two windows"])
def test_the_exposition_is_byte_for_byte_prometheus_clients(accept: str, windows: frozenset[str] | None) -> None:
    view = DaemonView(at=AT, statuses=(LOGIN, LATENCY, CHECKOUT, REFUNDS, BROKEN, STALE, ODD), firing=FIRING,
                      regressions=REGRESSED, ready=True)
    registry, m = new_registry(ViewHolder(view), process=False, windows=windows)
    m.add_queries(3, 1, 99)
    encoder, content_type = choose_encoder(accept)
    expected = scrub(encoder(registry).decode("utf-8")).encode("utf-8")  # every sample through prometheus_client

    body, got_type = exposition(registry, accept)
    zipped, _ = exposition(registry, accept, gzipped=True)

    assert (body, got_type) == (expected, content_type)
    assert gzip.decompress(zipped) == expected
    assert b"s3cret" not in body


def test_the_exposition_follows_the_view_and_the_counters_between_views() -> None:
    holder = ViewHolder(DaemonView(at=AT, statuses=(LOGIN,), ready=True))
    registry, m = new_registry(holder, process=False)
    first, _ = exposition(registry, "")
    m.add_queries(2)  # the daemon's own counters move within a view: never cached
    holder.set(DaemonView(at=AT, statuses=(CHECKOUT,), ready=True))
    second, _ = exposition(registry, "", gzipped=True)

    assert b'slo="login"' in first and b"slowatch_queries_total 0.0" in first
    text = gzip.decompress(second)
    assert b'slo="login"' not in text and b'slo="checkout"' in text and b"slowatch_queries_total 2.0" in text


def test_a_published_view_is_rendered_before_the_next_scrape_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    from slowatch.adapters import metrics as module

    holder = ViewHolder(DaemonView(at=AT, statuses=(LOGIN,), ready=True))
    registry, _ = new_registry(holder, process=False)
    exposition(registry, "", gzipped=True)  # a scraper that asks for gzip text
    publisher = module.Prerendering(holder, registry)
    publisher.publish(DaemonView(at=AT, statuses=(CHECKOUT,), ready=True))
    assert publisher.last is not None
    publisher.last.join(10)

    def refuse(self: object) -> str:
        raise AssertionError("the scrape rendered the view: it was not ready")

    monkeypatch.setattr(module._Rendering, "render", refuse)
    body, _ = exposition(registry, "", gzipped=True)
    assert b'slo="checkout"' in gzip.decompress(body) and publisher.current() is holder.get()


# --- self metrics -----------------------------------------------------------------------------------


@pytest.fixture
def metrics() -> tuple[CollectorRegistry, SelfMetrics]:
    registry = CollectorRegistry()
    return registry, SelfMetrics(registry)


def test_cycles_are_counted_by_result_and_timed(metrics: tuple[CollectorRegistry, SelfMetrics]) -> None:
    registry, m = metrics
    assert registry.get_sample_value("slowatch_evaluations_total", {"result": "failure"}) == 0.0
    m.observe_cycle(0.3, True, AT)
    m.observe_cycle(2.0, False, AT + timedelta(seconds=30))
    m.observe_cycle(0.7, True, AT + timedelta(seconds=60))
    get = registry.get_sample_value
    assert get("slowatch_evaluations_total", {"result": "success"}) == 2.0
    assert get("slowatch_evaluations_total", {"result": "failure"}) == 1.0
    assert get("slowatch_evaluation_duration_seconds_count") == 3.0
    assert get("slowatch_evaluation_duration_seconds_sum") == pytest.approx(3.0)
    assert get("slowatch_evaluation_duration_seconds_bucket", {"le": "0.5"}) == 1.0
    # The failed cycle at +30 s does not move the last success.
    assert get("slowatch_last_successful_evaluation_timestamp_seconds") == (AT + timedelta(seconds=60)).timestamp()


@pytest.mark.parametrize(
    ("call", "metric", "labels_", "expected"),
    [
        pytest.param(lambda m: m.add_queries(7, 2, 140), "slowatch_queries_total", {}, 7.0, id="queries add up"),
        pytest.param(lambda m: m.add_queries(7, 2, 140), "slowatch_query_errors_total", {}, 2.0,
                     id="query errors add up"),
        pytest.param(lambda m: m.add_queries(7, 2, 140), "slowatch_samples_read_total", {}, 140.0,
                     id="samples read add up"),
        pytest.param(lambda m: m.delivery("http://am:9093", 3, 1), "slowatch_alertmanager_notifications_total",
                     {"url": "http://am:9093"}, 3.0, id="notifications are counted per alertmanager"),
        pytest.param(lambda m: m.delivery("http://am:9093", 3, 1), "slowatch_alertmanager_errors_total",
                     {"url": "http://am:9093"}, 1.0, id="delivery errors are counted per alertmanager"),
        pytest.param(lambda m: m.delivery("https://bob:s3cret@am.example:9093/x", 1),
                     "slowatch_alertmanager_notifications_total", {"url": "https://am.example:9093/x"}, 1.0,
                     id="credentials in an alertmanager url never reach a label"),
        pytest.param(lambda m: m.spec_reload(True, AT), "slowatch_spec_reload_success", {}, 1.0,
                     id="a good reload sets the success gauge"),
        pytest.param(lambda m: m.spec_reload(True, AT), "slowatch_spec_last_reload_success_timestamp_seconds", {},
                     AT.timestamp(), id="a good reload records its time"),
        pytest.param(lambda m: (m.spec_reload(True, AT), m.spec_reload(False, AT + timedelta(minutes=1))),
                     "slowatch_spec_reload_success", {}, 0.0, id="a failed reload clears the success gauge"),
        pytest.param(lambda m: (m.spec_reload(True, AT), m.spec_reload(False, AT + timedelta(minutes=1))),
                     "slowatch_spec_last_reload_success_timestamp_seconds", {}, AT.timestamp(),
                     id="a failed reload keeps the time of the last good one"),
        pytest.param(lambda m: None, "slowatch_build_info", {"version": slowatch.__version__}, 1.0,
                     id="build info carries the version"),
    ],
)
def test_self_metrics(
    metrics: tuple[CollectorRegistry, SelfMetrics], call: Callable[[SelfMetrics], object], metric: str,
    labels_: dict[str, str], expected: float,
) -> None:
    registry, m = metrics
    call(m)
    assert registry.get_sample_value(metric, labels_) == expected


def test_registries_are_independent_and_the_global_one_is_untouched() -> None:
    from prometheus_client import REGISTRY

    holder = ViewHolder(DaemonView(at=AT, statuses=(LOGIN,), ready=True))
    first, m1 = new_registry(holder)
    second, _ = new_registry(holder)  # a second daemon (or test) in the process: no clash
    m1.add_queries(5)
    assert first.get_sample_value("slowatch_queries_total") == 5.0
    assert second.get_sample_value("slowatch_queries_total") == 0.0
    assert REGISTRY.get_sample_value("slowatch_queries_total") is None
    assert first.get_sample_value("process_start_time_seconds") is not None
