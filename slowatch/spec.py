"""Spec files (``apiVersion: slowatch/v1``) -> ``slowatch.core.model.SLO``.

The wire format is a set of pydantic models (unknown keys forbidden) kept apart from the frozen
core dataclasses: the core never sees pydantic. Every problem in every file is collected and
raised once as ``SpecError``, each with its file, field path and what to write instead.

Semantic checks (durations, PromQL, ranges) live in validators rather than after loading, so
that pydantic reports them together with type and key errors in a single pass.
"""

from __future__ import annotations

import difflib
import io
import math
import os
import re
from collections.abc import Callable, Hashable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import promql_parser
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from slowatch import formats
from slowatch.core.conventions import RESERVED_LABELS
from slowatch.core.exclusions import RRuleError, check_rrule
from slowatch.core.model import (
    EVENTS,
    SLI,
    SLO,
    WEIGHTS,
    AlertPolicy,
    CalendarWindow,
    Component,
    CompositeSLI,
    Exclusion,
    LatencySLI,
    RatioSLI,
    RegressionPolicy,
    RollingWindow,
    ThroughputSLI,
    Window,
)
from slowatch.core.promql import WINDOW_PLACEHOLDER
from slowatch.core.windows import DurationError, format_duration, parse_duration, parse_latency
from slowatch.errors import SpecError, SpecProblem
from slowatch.formats.common import show as _show
from slowatch.spec_cache import SpecCache, cache_key

__all__ = ["API_VERSION", "RESERVED_LABELS", "load_specs"]

API_VERSION = "slowatch/v1"
SPEC_SUFFIXES = (".yaml", ".yml")

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SELECTOR_EXAMPLE = 'http_requests_total{service="auth",code=~"5.."}'
_RAW_EXAMPLE = 'sum(increase(http_requests_total{code=~"5.."}[' + WINDOW_PLACEHOLDER + "]))"
# A raw query is counted over whole windows ending now ({{.window}} is its only range), so the
# events of an excluded span cannot be taken out of it.
_RAW_EXCLUDED = (
    "exclusions need a ratio of series selectors: a raw query (total_query with " + WINDOW_PLACEHOLDER
    + ") is counted over whole windows only, so excluded spans cannot be subtracted from it; write "
    'the ratio as total/errors (or good) selectors, e.g. total: http_requests_total{service="auth"}, '
    "or drop the exclusions (a file's apply to all its SLOs: move this one to another file)"
)
# What a missing key looks like when written, for "missing" problems.
_EXAMPLES = {
    "apiVersion": f"apiVersion: {API_VERSION}",
    "service": "service: auth",
    "slos": "slos: [{name: ..., objective: ..., window: ..., sli: ...}]",
    "name": "name: login-availability",
    "objective": "objective: 99.9",
    "window": "window: 30d",
    "sli": "sli: {ratio: {total: ..., errors: ...}}",
    "calendar": "calendar: month",
    "histogram": "histogram: http_request_duration_seconds",
    "threshold": "threshold: 200ms",
    "query": "query: sum(rate(http_requests_total[1m]))",
    "minimum": "minimum: 200",
    "components": "components: [{slo: auth/login-availability, weight: 1}]",
    "slo": "slo: auth/login-availability",
    "reason": "reason: planned database migration",
}
# Discriminated-union tags appear in pydantic's error locations; they are not keys of the file.
_ROLLING, _CALENDAR = "<rolling>", "<calendar>"
_NOT_KEYS = frozenset({_ROLLING, _CALENDAR, "[key]"})


# ---------------------------------------------------------------------------------------------
# Field checks. Each raises ValueError with the whole message; pydantic adds the location.


def _num(value: float) -> str:
    return f"{value:.10g}"


def _label_safe(value: str) -> str:
    if not _NAME.match(value):
        fixed = re.sub(r"[^a-zA-Z0-9_.-]+", "-", value.strip()).strip("-")
        if fixed and not re.match(r"[a-zA-Z_]", fixed):
            fixed = "_" + fixed
        hint = f": did you mean {fixed!r}?" if fixed else ", e.g. 'login-availability'"
        raise ValueError(
            f"{value!r} is not label-safe: start with a letter or _, then use only letters, digits, _, . and -{hint}"
        )
    return value


def _label_name(value: str) -> str:
    if not _LABEL_NAME.match(value) or value.startswith("__"):
        fixed = re.sub(r"[^a-zA-Z0-9_]+", "_", value).strip("_") or "team"
        raise ValueError(
            f"{value!r} is not a Prometheus label name: use letters, digits and _, not starting "
            f"with a digit or __, e.g. {fixed!r}"
        )
    if value in RESERVED_LABELS:
        raise ValueError(
            f"label {value!r} is reserved (slowatch sets {', '.join(sorted(RESERVED_LABELS))} itself): "
            "choose another name"
        )
    return value


