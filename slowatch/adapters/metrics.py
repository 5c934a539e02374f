"""slowatch's own metrics, on an explicit registry (never prometheus_client's global one).

Two kinds:

* ``SLOCollector``: a custom collector that turns the latest ``DaemonView`` into SLO series at
  scrape time. It keeps no state, so the series of an SLO removed from the spec disappear with it
  (an ordinary labelled Gauge would export its last value forever).
* ``SelfMetrics``: ordinary counters and gauges about the daemon itself, which the daemon updates.

Metric and label names are part of the public surface (INTERFACES.md, Metrics): change none.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from operator import itemgetter
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

import slowatch
from slowatch.adapters.urls import redact, scrub
from slowatch.core.budget import BudgetStatus
from slowatch.core.conventions import (
    ALERTNAME_LABEL,
    METRIC_LABEL,
    RESERVED_LABELS,
    SERVICE_LABEL,
    SEVERITY_LABEL,
    SLO_LABEL,
    STATE_LABEL,
    STATES,
    WINDOW_LABEL,
)
from slowatch.view import DaemonView, ViewHolder

log = structlog.get_logger(__name__)

SLO_LABELS = (SERVICE_LABEL, SLO_LABEL)
ALERT_LABELS = (SERVICE_LABEL, SLO_LABEL, ALERTNAME_LABEL, SEVERITY_LABEL)

# Cycles range from milliseconds (a few SLOs on a local Prometheus) to minutes (thousands of SLOs,
# retries against a slow server); the default buckets stop at 10 s.
EVALUATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class SLOCollector:
    """SLO series from ``holder.get()`` at each scrape.

    Labels: ``service``, ``slo`` (and ``window``, ``state`` where named) and the spec's own
    ``labels`` (INTERFACES.md), which never override slowatch's. ``slowatch_slo_alert_firing``
    carries ``service``, ``slo``, ``alertname`` and ``severity`` only. ``windows``: the burn-rate
    windows exported (``SLOWATCH_METRICS_WINDOWS``); None, all.
    """

    def __init__(self, holder: ViewHolder, windows: Collection[str] | None = None) -> None:
        self._holder = holder
        self.windows = frozenset(windows) if windows is not None else None

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse a clash at registration time.
        return list(_families().values())

    def collect(self) -> Iterable[Metric]:
        fam = _families()
        _add_view(lambda spec: _WithSpecLabels(fam, spec), self._holder.get(), self.windows)
        return list(fam.values())


class _Series(Protocol):
    def add_metric(self, family: str, values: list[str], value: float) -> None: ...


def _add_view(series: Callable[[Mapping[str, str]], _Series], view: DaemonView,
              windows: frozenset[str] | None) -> None:
    """Every SLO sample of ``view``, through ``series(spec labels)``: prometheus_client's samples
    (``SLOCollector``) or exposition lines (``Exposition``) from the one description."""
    for status in view.statuses:
        spec = {k: v for k, v in status.slo.labels if k not in RESERVED_LABELS}
        fam = series(spec)
        _add_status(fam, status, windows)
        for row in view.regressions.get(status.slo.id, ()):
            if row.change_percentage is not None:
                fam.add_metric("regression", [status.slo.service, status.slo.name, row.metric_name],
                               row.change_percentage / 100)
    _add_firing(series({}), view)


# Labels of the SLO families beyond service and slo, kept here so that adding samples never reads
# a family's private fields.
_EXTRA_LABELS: dict[str, tuple[str, ...]] = {
    "sli": (WINDOW_LABEL,), "burn_rate": (WINDOW_LABEL,), "state": (STATE_LABEL,),
    "excluded_seconds": (WINDOW_LABEL,),
    "regression": (METRIC_LABEL,),
}


def _label_names(family: str) -> tuple[str, ...]:
    if family == "alert_firing":
        return ALERT_LABELS
    return (*SLO_LABELS, *_EXTRA_LABELS.get(family, ()))


def _families() -> dict[str, GaugeMetricFamily]:
    def g(family: str, name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"slowatch_slo_{name}", doc, labels=list(_label_names(family)))

    return {
        "objective": g("objective", "objective_ratio", "The SLO's objective as a fraction (0.999 for 99.9%)."),
        "sli": g("sli", "sli_ratio", "Good events over total events in the SLO's window."),
        "remaining": g("remaining", "error_budget_remaining_ratio",
                       "Fraction of the window's error budget left (1 - consumed; negative once overspent)."),
        "consumed": g("consumed", "error_budget_consumed_ratio",
                      "Fraction of the window's error budget consumed (may exceed 1)."),
        "burn_rate": g("burn_rate", "burn_rate", "Error rate over the budgeted error rate, per window."),
        "state": g("state", "state", "1 for the SLO's current state, 0 for the others."),
        "exhaustion": g("exhaustion", "exhaustion_timestamp_seconds",
                        "When the budget runs out at the current (1h) burn rate; absent when it does not."),
        "regression": g("regression", "regression_change_ratio",
                        "alerting.regression: the change of each measure against its baseline window "
                        "(0.25 for +25%), from the last check."),
        "alert_firing": GaugeMetricFamily(
            "slowatch_slo_alert_firing", "1 while an alert with these labels fires.", labels=list(ALERT_LABELS)
        ),
        # Exclusions (SLOs that have some): the generated rules and dashboards read these two names.
        "excluded_seconds": g("excluded_seconds", "excluded_seconds",
                              "Seconds of each window (burn-rate windows and the SLO's) its exclusions cover."),
        "exclusion_active": GaugeMetricFamily(
            "slowatch_exclusion_active", "1 while an exclusion covers the evaluation instant, else 0.",
            labels=list(_label_names("exclusion_active"))),
    }


class _WithSpecLabels:
    """Adds samples with the SLO's own spec labels after slowatch's (INTERFACES.md: the spec's
    ``labels`` are copied onto metrics), so ``{team="identity"}`` selects a team's SLOs."""

    def __init__(self, fam: Mapping[str, GaugeMetricFamily], slo_labels: Mapping[str, str]) -> None:
        self.fam = fam
        self.extra = dict(slo_labels)

    def add_metric(self, family: str, values: list[str], value: float) -> None:
        f = self.fam[family]
        labels = {**self.extra, **dict(zip(_label_names(family), values, strict=True))}
        f.samples.append(Sample(f.name, labels, value, None))


