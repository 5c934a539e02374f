"""Hypothesis properties of what the daemon reads from disk and what it lets out:

* any bytes as a spec file give SLOs or a SpecError whose every problem names the file, never
  another exception (raw bytes, and YAML built from the spec's own keys, which goes deeper);
* any bytes as the state file give a SavedState or a StateError (``load``), and
  ``load_or_set_aside`` always starts (the broken file moved aside and logged), never fatal;
* ``scrub`` never lets a remembered secret or a URL's password through, whatever text is around it.

Example counts keep the file within the fuzz budget (a few seconds here)."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from urllib.parse import urlencode

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slowatch.adapters.prometheus import form_encoded
from slowatch.adapters.state import STATE_FILENAME, SavedState, StateStore
from slowatch.adapters.urls import MASK, remember_secret, scrub
from slowatch.core.alerting import AlertBook
from slowatch.errors import SpecError, StateError
from slowatch.spec import load_specs

EXAMPLES = 300
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# The spec's own vocabulary, so generated documents reach past the first "unknown key" check.
SPEC_KEYS = ("apiVersion", "kind", "service", "slos", "name", "objective", "window", "sli", "ratio", "good",
             "total", "errors", "latency", "histogram", "selector", "threshold", "throughput", "query",
             "minimum", "slice", "alerting", "burn_rate", "budget_consumed", "labels", "description",
             "metadata", "spec", "objectives", "target", "timeWindow", "duration", "isRolling")
SPEC_VALUES = st.one_of(
    st.sampled_from(["slowatch/v1", "openslo/v1", "sloth.slok.xyz/v1", "SLO", "Service", "30d", "month", "5m", "2s",
                     'sum(rate(x_total[5m]))', 'http_requests_total{code=~"5.."}', "le", "", "99.9", "-1"]),
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12), st.booleans(), st.none(),
    st.text(max_size=20),
)
SPEC_DOCS: st.SearchStrategy[Any] = st.recursive(
    SPEC_VALUES,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(SPEC_KEYS), inner, max_size=6)),
    max_leaves=30,
)


def _load_spec(data: bytes) -> None:
    with TemporaryDirectory() as d:
        path = Path(d) / "fuzzed.yaml"
        path.write_bytes(data)
        try:
            slos = load_specs([path])
        except SpecError as exc:
            assert exc.problems, "a SpecError lists its problems"
            assert all(p.file == str(path) for p in exc.problems), exc.problems
        else:
            assert all(s.service for s in slos)


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_as_a_spec_file_give_slos_or_a_spec_error_naming_the_file(data: bytes) -> None:
    _load_spec(data)


@FUZZ
@given(SPEC_DOCS)
def test_any_yaml_document_made_of_spec_keys_gives_slos_or_a_spec_error_naming_the_file(doc: Any) -> None:
    _load_spec(yaml.safe_dump(doc, allow_unicode=True).encode())


STATE_DOCS = st.recursive(
    st.one_of(st.sampled_from(["slowatch-state", "2026-11-27T12:00:00Z", "alertname", "x"]), st.integers(-2, 3),
              st.none(), st.booleans(), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["kind", "version", "saved_at", "alerts", "delivery", "labels", "annotations", "starts_at",
                         "ends_at", "slo", "pending_resolved", "alertname"]), inner, max_size=6)),
    max_leaves=25,
)


def _state(data: bytes) -> None:
    with TemporaryDirectory() as d:
        store = StateStore(Path(d))
        store.path.write_bytes(data)
        try:
            loaded = store.load()
        except StateError as exc:
            assert str(exc).startswith(f"{store.path}: unreadable alert state")
            assert store.load_or_set_aside() == SavedState()
            assert not store.path.exists() and (Path(d) / f"{STATE_FILENAME}.broken").read_bytes() == data
        else:
            assert isinstance(loaded.book, AlertBook)
            assert store.load_or_set_aside() == loaded
        store.save(AlertBook(), {}, datetime(2026, 11, 1, tzinfo=UTC))  # and the daemon can save again
        again = store.load()
        assert (again.book, dict(again.pending)) == (AlertBook(), {})


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_as_the_state_file_are_loaded_or_set_aside_never_fatal(data: bytes) -> None:
    _state(data)


@FUZZ
@given(STATE_DOCS)
def test_any_json_shaped_like_the_state_file_is_loaded_or_set_aside_never_fatal(doc: Any) -> None:
    _state(json.dumps(doc).encode())


SECRET = st.text(alphabet=string.ascii_letters + string.digits + "-_.~!$&'()*+,;=%", min_size=4, max_size=24)


@FUZZ
@given(secret=SECRET, before=st.text(max_size=60), after=st.text(max_size=60),
       user=st.text(alphabet=string.ascii_letters, min_size=1, max_size=8))
def test_scrub_never_lets_a_url_password_through(secret: str, before: str, after: str, user: str) -> None:
    text = f"{before} http://{user}:{secret}@127.0.0.1:9090/api {after}"
    out = scrub(text)
    assert f"{user}:{secret}@" not in out
    assert "127.0.0.1:9090/api" in out


@FUZZ
@given(secret=st.text(alphabet=string.ascii_letters + string.digits, min_size=4, max_size=24),
       before=st.text(alphabet=string.printable, max_size=60), after=st.text(alphabet=string.printable, max_size=60))
def test_scrub_masks_a_remembered_secret_anywhere(secret: str, before: str, after: str) -> None:
    remember_secret(secret)
    out = scrub(f"{before}{secret}{after}")
    assert secret not in out
    assert MASK in out


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=200), max_size=5))
def test_the_query_api_form_body_is_exactly_what_urlencode_writes(form: dict[str, str]) -> None:
    assert form_encoded(form) == urlencode(form)


def test_a_form_body_with_a_2000_slo_key_regex_is_still_urlencode_byte_for_byte() -> None:
    regex = "|".join(f"svc\\-{i:04d} é" for i in range(2000))
    form = {"query": f'sum by (service) (x{{service=~"{regex}"}}[5m] offset 1h)', "time": "1793491200.000"}
    assert form_encoded(form) == urlencode(form)
