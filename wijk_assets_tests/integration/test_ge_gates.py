"""Gate 1 (GE suites on raw tables) and the gate-2 machinery, on the real shared files.

Every raw suite passes on the real data; frames made bad in one specific way fail with exactly the
expectation that guards against it; the Dagster check reads DuckDB, validates only the partition the
run wrote and blocks downstream assets with metadata naming the failed expectation and sample rows.

Great Expectations takes seconds to import, so it is imported once for the module (fixture ``gx``)
and the real frames are read once per module.
"""


import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from wijk_assets.defs.raw.assets import RAW_SOURCES
from wijk_assets.lib.sources.catalog import find_source_files
from wijk_assets.lib.quality import feature_gate, feature_shift, ge_runner
from wijk_assets.defs.raw.checks import raw_gate_check, validate_raw_table
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import RAW_COLUMNS, READER_VERSION
from wijk_assets.lib.warehouse import connect

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

try:
    from wijk_assets.defs.resources import WarehouseResource
except ImportError:  # the lead's resource not there yet: a minimal stand-in with the same shape

    class WarehouseResource(dg.ConfigurableResource):  # type: ignore[no-redef]
        path: str


RAW_SUITES = [f"raw_{source}" for source in RAW_SOURCES]  # one suite per raw source, the survey included


@pytest.fixture(scope="module", autouse=True)
def gx():
    return ge_runner._gx()  # import GE once for the whole module


def _raw_frame(source: str, data_dir: Path, *, years=None, files=None) -> pd.DataFrame:
    """The raw long rows a raw asset would write for ``source`` (readers + provenance columns)."""
    parts = []
    for source_file in find_source_files(source, data_dir):
        if years and source_file.filename_year is not None and source_file.filename_year not in years:
            continue
        if files and not any(name in source_file.relative_path for name in files):
            continue
        extract = read_source_file(source_file)
        frame = extract.frame.copy()
        frame["cbs_table_id"] = extract.cbs_table_id
        frame["source_file"] = extract.source
        frame["source_sha256"] = extract.sha256
        frame["retrieved_at"] = pd.Timestamp("2025-01-01 12:00:00")
        frame["reader_version"] = READER_VERSION
        parts.append(frame[list(RAW_COLUMNS)])
    out = pd.concat(parts, ignore_index=True)
    if years:
        out = out[out["release_year"].isin(list(years))].reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def frames(shared_data_dir) -> dict[str, pd.DataFrame]:
    return {
        "leefbaarometer": _raw_frame("leefbaarometer", shared_data_dir),
        "cbs_kwb": _raw_frame("cbs_kwb", shared_data_dir),
        "cbs_nabijheid": _raw_frame("cbs_nabijheid", shared_data_dir),
        "cbs_ses_woa": _raw_frame("cbs_ses_woa", shared_data_dir),
    }


@pytest.fixture(scope="module")
def rivm_2020_18plus(shared_data_dir) -> pd.DataFrame:
    """One national RIVM file (17,341 areas x 36 keys): complete enough for every RIVM rule."""
    return _raw_frame("rivm_gezondheid", shared_data_dir, files=["gezondheid_buurt_2020_18plus"])


def _failed(result: ge_runner.GateResult) -> set[tuple[str, str | None]]:
    return {(r["expectation"], r["column"]) for r in result.failures}


# --------------------------------------------------------------------------------------------------
# Suites and runner basics
# --------------------------------------------------------------------------------------------------


def test_every_raw_suite_loads_builds_and_explains_itself(gx):
    assert set(RAW_SUITES) <= set(ge_runner.list_suites())
    for name in RAW_SUITES:
        spec = ge_runner.load_suite(name)
        suite = ge_runner.build_suite(spec)
        assert isinstance(suite, gx.ExpectationSuite)
        assert len(suite.expectations) == len(spec["expectations"]) >= 15
        types = ge_runner.expectation_types(spec)
        for required in (
            "expect_table_columns_to_match_set",
            "expect_column_values_to_match_regex",
            "expect_compound_columns_to_be_unique",
            "expect_column_distinct_values_to_contain_set",
            "expect_column_values_to_be_between",
            "expect_column_unique_value_count_to_be_between",
        ):
            assert required in types, (name, required)
        for exp in spec["expectations"]:
            assert len(exp["meta"]["why"]) > 40, exp  # a real sentence, not a placeholder
        columns = next(e for e in spec["expectations"] if e["type"] == "expect_table_columns_to_match_set")
        assert columns["kwargs"]["column_set"] == list(RAW_COLUMNS)