def _add_status(fam: _Series, s: BudgetStatus, windows: frozenset[str] | None = None) -> None:
    slo = s.slo
    key = [slo.service, slo.name]
    fam.add_metric("objective", key, slo.objective)
    for state in STATES:
        fam.add_metric("state", [*key, state], 1.0 if s.state == state else 0.0)
    if slo.exclusions:  # known from the spec and the instant, whatever the measurement gave
        fam.add_metric("exclusion_active", key, 1.0 if s.exclusion is not None else 0.0)
        for window, seconds in s.excluded_seconds.items():
            if windows is None or window in windows:
                fam.add_metric("excluded_seconds", [*key, window], seconds)

    # An `error` SLO has no values (its zeros are placeholders): export none rather than a budget
    # that looks untouched. `stale` keeps the last values on purpose, as /status does.
    if s.state == "error" or (s.sli is None and s.state != "no_data"):
        # A stale SLO that never had values (a start while Prometheus is down) has none either.
        return
    if s.sli is not None:
        fam.add_metric("sli", [*key, slo.window.name], s.sli)
    # no_data: the budget is untouched by definition (INTERFACES.md), so 0 consumed is a fact.
    fam.add_metric("consumed", key, s.consumed)
    fam.add_metric("remaining", key, s.remaining)
    for window, rate in s.burn_rates.items():
        if rate is not None and (windows is None or window in windows):
            fam.add_metric("burn_rate", [*key, window], rate)
    if s.exhaustion_at is not None:
        fam.add_metric("exhaustion", key, s.exhaustion_at.timestamp())


def _add_firing(fam: _Series, view: DaemonView) -> None:
    # Two alerts may share these four labels (page on 1h/5m and on 6h/30m): one series, not a
    # duplicate sample, which would make the whole exposition invalid.
    seen: set[tuple[str, ...]] = set()
    for labels in view.firing:
        values = tuple(labels.get(name, "") for name in ALERT_LABELS)
        if values not in seen:
            seen.add(values)
            fam.add_metric("alert_firing", list(values), 1.0)



# --- The exposition, rendered once per view --------------------------------------------------------
#
# prometheus_client formats every sample on every scrape: at 10,000 SLOs (~190,000 samples) that is
# 2.1 s a scrape (bench/results/metrics_load.md). A view never changes, so the SLO part is rendered
# once per view and format, by templates per family and label set, to the bytes prometheus_client
# would write (tests/unit/test_metrics.py compares them); the daemon's own metrics, which change
# between cycles, are encoded at each scrape and appended.

