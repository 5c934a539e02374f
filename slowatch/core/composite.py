"""Composite SLOs (``sli.composite``): a journey or a whole system, measured from its components.

Over any window, the composite's SLI is

* ``weights``: the weighted mean of the components' SLIs over that same window,
  ``Σ wᵢ·SLIᵢ / Σ wᵢ``, where a component with no events in the window leaves both sums (no data
  is no evidence either way);
* ``events``: the components' good events over their total events, ``Σ goodᵢ / Σ totalᵢ``.

Both are written as ``EventCounts`` so that ``core.budget.evaluate`` needs no special case: with
weights, good is ``Σ wᵢ·SLIᵢ`` and total ``Σ wᵢ`` (the counts are then weights, not events, and
/status says so through the SLO's kind).

The spec keeps this sound (``slowatch.spec``): a composite has its components' window (its SLI
over a window is theirs over that same window), ``weighting: events`` sums counts of one kind
(events, or time slices), and a composite has no exclusions of its own (its components apply
theirs).

A component's refused data becomes the composite's problem, naming the component (``combine``);
a component that could not be measured at all (source down, query rejected) makes the composite
``stale`` or ``error`` (``slowatch.engine``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from slowatch.core.budget import SLO_WINDOW, EventCounts, Measurement, quality_problem
from slowatch.core.model import EVENTS, SLO, CompositeSLI


def is_composite(slo: SLO) -> bool:
    return isinstance(slo.sli, CompositeSLI)


def combine(slo: SLO, components: Mapping[str, Measurement]) -> Measurement:
    """The composite's counts per window from its components' measurements at the same instant
    (every component must be in ``components``: see ``missing``). A component's problems, and
    counts its own evaluation would refuse (NaN, negative, good over total), become the
    composite's problems, naming the component: nothing unusable is averaged in."""
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    parts = [(c.slo, components[c.slo], c.weight) for c in sli.components]
    problems = [f"component {name}: {p}" for name, m, _ in parts for p in m.problems]
    problems += [f"component {name}: {p}" for name, m, _ in parts for w, c in m.counts.items()
                 if (p := quality_problem(slo.window.name if w == SLO_WINDOW else w, c))]
    warnings = tuple(f"component {name}: {w}" for name, m, _ in parts for w in m.warnings)
    at = parts[0][1].at
    if problems:
        return Measurement(at=at, counts={}, problems=tuple(problems), warnings=warnings)
    counts: dict[str, EventCounts] = {}
    for window in sorted({w for _, m, _ in parts for w in m.counts}):
        good = total = 0.0
        for _, m, weight in parts:
            c = m.counts.get(window)
            if c is None or c.total <= 0:
                continue  # no events in this window: leaves both sums
            if sli.weighting == EVENTS:
                good, total = good + c.good, total + c.total
            else:
                good, total = good + weight * (c.good / c.total), total + weight
        counts[window] = EventCounts(good=good, total=total)
    return Measurement(at=at, counts=counts, warnings=warnings)


def missing(slo: SLO, components: Mapping[str, object]) -> list[str]:
    """Component ids without a measurement."""
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    return [c.slo for c in sli.components if c.slo not in components]


def evaluation_order(slos: Iterable[SLO]) -> list[SLO]:
    """Composites after every composite they contain (the spec refuses cycles)."""
    by_id = {s.id: s for s in slos}
    done: set[str] = set()
    out: list[SLO] = []

    def visit(slo: SLO) -> None:
        if slo.id in done:
            return
        done.add(slo.id)
        if isinstance(slo.sli, CompositeSLI):
            for c in slo.sli.components:
                if c.slo in by_id:
                    visit(by_id[c.slo])
        out.append(slo)

    for s in by_id.values():
        visit(s)
    return [s for s in out if is_composite(s)]


def closure(slos: Sequence[SLO], every: Mapping[str, SLO]) -> list[SLO]:
    """``slos`` plus every SLO their composites need (through nested composites), from ``every``
    (the whole spec): a shard evaluating a composite must measure its components too."""
    out = {s.id: s for s in slos}
    stack = [s for s in slos if is_composite(s)]
    while stack:
        sli = stack.pop().sli
        assert isinstance(sli, CompositeSLI)
        for c in sli.components:
            if c.slo not in out and c.slo in every:
                out[c.slo] = every[c.slo]
                if is_composite(every[c.slo]):
                    stack.append(every[c.slo])
    return list(out.values())
