"""structlog set-up: JSON lines for machines, aligned key=value for people.

Every line passes ``urls.scrub`` last, whoever logs it (our code, urllib3, waitress, APScheduler):
a URL's user:password or a secret the process holds never reaches the log, whatever path an
error took to get there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from slowatch.adapters.urls import scrub


def scrubbed(value: Any) -> Any:
    """``value`` with every string in it (inside dicts, lists and tuples too) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))  # anything else is rendered as text anyway


def scrub_secrets(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor: the last before rendering."""
    return {k: scrubbed(v) for k, v in event.items()}


class ScrubFilter(logging.Filter):
    """The same for the standard library's records (formatted here, so arguments are covered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure(fmt: str = "console", level: str = "info") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # waitress and apscheduler log through the standard library: same stream, same level floor.
    logging.basicConfig(stream=sys.stderr, level=max(getattr(logging, level.upper()), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubFilter())
