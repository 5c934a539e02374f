"""The ``/status`` document (INTERFACES.md) and the terminal table, from statuses.

Values are raw floats (JSON carries them at full precision); only the table rounds, for reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from slowatch.core import conventions
from slowatch.core.budget import BudgetStatus
from slowatch.core.windows import BURN_RATE_WINDOWS
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
    }


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
    errors = [s for s in statuses if s.error]
    for s in errors:
        lines.append(f"{s.slo.id}: {s.state}: {s.error}")
    return "\n".join(lines)
