"""The training step leaves the live training mart in place when nothing it reads changed (real data).

Starts from a copy of the session's built warehouse (``lbm_warehouse``, whose training step recorded its
inputs' fingerprint). The inputs are changed directly in the copy (labelled below), not through a release:
the realistic path, a KWB year after the last outcome year through the whole refresh, is benchmark line
(c). Three cases, in order:

1. the live mart was changed outside Dagster (as a hand-run ``dbt build`` could): same fingerprint, but
   the step rebuilds, and the rebuilt mart is the original one, bit for bit;
2. rows for a year no outcome uses appear in the feature table: the step does not run dbt; the mart keeps
   its content and data version, and its tests report the recorded run's result;
3. a value the training rows use changes: the step rebuilds and the mart changes.
"""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb
import pytest

from wijk_assets.definitions import build_definitions
from wijk_assets.defs.dbt.unchanged_inputs import BUILD_INPUTS_TABLE
from wijk_assets.keys import TRAINING_KEY
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.settings import Settings

STEP = "dbt_training"


def _mart(db) -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT count(*), bit_xor(hash(t)) FROM marts.mart_wijk_training t").fetchone()


def _recorded_run(db) -> str:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT run_id FROM {BUILD_INPUTS_TABLE} WHERE step = ?", [STEP]).fetchone()[0]


def _run(world):
    result = materialize_keys(world["defs"], world["instance"], world["keys"], None, trigger="test")
    assert result.success
    materialised = {
        e.event_specific_data.materialization.asset_key: e.event_specific_data.materialization
        for e in result.get_asset_materialization_events()
    }
    assert set(materialised) == set(world["keys"])
    return result, materialised


def _rebuilt(materialised) -> bool:
    return "dbt" not in materialised[TRAINING_KEY].metadata  # the note a step that did not run dbt leaves


@pytest.fixture(scope="module")
def world(lbm_warehouse, shared_data_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("unchanged_inputs") / "wijk.duckdb"
    shutil.copyfile(lbm_warehouse["db"], db)
    settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    defs = build_definitions(settings)
    keys = sorted(defs.get_assets_def(TRAINING_KEY).keys, key=lambda k: k.to_user_string())
    return {"db": db, "defs": defs, "keys": keys, "instance": dg.DagsterInstance.ephemeral(), "original": _mart(db)}


def test_a_mart_changed_outside_dagster_is_rebuilt_to_what_its_inputs_give(world):
    db = world["db"]
    built_in = _recorded_run(db)  # the shared build's training step recorded its inputs
    with duckdb.connect(str(db)) as con:  # direct edit of the copy, standing for a hand-run dbt build
        con.execute("UPDATE marts.mart_wijk_training SET lbm = lbm + 1 WHERE outcome_year = 2022")
    assert _mart(db) != world["original"]

    result, materialised = _run(world)

    assert _rebuilt(materialised)
    assert _mart(db) == world["original"]  # the same inputs built the same mart again
    assert _recorded_run(db) == result.run_id != built_in


def test_rows_of_a_year_no_outcome_uses_leave_the_mart_in_place(world):
    db = world["db"]
    built_in = _recorded_run(db)
    with duckdb.connect(str(db)) as con:
        version_before = con.execute("SELECT fingerprint FROM audit.build_inputs WHERE step = ?", [STEP]).fetchone()
        # direct edits standing for a KWB release after every outcome year: its values change (the staged
        # cells the long feature values are a view of), and its rows appear in the wide table
        changed = con.execute(
            "UPDATE staging.stg_cells SET value = value + 1 WHERE value IS NOT NULL AND measure_id IN "
            "(SELECT measure_id FROM staging.stg_measure_map WHERE source = 'cbs_kwb' AND release_year = 2024)"
        ).fetchone()[0]
        con.execute("INSERT INTO marts.fct_area_features SELECT * REPLACE (2031 AS year) FROM marts.fct_area_features "
                    "WHERE year = 2024")
    assert changed > 1000
    before = world["instance"].get_latest_materialization_event(TRAINING_KEY)

    result, materialised = _run(world)

    assert not _rebuilt(materialised)
    assert f"since the build of run {built_in}" in materialised[TRAINING_KEY].metadata["dbt"].value
    assert _mart(db) == world["original"]
    if before is not None:
        assert (materialised[TRAINING_KEY].tags["dagster/data_version"]
                == before.asset_materialization.tags["dagster/data_version"])
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert {c.metadata["evaluated_in_run"].value for c in checks} == {built_in}
    assert _recorded_run(db) == built_in  # the record still describes the live build
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT fingerprint FROM audit.build_inputs WHERE step = ?", [STEP]).fetchone() == version_before


def test_a_changed_value_that_training_rows_use_rebuilds_the_mart(world):
    db = world["db"]
    with duckdb.connect(str(db)) as con:
        candidates = [r[0] for r in con.execute(
            "SELECT c.feature FROM marts.feature_catalog c JOIN information_schema.columns i "
            "ON i.table_schema = 'marts' AND i.table_name = 'mart_wijk_training' AND i.column_name = c.feature "
            "WHERE c.source = 'rivm_gezondheid' AND NOT c.sensitive ORDER BY 1").fetchall()]
        # a health indicator the 2020 release holds for wijken (some are published in other years only)
        feature = next(f for f in candidates if con.execute(
            f"SELECT count(\"{f}\") FROM marts.fct_area_features WHERE year = 2020 AND area_level = 'wijk'").fetchone()[0])
        # direct edit of the staged cells (the long feature values are a view over them): that indicator
        # in 2020, a year the 2020 and 2022 outcomes use
        changed = con.execute(
            "UPDATE staging.stg_cells SET value = value + 1 WHERE value IS NOT NULL AND measure_id IN "
            "(SELECT measure_id FROM staging.stg_measure_map WHERE source = 'rivm_gezondheid' AND release_year = 2020 "
            "AND feature = ?)", [feature]).fetchone()[0]
    assert changed > 1000

    result, materialised = _run(world)

    assert _rebuilt(materialised)
    assert _mart(db) != world["original"]
    assert _recorded_run(db) == result.run_id
