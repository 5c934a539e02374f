"""The wheel is the product: built from this checkout, installed into a fresh virtual environment,
it holds no test code, its ``slowatch --help`` stays light, and the container image's entrypoint
(deploy/container/Containerfile, run as the image would run it) starts and answers ``/healthz``.

No container engine can pull the image's base here, so the image is checked the way it is built:
``pip install .`` into a clean environment, then its ENV and ENTRYPOINT as the Containerfile says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.processes import Server, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
# Modules of the test harness that must never ship (they live in tests/support).
HARNESS = ("generator", "processes", "live", "rules_tests", "demo", "synth")
# What `slowatch --help` and `slowatch check` must not import: the daemon's dependencies.
DAEMON_ONLY = ("apscheduler", "waitress", "prometheus_client")


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)])
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("slowatch-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the wheel and its declared dependencies."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    made = run([sys.executable, "-m", "venv", str(root)])
    assert made.returncode == 0, made.stderr
    installed = run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    return root


def test_the_wheel_holds_the_package_and_no_test_harness(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert modules, names
    assert all(n.startswith("slowatch/") for n in modules), [n for n in modules if not n.startswith("slowatch/")]
    stems = {Path(n).stem for n in modules} | {p for n in modules for p in Path(n).parts[:-1]}
    assert not stems & set(HARNESS), sorted(stems & set(HARNESS))
    assert "slowatch/py.typed" in names


@pytest.mark.parametrize("argv", [
    pytest.param(["--help"], id="slowatch --help imports none of the daemon's dependencies"),
    pytest.param(["check", str(REPO / "deploy" / "slos")], id="slowatch check imports none of them either"),
])
def test_the_light_commands_stay_light(venv: Path, argv: list[str], tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from slowatch.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    done = run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = {m.split(".")[0] for m in done.stdout.split("MODULES", 1)[1].split()}
    assert not loaded & set(DAEMON_ONLY), sorted(loaded & set(DAEMON_ONLY))
    assert "slowatch" in loaded


def test_the_demo_from_an_installed_wheel_says_it_needs_a_checkout(venv: Path, tmp_path: Path) -> None:
    done = run([str(venv / "bin" / "slowatch"), "demo"], cwd=tmp_path)
    assert done.returncode == 1
    assert "source checkout" in done.stderr and "Traceback" not in done.stderr


def containerfile() -> tuple[dict[str, str], list[str]]:
    """The image's ENV (one ``ENV a=b \\`` block) and ENTRYPOINT, read from the Containerfile."""
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    entrypoint: list[str] = []
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair.split("=", 1) for pair in line[4:].split())  # type: ignore[misc]
        if line.startswith("ENTRYPOINT "):
            entrypoint = json.loads(line[len("ENTRYPOINT "):])
    return env, entrypoint


@pytest.fixture
def image_like(venv: Path, prometheus: Server, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    env, entrypoint = containerfile()
    assert entrypoint[:2] == ["slowatch", "run"], entrypoint
    port = free_port()
    spec_dir = tmp_path / "etc-slowatch-slos"  # the image copies deploy/slos there
    spec_dir.mkdir()
    for f in (REPO / "deploy" / "slos").glob("*.yaml"):
        (spec_dir / f.name).write_text(f.read_text())
    env.update(
        # Loopback instead of the image's 0.0.0.0, and the state dir and Prometheus of this test.
        SLOWATCH_LISTEN=f"127.0.0.1:{port}", SLOWATCH_STATE_DIR=str(tmp_path / "state"),
        SLOWATCH_PROMETHEUS_URL=prometheus.url,
    )
    argv = [str(venv / "bin" / entrypoint[0]), *entrypoint[1:-1], str(spec_dir)]
    proc = subprocess.Popen(argv, cwd=tmp_path, env={"PATH": os.environ["PATH"], **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_image_entrypoint_from_a_plain_install_answers_healthz(
    image_like: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = image_like
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    else:
        pytest.fail("the entrypoint never answered /healthz")
    # And it evaluates for real: /readyz turns ready after the first cycle over real Prometheus.
    while time.monotonic() < deadline and requests.get(url + "/readyz", timeout=2).status_code != 200:
        time.sleep(0.2)
    status = requests.get(url + "/status", timeout=5).json()
    assert len(status["slos"]) == 11
