"""Issue 11, observation 1: gate 1 runs BEFORE the swap.

A raw partition is staged, validated (GE suite + plausibility rules) and only then swapped in. A refused
partition leaves the previous live rows, data version and materialisation current, keeps its rows in
``quarantine.<source>`` tagged with run id/file/reason, and the next refresh still sees the file as
changed (the old code recorded the bad file as loaded, so refresh said "no new or changed releases").

Real data: the Leefbaarometer file (26k lines); damaged copies are generated here in a tmp dir.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets.defs.raw.assets import raw_asset_key, release_year_partitions
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.definitions import build_definitions
from wijk_assets.defs.automation.schedules import weekly_refresh_plan
from wijk_assets.settings import Settings

LBM = Path("leefbaarometer") / "lbm3_scores_wijken_2002-2022.csv"
YEAR = "2022"


def _settings(data: Path, db: Path) -> Settings:
    return Settings(data_dir=data, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")


def _rewrite_csv(path: Path, change) -> None:
    """Apply ``change(header, rows) -> (header, rows)`` to the CSV at ``path`` (real file, damaged copy)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = change(rows[0], rows[1:])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    path.write_text(out.getvalue(), encoding="utf-8")


def _out_of_range(header, rows):
    col, year = header.index("lbm"), header.index("jaar")
    first = next(i for i, r in enumerate(rows) if r[year] == YEAR)
    rows[first][col] = "9.5"  # scores are 2.5-6
    return header, rows


def _codes_without_prefix(header, rows):
    col = header.index("wk_code")
    return header, [[*r[:col], r[col][2:], *r[col + 1:]] for r in rows]


def _half_file(header, rows):
    return header, rows[: len(rows) // 2]


def _missing_indicator(header, rows):
    col = header.index("soc")
    return [h for i, h in enumerate(header) if i != col], [[v for i, v in enumerate(r) if i != col] for r in rows]


DAMAGES = {
    "value_out_of_range": (_out_of_range, "value_num"),
    "codes_without_prefix": (_codes_without_prefix, "area_code_clean"),
    "half_a_file": (_half_file, "area_code_clean"),
    "missing_indicator_column": (_missing_indicator, "measure_stem"),
}


@pytest.fixture(scope="module")
def loaded(shared_data_dir, tmp_path_factory):
    """The real Leefbaarometer, release year 2022 loaded once (a good live partition to protect)."""
    root = tmp_path_factory.mktemp("swap")
    data = root / "data"
    (data / LBM.parent).mkdir(parents=True)
    shutil.copyfile(shared_data_dir / LBM, data / LBM)
    db = root / "wijk.duckdb"
    settings = _settings(data, db)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(release_year_partitions("leefbaarometer").name, [YEAR])
    defs = build_definitions(settings)
    result = materialize_keys(defs, instance, [raw_asset_key("leefbaarometer")], YEAR, trigger="test")
    assert result.success
    return {"data": data, "db": db, "settings": settings, "instance": instance, "defs": defs}


def _live(db: Path) -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(*), sum(hash(area_code, measure_key, value_raw, source_sha256)) "
            "FROM raw.leefbaarometer WHERE release_year = 2022"
        ).fetchone()


def _latest(instance) -> dg.EventLogRecord:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_asset_key("leefbaarometer"), asset_partitions=[YEAR]), limit=1
    ).records[0]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_refused_partition_keeps_live_rows_version_and_materialisation(loaded, shared_data_dir, damage):
    change, column = DAMAGES[damage]
    target = loaded["data"] / LBM
    shutil.copyfile(shared_data_dir / LBM, target)
    before_rows, before_record = _live(loaded["db"]), _latest(loaded["instance"])
    _rewrite_csv(target, change)

    result = materialize_keys(
        loaded["defs"], loaded["instance"], [raw_asset_key("leefbaarometer")], YEAR, trigger="test"
    )
    assert not result.success

    # the live partition, its data version and its last materialisation are the previous ones
    assert _live(loaded["db"]) == before_rows
    after_record = _latest(loaded["instance"])
    assert after_record.storage_id == before_record.storage_id
    assert after_record.asset_materialization.tags == before_record.asset_materialization.tags
    assert not result.get_asset_materialization_events()

    # the error names the file, the column and the expectation
    failure = result.get_step_failure_events()[0].event_specific_data
    message = failure.user_failure_data.description
    assert "lbm3_scores_wijken_2002-2022.csv" in message
    assert f"({column})" in message
    failed = failure.user_failure_data.metadata["failed_expectations"].value
    assert any(f"({column})" in f for f in failed), failed

    # the refused rows are in quarantine, tagged with run id, file and reason
    with duckdb.connect(str(loaded["db"]), read_only=True) as con:
        quarantined = con.execute(
            "SELECT count(*), any_value(source_file), any_value(reason) FROM quarantine.leefbaarometer "
            "WHERE run_id = ?",
            [result.run_id],
        ).fetchone()
        rejection = con.execute(
            "SELECT stage, files, failed_expectations, rows FROM quarantine.rejections WHERE run_id = ?",
            [result.run_id],
        ).fetchone()
    assert quarantined[0] > 0 and quarantined[1] == LBM.as_posix() and column in quarantined[2]
    assert rejection[0] == "gate_1" and rejection[3] == quarantined[0]
    assert json.loads(rejection[1])[0]["source"] == LBM.as_posix()
    assert any(f"({column})" in f for f in json.loads(rejection[2]))

    # the damaged file is still "changed" for the next refresh (it was never recorded as loaded)
    plan, _ = weekly_refresh_plan(loaded["defs"].resources["cbs"], loaded["instance"], ["leefbaarometer"])
    assert ("leefbaarometer", YEAR, "changed") in {(r.source, r.year, r.reason) for r in plan.runs}


def test_a_good_file_still_goes_live_and_leaves_no_staging(loaded, shared_data_dir):
    target = loaded["data"] / LBM
    shutil.copyfile(shared_data_dir / LBM, target)
    before = _latest(loaded["instance"])
    result = materialize_keys(
        loaded["defs"], loaded["instance"], [raw_asset_key("leefbaarometer")], YEAR, trigger="test"
    )
    assert result.success
    assert _latest(loaded["instance"]).storage_id != before.storage_id
    metadata = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert "passed" in metadata["gate_1_before_swap"].value
    # the blocking asset check still reports gate 1 on the rows now live; in the loading run it reports
    # the before-swap validation of exactly those rows instead of running the suite a second time
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["validated"].value.startswith("before the swap")
    assert "file_delivers_required_measures(measure_stem)" in evaluation.metadata["passed_expectations"].value
    with duckdb.connect(str(loaded["db"]), read_only=True) as con:
        staged = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw_staging'"
        ).fetchone()[0]
    assert staged == 0
