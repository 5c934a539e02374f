"""The hour ledger's rows (core/plan.py: appended and dropped in O(1) an hour), its upkeep in
``PlannedSource`` (a new or changed SLO is filled alone, whatever the chunking) and its file
(adapters/ledger_store.py: a restart reads only the hours it missed; a file not to trust is
logged and rebuilt)."""

from __future__ import annotations

import json
import math
import re
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from slowatch.adapters.ledger_store import HEADER, MAGIC, LedgerStore, decode, encode
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.planned import BACKFILL_PIECE, PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.budget import SLO_WINDOW, Measurement
from slowatch.core.measure import ANSWERED, PROMETHEUS, Flavour
from slowatch.core.model import SLO, RatioSLI, RollingWindow
from slowatch.core.plan import (
    CHUNK,
    COMPACT_SHARE,
    HOUR,
    GroupLedger,
    Ledger,
    Row,
    ledger_end,
    live_spans,
    query_parts,
)
from slowatch.core.promql import KIND_LABEL, Sample
from slowatch.cycle import Cycle
from slowatch.errors import SourceUnavailable
from slowatch.view import ViewHolder
from tests.unit.fakes import FakeAlertmanager, MemoryStore, SteppedClock

AT = datetime(2026, 11, 27, 12, 34, 56, tzinfo=UTC)
ENGINE = f"http://prometheus.test:9090 {PROMETHEUS}"


# --- rows ----------------------------------------------------------------------------------------


@given(st.lists(st.one_of(st.integers(0, 10**6).map(float), st.just(math.nan)), min_size=1, max_size=60),
       st.integers(1, 20), st.data())
def test_a_row_appended_and_dropped_hour_by_hour_sums_like_its_hours(
        values: list[float], held: int, data: st.DataObject) -> None:
    row = Row()
    for i, v in enumerate(values):  # the daemon's hourly upkeep: add the settled hour, drop the oldest
        end = (i + 1) * HOUR
        row.add(range(end, end + 1, HOUR), [v])
        row.drop_before(end - (held - 1) * HOUR)
    ends = [(i + 1) * HOUR for i in range(len(values))][-held:]
    assert (row.first, row.last, row.hours) == (ends[0], ends[-1], len(ends))
    i = data.draw(st.integers(0, len(ends) - 1))
    j = data.draw(st.integers(i, len(ends) - 1))
    window = values[len(values) - len(ends):][i:j + 1]
    got = row.total(range(ends[i], ends[j] + 1, HOUR))
    assert math.isnan(got) if any(math.isnan(v) for v in window) else got == sum(window)


def test_hourly_upkeep_appends_in_place_and_compacts_only_after_a_quarter_of_the_hours() -> None:
    held = 720
    row = Row()
    row.add(range(HOUR, (held + 1) * HOUR, HOUR), [1.0] * held)
    cum = row.cum
    copies = 0
    for k in range(1, 2 * held + 1):
        end = (held + k) * HOUR
        before = len(row.cum)
        row.add(range(end, end + 1, HOUR), [1.0])
        row.drop_before(end - (held - 1) * HOUR)
        copies += len(row.cum) < before  # the dropped front was cut away
        assert row.cum is cum  # never a new array: the sums are not rebuilt
        assert row.total(range(row.first, row.last + 1, HOUR)) == held
    # One cut per `held / COMPACT_SHARE` hours (a cut at o dropped hours: o * COMPACT_SHARE >= held + o + 1).
    assert copies == 2 * held // (held // (COMPACT_SHARE - 1) + 1)
    assert row.off * COMPACT_SHARE < len(row.cum)


def test_earlier_hours_join_a_row_in_front_of_the_ones_it_holds() -> None:
    row = Row()
    row.add(range(5 * HOUR, 8 * HOUR + 1, HOUR), [5.0, 6.0, 7.0, 8.0])
    row.add(range(2 * HOUR, 6 * HOUR + 1, HOUR), [2.0, math.nan, 4.0, 99.0, 99.0])  # held hours are kept
    assert (row.first, row.last) == (2 * HOUR, 8 * HOUR)
    assert row.total(range(4 * HOUR, 8 * HOUR + 1, HOUR)) == 4 + 5 + 6 + 7 + 8
    assert math.isnan(row.total(range(2 * HOUR, 4 * HOUR + 1, HOUR)))


