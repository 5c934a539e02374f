"""The alert state machine: what fires, what resolves, what freezes, and what each alert says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slowatch.core import alerting, rules
from slowatch.core.alerting import (
    BUDGET_BURN,
    BUDGET_CONSUMED,
    EVALUATION_FAILING,
    NO_DATA,
    AlertBook,
    AlertChange,
    forget,
    step,
    views,
)
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate, failed
from slowatch.core.conventions import State
from slowatch.core.model import SLO, AlertPolicy, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS, SRE_WORKBOOK_TABLE_5_8

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
PAGE_FAST, PAGE_SLOW, TICKET_SLOW = SRE_WORKBOOK_TABLE_5_8


def make_slo(name: str = "login", *, labels: dict[str, str] | None = None, **policy: Any) -> SLO:
    return SLO(
        service="auth", name=name, objective_percent=99.95, window=RollingWindow(timedelta(days=30)),
        sli=RatioSLI(total="t", errors="e"), labels=tuple(sorted((labels or {"team": "identity"}).items())),
        alerting=AlertPolicy(**policy),
    )


SLO_A = make_slo()


def status(
    slo: SLO = SLO_A, *, state: State = "ok", consumed: float = 0.0, burning: Sequence[Any] = (),
    at: datetime = T0, rate: float = 1.0,
) -> BudgetStatus:
    return BudgetStatus(
        slo=slo, at=at, state=state, sli=1 - consumed * slo.budget, budget_total=slo.budget, consumed=consumed,
        burn_rates=dict.fromkeys(BURN_RATE_WINDOWS, rate), exhaustion_at=None, burning=tuple(burning),
    )


def run(
    book: AlertBook, *statuses: BudgetStatus, now: datetime = T0, failing: bool = False,
    known: set[str] | None = None,
) -> tuple[AlertBook, list[AlertChange]]:
    ids = {s.slo.id for s in statuses} if known is None else known
    return step(book, statuses, now, evaluation_failing=failing, known_slo_ids=ids)


def firing(book: AlertBook) -> set[tuple[str, ...]]:
    """Firing alerts as (alertname, severity, threshold or windows) for short assertions."""
    out: set[tuple[str, ...]] = set()
    for a in book.firing:
        windows = f"{a.label('long_window')}/{a.label('short_window')}" if a.label("long_window") else None
        extra = a.label("threshold") or windows
        out.add((a.alertname, a.severity, extra) if extra else (a.alertname, a.severity))
    return out


# --- budget consumed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thresholds", "consumed", "expected"),
    [
        pytest.param((50.0,), 0.5, {"50"}, id="fires at exactly 50% consumed"),
        pytest.param((50.0,), 0.4999999, set(), id="does not fire at 49.99999% consumed"),
        pytest.param((57.0,), 0.57, {"57"}, id="fires at exactly 57% although 0.57 * 100 is below 57 in floats"),
        pytest.param((50.0, 75.0, 100.0), 0.8, {"50", "75"}, id="thresholds 50, 75, 100 fire independently at 80%"),
        pytest.param((50.0, 75.0, 100.0), 0.74, {"50"}, id="only the 50% threshold fires at 74%"),
        pytest.param((50.0, 75.0, 100.0), 3.0, {"50", "75", "100"}, id="every threshold fires when exhausted"),
        pytest.param((12.5,), 0.2, {"12.5"}, id="a fractional threshold keeps its decimals in the label"),
        pytest.param((), 5.0, set(), id="no thresholds, no budget alerts"),
    ],
)
def test_budget_consumed_fires_per_threshold(
    thresholds: tuple[float, ...], consumed: float, expected: set[str]
) -> None:
    slo = make_slo(budget_consumed=thresholds)
    book, changes = run(AlertBook(), status(slo, consumed=consumed, state="exhausted" if consumed >= 1 else "ok"))
    assert {a.label("threshold") for a in book.firing} == expected
    assert [c.kind for c in changes] == ["fired"] * len(expected)


def test_budget_consumed_labels_carry_the_slo_and_its_labels() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6))
    (alert,) = book.firing
    assert dict(alert.labels) == {
        "alertname": BUDGET_CONSUMED, "service": "auth", "slo": "login", "severity": "ticket",
        "slowatch_source": "daemon",
        "threshold": "50", "team": "identity",
    }
    assert alert.slo_id == "auth/login"
    assert alert.starts_at == T0


def test_spec_labels_never_override_slowatchs_own() -> None:
    slo = make_slo(labels={"severity": "critical", "slo": "other", "team": "identity"})
    book, _ = run(AlertBook(), status(slo, consumed=0.6))
    (alert,) = book.firing
    assert alert.severity == "ticket"
    assert alert.label("slo") == "login"
    assert alert.label("team") == "identity"


def test_budget_alert_resolves_once_consumption_drops_below_the_threshold() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6))
    later = T0 + 10 * MINUTE
    book, changes = run(book, status(consumed=0.49, at=later), now=later)
    assert book.firing == ()
    assert [(c.kind, c.alert.ends_at) for c in changes] == [("resolved", later)]
    assert book.resolved[0].starts_at == T0


# --- burn rate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("burning", "expected"),
    [
        pytest.param((PAGE_FAST,), {(BUDGET_BURN, "page", "1h/5m")}, id="fast burn pages on 1h and 5m"),
        pytest.param((PAGE_SLOW,), {(BUDGET_BURN, "page", "6h/30m")}, id="slow burn pages on 6h and 30m"),
        pytest.param((TICKET_SLOW,), {(BUDGET_BURN, "ticket", "3d/6h")}, id="steady burn opens a ticket on 3d and 6h"),
        pytest.param(
            SRE_WORKBOOK_TABLE_5_8,
            {(BUDGET_BURN, "page", "1h/5m"), (BUDGET_BURN, "page", "6h/30m"), (BUDGET_BURN, "ticket", "3d/6h")},
            id="every burning row is its own alert",
        ),
        pytest.param((), set(), id="no burning row, no burn alert"),
    ],
)
def test_burn_rate_alerts_follow_the_burning_rows(burning: tuple[Any, ...], expected: set[tuple[str, ...]]) -> None:
    book, _ = run(AlertBook(), status(burning=burning, state="burning" if burning else "ok", rate=20.0))
    assert firing(book) == expected


def test_burn_alert_labels() -> None:
    book, _ = run(AlertBook(), status(burning=(PAGE_FAST,), state="burning", rate=20.0))
    (alert,) = book.firing
    assert dict(alert.labels) == {
        "alertname": BUDGET_BURN, "service": "auth", "slo": "login", "severity": "page", "slowatch_source": "daemon",
        "long_window": "1h", "short_window": "5m", "team": "identity",
    }


def test_burn_alert_resolves_when_its_row_stops_burning() -> None:
    book, _ = run(AlertBook(), status(burning=(PAGE_FAST, TICKET_SLOW), state="burning", rate=20.0))
    book, changes = run(book, status(burning=(TICKET_SLOW,), state="burning"), now=T0 + MINUTE)
    assert firing(book) == {(BUDGET_BURN, "ticket", "3d/6h")}
    assert [(c.kind, c.alert.label("long_window")) for c in changes] == [("resolved", "1h")]


def test_burn_rate_disabled_by_policy_fires_nothing() -> None:
    slo = make_slo(burn_rate=False)
    book, _ = run(AlertBook(), status(slo, burning=(PAGE_FAST,), state="burning"))
    assert book.firing == ()


def test_burn_alerts_from_real_counts() -> None:
    """End to end from event counts: 2% errors on a 99.95% SLO burns at 40x everywhere."""
    counts = {w: EventCounts(good=98.0, total=100.0) for w in BURN_RATE_WINDOWS}
    counts[SLO_WINDOW] = EventCounts(good=999_990.0, total=1_000_000.0)
    s = evaluate(SLO_A, Measurement(at=T0, counts=counts))
    book, _ = run(AlertBook(), s)
    assert firing(book) == {
        (BUDGET_BURN, "page", "1h/5m"), (BUDGET_BURN, "page", "6h/30m"), (BUDGET_BURN, "ticket", "3d/6h"),
    }


# --- freezing ---------------------------------------------------------------------------------


def _busy_book() -> AlertBook:
    book, _ = run(AlertBook(), status(consumed=0.6, burning=(PAGE_FAST,), state="burning", rate=20.0))
    assert firing(book) == {(BUDGET_CONSUMED, "ticket", "50"), (BUDGET_BURN, "page", "1h/5m")}
    return book


@pytest.mark.parametrize(
    "state",
    [
        pytest.param("stale", id="a stale SLO neither fires nor resolves"),
        pytest.param("error", id="an SLO in error neither fires nor resolves"),
        pytest.param("no_data", id="an SLO without data (policy ignore) neither fires nor resolves"),
    ],
)
@pytest.mark.parametrize(
    ("consumed", "burning"),
    [
        pytest.param(0.0, (), id="numbers that would resolve everything"),
        pytest.param(1.5, SRE_WORKBOOK_TABLE_5_8, id="numbers that would fire more"),
    ],
)
def test_frozen_states_leave_alerts_exactly_as_they_are(
    state: State, consumed: float, burning: tuple[Any, ...]
) -> None:
    book = _busy_book()
    later = T0 + 5 * MINUTE
    after, changes = run(book, status(state=state, consumed=consumed, burning=burning, at=later), now=later)
    assert changes == []
    assert after == book


def test_an_slo_missing_from_the_statuses_but_still_known_is_frozen() -> None:
    book = _busy_book()
    after, changes = run(book, now=T0 + MINUTE, known={SLO_A.id})
    assert changes == []
    assert after == book


def test_a_removed_slo_has_its_alerts_resolved() -> None:
    book = _busy_book()
    later = T0 + MINUTE
    after, changes = run(book, now=later, known=set())
    assert after.firing == ()
    assert {c.kind for c in changes} == {"resolved"}
    assert {(a.alertname, a.ends_at) for a in after.resolved} == {(BUDGET_CONSUMED, later), (BUDGET_BURN, later)}


def test_no_data_with_policy_alert_fires_a_no_data_ticket_and_freezes_the_rest() -> None:
    slo = make_slo(no_data="alert")
    book, _ = run(AlertBook(), status(slo, consumed=0.6))
    book, changes = run(book, status(slo, state="no_data"), now=T0 + MINUTE)
    assert firing(book) == {(BUDGET_CONSUMED, "ticket", "50"), (NO_DATA, "ticket")}
    assert [(c.kind, c.alert.alertname) for c in changes] == [("fired", NO_DATA)]

    book, changes = run(book, status(slo, consumed=0.1), now=T0 + 2 * MINUTE)
    assert book.firing == ()
    assert sorted(c.alert.alertname for c in changes) == [BUDGET_CONSUMED, NO_DATA]


# --- lifetimes --------------------------------------------------------------------------------


def test_starts_at_is_kept_across_steps_while_annotations_follow_the_numbers() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6))
    first = book.firing[0]
    for minutes in range(1, 4):
        now = T0 + minutes * MINUTE
        book, changes = run(book, status(consumed=0.6 + minutes / 100, at=now), now=now)
        assert changes == []
    (alert,) = book.firing
    assert alert.starts_at == T0
    assert alert.id == first.id
    assert "63.0%" in dict(alert.annotations)["summary"]


def test_a_re_fire_after_a_resolve_is_a_new_alert_with_a_new_starts_at() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6))
    book, _ = run(book, status(consumed=0.1), now=T0 + MINUTE)
    refire = T0 + 2 * MINUTE
    book, changes = run(book, status(consumed=0.7), now=refire)
    assert [c.kind for c in changes] == ["fired"]
    assert book.firing[0].starts_at == refire
    # The old episode waits for delivery, under its own id.
    (old,) = book.resolved
    assert (old.starts_at, old.ends_at) == (T0, T0 + MINUTE)
    assert old.id != book.firing[0].id


def test_forget_drops_only_the_delivered_resolves() -> None:
    book = _busy_book()
    book, _ = run(book, status(consumed=0.0), now=T0 + MINUTE)
    burn = next(a for a in book.resolved if a.alertname == BUDGET_BURN)
    book = forget(book, {burn.id})
    assert [a.alertname for a in book.resolved] == [BUDGET_CONSUMED]


def test_evaluation_failing_fires_without_slo_labels_and_resolves() -> None:
    book, changes = run(AlertBook(), failing=True)
    (alert,) = book.firing
    assert dict(alert.labels) == {"alertname": EVALUATION_FAILING, "severity": "ticket", "slowatch_source": "daemon"}
    assert alert.slo_id is None
    book, changes = run(book, failing=True, now=T0 + MINUTE)
    assert changes == []
    book, changes = run(book, failing=False, now=T0 + 2 * MINUTE)
    assert book.firing == ()
    assert [(c.kind, c.alert.alertname) for c in changes] == [("resolved", EVALUATION_FAILING)]


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(AlertBook(), now=datetime(2026, 1, 1))


# --- annotations and views --------------------------------------------------------------------


def test_annotations_carry_the_numbers_and_links() -> None:
    slo = make_slo(runbook_url="https://runbooks.example/auth")
    s = replace(
        status(slo, consumed=0.6, burning=(PAGE_FAST,), state="burning"),
        sli=0.99971234, burn_rates={**dict.fromkeys(BURN_RATE_WINDOWS, 1.0), "1h": 15.234, "5m": 20.5},
        exhaustion_at=T0 + timedelta(hours=3),
    )
    book, _ = step(
        AlertBook(), [s], T0, evaluation_failing=False, known_slo_ids={slo.id},
        dashboard_url=lambda o: f"https://grafana.example/d/{o.service}-{o.name}",
    )
    burn = next(a for a in book.firing if a.alertname == BUDGET_BURN)
    notes = dict(burn.annotations)
    assert notes["runbook_url"] == "https://runbooks.example/auth"
    assert notes["dashboard_url"] == "https://grafana.example/d/auth-login"
    assert "15.23x as fast as sustainable over 1h" in notes["summary"]
    for text in ("15.23x over 1h", "20.50x over 5m", "14.4x", "SLI 99.9712%", "objective of 99.95%",
                 "consumed 60.00%", "remaining 40.00%", "2026-11-27T15:00:00Z"):
        assert text in notes["description"], text
    consumed = dict(next(a for a in book.firing if a.alertname == BUDGET_CONSUMED).annotations)
    assert consumed["summary"] == "auth/login has consumed 60.0% of its 30d error budget (threshold 50%)"


def test_no_dashboard_annotation_without_a_dashboard() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6))
    assert {k for k, _ in book.firing[0].annotations} == {"summary", "description"}


def test_views_give_the_status_alerts_per_slo() -> None:
    book, _ = run(AlertBook(), status(consumed=0.6), failing=True)
    assert views(book) == {
        "auth/login": [{
            "alertname": BUDGET_CONSUMED, "severity": "ticket", "since": "2026-11-27T12:00:00Z",
            "labels": {"alertname": BUDGET_CONSUMED, "service": "auth", "slo": "login", "severity": "ticket",
                       "slowatch_source": "daemon",
                       "threshold": "50", "team": "identity"},
        }],
    }
    assert {a["alertname"] for a in alerting.firing_labels(book)} == {BUDGET_CONSUMED, EVALUATION_FAILING}


# --- properties -------------------------------------------------------------------------------

_previous = st.builds(
    lambda consumed, rows, rate, minutes: status(
        consumed=consumed, burning=rows, rate=rate, at=T0 + minutes * MINUTE,
        state="exhausted" if consumed >= 1 else "burning" if rows else "ok",
    ),
    st.floats(0, 5, allow_nan=False),
    st.lists(st.sampled_from(SRE_WORKBOOK_TABLE_5_8), unique=True).map(tuple),
    st.floats(0, 100, allow_nan=False),
    st.integers(0, 10_000),
)


@settings(max_examples=200)
@given(previous=st.lists(_previous, max_size=20), steps=st.lists(st.integers(1, 600), max_size=20))
def test_any_sequence_of_stale_statuses_changes_no_alert(previous: list[BudgetStatus], steps: list[int]) -> None:
    book, _ = run(AlertBook(), status(consumed=0.8, burning=(PAGE_FAST,), state="burning"), failing=True)
    now = T0
    for i, minutes in enumerate(steps):
        now += minutes * MINUTE
        prev = previous[i] if i < len(previous) else None
        stale = failed(SLO_A, now, "stale", "connection refused", prev)
        after, changes = run(book, stale, now=now, failing=True)
        assert changes == []
        assert after == book


# --- one text for the daemon's alerts and the generated rules -----------------------------------


@pytest.mark.parametrize(
    ("alertname", "number", "template"),
    [
        pytest.param(BUDGET_CONSUMED, "60.0%", rules.VALUE_PERCENT, id="budget consumed: the same summary"),
        pytest.param(BUDGET_BURN, "2.00x", rules.VALUE_RATE + "x", id="burn rate: the same summary"),
    ],
)
def test_the_daemon_and_the_generated_rule_say_the_same_with_their_own_value(
    alertname: str, number: str, template: str
) -> None:
    s = status(consumed=0.6, burning=(PAGE_FAST,), state="burning", rate=2.0)
    book, _ = run(AlertBook(), s)
    daemon = next(dict(a.annotations) for a in book.firing if a.alertname == alertname)
    group = rules.alerts_group(SLO_A)
    assert group is not None
    rule = next(
        dict(r.annotations) for r in group.rules
        if isinstance(r, rules.AlertingRule) and r.alert == alertname
        and (alertname != BUDGET_BURN or dict(r.labels)["long_window"] == PAGE_FAST.long_window)
    )
    assert rule["summary"].replace(template, number) == daemon["summary"]


def test_the_burn_description_differs_only_in_what_a_rule_cannot_know() -> None:
    s = status(consumed=0.6, burning=(PAGE_FAST,), state="burning", rate=2.0)
    book, _ = run(AlertBook(), s)
    daemon = next(dict(a.annotations)["description"] for a in book.firing if a.alertname == BUDGET_BURN)
    assert daemon.startswith(
        "Burn rate 2.00x over 1h and 2.00x over 5m, both at or above 14.4x: at that rate 2% of the 30d "
        "error budget is gone within 1h. SLI "
    )
    rule = rules.burn_rate_alert(SLO_A, PAGE_FAST)
    assert dict(rule.annotations)["description"] == (
        f"Burn rate {rules.VALUE_RATE}x over 1h, confirmed over 5m, both at or above 14.4x: at that rate 2% of "
        "the 30d error budget is gone within 1h. Objective 99.95% over 30d."
    )
