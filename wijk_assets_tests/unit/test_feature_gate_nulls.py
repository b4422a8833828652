"""Gate 2's NULL-ratio rule inside each source's footprint (synthetic data).

Two sources: ``kwb`` covers two of three gemeenten in 2024, ``rivm`` all three in 2020 and 2024. Each
feature is judged on the areas of the gemeenten where its source has any value that year.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wijk_assets.lib.quality.feature_gate import footprint_null_ratios as ratios_in_duckdb
from wijk_assets.lib.quality.feature_gate import footprint_null_spec
from wijk_assets.lib.quality.ge_runner import validate_frame


def footprint_null_ratios(frame: pd.DataFrame, catalog: pd.DataFrame) -> pd.DataFrame:
    """The gate computes the ratios in DuckDB, on the table dbt built: put the synthetic frame there."""
    import duckdb

    with duckdb.connect() as con:
        con.register("frame", frame)
        con.execute("CREATE TABLE features AS SELECT * FROM frame")
        return ratios_in_duckdb(con, "features", catalog)


def _table() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for year in (2020, 2024):
        for g in range(3):
            rows.append({"area_code": f"GM000{g}", "area_level": "gemeente", "gemeente_code": f"GM000{g}", "year": year})
            for w in range(10):
                rows.append({"area_code": f"WK000{g}{w:02d}", "area_level": "wijk", "gemeente_code": f"GM000{g}", "year": year})
    rows.append({"area_code": "NL00", "area_level": "land", "gemeente_code": None, "year": 2024})
    frame = pd.DataFrame(rows)
    frame["wijk_code"] = np.where(frame["area_level"] == "wijk", frame["area_code"], None)
    rng = np.random.default_rng(3)
    frame["health"] = rng.normal(50, 5, len(frame))
    frame["income"] = np.where((frame["year"] == 2024) & (frame["gemeente_code"] != "GM0002"), 30.0, np.nan)
    frame["cars"] = frame["income"]
    frame["late"] = np.where(frame["year"] == 2024, np.nan, 1.0)  # rivm, not measured in 2024
    catalog = pd.DataFrame({"feature": ["health", "income", "cars", "late"], "source": ["rivm", "kwb", "kwb", "rivm"]})
    return frame, catalog


def test_ratios_are_taken_inside_the_footprint_and_unmeasured_years_have_no_row():
    frame, catalog = _table()
    ratios = footprint_null_ratios(frame, catalog)
    # kwb: 2024 only, 22 areas of its two gemeenten (the third gemeente and the land row are outside)
    kwb = ratios[ratios["source"] == "kwb"]
    assert set(zip(kwb["year"], kwb["feature"])) == {(2024, "income"), (2024, "cars")}
    assert (kwb["areas"] == 22).all() and (kwb["null_ratio"] == 0.0).all()
    # rivm: 33 areas in both years; 'late' only where it was measured (2020)
    rivm = ratios[ratios["source"] == "rivm"].set_index(["year", "feature"])
    assert set(rivm.index) == {(2020, "health"), (2024, "health"), (2020, "late")}
    assert (rivm["areas"] == 33).all()
    assert validate_frame(ratios, footprint_null_spec(0.5)).success


def test_a_feature_emptied_in_one_source_year_fails_the_gate_and_is_named():
    frame, catalog = _table()
    in_kwb = (frame["year"] == 2024) & frame["gemeente_code"].isin(["GM0000", "GM0001"]) & (frame["area_level"] == "wijk")
    wijken = frame.index[in_kwb]
    frame.loc[wijken[:11], "cars"] = np.nan  # 11 of the 22 areas (2 gemeenten, 20 wijken): exactly 50 %
    ratios = footprint_null_ratios(frame, catalog)
    assert ratios.set_index("feature").loc["cars", "null_ratio"] == 0.5
    assert validate_frame(ratios, footprint_null_spec(0.5)).success  # at most 50 %: still allowed

    frame.loc[wijken[:13], "cars"] = np.nan  # 13 of 22
    result = validate_frame(footprint_null_ratios(frame, catalog), footprint_null_spec(0.5))
    assert not result.success
    assert result.failed_expectations() == ["expect_column_values_to_be_between(null_ratio)"]
    summary = result.summary()
    assert "source kwb, year 2024, feature cars, areas 22, missing 13" in summary, summary
    assert "income" not in summary and "health" not in summary


def test_the_gate_2_check_stops_a_feature_table_with_a_feature_emptied_in_its_footprint(tmp_path):
    """The Dagster check itself on a synthetic warehouse: passes on the table above, fails (blocking)
    when one feature of one source year is mostly NULL inside the source's footprint, and says which."""
    import dagster as dg
    import duckdb

    from wijk_assets.defs.dbt.checks import feature_table_gate
    from wijk_assets.defs.resources import SettingsResource, WarehouseResource

    frame, catalog = _table()
    db = tmp_path / "gate2.duckdb"

    def check(features: pd.DataFrame) -> dg.AssetCheckResult:
        with duckdb.connect(str(db)) as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS marts")
            con.register("f", features)
            con.register("c", catalog.assign(label=catalog["feature"], unit="", kind="score"))
            con.execute("CREATE OR REPLACE TABLE marts.fct_area_features AS SELECT * FROM f")
            con.execute("CREATE OR REPLACE TABLE marts.feature_catalog AS SELECT * FROM c")
        return feature_table_gate(dg.build_asset_check_context(), duckdb=WarehouseResource(path=str(db)),
                                  settings=SettingsResource(gemeente="GM0001"))

    good = check(frame)
    assert good.passed, good.metadata["summary"]
    bad = frame.copy()
    bad.loc[bad.index[(bad["year"] == 2024) & (bad["area_level"] == "wijk") & (bad["gemeente_code"] == "GM0000")], "income"] = np.nan
    bad.loc[bad.index[(bad["year"] == 2024) & (bad["area_level"] == "wijk") & (bad["gemeente_code"] == "GM0001")][:5], "income"] = np.nan
    result = check(bad)  # 15 of kwb's 22 areas in 2024 lack income
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    summary = str(result.metadata["summary"].value)
    assert "source kwb, year 2024, feature income, areas 22, missing 15" in summary, summary


