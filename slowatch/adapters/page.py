"""The status page at ``GET /``: one self-contained HTML document, rendered on the server.

No JavaScript and no external assets (inline CSS, inline SVG charts), so it works behind any proxy
and on a locked-down network; a meta refresh keeps it current. The markup is a Jinja2 template
(``templates/status.html``) with autoescaping on: spec files, alerts and errors are not trusted
HTML. This module only decides what the page says: states, numbers as text, chart geometry.

Written to be read at a glance at 3 a.m.: the verdict first (banner and tab title), problems
linked from it, then one table with a coloured state and budget bar per SLO.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import jinja2

import slowatch
from slowatch.adapters.render import composite_document, rfc3339
from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import State
from slowatch.core.model import alert_rows, nominal_length
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import AlertView, DaemonView

REFRESH_SECONDS = 30

# Budget remaining at or above these fractions is green, then yellow; below is red. 50% matches
# the default "budget consumed" ticket alert, so the bar turns yellow when that ticket opens.
GREEN_FROM = 0.5
YELLOW_FROM = 0.25

# Worst first: the order of the verdict and of the "needs attention" list.
_SEVERITY: dict[State, int] = {"exhausted": 0, "burning": 1, "error": 2, "stale": 3, "no_data": 4, "ok": 5}
_ATTENTION: tuple[State, ...] = ("exhausted", "burning", "error", "stale")

CHART_W, CHART_H, CHART_PAD = 116, 32, 2.0

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("slowatch.adapters", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a misspelt name fails the render instead of showing nothing
)


def render_page(view: DaemonView, *, now: datetime | None = None,
                stale_after: timedelta = timedelta(minutes=5)) -> str:
    """The whole page for ``view``. ``now`` (the request time) adds the age of the evaluation
    and flags it when older than ``stale_after``: a daemon that stopped evaluating must not
    look healthy."""
    statuses = list(view.statuses)
    counts = {state: sum(1 for s in statuses if s.state == state) for state in _SEVERITY}
    attention = sorted((s for s in statuses if s.state in _ATTENTION), key=lambda s: _SEVERITY[s.state])
    n = len(statuses)
    all_well = f"All {n} SLO{'s' if n != 1 else ''} within budget"
    if counts["no_data"]:
        all_well += f" ({counts['no_data']} without data)"
    return _TEMPLATES.get_template("status.html").render(
        title=f"({len(attention)}) slowatch status" if attention else "slowatch status",
        refresh=REFRESH_SECONDS,
        version=slowatch.__version__,
        evaluated=_evaluated(view, now, stale_after),
        ready=view.ready,
        counts=[(state, counts[state]) for state in _SEVERITY if counts[state]],
        all_well=all_well,
        attention=[
            {"state": s.state, "anchor": _anchor(s), "service": s.slo.service, "name": s.slo.name,
             "detail": _attention_detail(s)}
            for s in attention
        ],
        attention_summary=", ".join(f"{counts[s]} {_label(s)}" for s in _ATTENTION if counts[s]),
        spec_error=view.spec_error,
        services=_services(view, statuses),
    )


# --- what the page says --------------------------------------------------------------------------


def _evaluated(view: DaemonView, now: datetime | None, stale_after: timedelta) -> dict[str, Any] | None:
    if view.at is None:
        return None
    age = None if now is None else now - view.at
    return {
        "iso": rfc3339(view.at), "clock": _clock(view.at),
        "age": None if age is None else _ago(age), "old": age is not None and age > stale_after,
    }


def _attention_detail(s: BudgetStatus) -> str:
    if s.error:
        return _shorten(s.error, 140)
    if s.state in ("burning", "exhausted"):
        return f"budget left {_pct(s.remaining, 1)}"
    return ""


def _services(view: DaemonView, statuses: Sequence[BudgetStatus]) -> list[dict[str, Any]]:
    by_service: dict[str, list[BudgetStatus]] = defaultdict(list)
    for s in statuses:
        by_service[s.slo.service].append(s)
    out = []
    for service in sorted(by_service):
        rows = by_service[service]
        out.append({
            "name": service,
            "worst": min(rows, key=lambda s: _SEVERITY[s.state]).state,
            "count": f"{len(rows)} SLO{'s' if len(rows) != 1 else ''}",
            "labels": rows[0].slo.labels,
            "rows": [_row(view, s) for s in rows],
        })
    return out


def _row(view: DaemonView, s: BudgetStatus) -> dict[str, Any]:
    slo = s.slo
    return {
        "anchor": _anchor(s), "state": s.state, "id": slo.id, "name": slo.name, "description": slo.description,
        "kind": slo.kind, "window": slo.window.name,
        "error": _shorten(s.error, 300) if s.error else "",
        # stale keeps the last good values, with their own instant
        "values_from": _clock(s.at, seconds=False) if s.state == "stale" else "",
        "sli": _sli(s), "objective": f"{slo.objective_percent:g}",
        "budget": _budget(s),
        "exhausted": s.state == "exhausted",
        "exhaustion": _exhaustion(view, s),
        "rates": _burn_rates(s),
        "alerts": _alerts(view.alerts.get(slo.id, ())),
        "chart": _chart(view.history.get(slo.id, ())),
        "components": _components(s),
        **_excluded(s),
    }


def _excluded(s: BudgetStatus) -> dict[str, Any]:
    """The active exclusion, and the time excluded from the SLO window (per window in the title)."""
    active = s.exclusion
    whole = s.excluded_seconds.get(s.slo.window.name, 0.0)
    return {
        "exclusion": None if active is None else {
            "reason": _shorten(active.exclusion.reason, 120),
            "since": _clock(active.start, seconds=False), "until": _clock(active.end, seconds=False),
        },
        "excluded": _span(timedelta(seconds=whole)) if whole > 0 else "",
        "excluded_title": "; ".join(f"{w}: {_span(timedelta(seconds=v))}"
                                    for w, v in s.excluded_seconds.items() if v > 0),
    }


def _components(s: BudgetStatus) -> list[dict[str, str]]:
    """A composite's components, each with its weight, its SLI over the SLO window, and its SLI
    per window in the title (the /status document's ``composite``)."""
    if s.slo.kind != "composite":
        return []
    window = s.slo.window.name
    out = []
    for c in composite_document(s)["components"]:
        slis: dict[str, float | None] = c["sli"]
        whole = slis[window]
        out.append({
            "id": f"{c['service']}/{c['slo']}", "weight": f"{c['weight']:g}",
            "sli": "\u2014" if whole is None else _pct(whole, 3),
            "title": "; ".join(f"{w}: {'no events' if v is None else _pct(v, 4)}" for w, v in slis.items()),
        })
    return out


def _label(state: str) -> str:
    return state.replace("_", " ")


def _anchor(s: BudgetStatus) -> str:
    return f"slo-{s.slo.service}-{s.slo.name}"


def _has_values(s: BudgetStatus) -> bool:
    return s.state != "error" and s.sli is not None


def _sli(s: BudgetStatus) -> str:
    if not _has_values(s) or s.sli is None:
        return "—"
    # One digit more than the objective has, so 99.95 vs 99.948 is visible and 95 vs 94.7 too.
    text = f"{s.slo.objective_percent:g}"
    digits = min(5, max(2, len(text.partition(".")[2]) + 1))
    return _pct(s.sli, digits)


def _budget_class(remaining: float) -> str:
    if remaining >= GREEN_FROM:
        return "good"
    return "warn" if remaining >= YELLOW_FROM else "bad"


def _budget(s: BudgetStatus) -> dict[str, str] | str | None:
    """The budget bar; "no_data" for an SLO without events, None without values."""
    if s.state == "no_data":
        return "no_data"
    if not _has_values(s):
        return None
    return {
        "cls": _budget_class(s.remaining), "left": _pct(s.remaining, 1), "consumed": _pct(s.consumed, 2),
        "width": f"{max(0.0, min(1.0, s.remaining)) * 100:.1f}",
    }


def _burn_rates(s: BudgetStatus) -> list[dict[str, str]] | None:
    if not any(s.burn_rates.get(w) is not None for w in BURN_RATE_WINDOWS):
        return None
    hot: set[str] = set()  # the windows of the multi-window alerts that fire now
    for row in s.burning:
        hot.update((row.long_window, row.short_window))
    thresholds = _thresholds(s)
    cells = []
    for window in BURN_RATE_WINDOWS:
        rate = s.burn_rates.get(window)
        # Red: part of a firing multi-window alert; amber: spending faster than the budget allows.
        cls = "hot" if window in hot else "warm" if rate is not None and rate >= 1 else ""
        threshold = thresholds.get(window)
        title = f"{window}: {'no events' if rate is None else f'{rate:.4g}x'}"
        if threshold is not None:
            title += f"; alert at {threshold:.3g}x"
        cells.append({"cls": cls, "title": title, "window": window, "text": _rate(rate)})
    return cells


def _thresholds(s: BudgetStatus) -> dict[str, float]:
    # The factor each alert window fires at, for the tooltip (the lowest when a window is in two rows).
    length = nominal_length(s.slo.window)
    out: dict[str, float] = {}
    if s.slo.alerting.burn_rate:
        for row in alert_rows(s.slo):
            f = row.factor(length)
            for w in (row.long_window, row.short_window):
                out[w] = min(out.get(w, math.inf), f)
    return out


def _exhaustion(view: DaemonView, s: BudgetStatus) -> dict[str, Any] | None:
    """Time to exhaustion, under the budget bar: the two read together."""
    if s.exhaustion_at is None or not _has_values(s):
        return None
    left = s.exhaustion_at - (view.at or s.at)
    return {
        "soon": left < timedelta(days=1), "iso": rfc3339(s.exhaustion_at), "clock": _clock(s.exhaustion_at),
        "left": _span(left),
    }


def _alerts(alerts: Iterable[AlertView]) -> list[dict[str, str]]:
    chips = []
    for a in alerts:
        labels = _alert_labels(a)
        severity = str(a.get("severity") or labels.get("severity") or "")
        since = a.get("since")
        detail = _alert_detail(labels)
        chips.append({
            "name": str(a.get("alertname") or labels.get("alertname") or "alert"),
            "severity": severity or "?",
            "sev_cls": severity if severity in ("page", "ticket") else "other",
            "title": ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity")),
            "sub": " · ".join(x for x in (detail, f"since {_since(since)}" if since else "") if x),
        })
    return chips


def _alert_labels(a: AlertView) -> dict[str, str]:
    """The alert's labels: its ``labels`` mapping (core.alerting.views) and top-level strings."""
    nested = a.get("labels")
    out = {k: str(v) for k, v in a.items() if isinstance(v, str) and k != "since"}
    if isinstance(nested, Mapping):
        out.update({str(k): str(v) for k, v in nested.items()})
    return out


def _alert_detail(labels: Mapping[str, str]) -> str:
    if labels.get("long_window") and labels.get("short_window"):
        return f"{labels['long_window']}/{labels['short_window']}"
    if labels.get("threshold"):
        return f"\u2265{labels['threshold']}%"
    return ""


def _since(value: object) -> str:
    if isinstance(value, str):
        try:
            return _clock(datetime.fromisoformat(value), seconds=False)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return _clock(value, seconds=False)
    return str(value)


def _chart(points: Sequence[tuple[datetime, float]]) -> dict[str, Any] | None:
    """An inline SVG line of budget remaining over time (oldest first), with the zero line."""
    pts = [(t, v) for t, v in points if math.isfinite(v)]
    if len(pts) < 2:
        return None
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0).total_seconds() or 1.0
    values = [v for _, v in pts]
    lo, hi = min(0.0, *values), max(1.0, *values)
    w, h, pad = CHART_W, CHART_H, CHART_PAD

    def x(t: datetime) -> float:
        return pad + (t - t0).total_seconds() / span * (w - 2 * pad)

    def y(v: float) -> float:
        return pad + (hi - v) / (hi - lo) * (h - 2 * pad)

    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
    return {
        "cls": _budget_class(values[-1]), "w": w, "h": h, "pad": pad,
        "label": f"Budget left over the last {_span(t1 - t0)}: {_pct(values[0], 1)} to {_pct(values[-1], 1)}",
        "zero": f"{y(0.0):.1f}", "line": line, "area": f"{x(t0):.1f},{y(lo):.1f} {line} {x(t1):.1f},{y(lo):.1f}",
        "last_x": f"{x(t1):.1f}", "last_y": f"{y(values[-1]):.1f}",
        "caption": f"{_span(t1 - t0)}: {_pct(values[0], 0)} → {_pct(values[-1], 0)}",
    }


# --- formatting ----------------------------------------------------------------------------------


def _pct(v: float, digits: int) -> str:
    return f"{v * 100:.{digits}f}%".replace("-", "\u2212")  # a real minus sign, as wide as the digits


def _rate(v: float | None) -> str:
    if v is None:
        return "\u2013"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _span(d: timedelta) -> str:
    """A duration for humans, two units at most: "3d 4h", "5h 12m", "14m", "40s"."""
    seconds = int(max(0.0, d.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{secs}s"


def _ago(d: timedelta) -> str:
    return "just now" if d.total_seconds() < 1 else f"{_span(d)} ago"


def _clock(t: datetime, *, seconds: bool = True) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%b %d %H:%M UTC")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
