"""Any Prometheus-compatible query API (Prometheus, VictoriaMetrics, Thanos, Mimir).

One injected ``requests.Session`` (connection reuse) with explicit timeouts and urllib3 retries
with exponential backoff on connection errors and transient statuses. Instant queries are posted
on that session directly because we need what ``PrometheusConnect.custom_query`` drops (the result
type and ``stats=all``); discovery (``/api/v1/series``) goes through prometheus-api-client on the
same session. Every query of one evaluation carries the same ``time=``. Errors are typed and name
the SLO and the instant.
"""

from __future__ import annotations

import json
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import requests
import structlog
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect

from slowatch.adapters.sessions import retrying_session, session_auth
from slowatch.core.measure import METRICSQL, PROMETHEUS, Flavour
from slowatch.core.promql import Sample
from slowatch.core.windows import format_duration
from slowatch.errors import QueryError, SourceUnavailable

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_SECONDS = 5.0
# A MetricsQL-only function: an engine that evaluates it is VictoriaMetrics, whose ``increase``
# semantics (``core.measure.METRICSQL``) differ from PromQL's; PromQL engines reject it (400).
METRICSQL_PROBE = "keep_last_value(vector(1))"
# Statuses worth retrying: overload and gateway trouble. 4xx (bad query) never is.
TRANSIENT_STATUSES = (429, 502, 503, 504)

# The query API's POST body, application/x-www-form-urlencoded byte for byte as urllib.parse's
# urlencode writes it (quote_plus: letters, digits and "_.-~" kept, space as "+", any other byte
# %XX), through str.translate: a 10,000-SLO cycle sends megabytes of query text (each key regex
# names up to 2,000 SLOs), which quote_plus walks byte by byte in Python: 1.8 s of its CPU.
_FORM_KEPT = frozenset(string.ascii_letters + string.digits + "_.-~")
_FORM_TABLE = {c: "+" if c == ord(" ") else f"%{c:02X}" for c in range(128) if chr(c) not in _FORM_KEPT}
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def _form_quote(value: object) -> str:
    text = str(value)
    return text.translate(_FORM_TABLE) if text.isascii() else quote_plus(text)


def form_encoded(form: Mapping[str, object]) -> str:
    """``urllib.parse.urlencode(form)``, faster for long ASCII values."""
    return "&".join(f"{_form_quote(k)}={_form_quote(v)}" for k, v in form.items())


@dataclass
class QueryStats:
    """Counters an evaluation cycle reads for its own metrics and benchmarks."""

    queries: int = 0
    errors: int = 0
    samples_read: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, queries: int = 0, errors: int = 0, samples: int = 0) -> None:
        with self._lock:
            self.queries += queries
            self.errors += errors
            self.samples_read += samples


def make_session(retries: int = 3, backoff: float = 0.5) -> requests.Session:
    # POST is retried too: queries are read-only, POST only carries long ones.
    return retrying_session(retries=retries, backoff=backoff, statuses=TRANSIENT_STATUSES, pool_size=32)


