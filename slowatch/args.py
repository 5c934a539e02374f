"""Command-line argument types (argparse ``type=``) shared by the commands: a value the core
refuses becomes argparse's usage error (exit 2) with the core's own message."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from slowatch.core.conventions import parse_instant
from slowatch.core.windows import DurationError, parse_duration


def instant(text: str) -> datetime:
    """RFC 3339 (``2026-11-01T00:00:00Z``) or unix seconds."""
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def duration(text: str) -> timedelta:
    """A Prometheus duration (``5m``, ``1h30m``, ``7d``)."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
