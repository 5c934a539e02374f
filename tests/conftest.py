"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.generator import History, generate

# A fixed end keeps every generated sample, and so every expected count, the same on every run.
HISTORY_END = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())


@pytest.fixture(scope="session")
def history() -> History:
    """31 days of synthetic traffic at 60 s ending at ``HISTORY_END``, with its exact truth."""
    return generate(HISTORY_END)
