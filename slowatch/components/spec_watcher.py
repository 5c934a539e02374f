"""Hot reload: the spec is loaded again on SIGHUP or when one of its files changes.

A file "changes" when the list of spec files (``slowatch.spec.spec_files``, the loader's own
discovery, so exactly the files it reads) or any one's mtime or size differs from the last load.
An invalid spec keeps the running one, as Prometheus does: the reload metric drops to 0 and
/status says why, until a valid spec is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from slowatch.core.model import SLO
from slowatch.errors import SpecError
from slowatch.ports import Clock, Telemetry
from slowatch.spec import spec_files

log = structlog.get_logger("slowatch")

# How often spec files are checked for changes (SIGHUP reloads at once).
SPEC_POLL_SECONDS = 5.0

Stamp = tuple[tuple[str, float, int], ...]


def stamp(paths: Sequence[str | Path]) -> Stamp:
    """(file, mtime, size) of every spec file the loader would read."""
    out = []
    for path, _ in spec_files(paths):
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime, st.st_size))
        except OSError:  # deleted between listing and stat: the next poll sees it gone
            out.append((str(path), -1.0, -1))
    return tuple(out)


class SpecTarget(Protocol):
    """What a reload updates (``slowatch.cycle.Cycle``)."""

    def replace_spec(self, slos: Sequence[SLO]) -> tuple[int, int]:
        """(added, removed) SLO counts."""
        ...

    def spec_failed(self, error: str) -> None: ...


class SpecWatcher:
    def __init__(
        self,
        paths: Sequence[str | Path],
        load: Callable[[], list[SLO]],
        target: SpecTarget,
        telemetry: Telemetry,
        clock: Clock,
        *,
        on_reloaded: Callable[[str], None] = lambda reason: None,
    ) -> None:
        """``load``: the loader (with the shard filter); ``on_reloaded(reason)`` after each valid
        reload (Grafana provisioning)."""
        self._paths = list(paths)
        self._load = load
        self._target = target
        self._telemetry = telemetry
        self._clock = clock
        self._on_reloaded = on_reloaded
        self._stamp = stamp(self._paths)

    def check(self) -> bool:
        """The poll job: reload if a spec file changed. True when it reloaded successfully."""
        return stamp(self._paths) != self._stamp and self.reload("spec file changed")

    def reload(self, reason: str) -> bool:
        """Load the spec again; False (the running spec kept) when it is invalid."""
        self._stamp = stamp(self._paths)
        now = self._clock.now()
        try:
            slos = self._load()
        except SpecError as exc:
            error = "; ".join(str(p) for p in exc.problems)
            self._telemetry.spec_reload(False, now)
            self._target.spec_failed(error)
            log.error("spec reload failed; keeping the running spec", reason=reason, problems=len(exc.problems),
                      error=error)
            return False
        self._telemetry.spec_reload(True, now)
        added, removed = self._target.replace_spec(slos)
        log.info("spec reloaded", reason=reason, slos=len(slos), added=added, removed=removed)
        self._on_reloaded(reason)
        return True
