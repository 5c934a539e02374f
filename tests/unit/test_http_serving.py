"""adapters/serving.py in process: views over the pipe (ViewEncoder -> ViewDecoder), the forwarded
paths (Forwarder -> the daemon's App on a Unix socket), and the Shipping publisher. The serving
process itself (spawned, killed, restarted) is tests/integration/test_serving_process.py."""

from __future__ import annotations

import gzip
import io
import json
import pickle
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from slowatch.adapters.http import App, Server, serve, serve_unix
from slowatch.adapters.metrics import new_registry
from slowatch.adapters.serving import CHUNK, FORWARDED, Forwarder, Shipping, ViewDecoder, ViewEncoder, history_added
from slowatch.core.budget import BudgetStatus
from slowatch.view import DaemonView, ViewHolder
from tests.unit.test_http import AT, VIEW, slo, status

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def fleet(n: int) -> tuple[BudgetStatus, ...]:
    return tuple(status(slo(f"svc{i % 7}", f"slo{i}"), (i % 13) / 10) for i in range(n))


def kinds(messages: list[bytes]) -> list[str]:
    """What each message is (an SLO sent before is a number in it: kept as that number here)."""
    class Peek(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return pid

    return [Peek(io.BytesIO(m)).load()[0] for m in messages]


def ship(encoder: ViewEncoder, decoder: ViewDecoder, view: DaemonView) -> tuple[DaemonView, list[bytes]]:
    messages = list(encoder.messages(view))
    out = [decoder.take(m) for m in messages]
    assert all(v is None for v in out[:-1]), "only the last message finishes the view"
    assert out[-1] is not None
    return out[-1], messages


def tuples(view: DaemonView) -> DaemonView:
    """``view`` as the serving process gets it: each history a tuple (StatusHistory's own kind)."""
    return replace(view, history={k: tuple(v) for k, v in view.history.items()})


BIG = DaemonView(at=AT, statuses=fleet(130), ready=True,
                 history={f"svc{i % 7}/slo{i}": [(AT, i / 130)] * 40 for i in range(130)})


@pytest.mark.parametrize(("view", "chunk", "history_chunk", "expected"), [
    pytest.param(VIEW, CHUNK, 4096, ["slos", "view", "statuses", "history", "publish"],
                 id="the http tests' view (alerts, history, a failed SLO, a spec error) in one message each"),
    pytest.param(VIEW, 2, 4096, ["slos"] * 3 + ["view"] + ["statuses"] * 3 + ["history", "publish"],
                 id="the same view two statuses a message"),
    pytest.param(DaemonView(at=None), CHUNK, 4096, ["view", "publish"], id="the empty view before the first cycle"),
    pytest.param(BIG, 64, 4096, ["slos"] * 3 + ["view"] + ["statuses"] * 3 + ["history"] * 2 + ["publish"],
                 id="130 SLOs: statuses in three messages, 5,330 history points in two"),
])
def test_a_shipped_view_arrives_equal(view: DaemonView, chunk: int, history_chunk: int, expected: list[str]) -> None:
    got, messages = ship(ViewEncoder(chunk, history_chunk), ViewDecoder(), view)
    assert got == tuples(view)
    assert kinds(messages) == expected


def test_the_next_view_sends_only_the_history_points_it_added() -> None:
    encoder, decoder = ViewEncoder(), ViewDecoder()
    statuses = fleet(3)
    ids = [s.slo.id for s in statuses]

    def view(minutes: range) -> DaemonView:  # a StatusHistory of 5 points: the oldest falls off
        points = tuple((AT + timedelta(minutes=m), m / 100) for m in minutes)
        return DaemonView(at=AT, statuses=statuses, history={ids[0]: points[-5:], ids[1]: points[:2]})

    ship(encoder, decoder, view(range(5)))
    got, messages = ship(encoder, decoder, view(range(6)))
    assert got == view(range(6))
    (history,) = [pickle.loads(m) for m in messages if kinds([m]) == ["history"]]
    # Only the SLO whose chart moved, with its one new point and its length.
    assert history == ("history", ((ids[0], ((AT + timedelta(minutes=5), 0.05),), 5, True),))


@pytest.mark.parametrize(("before", "after", "sent"), [
    pytest.param((1, 2, 3), (2, 3, 4), ((4,), 3, True), id="one point added, the oldest dropped: the new point"),
    pytest.param((1, 2, 3), (1, 2, 3), ((), 3, True), id="unchanged: nothing"),
    pytest.param((1, 2, 3), (7, 8), ((7, 8), 2, False), id="not a continuation (the chart started again): whole"),
    pytest.param((), (1,), ((1,), 1, False), id="a new SLO's first point: whole"),
])
def test_history_travels_as_what_it_added(before: tuple[int, ...], after: tuple[int, ...],
                                          sent: tuple[tuple[int, ...], int, bool]) -> None:
    def points(minutes: tuple[int, ...]) -> tuple[tuple[datetime, float], ...]:
        return tuple((AT + timedelta(minutes=m), float(m)) for m in minutes)

    added = history_added(points(before), points(after))
    assert added == (points(sent[0]), sent[1], sent[2])


def test_a_gone_slos_history_is_dropped() -> None:
    encoder, decoder = ViewEncoder(), ViewDecoder()
    statuses = fleet(2)
    ids = [s.slo.id for s in statuses]
    ship(encoder, decoder, DaemonView(at=AT, statuses=statuses, history={i: ((AT, 1.0),) for i in ids}))
    got, messages = ship(encoder, decoder, DaemonView(at=AT, statuses=statuses[:1], history={ids[0]: ((AT, 1.0),)}))
    assert got.history == {ids[0]: ((AT, 1.0),)}
    assert "history-drop" in kinds(messages)


def test_the_next_view_refers_to_the_slos_already_sent() -> None:
    encoder, decoder = ViewEncoder(), ViewDecoder()
    statuses = fleet(100)
    first, _ = ship(encoder, decoder, DaemonView(at=AT, statuses=statuses))
    # The next cycle: new statuses of the same SLO objects.
    again = tuple(replace(s, consumed=s.consumed + 0.5) for s in statuses)
    second, messages = ship(encoder, decoder, DaemonView(at=AT, statuses=again))
    assert second.statuses == again
    assert "slos" not in kinds(messages)
    assert all(b.slo is a.slo for a, b in zip(first.statuses, second.statuses, strict=True))
    whole = len(pickle.dumps(again))
    assert sum(map(len, messages)) < whole * 0.9  # the SLOs are not sent again


def test_a_reload_sends_the_new_slos_and_forgets_the_gone_ones() -> None:
    encoder, decoder = ViewEncoder(), ViewDecoder()
    statuses = fleet(10)
    ship(encoder, decoder, DaemonView(at=AT, statuses=statuses))
    reloaded = (*statuses[:8], status(slo("svc-new", "fresh"), 0.2))
    got, messages = ship(encoder, decoder, DaemonView(at=AT, statuses=reloaded))
    assert got.statuses == reloaded
    assert kinds(messages)[:2] == ["forget", "slos"]
    assert len(decoder.slos) == 9  # the two gone SLOs are no longer held


def test_a_new_encoder_for_a_new_serving_process_sends_every_slo_again() -> None:
    view = DaemonView(at=AT, statuses=fleet(5))
    encoder = ViewEncoder()
    ship(encoder, ViewDecoder(), view)
    got, messages = ship(ViewEncoder(), ViewDecoder(), view)
    assert got == view and kinds(messages)[0] == "slos"


def test_stop_is_a_message_too() -> None:
    from slowatch.adapters.serving import STOP

    decoder = ViewDecoder()
    assert decoder.take(STOP) is None and decoder.stopped


# --- forwarding ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon_side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, Server]]:
    holder = ViewHolder(VIEW)
    registry, _ = new_registry(holder)
    app = App(holder, registry)
    backend = serve_unix(app, tmp_path_factory.mktemp("private") / "daemon.sock")
    yield app, backend
    backend.close()


@pytest.fixture(scope="module")
def public(daemon_side: tuple[App, Server]) -> Iterator[Server]:
    _, backend = daemon_side
    # The serving process's App sees a view of its own: an empty one, so that a forwarded answer
    # cannot have come from it.
    own = App(ViewHolder(DaemonView(at=None)), new_registry(ViewHolder())[0])
    with serve(Forwarder(own, Path(backend.host)), "127.0.0.1", 0, threads=2) as server:
        yield server


def direct(app: App, path: str, query: str = "", **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": "GET",
               **{"HTTP_" + k.upper(): v for k, v in headers.items()}}
    code, fields, body = app.handle(environ)
    return code, dict(fields), body


@pytest.mark.parametrize(("path", "query", "headers"), [
    pytest.param("/metrics", "", {}, id="metrics in the text format"),
    pytest.param("/metrics", "", {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}, id="metrics openmetrics gzipped"),
    pytest.param("/metrics", "name[]=slowatch_slo_sli_ratio", {}, id="metrics filtered by name"),
    pytest.param("/healthz", "", {}, id="healthz"),
])
def test_forwarded_paths_answer_as_the_daemon_does(
        daemon_side: tuple[App, Server], public: Server, path: str, query: str, headers: dict[str, str]) -> None:
    app, _ = daemon_side
    got = requests.get(f"{public.url}{path}?{query}", headers={"Accept-Encoding": "identity", **headers},
                       timeout=10, stream=True)
    raw = got.raw.read(decode_content=False)
    code, fields, body = direct(app, path, query, **{k.replace("-", "_"): v for k, v in headers.items()})
    assert f"{got.status_code} {got.reason}" == code
    for name in ("Content-Type", "Content-Encoding", "Vary"):
        assert got.headers.get(name) == fields.get(name), name
    if fields.get("Content-Encoding") == "gzip":
        raw, body = gzip.decompress(raw), gzip.decompress(body)
    if path == "/metrics":  # the process's own CPU and memory series move between the two reads
        def slo_lines(text: bytes) -> list[bytes]:
            return [ln for ln in text.splitlines() if ln.startswith(b"slowatch_slo_")]

        assert slo_lines(raw) == slo_lines(body) and slo_lines(body)
    else:
        assert raw == body


def test_other_paths_are_the_serving_process_own(public: Server) -> None:
    assert requests.get(f"{public.url}/status", timeout=10).json() == {"evaluated_at": None, "slos": []}
    assert requests.get(f"{public.url}/readyz", timeout=10).status_code == 503


def test_a_daemon_that_does_not_answer_is_a_503_naming_the_path(tmp_path: Path) -> None:
    own = App(ViewHolder(VIEW), new_registry(ViewHolder())[0])
    with serve(Forwarder(own, tmp_path / "nobody.sock"), "127.0.0.1", 0, threads=1) as server:
        answers = {path: requests.get(f"{server.url}{path}", timeout=10) for path in sorted(FORWARDED)}
    for path, got in answers.items():
        assert got.status_code == 503
        error = json.loads(got.content)["error"]
        assert error.startswith(f"the evaluating process did not answer {path}: FileNotFoundError")


def test_shipping_publishes_then_ships() -> None:
    holder, shipped = ViewHolder(), list[DaemonView]()
    publisher = Shipping(holder, shipped.append)
    publisher.publish(VIEW)
    assert holder.get() is VIEW and shipped == [VIEW] and publisher.current() is VIEW
