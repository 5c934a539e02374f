"""What every benchmark shares: paths, the machine's description, result files, /proc readings,
loud failures for missing binaries, and cleanup on SIGTERM."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import requests

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"  # git-ignored: data, Prometheus TSDBs, the slo-generator venv, logs
RESULTS_DIR = BENCH_DIR / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark cannot run or produced nonsense; the message says what to do."""


def log(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def require(*names: str, hint: str = "") -> dict[str, str]:
    """The path of every binary in ``names``; a missing one fails loudly with how to install it."""
    found: dict[str, str] = {}
    missing = []
    for name in names:
        path = shutil.which(name)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise BenchError(f"missing binaries: {', '.join(missing)} not on PATH. {hint}".strip())
    return found


def _run(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (done.stdout or done.stderr).strip()


def git_commit() -> str:
    """HEAD, with ``+dirty`` when slowatch/ has uncommitted changes (other engineers' work in
    progress is part of what was measured)."""
    head = _run(["git", "-C", str(REPO_DIR), "rev-parse", "--short=12", "HEAD"])
    dirty = _run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "slowatch"])
    return head + ("+dirty" if dirty else "")


def module_at(commit: str, path: str, name: str) -> ModuleType:
    """The file ``path`` as it was at ``commit``, imported as the module ``name`` (a baseline to
    measure against, over today's other modules)."""
    text = _git_show(commit, path)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(name, f.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        Path(f.name).unlink()
    return module


def _git_show(commit: str, path: str) -> str:
    return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO_DIR, check=True, capture_output=True,
                          text=True).stdout


def code_fingerprint() -> str:
    """A hash of slowatch's source as it is on disk now (commits and uncommitted edits alike):
    other engineers change it while benchmarks run, so every measurement records the code it ran."""
    digest = hashlib.sha256()
    for path in sorted((REPO_DIR / "slowatch").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


class CodeWatch:
    """The code a benchmark starts with; ``changed()`` tells whether it changed since."""

    def __init__(self) -> None:
        self.commit, self.fingerprint = git_commit(), code_fingerprint()

    def report(self, measured: Collection[str] = ()) -> dict[str, Any]:
        """``measured``: the fingerprints the measuring processes recorded when they started; when
        given, only their disagreement counts as a change (an edit after the last one started is
        not part of any measurement)."""
        now_commit, now = git_commit(), code_fingerprint()
        changed = len(set(measured)) > 1 if measured else now != self.fingerprint
        return {"commit_at_start": self.commit, "code_at_start": self.fingerprint, "commit_at_end": now_commit,
                "code_at_end": now, "code_measured": sorted(set(measured)), "code_changed_during_run": changed}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
        memory_gib = round(kb / 1024 / 1024, 1)
    except (OSError, IndexError):
        pass
    prometheus = _run(["prometheus", "--version"]).splitlines()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "prometheus": prometheus[0] if prometheus else "unavailable",
        "kernel": platform.release(),
    }


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def write_markdown(name: str, info: dict[str, Any], body_md: str, title: str) -> Path:
    """``bench/results/<name>.md``: the machine (``info``, as stored in the JSON) and ``body_md``."""
    md_path = RESULTS_DIR / f"{name}.md"
    head = md_table(["machine", ""], [
        ["date", info["date"]], ["git commit", info["commit_at_start"]],
        ["slowatch/ source hash", ", ".join(info["code_measured"]) or info["code_at_start"]],
        ["nproc", info["nproc"]],
        ["cpu", info["cpu"]], ["memory", f"{info['memory_gib']} GiB"], ["python", info["python"]],
        ["prometheus", info["prometheus"]],
    ])
    warning = ""
    if info["code_changed_during_run"]:
        commits = f"{info['commit_at_start']} -> {info['commit_at_end']}"
        warning = (f"**slowatch's code changed during this run** ({commits}): rows may have measured "
                   "different code (each row's `code` in the JSON says which).\n\n")
        log(f"WARNING: slowatch's code changed during bench.{name}: run it again")
    md_path.write_text(f"# {title}\n\nGenerated by `python -m bench.{name}`; raw numbers in `{name}.json`.\n\n"
                       f"{warning}{head}\n\n{body_md.strip()}\n")
    return md_path


