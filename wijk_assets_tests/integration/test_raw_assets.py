"""Raw assets end to end: Definitions load, every raw partition materialises from the real files into a
temporary DuckDB file with provenance, and a malformed file leaves the previous table untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key
from wijk_assets.runner.materialize import materialize_all
from wijk_assets.definitions import build_definitions
from wijk_assets.settings import Settings


def _settings(data_dir: Path, db: Path) -> Settings:
    return Settings(data_dir=data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")


@pytest.fixture(scope="module")
def raw_db(shared_data_dir, raw_stage) -> Path:
    """Every raw partition of the shared data, loaded through Dagster once per session (conftest)."""
    assert raw_stage["report"].success
    return raw_stage["db"]  # tests open it read-only


def test_definitions_load_with_every_raw_source():
    defs = build_definitions()
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    for source in RAW_SOURCES:
        assert raw_asset_key(source) in keys


def test_every_source_and_year_lands_with_provenance(raw_db):
    con = duckdb.connect(str(raw_db), read_only=True)
    years = dict(
        con.execute(
            "SELECT 'rivm_gezondheid', list(DISTINCT release_year ORDER BY release_year) FROM raw.rivm_gezondheid "
            "UNION ALL SELECT 'leefbaarometer', list(DISTINCT release_year ORDER BY release_year) FROM raw.leefbaarometer "
            "UNION ALL SELECT 'cbs_kwb', list(DISTINCT release_year ORDER BY release_year) FROM raw.cbs_kwb "
            "UNION ALL SELECT 'cbs_nabijheid', list(DISTINCT release_year ORDER BY release_year) FROM raw.cbs_nabijheid "
            "UNION ALL SELECT 'cbs_ses_woa', list(DISTINCT release_year ORDER BY release_year) FROM raw.cbs_ses_woa "
            "UNION ALL SELECT 'gemeente_survey', list(DISTINCT release_year ORDER BY release_year) FROM raw.gemeente_survey"
        ).fetchall()
    )
    assert years == {
        "rivm_gezondheid": [2012, 2016, 2020],
        "leefbaarometer": [2002, 2008, 2012, 2014, 2016, 2018, 2020, 2022],
        "cbs_kwb": [2023, 2024],  # kwb-2023 xlsx (Utrecht), 85984NED JSON (national 2024)
        "cbs_nabijheid": [2021, 2023],
        "cbs_ses_woa": [2019],
        "gemeente_survey": [2023],  # Utrecht inwonersenquete, offline only (wijk_assets_tests/integration/test_survey_source.py)
    }
    # 8 RIVM files, each 17,341 regions; every row carries its file, hash and row number.
    files = con.execute(
        "SELECT source_file, any_value(source_sha256), count(DISTINCT (area_code, subgroup)) "
        "FROM raw.rivm_gezondheid GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert len(files) == 8
    assert {n for _, _, n in files} == {17341}
    assert all(len(sha) == 64 for _, sha, _ in files)
    nulls = con.execute(
        "SELECT count(*) FROM raw.rivm_gezondheid WHERE source_file IS NULL OR source_sha256 IS NULL "
        "OR source_row IS NULL OR retrieved_at IS NULL OR reader_version IS NULL"
    ).fetchone()[0]
    assert nulls == 0


def test_gate_1_passed_on_every_real_partition_without_warnings(raw_stage):
    """The raw stage loaded every partition of the real data through Dagster: gate 1 (the GE suite of
    each source) evaluated each partition -- every RIVM year with its ~1.25M rows included -- passed,
    and raised no warning."""
    instance = raw_stage["instance"]
    evaluations = {}
    for record in instance.get_run_records():
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data
            partition = record.dagster_run.tags.get("dagster/partition")
            evaluations[(evaluation.asset_key.path[-1], evaluation.check_name, partition)] = evaluation
    with duckdb.connect(str(raw_stage["db"]), read_only=True) as con:
        expected = {
            (source, f"ge_gate_{source}", str(year))
            for source in RAW_SOURCES
            for (year,) in con.execute(f"SELECT DISTINCT release_year FROM raw.{source}").fetchall()
        }
    assert len(expected) >= 18 and {k for k in expected if k[0] == "rivm_gezondheid"} == {
        ("rivm_gezondheid", "ge_gate_rivm_gezondheid", y) for y in ("2012", "2016", "2020")}
    assert expected <= set(evaluations), sorted(expected - set(evaluations))
    for key in sorted(expected):
        evaluation = evaluations[key]
        assert evaluation.passed, (key, evaluation.metadata.get("summary"))
        warnings = evaluation.metadata["warnings"]
        assert getattr(warnings, "value", warnings) == [], (key, warnings)
        rows = evaluation.metadata["rows_validated"]
        assert getattr(rows, "value", rows) > 0, key


def test_raw_keeps_codes_and_markers_verbatim(raw_db, shared_data_dir):
    con = duckdb.connect(str(raw_db), read_only=True)
    # Assen's ten Leefbaarometer wijken in every year
    assert con.execute(
        "SELECT count(DISTINCT area_code) FROM raw.leefbaarometer WHERE area_code LIKE 'WK0106%'"
    ).fetchone()[0] == 10
    # StatLine CSV codes stay right-padded; suppression dots stay dots
    padded = con.execute(
        "SELECT count(*) FROM raw.cbs_ses_woa WHERE area_code = 'GM0363    '"
    ).fetchone()[0]
    assert padded > 0
    dots = con.execute(
        "SELECT count(*) FROM raw.rivm_gezondheid WHERE trim(value_raw) = '.'"
    ).fetchone()[0]
    assert dots > 0


def test_malformed_file_fails_and_keeps_previous_table(shared_data_dir, tmp_path):
    """A truncated xlsx must fail with a clear error and leave the earlier load of that year intact."""
    data = tmp_path / "data"
    (data / "rivm_gezondheid_50090NED").mkdir(parents=True)
    good = shared_data_dir / "rivm_gezondheid_50090NED" / "gezondheid_buurt_2020_65plus.xlsx"
    target = data / "rivm_gezondheid_50090NED" / good.name
    shutil.copyfile(good, target)
    db = tmp_path / "wijk.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    settings = _settings(data, db)

    first = materialize_all(settings, instance=instance, sources=["rivm_gezondheid"], downstream=False)
    assert first.success
    con = duckdb.connect(str(db), read_only=True)
    before = con.execute(
        "SELECT count(*), sum(hash(area_code, measure_key, value_raw)) FROM raw.rivm_gezondheid"
    ).fetchone()
    con.close()
    assert before[0] > 0

    blob = good.read_bytes()
    target.write_bytes(blob[: len(blob) // 2])
    defs = build_definitions(settings)
    with pytest.raises(Exception) as excinfo:
        dg.materialize(
            list(defs.assets),
            selection=dg.AssetSelection.assets(raw_asset_key("rivm_gezondheid")),
            partition_key="2020",
            instance=instance,
            resources=defs.resources,
        )
    message = str(excinfo.value)
    assert "gezondheid_buurt_2020_65plus.xlsx" in message

    con = duckdb.connect(str(db), read_only=True)
    after = con.execute(
        "SELECT count(*), sum(hash(area_code, measure_key, value_raw)) FROM raw.rivm_gezondheid"
    ).fetchone()
    assert after == before