def test_prepare_raw_for_validation_derives_without_touching_raw_columns():
    raw = pd.DataFrame(
        {
            "area_code": ["GM0344    ", "WK034401  ", "BU03440111", "NL01", "WK01066", None],
            "region_type": ["Gemeente  ", "District", "Buurt     ", "Land", "Neighbourhood", None],
            "measure_key": ["a_inw", "MoeiteMetRondkomen_38", "p_koopw", "x", "y", "z"],
            "value_raw": ["    78.4", ".", "1,0", "NA", None, "12%"],
        }
    )
    before = raw.copy()
    out = ge_runner.prepare_raw_for_validation(raw, measure_groups={"pct": r"^p_"})
    pd.testing.assert_frame_equal(out[list(raw.columns)], before)
    assert list(out["area_code_clean"])[:4] == ["GM0344", "WK034401", "BU03440111", "NL01"]
    assert list(out["level"]) == ["gemeente", "wijk", "buurt", "land", "wijk", None]
    assert list(out["region_type_level"])[:5] == ["gemeente", "wijk", "buurt", "land", "buurt"]
    assert out["region_type_level"].iloc[5] is None
    assert list(out["gemeente_code"].astype(object))[:3] == ["GM0344", "GM0344", "GM0344"]
    assert list(out["measure_stem"].astype(object))[:2] == ["a_inw", "MoeiteMetRondkomen"]
    assert out["measure_group"].iloc[2] == "pct" and out["measure_group"].isna().sum() == 5
    assert out["value_num"].iloc[0] == pytest.approx(78.4)
    assert out["value_num"].iloc[2] == pytest.approx(1.0)
    assert out["value_num"].iloc[[1, 3, 4, 5]].isna().all()
    assert list(out["value_status"].astype(object)) == ["number", "suppressed", "number", "missing", "missing", "unparseable"]
    assert list(out["is_suppressed"]) == [False, True, False, False, False, False]
    assert list(out["is_missing"]) == [False, False, False, True, True, False]


# --------------------------------------------------------------------------------------------------
# Real data passes
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["leefbaarometer", "cbs_kwb", "cbs_nabijheid", "cbs_ses_woa"])
def test_suite_passes_on_real_data(frames, source):
    result = ge_runner.validate_frame(frames[source], f"raw_{source}")
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    years = sorted(frames[source]["release_year"].unique())
    assert result.batches == [f"release_year={y}" for y in years]  # one GE batch per release year


def test_rivm_suite_passes_on_a_real_national_year(shared_data_dir):
    frame = _raw_frame("rivm_gezondheid", shared_data_dir, years={2020})  # 2 files, ~1.25M rows
    result = ge_runner.validate_frame(frame, "raw_rivm_gezondheid")
    assert result.success, result.summary()
    assert not result.warnings, result.summary()
    print(f"raw_rivm_gezondheid 2020: {result.rows:,} rows in {result.runtime_seconds:.1f}s")


# Every RIVM year through the real gate (Dagster, DuckDB, GE): integration/test_raw_assets.py's
# test_gate_1_passed_on_every_real_partition_without_warnings, on the session's raw stage.


# --------------------------------------------------------------------------------------------------
# Made bad in one specific way -> exactly the guarding expectation fails
# --------------------------------------------------------------------------------------------------