def test_a_stored_nan_counts_as_missing_like_a_null():
    """DuckDB keeps NaN apart from NULL (pandas did not): both are a missing value for the gate."""
    import duckdb

    catalog = pd.DataFrame({"feature": ["x"], "source": ["kwb"]})
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (area_code VARCHAR, area_level VARCHAR, gemeente_code VARCHAR, year INTEGER, x DOUBLE)")
        con.execute("INSERT INTO t VALUES ('WK000100', 'wijk', 'GM0001', 2024, 1.0), "
                    "('WK000101', 'wijk', 'GM0001', 2024, 'NaN'::DOUBLE), ('WK000102', 'wijk', 'GM0001', 2024, NULL), "
                    "('WK000103', 'wijk', 'GM0001', 2024, 2.0), ('NL00', 'land', NULL, 2024, 'NaN'::DOUBLE)")
        ratios = ratios_in_duckdb(con, "t", catalog)
    assert ratios.to_dict("records") == [
        {"source": "kwb", "year": 2024, "feature": "x", "areas": 4, "missing": 2, "null_ratio": 0.5}]


def test_buurten_of_another_source_do_not_count_against_a_source_without_buurt_figures():
    """A buurt-level release (the health monitor) in a year of a wijk-level one (the national KWB, no
    buurten): the KWB's footprint stays its gemeenten's gemeente and wijk rows. Judged on the buurten
    too, a valid health release made 78 % of the KWB 2024 features 'missing' and gate 2 refused it."""
    frame, catalog = _table()
    buurten = pd.DataFrame([
        {"area_code": f"BU000{g}{w:02d}{b:02d}", "area_level": "buurt", "gemeente_code": f"GM000{g}", "year": 2024,
         "wijk_code": f"WK000{g}{w:02d}", "health": 50.0, "income": np.nan, "cars": np.nan, "late": np.nan}
        for g in range(3) for w in range(10) for b in range(4)])
    ratios = footprint_null_ratios(pd.concat([frame, buurten], ignore_index=True), catalog)
    kwb = ratios[ratios["source"] == "kwb"]
    assert (kwb["areas"] == 22).all() and (kwb["null_ratio"] == 0.0).all()
    rivm = ratios[(ratios["source"] == "rivm") & (ratios["year"] == 2024)]
    assert (rivm["areas"] == 33 + 120).all()  # the health monitor's own footprint takes its buurten in
