"""Fixtures shared by integration modules that need the same expensive build.

``lbm_warehouse`` (session scope): every raw source of the real shared data, the dbt project, and the
``lbm`` outcome (model selection, model with its fold models, gate 3, explanations) plus everything
unpartitioned after it (published tables, reports, wijkbeeld for Assen), in one tmp DuckDB. The model
outputs (issue 12) and the wijkbeeld pages (issue 13) are checked on this one build instead of two
identical ones. Modules may add to it (the wijkbeeld module builds Utrecht's pages too) but must not
change what another module reads.

``raw_stage`` (session scope): every raw partition of the real shared data loaded once through Dagster
(gate 1 included) into a DuckDB file that no test writes to; modules that need a warehouse with the raw
tables take a copy of the file (``raw_copy``) instead of loading all sources again (~60 s each).
``lbm_warehouse`` builds on a copy too, and continues with the raw stage's Dagster instance (no other
module uses that instance).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from wijk_assets.definitions import build_definitions
from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key
from wijk_assets.runner.materialize import materialize_all, materialize_keys, plan_waves
from wijk_assets.settings import Settings

LBM_OUTCOME = "lbm"


@pytest.fixture(scope="session")
def raw_stage(shared_data_dir, tmp_path_factory):
    """Every raw source of the shared data, loaded once (read-only for tests: copy it, see raw_copy)."""
    root = tmp_path_factory.mktemp("raw_stage")
    db = root / "wijk.duckdb"  # (not "raw.duckdb": the catalog name would clash with the raw schema)
    settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    instance = dg.DagsterInstance.ephemeral()
    report = materialize_all(settings, instance=instance, downstream=False)
    assert report.success, [t for t in report.timings if not t.success]
    return {"db": db, "instance": instance, "report": report}


def raw_copy(raw_stage, target: Path) -> Path:
    """A writable copy of the raw-stage database (the file is closed after every Dagster run)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(raw_stage["db"], target)
    return target


@pytest.fixture(scope="session")
def lbm_warehouse(shared_data_dir, raw_stage, tmp_path_factory):
    root = tmp_path_factory.mktemp("lbm_warehouse")
    db = raw_copy(raw_stage, root / "wijk.duckdb")
    settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    instance = raw_stage["instance"]
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    raw_keys = {raw_asset_key(s) for s in RAW_SOURCES}
    rest = [k for k in graph.toposorted_asset_keys if k not in raw_keys and graph.get(k).is_materializable]
    for partitions_def, keys in plan_waves(graph, rest):
        for partition_key in ([LBM_OUTCOME] if partitions_def else [None]):
            result = materialize_keys(defs, instance, keys, partition_key, trigger="test")
            assert result.success, f"{[k.to_user_string() for k in keys]} [{partition_key}] failed"
    return {"db": db, "root": root, "settings": settings, "instance": instance}
