"""The parsed spec, kept in ``SLOWATCH_STATE_DIR/spec-cache.bin`` so that a restart with
unchanged spec files skips YAML and validation (10,000 SLOs: about 1.1 s parsed, 0.3 s from
here; bench/results/spec_load.md).

Only a spec that loaded without a problem is stored, so every problem is still found and worded
by ``slowatch.spec``. An entry is used only when its key is the key of this load: the hash of
every spec file's name (as given, it is each SLO's ``source``) and bytes in load order, of the
slowatch source on disk, and of the versions of Python and of the libraries that validate (a
parser or validator upgrade may accept or refuse other files). A file that is truncated,
corrupt (SHA-256), of another version or holding anything but the core's SLO types is logged and
ignored (the spec is parsed, and the file replaced): never trusted, never fatal. Format,
version 1::

    offset 0   16 bytes   MAGIC
           16  u32        version
           20  32 bytes   key (SHA-256)
           52  32 bytes   SHA-256 of the payload
           84  u64        payload length P
           92  P bytes    payload: zlib(pickle of the list of slowatch.core.model.SLO)

The payload is read by an unpickler that resolves only the model's classes and three of
``datetime``'s, so the file cannot name any other callable (the pickle documentation's
"restricting globals").
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import pickle
import platform
import struct
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

from slowatch.core import model
from slowatch.files import write_atomically

log = structlog.get_logger(__name__)

CACHE_FILENAME = "spec-cache.bin"
MAGIC = b"SLOWATCH-SPEC\x00\x00\x00"
VERSION = 1
HEADER = struct.Struct("<16sI32s32sQ")  # magic, version, key, payload SHA-256, payload length
# Whose versions decide what a spec file becomes (distribution names, for importlib.metadata).
VALIDATING_LIBRARIES = ("PyYAML", "pydantic", "pydantic-core", "promql-parser", "python-dateutil")
# zlib's fastest level: the pickle of 10,000 SLOs shrinks 17x in 5 ms.
_ZLIB_LEVEL = 1

# Everything a loaded spec is made of (slowatch.spec builds no other type).
_CLASSES: dict[tuple[str, str], type] = {
    (c.__module__, c.__qualname__): c
    for c in (
        model.SLO, model.RollingWindow, model.CalendarWindow, model.RatioSLI, model.LatencySLI,
        model.ThroughputSLI, model.CompositeSLI, model.Component, model.Exclusion, model.AlertPolicy,
        model.AlertExtras, model.RegressionPolicy, datetime, timedelta, timezone,
    )
}


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        found = _CLASSES.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a spec")
        return found


@cache
def environment() -> bytes:
    """What besides the files decides the result: slowatch's source (all of it: a validator
    may live anywhere, and hashing 0.6 MB takes a few ms once per process), Python and the
    validating libraries. An install without sources hashes its compiled files instead (they
    change with every build: at worst a miss)."""
    digest = hashlib.sha256(source_fingerprint(Path(model.__file__).parent.parent))
    digest.update(_framed(platform.python_implementation().encode() + platform.python_version().encode()))
    for library in ("slowatch", *VALIDATING_LIBRARIES):
        try:
            version = importlib.metadata.version(library)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(_framed(f"{library}=={version}".encode()))
    return digest.digest()


def source_fingerprint(package: Path) -> bytes:
    """The hash of the package's source files, each with its path (its compiled files if it has
    no source)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")) or sorted(package.rglob("*.pyc")):
        digest.update(_framed(str(path.relative_to(package)).encode()) + _framed(path.read_bytes()))
    return digest.digest()


def cache_key(files: Iterable[tuple[str, bytes]]) -> bytes:
    """The key of loading these (name, bytes) files, in this order."""
    digest = hashlib.sha256(_framed(MAGIC + VERSION.to_bytes(4, "little")) + _framed(environment()))
    for name, data in files:
        digest.update(_framed(name.encode("utf-8", "surrogateescape")) + _framed(data))
    return digest.digest()


def _framed(data: bytes) -> bytes:
    # Length first, so that no two sequences of pieces hash alike.
    return len(data).to_bytes(8, "little") + data


class SpecCache:
    """The cached spec of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / CACHE_FILENAME

    def get(self, key: bytes) -> list[model.SLO] | None:
        """The SLOs stored under ``key``, or None (absent, another key, or unusable: logged)."""
        found = self._read(key)
        if isinstance(found, str):
            log.warning("spec_cache_ignored", path=str(self.path), reason=found)
            return None
        return found

    def _read(self, key: bytes) -> list[model.SLO] | str | None:
        """The SLOs under ``key``, None on a plain miss, or why the file is unusable."""
        try:
            with self.path.open("rb") as f:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    return "truncated header"
                magic, version, stored_key, checksum, length = HEADER.unpack(head)
                if magic != MAGIC or version != VERSION:
                    return f"not a version {VERSION} spec cache"
                if stored_key != key:
                    return None  # another spec, or another slowatch: the normal miss
                payload = f.read(length + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"cannot read it: {exc}"
        if len(payload) != length or hashlib.sha256(payload).digest() != checksum:
            return "truncated or corrupt (SHA-256)"
        try:
            slos = _ModelUnpickler(io.BytesIO(zlib.decompress(payload))).load()
        # The checksum matched, yet the content does not decode: whatever it raises (pickle
        # raises many types), the file is not used.
        except Exception as exc:
            return f"undecodable: {type(exc).__name__}: {exc}"
        if not (isinstance(slos, list) and all(isinstance(s, model.SLO) for s in slos)):
            return "not a list of SLOs"
        if not _zones_exist(slos):
            return None  # the time zone database changed under the spec: validate it again
        return slos

    def put(self, key: bytes, slos: Sequence[model.SLO]) -> None:
        """Store ``slos`` under ``key``; a failure is logged, never raised (the spec loaded)."""
        payload = zlib.compress(pickle.dumps(list(slos), protocol=pickle.HIGHEST_PROTOCOL), _ZLIB_LEVEL)
        head = HEADER.pack(MAGIC, VERSION, key, hashlib.sha256(payload).digest(), len(payload))
        try:
            write_atomically(self.path, [head, payload])
        except OSError as exc:
            log.warning("spec_cache_not_saved", path=str(self.path), error=str(exc))


def _zones_exist(slos: Sequence[model.SLO]) -> bool:
    """The one check that depends on the machine rather than the key: the spec's time zones
    (a calendar window's, an exclusion's) are still in the time zone database."""
    zones = {s.window.timezone for s in slos if isinstance(s.window, model.CalendarWindow)}
    zones |= {e.timezone for s in slos for e in s.exclusions}
    try:
        for zone in zones:
            ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # as slowatch.spec._timezone catches
        return False
    return True
