"""Which replica evaluates which SLO: ``SLOWATCH_SHARD=K/N``, or ``auto`` from a StatefulSet.

Ownership is rendezvous hashing (highest random weight, Thaler and Ravishankar 1998): an SLO
belongs to the shard whose hash of ``(shard, slo id)`` is highest. Every replica computes the same
owner from the SLO id alone, and growing N to N+1 moves only the SLOs the new shard wins, about
1/(N+1) of them, where ``hash mod N`` would move nearly all.

``auto`` takes the pod's ordinal (``SLOWATCH_POD_INDEX``, e.g. from the downward API's
``apps.kubernetes.io/pod-index`` label, else the ``-K`` at the end of the hostname a StatefulSet
gives its pods) and the shard count ``SLOWATCH_SHARDS``. A StatefulSet of ``2N`` replicas then runs
each shard twice (ordinals ``o`` and ``o + N``): high availability per shard, as the daemon's
replicas already deliver to every Alertmanager and Alertmanager deduplicates.

A composite SLO is owned like any other, by its own id; its components may belong to other
shards. The owner measures them too (the daemon hands its cycle the whole spec, and
``slowatch.engine`` measures each composite's ``core.composite.closure``) but publishes and alerts
only its own SLOs, so every SLO still has exactly one shard speaking for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

AUTO = "auto"
POD_INDEX_ENV = "SLOWATCH_POD_INDEX"
SHARDS_ENV = "SLOWATCH_SHARDS"
_ORDINAL = re.compile(r"-(\d+)$")


class ShardError(ValueError):
    """A shard setting that cannot be used; the message says what to set."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` (1 <= K <= N) or None."""
    if not text:
        return None
    k, sep, n = text.partition("/")
    try:
        shard, count = int(k), int(n)
    except ValueError:
        raise ShardError(f"shard must be K/N (e.g. 2/3) or auto, got {text!r}") from None
    if not sep or not 1 <= shard <= count:
        raise ShardError(f"shard must be K/N with 1 <= K <= N, got {text!r}")
    return shard, count


def resolve(text: str | None, environ: Mapping[str, str], hostname: str) -> tuple[int, int] | None:
    """The shard this replica runs: ``K/N``, or ``auto`` from the pod ordinal and SLOWATCH_SHARDS."""
    if text != AUTO:
        return parse_shard(text)
    count_text = environ.get(SHARDS_ENV, "")
    if not count_text.isdigit() or int(count_text) < 1:
        raise ShardError(f"SLOWATCH_SHARD=auto needs {SHARDS_ENV}=N (the number of shards), got {count_text!r}")
    count = int(count_text)
    # Empty when the downward API's pod-index label is missing (Kubernetes before 1.28).
    index_text = environ.get(POD_INDEX_ENV) or None
    if index_text is None:
        match = _ORDINAL.search(hostname)
        if match is None:
            raise ShardError(f"SLOWATCH_SHARD=auto: no {POD_INDEX_ENV} and the hostname {hostname!r} does not end "
                             "in -ORDINAL as a StatefulSet pod's does; set SLOWATCH_SHARD=K/N instead")
        index_text = match.group(1)
    if not index_text.isdigit():
        raise ShardError(f"{POD_INDEX_ENV} must be a pod ordinal (0, 1, ...), got {index_text!r}")
    return int(index_text) % count + 1, count


def _weight(shard: int, slo_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{shard}\x00{slo_id}".encode()).digest()[:8], "big")


def owner(slo_id: str, count: int) -> int:
    """The shard (1..count) that evaluates ``slo_id``: the same on every host and Python run."""
    return max(range(1, count + 1), key=lambda k: _weight(k, slo_id))


def in_shard(slo_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    k, n = shard
    return owner(slo_id, n) == k


def set_hash(slo_ids: Iterable[str]) -> int:
    """A fingerprint of a set of SLO ids that fits a float exactly (52 bits), so the two replicas
    of a shard can be seen to hold the same SLOs (``slowatch_shard_slo_set_hash``)."""
    digest = hashlib.sha256("\n".join(sorted(set(slo_ids))).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 12