_Format = tuple[str, str]
"""("text" or "openmetrics", the name escaping scheme) of one negotiated exposition."""
TEXT_FORMAT, OPENMETRICS_FORMAT = "text", "openmetrics"
_EOF = "# EOF\n"
# zlib's fastest level: the SLO part is compressed once per view (16 MB at 10,000 SLOs), and level 1
# already shrinks the repetitive exposition ~20x.
GZIP_LEVEL = 1
# How prometheus_client writes a sample value (Go's spelling: +Inf, 1e+06); untyped upstream.
_number: Callable[[float], str] = floatToGoString


class _Texts(dict[str, str]):
    """Label values as written, each worked out once: scrubbed (as every body that can quote one)
    and escaped as prometheus_client escapes them in both formats."""

    def __missing__(self, value: str) -> str:
        text = scrub(value).replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')
        self[value] = text
        return text


class _Lines:
    """The exposition lines of one SLO's samples (an ``_Series``), family by family."""

    def __init__(self, out: _Rendering, spec: Mapping[str, str]) -> None:
        self.out = out
        self.spec_names = tuple(spec)
        self.spec_values = tuple(spec.values())

    def add_metric(self, family: str, values: list[str], value: float) -> None:
        out = self.out
        template, pick = out.template(family, self.spec_names)
        texts = tuple(map(out.texts.__getitem__, pick((*values, *self.spec_values))))
        out.lines[family].append(template % (*texts, _number(value)))


class _Rendering:
    """One view's SLO families in one format."""

    def __init__(self, families: Mapping[str, GaugeMetricFamily], fmt: _Format) -> None:
        self.families = families
        self.kind, self.escaping = fmt
        self.lines: dict[str, list[str]] = {name: [] for name in families}
        self.texts = _Texts()
        self._templates: dict[tuple[str, tuple[str, ...]], tuple[str, Callable[[tuple[str, ...]], Any]]] = {}

    def template(self, family: str, spec_names: tuple[str, ...]) -> tuple[str, Callable[[tuple[str, ...]], Any]]:
        """``name{a="%s",...} %s\\n`` with the labels sorted as prometheus_client sorts them, and a
        getter of their values, in that order, from (sample values..., spec label values...)."""
        key = (family, spec_names)
        found = self._templates.get(key)
        if found is None:
            own = _label_names(family)
            index = {name: len(own) + i for i, name in enumerate(spec_names)}
            index.update({name: i for i, name in enumerate(own)})  # slowatch's labels win
            names = sorted(index)
            labels = ",".join(f'{escape_label_name(n, self.escaping).replace("%", "%%")}="%s"' for n in names)
            metric = escape_metric_name(self.families[family].name, self.escaping).replace("%", "%%")
            pick = itemgetter(*(index[n] for n in names))
            if len(names) == 1:  # itemgetter of one index gives the item, not a tuple
                single = index[names[0]]
                found = (f"{metric}{{{labels}}} %s\n", lambda values: (values[single],))
            else:
                found = (f"{metric}{{{labels}}} %s\n", pick)
            self._templates[key] = found
        return found

    def render(self) -> str:
        parts: list[str] = []
        for name, family in self.families.items():
            metric = escape_metric_name(family.name, self.escaping)
            doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            if self.kind == OPENMETRICS_FORMAT:
                doc = doc.replace('"', r'\"')
            parts.append(f"# HELP {metric} {doc}\n# TYPE {metric} {family.type}\n")
            parts.extend(self.lines[name])
        return "".join(parts)


def negotiate(accept: str) -> tuple[Callable[[Any], bytes], str, _Format | None]:
    """prometheus_client's encoder and content type for an Accept header, and the format the
    per-view rendering writes for it (None: one it does not know, served by the encoder)."""
    encoder, content_type = choose_encoder(accept)
    if isinstance(encoder, partial):
        func, escaping = encoder.func, encoder.keywords.get("escaping", openmetrics.UNDERSCORES)
    else:
        func, escaping = encoder, openmetrics.UNDERSCORES
    if func is openmetrics.generate_latest:
        return encoder, content_type, (OPENMETRICS_FORMAT, escaping)
    if func is generate_latest:
        return encoder, content_type, (TEXT_FORMAT, escaping)
    return encoder, content_type, None


