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
so a reloaded ``starts_at`` is exactly the one Alertmanager was sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slowatch.core.alerting import Alert, AlertBook, labels_of
from slowatch.core.conventions import rfc3339
from slowatch.errors import StateError
from slowatch.files import write_atomically

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

    def load(self) -> SavedState:
        """The saved state, or an empty one when nothing was saved yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return SavedState()
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the alert state: {exc.strerror or exc}") from exc
        try:
            return _decode(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # ValueError covers JSONDecodeError and bad timestamps; the others, a wrong shape.
            raise StateError(
                f"{self.path}: unreadable alert state ({_reason(exc)}); move it aside "
                f"(mv {self.path} {self.path}.broken) and restart: slowatch then starts with no alert "
                "state, and alerts that still fire are sent again with new start times"
            ) from exc

    def save(self, book: AlertBook, pending: Mapping[str, Sequence[str]], now: datetime) -> None:
        text = json.dumps(_encode(book, pending, now), indent=1, ensure_ascii=False) + "\n"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, text, mode=0o600)  # alert text may be private
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot write the alert state: {exc.strerror or exc} "
                "(check that SLOWATCH_STATE_DIR exists, is writable by slowatch and its disk is not full)"
            ) from exc


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


def _decode(doc: Any) -> SavedState:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ValueError(f"not a slowatch state file (expected \"kind\": \"{KIND}\")")
    version = doc.get("version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema version {version!r}, this slowatch reads version {SCHEMA_VERSION}")
    firing: list[Alert] = []
    resolved: list[Alert] = []
    for i, raw in enumerate(_list(doc["alerts"], "alerts")):
        alert = _alert(raw, f"alerts[{i}]")
        (firing if alert.firing else resolved).append(alert)
    if len({a.labels for a in firing}) != len(firing):
        raise ValueError("two firing alerts share a label set")
    pending: dict[str, tuple[str, ...]] = {}
    for url, entry in _dict(doc["delivery"], "delivery").items():
        ids = _list(_dict(entry, f"delivery[{url!r}]")["pending_resolved"], f"delivery[{url!r}].pending_resolved")
        pending[url] = tuple(_str(i, f"delivery[{url!r}].pending_resolved[]") for i in ids)
    saved_at = doc.get("saved_at")
    return SavedState(
        book=AlertBook(firing=tuple(sorted(firing, key=lambda a: a.labels)), resolved=tuple(resolved)),
        pending=pending,
        saved_at=None if saved_at is None else _parse_time(saved_at, "saved_at"),
    )


def _alert(raw: Any, where: str) -> Alert:
    raw = _dict(raw, where)
    labels = _str_map(raw["labels"], f"{where}.labels")
    if "alertname" not in labels:
        raise ValueError(f"{where}.labels: no alertname")
    ends_at = raw.get("ends_at")
    slo = raw.get("slo")
    return Alert(
        labels=labels_of(labels),
        annotations=labels_of(_str_map(raw.get("annotations", {}), f"{where}.annotations")),
        starts_at=_parse_time(raw["starts_at"], f"{where}.starts_at"),
        ends_at=None if ends_at is None else _parse_time(ends_at, f"{where}.ends_at"),
        slo_id=None if slo is None else _str(slo, f"{where}.slo"),
    )


def _time(t: datetime) -> str:
    return rfc3339(t, exact=True)


def _parse_time(value: Any, where: str) -> datetime:
    t = datetime.fromisoformat(_str(value, where))
    if t.tzinfo is None:
        raise ValueError(f"{where}: {value!r} has no timezone")
    return t.astimezone(UTC)


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{where}: expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{where}: expected a list")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a string, got {value!r}")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    return {_str(k, where): _str(v, f"{where}.{k}") for k, v in _dict(value, where).items()}


def _reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)
