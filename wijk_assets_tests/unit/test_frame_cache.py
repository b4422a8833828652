"""Unit tests (SYNTHETIC data, a made-up mart of four rows) for the training frame kept between runs:
read again exactly when the mart or the catalog changed, never within a run, dropped before a run that
does not read it."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest

from wijk_assets.defs.models import frame_cache
from wijk_assets.keys import CHANGES_KEY, MODEL_KEY, PUBLISH_KEY, SHAP_KEY



@pytest.fixture
def con():
    frame_cache.forget_training_frames()
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.mart_wijk_training AS SELECT * FROM (VALUES "
                "('WK1', 2020, 2019, 1.5, 7.0), ('WK1', 2022, 2021, 2.5, 7.1), "
                "('WK2', 2022, 2021, -0.5, 6.9), ('WK3', 2022, NULL, 9.0, NULL)) "
                "AS t(area_code, outcome_year, feature_year, x, lbm)")
    con.execute("ALTER TABLE marts.mart_wijk_training ALTER x TYPE DOUBLE")
    con.execute("CREATE TABLE marts.feature_catalog AS SELECT * FROM (VALUES "
                "('x', 'een kenmerk', '%', 'cbs_kwb', '85984NED', false)) "
                "AS t(feature, label, unit, source, cbs_table_ids, sensitive)")
    yield con
    con.close()
    frame_cache.forget_training_frames()


def _reader(con, reads: list):
    def read():
        reads.append(1)
        frame = con.execute("SELECT * FROM marts.mart_wijk_training WHERE feature_year IS NOT NULL "
                            "ORDER BY area_code, outcome_year").df()
        return frame, con.execute("SELECT feature, label FROM marts.feature_catalog").df()
    return read


def test_kept_between_runs_while_nothing_changed_and_read_again_when_something_did(con):
    reads: list = []
    first, _ = frame_cache.cached_frame("db", "run-1", con, _reader(con, reads))
    again, _ = frame_cache.cached_frame("db", "run-2", con, _reader(con, reads))
    assert len(reads) == 1
    pd.testing.assert_frame_equal(first, again)
    again.loc[0, "x"] = 99.0  # callers get copies
    assert frame_cache.cached_frame("db", "run-3", con, _reader(con, reads))[0].loc[0, "x"] == 1.5

    # a row the frame does not hold (no feature year) does not count; one it holds does, by value
    con.execute("UPDATE marts.mart_wijk_training SET x = 9.5 WHERE area_code = 'WK3'")
    frame_cache.cached_frame("db", "run-4", con, _reader(con, reads))
    assert len(reads) == 1
    con.execute("UPDATE marts.mart_wijk_training SET x = 1.5000000000000002 WHERE area_code = 'WK1' AND outcome_year = 2020")
    changed, _ = frame_cache.cached_frame("db", "run-5", con, _reader(con, reads))
    assert len(reads) == 2 and changed.loc[0, "x"] == 1.5000000000000002

    # the catalog counts (labels are printed in the explanations), and so does another database file
    con.execute("UPDATE marts.feature_catalog SET label = 'ander kenmerk'")
    frame_cache.cached_frame("db", "run-6", con, _reader(con, reads))
    frame_cache.cached_frame("other.duckdb", "run-6", con, _reader(con, reads))
    assert len(reads) == 4
    # so does a new column
    con.execute("ALTER TABLE marts.mart_wijk_training ADD COLUMN y DOUBLE")
    frame_cache.cached_frame("other.duckdb", "run-7", con, _reader(con, reads))
    assert len(reads) == 5


def test_within_a_run_the_digest_is_taken_once(con):
    reads: list = []
    frame_cache.cached_frame("db", "run-1", con, _reader(con, reads))
    con.execute("UPDATE marts.mart_wijk_training SET x = 0 WHERE area_code = 'WK2'")
    frame_cache.cached_frame("db", "run-1", con, _reader(con, reads))  # same run: not looked at again
    assert len(reads) == 1
    frame_cache.forget_run_digests()  # the run is over
    frame_cache.cached_frame("db", "run-1", con, _reader(con, reads))
    assert len(reads) == 2


def test_only_runs_that_read_the_mart_keep_it(con):
    assert frame_cache.reads_training_frame([MODEL_KEY])
    assert frame_cache.reads_training_frame([dg.AssetKey(["raw", "cbs_kwb"]), SHAP_KEY])
    assert not frame_cache.reads_training_frame([PUBLISH_KEY, dg.AssetKey(["raw", "cbs_kwb"])])
    assert frame_cache.reads_training_frame(["models/model_gate_verdict"])
    assert frame_cache.reads_training_frame([PUBLISH_KEY, CHANGES_KEY])  # the reports' run: kept from the outcomes' runs
    reads: list = []
    frame_cache.cached_frame("db", "run-1", con, _reader(con, reads))
    frame_cache.forget_training_frames()
    frame_cache.cached_frame("db", "run-2", con, _reader(con, reads))
    assert len(reads) == 2


def test_a_reader_that_only_selects_gets_the_kept_frame_itself_and_others_still_get_copies(con):
    reads: list = []
    kept, _ = frame_cache.cached_frame("db", "run-1", con, _reader(con, reads), copy_frame=False)
    same, _ = frame_cache.cached_frame("db", "run-2", con, _reader(con, reads), copy_frame=False)
    copied, _ = frame_cache.cached_frame("db", "run-3", con, _reader(con, reads))
    assert len(reads) == 1 and same is kept and copied is not kept
    copied.loc[0, "x"] = 99.0
    assert kept.loc[0, "x"] == 1.5
