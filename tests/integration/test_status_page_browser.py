"""The status page as a real browser renders it: headless Chromium against the real server.

Writes the screenshot to docs/status-page.png (the picture the README shows) and to the test's
tmp dir. Needs the Debian package ``chromium``; the test fails, never skips, without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from slowatch.adapters.http import App, Server, serve
from slowatch.core.budget import SLO_WINDOW, BudgetStatus, EventCounts, Measurement, evaluate, failed
from slowatch.core.model import SLO, CalendarWindow, LatencySLI, RatioSLI, RollingWindow
from slowatch.core.windows import BURN_RATE_WINDOWS
from slowatch.view import DaemonView, ViewHolder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _slo(service: str, name: str, objective: float, *, latency: bool = False, window: str = "30d",
         description: str = "", labels: tuple[tuple[str, str], ...] = ()) -> SLO:
    w = CalendarWindow("month") if window == "month" else RollingWindow(timedelta(days=int(window[:-1])))
    sli = (LatencySLI("http_request_duration_seconds", f'{{service="{service}"}}', 0.2) if latency
           else RatioSLI(total=f'http_requests_total{{service="{service}"}}',
                         errors=f'http_requests_total{{service="{service}",code=~"5.."}}'))
    return SLO(service, name, objective, w, sli, description=description, labels=labels)


def _status(slo: SLO, consumed: float | None, rates: Mapping[str, float]) -> BudgetStatus:
    """The status of ``slo`` whose window consumed ``consumed`` of the budget, burning at ``rates``."""
    total = 1_000_000.0
    counts = {w: EventCounts(total - total * r * slo.budget, total) for w, r in rates.items()}
    if consumed is not None:
        counts[SLO_WINDOW] = EventCounts(total - total * consumed * slo.budget, total)
    return evaluate(slo, Measurement(AT, counts))


def _history(start: float, end: float, wobble: float = 0.01) -> list[tuple[datetime, float]]:
    n = 37  # every 10 minutes over 6 hours
    return [
        (AT - timedelta(minutes=10 * (n - 1 - i)), start + (end - start) * (i / (n - 1)) ** 1.6
         + wobble * ((i * 7) % 5 - 2) / 2)
        for i in range(n)
    ]


def sample_view() -> DaemonView:
    """Every state, the alert kinds, and history, as the daemon would publish them."""
    team_id = (("team", "identity"),)
    calm = dict.fromkeys(BURN_RATE_WINDOWS, 0.4)
    login = _slo("auth", "login-availability", 99.95, labels=team_id,
                 description="Login requests that do not fail with a 5xx.")
    latency = _slo("auth", "login-latency", 99, latency=True, labels=team_id,
                   description="Logins answered within 200ms.")
    checkout = _slo("payments", "checkout-availability", 99.9, window="month", labels=(("team", "payments"),))
    refunds = _slo("payments", "refunds-availability", 99.5, labels=(("team", "payments"),))
    search = _slo("search", "query-latency", 99, latency=True, labels=(("team", "discovery"),))
    suggest = _slo("search", "suggest-availability", 99.9, labels=(("team", "discovery"),))

    suggest_before = _status(suggest, 0.12, calm)
    statuses = (
        _status(login, 0.58, {"5m": 0.0, "30m": 0.1, "1h": 0.3, "2h": 0.2, "6h": 0.4, "1d": 0.7, "3d": 0.6}),
        _status(latency, 0.82, {"5m": 21.0, "30m": 17.5, "1h": 16.2, "2h": 11.0, "6h": 4.1, "1d": 1.6, "3d": 0.9}),
        _status(checkout, 1.31, {"5m": 2.0, "30m": 1.8, "1h": 1.7, "2h": 1.5, "6h": 1.2, "1d": 1.1, "3d": 1.3}),
        _status(refunds, None, {}),
        failed(search, AT, "error", 'bad_data: parse error: unexpected "}" in histogram_quantile(...)'),
        failed(suggest, AT, "stale", "prometheus unreachable: connection refused (3 attempts)", suggest_before),
    )
    alerts = {
        login.id: [{"alertname": "SLOErrorBudgetConsumed", "severity": "ticket", "since": "2026-11-27T09:30:00Z",
                    "labels": {"threshold": "50"}}],
        latency.id: [
            {"alertname": "SLOErrorBudgetBurn", "severity": "page", "since": "2026-11-27T11:42:00Z",
             "labels": {"long_window": "1h", "short_window": "5m"}},
            {"alertname": "SLOErrorBudgetConsumed", "severity": "ticket", "since": "2026-11-27T10:05:00Z",
             "labels": {"threshold": "50"}},
        ],
        checkout.id: [{"alertname": "SLOErrorBudgetConsumed", "severity": "ticket",
                       "since": "2026-11-25T18:00:00Z", "labels": {"threshold": "100"}}],
    }
    history = {
        login.id: _history(0.47, 0.42, 0.004),
        latency.id: _history(0.62, 0.18, 0.01),
        checkout.id: _history(-0.2, -0.31, 0.005),
        suggest.id: _history(0.9, 0.88, 0.003),
    }
    return DaemonView(at=AT, statuses=statuses, alerts=alerts, firing=(), ready=True, history=history)


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is not installed: the status-page browser test needs it. "
        "Install it with `apt-get update && apt-get install -y chromium` (Debian package `chromium`)."
    )


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}"
    return proc


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # `now` a minute after the evaluation, so the page's "evaluated ... ago" is deterministic.
    app = App(ViewHolder(sample_view()), CollectorRegistry(), clock=lambda: AT + timedelta(minutes=1))
    srv = serve(app, "127.0.0.1", 0)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def dom(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    profile = tmp_path_factory.mktemp("chromium-dom")
    return _run_chromium(_chromium(), profile, "--dump-dom", f"{server.url}/").stdout


VIEW = sample_view()


@pytest.mark.parametrize(
    ("service", "name", "state"),
    [pytest.param(s.slo.service, s.slo.name, s.state, id=f"{s.slo.id} is shown as {s.state}") for s in VIEW.statuses],
)
def test_the_rendered_dom_shows_every_slo_with_its_state(dom: str, service: str, name: str, state: str) -> None:
    row = re.search(rf'<tr id="slo-{re.escape(service)}-{re.escape(name)}"[^>]*>(.*?)</tr>', dom, re.S)
    assert row, f"no row for {service}/{name} in the rendered DOM"
    assert f'<div class="slo">{name}</div>' in row.group(1)
    assert f'data-state="{state}"' in row.group(1)


@pytest.mark.parametrize(
    ("needle", "present"),
    [
        pytest.param("Needs attention", True, id="the verdict says the page needs attention"),
        pytest.param('class="chart', True, id="budget history is drawn as inline svg charts"),
        pytest.param("<polyline", True, id="each chart is a server-computed polyline"),
        pytest.param("<script", False, id="the page runs no script"),
    ],
)
def test_the_rendered_dom_has_the_page_furniture(dom: str, needle: str, present: bool) -> None:
    assert (needle in dom) is present


def test_the_screenshot_is_written_to_docs_and_tmp(server: Server, tmp_path: Path) -> None:
    shot = tmp_path / "status-page.png"
    _run_chromium(_chromium(), tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,900",
                  f"{server.url}/")
    assert shot.exists(), "chromium exited 0 but wrote no screenshot"
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, "the screenshot is not a plausible PNG"
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "status-page.png").write_bytes(data)
