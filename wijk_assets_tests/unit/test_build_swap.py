"""Validate, then swap, for dbt-built relations (:mod:`wijk_assets.lib.build_swap`), on a synthetic DuckDB.

The "previous build" is a table ``marts.features`` (good rows), a table ``staging.cells`` and a view
``marts.feature_values`` over it; the "new build" replaces them with other rows, as dbt would.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from wijk_assets.lib import build_swap
from wijk_assets.lib.build_swap import Relation

FEATURES, CELLS, VALUES = Relation("marts", "features"), Relation("staging", "cells"), Relation("marts", "feature_values")
BUILT = [FEATURES, CELLS, VALUES]


def _previous_build(con) -> None:
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    con.execute("CREATE TABLE marts.features AS SELECT range AS area, range * 1.5 AS dwellings FROM range(5)")
    con.execute("CREATE TABLE staging.cells AS SELECT range AS area, 'good' AS cell FROM range(5)")
    con.execute("CREATE VIEW marts.feature_values AS SELECT area, cell FROM staging.cells")


def _new_build(con) -> None:
    """What dbt does after the relations were set aside: create them anew (bad rows: dwellings NULL)."""
    con.execute("CREATE TABLE marts.features AS SELECT range AS area, NULL::DOUBLE AS dwellings FROM range(7)")
    con.execute("CREATE TABLE staging.cells AS SELECT range AS area, 'bad' AS cell FROM range(7)")
    con.execute("CREATE VIEW marts.feature_values AS SELECT area, cell, 1 AS extra FROM staging.cells")


def _state(con) -> dict:
    return {
        "features": con.execute("SELECT count(*), sum(dwellings) FROM marts.features").fetchone(),
        "values": con.execute("SELECT count(*), min(cell) FROM marts.feature_values").fetchone(),
        "view_sql": con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'feature_values'").fetchone()[0],
        "relations": sorted(con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('marts', 'staging')").fetchall()),
    }


@pytest.fixture
def con():
    connection = duckdb.connect()
    _previous_build(connection)
    yield connection
    connection.close()


def test_a_passing_build_replaces_the_previous_and_leaves_nothing_behind(con):
    aside = build_swap.set_aside(con, BUILT)
    assert aside == BUILT
    _new_build(con)
    build_swap.commit(con, aside)
    state = _state(con)
    assert state["features"] == (7, None) and state["values"] == (7, "bad")
    assert state["relations"] == [("marts.feature_values",), ("marts.features",), ("staging.cells",)]
    assert build_swap.latest_rejections(con) == []


def test_a_refused_build_puts_the_previous_back_and_keeps_the_refused_tables(con):
    before = _state(con)
    aside = build_swap.set_aside(con, BUILT)
    _new_build(con)
    kept = build_swap.reject(con, BUILT, run_id="run-1", step="dbt_features", stage="gate_2",
                             reason="dwellings: 100 % missing", failed_expectations=["expect_x(null_ratio)"],
                             asset_keys=["marts/features"])
    assert aside == BUILT
    assert _state(con) == before  # rows, the view's definition, and no __previous relation left
    assert kept == {"marts.features": "quarantine.marts__features", "staging.cells": "quarantine.staging__cells"}
    assert con.execute("SELECT count(*), count(dwellings) FROM quarantine.marts__features").fetchone() == (7, 0)
    [rejection] = build_swap.latest_rejections(con)
    assert (rejection["run_id"], rejection["step"], rejection["stage"]) == ("run-1", "dbt_features", "gate_2")
    assert json.loads(rejection["failed_expectations"]) == ["expect_x(null_ratio)"]
    assert json.loads(rejection["relations"]) == [str(r) for r in BUILT]
    assert json.loads(rejection["asset_keys"]) == ["marts/features"]


def test_a_refused_first_build_leaves_no_relation(con):
    new = Relation("marts", "new_table")
    assert build_swap.set_aside(con, [new]) == []
    con.execute("CREATE TABLE marts.new_table AS SELECT 1 AS x")
    build_swap.reject(con, [new], run_id="run-2", step="dbt_training", stage="dbt", reason="a dbt test failed",
                      asset_keys=["marts/new_table"])
    assert build_swap.kind_of(con, new) is None
    assert con.execute("SELECT x FROM quarantine.marts__new_table").fetchall() == [(1,)]


def test_an_interrupted_build_is_undone_before_the_next_one(con):
    before = _state(con)
    build_swap.set_aside(con, BUILT)
    con.execute("CREATE TABLE marts.features AS SELECT 99 AS area, 0.0 AS dwellings")  # killed half-way
    # the next build's set_aside first restores what the killed one had set aside
    restored = build_swap.restore_interrupted(con)
    assert sorted(map(str, restored)) == sorted(map(str, BUILT))
    assert _state(con) == before


def test_only_the_latest_rejection_per_step_is_listed(con):
    for run in ("a", "b"):
        build_swap.set_aside(con, [FEATURES])
        con.execute("CREATE TABLE marts.features AS SELECT 1 AS area, NULL::DOUBLE AS dwellings")
        build_swap.reject(con, [FEATURES], run_id=run, step="dbt_features", stage="gate_2", reason=run, asset_keys=["marts/features"])
    assert [r["run_id"] for r in build_swap.latest_rejections(con)] == ["b"]
    assert con.execute("SELECT count(*) FROM quarantine.build_rejections").fetchone()[0] == 2


def test_refused_frames_are_kept_and_the_live_tables_untouched(con):
    """A step that validates before it writes (the publication): the frames go to quarantine only."""
    import pandas as pd

    before = _state(con)
    refused = pd.DataFrame({"area": [1, 2], "sentence": ["De slechtste wijk", "neutraal"]})
    kept = build_swap.reject_frames(con, {"marts.features": refused}, run_id="run-3", step="publish",
                                    stage="publish_guard", reason="judgement label", asset_keys=["publish/x"])
    assert kept == {"marts.features": "quarantine.marts__features"}
    assert _state(con) == before
    assert con.execute("SELECT * FROM quarantine.marts__features ORDER BY area").fetchall() == [
        (1, "De slechtste wijk"), (2, "neutraal")]
    [rejection] = build_swap.latest_rejections(con)
    assert (rejection["stage"], json.loads(rejection["asset_keys"])) == ("publish_guard", ["publish/x"])


def test_replace_tables_is_all_or_none(con):
    """The published tables are written together: when one cannot be written, none is replaced."""
    import pandas as pd

    from wijk_assets.lib.warehouse import replace_tables

    before = _state(con)
    with pytest.raises(duckdb.Error):
        replace_tables(con, {"marts.features": pd.DataFrame({"area": [9], "dwellings": [1.0]}),
                             "marts.feature_values": pd.DataFrame({"x": [1]})})  # a view: cannot become a table
    assert _state(con) == before
    assert replace_tables(con, {"marts.features": pd.DataFrame({"area": [9], "dwellings": [1.0]})}) == {"marts.features": 1}
    assert con.execute("SELECT * FROM marts.features").fetchall() == [(9, 1.0)]


def test_status_names_relations_left_set_aside_by_a_killed_build(tmp_path):
    from wijk_assets.runner.status import interrupted_build

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        _previous_build(con)
    assert interrupted_build(db) is None
    with duckdb.connect(str(db)) as con:
        build_swap.set_aside(con, [FEATURES, CELLS])  # ... and the process is killed here
    block = interrupted_build(db)
    assert block.startswith("INTERRUPTED build - 2 relation(s) set aside") and "marts.features, staging.cells" in block
    with duckdb.connect(str(db)) as con:
        build_swap.restore_interrupted(con)
    assert interrupted_build(db) is None
