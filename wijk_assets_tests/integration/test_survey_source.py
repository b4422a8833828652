"""The municipality's own resident survey as a raw source (catalog ``gemeente_survey``, reader
``survey_csv``): the real Utrecht inwonersenquête 2023 files land as partition 2023 of ``raw/gemeente_survey``
through the ordinary raw-asset machinery and pass their Great Expectations gate; dbt stages them into
``staging.stg_gemeente_survey`` and ``marts.fct_survey_indicators``.

Files written inside these tests are SYNTHETIC (made-up area labels, figures and personal columns, in a
folder ``synthetisch_inwonersenquete``), to prove the privacy guards: a respondent-level file is refused and
nothing is written; cells of areas under the minimum number of respondents never reach DuckDB and are
counted in the materialisation metadata.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest

from wijk_assets.defs.raw.assets import (
    RAW_SOURCES,
    raw_asset_key,
    raw_assets,
    raw_data_version,
    release_year_partitions,
)
from wijk_assets.lib.sources.catalog import find_source_files, load_catalog
from wijk_assets.lib.quality import ge_runner
from wijk_assets.defs.raw.checks import raw_gate_checks
from wijk_assets.runner.materialize import QUIET_RUN_CONFIG
from wijk_assets.defs.resources import CbsSourceResource, WarehouseResource
from wijk_assets.lib.responsible.privacy import REASON_PUBLISHER, REASON_RESPONDENTS
from wijk_assets.settings import DBT_PROJECT_DIR, REPO_ROOT
from wijk_assets.lib.sources import READERS, read_source_file
from wijk_assets.lib.sources.base import RAW_DATA_COLUMNS, SourceFormatError, sha256_file
from wijk_assets.lib.sources.survey_csv import SUBGROUP_TOO_FEW_RESPONDENTS, read_survey_table
from wijk_assets_tests.integration.test_dbt_models import _dbt_executable
from wijk_assets_tests.integration.test_ge_gates import _raw_frame
from wijk_assets_tests.unit.test_responsible import CULTUUR, JONGEREN, SURVEY_DIR

SOURCE = "gemeente_survey"
CULTUUR_INDICATOR = "% inwoners dat tevreden is over culturele voorzieningen in de buurt"
JONGEREN_INDICATOR = "uic_tevredenheid_jongerenvoorzieningen_subwijk"  # bare headers: the file name

# SYNTHETIC survey table with a respondents column ("n"): two areas under the minimum of 10 respondents
# (noord 8, west 3), one suppressed by the "publisher" ('.'), two ordinary rows. The figures of noord and
# west (61 26 13, 71 18 11) occur nowhere else in the file, so their absence from DuckDB can be checked.
SYNTHETIC_DIR = "synthetisch_inwonersenquete"
SYNTHETIC_NAME = "synthetische_tevredenheid_groen_2024.csv"
SYNTHETIC_RESPONDENTS = (
    "regio;n;tevreden;neutraal;ontevreden\n"
    "Subwijk Synthetisch-noord;8;61;26;13\n"
    "Subwijk Synthetisch-zuid;120;55;30;15\n"
    "Subwijk Synthetisch-west;3;71;18;11\n"
    "Subwijk Synthetisch-oost;45;.;.;.\n"
    "Synthetistad;176;57;29;14\n"
)
HIDDEN_FIGURES = ("61", "26", "13", "71", "18", "11")


def _synthetic_data_dir(root: Path, text: str, name: str = SYNTHETIC_NAME) -> Path:
    folder = root / SYNTHETIC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return root


def _materialize(data_dir: Path, db: Path, year: str, instance: dg.DagsterInstance, **kwargs):
    """``raw/gemeente_survey`` [year] plus its GE gate, built by the project's own raw machinery."""
    asset = next(a for a in raw_assets if raw_asset_key(SOURCE) in a.keys)
    partitions = release_year_partitions(SOURCE).name
    if not instance.has_dynamic_partition(partitions, year):
        instance.add_dynamic_partitions(partitions, [year])
    return dg.materialize(
        [asset, *raw_gate_checks([SOURCE])],
        partition_key=year,
        instance=instance,
        resources={
            "duckdb": WarehouseResource(path=str(db)),
            "cbs": CbsSourceResource(data_dir=str(data_dir)),
        },
        run_config=QUIET_RUN_CONFIG,
        **kwargs,
    )


