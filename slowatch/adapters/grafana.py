"""Provisioning dashboards through Grafana's HTTP API, touching only those whose content changed.

Flow: ``GET /api/health``; the folder (``GET /api/folders/{uid}``, else ``POST /api/folders``);
then per dashboard ``GET /api/dashboards/uid/{uid}``, a comparison ignoring ``id`` and
``version`` (which Grafana assigns), and ``POST /api/dashboards/db`` only when it differs or sits
in another folder.

One ``requests.Session`` carries the bearer token (a service account token from
``SLOWATCH_GRAFANA_TOKEN``). The token lives only in that session's headers: it is never logged
and never part of an exception message (messages are scrubbed of it, in case a server echoes it).
Connection errors, timeouts, 429 and 5xx are retried with exponential backoff by the session's
transport (``adapters/sessions.py``, urllib3's ``Retry``); 401, 403 and 404 become a
``GrafanaError`` that says what to change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from pydantic import SecretStr

from slowatch.adapters.sessions import retrying_session
from slowatch.adapters.urls import redact, remember_secret
from slowatch.core.dashboards import FOLDER_TITLE, FOLDER_UID, Dashboard
from slowatch.errors import GrafanaError

__all__ = ["GrafanaClient", "ProvisionResult", "provision"]

# Grafana answers 500 when its database hiccups; that is worth a retry too.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# POST is safe to repeat here: saving uses overwrite, and a repeated folder POST gets a 409 we check.
RETRY_METHODS = ("GET", "POST")
# Grafana assigns these on every save; comparing them would make every run an update.
VOLATILE_KEYS = frozenset({"id", "version"})
# What each step needs, for a 403 that says which role to grant.
_ROLE_FOR = {
    "folder": "the Editor role (creating a folder needs folders:create)",
    "dashboard": "the Editor role, or Edit permission on the folder",
}


@dataclass(frozen=True)
class ProvisionResult:
    """What a provisioning run did, by dashboard uid."""

    folder_created: bool
    created: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.folder_created or bool(self.created or self.updated)


class GrafanaClient:
    """A small client for the endpoints provisioning uses. An injected ``session`` brings its own
    retries; otherwise ``retries`` and ``backoff`` configure the shared retrying session."""

    def __init__(
        self,
        url: str,
        token: SecretStr | None,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._base = url.rstrip("/")
        self._shown_url = redact(self._base)
        self._session = session or retrying_session(
            retries=retries, backoff=backoff, statuses=RETRY_STATUSES, methods=RETRY_METHODS
        )
        self._timeout = timeout
        self._attempts = retries + 1
        self._secret = token.get_secret_value() if token is not None else ""
        remember_secret(self._secret)  # scrub() masks it wherever text leaves the process
        self._session.headers["Accept"] = "application/json"
        if self._secret:
            self._session.headers["Authorization"] = f"Bearer {self._secret}"

    def __repr__(self) -> str:  # never the token
        return f"GrafanaClient({self._shown_url!r})"

    @property
    def url(self) -> str:
        """The base URL without any user:password, fit to print."""
        return self._shown_url

    # -- endpoints ------------------------------------------------------------------------------

    def health(self) -> str:
        """Grafana's version; raises when the URL is no Grafana or its database is down."""
        resp = self._call("GET", "/api/health", what="the health endpoint", kind="health")
        body = _json(resp)
        if body.get("database") not in (None, "ok"):
            raise GrafanaError(f"Grafana at {self._shown_url} is up but its database is {body.get('database')!r}")
        return str(body.get("version", "unknown"))

    def folder_exists(self, uid: str) -> bool:
        resp = self._call("GET", f"/api/folders/{quote(uid, safe='')}", what=f"folder {uid}", kind="folder",
                          absent_ok=True)
        return resp.status_code != 404

    def create_folder(self, uid: str, title: str) -> None:
        resp = self._call("POST", "/api/folders", what=f"creating folder {uid}", kind="folder",
                          payload={"uid": uid, "title": title}, conflict_ok=True)
        # 409: a retried POST that had created it after all, or another folder with this title.
        if resp.status_code == 409 and not self.folder_exists(uid):
            raise GrafanaError(self._scrub(
                f"Grafana at {self._shown_url} refused creating folder {uid} (409 Conflict): {_message(resp)}; "
                f"another folder is probably titled {title!r}: pass --folder-uid with that folder's uid to use it, "
                "or --folder-title to name this one differently"
            ))

    def get_dashboard(self, uid: str) -> tuple[Dashboard, str] | None:
        """The stored dashboard and the uid of its folder ("" for General), or None when absent."""
        resp = self._call("GET", f"/api/dashboards/uid/{quote(uid, safe='')}", what=f"dashboard {uid}",
                          kind="dashboard", absent_ok=True)
        if resp.status_code == 404:
            return None
        body = _json(resp)
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict):
            raise GrafanaError(f"Grafana at {self._shown_url} answered GET dashboard {uid} without a dashboard")
        meta = body.get("meta") or {}
        return dashboard, str(meta.get("folderUid") or "")

    def save_dashboard(self, dashboard: Dashboard, folder_uid: str) -> None:
        self._call("POST", "/api/dashboards/db", what=f"saving dashboard {dashboard.get('uid')}", kind="dashboard",
                   payload={"dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                            "message": "slowatch"})

    # -- transport ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, what: str, kind: str, payload: Mapping[str, Any] | None = None,
              absent_ok: bool = False, conflict_ok: bool = False) -> requests.Response:
        """One request (the session retries transient failures); any other non-2xx becomes a
        GrafanaError (a 404 is returned instead when ``absent_ok``: "not there yet" is an answer;
        a 409 when ``conflict_ok``, for the caller to look into)."""
        try:
            resp = self._session.request(method, self._base + path, json=payload, timeout=self._timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise GrafanaError(self._unavailable(method, path, what, type(exc).__name__)) from None
        if resp.status_code in RETRY_STATUSES:
            raise GrafanaError(self._unavailable(method, path, what, f"HTTP {resp.status_code} {_message(resp)}"))
        if resp.ok or (absent_ok and resp.status_code == 404) or (conflict_ok and resp.status_code == 409):
            return resp
        raise GrafanaError(self._scrub(self._explain(resp, method, path, what, kind)))

    def _unavailable(self, method: str, path: str, what: str, reason: str) -> str:
        return self._scrub(
            f"Grafana at {self._shown_url} unavailable: {method} {path} ({what}) failed {self._attempts} times, "
            f"last with {reason.strip()}; check that Grafana is running and reachable"
        )

    def _explain(self, resp: requests.Response, method: str, path: str, what: str, kind: str) -> str:
        status = resp.status_code
        detail = _message(resp)
        where = f"Grafana at {self._shown_url}"
        if status == 401:
            if not self._secret:
                return (f"{where} wants a token for {what} (401 Unauthorized): set SLOWATCH_GRAFANA_TOKEN to a "
                        "service account token")
            return (f"{where} rejected the token for {what} (401 Unauthorized): SLOWATCH_GRAFANA_TOKEN is "
                    "invalid, expired or revoked; create a new service account token")
        if status == 403:
            role = _ROLE_FOR.get(kind, "the Editor role")
            return (f"{where}: the token lacks permission for {what} (403 Forbidden on {method} {path}): "
                    f"give its service account {role}")
        if status == 404:
            if kind == "health":
                return (f"no Grafana API at {self._shown_url} ({method} {path} answered 404): check "
                        "SLOWATCH_GRAFANA_URL, including any sub-path Grafana is served under "
                        "(e.g. https://example.com/grafana)")
            return f"{where}: {what} not found (404 on {method} {path}){': ' + detail if detail else ''}"
        return f"{where} refused {what} (HTTP {status} on {method} {path}){': ' + detail if detail else ''}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def provision(
    client: GrafanaClient,
    dashboards: Iterable[Dashboard],
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
) -> ProvisionResult:
    """Ensure the folder, then create or update each dashboard whose content (or folder) differs."""
    client.health()
    folder_created = False
    if not client.folder_exists(folder_uid):
        client.create_folder(folder_uid, folder_title)
        folder_created = True
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for dashboard in dashboards:
        uid = str(dashboard["uid"])
        stored = client.get_dashboard(uid)
        if stored is None:
            client.save_dashboard(dashboard, folder_uid)
            created.append(uid)
        elif _comparable(stored[0]) != _comparable(dashboard) or stored[1] != folder_uid:
            client.save_dashboard(dashboard, folder_uid)
            updated.append(uid)
        else:
            unchanged.append(uid)
    return ProvisionResult(folder_created, tuple(created), tuple(updated), tuple(unchanged))


def _comparable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in VOLATILE_KEYS}


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(resp: requests.Response) -> str:
    """Grafana's own ``message`` (short, and what its UI shows), never the whole body."""
    text = _json(resp).get("message")
    return " ".join(str(text).split())[:300] if text else ""