def test_renamed_measure_column_fails_required_measures(rivm_2020_18plus):
    bad = rivm_2020_18plus.copy()
    bad["measure_key"] = bad["measure_key"].replace("MoeiteMetRondkomen_38", "MoeiteRondkomen_38")
    result = ge_runner.validate_frame(bad, "raw_rivm_gezondheid")
    assert not result.success
    assert _failed(result) == {("expect_column_distinct_values_to_contain_set", "measure_stem")}
    failure = result.failures[0]
    assert failure["missing"] == ["MoeiteMetRondkomen"]
    assert "renamed" in failure["why"]
    assert "MoeiteMetRondkomen" in result.summary()


def test_percentage_above_100_fails_value_range_with_failing_rows(rivm_2020_18plus):
    bad = rivm_2020_18plus.copy()
    target = bad.index[(bad["measure_key"] == "ErvarenGezondheidGoedZeerGoed_4") & bad["area_code"].str.startswith("BU")][7]
    bad.loc[target, "value_raw"] = "   178.4"
    result = ge_runner.validate_frame(bad, "raw_rivm_gezondheid")
    assert _failed(result) == {("expect_column_values_to_be_between", "value_num")}
    failure = result.failures[0]
    assert failure["unexpected_count"] == 1
    assert failure["sample"] == [178.4]
    row = failure["sample_rows"][0]
    assert row["area_code"] == bad.loc[target, "area_code"]
    assert row["measure_key"] == "ErvarenGezondheidGoedZeerGoed_4"
    assert row["source_file"].endswith("gezondheid_buurt_2020_18plus.xlsx")
    assert row["source_row"] == bad.loc[target, "source_row"]


def test_duplicated_rows_fail_key_uniqueness(frames):
    good = frames["cbs_kwb"]
    bad = pd.concat([good, good.iloc[100:103]], ignore_index=True)
    result = ge_runner.validate_frame(bad, "raw_cbs_kwb")
    # the per-file key and (when the rows map to an indicator) the per-release (area, indicator) key
    failed = _failed(result)
    assert ("expect_compound_columns_to_be_unique",
            "release_year,source_file,area_code_clean,subgroup,measure_key") in failed
    assert failed <= {
        ("expect_compound_columns_to_be_unique", "release_year,source_file,area_code_clean,subgroup,measure_key"),
        ("expect_compound_columns_to_be_unique", "release_year,area_code_clean,subgroup,measure_concept"),
    }
    per_file = next(f for f in result.failures if "source_file" in f["column"])
    assert per_file["unexpected_count"] == 6  # both copies of each duplicated key


def test_duplicated_rivm_rows_fail_on_their_own_columns_as_on_the_whole_frame(rivm_2020_18plus, monkeypatch):
    """A national RIVM file (~620k rows) takes the narrow path: the key-uniqueness check runs on a frame of
    its five columns; verdict, counts and evidence rows (file, source row) equal the whole frame's."""
    assert len(rivm_2020_18plus) >= ge_runner.NARROW_MIN_ROWS
    bad = pd.concat([rivm_2020_18plus, rivm_2020_18plus.iloc[[5000, 5001]]], ignore_index=True)
    groups, real = [], ge_runner._narrow_groups
    monkeypatch.setattr(ge_runner, "_narrow_groups", lambda *a: groups.append(real(*a)) or groups[-1])
    narrow = ge_runner.validate_frame(bad.copy(), "raw_rivm_gezondheid")
    key = ("area_code_clean", "measure_key", "release_year", "source_file", "subgroup")
    assert key in groups[0]  # the uniqueness check ran on its own columns
    monkeypatch.setattr(ge_runner, "NARROW_MIN_ROWS", 10**12)
    whole = ge_runner.validate_frame(bad, "raw_rivm_gezondheid")
    assert _failed(narrow) == _failed(whole) == {("expect_compound_columns_to_be_unique",
                                                  "release_year,source_file,area_code_clean,subgroup,measure_key")}
    assert narrow.to_metadata()["failed"] == whole.to_metadata()["failed"]
    failure = narrow.failures[0]
    assert failure["unexpected_count"] == 4  # both copies of each duplicated key
    duplicated = {int(r) for r in rivm_2020_18plus.loc[[5000, 5001], "source_row"]}
    assert {int(r["source_row"]) for r in failure["sample_rows"]} == duplicated
    assert all(r["source_file"].endswith("gezondheid_buurt_2020_18plus.xlsx") for r in failure["sample_rows"])