def _metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


# ---------------------------------------------------------------------------------------------------
# Catalog and reader on the real Utrecht files
# ---------------------------------------------------------------------------------------------------


def test_catalog_wires_the_survey_as_an_offline_raw_source(shared_data_dir):
    spec = load_catalog()[SOURCE]
    assert SOURCE in RAW_SOURCES
    assert spec.live_title_pattern is None and spec.live_table_ids == ()  # no CBS table: offline only
    files = find_source_files(SOURCE, shared_data_dir)
    assert sorted(Path(f.relative_path).name for f in files) == sorted([CULTUUR, JONGEREN])
    assert {f.relative_path.split("/")[0] for f in files} == {SURVEY_DIR}
    assert {f.filename_year for f in files} == {2023}
    assert {f.spec.format for f in files} == {"survey_csv"} and "survey_csv" in READERS
    assert CbsSourceResource(data_dir=str(shared_data_dir)).available_years(SOURCE) == [2023]
    # live mode asks the CBS catalog nothing for it and still reads the data folder
    live = CbsSourceResource(data_dir=str(shared_data_dir), base_url="http://127.0.0.1:9/unused")
    assert live.live_tables(SOURCE) == [] and live.available_years(SOURCE) == [2023]
    assert any(c.check_keys and next(iter(c.check_keys)).name == f"ge_gate_{SOURCE}" for c in raw_gate_checks())


def test_reader_on_the_real_files_rows_follow_from_the_files(shared_data_dir, monkeypatch):
    monkeypatch.setenv("WIJK_MIN_RESPONDENTS", "10")
    extracts = {Path(f.relative_path).name: read_source_file(f) for f in find_source_files(SOURCE, shared_data_dir)}

    cultuur = extracts[CULTUUR]
    frame = cultuur.frame
    assert list(frame.columns) == list(RAW_DATA_COLUMNS)
    assert cultuur.source == f"{SURVEY_DIR}/{CULTUUR}"
    assert cultuur.sha256 == sha256_file(shared_data_dir / SURVEY_DIR / CULTUUR)
    assert cultuur.cbs_table_id is None
    # 35 data rows (34 subwijken + Utrecht) x 3 categories, on lines 2..36
    assert len(frame) == 35 * 3
    assert frame["area_name"].nunique() == 35
    assert sorted(frame["source_row"].unique()) == list(range(2, 37))
    assert frame["source_row"].dtype == "int64" and frame["release_year"].dtype == "int64"
    assert set(frame["release_year"]) == {2023}
    assert frame["area_code"].isna().all()  # subwijken are named, not coded
    assert (frame.loc[frame["area_name"] != "Utrecht", "region_type"] == "Subwijk").all()
    assert frame.loc[frame["area_name"] == "Utrecht", "region_type"].isna().all()
    assert set(frame["measure_key"]) == {
        f"{CULTUUR_INDICATOR}|{c}" for c in ("(zeer) tevreden", "neutraal", "(zeer) ontevreden")
    }
    assert set(frame["subgroup"]) == {""}
    # verbatim cell text, the publisher's dots included (2 subwijken x 3 categories)
    lombok = frame[frame["area_name"] == "Subwijk Oog in Al, Welgelegen"]
    assert list(lombok["value_raw"]) == ["53", "31", "17"]
    dots = frame[frame["value_raw"] == "."]
    assert set(dots["area_name"]) == {"Subwijk Leidsche Rijn-zuid", "Subwijk Rijnenburg"} and len(dots) == 6
    assert cultuur.metadata["suppression"]["by_reason"] == {
        REASON_PUBLISHER: 6, REASON_RESPONDENTS: 0, "empty_cell": 0
    }
    assert cultuur.metadata["respondents_column"] is None and "version_params" not in cultuur.metadata

    jongeren = extracts[JONGEREN].frame
    assert len(jongeren) == 3 * 3
    assert sorted(jongeren["source_row"].unique()) == [2, 3, 4]
    assert set(jongeren["measure_key"]) == {f"{JONGEREN_INDICATOR}|{c}" for c in ("tevreden", "neutraal", "ontevreden")}
    utrecht = jongeren[(jongeren["area_name"] == "Utrecht") & jongeren["measure_key"].str.endswith("|tevreden")]
    assert list(utrecht["value_raw"]) == ["31"]


