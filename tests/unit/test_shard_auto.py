"""Sharding that runs itself: rendezvous ownership and SLOWATCH_SHARD=auto from a StatefulSet pod."""

from __future__ import annotations

import pytest

from slowatch.shard import ShardError, in_shard, owner, parse_shard, resolve, set_hash

IDS = [f"svc-{i:04d}/availability" for i in range(3000)]


@pytest.mark.parametrize("count", [pytest.param(1, id="one shard takes everything"),
                                   pytest.param(3, id="three shards split the SLOs"),
                                   pytest.param(7, id="seven shards split them too")])
def test_every_slo_has_exactly_one_shard_and_the_split_is_near_even(count: int) -> None:
    owners = [[k for k in range(1, count + 1) if in_shard(i, (k, count))] for i in IDS]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [k]) for k in range(1, count + 1)]
    assert min(sizes) > 0.85 * len(IDS) / count


@pytest.mark.parametrize("before", [pytest.param(2, id="2 to 3 shards"), pytest.param(5, id="5 to 6 shards")])
def test_growing_the_shard_count_moves_only_what_the_new_shard_wins(before: int) -> None:
    moved = [i for i in IDS if owner(i, before) != owner(i, before + 1)]
    assert all(owner(i, before + 1) == before + 1 for i in moved)  # nothing moves between old shards
    assert len(moved) < 1.2 * len(IDS) / (before + 1)  # about 1/(N+1), where mod N moves most


def test_the_owner_is_fixed_by_the_id_on_every_host_and_run() -> None:
    # Known answers (sha256-based, not Python's per-process randomised hash()).
    assert [owner("auth/login-availability", n) for n in (1, 2, 3, 4)] == [1, 1, 3, 3]
    assert [owner("svc-0000/availability", n) for n in (2, 3, 4)] == [2, 3, 4]
    assert set_hash(["b", "a"]) == set_hash(["a", "b", "a"]) != set_hash(["a"])
    assert set_hash(IDS) < 2**52


@pytest.mark.parametrize(("setting", "environ", "hostname", "expected"), [
    pytest.param("2/3", {}, "host", (2, 3), id="K/N is taken as it is"),
    pytest.param(None, {}, "host", None, id="no setting: every SLO"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "3"}, "slowatch-0", (1, 3), id="auto: ordinal 0 is shard 1"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "3"}, "slowatch-2", (3, 3), id="auto: ordinal 2 is shard 3"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "3"}, "slowatch-4", (2, 3),
                 id="auto: ordinal 4 of 6 replicas is the second replica of shard 2"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "2", "SLOWATCH_POD_INDEX": "3"}, "any", (2, 2),
                 id="auto: the pod-index from the downward API wins over the hostname"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "2", "SLOWATCH_POD_INDEX": ""}, "slowatch-3", (2, 2),
                 id="auto: an empty pod-index (no such label before Kubernetes 1.28) falls back to the hostname"),
])
def test_resolving_the_shard(setting: str | None, environ: dict[str, str], hostname: str,
                             expected: tuple[int, int] | None) -> None:
    assert resolve(setting, environ, hostname) == expected


@pytest.mark.parametrize(("setting", "environ", "hostname", "message"), [
    pytest.param("auto", {}, "slowatch-0", "SLOWATCH_SHARDS", id="auto without a shard count says what to set"),
    pytest.param("auto", {"SLOWATCH_SHARDS": "3"}, "laptop", "ORDINAL", id="auto off a StatefulSet says so"),
    pytest.param("0/4", {}, "h", "1 <= K <= N", id="shard 0 is refused"),
    pytest.param("5/4", {}, "h", "1 <= K <= N", id="a shard past N is refused"),
    pytest.param("a/b", {}, "h", "K/N", id="words are refused"),
    pytest.param("3", {}, "h", "K/N", id="a bare number is refused"),
])
def test_bad_shard_settings_say_what_to_write(setting: str, environ: dict[str, str], hostname: str,
                                              message: str) -> None:
    with pytest.raises(ShardError, match=message):
        resolve(setting, environ, hostname)


def test_parse_shard_still_reads_k_of_n() -> None:
    assert parse_shard("1/1") == (1, 1)
