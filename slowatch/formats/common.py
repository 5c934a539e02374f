"""What the OpenSLO and Sloth readers share: a foreign document becomes one or more
``slowatch/v1`` documents (plain data), validated afterwards exactly like a native file, and
every problem found there is moved back to the foreign field it came from.

A reader never builds ``SLO`` objects itself: the one validation (``slowatch.spec``) does, so
the three formats cannot drift apart in what they accept.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from slowatch.core.model import SLO, AlertExtras
from slowatch.errors import SpecProblem

_INDEX = re.compile(r"^(.*?)(\[\d+\])?$")


@dataclass(frozen=True)
class Where:
    """A place in a foreign file: the file, the document's index (``---``-separated, from 0) and
    a field path inside that document."""

    file: str
    document: int
    path: str = ""

    def at(self, *parts: str | int) -> Where:
        out = self.path
        for part in parts:
            if isinstance(part, int):
                out += f"[{part}]"
            elif part:
                out += f".{part}" if out else part
        return replace(self, path=out)

    @property
    def shown(self) -> str:
        """The path as problems show it: ``doc[1].spec.objectives[0].target``."""
        return f"doc[{self.document}]" + (f".{self.path}" if self.path else "")

    def problem(self, message: str) -> SpecProblem:
        return SpecProblem(file=self.file, path=self.shown, message=message)


@dataclass
class Native:
    """One ``slowatch/v1`` document translated from a foreign one.

    ``places`` maps a path of ``data`` (a prefix: the longest one found wins) to the foreign
    field it came from, so a problem in ``slos[0].sli.ratio.total`` is reported at, say,
    ``doc[2].spec.indicator.spec.ratioMetric.total.metricSource.spec.query``. ``extras`` holds
    what slowatch/v1 cannot express but the core model can (Sloth's alert labels), per SLO index.
    """

    data: dict[str, Any]
    where: Where
    places: dict[str, Where] = field(default_factory=dict)
    extras: dict[int, tuple[tuple[str, AlertExtras], ...]] = field(default_factory=dict)

    def relocate(self, problem: SpecProblem) -> SpecProblem:
        path = problem.path
        best = ""
        for prefix in self.places:
            if (path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")) and len(
                prefix
            ) > len(best):
                best = prefix
        target = self.places.get(best, self.where)
        rest = path[len(best):].lstrip(".") if best else path
        shown = target.shown if not rest else (
            f"{target.shown}{rest}" if rest.startswith("[") else f"{target.shown}.{rest}"
        )
        # Native key names left in `rest` are still useful: they say which part was wrong.
        return SpecProblem(file=target.file, path=shown, message=problem.message)

    def finish(self, index: int, slo: SLO) -> SLO:
        """The SLO at ``slos[index]`` with what slowatch/v1 could not carry put back."""
        extras = self.extras.get(index)
        if not extras:
            return slo
        return replace(slo, alerting=replace(slo.alerting, extras=extras))


Problems = list[SpecProblem]
Reader = Callable[[dict[str, Any], Where, Problems], list[Native]]


def show(value: object) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def slug(text: str) -> str:
    """A label-safe name from free text: ``"Internal objective"`` -> ``internal-objective``."""
    out = re.sub(r"[^a-zA-Z0-9_.-]+", "-", text.strip()).strip("-").lower()
    return out if out and re.match(r"[a-zA-Z_]", out) else f"_{out}" if out else ""


def unknown_keys(data: dict[str, Any], known: tuple[str, ...], where: Where, problems: Problems) -> None:
    """Every key slowatch does not read is a problem: nothing in a foreign file is dropped silently."""
    for key in data:
        if key not in known:
            problems.append(where.at(str(key)).problem(
                f"unknown or unsupported key `{key}`: slowatch reads only {', '.join(known)} here"
            ))


def mapping(value: object, where: Where, problems: Problems, example: str) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    problems.append(where.problem(f"expected a mapping, got {show(value)}: write e.g. `{example}`"))
    return None


def text(value: object, where: Where, problems: Problems, example: str) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    got = "nothing" if value is None else show(value)
    problems.append(where.problem(f"expected text, got {got}: write e.g. `{example}`"))
    return None
