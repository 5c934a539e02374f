"""Composite SLOs (``sli.composite``): a journey or a whole system, measured from its components.

Over any window, the composite's SLI is

* ``weights``: the weighted mean of the components' SLIs over that same window,
  ``Σ wᵢ·SLIᵢ / Σ wᵢ``, where a component with no events in the window leaves both sums (no data
  is no evidence either way);
* ``events``: the components' good events over their total events, ``Σ goodᵢ / Σ totalᵢ``.

Both are written as ``EventCounts`` so that ``core.budget.evaluate`` needs no special case: with
weights, good is ``Σ wᵢ·SLIᵢ`` and total ``Σ wᵢ`` (the counts are then weights, not events, and
/status says so through the SLO's kind).

A component that could not be measured makes the composite unmeasurable too: ``combine``
returns which one, and why, and the caller turns that into the composite's ``error``/``stale``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from slowatch.core.budget import EventCounts, Measurement
from slowatch.core.model import EVENTS, SLO, CompositeSLI


@dataclass(frozen=True)
class MissingComponent:
    """A component without a measurement at this instant, and why."""

    slo: str
    reason: str


def is_composite(slo: SLO) -> bool:
    return isinstance(slo.sli, CompositeSLI)


def combine(slo: SLO, components: Mapping[str, Measurement]) -> Measurement:
    """The composite's counts per window from its components' measurements at the same instant
    (every component must be in ``components``: see ``missing``)."""
    sli = slo.sli
    assert isinstance(sli, CompositeSLI)
    parts = [(components[c.slo], c.weight) for c in sli.components]
    at = parts[0][0].at
    names = sorted({name for m, _ in parts for name in m.counts})
    counts: dict[str, EventCounts] = {}
    for name in names:
        good = total = 0.0
        for m, weight in parts:
            c = m.counts.get(name)
            if c is None or c.total <= 0:
                continue  # no events in this window: leaves both sums
            if sli.weighting == EVENTS:
                good, total = good + c.good, total + c.total
            else:
                good, total = good + weight * (c.good / c.total), total + weight
        counts[name] = EventCounts(good=good, total=total)
    problems = tuple(f"{c.slo}: {p}" for c, (m, _) in zip(sli.components, parts, strict=True) for p in m.problems)
    warnings = tuple(f"{c.slo}: {w}" for c, (m, _) in zip(sli.components, parts, strict=True) for w in m.warnings)
    return Measurement(at=at, counts=counts, problems=problems, warnings=warnings)


def missing(slo: SLO, components: Mapping[str, Measurement]) -> list[str]:
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
