"""The explanation step's inputs version (wijk_assets.defs.explanations.reuse), on SYNTHETIC tables: the
digests of the outcome's training rows and of the feature labels are computed in DuckDB, and must
change exactly when something the explanations are made of changes."""

from __future__ import annotations

import duckdb
import pytest

from wijk_assets.defs.explanations.reuse import catalog_digest, inputs_version, training_rows_digest


@pytest.fixture()
def con():
    c = duckdb.connect()
    c.execute("CREATE SCHEMA marts")
    c.execute("""CREATE TABLE marts.mart_wijk_training AS SELECT * FROM (VALUES
        ('WK000101', 2020, 2020, 3.9, 0.1, 12.5),
        ('WK000102', 2020, 2020, 4.1, NULL, 7.0),
        ('WK000103', 2022, NULL, 4.0, 0.2, 1.0),
        ('WK000104', 2022, 2021, NULL, 0.3, 2.0)) AS t(area_code, outcome_year, feature_year, lbm, fys, x)""")
    c.execute("""CREATE TABLE marts.feature_catalog AS SELECT * FROM (VALUES
        ('x', 'Aantal inwoners', 'aantal', 'cbs_kwb')) AS t(feature, label, unit, source)""")
    yield c
    c.close()


def _version(con, outcome="lbm"):
    return inputs_version("explain-x", "model-1", True, training_rows_digest(con, outcome), catalog_digest(con), "GM0001")


def test_the_version_changes_with_a_value_of_a_row_the_explanations_use(con):
    before = _version(con)
    assert _version(con) == before  # deterministic
    con.execute("UPDATE marts.mart_wijk_training SET x = 12.6 WHERE area_code = 'WK000101'")
    assert _version(con) != before


def test_rows_the_outcome_does_not_use_and_row_order_do_not_change_it(con):
    before = _version(con)
    # no feature year (not a training row) / no lbm value (another outcome's row)
    con.execute("UPDATE marts.mart_wijk_training SET x = 99 WHERE area_code IN ('WK000103', 'WK000104')")
    assert _version(con) == before
    con.execute("CREATE TABLE marts.t2 AS SELECT * FROM marts.mart_wijk_training ORDER BY area_code DESC")
    con.execute("DROP TABLE marts.mart_wijk_training")
    con.execute("ALTER TABLE marts.t2 RENAME TO mart_wijk_training")
    assert _version(con) == before


def test_a_new_column_a_new_label_or_another_model_changes_it(con):
    before = _version(con)
    con.execute("UPDATE marts.feature_catalog SET label = 'Aantal inwoners (herzien)'")
    relabelled = _version(con)
    assert relabelled != before
    con.execute("ALTER TABLE marts.mart_wijk_training ADD COLUMN y DOUBLE")
    assert _version(con) != relabelled
    assert inputs_version("explain-x", "model-2", True, training_rows_digest(con, "lbm"), catalog_digest(con),
                          "GM0001") != _version(con)