def _objective(value: float) -> float:
    if 1 <= value < 100:
        return value
    prefix = f"objective is a percent in (0, 100), got {_num(value)}"
    if 0 < value < 1:
        raise ValueError(f"{prefix}: did you mean {_num(value * 100)}?")
    if value >= 100:
        raise ValueError(f"{prefix}: 100% leaves no error budget; write e.g. 99.9")
    raise ValueError(f"{prefix}: write e.g. 99.9")


def _duration(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 1m, 1h or 30d, got {_show(value)}")
    return parse_duration(value)  # DurationError is a ValueError with a hint


def _rolling(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(
            f"window must be a duration like 30d, or a mapping like {{calendar: month, timezone: UTC}}, "
            f"got {_show(value)}"
        )
    return parse_duration(value)


def _window_kind(value: object) -> str:
    return _CALENDAR if isinstance(value, dict) else _ROLLING


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        hint = f"did you mean {close[0]}?" if close else "write an IANA name like UTC or Europe/Paris"
        raise ValueError(f"unknown timezone {value!r}: {hint}") from None
    return value


def _parse_promql(text: str) -> Any:
    try:
        return promql_parser.parse(text)
    except ValueError as exc:
        raise ValueError(f"invalid PromQL {text!r}: {exc}") from None


def _selector(value: str) -> str:
    value = value.strip()
    node = _parse_promql(value)
    if type(node).__name__ != "VectorSelector":
        raise ValueError(
            f"expected a series selector like {_SELECTOR_EXAMPLE}, got the expression {value!r}; "
            "for a full query use the raw form total_query with good_query or errors_query, e.g. "
            f"{_RAW_EXAMPLE}"
        )
    if node.offset is not None or node.at is not None:
        raise ValueError(f"a selector takes no offset or @ modifier, got {value!r}: write e.g. {_SELECTOR_EXAMPLE}")
    return value


def _instant_query(text: str) -> Any:
    node = _parse_promql(text)
    kind = type(node).__name__
    if kind in ("MatrixSelector", "SubqueryExpr"):
        raise ValueError(f"{text!r} returns a range vector: wrap it, e.g. sum(increase(...)) or sum(rate(...))")
    if kind == "StringLiteral":
        raise ValueError(f"{text!r} is a string literal: write a query returning a number")
    return node


def _raw_query(value: str) -> str:
    value = value.strip()
    if WINDOW_PLACEHOLDER not in value:
        raise ValueError(
            f"a raw query must contain {WINDOW_PLACEHOLDER} where the window's range goes, e.g. {_RAW_EXAMPLE}"
        )
    _instant_query(value.replace(WINDOW_PLACEHOLDER, "5m"))
    return value


def _throughput_query(value: str) -> str:
    value = value.strip()
    if WINDOW_PLACEHOLDER in value:
        raise ValueError(
            f"a throughput query is an instant rate and takes no {WINDOW_PLACEHOLDER}: "
            "write e.g. sum(rate(http_requests_total[1m]))"
        )
    _instant_query(value)
    return value


def _histogram(value: str) -> str:
    if value.endswith("_bucket"):
        raise ValueError(f"histogram is the base name without _bucket: write {value.removesuffix('_bucket')}")
    if not _METRIC_NAME.match(value):
        raise ValueError(f"{value!r} is not a metric name: write e.g. http_request_duration_seconds")
    return value


def _threshold(value: object) -> float:
    hint = "write a duration like 200ms, 2.5s or 1m, or a number of seconds like 0.25"
    if isinstance(value, str):
        try:
            return parse_latency(value)
        except DurationError:
            raise ValueError(f"threshold must be a positive duration, got {value!r}: {hint}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"threshold must be a duration or a number of seconds, got {_show(value)}: {hint}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"threshold must be positive, got {_num(value)}: {hint}")
    return float(value)


def _positive(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"must be a number > 0, got {_num(value)}")
    return value


def _budget_percent(value: float) -> float:
    if not 0 < value <= 100:
        raise ValueError(f"budget_consumed takes percents in (0, 100], got {_num(value)}: write e.g. 50")
    return value


def _regression_threshold(value: float) -> float:
    if not 0 < value < 100:
        raise ValueError(f"threshold is a percent change in (0, 100), got {_num(value)}: write e.g. 10 (the seed's)")
    return value


def _instant(value: object) -> datetime:
    # YAML reads an unquoted timestamp as a datetime already; a quoted one arrives as text.
    hint = "write RFC 3339 with its offset, like 2026-11-20T02:00:00Z"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a time: {_show(value)}: {hint}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"expected a time, got {_show(value)}: {hint}")
    if value.tzinfo is None:
        raise ValueError(f"{value.isoformat()} has no offset, so its instant is unknown: {hint}")
    return value


def _weight(value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"weight must be a number above 0, got {_num(value)}: write e.g. weight: 1")
    return value


def _slo_ref(value: str) -> str:
    service, _, name = value.partition("/")
    if not (_NAME.match(service) and _NAME.match(name)):
        raise ValueError(f"a component is named service/slo, like auth/login-availability, got {_show(value)}")
    return value


def _one_or_many(value: object) -> object:
    # `budget_consumed: 50` reads as well as `[50]`.
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else value


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, got {value!r}: write e.g. https://runbooks.example/auth")
    return value


# Strict numbers: YAML already types them, and lax mode would turn `true` into 1.0.
Number = Annotated[float, Field(strict=True)]
LabelSafe = Annotated[str, AfterValidator(_label_safe)]
Selector = Annotated[str, AfterValidator(_selector)]
RawQuery = Annotated[str, AfterValidator(_raw_query)]
Duration = Annotated[timedelta, PlainValidator(_duration)]


# ---------------------------------------------------------------------------------------------
# The wire format.


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CalendarWindowSpec(_Spec):
    calendar: Literal["month", "week"]
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"


WindowSpec = Annotated[
    Annotated[timedelta, PlainValidator(_rolling), Tag(_ROLLING)] | Annotated[CalendarWindowSpec, Tag(_CALENDAR)],
    Discriminator(_window_kind),
]


class RatioSpec(_Spec):
    total: Selector | None = None
    good: Selector | None = None
    errors: Selector | None = None
    total_query: RawQuery | None = None
    good_query: RawQuery | None = None
    errors_query: RawQuery | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        selector = [k for k in ("total", "good", "errors") if getattr(self, k) is not None]
        raw = [k for k in ("total_query", "good_query", "errors_query") if getattr(self, k) is not None]
        both = (
            "use either total with good or errors (series selectors), or total_query with "
            f"good_query or errors_query (PromQL holding {WINDOW_PLACEHOLDER})"
        )
        if selector and raw:
            raise ValueError(f"mixes selector keys ({', '.join(selector)}) with raw keys ({', '.join(raw)}): {both}")
        if not selector and not raw:
            raise ValueError(f"ratio is empty: {both}")
        suffix = "_query" if raw else ""
        given = raw or selector
        total, good, errors = (k + suffix for k in ("total", "good", "errors"))
        if total not in given:
            raise ValueError(f"ratio needs {total}, the query counting all events, next to {good} or {errors}")
        if good in given and errors in given:
            raise ValueError(f"give {good} or {errors}, not both: total minus errors is good")
        if good not in given and errors not in given:
            raise ValueError(f"ratio needs {good} or {errors} next to {total}")
        return self


class LatencySpec(_Spec):
    histogram: Annotated[str, AfterValidator(_histogram)]
    selector: str = "{}"
    threshold: Annotated[float, PlainValidator(_threshold)]

    @field_validator("selector")
    @classmethod
    def _matchers(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip() or "{}"
        if not (value.startswith("{") and value.endswith("}")):
            raise ValueError(
                f"selector is a set of label matchers in braces like '{{service=\"auth\"}}' (the metric "
                f"name goes in histogram), got {value!r}"
            )
        # Parse it as the bucket selector it becomes; a placeholder name if histogram was invalid.
        node = _parse_promql(f"{info.data.get('histogram', 'histogram')}_bucket{value}")
        if type(node).__name__ != "VectorSelector":
            raise ValueError(f"selector must be label matchers only, like '{{service=\"auth\"}}', got {value!r}")
        if node.matchers.or_matchers:
            raise ValueError(f"`or` between matchers is not supported in {value!r}: write one set of matchers")
        if any(m.name == "le" for m in node.matchers.matchers):
            raise ValueError("selector must not match on le: slowatch picks the bucket from threshold")
        return value


class ThroughputSpec(_Spec):
    query: Annotated[str, AfterValidator(_throughput_query)]
    minimum: Annotated[Number, AfterValidator(_positive)]
    slice: Duration = timedelta(minutes=1)


_SLI_KINDS = {
    "ratio": "ratio: {total: <selector>, errors: <selector>}",
    "latency": "latency: {histogram: <name>, threshold: 200ms}",
    "throughput": "throughput: {query: <PromQL>, minimum: 200}",
    "composite": "composite: {components: [{slo: auth/login-availability, weight: 1}]}",
}


class ComponentSpec(_Spec):
    slo: Annotated[str, AfterValidator(_slo_ref)]
    weight: Annotated[Number, AfterValidator(_weight)] = 1.0


class CompositeSpec(_Spec):
    components: list[ComponentSpec] = Field(min_length=1)
    weighting: Literal["weights", "events"] = WEIGHTS

    @model_validator(mode="after")
    def _once_each(self) -> Self:
        seen = [c.slo for c in self.components]
        twice = sorted({s for s in seen if seen.count(s) > 1})
        if twice:
            raise ValueError(f"components name {', '.join(twice)} more than once: give each SLO once, with one weight")
        return self


class SLISpec(_Spec):
    ratio: RatioSpec | None = None
    latency: LatencySpec | None = None
    throughput: ThroughputSpec | None = None
    composite: CompositeSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [k for k in _SLI_KINDS if k in self.model_fields_set]
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise ValueError(f"sli needs exactly one of ratio, latency, throughput or composite, got {got}")
        if getattr(self, given[0]) is None:
            raise ValueError(f"{given[0]} is empty: write e.g. {_SLI_KINDS[given[0]]}")
        return self


class RegressionSpec(_Spec):
    baseline: Duration
    threshold: Annotated[Number, AfterValidator(_regression_threshold)] = 10.0
    window: Duration = timedelta(days=1)

    @model_validator(mode="after")
    def _baseline_past_window(self) -> Self:
        if self.baseline < self.window:
            raise ValueError(f"baseline ({format_duration(self.baseline)}) must be at least the window "
                             f"({format_duration(self.window)}), or the two windows overlap: write e.g. baseline: 7d")
        return self


class ExclusionSpec(_Spec):
    reason: Annotated[str, Field(min_length=1)]
    start: Annotated[datetime, PlainValidator(_instant)] | None = None
    end: Annotated[datetime, PlainValidator(_instant)] | None = None
    rrule: str | None = None
    duration: Duration | None = None
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        forms = ("one-off: start and end (RFC 3339), or recurring: rrule (RFC 5545) and duration, "
                 "with timezone")
        if self.rrule is None:
            if self.start is None or self.end is None:
                raise ValueError(f"an exclusion needs start and end, or rrule and duration ({forms})")
            if self.duration is not None:
                raise ValueError(f"duration goes with rrule; a one-off exclusion ends at end ({forms})")
            if self.end <= self.start:
                raise ValueError(f"end ({self.end.isoformat()}) must be after start ({self.start.isoformat()})")
            return self
        if self.end is not None:
            raise ValueError("end goes with a one-off exclusion; a recurring one lasts duration: "
                             "write e.g. duration: 2h")
        if self.duration is None:
            raise ValueError("a recurring exclusion needs duration: write e.g. duration: 2h")
        try:
            check_rrule(self.rrule, self.timezone, self.start)
        except RRuleError as exc:
            raise ValueError(str(exc)) from None
        return self


class AlertingSpec(_Spec):
    budget_consumed: Annotated[
        list[Annotated[Number, AfterValidator(_budget_percent)]], BeforeValidator(_one_or_many)
    ] = Field(default_factory=lambda: [50.0])
    burn_rate: Annotated[bool, Field(strict=True)] = True
    runbook_url: Annotated[str, AfterValidator(_url)] | None = None
    no_data: Literal["ignore", "alert"] = "ignore"
    regression: RegressionSpec | None = None


class SLOSpec(_Spec):
    name: LabelSafe
    description: str | None = None
    objective: Annotated[Number, AfterValidator(_objective)]
    window: WindowSpec
    sli: SLISpec
    # A factory, not an instance: pydantic deep-copied the unhashable default (it holds a list)
    # for every SLO, a tenth of the validation's time.
    alerting: AlertingSpec = Field(default_factory=AlertingSpec)
    exclusions: list[ExclusionSpec] = Field(default_factory=list)

    # A composite has no query of its own: its components count (and exclude) its events, and
    # the regression check compares queried metrics (fields are validated in order: sli first).
    @field_validator("exclusions")
    @classmethod
    def _no_composite_exclusions(cls, value: list[ExclusionSpec], info: ValidationInfo) -> list[ExclusionSpec]:
        sli = info.data.get("sli")
        if value and sli is not None and sli.composite is not None:
            raise ValueError("a composite SLO takes its events from its components, which apply their own "
                             "exclusions: put the exclusion on the components (a file's exclusions apply only "
                             "to its non-composite SLOs)")
        return value

    @field_validator("alerting")
    @classmethod
    def _no_composite_regression(cls, value: AlertingSpec, info: ValidationInfo) -> AlertingSpec:
        sli = info.data.get("sli")
        if value.regression is not None and sli is not None and sli.composite is not None:
            raise ValueError("alerting.regression compares an SLO's queried metrics, and a composite has no "
                             "query of its own: set regression on its components")
        return value


class FileSpec(_Spec):
    api_version: Literal["slowatch/v1"] = Field(alias="apiVersion")
    service: LabelSafe
    labels: dict[Annotated[str, AfterValidator(_label_name)], str] = Field(default_factory=dict)
    exclusions: list[ExclusionSpec] = Field(default_factory=list)
    """Apply to every SLO of the file, before each SLO's own."""
    slos: list[SLOSpec] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# Wire format -> core model.


def _window(spec: timedelta | CalendarWindowSpec) -> Window:
    if isinstance(spec, timedelta):
        return RollingWindow(duration=spec)
    return CalendarWindow(unit=spec.calendar, timezone=spec.timezone)


def _sli(spec: SLISpec) -> SLI:
    if spec.ratio is not None:
        r = spec.ratio
        if r.total_query is not None:
            return RatioSLI(total=r.total_query, good=r.good_query, errors=r.errors_query, raw=True)
        assert r.total is not None  # RatioSpec._one_form
        return RatioSLI(total=r.total, good=r.good, errors=r.errors)
    if spec.latency is not None:
        lat = spec.latency
        return LatencySLI(histogram=lat.histogram, selector=lat.selector, threshold_seconds=lat.threshold)
    if spec.composite is not None:
        c = spec.composite
        return CompositeSLI(components=tuple(Component(slo=x.slo, weight=x.weight) for x in c.components),
                            weighting=EVENTS if c.weighting == EVENTS else WEIGHTS)
    assert spec.throughput is not None  # SLISpec._one_kind
    t = spec.throughput
    return ThroughputSLI(query=t.query, minimum=t.minimum, slice=t.slice)


def _to_slo(file: FileSpec, spec: SLOSpec, source: str) -> SLO:
    a = spec.alerting
    return SLO(
        service=file.service,
        name=spec.name,
        objective_percent=spec.objective,
        window=_window(spec.window),
        sli=_sli(spec.sli),
        description=spec.description or "",
        labels=tuple(sorted(file.labels.items())),
        alerting=AlertPolicy(
            budget_consumed=tuple(sorted(set(a.budget_consumed))),
            burn_rate=a.burn_rate,
            runbook_url=a.runbook_url,
            no_data=a.no_data,
            regression=None if a.regression is None else RegressionPolicy(
                baseline=a.regression.baseline, threshold=a.regression.threshold, window=a.regression.window),
        ),
        source=source,
        # A composite's events come from its components, each applying its own and its file's.
        exclusions=() if spec.sli.composite is not None else tuple(
            _exclusion(e) for e in [*file.exclusions, *spec.exclusions]),
    )


def _exclusion(spec: ExclusionSpec) -> Exclusion:
    return Exclusion(reason=spec.reason, start=spec.start, end=spec.end, rrule=spec.rrule,
                     duration=spec.duration or timedelta(0), timezone=spec.timezone)


# ---------------------------------------------------------------------------------------------
# pydantic errors -> SpecProblems.


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {(f.alias or name): f for name, f in model.model_fields.items()}


def _nested_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The spec model found at ``loc`` (list indexes skipped), for naming its valid keys."""
    model: type[BaseModel] | None = FileSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = _keys(model).get(part) if model is not None else None
        model = _nested_model(field.annotation) if field is not None else None
    return model


def _message(err: ErrorDetails, loc: Sequence[int | str]) -> str:
    kind, value = err["type"], err["input"]
    field = next((p for p in reversed(loc) if isinstance(p, str)), "")
    if kind in ("value_error", "assertion_error"):
        return str(err.get("ctx", {}).get("error", err["msg"]))
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        keys = list(_keys(model)) if model is not None else []
        close = difflib.get_close_matches(field, keys, n=1, cutoff=0.6)
        hint = f": did you mean `{close[0]}`?" if close else ""
        return f"unknown key `{field}`{hint} (valid keys: {', '.join(keys)})"
    if kind == "missing":
        return f"`{field}` is required: add e.g. `{_EXAMPLES.get(field, field + ': ...')}`"
    if kind == "string_type":
        if isinstance(value, dict | list):
            return (
                f"expected text, got {_show(value)}: YAML reads values starting with {{ or [ as "
                "mappings or lists, so quote it, e.g. '{service=\"auth\"}'"
            )
        return f"expected text, got {_show(value)}: quote it if it is meant as text"
    if kind in ("float_type", "float_parsing", "int_type", "int_parsing"):
        quoted = " (remove the quotes)" if isinstance(value, str) else ""
        return f"expected a number, got {_show(value)}{quoted}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {_show(value)}"
    if kind == "list_type":
        return f"expected a list (lines starting with `- `, or [a, b]), got {_show(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (`key: value` lines), got {_show(value)}"
    if kind == "literal_error":
        return f"expected {err.get('ctx', {}).get('expected', 'one of the listed values')}, got {_show(value)}"
    if kind == "too_short" and field == "slos":
        return "slos is empty: list at least one SLO (- name: ..., objective: ..., window: ..., sli: ...)"
    return err["msg"]


def _problems(file: str, exc: ValidationError) -> list[SpecProblem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if p not in _NOT_KEYS]
        out.append(SpecProblem(file=file, path=_path(loc), message=_message(err, loc)))
    return out


# ---------------------------------------------------------------------------------------------
# Files.


class _DuplicateKey(yaml.constructor.ConstructorError):
    pass


class _NoDuplicateKeys(yaml.constructor.SafeConstructor):
    """Refuses a key given twice in one mapping: PyYAML keeps the last one silently, hiding e.g.
    a second `objective` under the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(
                        None, None, f"key {key!r} appears twice in one mapping: keep one", key_node.start_mark
                    )
                seen.add(key)
            except TypeError:  # unhashable key: the base constructor reports it
                pass
        return super().construct_mapping(node, deep=deep)


class _Loader(_NoDuplicateKeys, yaml.SafeLoader):
    """The pure-Python safe loader: the reference, whose error messages the spec reports."""


# libyaml parses about 10x faster (bench/results/spec_load.md); the objects are the same, since
# only the parser is in C (construction and tag resolution stay PyYAML's Python). Its error
# messages are worded differently, so a file it refuses is read again by _Loader.
_FastLoader: type[yaml.SafeLoader | yaml.CSafeLoader] = _Loader
if yaml.__with_libyaml__:

    class _CLoader(_NoDuplicateKeys, yaml.CSafeLoader):
        """libyaml's parser, PyYAML's constructor and resolver."""

    _FastLoader = _CLoader


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"invalid YAML: {exc}"
    mark = exc.problem_mark
    what = exc.problem or "syntax error"
    if exc.context:
        what = f"{what} ({exc.context})"
    advice = (
        ""
        if isinstance(exc, _DuplicateKey)
        else "; check the indentation, and quote values containing ': ' or starting with {, [, * or &"
    )
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}{advice}"


_Entry = tuple[str | None, SLO | None, str]
"""One SLO entry of a document: its SLO id when its service and name are usable, its SLO when
the whole document is valid, and where its name is written (for a repeated name)."""

_Relocate = Callable[[SpecProblem], SpecProblem]
_Finish = Callable[[int, SLO], SLO]


def _declared_ids(data: dict[Any, Any], relocate: _Relocate) -> list[_Entry]:
    """The ids the entries declare, read from the raw data: a repeated name is reported even
    when the rest of its entry, or of its file, is invalid."""
    service, slos = data.get("service"), data.get("slos")
    if not isinstance(slos, list):
        return []
    usable = isinstance(service, str) and _NAME.match(service)
    return [
        (f"{service}/{e['name']}" if usable and isinstance(e, dict) and isinstance(e.get("name"), str)
         and _NAME.match(e["name"]) else None, None, relocate(SpecProblem("", f"slos[{i}].name", "")).path)
        for i, e in enumerate(slos)
    ]


# Where libyaml and PyYAML part, found by a differential fuzz (tests/unit/test_spec_speed.py keeps
# the cases): libyaml accepts tabs as separators and inside plain scalars, '?' inside a flow
# scalar and a comment right after a block scalar's indicator (`>#`), all of which PyYAML
# refuses, and the two differ on byte order marks, C1 controls and Unicode line breaks. A text
# holding any of these is read by _Loader alone: printable ASCII but '?', newlines (read_text
# made every line break one), and printable non-ASCII but NBSP, U+2028/9 and U+FEFF.
_LIBYAML_AGREES = re.compile(
    r"[\n\x20-\x3e\x40-\x7e\xa1-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*"
)
_COMMENTED_BLOCK_HEADER = re.compile(r"[|>][-+0-9]*#")


def _documents(text: str) -> list[Any]:
    """The non-empty YAML documents of ``text``, exactly as _Loader reads them or refuses them."""
    if _LIBYAML_AGREES.fullmatch(text) and not _COMMENTED_BLOCK_HEADER.search(text):
        try:
            return [d for d in yaml.load_all(text, Loader=_FastLoader) if d is not None]
        except yaml.YAMLError:
            pass  # worded by _Loader (libyaml words its errors differently)
    return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]