def test_suite_matches_the_style_of_the_other_raw_suites():
    """The style every raw suite shares is checked in test_ge_gates (RAW_SUITES); here what is the survey's."""
    spec = ge_runner.load_suite(f"raw_{SOURCE}")
    assert spec["source"] == SOURCE and spec["table"] == f"raw.{SOURCE}" and spec["prepare"] == "raw_long"
    assert "expect_table_row_count_to_be_between" in ge_runner.expectation_types(spec)


def test_gate_blocks_a_figure_that_should_have_been_suppressed(shared_data_dir):
    """SYNTHETIC damage to the real rows: a leaked too-few-respondents figure, a '%' cell, 153 %."""
    frame = _raw_frame(SOURCE, shared_data_dir)
    assert ge_runner.validate_frame(frame, f"raw_{SOURCE}").success
    bad = frame.copy()
    bad.loc[0, "subgroup"] = SUBGROUP_TOO_FEW_RESPONDENTS  # value_raw '53' still there
    bad.loc[1, "value_raw"] = "31%"
    bad.loc[2, "value_raw"] = "153"
    result = ge_runner.validate_frame(bad, f"raw_{SOURCE}")
    assert not result.success
    assert set(result.failed_expectations()) == {
        "expect_column_values_to_be_null(value_raw)",
        "expect_column_values_to_be_in_set(value_status)",
        "expect_column_values_to_be_between(value_num)",
    }


# ---------------------------------------------------------------------------------------------------
# Reader edge cases (SYNTHETIC files)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, values",
    [
        ("respondent_id", ["R0001", "R0002", "R0003"]),
        ("postcode", ["3511AB", "3512 CD", "3513EF"]),
        ("geboortedatum", ["1970-01-01", "1981-02-03", "1999-12-31"]),
    ],
)
def test_reader_rejects_personal_columns_naming_file_and_column(tmp_path, column, values):
    lines = [f"regio;{column};tevreden"] + [
        f"Subwijk Synthetisch-{i};{v};{50 + i}" for i, v in enumerate(values)
    ]
    path = tmp_path / "synthetic_survey_2024.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SourceFormatError) as err:
        read_survey_table(path, f"{SYNTHETIC_DIR}/{path.name}", min_respondents=10, filename_year=2024)
    message = str(err.value)
    assert message.startswith(f"file {SYNTHETIC_DIR}/{path.name}")  # relative, like every reader
    assert err.value.column == column and repr(column) in message
    assert "expected an aggregated table" in message
    assert values[0] not in message  # the personal values are never echoed


def test_header_year_must_match_the_file_name_and_header_years_mode(tmp_path):
    path = tmp_path / "synthetic_survey_2024.csv"
    path.write_text(
        "gebied;Tevredenheid groen|tevreden|2023;Tevredenheid groen|tevreden|2024\n"
        "Wijk Synthetisch-A;50;52\nWijk Synthetisch-B;60;61\n",
        encoding="utf-8",
    )
    with pytest.raises(SourceFormatError, match="year 2024 \\(the year in the file name\\)") as err:
        read_survey_table(path, path.name, min_respondents=10, filename_year=2024)
    assert err.value.column == "Tevredenheid groen|tevreden|2023"
    # year: {from: header}: no file-name year in the catalog, every header carries its own year
    long, meta = read_survey_table(path, path.name, min_respondents=10, filename_year=None)
    assert meta["years"] == [2023, 2024]
    assert long.groupby("release_year")["value_raw"].apply(list).to_dict() == {2023: ["50", "60"], 2024: ["52", "61"]}
    assert set(long["measure_key"]) == {"Tevredenheid groen|tevreden"}
    assert set(long["region_type"]) == {"Wijk"}


