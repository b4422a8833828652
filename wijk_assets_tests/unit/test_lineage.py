"""Column lineage builders (pure functions). Synthetic catalog rows, shaped like marts.feature_catalog;
the end-to-end test follows the same lineage on the real run."""

from __future__ import annotations

import dagster as dg

from wijk_assets.defs import column_lineage as lineage

RIVM = dg.AssetKey(["raw", "rivm_gezondheid"])
KWB = dg.AssetKey(["raw", "cbs_kwb"])
CATALOG = [  # synthetic
    {"feature": "smokers_pct_18plus", "source": "rivm_gezondheid", "source_measure_keys": "Roker_11 | Roker_12"},
    {"feature": "woz_value_eur", "source": "cbs_kwb", "source_measure_keys": "g_wozbag"},
]


def test_feature_columns_point_at_every_source_key_they_were_read_from():
    deps = lineage.feature_table_lineage(CATALOG).deps_by_column
    assert set(deps["smokers_pct_18plus"]) == {dg.TableColumnDep(RIVM, "Roker_11"), dg.TableColumnDep(RIVM, "Roker_12")}
    assert deps["woz_value_eur"] == [dg.TableColumnDep(KWB, "g_wozbag")]
    assert set(deps["area_code"]) == {dg.TableColumnDep(KWB, "area_code"), dg.TableColumnDep(RIVM, "area_code")}
    assert set(deps["year"]) == {dg.TableColumnDep(KWB, "release_year"), dg.TableColumnDep(RIVM, "release_year")}


def test_training_context_columns_and_outcomes_trace_to_their_marts():
    columns = ["area_code", "outcome_year", "smokers_pct_18plus", "gm__smokers_pct_18plus",
               "bu_sd__woz_value_eur", "lbm", "n_buurten"]
    deps = lineage.training_lineage(columns, {"smokers_pct_18plus", "woz_value_eur"}, ["lbm", "fys"]).deps_by_column
    features = dg.AssetKey(["marts", "fct_area_features"])
    assert deps["gm__smokers_pct_18plus"] == [dg.TableColumnDep(features, "smokers_pct_18plus")]
    assert deps["bu_sd__woz_value_eur"] == [dg.TableColumnDep(features, "woz_value_eur")]
    assert deps["lbm"] == [dg.TableColumnDep(dg.AssetKey(["marts", "fct_liveability_outcomes"]), "lbm")]
    assert "n_buurten" not in deps and "outcome_year" not in deps and "fys" not in deps


def test_explanation_columns_depend_on_the_model_inputs_only():
    model_features = ["smokers_pct_18plus", "gm__woz_value_eur"]
    deps = lineage.explanation_lineage(
        ["area_code", "feature", "shap_value", "feature_value", "sentence"], model_features, "lbm"
    ).deps_by_column
    training = dg.AssetKey(["marts", "mart_wijk_training"])
    assert set(deps["shap_value"]) == {dg.TableColumnDep(training, f) for f in model_features}
    # a driver's value is the model input as the model read it (the mart's lineage goes on to the feature table)
    assert set(deps["feature_value"]) == {dg.TableColumnDep(training, f) for f in model_features}
    assert set(deps) == {"area_code", "shap_value", "feature_value"}
    summary = lineage.lineage_summary(dg.TableColumnLineage(deps_by_column=deps))
    assert summary == {"columns_with_lineage": 3, "upstream_columns": 3}


def test_every_reader_of_the_feature_catalog_uses_only_its_versioned_columns():
    """The catalog's data version covers the columns assets read (its statistics may change without
    re-running the models): every query on it in the package names only those columns, never ``*``."""
    import re
    from pathlib import Path

    import wijk_assets
    from wijk_assets.defs.dbt.assets import FEATURE_CATALOG_READ_COLUMNS

    root = Path(wijk_assets.__file__).parent
    queries = []
    for path in root.rglob("*.py"):
        text = " ".join(path.read_text(encoding="utf-8").split())
        for match in re.finditer(r"SELECT ((?:(?!SELECT |FROM ).)+?) FROM marts\.feature_catalog", text, flags=re.IGNORECASE):
            select = match.group(1).replace('" "', " ")  # adjacent string literals of one query
            queries.append((path.name, select))
            columns = [re.split(r"\s+AS\s+", c.strip(), flags=re.IGNORECASE)[0].strip() for c in select.split(",")]
            assert "*" not in columns and set(columns) <= set(FEATURE_CATALOG_READ_COLUMNS), (path, select)
    assert len(queries) >= 6, queries  # the readers we know of: models, monitoring, publish x2, reports, dbt checks
