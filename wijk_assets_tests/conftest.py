"""Shared fixtures and the test tiers. Real data is read from ../shared/data (never copied into the repo).

Tiers (markers, set here for every collected test, so ``-m unit`` is exact rather than a convention):

- ``unit``: synthetic data only, no real files (whole tier in about two minutes);
- ``integration``: reads the real shared data (it uses the ``shared_data_dir`` fixture, directly or
  through another fixture);
- ``e2e``: the slow end-to-end runs (``wijk_assets_tests/e2e/`` and anything marked ``slow``).

A test lands in the first tier that applies: e2e, then integration, then unit. The folders
``unit/``, ``integration/`` and ``e2e/`` group files by their main tier; the marker decides.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wijk_assets.settings import DEFAULT_DATA_DIR

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

# Parallel workers (pytest-xdist, the README's test command runs two): each worker parses the dbt
# project into its own target folder, so two workers never write one manifest at the same time.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and "WIJK_DBT_TARGET_PATH" not in os.environ:
    os.environ["WIJK_DBT_TARGET_PATH"] = f"target/pytest-{_WORKER}"
# Two workers share two cores: one LightGBM thread per fit (2-thread fits of two busy processes spin
# and take ~2.8x as long; the thread count does not change any prediction, see training._default_n_jobs).
# Likewise the model selection's fits run in this process, not in two spawned worker processes each:
# both cores are busy already, and the spawned interpreters (imports, a copy of the feature matrices)
# cost ~16 % more CPU per selection (fys: 33.3 s instead of 28.6 s). Settings built directly in the
# fixtures have both at 1 already (settings.Settings); these cover load_settings() in the same
# processes. The parallel path has its own test (test_model_selection.py).
if _WORKER:
    os.environ.setdefault("WIJK_ML_N_JOBS", "1")
    os.environ.setdefault("WIJK_ML_WORKERS", "1")

REAL_DATA_FIXTURE = "shared_data_dir"


def tier_of(item: pytest.Item) -> str:
    path = Path(str(item.fspath))
    if "e2e" in path.parts or item.get_closest_marker("slow") is not None:
        return "e2e"
    if REAL_DATA_FIXTURE in getattr(item, "fixturenames", ()):
        return "integration"
    return "unit"


# Parallel runs (pytest-xdist, `-n 2`): a whole module runs in one worker (its module fixtures are built
# once), and the modules that read a session-wide build (integration/conftest.py: raw_stage,
# lbm_warehouse) run in one worker together, so that build is not repeated in the other worker. The
# end-to-end module starts first in one worker, the shared build in the other. (xdist's own
# `--dist loadgroup` marks do not reach the scheduler under pytest 9.2: node ids became immutable.)
SHARED_BUILD_MODULES = frozenset({
    "wijk_assets_tests/integration/test_raw_assets.py",
    "wijk_assets_tests/integration/test_dbt_models.py",
    "wijk_assets_tests/integration/test_dbt_in_process.py",
    "wijk_assets_tests/integration/test_model_outputs.py",
    "wijk_assets_tests/integration/test_wijkbeeld.py",
    "wijk_assets_tests/integration/test_wijkbeeld_phone.py",
    "wijk_assets_tests/integration/test_determinism.py",
    "wijk_assets_tests/integration/test_refused_builds.py",
    "wijk_assets_tests/integration/test_unchanged_training_inputs.py",
    "wijk_assets_tests/integration/test_kept_model_figures.py",
})
SHARED_BUILD_FIXTURES = ("raw_stage", "lbm_warehouse")


def worker_scope(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    return "shared_build" if module in SHARED_BUILD_MODULES else module


def scope_priority(scope: str) -> int:
    """Start order: the end-to-end module, the shared build, the quick unit modules, the rest."""
    if "/e2e/" in scope:
        return 0
    if scope == "shared_build":
        return 1
    return 2 if "/unit/" in scope else 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of(item)))


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") in ("each", "worksteal"):
        return None  # xdist's own scheduler
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the first assignment: the work queue is complete
                self._ordered = True
                ordered = sorted(self.workqueue.items(), key=lambda kv: scope_priority(kv[0]))
                self.workqueue.clear()
                self.workqueue.update(ordered)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    data_dir = Path(os.environ.get("WIJK_DATA_DIR", DEFAULT_DATA_DIR))
    if not (data_dir / "PROVENANCE.md").is_file():
        pytest.fail(
            f"real shared data not found at {data_dir}: clone the repo beside ../shared "
            "or set WIJK_DATA_DIR to the folder holding PROVENANCE.md"
        )
    return data_dir