class PrometheusSource:
    """A Prometheus-compatible query API: instant and range queries, series discovery, and which
    query language flavour it speaks."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None = None,
        timeout: timedelta = timedelta(seconds=30),
        retries: int = 3,
        stats: bool = False,
        bearer_token_file: Path | None = None,
    ) -> None:
        # Credentials (user:password in the URL, or a token file) ride on the session as an
        # Authorization header; the URL kept here, and so every error message, has none.
        self.url, auth = session_auth(url, bearer_token_file)
        self.session = session or make_session(retries)
        if auth is not None:
            self.session.auth = auth
        self.timeout = (CONNECT_TIMEOUT_SECONDS, timeout.total_seconds())
        self.with_stats = stats
        self.stats = QueryStats()
        retry = self.session.get_adapter(self.url).max_retries  # type: ignore[attr-defined]
        # POST: batched queries outgrow URL limits; the body carries query and time.
        # The library types its timeout as int; requests takes the (connect, read) pair we want.
        self._client = PrometheusConnect(
            url=self.url, session=self.session, retry=retry, method="POST", timeout=self.timeout,  # type: ignore[arg-type]
        )
        self._flavour: Flavour | None = None

    def _post(self, path: str, form: dict[str, Any], *, context: str) -> dict[str, Any]:
        """POST a query API call; the ``data`` of a successful answer, else a typed error."""
        if self.with_stats:
            form = {**form, "stats": "all"}
        try:
            response = self.session.post(f"{self.url}{path}", data=form_encoded(form).encode("ascii"),
                                         headers=FORM_HEADERS, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            self.stats.add(queries=1, errors=1)
            raise SourceUnavailable(f"{context}: {self.url} unreachable: {_short(exc)}") from exc
        except requests.RequestException as exc:
            self.stats.add(queries=1, errors=1)
            raise SourceUnavailable(f"{context}: {self.url}: {_short(exc)}") from exc
        body = _json(response)
        for key in ("warnings", "infos"):  # Prometheus 3's annotations, Thanos' partial responses
            if body.get(key) and isinstance(body.get("data"), dict):
                body["data"][f"_{key}"] = [str(w) for w in body[key]]
        if response.status_code == 200 and "status" not in body:
            # A proxy cut the body short (or answered for Prometheus): the server is not to blame
            # for the data, and the next cycle may get it whole.
            self.stats.add(queries=1, errors=1)
            raise SourceUnavailable(f"{context}: {self.url} answered 200 with a body that is not the query API's "
                                    f"JSON (cut short?): {str(body.get('error', ''))[:100]!r}")
        if response.status_code >= 500 or response.status_code in TRANSIENT_STATUSES:
            self.stats.add(queries=1, errors=1)
            raise SourceUnavailable(
                f"{context}: {self.url} answered {response.status_code}: {body.get('error', response.reason)}"
            )
        if response.status_code != 200 or body.get("status") != "success":
            self.stats.add(queries=1, errors=1)
            raise QueryError(f"{context}: query rejected ({response.status_code}): {body.get('error', body)}")
        data: dict[str, Any] = body.get("data", {})
        samples_read = int(data.get("stats", {}).get("samples", {}).get("totalQueryableSamples", 0) or 0)
        self.stats.add(queries=1, samples=samples_read)
        return data

    def query(self, promql: str, at: datetime, *, context: str, notes: list[str] | None = None) -> list[Sample]:
        """An instant query at ``at``; ``context`` (SLO and window) goes into every error.

        An answer with ``warnings`` (a partial response, a doubtful evaluation) is not used: the
        SLO goes stale with the warnings as its error, its alerts frozen. ``infos`` leave the values
        standing and are appended to ``notes`` (and logged), for /status to show."""
        form = {"query": promql, "time": f"{at.timestamp():.3f}", "partial_response": "false"}
        data = self._post("/api/v1/query", form, context=context)
        if data.get("_warnings"):
            raise SourceUnavailable(f"{context}: answer not used, the query API warned: {'; '.join(data['_warnings'])}")
        if data.get("_infos"):
            log.warning("query API infos", context=context, infos=data["_infos"])
            if notes is not None:
                notes.extend(f"info: {i}" for i in data["_infos"])
        if data.get("resultType") != "vector":
            raise QueryError(f"{context}: expected an instant vector, got {data.get('resultType')}")
        return [Sample(r.get("metric", {}), float(r["value"][1])) for r in data["result"]]

    def raw_samples(self, selector: str, start: datetime, end: datetime, *, context: str
                    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        """The raw samples of ``selector``'s series in ``(start, end]`` (a range-vector instant
        query: every scraped sample as it is, no function applied), per series."""
        rng = format_duration(end - start)
        data = self._post("/api/v1/query", {"query": f"{selector}[{rng}]", "time": f"{end.timestamp():.3f}",
                                            "partial_response": "false"}, context=context)
        if data.get("warnings") or data.get("_warnings"):
            raise SourceUnavailable(f"{context}: partial answer: {data.get('warnings') or data.get('_warnings')}")
        if data.get("resultType") != "matrix":
            raise QueryError(f"{context}: expected a range vector, got {data.get('resultType')}")
        return [(r.get("metric", {}), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta, *, context: str
    ) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
        """A range query: per series, its labels and (unix seconds, value) points."""
        # The hour ledger keeps these answers for the whole window: a partial one (a Thanos or Mimir
        # store down) would undercount those hours for weeks, so refuse it and retry next cycle.
        form = {"query": promql, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
                "step": f"{step.total_seconds():g}", "partial_response": "false"}
        data = self._post("/api/v1/query_range", form, context=context)
        if data.get("_warnings"):
            raise SourceUnavailable(f"{context}: partial answer: {'; '.join(data['_warnings'])}")
        if data.get("resultType") != "matrix":
            raise QueryError(f"{context}: expected a range vector, got {data.get('resultType')}")
        return [(r.get("metric", {}), [(round(float(t)), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def flavour(self) -> Flavour:
        """``METRICSQL`` when the engine evaluates MetricsQL (VictoriaMetrics), else ``PROMETHEUS``;
        asked once, on first use (a failure to reach the engine is raised, and asked again)."""
        if self._flavour is None:
            try:
                response = self.session.post(f"{self.url}/api/v1/query", data={"query": METRICSQL_PROBE},
                                             timeout=self.timeout)
            except requests.RequestException as exc:
                raise SourceUnavailable(f"query language probe: {self.url} unreachable: {_short(exc)}") from exc
            if response.status_code >= 500 or response.status_code in TRANSIENT_STATUSES:
                raise SourceUnavailable(f"query language probe: {self.url} answered {response.status_code}")
            self._flavour = METRICSQL if _json(response).get("status") == "success" else PROMETHEUS
        return self._flavour

    # --- discovery for `check --live`, through prometheus-api-client ---

    def series(self, selector: str, start: datetime, end: datetime) -> list[Mapping[str, str]]:
        try:
            result: list[Mapping[str, str]] = self._client.get_series(
                start=start, end=end, params={"match[]": selector}
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise SourceUnavailable(f"{self.url} unreachable: {_short(exc)}") from exc
        except PrometheusApiClientException as exc:
            raise QueryError(f"series {selector}: {exc}") from exc
        return result

    def close(self) -> None:
        self.session.close()


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return {"error": response.text[:200]}
    return body if isinstance(body, dict) else {"error": str(body)[:200]}


def _short(exc: BaseException) -> str:
    """The useful tail of a requests/urllib3 error chain, on one line."""
    text = str(exc)
    for marker in ("Caused by ", "Failed to establish a new connection: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip("()'\" ").replace("\n", " ")[:300]