def _read_bytes(path: Path) -> bytes | OSError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return exc


def _read_documents(data: bytes | OSError, file: str) -> tuple[list[Any], list[SpecProblem]]:
    """The YAML documents of a file's bytes (several when separated by ``---``), or its one problem."""

    def problem(message: str) -> tuple[list[Any], list[SpecProblem]]:
        return [], [SpecProblem(file=file, path="", message=message)]

    try:
        if isinstance(data, OSError):
            raise data
        # Decoded as Path.read_text does (universal newlines), so an error reads the same.
        text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as exc:
        return problem(f"cannot read the file: {exc}")
    try:
        docs = _documents(text)
    except yaml.YAMLError as exc:
        return problem(_yaml_problem(exc))
    if not docs:
        return problem(f"the file is empty: a spec starts with `apiVersion: {API_VERSION}`, then service and slos")
    return docs, []


def _validate(
    file: str, data: object, problems: list[SpecProblem], relocate: _Relocate, finish: _Finish
) -> list[_Entry]:
    """One slowatch/v1 document (written so, or translated from OpenSLO or Sloth) -> its SLOs."""

    def problem(message: str, at: str = "") -> list[_Entry]:
        problems.append(relocate(SpecProblem(file=file, path=at, message=message)))
        return []

    if not isinstance(data, dict):
        return problem(f"expected a mapping with apiVersion, service and slos at the top, got {_show(data)}")
    # Another apiVersion is another schema: its other keys would only add noise.
    if "apiVersion" in data and data["apiVersion"] != API_VERSION:
        return problem(
            f"unsupported apiVersion {_show(data['apiVersion'])}: write `apiVersion: {API_VERSION}` (slowatch "
            f"also reads {', '.join(formats.FOREIGN_VERSIONS)})",
            "apiVersion",
        )
    try:
        spec = FileSpec.model_validate(data)
    except ValidationError as exc:
        problems.extend(relocate(p) for p in _problems(file, exc))
        return _declared_ids(data, relocate)
    for i, entry in enumerate(spec.slos):
        if entry.sli.ratio is not None and entry.sli.ratio.total_query is not None and (spec.exclusions
                                                                                       or entry.exclusions):
            if entry.exclusions:
                problem(_RAW_EXCLUDED, f"slos[{i}].exclusions")
            else:
                problem(f"applies to slos[{i}] ({entry.name}): {_RAW_EXCLUDED}", "exclusions")
    return [
        (slo.id, finish(i, slo), relocate(SpecProblem(file, f"slos[{i}].name", "")).path)
        for i, slo in enumerate(_to_slo(spec, entry, file) for entry in spec.slos)
    ]