def test_malformed_area_code_fails_code_format(frames):
    bad = frames["cbs_ses_woa"].copy()
    target = bad.index[bad["area_code"].str.strip() == "WK036300"][0]
    bad.loc[target, "area_code"] = "WK01066"
    result = ge_runner.validate_frame(bad, "raw_cbs_ses_woa")
    assert _failed(result) == {("expect_column_values_to_match_regex", "area_code_clean")}
    failure = result.failures[0]
    assert failure["sample"] == ["WK01066"]
    assert failure["sample_rows"][0]["area_code"] == "WK01066"
    assert failure["sample_rows"][0]["source_row"] == bad.loc[target, "source_row"]
    meta = result.to_metadata()
    json.dumps(meta)  # JSON-able as a whole
    assert meta["failed_expectations"] == ["expect_column_values_to_match_regex(area_code_clean)"]


def test_lbm_out_of_range_fails_score_range(frames):
    one_year = frames["leefbaarometer"][frames["leefbaarometer"]["release_year"] == 2022].copy()
    target = one_year.index[one_year["measure_key"] == "lbm"][3]
    one_year.loc[target, "value_raw"] = "7.25"
    result = ge_runner.validate_frame(one_year, "raw_leefbaarometer")
    assert _failed(result) == {("expect_column_values_to_be_between", "value_num")}
    failure = result.failures[0]
    assert failure["sample"] == [7.25]
    assert failure["sample_rows"][0]["measure_key"] == "lbm"
    assert "lbm" in failure["why"]


def test_unparseable_value_and_wrong_region_type_are_caught(frames):
    bad = frames["cbs_nabijheid"].copy()
    distance = bad.index[bad["measure_key"].str.contains("DistanceToGPPractice")][0]
    bad.loc[distance, "value_raw"] = "1.234,5"
    neighbourhood = bad.index[bad["area_code"].str.startswith("BU")][0]
    bad.loc[neighbourhood, "region_type"] = "District     "
    result = ge_runner.validate_frame(bad, "raw_cbs_nabijheid")
    assert _failed(result) == {
        ("expect_column_values_to_be_in_set", "value_status"),
        ("expect_column_pair_values_to_be_equal", "level,region_type_level"),
    }


def test_warning_expectations_do_not_fail_the_gate(frames):
    spec = ge_runner.load_suite("raw_cbs_ses_woa")
    spec = {
        **spec,
        "expectations": spec["expectations"]
        + [
            {
                "type": "expect_column_distinct_values_to_contain_set",
                "kwargs": {"column": "measure_concept", "value_set": ["not_there"]},
                "meta": {"blocking": False, "why": "A warning-level rule used only by this test, never satisfied."},
            }
        ],
    }
    result = ge_runner.validate_frame(frames["cbs_ses_woa"], spec)
    assert result.success
    assert [w["expectation"] for w in result.warnings] == ["expect_column_distinct_values_to_contain_set"]
    assert "passed with warnings" in result.summary()


# --------------------------------------------------------------------------------------------------
# The Dagster check: DuckDB, partitions, blocking
# --------------------------------------------------------------------------------------------------