class _Rendered:
    """The SLO part of one view in one format, and its gzip stream kept open for the tail."""

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._lock = threading.Lock()
        self._gzip: tuple[bytes, zlib._Compress] | None = None

    def _stream(self) -> tuple[bytes, zlib._Compress]:
        with self._lock:
            if self._gzip is None:
                stream = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
                self._gzip = (stream.compress(self.text), stream)
            head, stream = self._gzip
            return head, stream.copy()  # the cached stream stays open; each scrape finishes its own copy

    def gzipped(self, tail: bytes) -> bytes:
        head, stream = self._stream()
        return head + stream.compress(tail) + stream.flush()


class Registry(CollectorRegistry):
    """The daemon's registry: the SLO collector, and ``own`` (the daemon's own metrics, process
    and platform). Collecting it collects both; ``exposition`` serves it fast."""

    def __init__(self, holder: ViewHolder, windows: Collection[str] | None = None) -> None:
        super().__init__()
        self.holder = holder
        self.slos = SLOCollector(holder, windows)
        self.own = CollectorRegistry()
        self.register(self.slos)
        self.register(self.own)
        self._cache: tuple[DaemonView | None, dict[_Format, _Rendered]] = (None, {})
        self._lock = threading.Lock()
        self._asked: set[tuple[_Format, bool]] = set()
        """The formats (and gzip) scrapes asked for: ``prerender`` makes those for each new view."""

    def rendered(self, fmt: _Format) -> _Rendered:
        """The SLO part of the current view in ``fmt``, rendered at the first scrape that asks."""
        view = self.holder.get()
        with self._lock:  # one render per view and format, however many scrapes arrive at once
            if self._cache[0] is not view:
                self._cache = (view, {})
            store = self._cache[1]
            found = store.get(fmt)
            if found is None:
                out = _Rendering(_families(), fmt)
                _add_view(lambda spec: _Lines(out, spec), view, self.slos.windows)
                found = store[fmt] = _Rendered(out.render().encode("utf-8"))
        return found


    def prerender(self) -> None:
        """Render the current view in every format scraped so far, so that the next scrape finds it
        ready (``Prerendering`` calls it after each publish, off the cycle's thread)."""
        with self._lock:
            asked = sorted(self._asked)
        for fmt, gzipped in asked:
            rendered = self.rendered(fmt)
            if gzipped:
                rendered._stream()

    def serve(self, fmt: _Format, gzipped: bool) -> _Rendered:
        with self._lock:
            self._asked.add((fmt, gzipped))
        return self.rendered(fmt)


class Prerendering:
    """A ``ports.Publisher``: publishes a view to ``holder``, then renders it for /metrics in a
    background thread, so a scrape right after a cycle does not wait for the rendering (~0.5 s at
    10,000 SLOs, bench/results/metrics_load.md)."""

    def __init__(self, holder: ViewHolder, registry: Registry) -> None:
        self.holder = holder
        self.registry = registry
        self.last: threading.Thread | None = None
        """The latest rendering thread (tests join it)."""

    def publish(self, view: DaemonView) -> None:
        self.holder.publish(view)
        self.last = threading.Thread(target=self._render, name="slowatch-metrics-render", daemon=True)
        self.last.start()

    def current(self) -> DaemonView:
        return self.holder.current()

    def _render(self) -> None:
        try:
            self.registry.prerender()
        except Exception as exc:  # a scrape renders it again, and says why if it fails too
            log.exception("metrics_prerender_failed", error=repr(exc))


def exposition(registry: CollectorRegistry, accept: str, *, names: Sequence[str] = (),
               gzipped: bool = False) -> tuple[bytes, str]:
    """/metrics: the body (gzip if ``gzipped``) and its content type. A ``Registry`` answers from its
    per-view rendering; a ``name[]`` filter or any other registry goes through prometheus_client."""
    encoder, content_type, fmt = negotiate(accept)
    if names or fmt is None or not isinstance(registry, Registry):
        source: Any = registry.restricted_registry(names) if names else registry
        body = scrub(encoder(source).decode("utf-8")).encode("utf-8")
        return (gzip.compress(body) if gzipped else body), content_type
    tail = scrub(encoder(registry.own).decode("utf-8")).encode("utf-8")
    rendered = registry.serve(fmt, gzipped)
    if gzipped:
        return rendered.gzipped(tail), content_type
    return rendered.text + tail, content_type



