"""Settings from the environment (``SLOWATCH_*``); a CLI flag of the same name wins.

One ``Settings`` object is built by the CLI and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from slowatch.core.windows import BURN_RATE_WINDOWS, DurationError, format_duration, parse_duration
from slowatch.errors import SettingsError

ENV_PREFIX = "SLOWATCH_"
# A calendar SLO window's name on /metrics (core.model.CalendarWindow.name): "month", "week/Europe/Berlin".
_CALENDAR_WINDOW = re.compile(r"^(month|week)(/\S+)?$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    prometheus_url: str = "http://127.0.0.1:9090"
    alertmanager_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    grafana_url: str | None = None
    grafana_token: SecretStr | None = None
    listen: str = "127.0.0.1:9099"
    evaluation_interval: timedelta = timedelta(seconds=30)
    state_dir: Path | None = None
    log_format: Literal["json", "console"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Beyond INTERFACES.md: knobs an SRE expects to be able to turn.
    query_timeout: timedelta = timedelta(seconds=30)
    """Per Prometheus request (read timeout); connecting gets at most 5 s."""
    query_retries: int = 3
    concurrency: int = 8
    """SLOs evaluated at once (a bounded pool; Prometheus sees at most this many queries)."""
    alert_resend_interval: timedelta = timedelta(minutes=1)
    """Firing alerts are re-sent this often, well inside Alertmanager's resolve_timeout (5m)."""
    shard: str | None = None
    """``K/N``: evaluate only the SLOs that rendezvous hashing gives shard K of N; ``auto``: K from
    the StatefulSet pod ordinal (SLOWATCH_POD_INDEX or the hostname) and N from SLOWATCH_SHARDS."""
    prometheus_bearer_token_file: Path | None = None
    """Sent as ``Authorization: Bearer`` to Prometheus, read again whenever the file changes.
    (Basic auth: ``user:password@`` in the Prometheus or Alertmanager URL, sent as a header.)"""
    web_config_file: Path | None = None
    """TLS and basic auth for slowatch's own HTTP server, in exporter-toolkit's web config format
    (``slowatch.adapters.webconfig``); /healthz and /readyz stay open for probes."""
    external_url: str | None = None
    """slowatch's URL as people reach it (behind a proxy, say); alerts then carry it as
    Alertmanager's ``generatorURL``, pointing at ``/status/{service}/{slo}``."""
    metrics_windows: Annotated[frozenset[str] | None, NoDecode] = None
    """The burn-rate windows /metrics exports (``slowatch_slo_burn_rate{window}``), by name: burn-rate
    windows (5m ... 3d) and SLO windows (30d, month); None: all. At 10,000 SLOs the 8 windows are 80,000
    of the ~190,000 series (bench/results/metrics_load.md)."""
    http_process: bool = True
    """Serve HTTP from a process of its own (``adapters/serving.py``), so that no request waits for
    the evaluating process's GIL; false: from a thread of the daemon, as before."""

    @field_validator("alertmanager_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: object) -> object:
        if isinstance(v, str):
            return [u.strip().rstrip("/") for u in v.split(",") if u.strip()]
        return v

    @field_validator("metrics_windows", mode="before")
    @classmethod
    def _windows(cls, v: object) -> object:
        if not isinstance(v, str):
            return v
        names = [w.strip() for w in v.split(",") if w.strip()]
        if not names:
            return None  # set but empty: as unset, every window
        return frozenset(_window_name(w) for w in names)

    @field_validator("prometheus_url", "grafana_url", "external_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @field_validator("evaluation_interval", "query_timeout", "alert_resend_interval", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip().lstrip("-").replace(".", "").isdigit():
            try:
                return parse_duration(v)
            except DurationError as exc:
                raise ValueError(str(exc)) from exc
        if isinstance(v, str):
            return timedelta(seconds=float(v))
        return v

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


def _window_name(text: str) -> str:
    """A window as /metrics names it: a duration in its canonical spelling ("720h" is "30d"), or a
    calendar window's name."""
    if _CALENDAR_WINDOW.match(text):
        return text
    try:
        return format_duration(parse_duration(text))
    except DurationError:
        raise ValueError(f"{text!r} is not a window: write a comma list of burn-rate windows "
                         f"({', '.join(BURN_RATE_WINDOWS)}) and SLO windows (30d, month, week), "
                         "e.g. 5m,1h,6h,30d") from None


def from_flags(flags: Mapping[str, Any]) -> Settings:
    """Settings from the environment, where a command-line flag of a setting's name wins (INTERFACES.md:
    "a flag of the same name wins"). ``flags`` may hold anything (``vars(args)``): only settings count,
    and a flag left out (None) does not override. A value that cannot be used raises ``SettingsError``
    naming its variable, one line per problem."""
    try:
        return Settings(**{k: v for k, v in flags.items() if k in Settings.model_fields and v is not None})
    except ValidationError as exc:
        raise SettingsError("\n".join(_problem(e) for e in exc.errors())) from None


def _problem(error: Mapping[str, Any]) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "settings"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{field.split('.')[0].upper()}: {message}"
