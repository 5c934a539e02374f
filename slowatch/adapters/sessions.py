"""The one retry mechanism of slowatch's HTTP clients: a ``requests.Session`` whose transport
retries with urllib3's ``Retry`` (exponential backoff, ``Retry-After`` honoured).

Prometheus and Grafana take it as it is. Alertmanager does not: it has delivery semantics of
its own (each URL backs off between cycles and resends what it owes, ``adapters/alertmanager.py``),
and a retry inside one cycle would only hold the cycle up.

Credentials ride on the session too (``session_auth``): basic auth taken out of the URL, or a
bearer token read from a file; the URL the client keeps and prints has none.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from pathlib import Path

import requests
from urllib3.util.retry import Retry

from slowatch.adapters.urls import remember_secret, split_credentials
from slowatch.errors import SourceUnavailable

# Worth a retry: rate limited, or a proxy or the server itself briefly unavailable.
TRANSIENT_STATUSES: tuple[int, ...] = (429, 502, 503, 504)


def retrying_session(
    *,
    retries: int,
    backoff: float,
    statuses: Collection[int] = TRANSIENT_STATUSES,
    methods: Collection[str] = ("GET", "POST"),
    pool_size: int = 10,
) -> requests.Session:
    """A session retrying connection errors, read timeouts and ``statuses`` up to ``retries``
    times, sleeping ``backoff * 2**(n - 1)`` seconds before the n-th retry after the first.
    After the last retry the last response is returned (not raised): the caller words the error.
    ``methods``: only requests that are safe to repeat."""
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=frozenset(statuses),
        allowed_methods=frozenset(methods),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=retry, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class BearerTokenFile(requests.auth.AuthBase):
    """``Authorization: Bearer <token>`` with the token read from a file, again whenever the file
    changes (Kubernetes rotates projected service account tokens in place). The token is
    remembered as a secret (``urls.scrub`` masks it) and never part of a message.

    A file that cannot be read keeps the last token (a rotation replaces the file by a rename);
    before any token was read it is ``SourceUnavailable``, naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._token: str | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            try:
                stat = self.path.stat()
                seen = (stat.st_mtime_ns, stat.st_size)
                if seen != self._seen:
                    token = self.path.read_text(encoding="utf-8").strip()
                    remember_secret(token)
                    self._token, self._seen = token, seen
            except (OSError, UnicodeDecodeError) as exc:
                if self._token is None:
                    raise SourceUnavailable(
                        f"bearer token file {self.path} unreadable: {type(exc).__name__}: {exc.args[-1]}"
                    ) from None
            if not self._token:
                raise SourceUnavailable(f"bearer token file {self.path} is empty")
            return self._token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def __repr__(self) -> str:  # never the token
        return f"BearerTokenFile({str(self.path)!r})"


def session_auth(url: str, bearer_token_file: Path | None = None) -> tuple[str, requests.auth.AuthBase | None]:
    """The URL to keep (without credentials) and the auth its requests send: a bearer token file
    wins over basic-auth credentials in the URL."""
    bare, credentials = split_credentials(url)
    if bearer_token_file is not None:
        return bare, BearerTokenFile(bearer_token_file)
    if credentials is not None:
        return bare, requests.auth.HTTPBasicAuth(*credentials)
    return bare, None
