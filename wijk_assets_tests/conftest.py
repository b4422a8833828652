"""Shared fixtures. Real data is read from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wijk_assets.settings import DEFAULT_DATA_DIR

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    data_dir = Path(os.environ.get("WIJK_DATA_DIR", DEFAULT_DATA_DIR))
    if not (data_dir / "PROVENANCE.md").is_file():
        pytest.fail(
            f"real shared data not found at {data_dir}: clone the repo beside ../shared "
            "or set WIJK_DATA_DIR to the folder holding PROVENANCE.md"
        )
    return data_dir
