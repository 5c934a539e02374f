"""An HTTP double of the Grafana API endpoints slowatch's provisioning uses.

No real Grafana runs in these tests: none can be installed on these machines (it is not packaged
in Debian, on PyPI or on npm). ``FakeGrafana`` is a threaded ``http.server`` on 127.0.0.1 (port 0)
implementing those endpoints as Grafana documents them (``GET /api/health``, ``GET
/api/folders/{uid}``, ``POST /api/folders``, ``GET /api/dashboards/uid/{uid}``, ``POST
/api/dashboards/db``). It checks the bearer token and every payload, stores dashboards the way
Grafana does (assigning ``id`` and ``version``), and can be told to answer given statuses first.
What it cannot show is a real Grafana's quirks beyond that documented behaviour.

Shared by the unit tests of the client (tests/unit/test_grafana_api.py) and the daemon's
end-to-end test (tests/integration/test_daemon_grafana.py), where a daemon subprocess talks to it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TOKEN", "FakeGrafana"]

TOKEN = "glsa_s3cr3t-t0ken-never-shown_0123456789"


class FakeGrafana:
    """The Grafana HTTP API endpoints provisioning uses, in memory."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.folders: dict[str, str] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"dashboard", "folderUid"}
        self.requests: list[tuple[str, str]] = []
        self.problems: list[str] = []  # payloads Grafana would have refused
        self._scripted: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._next_id = 1
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval so shutdown() returns at once (the default waits up to 0.5 s).
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, method: str, path: str, status: int, body: dict[str, Any] | None = None) -> None:
        """Answer the next ``method path`` with ``status`` (repeat the call to queue several)."""
        self._scripted.setdefault((method, path), []).append((status, body or {"message": f"scripted {status}"}))

    def posts(self) -> list[str]:
        return [path for method, path in self.requests if method == "POST"]

    # -- the API --------------------------------------------------------------------------------

    def handle(self, method: str, path: str, auth: str | None, body: Any) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path))
            scripted = self._scripted.get((method, path))
            if scripted:
                return scripted.pop(0)
            if path == "/api/health" and method == "GET":  # Grafana serves health without auth
                return 200, {"commit": "abc123", "database": "ok", "version": "11.3.0"}
            if auth != f"Bearer {self.token}":
                return 401, {"message": "Unauthorized", "messageId": "auth.unauthorized"}
            if method == "GET" and path.startswith("/api/folders/"):
                uid = path.removeprefix("/api/folders/")
                if uid not in self.folders:
                    return 404, {"message": "folder not found", "status": "not-found"}
                return 200, {"id": 1, "uid": uid, "title": self.folders[uid]}
            if method == "POST" and path == "/api/folders":
                return self._create_folder(body)
            if method == "GET" and path.startswith("/api/dashboards/uid/"):
                uid = path.removeprefix("/api/dashboards/uid/")
                if uid not in self.dashboards:
                    return 404, {"message": "Dashboard not found"}
                stored = self.dashboards[uid]
                return 200, {"dashboard": stored["dashboard"],
                             "meta": {"folderUid": stored["folderUid"], "slug": uid, "provisioned": False,
                                      "version": stored["dashboard"]["version"]}}
            if method == "POST" and path == "/api/dashboards/db":
                return self._save_dashboard(body)
            return 404, {"message": "Not found"}

    def _create_folder(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not body.get("uid") or not body.get("title"):
            self.problems.append(f"POST /api/folders without uid and title: {body!r}")
            return 400, {"message": "bad request data"}
        if body["uid"] in self.folders or body["title"] in self.folders.values():
            return 409, {"message": "a folder with the same name already exists"}
        self.folders[body["uid"]] = body["title"]
        return 200, {"id": len(self.folders), "uid": body["uid"], "title": body["title"]}

    def _save_dashboard(self, body: Any) -> tuple[int, dict[str, Any]]:
        expected = {"dashboard", "folderUid", "overwrite", "message"}
        if not isinstance(body, dict) or set(body) != expected:
            self.problems.append(f"POST /api/dashboards/db with keys {sorted(body or {})}, not {sorted(expected)}")
            return 400, {"message": "bad request data"}
        dashboard, folder = body["dashboard"], body["folderUid"]
        if body["overwrite"] is not True or body["message"] != "slowatch":
            self.problems.append(f"overwrite={body['overwrite']!r} message={body['message']!r}")
        if not isinstance(dashboard, dict) or not dashboard.get("uid") or not dashboard.get("title"):
            self.problems.append("a dashboard without uid or title")
            return 400, {"message": "Dashboard title cannot be empty"}
        if folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = dashboard["uid"]
        previous = self.dashboards.get(uid)
        stored = dict(dashboard)
        stored["id"] = previous["dashboard"]["id"] if previous else self._next_id
        stored["version"] = previous["dashboard"]["version"] + 1 if previous else 1
        self._next_id += 0 if previous else 1
        self.dashboards[uid] = {"dashboard": stored, "folderUid": folder}
        return 200, {"id": stored["id"], "uid": uid, "url": f"/d/{uid}/x", "status": "success",
                     "version": stored["version"], "slug": "x"}

    # -- plumbing -------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, payload = fake.handle(self.command, self.path, self.headers.get("Authorization"), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve  # noqa: N815 (http.server's naming)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        return Handler

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
