"""Validate, then swap, after raw (real data): a refused build never replaces what is live.

- Gate 2 protects the feature layer: a release that gate 1 accepts but that empties a feature leaves
  every dbt relation as it was, keeps the refused tables in quarantine, and stands in
  ``wijk-assets status`` until a good build goes live.
- The publication guard protects the published tables the same way.

Starts from a copy of the session's built warehouse (``lbm_warehouse``), so only the refused build and
the good one after it run here. The damage is the one a real release could bring: the national KWB 2024
extract with "Woningvoorraad" empty for 70 % of its areas. Every cell is still a valid, typed value or
an empty cell, so gate 1 has nothing to refuse; only gate 2's NULL-ratio rule sees it.
"""

from __future__ import annotations

import shutil

import dagster as dg
import duckdb
import pytest

from wijk_assets.definitions import build_definitions
from wijk_assets.keys import FEATURE_TABLE_KEY, PUBLISH_KEY
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.runner.status import rejected_builds, status_lines
from wijk_assets.settings import Settings

DAMAGED = "release_year = 2024 AND measure_key = 'Woningvoorraad_35' AND source_row % 10 < 7"


def _snapshot(db) -> dict:
    """Every relation the feature step builds: rows and a hash of their content; views: their SQL."""
    with duckdb.connect(str(db), read_only=True) as con:
        relations = con.execute(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables "
            "WHERE table_schema IN ('staging', 'intermediate', 'marts') ORDER BY 1, 2"
        ).fetchall()
        out = {}
        for schema, name, kind in relations:
            if kind == "VIEW":
                out[f"{schema}.{name}"] = con.execute(
                    "SELECT sql FROM duckdb_views() WHERE schema_name = ? AND view_name = ?", [schema, name]).fetchone()[0]
            else:
                out[f"{schema}.{name}"] = con.execute(f'SELECT count(*), bit_xor(hash(t)) FROM "{schema}"."{name}" t').fetchone()
        return out


def _error(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run failed without a failed step"
    data = failures[0].step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else None) or data.error.message


def feature_step_copy(lbm_warehouse, shared_data_dir, root) -> dict:
    """A copy of the session's built warehouse in ``root``, its definitions and the feature step's asset keys."""
    db = root / "wijk.duckdb"
    shutil.copyfile(lbm_warehouse["db"], db)
    settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    defs = build_definitions(settings)
    keys = sorted(defs.get_assets_def(FEATURE_TABLE_KEY).keys, key=lambda k: k.to_user_string())
    return {"db": db, "defs": defs, "keys": keys}


@pytest.fixture(scope="module")
def world(lbm_warehouse, shared_data_dir, tmp_path_factory):
    copy = feature_step_copy(lbm_warehouse, shared_data_dir, tmp_path_factory.mktemp("feature_swap"))
    return {**copy, "instance": dg.DagsterInstance.ephemeral()}


def test_a_release_that_empties_a_feature_is_refused_and_the_previous_build_stays(world):
    db, instance = world["db"], world["instance"]
    before = _snapshot(db)
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE main.kept_rows AS SELECT * FROM raw.cbs_kwb WHERE {DAMAGED}")
        con.execute(f"UPDATE raw.cbs_kwb SET value_raw = NULL WHERE {DAMAGED}")

    refused = materialize_keys(world["defs"], instance, world["keys"], None, trigger="test")

    assert not refused.success
    error = _error(refused)
    assert "gate 2 refused the feature build" in error
    assert "source cbs_kwb, year 2024, feature dwellings" in error
    # every staging, intermediate and mart relation is exactly the previous build's, no __previous left
    assert _snapshot(db) == before
    with duckdb.connect(str(db), read_only=True) as con:
        kept = con.execute(
            "SELECT count(*), count(dwellings) FROM quarantine.marts__fct_area_features "
            "WHERE year = 2024 AND area_level IN ('gemeente', 'wijk')").fetchone()
        live = con.execute(
            "SELECT count(*), count(dwellings) FROM marts.fct_area_features "
            "WHERE year = 2024 AND area_level IN ('gemeente', 'wijk')").fetchone()
    assert kept[0] == live[0] > 3000
    assert kept[1] < 0.35 * kept[0] and live[1] > 0.95 * live[0]  # the refused build is kept, not live
    # nothing was materialised, so nothing downstream is triggered by it
    assert instance.get_latest_materialization_event(FEATURE_TABLE_KEY) is None

    [standing] = rejected_builds(instance, db)
    assert (standing.step, standing.stage, standing.run_id) == ("dbt_features", "gate_2", refused.run_id)
    assert "quarantine.marts__fct_area_features" in standing.quarantined
    assert any(line.startswith("REJECTED build dbt_features") for line in status_lines([], [], [standing]))


