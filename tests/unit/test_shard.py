"""--shard K/N: every SLO is evaluated by exactly one shard, the same one on every host and run."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slowatch.core.model import SLO, RatioSLI, RollingWindow
from slowatch.daemon import in_shard, parse_shard


def slo(i: int) -> SLO:
    return SLO(f"svc-{i:04d}", "availability", 99.9, RollingWindow(timedelta(days=30)), RatioSLI(total="t", errors="e"))


@pytest.mark.parametrize("count", [pytest.param(1, id="one shard takes everything"),
                                   pytest.param(4, id="four shards split the SLOs"),
                                   pytest.param(7, id="an odd number of shards splits them too")])
def test_shards_partition_the_slos(count: int) -> None:
    slos = [slo(i) for i in range(2000)]
    owners = [[k for k in range(1, count + 1) if in_shard(s, (k, count))] for s in slos]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [k]) for k in range(1, count + 1)]
    assert min(sizes) > 0.8 * len(slos) / count  # a hash, not a round robin, but close to even


def test_the_shard_of_an_slo_is_fixed_by_its_id_on_every_host_and_run() -> None:
    # Known answers of the first 8 bytes of sha256("service/slo") mod 4: Python's own hash() is
    # randomised per process, so replicas would disagree on who owns what.
    assert [k for k in range(1, 5) if in_shard(slo(0), (k, 4))] == [3]
    named = SLO("auth", "login-availability", 99.95, RollingWindow(timedelta(days=30)), RatioSLI(total="t", errors="e"))
    assert [k for k in range(1, 5) if in_shard(named, (k, 4))] == [4]


@pytest.mark.parametrize("text", ["0/4", "5/4", "a/b", "3"])
def test_a_bad_shard_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(text)
