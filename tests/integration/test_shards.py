"""Sharding that runs itself: three shards of two replicas each (SLOWATCH_SHARD=auto, as the
StatefulSet in deploy/kubernetes-sharded runs them) evaluate every SLO of the example spec exactly
once against a real Prometheus, the replicas of a shard agree, and the coverage alert of
deploy/kubernetes-sharded/shard-coverage.yaml stays silent on their metrics and fires, in
promtool, when a shard is missing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from slowatch.daemon import Daemon
from slowatch.settings import Settings
from slowatch.spec import load_specs
from tests.support.processes import Server, find_binary

REPO = Path(__file__).parents[2]
EXAMPLE = REPO / "deploy" / "slos"
COVERAGE = REPO / "deploy" / "kubernetes-sharded" / "shard-coverage.yaml"
SHARDS = 3


def replica(ordinal: int, prometheus: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Daemon:
    monkeypatch.setenv("SLOWATCH_POD_INDEX", str(ordinal))
    monkeypatch.setenv("SLOWATCH_SHARDS", str(SHARDS))
    settings = Settings(prometheus_url=prometheus.url, shard="auto", state_dir=tmp_path / f"state-{ordinal}")
    return Daemon(settings, [EXAMPLE])


def gauges(daemon: Daemon) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in daemon.registry.collect():
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def test_three_shards_of_two_replicas_cover_every_slo_exactly_once(
        prometheus: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    every = {s.id for s in load_specs([EXAMPLE])}
    replicas = [replica(o, prometheus, tmp_path, monkeypatch) for o in range(2 * SHARDS)]
    try:
        owned: dict[int, set[str]] = {}
        for ordinal, d in enumerate(replicas):
            d.evaluate()
            ids = {s.slo.id for s in d.holder.get().statuses}
            assert ids == {s.id for s in d.cycle.slos}  # it evaluated what it owns, nothing else
            assert d.shard == (ordinal % SHARDS + 1, SHARDS)
            owned.setdefault(ordinal % SHARDS, set())
            if ordinal >= SHARDS:
                assert ids == owned[ordinal % SHARDS], "the two replicas of a shard evaluate the same SLOs"
            owned[ordinal % SHARDS] = ids
        shares = list(owned.values())
        assert set().union(*shares) == every
        assert sum(len(s) for s in shares) == len(every)  # disjoint: exactly once
        metrics = [gauges(d) for d in replicas]
        for m, d in zip(metrics, replicas, strict=True):
            assert m["slowatch_spec_slos"] == [({}, float(len(every)))]
            ((labels, value),) = m["slowatch_shard_slos"]
            assert labels == {"shard": str(d.shard[0]), "shards": str(SHARDS)} and value == len(d.cycle.slos)
        hashes = {(m["slowatch_shard_slo_set_hash"][0][0]["shard"], m["slowatch_shard_slo_set_hash"][0][1])
                  for m in metrics}
        assert len(hashes) == SHARDS  # one fingerprint per shard: its two replicas agree
    finally:
        for d in replicas:
            d.stop()

    # The coverage rules on these very numbers, in promtool: silent; with shard 3 gone: it fires.
    def series(skip_shard: str | None) -> list[dict[str, Any]]:
        out = []
        for ordinal, m in enumerate(metrics):
            pod = f'pod="slowatch-{ordinal}"'
            for name in ("slowatch_spec_slos", "slowatch_shard_slos", "slowatch_shard_slo_set_hash"):
                for labels, value in m[name]:
                    if skip_shard is not None and labels.get("shard") == skip_shard:
                        continue
                    text = ",".join([pod, *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
                    out.append({"series": f"{name}{{{text}}}", "values": f"{int(value)}x30"})
        return out

    groups = yaml.safe_load(COVERAGE.read_text())["spec"]["groups"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [
        {"interval": "1m", "input_series": series(None), "alert_rule_test": [
            {"eval_time": "20m", "alertname": "SLOWatchShardsIncomplete", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "SLOWatchShardReplicasDisagree", "exp_alerts": []}]},
        {"interval": "1m", "input_series": series("3"), "alert_rule_test": [
            {"eval_time": "20m", "alertname": "SLOWatchShardsIncomplete", "exp_alerts": [{
                "exp_labels": {"severity": "ticket"},
                "exp_annotations": {
                    "summary": "slowatch shards do not cover every SLO exactly once",
                    "description": f"The shards evaluate {len(owned[0]) + len(owned[1])} SLOs in all, not the "
                                   "spec's count: a shard is down or the replicas run with different SLOWATCH_SHARDS.",
                }}]}]},
    ]}
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    done = subprocess.run([find_binary("promtool"), "test", "rules", "test.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
