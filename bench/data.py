"""Synthetic data for many services, backfilled into a real Prometheus, and specs over it.

Every service ``svc-NNNN`` has four series, sampled every ``step`` seconds for ``days`` days:

* ``bench_requests_total{service, code="200"|"500"}`` (a counter),
* ``bench_request_duration_seconds_bucket{service, le="0.25"}`` and ``..._count{service}`` (a
  classic histogram; only the bucket an SLO reads is written, plus the count).

Values are a closed form of the sample index (integers, no state), so any block can be written
independently, in parallel, and the same arguments give the same bytes: a shared daily traffic
shape (cosine, peak 16:00 UTC) scaled by each service's rate, a per-service error and slow share,
and for ~30% of services one error incident (10 minutes to 2 hours at 2-30% errors). A
service's parameters come from ``random.Random(f"{seed}:{index}")``.

Why a 5-minute step: at 5,000 services (10,000 SLOs) a 1-minute step is 893M samples, whose
backfill (promtool 2.42 converts ~0.7M samples/s per core) alone would take ~12 minutes on two
cores; 5 minutes is 179M samples (~3 minutes once, then cached). Samples read per query scale with
1/step: a 1-minute scrape reads 5x what is reported here, a 15-second one 20x.

Blocks are 54h long (promtool's ``--max-block-duration``, one input file per block since promtool
re-reads its whole input per block) and Prometheus runs with ``--storage.tsdb.max-block-duration=54h``:
the layout a Prometheus keeping 31-53 days (10% of retention, rounded down to 2h*3^k) compacts
its data into, and nothing is left to compact while we measure.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from bench.common import WORK_DIR, BenchError, log, require
from tests.support.processes import Server, start_prometheus

DAY = 86400
BLOCK = 54 * 3600  # see the module docstring
BLOCK_FLAG = "54h"
STEP = 300
DAYS = 31
END = 1793491200  # 2026-11-01T00:00:00Z: the cycle data is fixed, so it is built once and cached
SEED = 20261101

REQUESTS = "bench_requests_total"
DURATION = "bench_request_duration_seconds"
BUCKET, COUNT = f"{DURATION}_bucket", f"{DURATION}_count"
THRESHOLD = "0.25"  # the latency SLOs' bound: the written bucket
_PEAK = 16 * 3600
_PPM = 1_000_000


def service_name(index: int) -> str:
    return f"svc-{index:04d}"


@dataclass(frozen=True)
class Service:
    name: str
    milli_rps: int
    """Mean requests per second, in thousandths (the daily shape swings +-50% around it)."""
    error_ppm: int
    slow_ppm: int
    """Share of requests over 0.25 s."""
    incident: tuple[int, int, int] | None
    """(first index, last index, extra error ppm) of an error incident, if any."""


@dataclass(frozen=True)
class Dataset:
    services: int
    end: int = END
    days: int = DAYS
    step: int = STEP
    seed: int = SEED

    @property
    def start(self) -> int:
        return self.end - self.days * DAY

    @property
    def samples_per_series(self) -> int:
        return self.days * DAY // self.step + 1

    @property
    def series(self) -> int:
        return 4 * self.services

    @property
    def key(self) -> str:
        return f"s{self.services}-d{self.days}-st{self.step}-e{self.end}-seed{self.seed}"

    def timestamp(self, i: int) -> int:
        return self.start + i * self.step

    @cached_property
    def cumulative_weight(self) -> list[int]:
        """Traffic-seconds up to each sample, in thousandths, at 1 request per second mean."""
        out = [0]
        for i in range(1, self.samples_per_series):
            phase = 2 * math.pi * ((self.timestamp(i) - _PEAK) % DAY) / DAY
            out.append(out[-1] + round(self.step * 1000 * (1 + 0.5 * math.cos(phase))))
        return out

    @cached_property
    def all_services(self) -> list[Service]:
        n = self.samples_per_series
        out = []
        for index in range(self.services):
            rng = random.Random(f"{self.seed}:{index}")
            milli_rps = round(1000 * math.exp(rng.uniform(math.log(1), math.log(200))))
            error_ppm = round(math.exp(rng.uniform(math.log(20), math.log(2000))))
            slow_ppm = rng.randrange(5_000, 80_000)
            incident = None
            if rng.random() < 0.3:
                first = rng.randrange(n - 30 * DAY // self.step, n - 1)
                length = max(1, rng.randrange(600, 7200) // self.step)
                incident = (first, min(n - 1, first + length), rng.randrange(20_000, 300_000))
            out.append(Service(service_name(index), milli_rps, error_ppm, slow_ppm, incident))
        return out

    def values(self, svc: Service, lo: int, hi: int) -> dict[str, list[int]]:
        """The four series' values at indices ``lo..hi-1``, keyed ``200``, ``500``, ``bucket``, ``count``."""
        weights = self.cumulative_weight
        total = [w * svc.milli_rps // _PPM for w in weights[lo:hi]]
        errors = [t * svc.error_ppm // _PPM for t in total]
        if svc.incident is not None:
            first, last, ppm = svc.incident
            base = weights[first] * svc.milli_rps // _PPM

            def extra(k: int) -> int:
                return (weights[k] * svc.milli_rps // _PPM - base) * ppm // _PPM

            for k in range(max(lo, first + 1), min(hi, last)):
                errors[k - lo] += extra(k)
            after = max(lo, last)
            if after < hi:  # the incident's errors stay in the counter
                final = extra(last)
                errors[after - lo:] = [e + final for e in errors[after - lo:]]
        return {
            "200": [t - e for t, e in zip(total, errors, strict=True)],
            "500": errors,
            "bucket": [t - t * svc.slow_ppm // _PPM for t in total],
            "count": total,
        }


# --- OpenMetrics and promtool ---------------------------------------------------------------------


def _selectors(name: str) -> dict[str, str]:
    return {
        "200": f'{REQUESTS}{{service="{name}",code="200"}} ',
        "500": f'{REQUESTS}{{service="{name}",code="500"}} ',
        "bucket": f'{BUCKET}{{service="{name}",le="{THRESHOLD}"}} ',
        "count": f'{COUNT}{{service="{name}"}} ',
    }


def write_openmetrics(data: Dataset, path: Path, lo: int, hi: int) -> int:
    """Samples ``lo..hi-1`` of every series as OpenMetrics text; returns the sample count."""
    suffixes = [f" {data.timestamp(i)}\n" for i in range(lo, hi)]
    per_service = [(svc, _selectors(svc.name), data.values(svc, lo, hi)) for svc in data.all_services]
    with path.open("w", encoding="utf-8") as f:
        f.write("# TYPE bench_requests counter\n")
        for _, sel, vals in per_service:
            for code in ("200", "500"):
                p = sel[code]
                f.write("".join([p + str(v) + s for v, s in zip(vals[code], suffixes, strict=True)]))
        f.write(f"# TYPE {DURATION} histogram\n")
        for _, sel, vals in per_service:
            for kind in ("bucket", "count"):
                p = sel[kind]
                f.write("".join([p + str(v) + s for v, s in zip(vals[kind], suffixes, strict=True)]))
        f.write("# EOF\n")
    return 4 * len(per_service) * (hi - lo)


_WORKER: dict[str, object] = {}


def _init_worker(data: Dataset, promtool: str) -> None:
    data.cumulative_weight  # noqa: B018 - computed once per worker process
    data.all_services  # noqa: B018
    _WORKER.update(data=data, promtool=promtool)


def _convert(lo: int, hi: int, om_dir: str, blocks_dir: str) -> int:
    data = _WORKER["data"]
    assert isinstance(data, Dataset)
    path = Path(om_dir) / f"{lo}.om"
    written = write_openmetrics(data, path, lo, hi)
    command = [str(_WORKER["promtool"]), "tsdb", "create-blocks-from", "openmetrics", "-q",
               f"--max-block-duration={BLOCK_FLAG}", str(path), blocks_dir]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    path.unlink()
    if done.returncode != 0:
        raise BenchError(f"promtool failed on block at index {lo}: {done.stderr.strip()[-2000:]}")
    return written


def _block_ranges(data: Dataset, until: int | None) -> Iterator[tuple[int, int]]:
    """Index ranges of the samples in each block (aligned to the epoch, as promtool aligns them)."""
    last = data.samples_per_series - 1
    if until is not None:
        last = min(last, (until - 1 - data.start) // data.step)
    t = data.start - data.start % BLOCK
    while t <= data.timestamp(last):
        lo = max(0, -(-(t - data.start) // data.step))
        hi = min(last + 1, -(-(t + BLOCK - data.start) // data.step))
        if hi > lo:
            yield lo, hi
        t += BLOCK


def build_blocks(data: Dataset, blocks_dir: Path, *, until: int | None = None, jobs: int = 3) -> int:
    """Backfill ``data`` (samples before ``until``) into TSDB blocks; returns the sample count."""
    promtool = require("promtool", hint="install Debian's prometheus package (apt-get install prometheus)")["promtool"]
    om_dir = blocks_dir.parent / f"{blocks_dir.name}.om"
    shutil.rmtree(blocks_dir, ignore_errors=True)
    shutil.rmtree(om_dir, ignore_errors=True)
    blocks_dir.mkdir(parents=True)
    om_dir.mkdir(parents=True)
    ranges = list(_block_ranges(data, until))
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(data, promtool)) as pool:
        futures = [pool.submit(_convert, lo, hi, str(om_dir), str(blocks_dir)) for lo, hi in ranges]
        written = sum(f.result() for f in futures)
    shutil.rmtree(om_dir, ignore_errors=True)
    return written


# --- A prepared Prometheus ------------------------------------------------------------------------


def prometheus_args() -> list[str]:
    # 200M: one 10,000-SLO query never comes near it, but a 30d window over many series might.
    return [f"--storage.tsdb.max-block-duration={BLOCK_FLAG}", "--query.max-samples=200000000"]


def prepared_tsdb(data: Dataset) -> Path:
    """A Prometheus work dir holding ``data``: built once and cached in
    ``bench/.work/data/<key>`` (delete it to rebuild)."""
    root = WORK_DIR / "data" / data.key
    ready = root / "READY.json"
    if ready.exists():
        return root / "prometheus"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"building {data.services} services x 4 series x {data.samples_per_series} samples "
        f"({data.series * data.samples_per_series / 1e6:.0f}M samples, step {data.step}s, {data.days}d); "
        "cached for later runs")
    started = time.monotonic()
    samples = build_blocks(data, root / "prometheus" / "data")
    backfill = time.monotonic() - started
    ready.write_text(json.dumps({**asdict(data), "samples": samples, "backfill_seconds": round(backfill, 1)},
                                indent=2))
    log(f"backfilled {samples / 1e6:.0f}M samples in {backfill:.0f}s")
    return root / "prometheus"


def start_prepared(data: Dataset) -> Server:
    work = prepared_tsdb(data)
    return start_prometheus(work, None, extra_args=prometheus_args())


# --- Specs ----------------------------------------------------------------------------------------


def spec_text(name: str, window: str) -> str:
    """One service's spec: an availability (ratio) and a latency SLO over its series."""
    return f"""apiVersion: slowatch/v1
service: {name}
labels: {{team: bench}}
slos:
  - name: availability
    objective: 99.9
    window: {window}
    sli:
      ratio:
        errors: {REQUESTS}{{service="{name}",code="500"}}
        total: {REQUESTS}{{service="{name}"}}
  - name: latency
    objective: 95
    window: {window}
    sli:
      latency:
        histogram: {DURATION}
        selector: '{{service="{name}"}}'
        threshold: 250ms
"""


def write_specs(directory: Path, slos: int, window: str) -> Path:
    """``slos`` SLOs (half availability, half latency), one file per service, in ``directory``."""
    if slos % 2:
        raise BenchError(f"the SLO count must be even (one availability and one latency per service), got {slos}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for index in range(slos // 2):
        name = service_name(index)
        (directory / f"{name}.yaml").write_text(spec_text(name, window))
    return directory


def services_needed(slo_counts: Sequence[int]) -> int:
    return max(slo_counts) // 2
