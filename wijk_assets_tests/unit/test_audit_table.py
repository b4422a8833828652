"""The audit table ``audit.audit_trail`` (synthetic assets in an ephemeral Dagster instance, a tmp DuckDB).

It is extended, not rewritten, on each update; at every point it must hold what writing it from the
whole history gives, with typed columns, and a check that crashed must show as such.
"""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest

from wijk_assets.defs.reports.audit import AUDIT_COLUMNS, audit_trail_rows
from wijk_assets.defs.reports.audit_table import AUDIT_TABLE, update_audit_table

pytestmark = pytest.mark.filterwarnings("ignore:Parameter `data_version`")

CANONICAL = "ORDER BY asset_key, storage_id"


@dg.asset(code_version="src-v1")
def synthetic_source():
    """SYNTHETIC source asset."""
    return dg.Output([1, 2, 3], metadata={"dagster/row_count": 3, "source_sha256": "c" * 64})


@dg.asset(code_version="mart-v1")
def synthetic_mart(synthetic_source):
    return [x * 2 for x in synthetic_source]


@dg.asset_check(asset=synthetic_mart)
def synthetic_mart_positive(synthetic_mart):
    return dg.AssetCheckResult(passed=all(x > 0 for x in synthetic_mart))


ASSETS = [synthetic_source, synthetic_mart, synthetic_mart_positive]


def _table(con) -> pd.DataFrame:
    return con.execute(f"SELECT * FROM {AUDIT_TABLE} {CANONICAL}").df()


def _whole_history(instance) -> pd.DataFrame:
    """What writing the table from the whole history gives, in the table's order and types."""
    con = duckdb.connect()
    update_audit_table(instance, con)
    return _table(con)


def test_updates_append_only_what_is_new_and_equal_a_trail_written_at_once(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance, duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        assert dg.materialize(ASSETS, instance=instance).success
        first = update_audit_table(instance, con)
        assert (first.rows, first.written, first.mode) == (2, 2, "rebuilt: no trail yet")
        assert dg.materialize(ASSETS, instance=instance).success
        assert dg.materialize([synthetic_source], instance=instance).success
        second = update_audit_table(instance, con)
        assert (second.rows, second.written, second.mode) == (5, 3, "appended")
        assert update_audit_table(instance, con).written == 0  # nothing new: nothing written
        table = _table(con)
        pd.testing.assert_frame_equal(table, _whole_history(instance))
        assert list(table.columns) == AUDIT_COLUMNS
        types = dict(con.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                                 f"WHERE table_schema = 'audit' AND table_name = 'audit_trail'").fetchall())
        assert types["checks_passed"] == types["run_ended"] == "BOOLEAN"
        assert types["timestamp"] == "TIMESTAMP WITH TIME ZONE" and types["row_count"] == "BIGINT"
        assert con.execute(f"SELECT count(*) FROM {AUDIT_TABLE} WHERE checks_passed").fetchone()[0] == 2
        assert table["run_ended"].all()
        # the same rows as the reader gives (oldest first per asset)
        rows = audit_trail_rows(instance).sort_values(["asset_key", "storage_id"]).reset_index(drop=True)
        assert list(rows["storage_id"]) == list(table["storage_id"])
        assert list(rows["checks"]) == list(table["checks"])


def test_rows_of_a_run_still_going_are_written_again_once_it_ended(tmp_path):
    """The trail written from inside a run (as the audit asset is): that run's mart has its check still
    to come (the check waits for the trail asset here); the next update writes those rows again, now
    with the check's outcome."""
    db = str(tmp_path / "w.duckdb")

    @dg.asset(deps=[synthetic_mart])
    def synthetic_trail(context):
        with duckdb.connect(db) as con:
            update_audit_table(context.instance, con)

    @dg.asset_check(asset=synthetic_mart, name="synthetic_mart_positive", additional_deps=[synthetic_trail])
    def late_check(synthetic_mart):
        return dg.AssetCheckResult(passed=all(x > 0 for x in synthetic_mart))

    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize([synthetic_source, synthetic_mart, synthetic_trail, late_check], instance=instance).success
        with duckdb.connect(db) as con:
            during = _table(con)
        assert list(during["asset_key"]) == ["synthetic_mart", "synthetic_source"]
        assert not during["run_ended"].any()  # written while its own run was going
        mart = during.set_index("asset_key").loc["synthetic_mart"]
        assert json.loads(mart["checks"])[0]["status"] == "IN_PROGRESS"
        assert pd.isna(mart["checks_passed"]) and mart["n_checks_failed"] == 0  # pending, not failed
        with duckdb.connect(db) as con:
            update = update_audit_table(instance, con)
            after = _table(con)
        assert update.mode == "appended" and update.written == len(after) == 3  # the 2 open rows again, the trail's
        assert after["run_ended"].all()
        mart = after.set_index("asset_key").loc["synthetic_mart"]
        assert json.loads(mart["checks"])[0]["status"] == "SUCCEEDED" and mart["checks_passed"]
        pd.testing.assert_frame_equal(after, _whole_history(instance))


def test_a_trail_from_another_instance_or_an_older_version_is_written_again(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        with dg.DagsterInstance.ephemeral() as one:
            assert dg.materialize(ASSETS, instance=one).success
            update_audit_table(one, con)
        with dg.DagsterInstance.ephemeral() as other:
            # the same materialisations in a fresh instance: the same storage ids, other runs
            assert dg.materialize(ASSETS, instance=other).success
            stored = con.execute(f"SELECT storage_id FROM {AUDIT_TABLE} {CANONICAL}").fetchall()
            assert [r[0] for r in stored] == list(_whole_history(other)["storage_id"])
            update = update_audit_table(other, con)
            assert update.mode.startswith("rebuilt: its latest row (synthetic_") and update.rows == 2
            pd.testing.assert_frame_equal(_table(con), _whole_history(other))
            # a table written by the previous version: checks_passed as text
            con.execute(f"ALTER TABLE {AUDIT_TABLE} ALTER checks_passed TYPE VARCHAR")
            assert update_audit_table(other, con).mode.startswith("rebuilt: the stored trail has other columns")


def test_a_crashed_check_shows_as_failed_without_naming_the_check_keys(tmp_path):
    """Before, the audit asset listed only evaluations: a check that crashed left a row 'no check ran'."""

    @dg.asset_check(asset=synthetic_mart, name="synthetic_mart_positive")
    def crashing(synthetic_mart):
        raise RuntimeError("synthetic crash")

    with dg.DagsterInstance.ephemeral() as instance, duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        result = dg.materialize([synthetic_source, synthetic_mart, crashing], instance=instance, raise_on_error=False)
        assert not result.success
        update_audit_table(instance, con)
        row = con.execute(f"SELECT checks, checks_passed, n_checks_failed FROM {AUDIT_TABLE} "
                          "WHERE asset_key = 'synthetic_mart'").fetchone()
    checks = json.loads(row[0])
    assert [(c["check_name"], c["status"], c["passed"]) for c in checks] == [
        ("synthetic_mart_positive", "EXECUTION_FAILED", None)]
    assert row[1] is False and row[2] == 1
