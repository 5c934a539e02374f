"""The measuring side of the constant-cost plan (``slowatch.core.plan``): batched queries per
group of SLOs sharing a shape, and the hour ledger (in memory, saved by a ``LedgerFile``).

One cycle costs, per group chunk, one instant query per day its spans reach back into
(``core.plan.query_parts``: short windows, head and the nearer tails in the first, with the
latency bucket-bound check; each farther tail in the query of its day) plus, once an hour, one
query per chunk for the hour that just settled.
Missing hours (a start without a saved ledger, hours missed while down, new or changed SLOs) are
read by range queries in pieces of ``BACKFILL_PIECE``, for the SLOs missing them only.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from slowatch.adapters.prometheus import PrometheusSource
from slowatch.adapters.urls import redact, scrub
from slowatch.core.budget import Measurement
from slowatch.core.measure import ANSWERED, Answer, Span, joined, le_spellings, read_answer
from slowatch.core.model import SLO
from slowatch.core.plan import (
    CHUNK,
    HOUR,
    Group,
    Ledger,
    RowKey,
    assemble,
    bound_problems,
    group_slos,
    ledger_hours,
    live_spans,
    query_parts,
    utc,
)
from slowatch.core.promql import KIND_LABEL, ResultError
from slowatch.errors import QueryError, SourceError, SourceUnavailable

log = structlog.get_logger("slowatch")

# Hours per backfill range query, and one backfill at a time: a 10,000-SLO start fills 30 days
# for every series, and parsing whole answers at once would hold gigabytes of JSON.
BACKFILL_PIECE = 48
HOUR_TAG = "hour"
VANISHED = ("every series vanished from the answer, even the constant one each query returns: refused, "
            "not read as zero events")


class LedgerFile(Protocol):
    """Where the hour ledger survives restarts (``adapters.ledger_store.LedgerStore``)."""

    def load(self, engine: str) -> Ledger:
        """The saved ledger, or an empty one (nothing saved, or a file not to trust: logged)."""
        ...

    def save(self, ledger: Ledger, engine: str, now: datetime) -> None:
        """Raises ``StateError`` when the write failed."""
        ...


@dataclass
class UpkeepStats:
    """What keeping the ledger has cost since start (``bench.restart`` reads it)."""

    ledger_cpu_seconds: float = 0.0
    """The arithmetic alone: finding the missing hours, appending them, dropping old ones."""
    saves: int = 0
    save_seconds: float = 0.0


class PlannedSource:
    """Measures many SLOs per query, long windows from the hour ledger (``ledger=False``: every
    window read live over its whole range, the cost model without a ledger). With a ``store``,
    the ledger is loaded on the first cycle (once the engine is known) and saved whenever an
    hour was added, so a restart reads only the hours it missed."""

    def __init__(self, prometheus: PrometheusSource, *, ledger: bool = True, store: LedgerFile | None = None) -> None:
        self.prometheus = prometheus
        self.use_ledger = ledger
        self.ledger = Ledger()
        self.store = store
        self._loaded = store is None
        self._groups: tuple[tuple[SLO, ...], list[Group]] | None = None
        self._rows: dict[str, list[tuple[SLO, list[RowKey]]]] = {}
        self._kept: dict[str, range] = {}
        """Per group: the hours its every row covered after the last upkeep (none missing until the
        next hour settles or the SLOs change)."""
        self._lock = threading.Lock()
        self._upkeeping = threading.Lock()
        self.stats = UpkeepStats()
        self._unsaved = False

    def _plan(self, slos: Sequence[SLO]) -> list[Group]:
        key = tuple(slos)
        with self._lock:
            if self._groups is None or self._groups[0] != key:
                groups = group_slos(slos)
                self._groups = (key, groups)
                self._rows = {g.signature: [(s, g.ledger_keys([s])) for s in g.slos] for g in groups}
                self._kept = {}
                self.ledger.retain(g.signature for g in groups)
                for g in groups:
                    if g.signature in self.ledger.groups:
                        self.ledger.groups[g.signature].retain(rk for _, rks in self._rows[g.signature] for rk in rks)
            return self._groups[1]

    def _engine(self) -> str:
        """What the saved counts came from: a ledger of another engine or dialect is not ours."""
        return f"{redact(self.prometheus.url)} {self.prometheus.flavour()}"

    def measure_all(
        self, slos: Sequence[SLO], at: datetime, executor: Executor
    ) -> dict[str, Measurement | Exception]:
        at = at.replace(microsecond=0)  # spans are whole seconds; so is every query of the cycle
        if not self._loaded and self.store is not None:
            self.ledger = self.store.load(self._engine())  # before planning: the plan retains its rows
            self._loaded = True
        groups = self._plan(slos)
        with self._upkeeping:  # one cycle's ledger work at a time: rows must not grow while read or saved
            failed, added = self._upkeep(groups, at, executor)
            out: dict[str, Measurement | Exception] = dict(failed)
            saver = None
            if (added or self._unsaved) and self.store is not None:
                # Written while the chunks are measured (both only read the rows), so the write's
                # fsync does not delay the cycle; joined before the rows may grow again.
                saver = threading.Thread(target=self._save, args=(at,), name="ledger-save")
                saver.start()
            # Each chunk's spans are asked in parts (core.plan.query_parts), all submitted at once:
            # the parts of one chunk run side by side like the chunks do.
            futures: list[tuple[Group, tuple[SLO, ...], list[Future[tuple[Answer, list[str]]]]]] = []
            try:
                for group in groups:
                    use_ledger = self.use_ledger and group.ledger
                    for whole in group.chunks():
                        chunk = tuple(s for s in whole if s.id not in out)
                        if chunk:
                            parts = query_parts(live_spans(chunk, at, use_ledger))
                            futures.append((group, chunk, [
                                executor.submit(self._ask, group, chunk, part, at, i == 0)
                                for i, part in enumerate(parts)
                            ]))
                for group, chunk, asked in futures:
                    # Per chunk, the first of its parts that failed, as it was raised (ports.BatchSource):
                    # a SourceError makes its SLOs stale, a bug (with its traceback) `error`.
                    try:
                        answers = [f.result() for f in asked]
                        out.update(self._assemble(group, chunk, at, answers))
                    except Exception as exc:
                        out.update({s.id: exc for s in chunk})
            finally:
                # Every query is awaited, whatever went wrong: no chunk outlives its cycle.
                wait([f for _, _, asked in futures for f in asked])
                if saver is not None:
                    saver.join()
        return out

    def _upkeep(self, groups: Sequence[Group], at: datetime, executor: Executor) -> tuple[dict[str, Exception], bool]:
        """Bring every group's rows to the hours its SLOs need at ``at``: for each set of SLOs
        missing the same hours (usually: every SLO, the hour that just settled; after a start
        with a saved ledger, the hours missed while down; after a change, the changed SLOs'
        rows alone), range queries over those hours for those SLOs' keys only. Runs before the
        chunks are measured, so no chunk reads a row while it grows. Returns the SLOs whose
        hours could not be read (they fail this cycle; the others are measured) and whether any
        hour was added (the ledger is then saved).

        Fills of one piece or less (the hour that settled, the hours a restart missed) are asked
        side by side on ``executor``; a longer backfill runs alone, holding one piece of JSON at
        a time. Rows are filled here, in order, once each answer is in."""
        failed: dict[str, Exception] = {}
        added = False
        todo: list[tuple[Group, range, list[tuple[range, list[SLO]]]]] = []
        for group in groups:
            if not (self.use_ledger and group.ledger):
                continue
            need = ledger_hours(group.slos, at)
            if not need or self._kept.get(group.signature) == need:
                continue
            ledger = self.ledger.group(group.signature)
            cpu = time.thread_time()
            by_missing: dict[range, list[SLO]] = {}
            for slo, rks in self._rows[group.signature]:
                missing = ledger.missing(need, rks)
                if missing:
                    by_missing.setdefault(missing, []).append(slo)
            self.stats.ledger_cpu_seconds += time.thread_time() - cpu
            todo.append((group, need, [(missing, members[i:i + CHUNK])
                                       for missing, members in by_missing.items()
                                       for i in range(0, len(members), CHUNK)]))
        asked = {
            (group.signature, k): executor.submit(self._fetch_hours, group, batch, missing, self._context(batch, at))
            for group, _, batches in todo for k, (missing, batch) in enumerate(batches)
            if len(missing) <= BACKFILL_PIECE
        }
        try:
            for group, need, batches in todo:
                ledger = self.ledger.group(group.signature)
                for k, (missing, batch) in enumerate(batches):
                    try:
                        future = asked.get((group.signature, k))
                        values = (future.result() if future is not None
                                  else self._fetch_hours(group, batch, missing, self._context(batch, at)))
                    except Exception as exc:  # SourceError, or a bug: the batch's SLOs carry it
                        failed.update({s.id: exc for s in batch})
                        continue
                    cpu = time.thread_time()
                    ledger.fill(missing, values, group.ledger_keys(batch))
                    self.stats.ledger_cpu_seconds += time.thread_time() - cpu
                    added = True
                cpu = time.thread_time()
                ledger.drop_before(need.start)
                self.stats.ledger_cpu_seconds += time.thread_time() - cpu
                if not any(s.id in failed for s in group.slos):
                    self._kept[group.signature] = need
        finally:
            wait(asked.values())  # none outlives the upkeep, whatever went wrong
        return failed, added

    def _save(self, at: datetime) -> None:
        """A failed write is logged, never allowed to fail the cycle (the ledger in memory is right;
        only a restart would read it again), and retried the next cycle."""
        assert self.store is not None
        started = time.perf_counter()
        try:
            self.store.save(self.ledger, self._engine(), at)
        except Exception as exc:  # StateError, or a bug in the writer: either way the cycle goes on
            log.error("hour ledger not saved; a restart now would read it again from Prometheus",
                      error=scrub(f"{type(exc).__name__}: {exc}"))
            self._unsaved = True
            return
        self._unsaved = False
        self.stats.saves += 1
        self.stats.save_seconds += time.perf_counter() - started

    @staticmethod
    def _context(chunk: Sequence[SLO], at: datetime) -> str:
        return f"{len(chunk)} SLOs ({chunk[0].id}{', ...' if len(chunk) > 1 else ''}) at={at.isoformat()}"

    def _ask(self, group: Group, chunk: tuple[SLO, ...], spans: Mapping[str, Span], at: datetime,
             check: bool) -> tuple[Answer, list[str]]:
        """One part of a chunk's spans (the first part carries the latency bound check)."""
        context = self._context(chunk, at)
        query = group.query(spans, chunk, self.prometheus.flavour(), check=check)
        notes: list[str] = []  # the query API's infos: shown with every SLO of the chunk
        samples = self.prometheus.query(query, at, context=context, notes=notes)
        try:
            answer = read_answer({**group.roles, **group.check}, ((s.labels, s.value) for s in samples))
        except ResultError as exc:
            raise QueryError(f"{context}: {exc}") from exc
        if not answer.answered:
            raise SourceUnavailable(f"{context}: {VANISHED}")
        return answer, notes

    def _assemble(
        self, group: Group, chunk: tuple[SLO, ...], at: datetime, parts: Sequence[tuple[Answer, list[str]]]
    ) -> dict[str, Measurement | SourceError]:
        ledger = self.ledger.group(group.signature)
        use_ledger = self.use_ledger and group.ledger
        answer = joined([a for a, _ in parts])
        notes = tuple(dict.fromkeys(n for _, ns in parts for n in ns))  # a note each part repeats, once
        return {
            slo.id: replace(assemble(slo, group, at, answer, ledger, bound_problems(slo, group, answer),
                                     from_ledger=use_ledger), warnings=notes)
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