# --- upkeep in PlannedSource, over a fake Prometheus ------------------------------------------


def events(role: str, service: str, end: int) -> float:
    """A service's events in the hour ending at ``end``: whole numbers, different every hour."""
    n = int(service[1:])
    total = 1000 + (end // HOUR * 7919 + n * 104729) % 5000
    return float(total if role == "total" else total % 37)


class FakePrometheus:
    """The part of ``PrometheusSource`` ``PlannedSource`` uses: range queries answer ``events`` for
    the services their key regex names (and are recorded); instant queries answer no events
    (every window is then exactly its ledger hours)."""

    url = "http://prometheus.test:9090"

    def __init__(self, values: Callable[[str, str, int], float] = events) -> None:
        self.values = values
        self.ranges: list[tuple[list[str], range]] = []
        self.instant = 0

    def flavour(self) -> Flavour:
        return PROMETHEUS

    def query(self, promql: str, at: datetime, *, context: str, notes: list[str] | None = None) -> list[Sample]:
        self.instant += 1
        return [Sample({KIND_LABEL: ANSWERED}, 1.0)]

    def query_range(self, promql: str, start: datetime, end: datetime, step: timedelta, *,
                    context: str) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        m = re.search(r'service=~?"([^"]*)"', promql)
        assert m is not None
        services = sorted(set(m.group(1).split("|")))
        hours = range(int(start.timestamp()), int(end.timestamp()) + 1, int(step.total_seconds()))
        self.ranges.append((services, hours))
        series: list[tuple[dict[str, str], list[tuple[int, float]]]] = [
            ({KIND_LABEL: ANSWERED}, [(t, 1.0) for t in hours])]
        for role in ("bad", "total"):
            series += [({KIND_LABEL: role, "service": s}, [(t, self.values(role, s, t)) for t in hours])
                       for s in services]
        return series

    def keys_read(self) -> set[str]:
        return {s for services, _ in self.ranges for s in services}

    def hours_read(self) -> set[int]:
        return {h for _, hours in self.ranges for h in hours}


def ratio(n: int, window: timedelta = timedelta(days=30)) -> SLO:
    return SLO(service=f"s{n:04d}", name="avail", objective_percent=99.9, window=RollingWindow(window),
               sli=RatioSLI(total=f'http_requests_total{{service="s{n:04d}"}}',
                            errors=f'http_requests_total{{service="s{n:04d}",code=~"5.."}}'))


def source(fake: FakePrometheus, store: LedgerStore | None = None) -> PlannedSource:
    return PlannedSource(cast(PrometheusSource, fake), store=store)


def measure(src: PlannedSource, slos: Sequence[SLO], at: datetime) -> dict[str, Measurement]:
    with ThreadPoolExecutor(2) as pool:
        out = src.measure_all(slos, at, pool)
    assert not [v for v in out.values() if isinstance(v, Exception)]
    return cast(dict[str, Measurement], out)


def expected_window(slo: SLO, at: datetime) -> tuple[float, float]:
    """(bad, total) of the SLO window's whole ledger hours, from ``events`` directly."""
    t = int(at.timestamp())
    seconds = int(slo.window.duration.total_seconds()) if isinstance(slo.window, RollingWindow) else 0
    first = -(-(t - seconds) // HOUR) * HOUR + HOUR
    hours = range(first, ledger_end(t) + 1, HOUR)
    return (sum(events("bad", slo.service, h) for h in hours), sum(events("total", slo.service, h) for h in hours))


GROUP = 2100  # more than one chunk: a change must not refill the chunk it lands in, nor shift the others
DAY = timedelta(days=1)  # the group's SLOs: their longest ledger window is the 3d burn rate (73 hours to fill)


@pytest.fixture(scope="module")
def filled() -> tuple[PlannedSource, FakePrometheus, list[SLO]]:
    fake = FakePrometheus()
    slos = [ratio(n, DAY) for n in range(GROUP)]
    src = source(fake)
    measure(src, slos, AT)
    return src, fake, slos


def test_a_first_cycle_reads_every_key_over_the_whole_window_in_chunks(
        filled: tuple[PlannedSource, FakePrometheus, list[SLO]]) -> None:
    _, fake, slos = filled
    assert fake.keys_read() == {s.service for s in slos}
    assert max(len(services) for services, _ in fake.ranges) == CHUNK
    assert min(fake.hours_read()) == -(-(int(AT.timestamp()) - 3 * 86400) // HOUR) * HOUR + HOUR


@pytest.mark.parametrize(
    ("change", "new_keys"),
    [
        pytest.param(lambda slos: [*slos[:1000], ratio(9999, DAY), *slos[1001:]], ["s9999"],
                     id="changing one SLO of a 2,100-SLO group reads that SLO's key alone"),
        pytest.param(lambda slos: [ratio(9998, DAY), *slos], ["s9998"],
                     id="adding an SLO in front, which shifts every chunk, reads the new key alone"),
        pytest.param(lambda slos: [*slos, ratio(9997, DAY), ratio(9996, DAY)], ["s9996", "s9997"],
                     id="adding two SLOs reads their keys in one query per piece of hours"),
        pytest.param(lambda slos: slos[5:], [], id="removing SLOs reads nothing"),
    ],
)
def test_a_changed_slo_refills_its_own_rows_alone(
        change: Callable[[list[SLO]], list[SLO]], new_keys: list[str]) -> None:
    fake = FakePrometheus()
    slos = [ratio(n, DAY) for n in range(GROUP)]
    src = source(fake)
    measure(src, slos, AT)
    fake.ranges.clear()
    changed = change(slos)
    got = measure(src, changed, AT + timedelta(seconds=30))
    assert sorted(fake.keys_read()) == new_keys
    assert all(services == new_keys for services, _ in fake.ranges)
    for slo in changed[:3] + changed[-3:]:  # the refilled and the untouched read the same hours
        counts = got[slo.id].counts[SLO_WINDOW]
        bad, total = expected_window(slo, AT)
        assert (counts.total - counts.good, counts.total) == (bad, total)


def test_the_next_hour_is_one_hour_for_every_key_and_nothing_else() -> None:
    fake = FakePrometheus()
    slos = [ratio(n, DAY) for n in range(GROUP)]
    src = source(fake)
    measure(src, slos, AT)
    fake.ranges.clear()
    for k in (1, 2, 119, 120, 121):  # cycles 30 s apart, over the next hour's settling
        measure(src, slos, AT + timedelta(seconds=30 * k))
    end = ledger_end(int(AT.timestamp()) + 120 * 30)
    assert end == ledger_end(int(AT.timestamp())) + HOUR
    assert [hours for _, hours in fake.ranges] == [range(end, end + 1, HOUR)] * 2  # one per chunk
    assert fake.keys_read() == {s.service for s in slos}


# --- the file ------------------------------------------------------------------------------------


def small_ledger() -> Ledger:
    gl = GroupLedger()
    hours = range(10 * HOUR, 20 * HOUR + 1, HOUR)
    gl.fill(hours, {("total", ("a",)): [float(h // HOUR) for h in hours],
                    ("bad", ("a",)): [0.0, 1.0, math.nan, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.5]},
            [("total", ("a",)), ("bad", ("a",))])
    gl.drop_before(12 * HOUR)  # an offset inside the array: only the held sums are written
    return Ledger({"ratio|sig": gl})


def test_a_saved_ledger_loads_equal_with_its_unusable_hours(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path)
    store.save(small_ledger(), ENGINE, AT)
    loaded = store.load(ENGINE)
    gl = loaded.groups["ratio|sig"]
    assert {rk: (r.first, r.last, r.unusable) for rk, r in gl.rows.items()} == {
        ("total", ("a",)): (12 * HOUR, 20 * HOUR, set()),
        ("bad", ("a",)): (12 * HOUR, 20 * HOUR, {12 * HOUR}),
    }
    assert gl.total(("total", ("a",)), range(13 * HOUR, 20 * HOUR + 1, HOUR)) == sum(range(13, 21))
    assert math.isnan(gl.total(("bad", ("a",)), range(12 * HOUR, 14 * HOUR + 1, HOUR)))
    assert gl.total(("bad", ("a",)), range(13 * HOUR, 20 * HOUR + 1, HOUR)) == 2.5
    assert (tmp_path / "ledger.bin").stat().st_mode & 0o777 == 0o600


def _file() -> bytes:
    return b"".join(bytes(p) for p in encode(small_ledger(), ENGINE, AT))


def _with_index(index: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    """A file with a valid header and CRC around this index and data."""
    body = (index if isinstance(index, bytes) else json.dumps(index).encode()) + data
    return HEADER.pack(MAGIC, 1, len(body) - len(data), len(data), zlib.crc32(body)) + body


def _flip(raw: bytes, at: int) -> bytes:
    return raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]


@pytest.mark.parametrize(
    ("raw", "engine", "reason"),
    [
        pytest.param(lambda: _file()[:-5], ENGINE, "truncated or padded", id="a file cut short is truncated"),
        pytest.param(lambda: _file()[:10], ENGINE, "truncated: 10 bytes", id="a file shorter than its header"),
        pytest.param(lambda: b"", ENGINE, "truncated: 0 bytes", id="an empty file"),
        pytest.param(lambda: _flip(_file(), len(_file()) - 3), ENGINE, "CRC-32 does not match",
                     id="a flipped bit in the sums is corrupt"),
        pytest.param(lambda: _flip(_file(), HEADER.size + 5), ENGINE, "CRC-32 does not match",
                     id="a flipped bit in the index is corrupt"),
        pytest.param(lambda: b'{"kind": "slowatch-state"}' + bytes(40), ENGINE, "wrong magic",
                     id="another file (the alert state) is no ledger"),
        pytest.param(lambda: struct.pack("<16sI", MAGIC, 2) + _file()[20:], ENGINE, "format version 2",
                     id="a newer format version is not read"),
        pytest.param(_file, "http://other:9090 prometheus", "saved from another engine",
                     id="a ledger of another Prometheus is not ours"),
        pytest.param(_file, "http://prometheus.test:9090 metricsql", "saved from another engine",
                     id="a ledger counted in another dialect is not ours"),
        pytest.param(lambda: _with_index({"engine": ENGINE, "saved_at": "", "groups": [{"signature": "s"}]}),
                     ENGINE, "index: groups.0.rows: Field required", id="an index missing a field names it"),
        pytest.param(lambda: _with_index({"engine": ENGINE, "saved_at": "", "groups": [{"signature": "s", "rows": [
            {"role": "total", "key": ["a"], "first": HOUR, "sums": 3, "unusable": []}]}]}, struct.pack("<2d", 0, 1)),
                     ENGINE, "do not fit the data", id="a row longer than the data"),
        pytest.param(lambda: _with_index({"engine": ENGINE, "saved_at": "", "groups": [{"signature": "s", "rows": [
            {"role": "total", "key": ["a"], "first": HOUR, "sums": 2, "unusable": []}]}]},
            struct.pack("<2d", 0, math.nan)), ENGINE, "not finite", id="a NaN running sum"),
        pytest.param(lambda: _with_index({"engine": ENGINE, "saved_at": "", "groups": []}, struct.pack("<d", 1)),
                     ENGINE, "8 bytes of data belong to no row", id="data no row claims"),
        pytest.param(lambda: _with_index(b'{"engine": '), ENGINE, "index:",
                     id="an index that is not JSON"),
    ],
)
def test_a_ledger_file_not_to_trust_is_logged_and_rebuilt(
        tmp_path: Path, raw: Callable[[], bytes], engine: str, reason: str) -> None:
    data = raw()
    with pytest.raises(ValueError, match=re.escape(reason)):
        decode(data, engine)
    (tmp_path / "ledger.bin").write_bytes(data)
    with capture_logs() as logs:
        ledger = LedgerStore(tmp_path).load(engine)
    assert ledger.groups == {}
    (entry,) = logs
    assert entry["log_level"] == "warning" and reason in entry["reason"]
    # Rebuilt, never fatal: the next cycle fills and saves a good file over it.
    fake = FakePrometheus()
    src = source(fake, LedgerStore(tmp_path))
    measure(src, [ratio(1)], AT)
    assert fake.keys_read() == {"s0001"}
    assert LedgerStore(tmp_path).load(ENGINE).groups


def test_a_ledger_that_cannot_be_saved_is_logged_and_the_cycle_goes_on(tmp_path: Path) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory should be")
    fake = FakePrometheus()
    src = source(fake, LedgerStore(blocked))
    with capture_logs() as logs:
        got = measure(src, [ratio(1, DAY)], AT)
        measure(src, [ratio(1, DAY)], AT + timedelta(seconds=30))  # retried the next cycle
    assert got[ratio(1, DAY).id].counts["1d"].total > 0
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 2 and "cannot write the hour ledger" in errors[0]["error"]
    blocked.unlink()
    measure(src, [ratio(1, DAY)], AT + timedelta(seconds=60))
    assert LedgerStore(blocked).load(ENGINE).groups  # saved once it could be


def test_an_unreadable_ledger_file_is_logged_and_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "ledger.bin").mkdir()  # reading a directory fails with an OSError
    with capture_logs() as logs:
        assert LedgerStore(tmp_path).load(ENGINE).groups == {}
    assert "cannot read" in logs[0]["reason"]


# --- restarts ----------------------------------------------------------------------------------


def test_a_restart_reads_only_the_hours_missed_while_down_and_equals_a_fresh_start(tmp_path: Path) -> None:
    slos = [ratio(n) for n in range(40)] + [ratio(n + 40, timedelta(days=7)) for n in range(40)]
    first = FakePrometheus()
    measure(source(first, LedgerStore(tmp_path)), slos, AT)
    down = timedelta(hours=3, minutes=10)
    restarted = FakePrometheus()
    got = measure(source(restarted, LedgerStore(tmp_path)), slos, AT + down)
    fresh = FakePrometheus()
    want = measure(source(fresh), slos, AT + down)
    missed = range(ledger_end(int(AT.timestamp())) + HOUR, ledger_end(int((AT + down).timestamp())) + 1, HOUR)
    assert restarted.hours_read() == set(missed) and len(missed) == 3
    assert len(restarted.ranges) == 1
    window_hours = 30 * 24 - 1  # the window's first hour (its tail) and its last (the head) are read live
    assert len(fresh.hours_read()) == window_hours and len(fresh.ranges) == -(-window_hours // BACKFILL_PIECE)
    for slo in slos:
        for w, c in want[slo.id].counts.items():
            assert got[slo.id].counts[w].total == pytest.approx(c.total, rel=1e-9, abs=0)
            assert got[slo.id].counts[w].good == pytest.approx(c.good, rel=1e-9, abs=0)


def test_a_restart_after_more_than_a_window_reads_the_whole_window_again(tmp_path: Path) -> None:
    slos = [ratio(1, timedelta(days=1))]
    measure(source(FakePrometheus(), LedgerStore(tmp_path)), slos, AT)
    later = FakePrometheus()
    measure(source(later, LedgerStore(tmp_path)), slos, AT + timedelta(days=4))
    assert len(later.hours_read()) == 3 * 24 - 1  # the 3d burn-rate window, as a fresh start reads


def test_an_unusable_hour_stays_unusable_after_a_restart(tmp_path: Path) -> None:
    bad_hour = ledger_end(int(AT.timestamp())) - 2 * HOUR

    def with_nan(role: str, service: str, end: int) -> float:
        return math.nan if end == bad_hour and role == "total" else events(role, service, end)

    slos = [ratio(1, timedelta(days=1))]
    measure(source(FakePrometheus(with_nan), LedgerStore(tmp_path)), slos, AT)
    restarted = FakePrometheus()  # would answer a number for that hour: it must not be asked again
    got = measure(source(restarted, LedgerStore(tmp_path)), slos, AT + timedelta(seconds=30))
    assert restarted.ranges == []
    assert math.isnan(got[slos[0].id].counts["1d"].total)
    assert got[slos[0].id].counts["1h"].total == 0.0  # read live, not from the ledger


def test_a_loaded_ledger_turns_ready_only_after_the_first_cycle_that_ran_with_it(tmp_path: Path) -> None:
    slos = [ratio(1, DAY)]
    measure(source(FakePrometheus(), LedgerStore(tmp_path)), slos, AT)  # the run before the restart
    holder = ViewHolder()
    _, metrics = new_registry(holder, process=False)
    restarted = FakePrometheus()
    src = source(restarted, LedgerStore(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        cycle = Cycle(slos, source=src, sink=FakeAlertmanager(), store=MemoryStore(), publisher=holder,
                      telemetry=metrics, executor=pool, clock=SteppedClock(AT))
        cycle.publish(AT)
        assert not holder.current().ready and src.ledger.groups == {}  # built, nothing loaded, not ready
        cycle.run(AT + timedelta(seconds=30))
    assert holder.current().ready and src.ledger.groups
    # The cycle that turned it ready read no hour: only its instant queries (one per day of reach).
    parts = query_parts(live_spans(slos, AT + timedelta(seconds=30)))
    assert restarted.ranges == [] and restarted.instant == len(parts) == 3  # the last day, the 1d tail, the 3d tail


class MeetingPrometheus(FakePrometheus):
    """Range queries wait for each other at a barrier: asked one after the other, the first waits
    alone until the barrier breaks."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=10)

    def query_range(self, promql: str, start: datetime, end: datetime, step: timedelta, *,
                    context: str) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        self.barrier.wait()
        return super().query_range(promql, start, end, step, context=context)


def test_the_hour_that_settled_is_asked_for_every_chunk_side_by_side() -> None:
    slos = [ratio(n, DAY) for n in range(CHUNK + 1)]  # two chunks of one group
    src = source(FakePrometheus())
    measure(src, slos, AT)  # the backfill: more than a piece, one chunk at a time
    src.prometheus = cast(PrometheusSource, meeting := MeetingPrometheus(parties=2))
    at = AT + timedelta(hours=1)
    later = measure(src, slos, at)  # a broken barrier would fail both chunks
    settled = ledger_end(int(at.timestamp()))
    assert [hours for _, hours in meeting.ranges] == [range(settled, settled + 1, HOUR)] * 2
    assert later[slos[-1].id].counts[SLO_WINDOW].total == expected_window(slos[-1], at)[1]


class NearPartDown(FakePrometheus):
    """The query of the last day's part (the first part: the head and short windows) fails at
    once; the farther parts' queries answer a little later."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = 0

    def query(self, promql: str, at: datetime, *, context: str, notes: list[str] | None = None) -> list[Sample]:
        answer = super().query(promql, at, context=context, notes=notes)  # counts it
        if '"head"' in promql:
            raise SourceUnavailable(f"{context}: answered 503")
        time.sleep(0.2)
        self.finished += 1
        return answer


def test_one_failed_part_makes_its_chunk_stale_with_that_error_and_every_part_is_awaited() -> None:
    slos = [ratio(n, DAY) for n in range(3)]
    fake = NearPartDown()
    parts = len(query_parts(live_spans(slos, AT)))
    with ThreadPoolExecutor(4) as pool:
        out = source(fake).measure_all(slos, AT, pool)
        # Checked before the pool's exit would wait for them: the cycle itself awaited every part.
        assert (fake.instant, fake.finished) == (parts, parts - 1)
    assert {type(v) for v in out.values()} == {SourceUnavailable}
    assert all("answered 503" in str(v) for v in out.values())