def write_results(name: str, data: dict[str, Any], body_md: str, title: str, code: CodeWatch,
                  measured: Collection[str] = ()) -> tuple[Path, Path]:
    """``bench/results/<name>.json`` (machine + data) and ``<name>.md`` (machine + body)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    info = {**machine(), **code.report(measured)}
    json_path, md_path = RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps({"benchmark": name, "machine": info, **data}, indent=2) + "\n")
    write_markdown(name, info, body_md, title)
    log(f"wrote {json_path.relative_to(REPO_DIR)} and {md_path.relative_to(REPO_DIR)}")
    return json_path, md_path


# --- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (its threads included) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat: the difference of
    two readings tells how busy every core was, whoever used it (other processes disturb a run)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def wait_for_quiet(max_seconds: float, busy_below: float = 0.25) -> float:
    """Wait (at most ``max_seconds``) for a second in which the machine is less than ``busy_below``
    busy, so other work on a shared machine disturbs a measurement less; returns the last reading.
    Never fails: the benchmarks record how busy the machine was during each measurement."""
    deadline = time.monotonic() + max_seconds
    while True:
        b0, t0 = machine_busy()
        time.sleep(1.0)
        b1, t1 = machine_busy()
        busy = (b1 - b0) / max(1e-9, t1 - t0)
        if busy < busy_below or time.monotonic() >= deadline:
            if busy >= busy_below:
                log(f"machine still {busy:.0%} busy with other work after {max_seconds:.0f}s; measuring anyway")
            return busy


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of ``pid`` in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


# --- Prometheus ---------------------------------------------------------------------------------


def scrape(url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics, keyed by its text selector (``name{labels}``)."""
    r = requests.get(url.rstrip("/") + "/metrics", timeout=10)
    r.raise_for_status()
    out: dict[str, float] = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def warm_page_cache(path: Path) -> int:
    """Read every file under ``path`` once so the first measured query does not pay for disk."""
    total = 0
    for f in sorted(path.rglob("*")):
        if f.is_file():
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 24):
                    total += len(chunk)
    return total


# --- lifecycle ----------------------------------------------------------------------------------


def _on_term(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def bounded(name: str, seconds: float) -> Iterator[None]:
    """Run a benchmark body: SIGTERM/SIGINT unwind it (so every ``finally`` stops its processes)
    and SIGALRM stops it after ``seconds``."""
    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(f"bench.{name}: over its time limit of {seconds:.0f}s; stopped")

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class Child:
    """A subprocess in its own process group, killed (group-wide) on exit if still running."""

    process: subprocess.Popen[bytes]

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def python_json(args: Sequence[str], timeout: float, *, python: str | None = None, cwd: Path = REPO_DIR,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python args...`` in its own process, return the JSON object it prints last on stdout;
    its stderr is passed through. A failure or a timeout fails the benchmark loudly."""
    cmd = [python or sys.executable, *args]
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, env=env, start_new_session=True)
    child = Child(process)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        child.stop(5)
        raise BenchError(f"{' '.join(cmd[:4])} ... timed out after {timeout:.0f}s") from exc
    finally:
        child.stop(5)
    if process.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:4])} ... exited with {process.returncode}")
    lines = [line for line in out.decode().splitlines() if line.strip()]
    if not lines:
        raise BenchError(f"{' '.join(cmd[:4])} ... printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def csv_ints(text: str) -> list[int]:
    """An argparse type: ``1000,10000`` -> [1000, 10000] (the benches' ``--slos``)."""
    return [int(v) for v in text.split(",") if v.strip()]
