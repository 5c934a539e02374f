"""The one retry mechanism of slowatch's HTTP clients: a ``requests.Session`` whose transport
retries with urllib3's ``Retry`` (exponential backoff, ``Retry-After`` honoured).

Prometheus and Grafana take it as it is. Alertmanager does not: it has delivery semantics of
its own (each URL backs off between cycles and resends what it owes, ``adapters/alertmanager.py``),
and a retry inside one cycle would only hold the cycle up.
"""

from __future__ import annotations

from collections.abc import Collection

import requests
from urllib3.util.retry import Retry

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
