"""Settings: the environment, and a command-line flag of the same name wins (INTERFACES.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from slowatch.settings import from_flags


@pytest.mark.parametrize(
    ("env", "flags", "read", "expected"),
    [
        pytest.param({"SLOWATCH_LISTEN": "0.0.0.0:9099"}, {"listen": "127.0.0.1:1"}, "listen", "127.0.0.1:1",
                     id="a flag wins over the environment"),
        pytest.param({"SLOWATCH_LISTEN": "0.0.0.0:9099"}, {"listen": None}, "listen", "0.0.0.0:9099",
                     id="a flag not given leaves the environment's value"),
        pytest.param({}, {"paths": ["deploy/slos"], "func": print, "format": "json"}, "listen", "127.0.0.1:9099",
                     id="arguments that are not settings are ignored"),
        pytest.param({}, {"evaluation_interval": "1m"}, "evaluation_interval", timedelta(minutes=1),
                     id="a flag is validated like the environment variable"),
        pytest.param({}, {"alertmanager_urls": "http://a:9093/, http://b:9093"}, "alertmanager_urls",
                     ["http://a:9093", "http://b:9093"], id="a comma-separated flag is split like the variable"),
    ],
)
def test_from_flags(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flags: dict[str, Any], read: str,
                    expected: object) -> None:
    monkeypatch.delenv("SLOWATCH_LISTEN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert getattr(from_flags(flags), read) == expected