def _write_year(path: Path, table: str, frame: pd.DataFrame, year: int) -> None:
    with connect(path) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw")
        columns = ", ".join(f'"{c}" {t}' for c, t in RAW_COLUMNS.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        con.execute(f"DELETE FROM {table} WHERE release_year = ?", [year])
        con.register("incoming", frame[list(RAW_COLUMNS)])
        con.execute(f"INSERT INTO {table} SELECT * FROM incoming")
        con.unregister("incoming")


def test_dagster_check_validates_the_run_partition_and_blocks_downstream(frames, tmp_path):
    source = "cbs_ses_woa"
    db = tmp_path / "gate.duckdb"
    good = frames[source]
    bad = good.copy()
    bad["release_year"] = 2018
    bad.loc[bad.index[bad["area_code"].str.strip() == "WK036300"][0], "area_code"] = "WK01066"
    by_year = {2019: good, 2018: bad}
    partitions = dg.DynamicPartitionsDefinition(name="test_ses_woa_release_year")

    @dg.asset(key=["raw", source], partitions_def=partitions)
    def raw_ses(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> None:
        year = int(context.partition_key)
        _write_year(Path(duckdb.path), f"raw.{source}", by_year[year], year)

    @dg.asset(deps=[raw_ses], partitions_def=partitions)
    def downstream() -> None:
        return None

    check = raw_gate_check(source)
    assert next(iter(check.check_keys)).name == "ge_gate_cbs_ses_woa"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(partitions.name, ["2018", "2019"])
    resources = {"duckdb": WarehouseResource(path=str(db))}

    # The bad year: the check fails, names the expectation and the failing row, and blocks downstream.
    run = dg.materialize(
        [raw_ses, downstream, check], partition_key="2018", resources=resources, instance=instance,
        raise_on_error=False,
    )
    evaluation = run.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    meta = evaluation.metadata
    assert meta["failed_expectations"].value == ["expect_column_values_to_match_regex(area_code_clean)"]
    failure = meta["failures"].value[0]
    assert failure["batch"] == "release_year=2018"
    assert failure["sample_rows"][0]["area_code"] == "WK01066"
    assert failure["sample_rows"][0]["source_file"].startswith("cbs_ses_woa_85163NED/")
    assert meta["release_years"].value == [2018]
    materialized = {e.asset_key for e in run.get_asset_materialization_events()}
    assert dg.AssetKey(["raw", source]) in materialized
    assert dg.AssetKey("downstream") not in materialized  # blocked by the failed gate

    # The good year, with the bad year still in the table: only the run's partition is validated.
    run = dg.materialize(
        [raw_ses, downstream, check], partition_key="2019", resources=resources, instance=instance,
        raise_on_error=False,
    )
    evaluation = run.get_asset_check_evaluations()[0]
    assert evaluation.passed, evaluation.metadata["summary"].value
    assert evaluation.metadata["batches"].value == ["release_year=2019"]
    assert dg.AssetKey("downstream") in {e.asset_key for e in run.get_asset_materialization_events()}

    # Without a partition (whole table), every year is validated and the bad one is named.
    whole = validate_raw_table(db, source)
    assert not whole.success
    assert whole.batches == ["release_year=2018", "release_year=2019"]
    assert {r["batch"] for r in whole.failures} == {"release_year=2018"}


def test_gate_fails_plainly_when_table_or_partition_is_missing(tmp_path, frames):
    db = tmp_path / "empty.duckdb"
    with connect(db) as con:
        con.execute("SELECT 1")
    missing = validate_raw_table(db, "cbs_ses_woa")
    assert not missing.success and "does not exist" in missing.summary()
    _write_year(db, "raw.cbs_ses_woa", frames["cbs_ses_woa"], 2019)
    absent = validate_raw_table(db, "cbs_ses_woa", [2024])
    assert not absent.success and "no rows for release_year 2024" in absent.summary()
    assert validate_raw_table(db, "cbs_ses_woa", [2019]).success


# --------------------------------------------------------------------------------------------------
# Gate 2 machinery (wide feature frame)
# --------------------------------------------------------------------------------------------------


def _features(year: int, seed: int, *, n_buurt: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = (
        [f"BU0106{i:04d}" for i in range(n_buurt)]
        + [f"WK0106{i:02d}" for i in range(40)]
        + [f"GM{i:04d}" for i in range(106, 111)]
    )
    levels = ["buurt"] * n_buurt + ["wijk"] * 40 + ["gemeente"] * 5
    base = np.linspace(5, 95, len(codes))
    income = np.exp(np.linspace(2.5, 3.5, len(codes)))
    return pd.DataFrame(
        {
            "area_code": codes,
            "area_level": levels,
            "year": year,
            "pct_koopwoningen": np.clip(base + rng.normal(0, 2, len(codes)), 0, 100),
            "inkomen_per_inwoner": income * rng.normal(1.0, 0.02, len(codes)),
        }
    )


def test_coverage_by_year_level_counts_areas_and_non_null_shares():
    frame = pd.concat([_features(2022, 1), _features(2023, 2)], ignore_index=True)
    frame.loc[(frame["year"] == 2023) & (frame["area_level"] == "buurt"), "inkomen_per_inwoner"] = np.where(
        np.arange(300) < 150, np.nan, 1.0
    )
    coverage = feature_gate.coverage_by_year_level(frame)
    row = coverage[(coverage["year"] == 2023) & (coverage["area_level"] == "buurt") & (coverage["feature"] == "inkomen_per_inwoner")].iloc[0]
    assert (row["areas"], row["non_null"], row["coverage"]) == (300, 150, 0.5)
    assert list(coverage["area_level"].drop_duplicates()) == ["gemeente", "wijk", "buurt"]
    assert (coverage[coverage["year"] == 2022]["coverage"] == 1.0).all()


def test_null_ratio_expectations_and_feature_suite_run_in_ge():
    specs = feature_gate.null_ratio_expectations(["a", "b"], {"a": 0.1}, level="buurt")
    assert len(specs) == 1 and specs[0]["kwargs"]["mostly"] == 0.9
    assert specs[0]["kwargs"]["row_condition"]["parameter"] == "buurt"
    assert feature_gate.null_ratio_expectations(["a"], 1.0) == []  # allowing 100 % NULLs cannot fail

    columns = ["pct_koopwoningen", "inkomen_per_inwoner"]
    spec = feature_gate.feature_suite_spec(columns, max_null_ratio=0.2, ranges={"pct_koopwoningen": (0, 100)})
    good = pd.concat([_features(2022, 1), _features(2023, 2)], ignore_index=True)
    assert ge_runner.validate_frame(good, spec).success

    bad = good.copy()
    bad.loc[0, "area_code"] = "WK01066"  # a buurt row with a malformed code
    bad.loc[1, "pct_koopwoningen"] = 130.0
    bad.loc[bad.index[:200], "inkomen_per_inwoner"] = np.nan  # 29% NULL > 20%
    result = ge_runner.validate_frame(bad, spec)
    assert _failed(result) == {
        ("expect_column_values_to_match_regex", "area_code"),
        ("expect_column_values_to_be_between", "pct_koopwoningen"),
        ("expect_column_values_to_not_be_null", "inkomen_per_inwoner"),
    }


def test_yoy_shift_flags_unit_changes_and_shuffled_columns_not_stable_years():
    prev, this = _features(2022, 1), _features(2023, 2)
    stable = feature_shift.yoy_shift(prev, this, ["pct_koopwoningen", "inkomen_per_inwoner"])
    assert set(stable["area_level"]) == {"gemeente", "wijk", "buurt"}
    assert not stable["flagged"].any(), stable[stable["flagged"]][["area_level", "feature", "reasons"]]
    buurt = stable[(stable["area_level"] == "buurt") & (stable["feature"] == "pct_koopwoningen")].iloc[0]
    assert buurt["paired_n"] == 300 and buurt["spearman"] > 0.95 and buurt["psi"] < 0.1

    unit = this.copy()
    unit["inkomen_per_inwoner"] *= 1000  # x1,000 euro -> euro
    shuffled = this.copy()
    shuffled["pct_koopwoningen"] = shuffled["pct_koopwoningen"].sample(frac=1, random_state=3).to_numpy()
    flagged_unit = feature_shift.yoy_shift(prev, unit, ["inkomen_per_inwoner"])
    flagged_shuffle = feature_shift.yoy_shift(prev, shuffled, ["pct_koopwoningen"])
    unit_buurt = flagged_unit[flagged_unit["area_level"] == "buurt"].iloc[0]
    assert unit_buurt["flagged"] and "median moved" in unit_buurt["reasons"] and unit_buurt["ks"] == 1.0
    shuffle_buurt = flagged_shuffle[flagged_shuffle["area_level"] == "buurt"].iloc[0]
    assert shuffle_buurt["flagged"] and "rank correlation" in shuffle_buurt["reasons"]
