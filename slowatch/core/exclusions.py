"""Exclusions: when events count neither as good nor as total (``SLO.exclusions``).

An exclusion is a set of half-open intervals ``[start, end)`` in absolute time. A recurring one
(RFC 5545 ``RRULE``, expanded by python-dateutil) starts each occurrence at its *wall time* in
its timezone, so "Sunday 02:00 Europe/Paris" stays at 02:00 local across a DST change; the
occurrence then lasts ``duration`` of real time. A wall time that does not exist (02:30 on the
spring-forward night) is read with the offset before the change (``fold=0``, as zoneinfo does).

Pure: time is passed in, nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from slowatch.core.model import Exclusion

# The DTSTART of a rule written without ``start``: INTERVAL and the fields a rule leaves out
# (the minute of FREQ=HOURLY, the weekday of FREQ=WEEKLY without BYDAY) count from it. A Monday
# at midnight, so a rule without BYDAY/BYHOUR reads as "Mondays at 00:00" rather than as "the
# weekday and hour the daemon happened to start".
RRULE_ANCHOR = datetime(2024, 1, 1)

Interval = tuple[datetime, datetime]

# Occurrences are expanded a block of time at a time and the blocks kept: every cycle asks for
# the same few weeks for every window of every SLO (dateutil walks from DTSTART on each call,
# ~3 ms a call, ~50 ms an SLO a cycle uncached). A week, so a 30-day window reads ~5 blocks.
BLOCK = timedelta(days=7)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RRuleError(ValueError):
    """An RRULE python-dateutil cannot read, with what to write."""


@lru_cache(maxsize=1024)
def _rule(text: str, timezone: str, start: datetime | None) -> rrule:
    tz = ZoneInfo(timezone)
    dtstart = start.astimezone(tz) if start is not None else RRULE_ANCHOR.replace(tzinfo=tz)
    try:
        rule = rrulestr(text, dtstart=dtstart, forceset=False, unfold=True)
    except (ValueError, TypeError) as exc:
        raise RRuleError(
            f"not an RRULE python-dateutil can read ({exc}): write e.g. FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0"
        ) from None
    if not isinstance(rule, rrule):  # several rules (RRULE + RDATE...) make an rruleset
        raise RRuleError("write one RRULE (no RDATE, EXRULE or EXDATE): e.g. FREQ=WEEKLY;BYDAY=SU;BYHOUR=2")
    return rule


def check_rrule(text: str, timezone: str, start: datetime | None = None) -> None:
    """Raises RRuleError when ``text`` is no single rule (for the spec loader)."""
    _rule(text, timezone, start)


@lru_cache(maxsize=4096)
def _starts(text: str, timezone: str, start: datetime | None, block: int) -> tuple[datetime, ...]:
    """Occurrence starts (UTC) in ``[_EPOCH + block*BLOCK, _EPOCH + (block+1)*BLOCK)``."""
    lo = _EPOCH + block * BLOCK
    # dateutil yields wall times carrying the zone (zoneinfo resolves each one's offset, DST included).
    found = _rule(text, timezone, start).between(lo, lo + BLOCK, inc=True)
    return tuple(sorted(t.astimezone(UTC) for t in found if lo <= t < lo + BLOCK))


def intervals(exclusion: Exclusion, start: datetime, end: datetime) -> list[Interval]:
    """The exclusion's intervals overlapping ``[start, end)``, clipped to it, in UTC, sorted."""
    if exclusion.rrule is None:
        assert exclusion.start is not None and exclusion.end is not None  # spec: one-off has both
        lo, hi = max(exclusion.start, start), min(exclusion.end, end)
        return [(lo.astimezone(UTC), hi.astimezone(UTC))] if lo < hi else []
    # Occurrences starting up to one duration before `start` still reach into it.
    first = (start - exclusion.duration - _EPOCH) // BLOCK
    last = (end - _EPOCH) // BLOCK
    out = []
    for block in range(first, last + 1):
        for begin in _starts(exclusion.rrule, exclusion.timezone, exclusion.start, block):
            lo, hi = max(begin, start), min(begin + exclusion.duration, end)
            if lo < hi:
                out.append((lo, hi))
    return out


def merged(exclusions: Iterable[Exclusion], start: datetime, end: datetime) -> list[Interval]:
    """Every exclusion's intervals inside ``[start, end)``, overlapping ones joined."""
    return list(_merged(tuple(exclusions), start, end))


@lru_cache(maxsize=4096)
def _merged(exclusions: tuple[Exclusion, ...], start: datetime, end: datetime) -> tuple[Interval, ...]:
    # Cached: the SLOs of a file share its exclusions, and a cycle asks for each window twice.
    spans = sorted(i for e in exclusions for i in intervals(e, start, end))
    out: list[Interval] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def excluded_seconds(spans: Sequence[Interval]) -> float:
    return sum((hi - lo for lo, hi in spans), timedelta(0)).total_seconds()