def _load_file(file: str, docs: list[Any], catalog: formats.Catalog, problems: list[SpecProblem]) -> list[_Entry]:
    """Every document of a file, each in its format (told apart by apiVersion/version)."""
    entries: list[_Entry] = []
    for index, data in enumerate(docs):
        if formats.is_foreign(data):
            for native in formats.translate(data, formats.Where(file, index), catalog, problems):
                entries += _validate(file, native.data, problems, native.relocate, native.finish)
            continue
        # One document keeps the plain paths; several are told apart as doc[i].
        prefix = formats.Where(file, index).shown if len(docs) > 1 else ""
        entries += _validate(file, data, problems, partial(_prefixed, prefix), _unchanged)
    return entries


def _prefixed(prefix: str, problem: SpecProblem) -> SpecProblem:
    if not prefix:
        return problem
    path = f"{prefix}.{problem.path}" if problem.path and not problem.path.startswith("[") else prefix + problem.path
    return SpecProblem(file=problem.file, path=path, message=problem.message)


def _unchanged(_: int, slo: SLO) -> SLO:
    return slo


def spec_files(
    paths: Sequence[str | Path], problems: list[SpecProblem] | None = None
) -> Iterator[tuple[Path, str]]:
    """(path, name for messages) of every spec file, each once, in the order given; lazily, so
    problems stay in argument order. The one discovery: ``load_specs`` reads exactly these files
    and the daemon's hot reload watches exactly these (a directory's *.yaml and *.yml, any case,
    no dotfiles, non-recursive)."""
    problems = [] if problems is None else problems
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = _directory_specs(path)
            if not found:
                problems.append(
                    SpecProblem(
                        file=str(given),
                        path="",
                        message="no *.yaml or *.yml files in this directory: add one spec file per service",
                    )
                )
        elif path.exists():
            found = [(path, str(given), path.resolve())]
        else:
            problems.append(SpecProblem(file=str(given), path="", message="no such file or directory"))
            continue
        for p, name, key in found:
            if key not in seen:  # a file named directly and through its directory loads once
                seen.add(key)
                yield p, name


