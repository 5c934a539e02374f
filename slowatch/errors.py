"""The exception tree. Every error says where (file, field, SLO, window) and what to do.

    SlowatchError                  base; the CLI prints str(exc) on one line and exits 1
    ├── SpecError                  invalid spec files; .problems lists every one of them
    ├── SourceError                talking to a Prometheus-compatible API failed
    │   ├── SourceUnavailable      connection refused, timeout, 5xx after retries (transient)
    │   └── QueryError             the server rejected the query, or its result is unusable
    ├── GrafanaError               Grafana API refused or failed
    ├── StateError                 the state directory cannot be read or written
    ├── WebConfigError             SLOWATCH_WEB_CONFIG_FILE is unreadable or wrong (file and field)
    ├── ServingError               the HTTP serving process did not start (adapters/serving.py)
    └── SettingsError              a setting that cannot be used (SLOWATCH_SHARD=auto off a StatefulSet, ...)
"""

from __future__ import annotations

from dataclasses import dataclass


class SlowatchError(Exception):
    pass


@dataclass(frozen=True)
class SpecProblem:
    file: str
    path: str
    """Field path inside the file, e.g. ``slos[1].sli.latency.threshold``."""
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class SpecError(SlowatchError):
    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SourceError(SlowatchError):
    pass


class SourceUnavailable(SourceError):
    pass


class QueryError(SourceError):
    pass


class GrafanaError(SlowatchError):
    pass


class StateError(SlowatchError):
    pass


class WebConfigError(SlowatchError):
    pass


class ServingError(SlowatchError):
    pass


class SettingsError(SlowatchError):
    pass


class ComponentError(SlowatchError):
    """A composite's component failed with an internal error (a bug), named in the message: the
    composite is ``error`` (not ``stale``: it is no source failure), the component's exception
    kept as the cause for its traceback."""