def test_reader_threshold_and_codes_in_labels(tmp_path):
    data = _synthetic_data_dir(tmp_path, SYNTHETIC_RESPONDENTS.replace("Synthetistad", "GM9999 Synthetistad"))
    path = data / SYNTHETIC_DIR / SYNTHETIC_NAME
    strict, meta10 = read_survey_table(path, SYNTHETIC_NAME, min_respondents=10, filename_year=2024)
    loose, meta5 = read_survey_table(path, SYNTHETIC_NAME, min_respondents=5, filename_year=2024)
    noord = lambda f: f[(f.area_name == "Subwijk Synthetisch-noord") & f.measure_key.str.contains(r"\|")]  # noqa: E731
    assert noord(strict)["value_raw"].isna().all() and set(noord(strict)["subgroup"]) == {SUBGROUP_TOO_FEW_RESPONDENTS}
    assert list(noord(loose)["value_raw"]) == ["61", "26", "13"]  # 8 respondents >= 5
    assert meta10["suppression"]["by_reason"][REASON_RESPONDENTS] == 6
    assert meta5["suppression"]["by_reason"][REASON_RESPONDENTS] == 3  # west (3) only
    # the threshold is part of the data version, so a new setting re-versions the raw partition
    params = lambda m: [str(m["version_params"])]  # noqa: E731
    assert raw_data_version(["a" * 64], params(meta10)) != raw_data_version(["a" * 64], params(meta5))
    # the respondent count is kept as its own measure (the header verbatim), never blanked
    counts = strict[strict["measure_key"] == "n"].set_index("area_name")["value_raw"].to_dict()
    assert counts["Subwijk Synthetisch-noord"] == "8" and counts["Subwijk Synthetisch-west"] == "3"
    # a label that starts with a CBS code keeps the code
    total = strict[strict["area_name"] == "GM9999 Synthetistad"]
    assert set(total["area_code"]) == {"GM9999"}
    assert strict.loc[strict["area_name"] != "GM9999 Synthetistad", "area_code"].isna().all()