def _directory_specs(directory: Path) -> list[tuple[Path, str, Path]]:
    """(path, name, resolved path) of a directory's spec files, sorted by name. One scandir, and
    one resolve for the directory rather than one per file (a file's own symlink aside): the
    syscalls per file were a tenth of loading 10,000 SLOs."""
    with os.scandir(directory) as entries:
        names = sorted(
            (e.name, e.is_symlink())
            for e in entries
            if os.path.splitext(e.name)[1].lower() in SPEC_SUFFIXES and not e.name.startswith(".")
            # A symlink is followed as Path.is_file does (a dangling or looping one is no file).
            and (Path(e.path).is_file() if e.is_symlink() else e.is_file())
        )
    real = directory.resolve()
    return [(p, str(p), p.resolve() if link else real / name) for name, link in names for p in [directory / name]]


def _composite_problems(slos: Sequence[SLO], where: dict[str, tuple[str, str]]) -> list[SpecProblem]:
    """Components that name no SLO, and composites that contain themselves (through any depth)."""
    by_id = {s.id: s for s in slos}
    problems = []

    def at(slo: SLO, j: int) -> SpecProblem:
        file, name_at = where[slo.id]
        return SpecProblem(file, f"{name_at.removesuffix('.name')}.sli.composite.components[{j}].slo", "")

    for slo in slos:
        if not isinstance(slo.sli, CompositeSLI):
            continue
        if slo.exclusions:  # another format's composite (slowatch/v1 refuses them while parsing)
            file, name_at = where[slo.id]
            problems.append(SpecProblem(file, f"{name_at.removesuffix('.name')}.exclusions", (
                "a composite SLO takes its events from its components, which apply their own exclusions: "
                "put the exclusion on the components")))
        for j, c in enumerate(slo.sli.components):
            if c.slo not in by_id and c.slo not in where:
                close = difflib.get_close_matches(c.slo, sorted(by_id), n=1)
                hint = f"did you mean {close[0]}?" if close else "name an SLO defined in the spec, as service/slo"
                p = at(slo, j)
                problems.append(SpecProblem(p.file, p.path, f"no SLO {c.slo}: {hint}"))
                continue
            part = by_id.get(c.slo)
            if part is None:
                continue
            if part.window != slo.window:
                # The composite's SLI over a window is its components' over that same window.
                p = at(slo, j)
                problems.append(SpecProblem(p.file, p.path, (
                    f"{c.slo} has a {part.window.name} window and this composite a {slo.window.name} one: "
                    "a composite is measured over its components' windows, give them the same window")))
            if slo.sli.weighting == EVENTS and _counts(part, by_id) != _counts(slo.sli.components[0].slo, by_id):
                p = at(slo, j)
                problems.append(SpecProblem(p.file, p.path, (
                    f"weighting: events sums the components' counts, and {c.slo} counts "
                    f"{_counts(part, by_id)} where {slo.sli.components[0].slo} counts "
                    f"{_counts(slo.sli.components[0].slo, by_id)}: use weighting: weights (the mean of their SLIs)")))
        cycle = _cycle_from(slo.id, by_id)
        if cycle:
            j = next(j for j, c in enumerate(slo.sli.components) if c.slo == cycle[1])
            p = at(slo, j)
            problems.append(SpecProblem(p.file, p.path, f"composites form a cycle: {' -> '.join(cycle)}; "
                                                        "a composite cannot contain itself"))
    return problems


