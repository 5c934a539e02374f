"""The measuring side of the constant-cost plan (``slowatch.core.plan``): batched queries per
group of SLOs sharing a shape, and the hour ledger kept in memory.

One cycle costs, per group chunk, one instant query (short windows, head, tails, and for latency
the bucket-bound check) plus, once an hour, one query for the hour that just settled. A fresh
ledger (start, new SLOs) is filled by range queries in pieces of ``BACKFILL_PIECE``.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import replace
from datetime import datetime, timedelta

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.budget import Measurement
from slowatch.core.measure import ANSWERED, Span, le_spellings, read_answer
from slowatch.core.model import SLO
from slowatch.core.plan import (
    HOUR,
    Group,
    Ledger,
    assemble,
    bound_problems,
    group_slos,
    ledger_hours,
    live_spans,
    utc,
)
from slowatch.core.promql import KIND_LABEL, ResultError
from slowatch.errors import QueryError, SourceError, SourceUnavailable

# Hours per backfill range query, and one backfill at a time: a 10,000-SLO start fills 30 days
# for every series, and parsing whole answers at once would hold gigabytes of JSON.
BACKFILL_PIECE = 48
HOUR_TAG = "hour"
VANISHED = ("every series vanished from the answer, even the constant one each query returns: refused, "
            "not read as zero events")


class PlannedSource:
    """Measures many SLOs per query, long windows from the hour ledger (``ledger=False``: every
    window read live over its whole range, the cost model without a ledger)."""

    def __init__(self, prometheus: PrometheusSource, *, ledger: bool = True) -> None:
        self.prometheus = prometheus
        self.use_ledger = ledger
        self.ledger = Ledger()
        self._groups: tuple[tuple[SLO, ...], list[Group]] | None = None
        self._lock = threading.Lock()
        self._backfill = threading.Lock()

    def _plan(self, slos: Sequence[SLO]) -> list[Group]:
        key = tuple(slos)
        with self._lock:
            if self._groups is None or self._groups[0] != key:
                groups = group_slos(slos)
                self._groups = (key, groups)
                self.ledger.retain(f"{g.signature}#{i}" for g in groups for i in range(len(g.chunks())))
            return self._groups[1]

    def measure_all(
        self, slos: Sequence[SLO], at: datetime, executor: Executor
    ) -> dict[str, Measurement | Exception]:
        at = at.replace(microsecond=0)  # spans are whole seconds; so is every query of the cycle
        groups = self._plan(slos)
        futures: list[tuple[tuple[SLO, ...], Future[dict[str, Measurement | SourceError]]]] = []
        for group in groups:
            for i, chunk in enumerate(group.chunks()):
                futures.append((chunk, executor.submit(self._measure_chunk, group, i, chunk, at)))
        out: dict[str, Measurement | Exception] = {}
        for chunk, future in futures:  # every future is awaited: no chunk outlives its cycle
            try:
                out.update(future.result())
            except Exception as exc:  # per chunk, as it was raised (ports.BatchSource): a bug, with its
                out.update({s.id: exc for s in chunk})  # traceback, becomes `error` in the engine
        return out

    def _measure_chunk(
        self, group: Group, index: int, chunk: tuple[SLO, ...], at: datetime
    ) -> dict[str, Measurement | SourceError]:
        context = f"{len(chunk)} SLOs ({chunk[0].id}{', ...' if len(chunk) > 1 else ''}) at={at.isoformat()}"
        ledger = self.ledger.group(f"{group.signature}#{index}")
        use_ledger = self.use_ledger and group.ledger
        flavour = self.prometheus.flavour()
        role_keys = group.ledger_keys(chunk)
        need = ledger_hours(chunk, at, use_ledger)
        missing = ledger.missing(need, role_keys)
        if missing:
            with self._backfill:
                values = self._fetch_hours(group, chunk, missing, context)
            ledger.fill(missing, values, role_keys, keep_from=need.start if need else missing.start)
        query = group.query(live_spans(chunk, at, use_ledger), chunk, flavour)
        notes: list[str] = []  # the query API's infos: shown with every SLO of the chunk
        samples = self.prometheus.query(query, at, context=context, notes=notes)
        try:
            answer = read_answer({**group.roles, **group.check}, ((s.labels, s.value) for s in samples))
        except ResultError as exc:
            raise QueryError(f"{context}: {exc}") from exc
        if not answer.answered:
            raise SourceUnavailable(f"{context}: {VANISHED}")
        return {
            slo.id: replace(assemble(slo, group, at, answer, ledger, bound_problems(slo, group, answer),
                                     from_ledger=use_ledger), warnings=tuple(notes))
            for slo in chunk
        }

    def _fetch_hours(
        self, group: Group, chunk: Sequence[SLO], hours: range, context: str,
    ) -> dict[tuple[str, tuple[str, ...]], array[float]]:
        """Events of each whole hour in ``hours`` (hour ends), per ledger row, by range queries:
        ``values[row][i]`` counts the hour ending at ``hours[i]``. Each answer is folded into the
        rows as it arrives, so a large backfill holds one piece of JSON at a time."""
        # Which ledger rows each answered series adds to (latency: every spelling of a threshold).
        targets: dict[tuple[str, tuple[str, ...], str], list[tuple[str, tuple[str, ...]]]] = {}
        for slo in chunk:
            th = group.thresholds.get(slo.id)
            for role, key in group.members[slo.id].items():
                spellings = le_spellings(th) if th is not None and group.roles[role].le else [""]
                row_key = (group.ledger_role(slo, role), key)
                for spelling in spellings:
                    rows = targets.setdefault((role, key, spelling), [])
                    if row_key not in rows:
                        rows.append(row_key)
        values = {rk: array("d", bytes(8 * len(hours))) for rks in targets.values() for rk in rks}
        query = group.query({HOUR_TAG: Span(HOUR)}, chunk, self.prometheus.flavour(), check=False)
        ends = list(hours)
        for i in range(0, len(ends), BACKFILL_PIECE):
            piece = ends[i:i + BACKFILL_PIECE]
            series = self.prometheus.query_range(
                query, utc(piece[0]), utc(piece[-1]), timedelta(seconds=HOUR), context=f"{context} (hour ledger)"
            )
            answered = [points for labels, points in series if labels.get(KIND_LABEL) == ANSWERED]
            if not answered or {t for t, _ in answered[0]} != set(piece):
                # Hours filled from such an answer would hold zeros for the whole window.
                raise SourceUnavailable(f"{context} (hour ledger): {VANISHED}")
            for labels, points in series:
                role = labels.get(KIND_LABEL, "")
                template = group.roles.get(role)
                if template is None:
                    continue
                key = tuple(labels.get(n, "") for n in template.key_labels)
                for rk in targets.get((role, key, labels.get("le", "") if template.le else ""), ()):
                    row = values[rk]
                    for t, v in points:
                        if t in hours:
                            row[(t - hours[0]) // HOUR] += v
        return values
