"""The ``/status`` document (INTERFACES.md) and the terminal table, from statuses.

Values are raw floats (JSON carries them at full precision); only the table rounds, for reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from slowatch.core import conventions
from slowatch.core.budget import SLO_WINDOW, BudgetStatus
from slowatch.core.model import CompositeSLI
from slowatch.core.windows import BURN_RATE_WINDOWS, format_duration
from slowatch.view import AlertView


def rfc3339(t: datetime | None) -> str | None:
    """``conventions.rfc3339``, with None (a time /status leaves empty) passed through."""
    return None if t is None else conventions.rfc3339(t)


"""An alert as /status shows it: alertname, severity, since (and labels the engine adds)."""


def slo_document(status: BudgetStatus, alerts: Sequence[AlertView] = ()) -> dict[str, Any]:
    slo = status.slo
    has_values = status.state != "error" and status.sli is not None
    return {
        "service": slo.service,
        "slo": slo.name,
        "kind": slo.kind,
        "objective": slo.objective,
        "window": slo.window.name,
        "state": status.state,
        "sli": status.sli,
        "error_budget": {
            "total": status.budget_total,
            "consumed": status.consumed if has_values else (0.0 if status.state == "no_data" else None),
            "remaining": status.remaining if has_values else (1.0 if status.state == "no_data" else None),
        },
        "burn_rates": dict(status.burn_rates),
        "exhaustion_at": rfc3339(status.exhaustion_at),
        "alerts": [dict(a) for a in alerts],
        "evaluated_at": rfc3339(status.at),
        "error": status.error,
        "warnings": list(status.warnings),
        # INTERFACES.md's planned name: the active exclusion and the excluded time, in one object.
        "exclusions": {"active": exclusion_document(status), "excluded_seconds": dict(status.excluded_seconds)},
        **({"composite": composite_document(status)} if isinstance(slo.sli, CompositeSLI) else {}),
    }


def exclusion_document(status: BudgetStatus) -> dict[str, Any] | None:
    """The exclusion covering the evaluation instant: its reason and current occurrence."""
    active = status.exclusion
    if active is None:
        return None
    return {"reason": active.exclusion.reason, "start": rfc3339(active.start), "end": rfc3339(active.end)}


def _excluded_line(s: BudgetStatus) -> str:
    """One table line for an SLO with excluded time: the active exclusion, the excluded time per window."""
    active = exclusion_document(s)
    now = f"excluded now ({active['reason']}, {active['start']} .. {active['end']})" if active else "not excluded now"
    spans = ", ".join(f"{w}: {format_duration(timedelta(seconds=round(v)))}"
                      for w, v in s.excluded_seconds.items() if v > 0)
    return f"{s.slo.id}: {now}; excluded time: {spans or 'none'}"


def composite_document(status: BudgetStatus) -> dict[str, Any]:
    """A composite's weighting and components: each with its weight and its own SLI per window
    (keyed as ``burn_rates``; null without events, or when the component could not be measured)."""
    slo = status.slo
    assert isinstance(slo.sli, CompositeSLI)
    windows = {w: w for w in BURN_RATE_WINDOWS} | {SLO_WINDOW: slo.window.name}
    components = []
    for c in slo.sli.components:
        counts = status.components.get(c.slo, {})
        service, _, name = c.slo.partition("/")
        components.append({
            "service": service, "slo": name, "weight": c.weight,
            "sli": {shown: (e.good / e.total if (e := counts.get(w)) is not None and e.total > 0 else None)
                    for w, shown in windows.items()},
        })
    return {"weighting": slo.sli.weighting, "components": components}


def status_document(
    at: datetime | None,
    statuses: Iterable[BudgetStatus],
    alerts: Mapping[str, Sequence[AlertView]] | None = None,
) -> dict[str, Any]:
    alerts = alerts or {}
    return {
        "evaluated_at": rfc3339(at),
        "slos": [slo_document(s, alerts.get(s.slo.id, ())) for s in statuses],
    }


def _pct(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v * 100:.{digits}f}%"


def _rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(at: datetime | None, statuses: Sequence[BudgetStatus]) -> str:
    """A plain, aligned table for a terminal (rounded for reading; JSON has the raw values)."""
    head = ["SERVICE", "SLO", "OBJECTIVE", "WINDOW", "STATE", "SLI", "BUDGET LEFT",
            *[f"{w}" for w in BURN_RATE_WINDOWS], "EXHAUSTED AT"]
    rows = [head]
    for s in statuses:
        has = s.sli is not None and s.state != "error"
        rows.append([
            s.slo.service, s.slo.name, f"{s.slo.objective_percent:g}%", s.slo.window.name, s.state,
            _pct(s.sli), _pct(s.remaining, 1) if has else "-",
            *[_rate(s.burn_rates.get(w)) for w in BURN_RATE_WINDOWS],
            rfc3339(s.exhaustion_at) or "-",
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"evaluated at {rfc3339(at)}   (burn rates: x budget rate per window)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for s in statuses:
        if isinstance(s.slo.sli, CompositeSLI):
            parts = composite_document(s)["components"]
            shown = ", ".join(f"{p['service']}/{p['slo']} x{p['weight']:g} ({_pct(p['sli'][s.slo.window.name])})"
                              for p in parts)
            lines.append(f"{s.slo.id}: composite ({s.slo.sli.weighting}) of {shown}")
    lines += [_excluded_line(s) for s in statuses if s.slo.exclusions]
    errors = [s for s in statuses if s.error]
    for s in errors:
        lines.append(f"{s.slo.id}: {s.state}: {s.error}")
    return "\n".join(lines)
