"""The status page at ``GET /``: one self-contained HTML document, rendered on the server.

No JavaScript and no external assets (inline CSS, inline SVG charts), so it works behind any proxy
and on a locked-down network; a meta refresh keeps it current. Every string that comes from a
spec, an alert or an error goes through ``html.escape``: spec files are not trusted HTML.

Written to be read at a glance at 3 a.m.: the verdict first (banner and tab title), problems
linked from it, then one table with a coloured state and budget bar per SLO.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import slowatch
from slowatch.adapters.render import AlertView, rfc3339
from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import State
from slowatch.core.model import alert_rows, nominal_length
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import DaemonView

REFRESH_SECONDS = 30

# Budget remaining at or above these fractions is green, then yellow; below is red. 50% matches
# the default "budget consumed" ticket alert, so the bar turns yellow when that ticket opens.
GREEN_FROM = 0.5
YELLOW_FROM = 0.25

# Worst first: the order of the verdict and of the "needs attention" list.
_SEVERITY: dict[State, int] = {"exhausted": 0, "burning": 1, "error": 2, "stale": 3, "no_data": 4, "ok": 5}
_ATTENTION: tuple[State, ...] = ("exhausted", "burning", "error", "stale")

CHART_W, CHART_H, CHART_PAD = 116, 32, 2.0


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_page(view: DaemonView, *, now: datetime | None = None,
                stale_after: timedelta = timedelta(minutes=5)) -> str:
    """The whole page for ``view``. ``now`` (the request time) adds the age of the evaluation
    and flags it when older than ``stale_after``: a daemon that stopped evaluating must not
    look healthy."""
    statuses = list(view.statuses)
    counts = {state: sum(1 for s in statuses if s.state == state) for state in _SEVERITY}
    attention = sorted((s for s in statuses if s.state in _ATTENTION), key=lambda s: _SEVERITY[s.state])
    title = "slowatch status"
    if attention:
        title = f"({len(attention)}) {title}"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        _header(view, now, stale_after),
        _verdict(view, statuses, counts, attention),
        _spec_error(view.spec_error),
        _table(view, statuses),
        _footer(),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


# --- page sections -------------------------------------------------------------------------------


def _header(view: DaemonView, now: datetime | None, stale_after: timedelta) -> str:
    if view.at is None:
        when = '<span class="muted">not evaluated yet</span>'
    else:
        when = f'evaluated <time datetime="{e(rfc3339(view.at))}">{e(_clock(view.at))}</time>'
        if now is not None:
            age = now - view.at
            cls = "age old" if age > stale_after else "age"
            hint = " (is the daemon evaluating?)" if age > stale_after else ""
            when += f' <span class="{cls}">{e(_ago(age))}{e(hint)}</span>'
    return (
        '<header><div class="brand">slowatch <span class="muted">service-level objectives</span></div>'
        f'<div class="when">{when}</div></header>'
    )


def _verdict(view: DaemonView, statuses: Sequence[BudgetStatus], counts: Mapping[State, int],
             attention: Sequence[BudgetStatus]) -> str:
    if not view.ready:
        return '<section class="verdict v-wait"><strong>Waiting for the first evaluation.</strong></section>'
    if not statuses:
        return '<section class="verdict v-wait"><strong>No SLOs are configured.</strong></section>'
    chips = "".join(
        f'<span class="count">{_badge(state)} {counts[state]}</span>' for state in _SEVERITY if counts[state]
    )
    if not attention:
        n = len(statuses)
        text = f"All {n} SLO{'s' if n != 1 else ''} within budget"
        if counts["no_data"]:
            text += f" ({counts['no_data']} without data)"
        return f'<section class="verdict v-ok"><strong>{e(text)}</strong><div class="counts">{chips}</div></section>'
    worst = attention[0].state
    summary = ", ".join(f"{counts[s]} {_label(s)}" for s in _ATTENTION if counts[s])
    links = "".join(
        f'<li><a href="#{e(_anchor(s))}">{_badge(s.state)} <b>{e(s.slo.service)}</b> / {e(s.slo.name)}</a>'
        f"{_attention_detail(s)}</li>"
        for s in attention
    )
    return (
        f'<section class="verdict v-{e(worst)}"><strong>Needs attention: {e(summary)}</strong>'
        f'<div class="counts">{chips}</div><ul class="attention">{links}</ul></section>'
    )


def _attention_detail(s: BudgetStatus) -> str:
    if s.error:
        return f' <span class="muted">{e(_shorten(s.error, 140))}</span>'
    if s.state in ("burning", "exhausted"):
        return f' <span class="muted">budget left {e(_pct(s.remaining, 1))}</span>'
    return ""


def _spec_error(error: str | None) -> str:
    if not error:
        return ""
    return (
        '<section class="verdict v-error"><strong>Spec reload failed; the previous spec is still in use.</strong>'
        f"<pre>{e(error)}</pre></section>"
    )


def _table(view: DaemonView, statuses: Sequence[BudgetStatus]) -> str:
    if not statuses:
        return ""
    by_service: dict[str, list[BudgetStatus]] = defaultdict(list)
    for s in statuses:
        by_service[s.slo.service].append(s)
    head = (
        "<thead><tr><th>SLO</th><th>State</th><th class=num>SLI / objective</th><th>Budget left</th>"
        "<th>Burn rate <span class=muted>(x budget)</span></th><th>Firing alerts</th>"
        "<th>Budget trend</th></tr></thead>"
    )
    bodies = []
    for service in sorted(by_service):
        rows = by_service[service]
        worst = min(rows, key=lambda s: _SEVERITY[s.state]).state
        labels = "".join(f'<span class="tag">{e(k)}={e(v)}</span>' for k, v in rows[0].slo.labels)
        bodies.append(
            f'<tbody><tr class="service"><th colspan="7">{_dot(worst)}{e(service)}'
            f' <span class="muted">{len(rows)} SLO{"s" if len(rows) != 1 else ""}</span>{labels}</th></tr>'
            + "".join(_row(view, s) for s in rows)
            + "</tbody>"
        )
    return f'<main><div class="scroll"><table>{head}{"".join(bodies)}</table></div></main>'


def _row(view: DaemonView, s: BudgetStatus) -> str:
    slo = s.slo
    desc = f'<div class="desc">{e(slo.description)}</div>' if slo.description else ""
    error = f'<div class="err">{e(_shorten(s.error, 300))}</div>' if s.error else ""
    if s.state == "stale":  # stale keeps the last good values, with their own instant
        error += f'<div class="muted small">values from {e(_clock(s.at, seconds=False))}</div>'
    cells = [
        f'<td class="name"><div class="slo">{e(slo.name)}</div>{desc}'
        f'<div class="muted small">{e(slo.kind)} · {e(slo.window.name)} window</div></td>',
        f'<td class="state">{_badge(s.state)}{error}</td>',
        f'<td class="num"><div class="sli">{e(_sli(s))}</div>'
        f'<div class="muted small">objective {e(f"{slo.objective_percent:g}")}%</div></td>',
        f"<td>{_budget(s)}{_exhaustion(view, s)}</td>",
        f"<td>{_burn_rates(s)}</td>",
        f"<td>{_alerts(view.alerts.get(slo.id, ()))}</td>",
        f"<td>{_chart(view.history.get(slo.id, ()), s)}</td>",
    ]
    return f'<tr id="{e(_anchor(s))}" class="slo-row st-{e(s.state)}" data-slo="{e(slo.id)}">{"".join(cells)}</tr>'


def _footer() -> str:
    # Relative links, so the page also works behind a proxy that serves it under a path prefix.
    return (
        f'<footer>slowatch {e(slowatch.__version__)} · refreshes every {REFRESH_SECONDS} s · '
        '<a href="status">status JSON</a> · <a href="metrics">metrics</a> · '
        '<a href="openapi.json">OpenAPI</a></footer>'
    )


# --- cells ---------------------------------------------------------------------------------------


def _label(state: str) -> str:
    return state.replace("_", " ")


def _badge(state: str) -> str:
    return f'<span class="badge b-{e(state)}" data-state="{e(state)}">{e(_label(state))}</span>'


def _dot(state: str) -> str:
    return f'<span class="dot b-{e(state)}" title="{e(_label(state))}"></span>'


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


def _budget(s: BudgetStatus) -> str:
    if s.state == "no_data":
        return '<span class="muted">no events</span>'
    if not _has_values(s):
        return '<span class="muted">—</span>'
    remaining = s.remaining
    cls = _budget_class(remaining)
    width = max(0.0, min(1.0, remaining)) * 100
    return (
        f'<div class="budget {cls}"><span class="bval">{e(_pct(remaining, 1))}</span>'
        f'<div class="bar" title="consumed {e(_pct(s.consumed, 2))} of the {e(s.slo.window.name)} budget">'
        f'<div class="fill" style="width:{width:.1f}%"></div></div></div>'
    )


def _burn_rates(s: BudgetStatus) -> str:
    if not any(s.burn_rates.get(w) is not None for w in BURN_RATE_WINDOWS):
        return '<span class="muted">—</span>'
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
        cells.append(
            f'<span class="br {cls}" title="{e(title)}"><i>{e(window)}</i>{e(_rate(rate))}</span>'
        )
    return f'<div class="rates">{"".join(cells)}</div>'


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


def _exhaustion(view: DaemonView, s: BudgetStatus) -> str:
    """Time to exhaustion, under the budget bar: the two read together."""
    if s.state == "exhausted":
        return '<div class="exh bad-text">budget exhausted</div>'
    if s.exhaustion_at is None or not _has_values(s):
        return ""
    left = s.exhaustion_at - (view.at or s.at)
    cls = "exh bad-text" if left < timedelta(days=1) else "exh"
    return (
        f'<div class="{cls}">runs out in <time datetime="{e(rfc3339(s.exhaustion_at))}" '
        f'title="{e(_clock(s.exhaustion_at))} at the current 1h burn rate">{e(_span(left))}</time></div>'
    )


def _alerts(alerts: Iterable[AlertView]) -> str:
    chips = []
    for a in alerts:
        labels = _alert_labels(a)
        name = str(a.get("alertname") or labels.get("alertname") or "alert")
        severity = str(a.get("severity") or labels.get("severity") or "")
        detail = _alert_detail(labels)
        since = a.get("since")
        title = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))
        sev_cls = severity if severity in ("page", "ticket") else "other"
        sub = " · ".join(x for x in (detail, f"since {_since(since)}" if since else "") if x)
        chips.append(
            f'<div class="alert" title="{e(title)}"><span class="sev s-{e(sev_cls)}">{e(severity or "?")}</span>'
            f'{e(name)}<div class="muted small">{e(sub)}</div></div>'
        )
    return "".join(chips) or '<span class="muted">none</span>'


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


def _chart(points: Sequence[tuple[datetime, float]], s: BudgetStatus) -> str:
    """An inline SVG line of budget remaining over time (oldest first), with the zero line."""
    pts = [(t, v) for t, v in points if math.isfinite(v)]
    if len(pts) < 2:
        return '<span class="muted small">no history yet</span>'
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
    area = f"{x(t0):.1f},{y(lo):.1f} {line} {x(t1):.1f},{y(lo):.1f}"
    cls = _budget_class(values[-1])
    label = f"Budget left over the last {_span(t1 - t0)}: {_pct(values[0], 1)} to {_pct(values[-1], 1)}"
    zero = y(0.0)
    return (
        f'<svg class="chart {cls}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{e(label)}"><title>{e(label)}</title>'
        f'<line class="zero" x1="{pad}" x2="{w - pad}" y1="{zero:.1f}" y2="{zero:.1f}"/>'
        f'<polygon class="area" points="{area}"/><polyline class="line" points="{line}"/>'
        f'<circle class="last" cx="{x(t1):.1f}" cy="{y(values[-1]):.1f}" r="2.2"/></svg>'
        f'<div class="muted small">{e(_span(t1 - t0))}: {e(_pct(values[0], 0))} → {e(_pct(values[-1], 0))}</div>'
    )


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


_CSS = """
:root{--bg:#f6f8fa;--card:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--track:#e6eaef;
--ok:#1a7f37;--burning:#bc4c00;--exhausted:#cf222e;--error:#8250df;--stale:#9a6700;--no_data:#6e7781;
--good:#2da44e;--warn:#d4a72c;--bad:#cf222e;--hot-bg:#ffebe9;--warm:#9a6700;--on-badge:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--card:#151b23;--fg:#e6edf3;--muted:#9198a1;
--line:#30363d;--track:#262c36;--ok:#3fb950;--burning:#f0883e;--exhausted:#f85149;--error:#ab7df8;
--stale:#d29922;--no_data:#8b949e;--good:#3fb950;--warn:#d29922;--bad:#f85149;--hot-bg:#4c1d1d;--warm:#d29922;
--on-badge:#0d1117}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif}
a{color:inherit}
header{display:flex;justify-content:space-between;align-items:baseline;gap:1em;flex-wrap:wrap;
padding:14px 24px;background:var(--card);border-bottom:1px solid var(--line)}
.brand{font-size:20px;font-weight:700;letter-spacing:-.01em}
.brand .muted{font-size:14px;font-weight:400;margin-left:.4em}
.when{font-variant-numeric:tabular-nums}
.age{color:var(--muted);margin-left:.4em}.age.old{color:var(--exhausted);font-weight:600}
.verdict{margin:16px 24px 0;padding:12px 16px;border-radius:8px;background:var(--card);
border:1px solid var(--line);border-left:6px solid var(--no_data)}
.verdict strong{font-size:17px}
.v-ok{border-left-color:var(--ok)}.v-burning{border-left-color:var(--burning)}
.v-exhausted{border-left-color:var(--exhausted)}.v-error{border-left-color:var(--error)}
.v-stale{border-left-color:var(--stale)}
.verdict pre{white-space:pre-wrap;margin:.5em 0 0;font-size:13px}
.counts{display:inline-flex;gap:10px;margin-left:14px;vertical-align:middle}
.count{font-variant-numeric:tabular-nums;font-weight:600}
.attention{margin:8px 0 0;padding:0;list-style:none}
.attention li{margin:4px 0}.attention a{text-decoration:none}.attention a:hover b{text-decoration:underline}
main{margin:16px 24px 0}
.scroll{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%}
th,td{padding:8px 9px;text-align:left;vertical-align:top;border-bottom:1px solid var(--line)}
thead th{font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.04em;
white-space:nowrap;background:var(--card)}
thead th .muted{text-transform:none;letter-spacing:0}
tr.service th{background:var(--bg);font-size:15px;padding-top:10px;padding-bottom:6px}
tr.service .muted{font-weight:400;font-size:13px;margin-left:.4em}
.tag{display:inline-block;margin-left:8px;padding:0 6px;border:1px solid var(--line);border-radius:10px;
font-size:12px;font-weight:400;color:var(--muted)}
tr.slo-row td:first-child{border-left:4px solid transparent}
tr.st-burning td:first-child{border-left-color:var(--burning)}
tr.st-exhausted td:first-child{border-left-color:var(--exhausted)}
tr.st-error td:first-child{border-left-color:var(--error)}
tr.st-stale td:first-child{border-left-color:var(--stale)}
tr:target td{background:var(--hot-bg)}
td.name{min-width:12em;max-width:18em}
.slo{font-weight:600;font-size:15px;overflow-wrap:break-word}
.desc{color:var(--muted);font-size:12px}
.small{font-size:12px}.muted{color:var(--muted)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sli{font-size:15px;font-weight:600}
.badge{display:inline-block;min-width:6.2em;text-align:center;padding:2px 8px;border-radius:4px;color:var(--on-badge);
font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.04em;white-space:nowrap}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:8px}
.b-ok{background:var(--ok)}.b-burning{background:var(--burning)}.b-exhausted{background:var(--exhausted)}
.b-error{background:var(--error)}.b-stale{background:var(--stale)}.b-no_data{background:var(--no_data)}
.st-stale .err{color:var(--stale)}
.err{color:var(--error);font-size:12px;margin-top:4px;max-width:14em;overflow-wrap:anywhere}
.budget{min-width:110px}.bval{font-weight:700;font-variant-numeric:tabular-nums}
.bar{height:8px;margin-top:4px;border-radius:4px;background:var(--track);overflow:hidden}
.fill{height:100%;border-radius:4px}
.good .fill{background:var(--good)}.warn .fill{background:var(--warn)}.bad .fill{background:var(--bad)}
.bad .bval,.bad-text{color:var(--bad);font-weight:700}
.rates{display:grid;grid-template-columns:repeat(7,minmax(34px,auto));gap:2px;font-variant-numeric:tabular-nums}
.br{text-align:center;padding:1px 3px;border-radius:3px;font-size:13px}
.br i{display:block;font-style:normal;font-size:11px;color:var(--muted)}
.br.warm{color:var(--warm);font-weight:600}
.br.hot{background:var(--hot-bg);color:var(--exhausted);font-weight:700}
.exh{font-size:12px;margin-top:4px;white-space:nowrap;font-variant-numeric:tabular-nums}
.alert{font-size:13px;margin-bottom:5px;white-space:nowrap}
.sev{display:inline-block;font-size:10px;font-weight:700;text-transform:uppercase;padding:0 4px;
margin-right:5px;border-radius:3px;color:var(--on-badge);background:var(--no_data)}
.s-page{background:var(--exhausted)}.s-ticket{background:var(--stale)}
.chart{display:block;overflow:visible}
.chart .line{fill:none;stroke-width:1.8;stroke-linejoin:round}
.chart .area{stroke:none;opacity:.15}.chart .zero{stroke:var(--muted);stroke-dasharray:2 2;stroke-width:.8}
.chart.good .line{stroke:var(--good)}.chart.good .area,.chart.good .last{fill:var(--good)}
.chart.warn .line{stroke:var(--warn)}.chart.warn .area,.chart.warn .last{fill:var(--warn)}
.chart.bad .line{stroke:var(--bad)}.chart.bad .area,.chart.bad .last{fill:var(--bad)}
footer{margin:14px 24px 24px;color:var(--muted);font-size:12px}
""".strip()
