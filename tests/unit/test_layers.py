"""The layers of the package, read from the source (every import, including those inside
functions), so a crossing fails here rather than in review.

    slowatch.core          the standard library, core itself, promql_parser and dateutil: no I/O library
    slowatch.adapters.X    other adapters only through SHARED helpers and the ADAPTER_EDGES below
    application modules    (APPLICATION) no adapter but the SHARED helpers: they see the ports
    everyone               never slowatch.cli (only ``python -m slowatch`` runs it), never a
                           private (``_name``) of another module

Plus: ``slowatch --help`` and ``slowatch check`` do not import the daemon's dependencies.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import slowatch

PACKAGE = Path(slowatch.__file__).parent

# A real PromQL parser (a typo fails at load time), and RFC 5545 rules for recurring exclusions.
CORE_THIRD_PARTY = frozenset({"promql_parser", "dateutil"})

# Core modules that still cross the line, each with the change that removes it. The test fails
# when an entry is no longer needed, so the list only shrinks.
CORE_PENDING: dict[str, str] = {}

# Helpers any adapter (and the application) may use: they do no I/O of their own. The dashboard
# builders (Grafana SDK, WP2 moves them out of core) are pure data, read by grafana and dashboard_files.
SHARED = frozenset({"slowatch.adapters.urls", "slowatch.adapters.sessions", "slowatch.adapters.dashboards"})

# The only adapter -> adapter imports, each with its reason.
ADAPTER_EDGES: dict[tuple[str, str], str] = {
    ("slowatch.adapters.http", "slowatch.adapters.page"): "GET / serves the status page",
    ("slowatch.adapters.http", "slowatch.adapters.render"): "GET /status serves the status document",
    ("slowatch.adapters.http", "slowatch.adapters.webconfig"): "TLS and basic auth come from the web config",
    ("slowatch.adapters.http", "slowatch.adapters.metrics"): "GET /metrics serves the registry's per-view exposition",
    ("slowatch.adapters.serving", "slowatch.adapters.http"): "the serving process runs the HTTP app and server",
    ("slowatch.adapters.page", "slowatch.adapters.render"): "the page shows the document's values",
    ("slowatch.adapters.planned", "slowatch.adapters.prometheus"): "batched queries run on the plain client",
    ("slowatch.adapters.history", "slowatch.adapters.prometheus"): "the backtest reads history on the plain client",
}

# Modules that work over the ports and the core, whatever adapters are plugged in.
APPLICATION = frozenset({
    "slowatch.checks", "slowatch.cycle", "slowatch.engine", "slowatch.ports", "slowatch.spec", "slowatch.view",
})

# The daemon's dependencies: a command that does not run the daemon must not pay for them.
DAEMON_ONLY = ("apscheduler", "waitress", "prometheus_client")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) per import in ``path``: name is None for ``import module``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(base, a.name) for a in node.names]
    return out


MODULES: dict[str, list[tuple[str, str | None]]] = {
    _module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _targets(importer: str) -> set[str]:
    """The modules ``importer`` imports (``from pkg import mod`` counts as importing pkg.mod)."""
    out = set()
    for module, name in MODULES[importer]:
        out.add(module)
        if name is not None and f"{module}.{name}" in MODULES:
            out.add(f"{module}.{name}")
    return out


def core_violations(module: str) -> list[str]:
    allowed_roots = set(sys.stdlib_module_names) | CORE_THIRD_PARTY
    return sorted(
        t for t in _targets(module)
        if not _within(t, "slowatch.core") and t.split(".")[0] not in allowed_roots and t != "__future__"
    )


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, "slowatch.core")))
def test_core_imports_only_the_standard_library_itself_and_the_promql_parser(module: str) -> None:
    found = core_violations(module)
    if module in CORE_PENDING:
        assert found, f"{module} no longer crosses the line: remove it from CORE_PENDING"
        return
    assert found == [], f"{module} imports {found}: core is pure (no I/O libraries, no adapters)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, "slowatch.adapters")))
def test_an_adapter_imports_another_only_through_a_listed_edge(module: str) -> None:
    others = sorted(
        t for t in _targets(module)
        if _within(t, "slowatch.adapters") and t not in (module, "slowatch.adapters")
        and t not in SHARED and (module, t) not in ADAPTER_EDGES
    )
    assert others == [], f"{module} imports {others}: list the edge in ADAPTER_EDGES with its reason, or move it"


@pytest.mark.parametrize("module", sorted(APPLICATION & MODULES.keys()))
def test_application_modules_import_no_adapter(module: str) -> None:
    found = sorted(t for t in _targets(module) if _within(t, "slowatch.adapters") and t not in SHARED)
    assert found == [], f"{module} imports {found}: take a port (slowatch/ports.py) instead"


def test_no_module_imports_the_cli() -> None:
    found = sorted(
        m for m in MODULES if m != "slowatch.__main__" and any(_within(t, "slowatch.cli") for t in _targets(m))
    )
    assert found == []


def test_no_module_imports_a_private_name_of_another() -> None:
    found = sorted(
        f"{m}: {module}.{name}"
        for m, imports in MODULES.items()
        for module, name in imports
        if _within(module, "slowatch") and (
            (name is not None and name.startswith("_") and name != "__version__")
            or any(part.startswith("_") and part not in ("__init__", "__main__") for part in module.split("."))
        )
    )
    assert found == []


def _private_uses(path: Path) -> list[str]:
    """``module._name`` where ``module`` is a slowatch module imported by name (``from slowatch
    import cli`` then ``cli._settings``): a private reached through an attribute, not an import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and _within(node.module, "slowatch"):
            bound.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                          if f"{node.module}.{a.name}" in MODULES})
        elif isinstance(node, ast.Import):
            bound.update({a.asname: a.name for a in node.names if a.asname and _within(a.name, "slowatch")})
    return sorted(
        f"{bound[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
        and node.attr.startswith("_") and not node.attr.startswith("__")
    )


def test_no_module_reaches_a_private_name_of_another_through_an_attribute() -> None:
    found = {_module_name(p): uses for p in sorted(PACKAGE.rglob("*.py")) if (uses := _private_uses(p))}
    assert found == {}


@pytest.mark.parametrize("edge", sorted(ADAPTER_EDGES))
def test_every_listed_adapter_edge_is_used(edge: tuple[str, str]) -> None:
    assert edge[1] in _targets(edge[0]), f"{edge} is no longer used: remove it from ADAPTER_EDGES"


def test_the_checker_sees_a_crossing() -> None:
    """The walker itself: a core module importing an adapter, relatively and absolutely."""
    fake = {
        "slowatch.core.fake": [("slowatch.adapters.prometheus", "PrometheusSource"), ("slowatch.core", "model")],
    }
    MODULES.update(fake)
    try:
        assert core_violations("slowatch.core.fake") == ["slowatch.adapters.prometheus"]
    finally:
        for key in fake:
            del MODULES[key]


_PROBE = """
import json, sys
from slowatch.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(m for m in {daemon_only!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--help"], id="slowatch --help"),
        pytest.param(["check", "SPEC"], id="slowatch check"),
    ],
)
def test_commands_that_do_not_run_the_daemon_do_not_import_its_dependencies(argv: list[str]) -> None:
    spec = PACKAGE.parent / "deploy" / "slos"
    args = [str(spec) if a == "SPEC" else a for a in argv]
    probe = _PROBE.format(daemon_only=DAEMON_ONLY)
    result = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: slowatch" in result.stdout or result.stdout.startswith("ok: ")
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
