"""The only place PromQL text is built, and the parser of what those queries return.

One SLO is measured by **one** query at one instant: every window's good (or bad) and total
events come back as labelled samples of the same evaluation, so good can never be counted at a
different moment than total (slo-generator's SLI > 1), and a result with several samples where
one is expected is reported, never "take the first".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from slowatch.core.budget import SLO_WINDOW, EventCounts
from slowatch.core.model import SLO, LatencySLI, RatioSLI, ThroughputSLI, WindowSpan
from slowatch.core.windows import BURN_RATE_WINDOWS, format_duration

WINDOW_PLACEHOLDER = "{{.window}}"
WINDOW_LABEL = "slowatch_window"
KIND_LABEL = "slowatch_kind"


class ResultError(ValueError):
    """A query result that cannot be read as event counts (several series where one is expected)."""


def quote(value: str) -> str:
    """A PromQL double-quoted string literal holding ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def go_float(value: float) -> str:
    """``value`` as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it (Go client ``le`` labels)."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0").rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    return text


def le_spellings(threshold: float) -> list[str]:
    """Every way instrumentation libraries spell this bucket bound: Go writes ``1``, Python
    ``1.0``. Summing over all spellings is right when services use different clients."""
    return sorted({go_float(threshold), repr(float(threshold))})


def le_regex(threshold: float) -> str:
    return "|".join(s.replace(".", "\\.").replace("+", "\\+") for s in le_spellings(threshold))


def selector_with(metric: str, selector: str, extra: str = "") -> str:
    """``metric{<selector matchers>,<extra>}`` from a brace selector like ``{a="b"}``."""
    inner = selector.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip().rstrip(",")
    parts = [p for p in (inner, extra) if p]
    return f"{metric}{{{','.join(parts)}}}"


def window_ranges(span: WindowSpan) -> dict[str, str]:
    """The range (PromQL duration) of each window name measured for an SLO at an instant."""
    ranges = {w: w for w in BURN_RATE_WINDOWS}
    elapsed = timedelta(seconds=math.floor(span.elapsed.total_seconds()))
    if elapsed > timedelta(0):
        ranges[SLO_WINDOW] = format_duration(elapsed)
    return ranges


def event_queries(slo: SLO, rng: str) -> dict[str, str]:
    """PromQL per kind ("good" or "bad", and "total") counting events in the last ``rng``."""
    sli = slo.sli
    if isinstance(sli, RatioSLI):
        def count(expr: str) -> str:
            if sli.raw:
                return expr.replace(WINDOW_PLACEHOLDER, rng)
            return f"sum(increase({expr}[{rng}]))"

        out = {"total": count(sli.total)}
        if sli.good is not None:
            out["good"] = count(sli.good)
        else:
            assert sli.errors is not None
            out["bad"] = count(sli.errors)
        return out
    if isinstance(sli, LatencySLI):
        bucket = selector_with(f"{sli.histogram}_bucket", sli.selector, f"le=~{quote(le_regex(sli.threshold_seconds))}")
        total = selector_with(f"{sli.histogram}_count", sli.selector)
        return {"good": f"sum(increase({bucket}[{rng}]))", "total": f"sum(increase({total}[{rng}]))"}
    assert isinstance(sli, ThroughputSLI)
    step = format_duration(sli.slice)
    return {
        "good": f"sum_over_time((({sli.query}) >= bool {go_float(sli.minimum)})[{rng}:{step}])",
        "total": f"count_over_time(({sli.query})[{rng}:{step}])",
    }


def check_queries(slo: SLO) -> dict[str, str]:
    """Extra samples that let the reader spot a latency threshold that is no bucket bound."""
    sli = slo.sli
    if not isinstance(sli, LatencySLI):
        return {}
    bucket = selector_with(f"{sli.histogram}_bucket", sli.selector, f"le=~{quote(le_regex(sli.threshold_seconds))}")
    total = selector_with(f"{sli.histogram}_count", sli.selector)
    return {
        # Instant selectors, as core/plan.py's batched check: one sample per series, not an hour.
        "bound_series": f"count({bucket})",
        "all_series": f"count({total})",
    }


def _tag(expr: str, window: str, kind: str) -> str:
    expr = f'label_replace({expr}, "{WINDOW_LABEL}", {quote(window)}, "", "")'
    return f'label_replace({expr}, "{KIND_LABEL}", {quote(kind)}, "", "")'


def measurement_query(slo: SLO, span: WindowSpan) -> str:
    """One query returning every window's event counts, each sample labelled with its window and
    kind; ``or`` keeps them all since their label sets differ."""
    parts = []
    for window, rng in window_ranges(span).items():
        for kind, expr in event_queries(slo, rng).items():
            parts.append(_tag(expr, window, kind))
    for kind, expr in check_queries(slo).items():
        parts.append(_tag(expr, "check", kind))
    return "\n  or ".join(parts)


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float


def read_counts(slo: SLO, samples: Iterable[Sample]) -> tuple[dict[str, EventCounts], tuple[str, ...]]:
    """Counts per window from the samples of ``measurement_query``, and data problems found.

    A window with no samples had no events (absent); several samples for one window and kind
    mean the query is not a single count, which is an error, not something to pick from.
    """
    seen: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        key = (s.labels.get(WINDOW_LABEL, ""), s.labels.get(KIND_LABEL, ""))
        seen.setdefault(key, []).append(s)
    for (window, kind), group in seen.items():
        if len(group) > 1:
            sets = ", ".join(_show(g.labels) for g in group[:3])
            raise ResultError(
                f"window {window} {kind}: the query returned {len(group)} series where one is expected "
                f"({sets}); aggregate it, e.g. sum(...)"
            )
    values = {k: v[0].value for k, v in seen.items()}
    counts_bad = "bad" in event_queries(slo, "5m")
    counts: dict[str, EventCounts] = {}
    for w in sorted({w for w, _ in values if w != "check"}):
        # An absent sample is an empty sum: no such events in that window.
        total = values.get((w, "total"), 0.0)
        if counts_bad:
            good = total - values.get((w, "bad"), 0.0)
        else:
            good = values.get((w, "good"), 0.0)
        counts[w] = EventCounts(good=good, total=total)

    problems: list[str] = []
    sli = slo.sli
    if isinstance(sli, LatencySLI):
        bound = values.get(("check", "bound_series"), 0.0)
        every = values.get(("check", "all_series"), 0.0)
        if every > bound:
            problems.append(
                f"latency threshold {go_float(sli.threshold_seconds)}s is not an `le` bound of "
                f"{sli.histogram} on {int(every - bound)} of {int(every)} series; "
                "run `slowatch check --live` to list the bounds that exist"
            )
    return counts, tuple(problems)


def _show(labels: Mapping[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k not in (WINDOW_LABEL, KIND_LABEL)}
    return "{" + ",".join(f"{k}={quote(v)}" for k, v in sorted(shown.items())) + "}"

