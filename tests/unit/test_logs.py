"""The log's last line of defence (slowatch/logs.py): whatever a caller hands structlog or the
standard library (a URL with a password, a remembered token, inside nested values or an exception's
traceback), the line written has none of it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from slowatch.adapters.urls import remember_secret
from slowatch.logs import configure

TOKEN = "tok-for-the-log-test-31337"
URL = "http://reader:pw-in-a-url-4242@prometheus:9090"


@pytest.fixture
def configured(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Configured inside the test's own capture: structlog binds the stderr it finds then, and the
    filter goes on the handlers the root logger has then."""
    remember_secret(TOKEN)
    yield
    structlog.reset_defaults()


def test_structlog_lines_hold_no_secret(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("json", "info")
    log = structlog.get_logger("t")
    log.error("failed", url=URL, nested={"headers": [f"Bearer {TOKEN}"]}, error=ValueError(f"{URL} said {TOKEN}"))
    try:
        raise RuntimeError(f"while talking to {URL} with {TOKEN}")
    except RuntimeError:
        log.exception("with a traceback")
    err = capsys.readouterr().err
    assert "pw-in-a-url-4242" not in err and TOKEN not in err
    assert '"url": "http://prometheus:9090"' in err and '"Bearer ***"' in err
    assert "RuntimeError: while talking to http://prometheus:9090 with ***" in err


def test_standard_library_lines_hold_no_secret(configured: None, caplog: pytest.LogCaptureFixture) -> None:
    configure("json", "info")
    logging.getLogger("urllib3.connectionpool").warning("Retrying %s with %s", URL, TOKEN)
    err = caplog.text
    assert "pw-in-a-url-4242" not in err and TOKEN not in err
    assert "Retrying http://prometheus:9090 with ***" in err
