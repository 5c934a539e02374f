"""The alert state file: exact round trips, atomic writes, and errors that say what to do."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from slowatch.adapters.state import SCHEMA_VERSION, STATE_FILENAME, SavedState, StateStore
from slowatch.core.alerting import Alert, AlertBook, labels_of
from slowatch.errors import StateError

T0 = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def alert(name: str, *, ends_at: datetime | None = None, starts_at: datetime = T0) -> Alert:
    return Alert(
        labels=labels_of({"alertname": name, "service": "auth", "slo": "login", "severity": "ticket"}),
        annotations=labels_of({"summary": "auth/login: ünïcode survives", "description": "d"}),
        starts_at=starts_at, ends_at=ends_at, slo_id="auth/login",
    )


BOOK = AlertBook(
    firing=(alert("A"), Alert(labels=labels_of({"alertname": "SLOWatchEvaluationFailing", "severity": "ticket"}),
                              annotations=(), starts_at=T0)),
    resolved=(alert("B", ends_at=T0 + timedelta(minutes=5)),),
)


def test_a_saved_book_and_its_bookkeeping_load_back_exactly(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    pending = {"http://am-1:9093": (BOOK.resolved[0].id,), "http://am-2:9093": ()}
    store.save(BOOK, pending, T0)
    loaded = store.load()
    assert loaded.book.firing == tuple(sorted(BOOK.firing, key=lambda a: a.labels))
    assert loaded.book.resolved == BOOK.resolved
    assert loaded.pending == pending
    assert loaded.saved_at == T0
    assert loaded.book.firing[0].starts_at.microsecond == 123456  # full precision: same startsAt
    assert {a.id for a in loaded.book.alerts} == {a.id for a in BOOK.alerts}  # the bookkeeping still matches


def test_no_file_yet_is_an_empty_state(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "never-written").load() == SavedState()


def test_the_file_is_versioned_json_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(BOOK, {}, T0)
    store.save(BOOK, {"http://am:9093": ()}, T0 + timedelta(minutes=1))
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILENAME]
    doc = json.loads(store.path.read_text())
    assert (doc["kind"], doc["version"], doc["saved_at"]) == ("slowatch-state", SCHEMA_VERSION,
                                                              "2026-11-27T12:01:00.123456Z")


def test_an_unchanged_book_is_not_written_again_and_saved_at_says_when_it_last_changed(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(BOOK, {"http://am:9093": ()}, T0)
    store.path.write_text("{}")  # a file this store did not write...
    store.save(BOOK, {"http://am:9093": []}, T0 + timedelta(minutes=1))  # ...stays: nothing changed
    assert store.path.read_text() == "{}"
    store.save(AlertBook(firing=BOOK.firing), {"http://am:9093": ()}, T0 + timedelta(minutes=2))
    assert store.load().saved_at == T0 + timedelta(minutes=2) and store.load().book.resolved == ()


def test_a_save_that_failed_is_written_by_the_next_one_even_if_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        with pytest.raises(StateError):
            store.save(BOOK, {}, T0)
    store.save(BOOK, {}, T0 + timedelta(minutes=1))
    assert store.load().saved_at == T0 + timedelta(minutes=1)


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    store.save(BOOK, {}, T0)
    before = store.path.read_text()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StateError, match="No space left on device"):
        store.save(AlertBook(), {}, T0)
    assert store.path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILENAME]


def test_an_unwritable_directory_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(StateError, match="SLOWATCH_STATE_DIR"):
        StateStore(blocker).save(BOOK, {}, T0)


def _valid() -> dict[str, Any]:
    return {
        "kind": "slowatch-state", "version": SCHEMA_VERSION, "saved_at": "2026-11-27T12:00:00Z",
        "alerts": [{"labels": {"alertname": "A"}, "annotations": {}, "starts_at": "2026-11-27T12:00:00Z",
                    "ends_at": None, "slo": "auth/login"}],
        "delivery": {},
    }


def _with(path: str, value: Any) -> str:
    doc = _valid()
    target: Any = doc
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target[k]
    target[keys[-1]] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("{not json", "Expecting property name", id="truncated JSON"),
        pytest.param("", "Expecting value", id="an empty file"),
        pytest.param(json.dumps([1, 2]), "not a slowatch state file", id="JSON that is not ours"),
        pytest.param(_with("version", 2), "schema version 2", id="a newer schema version"),
        pytest.param(_with("alerts", {}), "alerts: Input should be a valid array", id="alerts not a list"),
        pytest.param(
            _with("alerts.0.starts_at", "yesterday"), "alerts[0].starts_at: Input should be a valid datetime",
            id="a time that is no time",
        ),
        pytest.param(
            _with("alerts.0.starts_at", "2026-11-27T12:00:00"), "alerts[0].starts_at: Input should have timezone info",
            id="a naive time",
        ),
        pytest.param(
            _with("alerts.0.labels", {"alertname": 5}), "alerts[0].labels.alertname: Input should be a valid string",
            id="a label that is no string",
        ),
        pytest.param(
            _with("alerts.0.labels", {"severity": "page"}), "alerts[0].labels: Value error, no alertname",
            id="an alert without a name",
        ),
        pytest.param(
            _with("delivery", {"http://am": {}}), "delivery.http://am.pending_resolved: Field required",
            id="bookkeeping cut",
        ),
    ],
)
def test_a_broken_file_is_a_state_error_saying_to_move_it_aside(tmp_path: Path, text: str, reason: str) -> None:
    store = StateStore(tmp_path)
    store.path.write_text(text)
    with pytest.raises(StateError) as info:
        store.load()
    message = str(info.value)
    assert message.startswith(f"{store.path}: unreadable alert state")
    assert reason in message
    assert f"mv {store.path} {store.path}.broken" in message


def test_two_firing_alerts_with_one_label_set_are_refused(tmp_path: Path) -> None:
    doc = _valid()
    doc["alerts"] = doc["alerts"] * 2
    store = StateStore(tmp_path)
    store.path.write_text(json.dumps(doc))
    with pytest.raises(StateError, match="share a label set"):
        store.load()
