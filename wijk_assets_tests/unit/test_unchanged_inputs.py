"""The training step's inputs fingerprint (synthetic DuckDB tables with the real tables' shape where it
matters; labelled synthetic): what the two training models read changes it, nothing else does."""

from __future__ import annotations

import re

import duckdb
import pytest

from wijk_assets.defs.dbt.unchanged_inputs import CATALOG_COLUMNS_READ, training_inputs_fingerprint
from wijk_assets.settings import DBT_PROJECT_DIR


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA intermediate; CREATE SCHEMA marts")
    con.execute("CREATE TABLE intermediate.int_lbm_feature_years AS SELECT * FROM (VALUES "
                "('WK000101', 2022, 'own', 'rivm_gezondheid', 2020), ('WK000101', 2018, 'own', 'rivm_gezondheid', 2016)) "
                "t(area_code, outcome_year, block, source, source_year)")
    con.execute("CREATE TABLE marts.feature_catalog AS SELECT * FROM (VALUES "
                "('smokers', 'smoking', 'rivm_gezondheid', false, 3), ('dwellings', 'housing', 'cbs_kwb', false, 2)) "
                "t(feature, concept, source, sensitive, n_years)")
    con.execute("CREATE TABLE marts.fct_liveability_outcomes AS SELECT * FROM (VALUES ('WK000101', 2022, 4.1), "
                "('WK000101', 2018, 4.0)) t(wijk_code, year, lbm)")
    con.execute("CREATE TABLE marts.fct_area_features AS SELECT * FROM (VALUES ('WK000101', 2016, 20.0, NULL), "
                "('WK000101', 2020, 18.5, NULL), ('WK000101', 2024, NULL, 310.0)) t(area_code, year, smokers, dwellings)")
    con.execute("CREATE TABLE marts.fct_area_feature_values AS SELECT * FROM (VALUES "
                "('WK000101', 'wijk', 2016, 'smokers', 'rivm_gezondheid', 20.0), "
                "('WK000101', 'wijk', 2020, 'smokers', 'rivm_gezondheid', 18.5), "
                "('WK000101', 'wijk', 2024, 'dwellings', 'cbs_kwb', 310.0)) "
                "t(area_code, area_level, year, feature, source, value)")
    con.execute("CREATE TABLE intermediate.int_area_names AS SELECT * FROM (VALUES "
                "('leefbaarometer', 2022, 'WK000101', 'Centrum'), ('rivm_gezondheid', 2020, 'WK000101', 'Centrum'), "
                "('cbs_kwb', 2024, 'WK000101', 'Centrum')) t(source, year, area_code, area_name)")
    yield con
    con.close()


def _changed(con, sql: str) -> bool:
    before = training_inputs_fingerprint(con, ())
    con.execute(sql)
    return training_inputs_fingerprint(con, ()) != before


def test_same_tables_in_another_row_order_give_the_same_fingerprint(con):
    first = training_inputs_fingerprint(con, ())
    for table in ("fct_area_features", "fct_area_feature_values"):
        con.execute(f"CREATE TABLE marts.f2 AS SELECT * FROM marts.{table} ORDER BY year DESC")
        con.execute(f"DROP TABLE marts.{table}; ALTER TABLE marts.f2 RENAME TO {table}")
    assert training_inputs_fingerprint(con, ()) == first


def test_what_the_training_models_do_not_read_leaves_it_alone(con):
    # a year no outcome uses (a KWB release after the last outcome year), a catalog statistic, and the
    # code list of a source-year no outcome uses
    assert not _changed(con, "INSERT INTO marts.fct_area_features VALUES ('WK000101', 2025, NULL, 312.0)")
    assert not _changed(con, "INSERT INTO marts.fct_area_feature_values VALUES "
                             "('WK000101', 'wijk', 2025, 'dwellings', 'cbs_kwb', 312.0)")
    assert not _changed(con, "UPDATE marts.fct_area_feature_values SET value = 311 WHERE year = 2024")
    assert not _changed(con, "UPDATE marts.fct_area_features SET dwellings = 311 WHERE year = 2024")
    assert not _changed(con, "UPDATE marts.feature_catalog SET n_years = n_years + 1")
    assert not _changed(con, "INSERT INTO intermediate.int_area_names VALUES ('cbs_kwb', 2025, 'WK000101', 'Centrum')")


@pytest.mark.parametrize("sql", [
    "UPDATE marts.fct_area_feature_values SET value = 18.6 WHERE year = 2020",
    "DELETE FROM marts.fct_area_feature_values WHERE year = 2016",
    "UPDATE marts.feature_catalog SET sensitive = true WHERE feature = 'smokers'",
    "UPDATE marts.fct_liveability_outcomes SET lbm = 4.2 WHERE year = 2022",
    "UPDATE intermediate.int_lbm_feature_years SET source_year = 2016 WHERE outcome_year = 2022",
    "UPDATE intermediate.int_area_names SET area_name = 'Centrum-Oost' WHERE source = 'leefbaarometer'",
    "ALTER TABLE marts.fct_area_features ADD COLUMN obesity DOUBLE",
])
def test_what_the_training_models_read_changes_it(con, sql):
    assert _changed(con, sql)


def test_the_sensitive_opt_in_changes_it(con):
    assert training_inputs_fingerprint(con, ("health",)) != training_inputs_fingerprint(con, ())


def test_the_catalog_columns_versioned_are_the_ones_the_sql_reads():
    cells = (DBT_PROJECT_DIR / "models/intermediate/int_wijk_training_cells.sql").read_text(encoding="utf-8")
    mart = (DBT_PROJECT_DIR / "models/marts/mart_wijk_training.sql").read_text(encoding="utf-8")
    assert "ref('feature_catalog')" not in mart
    assert cells.count("ref('feature_catalog')") == 1
    block = re.search(r"with catalog as \((.*?)\n\),", cells, re.S).group(1)
    words = set(re.findall(r"\b[a-z_]+\b", re.sub(r"\{\{.*?\}\}", " ", block))) - {"select", "from", "where", "not", "or", "in", "and"}
    assert words == set(CATALOG_COLUMNS_READ)
    # the catalog is read only through that CTE
    assert len(re.findall(r"\bfrom catalog\b", cells)) == 1
