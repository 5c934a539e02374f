"""Serving safely: ``SLOWATCH_WEB_CONFIG_FILE`` in exporter-toolkit's web configuration format
(https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md), the one
file Prometheus, Alertmanager and the exporters take for TLS and basic auth:

    tls_server_config:
      cert_file: server.crt          # PEM; relative paths are relative to the config file
      key_file: server.key
      min_version: TLS12             # TLS10..TLS13, as exporter-toolkit spells them
      max_version: TLS13
    basic_auth_users:
      alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze   # bcrypt

Basic auth protects every route but the probes (``OPEN_PATHS``: a kubelet or load balancer has no
password). TLS is terminated in front of waitress (which speaks only plain HTTP): each accepted
connection is handshaken on its own thread and piped to the WSGI server on a loopback port, so
waitress stays the one HTTP implementation. The file is read again when it (or a certificate)
changes, as exporter-toolkit does per request; a broken new file keeps the last good one (logged),
a broken file at start is fatal. Keys slowatch does not implement (client certificates, cipher
suites, rate limits) are refused by name rather than silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import bcrypt
import structlog
import yaml

from slowatch.errors import WebConfigError

log = structlog.get_logger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
REALM = "slowatch"
# exporter-toolkit's names for TLS versions (web-configuration.md, min_version / max_version).
TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
DEFAULT_MIN_TLS = "TLS12"  # exporter-toolkit's default
TLS_KEYS = frozenset({"cert_file", "key_file", "min_version", "max_version"})
TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users"})
# A TLS handshake must finish within this; a client that stalls holds one thread, not the server.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
PIPE_CHUNK = 65536
# Connections served at once behind TLS (two threads each); more are closed at once rather than
# let a flood of idle clients exhaust threads. Scrapers and browsers need a handful.
MAX_TLS_CONNECTIONS = 128
# Checked passwords remembered (as a keyed hash, never the password): bcrypt costs ~50 ms on
# purpose, and a scraper sends the same credentials every 15 s. Bounded so junk cannot grow it.
AUTH_CACHE_SIZE = 256


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    min_version: ssl.TLSVersion = TLS_VERSIONS[DEFAULT_MIN_TLS]
    max_version: ssl.TLSVersion | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    """User name -> bcrypt hash. Empty: no authentication."""

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        assert self.cert_file is not None and self.key_file is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        if self.max_version is not None:
            context.maximum_version = self.max_version
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config: cannot load {self.cert_file} with {self.key_file}: {exc}"
            ) from exc
        return context


def load(path: Path) -> WebConfig:
    """Parse and check ``path``; every problem is a ``WebConfigError`` naming the file and field."""
    where = str(path)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{where}: cannot read: {' '.join(str(exc).split())}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise WebConfigError(f"{where}: expected a mapping with tls_server_config and/or basic_auth_users")
    unknown = sorted(set(map(str, data)) - TOP_KEYS)
    if unknown:
        raise WebConfigError(
            f"{where}: {unknown[0]}: not supported by slowatch (supported: {', '.join(sorted(TOP_KEYS))})"
        )
    tls = data.get("tls_server_config") or {}
    if not isinstance(tls, dict):
        raise WebConfigError(f"{where}: tls_server_config: expected a mapping")
    unknown = sorted(set(map(str, tls)) - TLS_KEYS)
    if unknown:
        raise WebConfigError(f"{where}: tls_server_config.{unknown[0]}: not supported by slowatch "
                             f"(supported: {', '.join(sorted(TLS_KEYS))})")
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if bool(cert) != bool(key):
        missing = "key_file" if cert else "cert_file"
        raise WebConfigError(f"{where}: tls_server_config.{missing}: required with the other one")
    versions = {}
    for name in ("min_version", "max_version"):
        if name in tls:
            if tls[name] not in TLS_VERSIONS:
                raise WebConfigError(f"{where}: tls_server_config.{name}: {tls[name]!r} is not one of "
                                     f"{', '.join(TLS_VERSIONS)}")
            versions[name] = TLS_VERSIONS[tls[name]]
    users = data.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError(f"{where}: basic_auth_users: expected a mapping of user name to bcrypt hash")
    hashes: dict[str, bytes] = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _is_bcrypt(hashed):
            raise WebConfigError(f"{where}: basic_auth_users.{user}: not a bcrypt hash (make one with "
                                 "`htpasswd -nBC 10 \"\" | tr -d ':\\n'`)")
        hashes[str(user)] = hashed.encode()
    base = path.parent
    config = WebConfig(
        cert_file=base / cert if cert else None, key_file=base / key if key else None, users=hashes,
        min_version=versions.get("min_version", TLS_VERSIONS[DEFAULT_MIN_TLS]), max_version=versions.get("max_version"),
    )
    if config.tls:
        config.ssl_context()  # a certificate that does not load is the file's problem, said now
    return config


def _is_bcrypt(text: str) -> bool:
    try:
        bcrypt.checkpw(b"", text.encode())
    except ValueError:
        return False
    return True


class WebConfigFile:
    """The file, read again when it or a file it names changes (checked at most once per
    request or connection, by modification time and size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._config = load(path)
        self._context = self._config.ssl_context() if self._config.tls else None
        self._seen = self._fingerprint(self._config)

    def _fingerprint(self, config: WebConfig) -> tuple[tuple[int, int], ...]:
        out = []
        for p in (self.path, config.cert_file, config.key_file):
            try:
                st = p.stat() if p is not None else None
            except OSError:
                st = None
            out.append((st.st_mtime_ns, st.st_size) if st is not None else (0, 0))
        return tuple(out)

    def current(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        with self._lock:
            if self._fingerprint(self._config) != self._seen:
                try:
                    config = load(self.path)
                    context = config.ssl_context() if config.tls else None
                except WebConfigError as exc:
                    log.error("web config not reloaded; the last good one stays", error=str(exc))
                    self._seen = self._fingerprint(self._config)
                else:
                    if config.tls != self._config.tls:
                        log.error("web config not reloaded: turning TLS on or off needs a restart", file=str(self.path))
                    else:
                        self._config, self._context = config, context
                        log.info("web config reloaded", file=str(self.path), tls=config.tls, users=len(config.users))
                    self._seen = self._fingerprint(config)
            return self._config, self._context


class BasicAuth:
    """Checks ``Authorization: Basic`` against the current users; remembers good pairs."""

    def __init__(self, source: WebConfigFile) -> None:
        self._source = source
        self._key = hashlib.sha256(socket.gethostname().encode() + id(self).to_bytes(8, "little")).digest()
        self._good: dict[bytes, bytes] = {}  # keyed hash of user:password -> the bcrypt hash it matched
        self._lock = threading.Lock()

    def required(self) -> bool:
        return bool(self._source.current()[0].users)

    def allows(self, header: str | None) -> bool:
        users = self._source.current()[0].users
        if not users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = users.get(user)
        if not sep or hashed is None:
            # Same work as a known user, so timing does not tell which user names exist.
            bcrypt.checkpw(password.encode(), next(iter(users.values())))
            return False
        digest = hmac.new(self._key, f"{user}:{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if self._good.get(digest) == hashed:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._good) >= AUTH_CACHE_SIZE:
                self._good.clear()
            self._good[digest] = hashed
        return True


def protect(app: WSGIApplication, auth: BasicAuth, open_paths: Iterable[str] = OPEN_PATHS) -> WSGIApplication:
    """``app`` behind basic auth, except ``open_paths`` (probes)."""
    open_set = frozenset(open_paths)

    def wrapped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in open_set or auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return app(environ, start_response)
        body = b'{"error": "authentication required"}'
        start_response("401 Unauthorized", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                            ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')])
        return [body]

    return wrapped


class TLSTerminator:
    """Accepts TLS on ``host:port`` and pipes each connection's plain bytes to ``backend``."""

    def __init__(self, source: WebConfigFile, host: str, port: int, backend: tuple[str, int]) -> None:
        self._source = source
        self._backend = backend
        self._listener = socket.create_server((host, port), family=_family(host), backlog=128)
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_TLS_CONNECTIONS)
        self._thread = threading.Thread(target=self._accept_loop, name="slowatch-tls", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                log.warning("tls connection refused: too many open", limit=MAX_TLS_CONNECTIONS)
                conn.close()
                continue
            threading.Thread(target=self._serve_counted, args=(conn,), name="slowatch-tls-conn", daemon=True).start()

    def _serve_counted(self, raw: socket.socket) -> None:
        try:
            self._serve(raw)
        finally:
            self._slots.release()

    def _serve(self, raw: socket.socket) -> None:
        context = self._source.current()[1]
        assert context is not None
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            tls = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("tls handshake failed", error=str(exc))
            raw.close()
            return
        tls.settimeout(None)
        try:
            plain = socket.create_connection(self._backend, timeout=HANDSHAKE_TIMEOUT_SECONDS)
        except OSError:
            tls.close()
            return
        plain.settimeout(None)
        back = threading.Thread(target=_pipe, args=(plain, tls), name="slowatch-tls-back", daemon=True)
        back.start()
        _pipe(tls, plain)
        back.join()
        for s in (tls, plain):
            s.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):  # wakes the accept() in flight (close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until ``src`` ends, then end both sockets, which wakes the other direction's thread
    (HTTP needs no half-closed connections)."""
    with contextlib.suppress(OSError):
        while data := src.recv(PIPE_CHUNK):
            dst.sendall(data)
    for s in (src, dst):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
