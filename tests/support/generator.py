"""Deterministic synthetic traffic with its exact ground truth, for tests, benchmarks and the demo.

``generate(end)`` builds counters and classic histograms for the services of the example spec
(``ENDPOINTS``), one sample every ``step`` seconds for ``days`` days ending at ``end``, and keeps
the exact number of events behind every sample. Nothing here reads the clock or the environment:
the same arguments give the same bytes.

Events are counted at sample resolution: ``increments[i]`` is the number of events in
``(t[i] - step, t[i]]``, i.e. what a scrape at ``t[i]`` sees as new. So "events in (a, b]" is exact
for any a, b, and equals what Prometheus' ``increase(x[b-a])`` computes at ``b`` when ``a`` and
``b`` are sample instants (no extrapolation happens when both window edges hold a sample).

The scenario (``Scenario``, built by ``build_scenario``) places known features in the last week:

* ``auth-incident``: auth 20% 5xx (code 503) for 30 minutes, day -2 14:00-14:30 UTC; the 1h burn
  rate of the 99.95% SLO reaches ~200x (page threshold 14.4x), and the 30d budget ends ~56% used
  (~20% of it by the baseline), so the 50% consumed alert fires.
* ``agent-incident``: both agent endpoints 1.2% 5xx for 4 hours, day -6 09:00-13:00; 12x on 1h
  (no fast page) but ~8.8x on 6h and 12x on 30m at its end: the 6x page fires, the 14.4x one not.
* ``knowledge-quiet-hour``: day -3 03:00-04:00, knowledge gets 0.2 req/s (a batch job) and half of
  it fails. Event weighted, that day's error ratio is ~0.22%; the mean of its 5-minute ratios is
  ~2.3%, 10x more: averaging ratios weighs the hour's 720 requests as 1/24 of the day's 1.5M.
* ``gateway-dip`` (day -4 15:00-15:20 at 150 req/s) and three single minutes at 190 req/s
  (day -3 12:01, 12:03, 12:05): the only minutes where the gateway serves < 200 req/s.
* ``CounterReset``: every agent series restarts at day -5 03:17 (a process restart right after the
  scrape at 03:16, so no event is lost and Prometheus' reset handling recovers the exact count).
* ``Silence``: knowledge writes no samples in the last 2 hours (its pods are gone): a 1h window at
  ``end`` holds no sample at all, so ``increase`` returns nothing.

"Day -k" is k days before the last UTC midnight at or before ``end``.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Literal

from slowatch.core.promql import go_float

DAY = 86400
DEFAULT_SEED = 20261101

REQUESTS = "http_requests"  # counter family: samples are http_requests_total
REQUESTS_TOTAL = "http_requests_total"
DURATION = "http_request_duration_seconds"  # classic histogram family
BUCKET, COUNT, SUM = f"{DURATION}_bucket", f"{DURATION}_count", f"{DURATION}_sum"

BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 0.8, 1, 2, 2.5, 5, 8, 10, math.inf)
LE: tuple[str, ...] = tuple(go_float(b) for b in BOUNDS)  # the Go client's spelling: "0.2", "1", "+Inf"
# What one request in each bucket adds to _sum, in microseconds (integers, so _sum stays exact):
# the bucket's midpoint, and 12 s for the +Inf bucket.
_MIDPOINT_US: tuple[int, ...] = tuple(
    (round(lo * 1e6) + round(hi * 1e6)) // 2 if hi != math.inf else 12_000_000
    for lo, hi in zip((0.0, *BOUNDS[:-1]), BOUNDS, strict=True)
)
_SUM_UNIT = 1_000_000

CODES = ("200", "404", "500", "503")  # baseline 5xx are 500, episode 5xx are 503
CLIENT_ERROR_RATIO = 0.01  # 404s: not errors for availability, which counts code=~"5.."
_PEAK_SECOND = 16 * 3600  # busiest at 16:00 UTC, quietest at 04:00
_NOISE = 0.015  # relative sd of per-sample traffic, clipped to +-4% so the gateway never dips by chance
_NOISE_CLIP = 0.04


@dataclass(frozen=True)
class Endpoint:
    service: str
    endpoint: str
    trough_rps: float
    """Requests per second at 04:00 UTC; the rate follows a cosine up to ``peak_rps`` at 16:00."""
    peak_rps: float
    error_ratio: float
    """Mean share of 5xx outside episodes (per-sample share is bursty: mean times Exp(1))."""
    latency_cdf: tuple[float, ...]
    """Fraction of requests at or under each bound of ``BOUNDS`` (the last is 1)."""


# The services and endpoints of the example spec (deploy/), with the SLOs they are built for.
ENDPOINTS: tuple[Endpoint, ...] = (
    # All traffic passes the gateway: 99% < 100ms, and the throughput SLOs (>= 200 req/s).
    Endpoint("gateway", "/api", 250, 450, 0.0003,
             (0.02, 0.10, 0.45, 0.85, 0.994, 0.998, 0.9985, 0.9992, 0.9995, 0.9996, 0.9998, 0.99985,
              0.9999, 0.99995, 0.99998, 1.0)),
    # 99.95% availability, 95% < 200ms.
    Endpoint("auth", "/auth/login", 30, 60, 0.0001,
             (0.0, 0.01, 0.08, 0.30, 0.70, 0.965, 0.98, 0.995, 0.998, 0.999, 0.9997, 0.9998, 0.9999,
              1.0, 1.0, 1.0)),
    # 99.9% availability over both agent endpoints; 95% < 2s simple, 95% < 8s complex.
    Endpoint("agent", "/agents/execute/simple", 8, 16, 0.0004,
             (0.0, 0.0, 0.0, 0.001, 0.01, 0.05, 0.08, 0.30, 0.55, 0.70, 0.962, 0.98, 0.995, 0.999,
              0.9995, 1.0)),
    Endpoint("agent", "/agents/execute/complex", 2, 5, 0.0004,
             (0.0, 0.0, 0.0, 0.0, 0.0, 0.002, 0.005, 0.03, 0.10, 0.18, 0.45, 0.58, 0.85, 0.958, 0.985,
              1.0)),
    # 99.5% availability, 95% < 800ms.
    Endpoint("knowledge", "/knowledge/search", 12, 25, 0.002,
             (0.0, 0.001, 0.01, 0.05, 0.20, 0.50, 0.60, 0.85, 0.963, 0.98, 0.995, 0.997, 0.999, 0.9997,
              0.9999, 1.0)),
)

# The seed's burst capacity ("500 RPS for 5 minutes, measured hourly") needs bursts to measure:
# an hourly 5-minute load test at BURST_RPS on the gateway, in (hh:30, hh:35].
BURST_SERVICE = "gateway"
BURST_RPS = 560.0
BURST_PERIOD, BURST_OFFSET, BURST_SECONDS = 3600, 1800, 300


def in_burst(service: str, ts: int) -> bool:
    """The sample at ``ts`` counts requests of the hourly load-test burst."""
    return service == BURST_SERVICE and 0 < (ts - BURST_OFFSET) % BURST_PERIOD <= BURST_SECONDS


# Per-minute gateway totals are kept off multiples of 60 so that `sum(rate(...[1m]))` never equals
# an integer req/s exactly: at such a tie the order Prometheus sums the per-series floats in
# would decide `>= bool`, and the truth could not.
TIE_FREE_SERVICE = "gateway"


@dataclass(frozen=True)
class Episode:
    """Traffic of ``service`` (``endpoints``) differs from the daily pattern for the samples in
    ``(start, end]``: a forced 5xx share (as code 503) and/or a fixed request rate."""

    name: str
    service: str
    endpoints: tuple[str, ...]
    start: int
    end: int
    error_ratio: float | None = None
    requests_per_second: float | None = None
    note: str = ""


@dataclass(frozen=True)
class CounterReset:
    """Every series of ``service`` restarts from zero: the sample at ``at`` counts only the events
    in ``(at - step, at]`` (the process restarted right after the previous scrape)."""

    service: str
    at: int


@dataclass(frozen=True)
class Silence:
    """``service`` writes no sample in ``(start, end]``: its last sample is at ``start``."""

    service: str
    start: int
    end: int


@dataclass(frozen=True)
class Scenario:
    start: int
    """The first sample (all counters are 0 there)."""
    end: int
    step: int
    seed: int
    episodes: tuple[Episode, ...]
    reset: CounterReset
    silence: Silence

    def episode(self, name: str) -> Episode:
        for e in self.episodes:
            if e.name == name:
                return e
        raise KeyError(f"no episode {name!r}; there are {[e.name for e in self.episodes]}")


def _check_step(step: int) -> None:
    # Slices are 1 minute and rate() looks back 1m: a step dividing 60 puts samples on both edges.
    if step <= 0 or 60 % step:
        raise ValueError(f"step must divide 60 seconds (e.g. 15, 30, 60), got {step}")


def build_scenario(end: int, *, days: int = 31, step: int = 60, seed: int = DEFAULT_SEED,
                   extra_episodes: Sequence[Episode] = ()) -> Scenario:
    """The scenario of ``generate(end, ...)``: where each feature lies (see the module docstring).
    ``extra_episodes`` add to the built-in ones (e.g. an incident happening "now" for the daemon's
    tests); the first episode covering a sample wins, built-in ones first."""
    _check_step(step)
    if end % step:
        raise ValueError(f"end must be a multiple of step={step}s, got {end}")
    start = end - days * DAY
    midnight = end - end % DAY

    def at(day: int, hhmm: str) -> int:
        h, m = hhmm.split(":")
        return midnight - day * DAY + int(h) * 3600 + int(m) * 60

    def ep(name: str, service: str, endpoints: tuple[str, ...], begin: int, minutes: int, *,
           error_ratio: float | None = None, rps: float | None = None, note: str = "") -> Episode:
        return Episode(name, service, endpoints, begin, begin + minutes * 60, error_ratio, rps, note)

    agent = tuple(e.endpoint for e in ENDPOINTS if e.service == "agent")
    episodes = (
        ep("auth-incident", "auth", ("/auth/login",), at(2, "14:00"), 30, error_ratio=0.20,
           note="1h burn ~200x of 99.95%: pages (14.4x on 1h and 5m)"),
        ep("agent-incident", "agent", agent, at(6, "09:00"), 240, error_ratio=0.012,
           note="12x on 1h (no fast page), ~8.8x on 6h and 12x on 30m at its end (6x page)"),
        ep("knowledge-quiet-hour", "knowledge", ("/knowledge/search",), at(3, "03:00"), 60,
           error_ratio=0.5, rps=0.2,
           note="a quiet hour with a high error ratio: mean of 5m ratios >> event-weighted ratio"),
        ep("gateway-dip", "gateway", ("/api",), at(4, "15:00"), 20, rps=150, note="20 slices < 200 req/s"),
        *(ep(f"gateway-dip-minute-{k}", "gateway", ("/api",), at(3, f"12:0{2 * k - 1}") - 60, 1, rps=190,
             note="one slice < 200 req/s") for k in (1, 2, 3)),
        *extra_episodes,
    )
    scenario = Scenario(
        start=start, end=end, step=step, seed=seed, episodes=episodes,
        reset=CounterReset("agent", at(5, "03:17")),
        silence=Silence("knowledge", end - 2 * 3600, end),
    )
    first = min([e.start for e in episodes] + [scenario.reset.at - step])
    if first <= start:
        raise ValueError(f"days={days} is too short for the scenario: it starts {(end - first) / DAY:.2f} "
                         "days before end (use days >= 7)")
    return scenario


# A label filter: a label's value, or the collection of values allowed (missing labels are "").
Labels = Mapping[str, str | Collection[str]]


@dataclass(frozen=True, eq=False)
class Series:
    """One counter series: ``increments[i]`` events in ``(t[i] - step, t[i]]``, ``t[i] = start + i*step``.

    Samples exist for indices ``0..last``; values restart from zero at the indices in ``resets``.
    ``unit`` is how many increments make 1 in the written value (10**6 for ``_sum``: microseconds).
    """

    family: str
    kind: Literal["counter", "histogram"]
    name: str
    labels: tuple[tuple[str, str], ...]
    start: int
    step: int
    increments: array[int]
    last: int
    resets: frozenset[int] = frozenset()
    unit: int = 1

    def timestamp(self, i: int) -> int:
        return self.start + i * self.step

    @cached_property
    def values(self) -> array[int]:
        """The counter as written (in 1/unit), for indices ``0..last``."""
        out = array("q", bytes(8 * (self.last + 1)))
        total = 0
        for i in range(self.last + 1):
            total = self.increments[i] if i in self.resets else total + self.increments[i]
            out[i] = total
        return out

    @cached_property
    def cumulative(self) -> array[int]:
        """Events in ``(start, t[i]]``, ignoring resets: the truth behind every window."""
        return array("q", itertools.accumulate(self.increments))

    def text(self, i: int) -> str:
        v = self.values[i]
        return str(v) if self.unit == 1 else repr(v / self.unit)

    def matches(self, name: str, labels: Labels) -> bool:
        if name != self.name:
            return False
        mine = dict(self.labels)
        for k, want in labels.items():
            have = mine.get(k, "")
            if (have != want) if isinstance(want, str) else (have not in want):
                return False
        return True


@dataclass(frozen=True)
class SliceCount:
    """Time slices of a throughput SLI: ``total`` slices with data, ``good`` ones at or above the
    minimum, and ``ties``, slices exactly at the minimum, where float summation order decides."""

    good: int
    total: int
    ties: int


RATE_2M_WINDOW: Mapping[tuple[str, str], int] = {
    # The seconds of events ``rate(x[2m])`` over 60 s samples divides by, measured on the test
    # history against History.slices (engine, version). Prometheus 2's closed range [t-2m, t]
    # holds 3 samples: the 2-minute rate. Prometheus 3's (t-2m, t] holds 2, extrapolated to the
    # range: the last minute's rate. VictoriaMetrics adds the sample before the range: 2 minutes.
    ("prometheus", "2.42"): 120,
    ("prometheus", "3.5"): 60,
    ("victoria-metrics", "1.79"): 120,
    ("victoria-metrics", "1.145"): 120,
}


@dataclass(frozen=True)
class History:
    """The generated series and the exact truth behind them.

    Label filters map a label to a value or to a collection of allowed values
    (``{"service": "auth", "code": {"500", "503"}}``); series missing the label have it empty.
    """

    scenario: Scenario
    series: tuple[Series, ...]

    @property
    def start(self) -> int:
        return self.scenario.start

    @property
    def end(self) -> int:
        return self.scenario.end

    @property
    def step(self) -> int:
        return self.scenario.step

    def select(self, metric: str, labels: Labels) -> list[Series]:
        return [s for s in self.series if s.matches(metric, labels)]

    def _index(self, ts: int) -> int:
        """Index of the last sample at or before ``ts`` (-1 before the first)."""
        return min(max((ts - self.start) // self.step, -1), (self.end - self.start) // self.step)

    def _events(self, metric: str, labels: Labels, start: int, end: int) -> int:
        if end < start:
            raise ValueError(f"window end {end} is before its start {start}")
        a, b = self._index(start), self._index(end)
        return sum(s.cumulative[b] - (s.cumulative[a] if a >= 0 else 0) for s in self.select(metric, labels))

    def increase(self, metric: str, labels: Labels, start: int, end: int) -> int:
        """Exact events in ``(start, end]`` summed over the series of ``metric`` matching ``labels``
        (for buckets pass ``le``), whatever the counter resets."""
        if metric == SUM:
            raise ValueError(f"{SUM} is in seconds, not events: use duration_sum()")
        return self._events(metric, labels, start, end)

    def duration_sum(self, labels: Labels, start: int, end: int) -> float:
        """Seconds added to ``_sum`` in ``(start, end]`` (exact in microseconds, then divided once)."""
        return self._events(SUM, labels, start, end) / _SUM_UNIT

    def slices(self, minimum: float, start: int, end: int, *, metric: str = REQUESTS_TOTAL,
               labels: Labels | None = None, rate_window: int = 60) -> SliceCount:
        """What ``sum_over_time((sum(rate(metric{labels}[1m])) >= bool minimum)[W:1m])`` and
        ``count_over_time((...)[W:1m])`` count at ``end`` with ``W = end - start``.

        Slices are the minutes in ``[start, end]``, both inclusive (Prometheus 2.x ranges are
        closed; VictoriaMetrics' are (start, end], so pass ``start + 60`` for it). A slice ``s`` has
        data when some matching series has samples at ``s - rate_window`` and ``s``; its rate is
        then exactly the events in ``(s - rate_window, s]`` / ``rate_window``, compared as a
        fraction, not a float. ``rate_window=120`` is what VictoriaMetrics 1.79 computes for
        ``rate(x[1m])`` over 60 s samples: it widens a window that short and takes the sample before.
        ``RATE_2M_WINDOW`` holds what each engine computes for ``rate(x[2m])``.
        """
        if rate_window <= 0 or rate_window % self.step:
            raise ValueError(f"rate_window must be a multiple of step={self.step}s, got {rate_window}")
        labels = {"service": TIE_FREE_SERVICE} if labels is None else labels
        chosen = self.select(metric, labels)
        minimum_q = Fraction(minimum)
        good = total = ties = 0
        first = -(-start // 60) * 60
        for s in range(max(first, self.start + rate_window), end + 1, 60):
            a, b = (s - rate_window - self.start) // self.step, (s - self.start) // self.step
            live = [x for x in chosen if b <= x.last]
            if not live:
                continue
            rate = Fraction(sum(x.cumulative[b] - x.cumulative[a] for x in live), rate_window)
            total += 1
            good += rate >= minimum_q
            ties += rate == minimum_q
        return SliceCount(good=good, total=total, ties=ties)


def _stochastic_round(x: float, rng: random.Random) -> int:
    """An integer with expectation ``x`` (x >= 0): keeps small rates from rounding to zero."""
    return int(x + rng.random())


def _traffic_rps(e: Endpoint, ts: int) -> float:
    peakness = (1 + math.cos(2 * math.pi * (ts - _PEAK_SECOND) / DAY)) / 2
    return e.trough_rps + (e.peak_rps - e.trough_rps) * peakness


def _endpoint_series(e: Endpoint, scenario: Scenario) -> list[Series]:
    sc = scenario
    n = (sc.end - sc.start) // sc.step + 1
    last = (sc.silence.start - sc.start) // sc.step if e.service == sc.silence.service else n - 1
    resets = frozenset({(sc.reset.at - sc.start) // sc.step}) if e.service == sc.reset.service else frozenset()
    episodes: dict[int, Episode] = {}
    for x in sc.episodes:
        if x.service == e.service and e.endpoint in x.endpoints:
            for i in range((x.start - sc.start) // sc.step + 1, (x.end - sc.start) // sc.step + 1):
                episodes[i] = x

    def zeros() -> array[int]:
        return array("q", bytes(8 * n))

    codes = {c: zeros() for c in CODES}
    buckets = [zeros() for _ in BOUNDS]
    count, duration = zeros(), zeros()
    rng = random.Random(f"{sc.seed}:{e.service}:{e.endpoint}")  # one stream per endpoint
    tie_free = e.service == TIE_FREE_SERVICE
    minute_total = 0
    cdf = e.latency_cdf
    for i in range(1, last + 1):
        ts = sc.start + i * sc.step
        ep = episodes.get(i)
        if ep and ep.requests_per_second is not None:
            rps = ep.requests_per_second
        else:
            rps = BURST_RPS if in_burst(e.service, ts) else _traffic_rps(e, ts)
        noise = 1 + max(-_NOISE_CLIP, min(_NOISE_CLIP, rng.gauss(0, _NOISE)))
        total = _stochastic_round(rps * sc.step * noise, rng)
        minute_total += total
        if ts % 60 == 0:
            if tie_free and minute_total % 60 == 0:
                total += 1
                minute_total += 1
            minute_total = 0
        if ep and ep.error_ratio is not None:
            errors, error_code = _stochastic_round(total * ep.error_ratio, rng), "503"
        else:
            errors, error_code = _stochastic_round(total * e.error_ratio * rng.expovariate(1.0), rng), "500"
        errors = min(errors, total)
        client = _stochastic_round((total - errors) * CLIENT_ERROR_RATIO, rng)
        codes[error_code][i] = errors
        codes["404"][i] = client
        codes["200"][i] = total - errors - client
        # One shared uniform keeps the cumulative bucket counts monotonic in the bound.
        u = rng.random()
        below = 0
        spent = 0
        for b, f in enumerate(cdf):
            c = int(total * f + u)
            buckets[b][i] = c
            spent += (c - below) * _MIDPOINT_US[b]
            below = c
        count[i] = total
        duration[i] = spent

    base = (("service", e.service), ("endpoint", e.endpoint))

    def counter(labels: tuple[tuple[str, str], ...], inc: array[int]) -> Series:
        return Series(REQUESTS, "counter", REQUESTS_TOTAL, labels, sc.start, sc.step, inc, last, resets)

    def histogram(name: str, labels: tuple[tuple[str, str], ...], inc: array[int], unit: int = 1) -> Series:
        return Series(DURATION, "histogram", name, labels, sc.start, sc.step, inc, last, resets, unit)

    return [
        *(counter((*base, ("code", c)), codes[c]) for c in CODES),
        *(histogram(BUCKET, (*base, ("le", le)), buckets[b]) for b, le in enumerate(LE)),
        histogram(COUNT, base, count),
        histogram(SUM, base, duration, _SUM_UNIT),
    ]


def _check_resets(series: Iterable[Series]) -> None:
    """A restart Prometheus cannot see (the first value after it not below the last before it)
    would make ``increase`` differ from the truth: refuse to generate such data."""
    for s in series:
        for r in s.resets:
            before, after = s.values[r - 1], s.values[r]
            if 0 < before <= after:
                raise ValueError(f"{s.name}{dict(s.labels)}: reset at index {r} is undetectable "
                                 f"({before} -> {after}); move CounterReset.at")


def generate(end: int, *, days: int = 31, step: int = 60, seed: int = DEFAULT_SEED,
             extra_episodes: Sequence[Episode] = ()) -> History:
    """``days`` of history ending at ``end`` (unix seconds, a multiple of ``step``)."""
    scenario = build_scenario(end, days=days, step=step, seed=seed, extra_episodes=extra_episodes)
    series = tuple(s for e in ENDPOINTS for s in _endpoint_series(e, scenario))
    _check_resets(series)
    return History(scenario=scenario, series=series)


def _families(series: Iterable[Series]) -> dict[str, list[Series]]:
    out: dict[str, list[Series]] = {}
    for s in series:
        out.setdefault(s.family, []).append(s)
    return out


def _selector(s: Series) -> str:
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in s.labels)
    return s.name + "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(s.labels, escaped, strict=True)) + "}"


def write_openmetrics(series: Sequence[Series], path: Path, start: int | None = None, end: int | None = None) -> int:
    """Write the samples with ``start <= t < end`` as OpenMetrics text (timestamps in seconds,
    ``# EOF`` last) for ``promtool tsdb create-blocks-from openmetrics``; returns the sample count.

    Each family is one block; a counter series' samples are contiguous, a histogram's buckets,
    count and sum are written together per timestamp (an OpenMetrics MetricPoint).
    """
    written = 0
    with path.open("w", encoding="utf-8") as f:
        for family, members in _families(series).items():
            kind = members[0].kind
            f.write(f"# TYPE {family} {kind}\n")
            groups: dict[tuple[tuple[str, str], ...], list[Series]] = {}
            for s in members:
                key = s.labels if kind == "counter" else tuple(kv for kv in s.labels if kv[0] != "le")
                groups.setdefault(key, []).append(s)
            for group in groups.values():
                lo, hi = _window(group[0], start, end)
                prefixes = [_selector(s) + " " for s in group]
                for i in range(lo, hi):
                    ts = f" {group[0].timestamp(i)}\n"
                    f.write("".join(p + s.text(i) + ts for p, s in zip(prefixes, group, strict=True)))
                written += (hi - lo) * len(group)
        f.write("# EOF\n")
    return written


def _window(s: Series, start: int | None, end: int | None) -> tuple[int, int]:
    """Index range of ``s``'s samples with ``start <= t < end``."""
    lo = 0 if start is None else max(0, -(-(start - s.start) // s.step))
    hi = s.last + 1 if end is None else min(s.last + 1, max(0, -(-(end - s.start) // s.step)))
    return lo, max(lo, hi)


def write_vm_jsonl(series: Sequence[Series], path: Path) -> int:
    """Write every series as one line of VictoriaMetrics' ``/api/v1/import`` JSON (timestamps in
    ms); returns the sample count. Far smaller than text exposition: labels once per series."""
    written = 0
    with path.open("w", encoding="utf-8") as f:
        for s in series:
            n = s.last + 1
            values: list[float] = list(s.values) if s.unit == 1 else [v / s.unit for v in s.values]
            line = {
                "metric": {"__name__": s.name, **dict(s.labels)},
                "values": values,
                "timestamps": [s.timestamp(i) * 1000 for i in range(n)],
            }
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
            written += n
    return written
