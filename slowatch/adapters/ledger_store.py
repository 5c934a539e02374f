"""The hour ledger on disk (``SLOWATCH_STATE_DIR/ledger.bin``), so a restart reads from Prometheus
only the hours it missed while down, not the whole window again.

Saved after each hour is added (not every cycle), written atomically (``slowatch.files``: a
temporary file, fsync, ``os.replace``, fsync of the directory), so a crash leaves the previous
hour's file or this one. Format, version 1, little-endian::

    offset 0   16 bytes   MAGIC
           16  u32        version
           20  u32        index length L (bytes of UTF-8 JSON)
           24  u64        data length D (bytes)
           32  u32        CRC-32 of the index and the data
           36  L bytes    index: {"engine": "<url> <dialect>", "saved_at": "<RFC 3339>",
                                  "groups": [{"signature": "...", "rows": [{"role": "total",
                                  "key": ["auth"], "first": <hour end>, "sums": n,
                                  "unusable": [<hour end>, ...]}, ...]}, ...]}
           36+L  D bytes  float64 running sums, row after row in index order (n per row: the
                          n-1 held hours' sums, starting with the sum before the first)

Rows are keyed by the group's query-shape signature and the row's (role, key), so a changed SLO
(another key, threshold or shape) finds no row and is refilled alone. A file that is truncated,
corrupt (CRC), of another version or saved from another engine is logged and ignored (the ledger
is read again from Prometheus and the next save replaces the file): never trusted, never fatal.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Generator
from datetime import datetime
from pathlib import Path

import structlog
from pydantic import BaseModel, ValidationError

from slowatch.core.conventions import rfc3339
from slowatch.core.plan import HOUR, GroupLedger, Ledger, Row
from slowatch.errors import StateError
from slowatch.files import write_atomically

log = structlog.get_logger(__name__)

LEDGER_FILENAME = "ledger.bin"
MAGIC = b"SLOWATCH-LEDGER\x00"
VERSION = 1
HEADER = struct.Struct("<16sIIQI")  # magic, version, index length, data length, CRC-32
FLOAT = struct.calcsize("<d")


class _RowDoc(BaseModel):
    role: str
    key: list[str]
    first: int
    sums: int
    unusable: list[int]


class _GroupDoc(BaseModel):
    signature: str
    rows: list[_RowDoc]


class _IndexDoc(BaseModel):
    engine: str
    saved_at: str
    groups: list[_GroupDoc]


class LedgerStore:
    """Loads and saves the hour ledger in one directory (``adapters.planned.LedgerFile``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LEDGER_FILENAME

    def load(self, engine: str) -> Ledger:
        """The saved ledger, or an empty one: nothing saved yet, or a file not to trust (logged
        with the reason; the next save replaces it)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Ledger()
        except OSError as exc:
            log.warning("hour ledger not loaded; reading it again from Prometheus", path=str(self.path),
                        reason=f"cannot read: {exc.strerror or exc}")
            return Ledger()
        try:
            ledger = decode(raw, engine)
        except ValueError as exc:
            log.warning("hour ledger not loaded; reading it again from Prometheus", path=str(self.path),
                        reason=str(exc))
            return Ledger()
        rows = sum(len(g.rows) for g in ledger.groups.values())
        log.info("hour ledger loaded", path=str(self.path), groups=len(ledger.groups), rows=rows, bytes=len(raw))
        return ledger

    def save(self, ledger: Ledger, engine: str, now: datetime) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            pieces = encode(ledger, engine, now)
            try:
                write_atomically(self.path, pieces, mode=0o600)
            finally:
                pieces.close()
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot write the hour ledger: {exc.strerror or exc} "
                "(check that SLOWATCH_STATE_DIR exists, is writable by slowatch and its disk is not full)"
            ) from exc


def encode(ledger: Ledger, engine: str, now: datetime) -> Generator[bytes | memoryview, None, None]:
    """The file's bytes, in pieces: the running sums are written from the rows' own arrays."""
    groups = []
    arrays: list[memoryview] = []
    for signature, group in sorted(ledger.groups.items()):
        rows = []
        for (role, key), row in sorted(group.rows.items()):
            if not row.hours:
                continue
            if sys.byteorder == "little":  # the row's own memory: no copy of a 100 MB ledger
                arrays.append(memoryview(row.cum)[row.off:].cast("B"))
            else:
                swapped = row.cum[row.off:]
                swapped.byteswap()
                arrays.append(memoryview(swapped).cast("B"))
            rows.append({"role": role, "key": list(key), "first": row.first, "sums": row.hours + 1,
                         "unusable": sorted(row.unusable)})
        groups.append({"signature": signature, "rows": rows})
    index = json.dumps({"engine": engine, "saved_at": rfc3339(now, exact=True), "groups": groups},
                       separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    crc = zlib.crc32(index)
    for a in arrays:
        crc = zlib.crc32(a, crc)
    try:
        yield HEADER.pack(MAGIC, VERSION, len(index), sum(len(a) for a in arrays), crc)
        yield index
        yield from arrays
    finally:  # an array exporting its buffer cannot grow: release the views whatever happened
        for a in arrays:
            a.release()


def decode(raw: bytes, engine: str) -> Ledger:
    """The ledger a file holds; ``ValueError`` saying what is wrong with it otherwise."""
    if len(raw) < HEADER.size:
        raise ValueError(f"truncated: {len(raw)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, index_len, data_len, crc = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ValueError("not a slowatch hour ledger (wrong magic bytes)")
    if version != VERSION:
        raise ValueError(f"format version {version}, this slowatch reads version {VERSION}")
    if len(raw) != HEADER.size + index_len + data_len:
        raise ValueError(f"truncated or padded: {len(raw)} bytes, the header says "
                         f"{HEADER.size + index_len + data_len}")
    body = memoryview(raw)[HEADER.size:]
    if zlib.crc32(body) != crc:
        raise ValueError("corrupt: the CRC-32 does not match the content")
    try:
        doc = _IndexDoc.model_validate_json(bytes(body[:index_len]), strict=True)
    except ValidationError as exc:
        raise ValueError(_reason(exc)) from exc
    if doc.engine != engine:
        raise ValueError(f"saved from another engine ({doc.engine}); this daemon reads {engine}")
    data = body[index_len:]
    pos = 0
    groups: dict[str, GroupLedger] = {}
    for g in doc.groups:
        rows: dict[tuple[str, tuple[str, ...]], Row] = {}
        for r in g.rows:
            end = pos + r.sums * FLOAT
            if r.sums < 2 or end > len(data) or r.first % HOUR:
                raise ValueError(f"row {r.role} {r.key} of {g.signature}: {r.sums} sums from {r.first} "
                                 "do not fit the data")
            sums = array("d")
            sums.frombytes(data[pos:end])
            if sys.byteorder != "little":
                sums.byteswap()
            # A running sum carries any NaN or infinity to its end: checking both ends checks all.
            if not (math.isfinite(sums[0]) and math.isfinite(sums[-1])):
                raise ValueError(f"row {r.role} {r.key} of {g.signature}: a running sum is not finite")
            row = Row(first=r.first, cum=sums)
            row.unusable = {h for h in r.unusable if row.first <= h <= row.last}
            rows[(r.role, tuple(r.key))] = row
            pos = end
        groups[g.signature] = GroupLedger(rows)
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} bytes of data belong to no row")
    return Ledger(groups)


def _reason(exc: ValidationError) -> str:
    return "index: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
