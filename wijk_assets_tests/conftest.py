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

REAL_DATA_FIXTURE = "shared_data_dir"


def tier_of(item: pytest.Item) -> str:
    path = Path(str(item.fspath))
    if "e2e" in path.parts or item.get_closest_marker("slow") is not None:
        return "e2e"
    if REAL_DATA_FIXTURE in getattr(item, "fixturenames", ()):
        return "integration"
    return "unit"


# Fixtures that build a warehouse once per session (integration/conftest.py): every module that uses
# one runs in the same parallel worker, so the build is not repeated in a second worker.
SHARED_BUILD_FIXTURES = frozenset({"raw_stage", "lbm_warehouse"})


def worker_group(item: pytest.Item) -> str:
    """The pytest-xdist group of a test (``--dist loadgroup``): its module, or the shared-build group."""
    if SHARED_BUILD_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "shared_warehouse"
    return item.nodeid.split("::")[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    modules_sharing = {i.nodeid.split("::")[0] for i in items if worker_group(i) == "shared_warehouse"}
    for item in items:
        item.add_marker(getattr(pytest.mark, tier_of(item)))
        # a module whose tests partly use a shared build stays whole: all of it joins that group
        group = "shared_warehouse" if item.nodeid.split("::")[0] in modules_sharing else worker_group(item)
        item.add_marker(pytest.mark.xdist_group(name=group))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    data_dir = Path(os.environ.get("WIJK_DATA_DIR", DEFAULT_DATA_DIR))
    if not (data_dir / "PROVENANCE.md").is_file():
        pytest.fail(
            f"real shared data not found at {data_dir}: clone the repo beside ../shared "
            "or set WIJK_DATA_DIR to the folder holding PROVENANCE.md"
        )
    return data_dir