# ---------------------------------------------------------------------------------------------------
# The raw asset: real 2023 partition and a SYNTHETIC 2024 partition in one temporary DuckDB
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def survey_db(shared_data_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("survey")
    db = work / "wijk.duckdb"
    synthetic = _synthetic_data_dir(work / "synthetic_data", SYNTHETIC_RESPONDENTS)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WIJK_MIN_RESPONDENTS", "10")
        real = _materialize(shared_data_dir, db, "2023", instance)
        synth = _materialize(synthetic, db, "2024", instance)
    return SimpleNamespace(db=db, work=work, real=real, synthetic=synth, instance=instance)


def test_real_partition_materialises_with_provenance_and_the_gate_passes(survey_db, shared_data_dir):
    result = survey_db.real
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == f"ge_gate_{SOURCE}" and evaluation.passed
    meta = _metadata(result)
    assert meta["dagster/row_count"] == 35 * 3 + 3 * 3 == 114
    assert meta["release_year"] == 2023 and meta["mode"] == "offline" and meta["cbs_table_ids"] == "n/a"
    assert meta["areas_per_level"] == {"no_cbs_code": 35}  # the 3 jongeren areas are among the 35
    assert meta["n_suppressed_suppressed_by_publisher"] == 6
    assert meta["n_suppressed_too_few_respondents"] == 0
    assert meta["suppressed_cells"]["n_cells"] == 114 and meta["suppressed_cells"]["min_respondents"] == 10

    con = duckdb.connect(str(survey_db.db), read_only=True)
    try:
        files = con.execute(
            "SELECT source_file, any_value(source_sha256), count(*), min(source_row), max(source_row) "
            "FROM raw.gemeente_survey WHERE release_year = 2023 GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert files == [
            (f"{SURVEY_DIR}/{CULTUUR}", sha256_file(shared_data_dir / SURVEY_DIR / CULTUUR), 105, 2, 36),
            (f"{SURVEY_DIR}/{JONGEREN}", sha256_file(shared_data_dir / SURVEY_DIR / JONGEREN), 9, 2, 4),
        ]
        nulls = con.execute(
            "SELECT count(*) FROM raw.gemeente_survey WHERE retrieved_at IS NULL OR reader_version IS NULL "
            "OR area_name IS NULL OR measure_key IS NULL"
        ).fetchone()[0]
        assert nulls == 0
    finally:
        con.close()


def test_too_few_respondents_never_reach_duckdb_and_are_counted(survey_db):
    result = survey_db.synthetic
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.metadata["summary"].value
    meta = _metadata(result)
    # noord (8) and west (3) x 3 categories under the minimum of 10; oost's 3 dots by the "publisher"
    assert meta["n_suppressed_too_few_respondents"] == 6
    assert meta["n_suppressed_suppressed_by_publisher"] == 3
    assert meta["min_respondents"] == 10
    [per_file] = meta["suppressed_cells"]["per_file"]
    assert per_file["source"] == f"{SYNTHETIC_DIR}/{SYNTHETIC_NAME}" and per_file["respondents_column"] == "n"

    con = duckdb.connect(str(survey_db.db), read_only=True)
    try:
        rows = con.execute(
            "SELECT area_name, value_raw, subgroup FROM raw.gemeente_survey "
            "WHERE release_year = 2024 AND measure_key LIKE '%|%' "
            "AND area_name IN ('Subwijk Synthetisch-noord', 'Subwijk Synthetisch-west')"
        ).fetchall()
        assert len(rows) == 6
        assert {(v, s) for _, v, s in rows} == {(None, SUBGROUP_TOO_FEW_RESPONDENTS)}
        placeholders = ", ".join("?" * len(HIDDEN_FIGURES))
        leaked = con.execute(
            f"SELECT count(*) FROM raw.gemeente_survey WHERE release_year = 2024 AND value_raw IN ({placeholders})",
            list(HIDDEN_FIGURES),
        ).fetchone()[0]
        assert leaked == 0
        shown = con.execute(
            "SELECT value_raw FROM raw.gemeente_survey WHERE area_name = 'Subwijk Synthetisch-zuid' "
            "AND measure_key LIKE '%|%' ORDER BY measure_key DESC"
        ).fetchall()
        assert sorted(v for (v,) in shown) == ["15", "30", "55"]
        # the 2023 partition was not touched by the 2024 run
        assert con.execute("SELECT count(*) FROM raw.gemeente_survey WHERE release_year = 2023").fetchone()[0] == 114
    finally:
        con.close()


def test_personal_file_is_rejected_and_nothing_is_written(tmp_path):
    """SYNTHETIC: a clean 2024 table loads; the same file re-delivered with a respondent_id column is
    refused by the raw asset, with file and column in the error, and the 2024 rows stay as they were."""
    data = _synthetic_data_dir(tmp_path / "data", SYNTHETIC_RESPONDENTS)
    db = tmp_path / "wijk.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(data, db, "2024", instance).success
    con = duckdb.connect(str(db), read_only=True)
    before = con.execute("SELECT count(*), sum(hash(area_name, measure_key, value_raw)) FROM raw.gemeente_survey").fetchone()
    con.close()

    personal = "regio;respondent_id;tevreden\n" + "".join(
        f"Subwijk Synthetisch-{i % 3};R{i:04d};{40 + i}\n" for i in range(12)
    )
    (data / SYNTHETIC_DIR / SYNTHETIC_NAME).write_text(personal, encoding="utf-8")
    with pytest.raises(Exception) as excinfo:
        _materialize(data, db, "2024", instance)
    message = str(excinfo.value)
    assert f"{SYNTHETIC_DIR}/{SYNTHETIC_NAME}" in message and "'respondent_id'" in message
    assert "aggregated table" in message
    con = duckdb.connect(str(db), read_only=True)
    try:
        after = con.execute("SELECT count(*), sum(hash(area_name, measure_key, value_raw)) FROM raw.gemeente_survey").fetchone()
        assert after == before
        assert con.execute(
            "SELECT count(*) FROM raw.gemeente_survey WHERE value_raw LIKE 'R0%' OR measure_key = 'respondent_id'"
        ).fetchone()[0] == 0
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------------
# dbt: staging and mart on the small survey database (only the survey models and their tests)
# ---------------------------------------------------------------------------------------------------


def _dbt_build(db: Path, work: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "WIJK_DUCKDB_PATH": str(db),
        "WIJK_MIN_RESPONDENTS": "10",
        "DBT_LOG_PATH": str(work / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    cmd = [
        _dbt_executable(), "build",
        "--select", "stg_gemeente_survey", "fct_survey_indicators",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(work / "dbt_target"),
    ]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_dbt_stages_the_survey_into_the_mart(survey_db, shared_data_dir):
    db = survey_db.work / "dbt.duckdb"
    shutil.copyfile(survey_db.db, db)
    proc = _dbt_build(db, survey_db.work)
    assert proc.returncode == 0, f"dbt build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert "PASS=" in proc.stdout and "ERROR=0" in proc.stdout.replace(" ", "")

    con = duckdb.connect(str(db), read_only=True)
    try:
        per_year = dict(con.execute("SELECT year, count(*) FROM marts.fct_survey_indicators GROUP BY 1").fetchall())
        assert per_year == {2023: 114, 2024: 15}
        reasons = con.execute(
            "SELECT year, missing_reason, count(*) FROM marts.fct_survey_indicators "
            "WHERE missing_reason IS NOT NULL GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        assert reasons == [
            (2023, "suppressed_by_publisher", 6),
            (2024, "suppressed_by_publisher", 3),
            (2024, "too_few_respondents", 6),
        ]
        row = con.execute(
            "SELECT survey, area_level, indicator, category, value_pct, is_suppressed, source_file, "
            "source_sha256, source_row FROM marts.fct_survey_indicators "
            "WHERE area_label = 'Subwijk Oog in Al, Welgelegen' AND category = '(zeer) tevreden'"
        ).fetchone()
        assert row == (
            SURVEY_DIR, "subwijk", CULTUUR_INDICATOR, "(zeer) tevreden", 53.0, False,
            f"{SURVEY_DIR}/{CULTUUR}", sha256_file(shared_data_dir / SURVEY_DIR / CULTUUR), 2,
        )
        city = con.execute(
            "SELECT area_level, value_pct FROM marts.fct_survey_indicators "
            "WHERE area_label = 'Utrecht' AND indicator = ? AND category = 'tevreden'",
            [JONGEREN_INDICATOR],
        ).fetchone()
        assert city == (None, 31.0)
        noord = con.execute(
            "SELECT count(*), count(value_pct), min(n_respondents), bool_and(is_suppressed) "
            "FROM marts.fct_survey_indicators WHERE area_label = 'Subwijk Synthetisch-noord'"
        ).fetchone()
        assert noord == (3, 0, 8, True)
        # the mart is not a feature source: nothing of it reaches the feature machinery
        assert not con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('fct_area_features', 'stg_cells')"
        ).fetchone()[0]
    finally:
        con.close()


def test_dbt_builds_without_any_survey_file(tmp_path):
    """A municipality without survey files: no raw.gemeente_survey table, the models are empty, not broken."""
    db = tmp_path / "empty.duckdb"
    duckdb.connect(str(db)).close()
    proc = _dbt_build(db, tmp_path)
    assert proc.returncode == 0, f"dbt build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM marts.fct_survey_indicators").fetchone()[0] == 0
    finally:
        con.close()