def _counts(slo: SLO | str, by_id: dict[str, SLO], seen: frozenset[str] = frozenset()) -> str:
    """What an SLO's counts are, for ``weighting: events``: events, time slices, or weights (a
    composite weighted by weights); a composite weighted by events counts what its first part does."""
    found = by_id.get(slo) if isinstance(slo, str) else slo
    if found is None or found.id in seen:
        return "events"  # a missing component or a cycle: reported on its own
    if isinstance(found.sli, ThroughputSLI):
        return "time slices"
    if not isinstance(found.sli, CompositeSLI):
        return "events"
    if found.sli.weighting != EVENTS:
        return "weights (a composite weighted by weights)"
    return _counts(found.sli.components[0].slo, by_id, seen | {found.id})


def _cycle_from(start: str, by_id: dict[str, SLO]) -> list[str] | None:
    """The path start -> ... -> start through composite components, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        sli = by_id[node].sli if node in by_id else None
        if not isinstance(sli, CompositeSLI):
            continue
        for c in sli.components:
            if c.slo == start:
                return [*path, start]
            if c.slo not in seen:
                seen.add(c.slo)
                stack.append((c.slo, [*path, c.slo]))
    return None


def load_specs(paths: Sequence[str | Path], cache_dir: Path | None = None) -> list[SLO]:
    """Each path is a file or a directory (its *.yaml and *.yml files, sorted, non-recursive).
    Raises SpecError(problems) listing EVERY problem of EVERY file at once.

    ``cache_dir`` (the daemon's SLOWATCH_STATE_DIR): when these files, named so, and slowatch
    are the same as when a spec last loaded without a problem there, its SLOs come from that
    cache (``slowatch.spec_cache``) instead of being parsed again; a spec with a problem is
    never cached, so it is reported as without a cache."""
    problems: list[SpecProblem] = []
    files = [(file, _read_bytes(path)) for path, file in spec_files(paths, problems)]
    readable = [(file, data) for file, data in files if isinstance(data, bytes)]
    cache = SpecCache(cache_dir) if cache_dir is not None and not problems and len(readable) == len(files) else None
    key = cache_key(readable) if cache is not None else b""
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        return cached
    slos = _parse(files, problems)
    if cache is not None:
        cache.put(key, slos)
    return slos


def _parse(files: Sequence[tuple[str, bytes | OSError]], problems: list[SpecProblem]) -> list[SLO]:
    slos: list[SLO] = []
    first_seen: dict[str, tuple[str, str]] = {}
    # Read every file first: an OpenSLO reference may point into any of them. Each file's read
    # problems are reported with its other problems, so they stay in argument order.
    read = [(file, *_read_documents(data, file)) for file, data in files]
    catalog = formats.Catalog()
    for file, docs, read_problems in read:
        for index, data in enumerate(docs):
            found = catalog.add(data, formats.Where(file, index)) if isinstance(data, dict) else None
            if found is not None:
                read_problems.append(found)  # the list in `read`: reported with its file
    for file, docs, read_problems in read:
        problems.extend(read_problems)
        for slo_id, slo, name_at in _load_file(file, docs, catalog, problems):
            if slo_id is None:
                continue
            if slo_id in first_seen:
                other, other_at = first_seen[slo_id]
                where = other_at.removesuffix(".name") if other_at.endswith("].name") else other_at
                where = where if other == file else f"{other} at {where}"
                problems.append(
                    SpecProblem(
                        file=file,
                        path=name_at,
                        message=f"duplicate SLO {slo_id}: already defined in {where}; rename one of them",
                    )
                )
                continue
            first_seen[slo_id] = (file, name_at)
            if slo is not None:
                slos.append(slo)
    problems.extend(_composite_problems(slos, first_seen))
    if problems:
        raise SpecError(problems)
    return slos