def test_the_corrected_release_goes_live_and_the_rejection_no_longer_stands(world):
    db, instance = world["db"], world["instance"]
    with duckdb.connect(str(db)) as con:
        con.execute("DELETE FROM raw.cbs_kwb WHERE " + DAMAGED)
        con.execute("INSERT INTO raw.cbs_kwb SELECT * FROM main.kept_rows")
        con.execute("DROP TABLE main.kept_rows")
        before = con.execute("SELECT count(*), bit_xor(hash(t)) FROM marts.fct_area_features t").fetchone()

    accepted = materialize_keys(world["defs"], instance, world["keys"], None, trigger="test")

    assert accepted.success
    assert rejected_builds(instance, db) == []
    with duckdb.connect(str(db), read_only=True) as con:
        # same raw rows, same feature table (the build is deterministic)
        assert con.execute("SELECT count(*), bit_xor(hash(t)) FROM marts.fct_area_features t").fetchone() == before
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '%\\_\\_previous' ESCAPE '\\'").fetchone()[0] == 0
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
              for e in accepted.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["ge_gate_fct_area_features"].passed


def test_a_judgemental_sentence_never_reaches_the_published_tables(world):
    """One driver sentence of the lbm explanations says "slechtste wijk": the publication guard refuses
    the new tables before they are written; the published ones stay, the refused ones are kept."""
    db, instance = world["db"], world["instance"]
    publish = [PUBLISH_KEY]
    first = materialize_keys(world["defs"], instance, publish, None, trigger="test")
    assert first.success
    tables = ("publish.area_drivers", "publish.area_comparison", "publish.suppression_log")

    def published():
        with duckdb.connect(str(db), read_only=True) as con:
            return {t: con.execute(f"SELECT count(*), bit_xor(hash(p)) FROM {t} p").fetchone() for t in tables}

    before = published()
    with duckdb.connect(str(db)) as con:
        area, sentence = con.execute(
            "SELECT area_code, sentence FROM ml.area_drivers WHERE area_code LIKE 'WK0106%' AND sentence IS NOT NULL "
            "ORDER BY area_code, rank LIMIT 1").fetchone()
        con.execute("UPDATE ml.area_drivers SET sentence = 'De slechtste wijk van Assen. ' || sentence "
                    "WHERE area_code = ? AND sentence = ?", [area, sentence])

    refused = materialize_keys(world["defs"], instance, publish, None, trigger="test")

    assert not refused.success
    error = _error(refused)
    assert "the publication guard refused the new tables" in error and "slechtste" in error
    assert published() == before
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM quarantine.publish__area_drivers "
                           "WHERE sentence LIKE 'De slechtste wijk%'").fetchone()[0] >= 1
    standing = {b.step: b for b in rejected_builds(instance, db)}
    assert standing[PUBLISH_KEY.to_python_identifier()].stage == "publish_guard"

    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE ml.area_drivers SET sentence = ? WHERE area_code = ? AND sentence LIKE 'De slechtste wijk%'",
                    [sentence, area])
    again = materialize_keys(world["defs"], instance, publish, None, trigger="test")
    assert again.success and published() == before
    assert PUBLISH_KEY.to_python_identifier() not in {b.step for b in rejected_builds(instance, db)}
