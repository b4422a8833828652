"""Gate 2's warning for a renamed column (SYNTHETIC staging tables): a feature the source published before
has no column in its new release, and the release brings a new column with numbers that maps to no
concept. The run succeeds; the refresh and materialise logs print the warning."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd

from wijk_assets.lib.quality.renamed_columns import possible_renames, renames_summary
from wijk_assets.runner.materialize import check_warnings

MAP_ROWS = [  # source, release_year, measure_key, mapping_status, feature
    ("kwb", 2023, "g_wozbag", "mapped", "avg_woz_value"),
    ("kwb", 2023, "a_inw", "mapped", "inhabitants"),
    ("kwb", 2023, "a_bed_a", "no_concept", None),  # never mapped: not news in 2025
    ("kwb", 2025, "g_woz", "no_concept", None),  # the renamed WOZ column
    ("kwb", 2025, "a_inw", "mapped", "inhabitants"),
    ("kwb", 2025, "a_bed_a", "no_concept", None),
    ("nabij", 2021, "afstand_huisarts", "mapped", "dist_gp_km"),
    ("nabij", 2023, "afstand_huisarts", "mapped", "dist_gp_km"),  # only "." in 2023: not yet published
    ("nabij", 2023, "binnen_1km_huisarts", "no_concept", None),
]


def _warehouse(rows=MAP_ROWS) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging")
    frame = pd.DataFrame(rows, columns=["source", "release_year", "measure_key", "mapping_status", "feature"])
    con.register("frame", frame)
    con.execute("CREATE TABLE staging.stg_measure_map AS SELECT * FROM frame")
    con.execute("CREATE TABLE staging.stg_unmapped_measures AS SELECT source, release_year AS year, measure_key, "
                "mapping_status AS reason, 120 AS n_with_number FROM frame WHERE mapping_status = 'no_concept'")
    return con


NOT_PUBLISHED = pd.DataFrame(
    [("kwb", "avg_woz_value", 2023, 2025), ("nabij", "dist_gp_km", 2021, 2023)],
    columns=["source", "feature", "last_published", "source_latest"])


def test_a_feature_missing_beside_a_new_unmapped_column_is_named_with_it():
    renames = possible_renames(_warehouse(), NOT_PUBLISHED)
    assert renames.to_dict("records") == [{"source": "kwb", "year": 2025, "missing_features": ["avg_woz_value"],
                                           "last_published": [2023], "new_unmapped_columns": ["g_woz"]}]
    summary = renames_summary(renames)
    assert summary.startswith("kwb 2025: 1 feature(s) published in 2023 have no column in this release (avg_woz_value)")
    assert "(g_woz) - a renamed column?" in summary and "a_bed_a" not in summary


def test_no_warning_without_a_new_column_or_without_a_missing_feature():
    # the WOZ column mapped again (e.g. the concept map learned g_woz): nothing is missing
    fixed = [r if r[2] != "g_woz" else ("kwb", 2025, "g_woz", "mapped", "avg_woz_value") for r in MAP_ROWS]
    assert possible_renames(_warehouse(fixed), NOT_PUBLISHED).empty
    # a first release without WOZ figures and no new column: "not yet published", not a rename
    without = [r for r in MAP_ROWS if r[2] != "g_woz"]
    assert possible_renames(_warehouse(without), NOT_PUBLISHED).empty
    assert possible_renames(_warehouse(), NOT_PUBLISHED.iloc[0:0]).empty
    # a source with a new unmapped column but no missing feature at all, beside one that has both
    assert list(possible_renames(_warehouse(), NOT_PUBLISHED[NOT_PUBLISHED["source"] == "nabij"])["source"]) == []
    assert list(possible_renames(_warehouse(), NOT_PUBLISHED[NOT_PUBLISHED["source"] == "kwb"])["source"]) == ["kwb"]


def test_a_warning_check_is_printed_by_the_runner_and_the_run_still_succeeds():
    @dg.asset
    def table():
        return 1

    @dg.asset_check(asset=table, blocking=False)
    def looks_renamed() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"summary": "kwb 2025: a renamed column?\nsecond line"})

    @dg.asset_check(asset=table, blocking=False)
    def fine() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    result = dg.materialize([table, looks_renamed, fine], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    assert check_warnings(result) == ["table looks_renamed: kwb 2025: a renamed column?\nsecond line"]
