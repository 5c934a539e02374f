"""The daemon's alert state on disk (``SLOWATCH_STATE_DIR``), so a restart, even after SIGKILL,
keeps every alert's ``startsAt`` and still delivers the resolves it owed.

One JSON file, ``alerts.json``, holding the alert book and the delivery bookkeeping together (so
they can never disagree), written atomically (``slowatch.files``: a temporary file in the same directory, fsync,
``os.replace``, fsync of the directory). Format, version 1::

    {
      "kind": "slowatch-state",
      "version": 1,
      "saved_at": "2026-11-27T12:00:00.123456Z",
      "alerts": [
        {"labels": {"alertname": "...", ...}, "annotations": {"summary": "...", ...},
         "starts_at": "...", "ends_at": null, "slo": "auth/login-availability"}
      ],
      "delivery": {"http://alertmanager:9093": {"pending_resolved": ["<Alert.id>", ...]}}
    }

``ends_at`` null means firing. ``delivery`` maps each Alertmanager URL (credentials removed) to
the ids of the resolved alerts it still has to receive. Times are RFC 3339 UTC at full precision,
so a reloaded ``starts_at`` is exactly the one Alertmanager was sent. Reading checks the schema
with pydantic (``_StateDoc``, strict), so a broken file names the field that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, Field, ValidationError, field_validator

from slowatch.core.alerting import Alert, AlertBook, labels_of
from slowatch.core.conventions import rfc3339
from slowatch.errors import StateError
from slowatch.files import write_atomically

log = structlog.get_logger(__name__)

STATE_FILENAME = "alerts.json"
KIND = "slowatch-state"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SavedState:
    book: AlertBook = field(default_factory=AlertBook)
    pending: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per Alertmanager URL: ids (``Alert.id``) of the resolved alerts it still has to receive."""
    saved_at: datetime | None = None


class StateStore:
    """Loads and saves ``SavedState`` in one directory. Not thread-safe: the daemon saves from one place."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILENAME
        self._written: tuple[AlertBook, dict[str, tuple[str, ...]]] | None = None
        """What the file holds since this store last wrote it."""

    def load(self) -> SavedState:
        """The saved state, or an empty one when nothing was saved yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return SavedState()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the alert state: {exc.strerror or exc}") from exc
        try:
            return _decode(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, pydantic's ValidationError
            raise StateError(
                f"{self.path}: unreadable alert state ({_reason(exc)}); move it aside "
                f"(mv {self.path} {self.path}.broken) and restart: slowatch then starts with no alert "
                "state, and alerts that still fire are sent again with new start times"
            ) from exc

    def load_or_set_aside(self) -> SavedState:
        """``load``, but a file whose content is broken (a disk fault, a hand edit) is moved to
        ``alerts.json.broken`` and logged, and the daemon starts with no alert state: alerts that
        still fire are sent again with new start times, which beats not monitoring at all. A
        directory that cannot be read at all stays fatal (every save would fail too)."""
        try:
            return self.load()
        except StateError as exc:
            if not isinstance(exc.__cause__, ValueError):
                raise
            aside = self.path.with_name(f"{STATE_FILENAME}.broken")
            try:
                self.path.replace(aside)
            except OSError as move:
                raise StateError(f"{exc}; moving it aside failed: {move.strerror or move}") from move
            log.error("alert state unreadable; moved aside, starting with no alert state",
                      error=_reason(exc.__cause__), moved_to=str(aside))
            return SavedState()

    def save(self, book: AlertBook, pending: Mapping[str, Sequence[str]], now: datetime) -> None:
        """Writes only when the book or the pending resolves changed since this store's last write
        (``saved_at`` is then when they last changed): each cycle and each resend saves, and with
        thousands of alerts the file is megabytes (10,000 SLOs: 5.5 MB, 0.7 s a save)."""
        state = (book, {url: tuple(ids) for url, ids in pending.items()})
        if state == self._written:
            return
        text = json.dumps(_encode(book, pending, now), indent=1, ensure_ascii=False) + "\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, text, mode=0o600)  # alert text may be private
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot write the alert state: {exc.strerror or exc} "
                "(check that SLOWATCH_STATE_DIR exists, is writable by slowatch and its disk is not full)"
            ) from exc
        self._written = state


def _encode(book: AlertBook, pending: Mapping[str, Sequence[str]], now: datetime) -> dict[str, Any]:
    return {
        "kind": KIND,
        "version": SCHEMA_VERSION,
        "saved_at": _time(now),
        "alerts": [
            {
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "starts_at": _time(a.starts_at),
                "ends_at": None if a.ends_at is None else _time(a.ends_at),
                "slo": a.slo_id,
            }
            for a in book.alerts
        ],
        "delivery": {url: {"pending_resolved": list(ids)} for url, ids in sorted(pending.items())},
    }


class _AlertDoc(BaseModel):
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    slo: str | None = None

    @field_validator("labels")
    @classmethod
    def _named(cls, labels: dict[str, str]) -> dict[str, str]:
        if "alertname" not in labels:
            raise ValueError("no alertname")
        return labels


class _DeliveryDoc(BaseModel):
    pending_resolved: list[str]


class _StateDoc(BaseModel):
    """The file's schema (version 1). Unknown keys are ignored, so an older slowatch reads a file
    a newer one added optional keys to."""

    kind: str
    version: int
    saved_at: AwareDatetime | None = None
    alerts: list[_AlertDoc]
    delivery: dict[str, _DeliveryDoc]


def _decode(text: str) -> SavedState:
    head = json.loads(text)  # the two checks first: another file or version is not "a broken field"
    if not isinstance(head, dict) or head.get("kind") != KIND:
        raise ValueError(f"not a slowatch state file (expected \"kind\": \"{KIND}\")")
    if head.get("version") != SCHEMA_VERSION:
        raise ValueError(f"schema version {head.get('version')!r}, this slowatch reads version {SCHEMA_VERSION}")
    doc = _StateDoc.model_validate_json(text, strict=True)
    alerts = [
        Alert(
            labels=labels_of(a.labels),
            annotations=labels_of(a.annotations),
            starts_at=a.starts_at.astimezone(UTC),
            ends_at=None if a.ends_at is None else a.ends_at.astimezone(UTC),
            slo_id=a.slo,
        )
        for a in doc.alerts
    ]
    firing = [a for a in alerts if a.firing]
    if len({a.labels for a in firing}) != len(firing):
        raise ValueError("two firing alerts share a label set")
    return SavedState(
        book=AlertBook(firing=tuple(sorted(firing, key=lambda a: a.labels)),
                       resolved=tuple(a for a in alerts if not a.firing)),
        pending={url: tuple(entry.pending_resolved) for url, entry in doc.delivery.items()},
        saved_at=None if doc.saved_at is None else doc.saved_at.astimezone(UTC),
    )


def _time(t: datetime) -> str:
    return rfc3339(t, exact=True)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
    return str(exc)


def _where(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
