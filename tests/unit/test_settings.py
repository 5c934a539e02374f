"""Settings: the environment, and a command-line flag of the same name wins (INTERFACES.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from slowatch.errors import SettingsError
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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="unset exports every burn-rate window"),
        pytest.param("", None, id="empty is as unset"),
        pytest.param("5m,1h,6h,30d", frozenset({"5m", "1h", "6h", "30d"}), id="a comma list of window names"),
        pytest.param(" 5m , 1h ,", frozenset({"5m", "1h"}), id="spaces and a trailing comma are ignored"),
        pytest.param("60m,720h", frozenset({"1h", "30d"}), id="a duration is named as slowatch names it"),
        pytest.param("month,week/Europe/Berlin", frozenset({"month", "week/Europe/Berlin"}),
                     id="calendar windows by their names"),
    ],
)
def test_metrics_windows(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: frozenset[str] | None) -> None:
    if value is None:
        monkeypatch.delenv("SLOWATCH_METRICS_WINDOWS", raising=False)
    else:
        monkeypatch.setenv("SLOWATCH_METRICS_WINDOWS", value)
    assert from_flags({}).metrics_windows == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"SLOWATCH_METRICS_WINDOWS": "5m,1hour"},
                     "SLOWATCH_METRICS_WINDOWS: '1hour' is not a window: write a comma list of burn-rate windows "
                     "(5m, 30m, 1h, 2h, 6h, 1d, 3d) and SLO windows (30d, month, week), e.g. 5m,1h,6h,30d",
                     id="a window that is not one names the variable and what to write"),
        pytest.param({"SLOWATCH_QUERY_RETRIES": "three"},
                     "SLOWATCH_QUERY_RETRIES: Input should be a valid integer, unable to parse string as an integer",
                     id="any other setting names its variable too"),
    ],
)
def test_a_setting_that_cannot_be_used_is_a_settings_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                            message: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as caught:
        from_flags({})
    assert str(caught.value) == message
