"""Real servers over the generated history, started once per session.

A missing binary FAILS the tests that need it (never skips): CI must install prometheus,
prometheus-alertmanager and victoria-metrics (Debian packages of those names), and scripts/setup
unpacks the current releases into .tools/sid. ``engine`` runs a test once per query engine and
version: Prometheus 2.42 and 3.5, VictoriaMetrics 1.79 and 1.145.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import pytest

from tests.support.generator import History
from tests.support.processes import (
    PROMETHEUS_VERSIONS,
    VICTORIA_METRICS_VERSIONS,
    ProcessError,
    Server,
    VictoriaMetrics,
    create_blocks,
    start_prometheus,
    start_victoria_metrics,
)

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _or_fail(start: Callable[[], T]) -> T:
    try:
        return start()
    except ProcessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def blocks(history: History, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The history backfilled into Prometheus TSDB blocks (once; each Prometheus links them in)."""
    out = tmp_path_factory.mktemp("history") / "blocks"
    return _or_fail(lambda: create_blocks(history.series, out))


@pytest.fixture(scope="session")
def prometheus(blocks: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _or_fail(lambda: start_prometheus(tmp_path_factory.mktemp("prometheus"), blocks))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def victoria_metrics(history: History, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    work = tmp_path_factory.mktemp("victoria-metrics")
    server = _or_fail(lambda: start_victoria_metrics(work))
    try:
        server.import_series(history.series, work)
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


ENGINES = tuple([("prometheus", v) for v in PROMETHEUS_VERSIONS]
                + [("victoria-metrics", v) for v in VICTORIA_METRICS_VERSIONS])


@pytest.fixture(scope="session", params=ENGINES, ids=[f"{name}-{version}" for name, version in ENGINES])
def engine(request: pytest.FixtureRequest, history: History, blocks: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Each query engine and version over the same history (the stable ones are the session's
    ``prometheus`` and ``victoria_metrics``; the current ones start here)."""
    name, version = request.param
    stable = {"prometheus": PROMETHEUS_VERSIONS[0], "victoria-metrics": VICTORIA_METRICS_VERSIONS[0]}
    if version == stable[name]:
        yield cast(Server, request.getfixturevalue(name.replace("-", "_")))
        return
    work = tmp_path_factory.mktemp(f"{name}-{version}")
    server: Server
    if name == "prometheus":
        server = _or_fail(lambda: start_prometheus(work, blocks, version=version))
    else:
        vm = _or_fail(lambda: start_victoria_metrics(work, version=version))
        try:
            vm.import_series(history.series, work)
        except BaseException:
            vm.stop()
            raise
        server = vm
    yield server
    server.stop()


@pytest.fixture
def engine_key(engine: Server, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(name, version) of the ``engine`` this test runs on: the key of per-engine expectations."""
    return cast(tuple[str, str], request.node.callspec.params["engine"])
