"""Atomic file replacement, the one way slowatch writes a file that something else reads.

Prometheus reloads rule files, Grafana rescans dashboards and slowatch reloads its alert state,
each possibly while we write, and a crash can come at any instant: a reader must see the old
file or the new one, never half of one. So: a temporary file with a unique name in the same
directory (a rename is atomic only within one file system), fsync it, ``os.replace``, then fsync
the directory, because the rename is durable only once the directory entry is on disk.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# Rule files and dashboards are read by Prometheus and Grafana, often running as other users.
READABLE = 0o644


def write_atomically(path: Path, data: str | bytes | Iterable[bytes | memoryview], *, mode: int = READABLE) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8; pieces one after the other, so a
    large file, the hour ledger, is never copied into one buffer), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces = [data.encode("utf-8") if isinstance(data, str) else data] if isinstance(data, str | bytes) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
