"""Settings from the environment (``SLOWATCH_*``); a CLI flag of the same name wins.

One ``Settings`` object is built by the CLI and passed down; nothing reads the environment at
import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from slowatch.core.windows import DurationError, parse_duration


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLOWATCH_", extra="ignore")

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

    @field_validator("alertmanager_urls", mode="before")
    @classmethod
    def _split_urls(cls, v: object) -> object:
        if isinstance(v, str):
            return [u.strip().rstrip("/") for u in v.split(",") if u.strip()]
        return v

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


def from_flags(flags: Mapping[str, Any]) -> Settings:
    """Settings from the environment, where a command-line flag of a setting's name wins (INTERFACES.md:
    "a flag of the same name wins"). ``flags`` may hold anything (``vars(args)``): only settings count,
    and a flag left out (None) does not override."""
    return Settings(**{k: v for k, v in flags.items() if k in Settings.model_fields and v is not None})
