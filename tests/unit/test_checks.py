"""check --live's latency bound: matched as the daemon's queries match it (every spelling of the
bound, core/measure.le_spellings), not as a number."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from slowatch.checks import live_problems
from slowatch.core.model import SLO, LatencySLI, RollingWindow

AT = datetime(2026, 11, 1, tzinfo=UTC)
SLO_ = SLO("auth", "login-latency", 95, RollingWindow(timedelta(days=30)),
           LatencySLI("http_request_duration_seconds", '{service="auth"}', 0.2))


class Series:
    def __init__(self, les: list[str]) -> None:
        self.les = les

    def series(self, selector: str, start: datetime, end: datetime) -> list[Mapping[str, str]]:
        if "_bucket" in selector:
            return [{"le": le} for le in self.les]
        return [{"__name__": "x"}]


@pytest.mark.parametrize(("les", "problem"), [
    pytest.param(["0.1", "0.2", "+Inf"], False, id="Go's 0.2 is the bound"),
    pytest.param(["0.1", "0.2", "0.2", "+Inf"], False, id="two series, both spelled 0.2"),
    pytest.param(["0.1", "0.20", "+Inf"], True,
                 id="0.20 equals 0.2 as a number but no query selects it: reported"),
    pytest.param(["0.1", "0.25", "+Inf"], True, id="no such bound: reported with the bounds that exist"),
])
def test_the_bound_is_matched_by_its_spellings(les: list[str], problem: bool) -> None:
    problems = live_problems([SLO_], Series(les), AT)
    assert bool(problems) == problem
    if problem:
        assert "is not a bucket bound" in problems[0] and "existing bounds" in problems[0]