class SelfMetrics:
    """The daemon's own counters and gauges; the daemon calls the methods, tests read the registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.evaluation_duration = Histogram(
            "slowatch_evaluation_duration_seconds", "Wall time of one evaluation cycle.",
            buckets=EVALUATION_BUCKETS, registry=r,
        )
        self.evaluations = Counter(
            "slowatch_evaluations", "Evaluation cycles, by result (success or failure).", ["result"], registry=r
        )
        for result in ("success", "failure"):  # both series exist from the start, so rate() works
            self.evaluations.labels(result)
        self.last_success = Gauge(
            "slowatch_last_successful_evaluation_timestamp_seconds",
            "Evaluation instant of the last successful cycle.", registry=r,
        )
        self.build_info = Gauge("slowatch_build_info", "Always 1; the version is a label.", ["version"], registry=r)
        self.build_info.labels(slowatch.__version__).set(1)
        self.queries = Counter("slowatch_queries", "Queries sent to Prometheus.", registry=r)
        self.query_errors = Counter("slowatch_query_errors", "Queries to Prometheus that failed.", registry=r)
        self.samples_read = Counter("slowatch_samples_read", "Samples read from Prometheus answers.", registry=r)
        self.notifications = Counter(
            "slowatch_alertmanager_notifications", "Alerts posted to an Alertmanager.", ["url"], registry=r
        )
        self.notification_errors = Counter(
            "slowatch_alertmanager_errors", "Failed posts to an Alertmanager.", ["url"], registry=r
        )
        self.spec_reload_success = Gauge(
            "slowatch_spec_reload_success", "1 if the last spec reload succeeded, 0 if it failed.", registry=r
        )
        self.spec_last_success = Gauge(
            "slowatch_spec_last_reload_success_timestamp_seconds", "When the spec was last loaded.", registry=r
        )
        # Sharding (README, "High availability and sharding"): with these, a rule can show that the
        # shards cover every SLO exactly once (deploy/kubernetes-sharded/shard-coverage.yaml).
        self.spec_slos = Gauge("slowatch_spec_slos", "SLOs in the whole spec, before sharding.", registry=r)
        self.shard_slos = Gauge("slowatch_shard_slos", "SLOs this replica evaluates.", ["shard", "shards"],
                                registry=r)
        self.shard_set_hash = Gauge(
            "slowatch_shard_slo_set_hash", "A 52-bit fingerprint of this replica's SLO ids: equal on the "
            "replicas of one shard.", ["shard"], registry=r,
        )

    def observe_cycle(self, duration_s: float, ok: bool, at: datetime) -> None:
        """One finished cycle; ``at`` is its evaluation instant (not the wall clock at its end)."""
        self.evaluation_duration.observe(duration_s)
        self.evaluations.labels("success" if ok else "failure").inc()
        if ok:
            self.last_success.set(at.timestamp())

    def add_queries(self, n: int, errors: int = 0, samples: int = 0) -> None:
        self.queries.inc(n)
        self.query_errors.inc(errors)
        self.samples_read.inc(samples)

    def delivery(self, url: str, sent: int, errors: int = 0) -> None:
        url = redact(url)
        self.notifications.labels(url).inc(sent)
        self.notification_errors.labels(url).inc(errors)

    def shard(self, shard: tuple[int, int] | None, spec_slos: int, slo_ids: Collection[str], set_hash: int) -> None:
        """This replica's share after a (re)load; unsharded it is shard 1 of 1."""
        k, n = shard or (1, 1)
        self.spec_slos.set(spec_slos)
        self.shard_slos.clear()
        self.shard_slos.labels(str(k), str(n)).set(len(slo_ids))
        self.shard_set_hash.clear()
        self.shard_set_hash.labels(str(k)).set(set_hash)

    def spec_reload(self, ok: bool, at: datetime) -> None:
        self.spec_reload_success.set(1 if ok else 0)
        if ok:
            self.spec_last_success.set(at.timestamp())


def new_registry(holder: ViewHolder, *, process: bool = True,
                 windows: Collection[str] | None = None) -> tuple[Registry, SelfMetrics]:
    """A registry with the SLO collector (burn rates of ``windows`` only, if given) and the self
    metrics (and, by default, the process and platform collectors the global registry would have
    had: memory, CPU, open fds)."""
    registry = Registry(holder, windows)
    if process:
        ProcessCollector(registry=registry.own)
        PlatformCollector(registry=registry.own)
    return registry, SelfMetrics(registry.own)

