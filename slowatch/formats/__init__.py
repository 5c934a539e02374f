"""The other spec formats slowatch reads (OpenSLO, Sloth) and writes (OpenSLO).

``slowatch.spec`` tells a document's format by ``apiVersion``/``version`` and hands foreign ones
here; they come back as slowatch/v1 documents (``Native``) that it validates like its own.
"""

from __future__ import annotations

from typing import Any

from slowatch.formats import openslo, sloth
from slowatch.formats.common import Native, Problems, Where
from slowatch.formats.openslo import Catalog

__all__ = ["FOREIGN_VERSIONS", "Catalog", "Native", "Where", "is_foreign", "translate"]

FOREIGN_VERSIONS = (
    *(f"apiVersion: {v}" for v in openslo.API_VERSIONS),
    f"apiVersion: {sloth.API_VERSION}",
    f"version: {sloth.FILE_VERSION}",
)


def is_foreign(data: object) -> bool:
    return isinstance(data, dict) and (openslo.is_openslo(data) or sloth.is_sloth(data))


def translate(data: dict[str, Any], where: Where, catalog: Catalog, problems: Problems) -> list[Native]:
    """A foreign document (``is_foreign``) as slowatch/v1 documents; problems it cannot be
    translated past are appended to ``problems``."""
    if openslo.is_openslo(data):
        return openslo.read(data, where, catalog, problems)
    return sloth.read(data, where, problems)
