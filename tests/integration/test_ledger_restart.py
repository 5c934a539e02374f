"""A restart with a saved hour ledger, on real Prometheus 2.42 over the generated history: the
restarted source reads only the hours it missed while down, and every count of every window
equals a fresh source's to 1e-9 relative (the running sums start from another base, so they may
round a few ulps apart; see ``core.plan.SUM_ROUNDING``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slowatch.adapters.ledger_store import LedgerStore
from slowatch.adapters.planned import PlannedSource
from slowatch.adapters.prometheus import PrometheusSource
from slowatch.core.budget import Measurement
from slowatch.core.model import SLO
from slowatch.core.plan import HOUR, group_slos, ledger_end
from slowatch.spec import load_specs
from tests.support.generator import History
from tests.support.processes import Server

EXAMPLE = Path(__file__).parents[2] / "deploy" / "slos"
REL = 1e-9
DOWN = 3 * HOUR + 20 * 60  # SIGTERM, a long rollout, then the start: three hours settle meanwhile


def run(prometheus: Server, slos: list[SLO], at: int, state: Path | None) -> tuple[dict[str, Measurement], int, int]:
    """One cycle of a new source (a new daemon process): its measurements, range queries, samples read."""
    client = PrometheusSource(prometheus.url, stats=True)
    source = PlannedSource(client, store=LedgerStore(state) if state else None)
    ranges: list[tuple[datetime, datetime]] = []
    query_range = client.query_range

    def counted(promql: str, start: datetime, end: datetime, *args: object, **kwargs: object) -> object:
        ranges.append((start, end))
        return query_range(promql, start, end, *args, **kwargs)  # type: ignore[arg-type]

    client.query_range = counted  # type: ignore[assignment,method-assign]
    try:
        with ThreadPoolExecutor(2) as pool:
            out = source.measure_all(slos, datetime.fromtimestamp(at, UTC), pool)
    finally:
        client.close()
    failed = {k: v for k, v in out.items() if isinstance(v, Exception)}
    assert not failed
    hours = sum((int(e.timestamp()) - int(s.timestamp())) // HOUR + 1 for s, e in ranges)
    return {k: v for k, v in out.items() if isinstance(v, Measurement)}, hours, client.stats.samples_read


@pytest.mark.timeout(300)
def test_a_restart_reads_the_hours_missed_and_equals_a_fresh_start(
        prometheus: Server, history: History, tmp_path: Path) -> None:
    slos = load_specs([EXAMPLE])
    stopped = history.end - 2 * 86400 - DOWN  # a multiple of the history's 60 s step
    restarted_at = stopped + DOWN
    _, first_hours, first_samples = run(prometheus, slos, stopped, tmp_path)
    assert (tmp_path / "ledger.bin").exists()
    got, restart_hours, restart_samples = run(prometheus, slos, restarted_at, tmp_path)
    want, fresh_hours, fresh_samples = run(prometheus, slos, restarted_at, None)

    missed = (ledger_end(restarted_at) - ledger_end(stopped)) // HOUR
    assert missed == 3
    groups = len([g for g in group_slos(slos) if g.ledger])
    assert restart_hours == groups * missed  # one range query per group, over the missed hours only
    assert fresh_hours > 20 * restart_hours
    assert restart_samples < fresh_samples / 5
    print(f"\nfirst start {first_hours} hours / {first_samples:,} samples; restart {restart_hours} hours / "
          f"{restart_samples:,} samples; fresh start {fresh_hours} hours / {fresh_samples:,} samples")
    assert sorted(got) == sorted(want)
    compared = 0
    for slo_id, m in want.items():
        for window, c in m.counts.items():
            r = got[slo_id].counts[window]
            assert r.total == pytest.approx(c.total, rel=REL, abs=0), (slo_id, window)
            assert r.good == pytest.approx(c.good, rel=REL, abs=0), (slo_id, window)
            compared += 1
    assert compared >= 8 * len(slos) // 2
