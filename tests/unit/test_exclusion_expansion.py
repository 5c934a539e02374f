"""core.exclusions expands rules a week-block at a time and caches the blocks: the result must be
what dateutil gives for the whole range at once, whatever the range and wherever blocks cut."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from dateutil.rrule import rrulestr

from slowatch.core.exclusions import BLOCK, RRULE_ANCHOR, intervals
from slowatch.core.model import Exclusion

RULES = [
    pytest.param("FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0", "Europe/Paris", timedelta(hours=2),
                 id="weekly Sunday 02:00 in Paris across both DST changes"),
    pytest.param("FREQ=DAILY;BYHOUR=23;BYMINUTE=30", "America/New_York", timedelta(hours=3),
                 id="a daily occurrence running past midnight and across block edges"),
    pytest.param("FREQ=HOURLY;INTERVAL=5;BYMINUTE=10", "UTC", timedelta(minutes=20),
                 id="every five hours, counted from the anchor"),
    pytest.param("FREQ=MONTHLY;BYDAY=1MO;BYHOUR=4", "Asia/Kolkata", timedelta(hours=8),
                 id="first Monday of the month in a half-hour offset zone"),
]


def _direct(rule: str, tz: str, duration: timedelta, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    r = rrulestr(rule, dtstart=RRULE_ANCHOR.replace(tzinfo=ZoneInfo(tz)))
    out = []
    for local in r.between(start - duration, end, inc=True):
        begin = local.astimezone(UTC)
        lo, hi = max(begin, start), min(begin + duration, end)
        if lo < hi:
            out.append((lo, hi))
    return out


@pytest.mark.parametrize(("rule", "tz", "duration"), RULES)
def test_block_expansion_equals_expanding_the_whole_range_at_once(rule: str, tz: str, duration: timedelta) -> None:
    e = Exclusion(reason="r", rrule=rule, duration=duration, timezone=tz)
    base = datetime(2026, 3, 1, tzinfo=UTC)
    checked = 0
    # Windows from 5 minutes to 40 days, starting at odd offsets so they cut blocks anywhere.
    for i in range(60):
        start = base + timedelta(hours=37 * i, minutes=7 * i)
        for length in (timedelta(minutes=5), timedelta(hours=6), timedelta(days=3), BLOCK, timedelta(days=40)):
            got = intervals(e, start, start + length)
            assert got == _direct(rule, tz, duration, start, start + length)
            checked += len(got)
    assert checked > 100  # the windows did hold occurrences
