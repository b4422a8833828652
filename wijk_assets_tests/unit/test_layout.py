"""The house rules of the package layout (issue 10), checked on the source text (no imports run).

- no import cycle between modules of ``wijk_assets`` (imports anywhere in a module count, including
  the deferred ones inside functions, so a cycle cannot hide behind a local import);
- ``wijk_assets/lib/`` is pure: nothing in it imports Dagster, directly or through another module;
- only ``wijk_assets/settings.py`` reads the environment;
- modules stay readable: none over ~400 lines unless listed below with the reason.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "wijk_assets"

# Modules allowed over the size limit, and why (keep this list short and honest).
LARGE_MODULES = {
    "lib/quality/ge_runner.py": "one GE adapter: suite loading, raw-row preparation, validation, summaries",
    "lib/ml/explain.py": "SHAP helpers, driver sentences and residual flags, read together",
    "lib/ml/training.py": "the model fit: tuning grid, baselines on shared folds, artifacts",
    "lib/responsible/register.py": "register entry and model card templates: long Dutch text",
    "lib/responsible/privacy.py": "suppression rules with their documentation",
    "lib/responsible/stigma.py": "label guard word lists and sensitive-column rules",
    "lib/sources/odata.py": "the OData client: paging, retries, errors",
    "lib/sources/statline_csv.py": "the shared text-table parser for every StatLine export layout",
    "lib/quality/plausibility.py": "gate 1's plausibility rule families, each with its DuckDB SQL",
    "lib/change_monitoring.py": "change monitoring: indicator, prediction, drift and performance tables",
    "defs/reports/audit.py": "audit trail and lineage report readers",
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
            elif target.split(".")[0] == "dagster" or target.startswith("dagster_"):
                found.add("<dagster>")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == "<dagster>":
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_lib_never_imports_dagster():
    graph = _graph()

    def reaches_dagster(name: str, seen: set[str]) -> list[str] | None:
        if name in seen:
            return None
        seen.add(name)
        for nxt in sorted(graph.get(name, ())):
            if nxt == "<dagster>":
                return [name, "dagster"]
            path = reaches_dagster(nxt, seen)
            if path:
                return [name, *path]
        return None

    offenders = []
    for name in sorted(graph):
        if name.startswith("wijk_assets.lib"):
            path = reaches_dagster(name, set())
            if path:
                offenders.append(" -> ".join(path))
    assert not offenders, "lib/ must stay free of Dagster:\n" + "\n".join(offenders)


def test_only_settings_reads_the_environment():
    readers = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # os.environ.get(...), os.environ[...] as a value, os.getenv(...)
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
                parent_is_store = False
                for other in ast.walk(tree):
                    if isinstance(other, (ast.Assign, ast.AugAssign)):
                        targets = other.targets if isinstance(other, ast.Assign) else [other.target]
                        for target in targets:
                            if isinstance(target, ast.Subscript) and target.value is node:
                                parent_is_store = True
                    if (
                        isinstance(other, ast.Call)
                        and isinstance(other.func, ast.Attribute)
                        and other.func.value is node
                        and other.func.attr in {"setdefault", "update", "pop"}
                    ):
                        parent_is_store = True
                if not parent_is_store:
                    readers.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not readers, f"only wijk_assets/settings.py may read the environment: {readers}"


def test_module_sizes():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in LARGE_MODULES:
            too_long.append(f"{rel}: {lines} lines")
    assert not too_long, "modules over the size limit (split them, or list them with a reason): " + ", ".join(too_long)


# Where load_settings() may be called: the entry points that build definitions, and settings needed
# before any run exists (why, per module). Assets and checks get the settings their definitions were
# built with through the ``settings`` resource instead.
LOAD_SETTINGS_ALLOWED = {
    "definitions.py": "builds the Definitions (and their resources) from the settings",
    "cli.py": "the command line's entry point",
    "runner/materialize.py": "runs without explicit settings use the environment's",
    "runner/refresh.py": "runs without explicit settings use the environment's",
    "defs/dbt/project.py": "the dbt target folder and warehouse file are needed when the dbt assets are defined (import time)",
    "defs/automation/release_sensor.py": "the sensor's interval is fixed when the sensor is defined",
    "lib/lgbm_fits.py": "default thread and worker counts for direct library use; the model asset passes the resource's",
    "lib/sources/survey_csv.py": "default threshold for direct library use; the CBS resource passes its own",
}


def test_assets_read_settings_from_the_resource():
    callers = set()
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        if rel == "settings.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load_settings":
                callers.add(rel)
    unexpected = sorted(callers - set(LOAD_SETTINGS_ALLOWED))
    assert not unexpected, f"load_settings() outside the entry points (use the settings resource): {unexpected}"


def test_the_parallel_scheduler_knows_every_module_that_reads_a_shared_build():
    """Modules using a session-wide build (raw_stage, lbm_warehouse) must run in one worker, or the
    build is repeated in the other one: the scheduler's list has to match the test files."""
    from wijk_assets_tests.conftest import SHARED_BUILD_FIXTURES, SHARED_BUILD_MODULES, scope_priority, worker_scope

    tests = Path(__file__).resolve().parents[1]
    using = set()
    for path in tests.rglob("test_*.py"):
        text = path.read_text(encoding="utf-8")
        if any(re.search(rf"def \w+\([^)]*\b{name}\b", text) for name in SHARED_BUILD_FIXTURES):
            using.add(path.relative_to(tests.parent).as_posix())
    assert using == set(SHARED_BUILD_MODULES)
    assert worker_scope("wijk_assets_tests/integration/test_wijkbeeld.py::test_x") == "shared_build"
    assert worker_scope("wijk_assets_tests/unit/test_ml.py::test_x[a::b]") == "wijk_assets_tests/unit/test_ml.py"
    order = sorted(["wijk_assets_tests/integration/test_determinism.py", "wijk_assets_tests/unit/test_ml.py",
                    "shared_build", "wijk_assets_tests/e2e/test_pipeline_end_to_end.py"], key=scope_priority)
    assert order[:2] == ["wijk_assets_tests/e2e/test_pipeline_end_to_end.py", "shared_build"]
