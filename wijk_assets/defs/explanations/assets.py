"""Explanation tables per outcome (SHAP), for the outcomes whose model passed gate 3.

The "t-shape": breadth (``global_importance`` over all drivers) and depth per wijk
(``shap_values``, ``area_drivers``, ``area_residuals``). Explanations are computed for each wijk's
latest outcome year, the picture a wijkanalyse starts from. SHAP values come from LightGBM's own
``pred_contrib`` (exact TreeSHAP; a test shows it equals ``shap.TreeExplainer`` and the benchmark shows
it is faster). Contributions that are exactly 0 (features the trees never split on) are not stored:
base value + the stored contributions still add up to the prediction.

Gate 3 (``models/model_gate_verdict``, :mod:`wijk_assets.defs.models.gate`) is an upstream asset: for an
outcome it withheld, the explanation partitions materialise empty (their earlier rows removed) with the
verdict and its reason in the metadata, a normal state rather than a failed run.
"""


import dagster as dg
import numpy as np
import pandas as pd

from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.resources import DUCKDB_POOL, WarehouseResource
from wijk_assets.keys import (
    GATE_KEY,
    CORRELATIONS_KEY,
    DRIVERS_KEY,
    FEATURE_TABLE_KEY,
    IMPORTANCE_KEY,
    MODEL_KEY,
    OUTCOMES,
    RESIDUALS_KEY,
    SHAP_KEY,
    TRAINING_KEY,
    outcome_partitions,
)
from wijk_assets.defs.models.gate import load_model_run, load_verdict
from wijk_assets.defs.column_lineage import explanation_lineage
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.lib.warehouse import replace_partition, replace_table, sql_types

def latest_rows(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Each wijk's most recent outcome year with a value for ``outcome``."""
    rows = frame[frame[outcome].notna()]
    latest = rows["outcome_year"].max()
    return rows[rows["outcome_year"] == latest].reset_index(drop=True)


def national_reference(duckdb: WarehouseResource, year: int) -> pd.Series:
    """National (land) values for the 'national x%' in driver texts: per feature, the latest national
    figure published in or before ``year`` (sources publish in different years)."""
    with duckdb.connect(read_only=True) as con:
        land = con.execute(
            "SELECT * FROM marts.fct_area_features WHERE area_level = 'land' AND year <= ? ORDER BY year",
            [int(year)],
        ).df()
    if land.empty:
        return pd.Series(dtype=float)
    values = land.drop(columns=[c for c in ("area_code", "area_level", "gemeente_code", "wijk_code", "year") if c in land])
    return values.astype(float).ffill().iloc[-1].dropna()


@dg.multi_asset(
    specs=[
        dg.AssetSpec(SHAP_KEY, deps=[MODEL_KEY, TRAINING_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="SHAP contribution per wijk x outcome x feature (long), with base value and prediction."),
        dg.AssetSpec(IMPORTANCE_KEY, deps=[MODEL_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="Global importance per outcome: mean |SHAP|, rank and direction of effect."),
        dg.AssetSpec(DRIVERS_KEY, deps=[MODEL_KEY, FEATURE_TABLE_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="Per wijk, the top drivers pushing the predicted score up and down, in plain language."),
        dg.AssetSpec(RESIDUALS_KEY, deps=[MODEL_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="Actual vs out-of-fold predicted score; flagged outside the cross-validated error band."),
    ],
    partitions_def=outcome_partitions,
    group_name="explanations",
    pool=DUCKDB_POOL,
    code_version="explain-2",
    can_subset=False,
)
def explanations(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    from wijk_assets.lib.ml.explain import area_drivers, area_residuals, global_importance, shap_long
    from wijk_assets.lib.ml.training import load_artifact

    outcome = context.partition_key
    run = load_model_run(duckdb, outcome)
    verdict = load_verdict(duckdb, outcome, run["model_version"])
    if verdict is None:
        raise dg.Failure(
            f"gate 3 has not judged the current {outcome} model ({run['model_version']}): materialise "
            f"models/model_gate_verdict [{outcome}] first"
        )
    if not verdict["passed"]:
        yield from _withheld(duckdb, outcome, run["model_version"], verdict["problems"])
        return
    artifact = load_artifact(run["artifact_path"])
    frame, catalog = load_training_frame(duckdb)
    rows = latest_rows(frame, outcome)
    year = int(rows["outcome_year"].iloc[0])

    long = shap_long(artifact.booster, rows[artifact.features], rows[["area_code", "outcome_year"]], outcome)
    base_pred = long.groupby("area_code", observed=True)[["base_value", "prediction"]].first()
    sums = long.groupby("area_code", observed=True)["shap_value"].sum()
    additivity = float(np.max(np.abs(sums + base_pred["base_value"] - base_pred["prediction"])))
    stored = long[long["shap_value"] != 0].copy()
    for column in ("area_code", "outcome", "feature"):
        stored[column] = stored[column].astype(str)
    stored["model_version"] = run["model_version"]

    importance = global_importance(long)
    importance = importance.merge(catalog[["feature", "label", "source"]], on="feature", how="left")
    importance["model_version"] = run["model_version"]

    feature_year = int(rows["feature_year"].max())
    # Top 3 up and top 3 down per wijk: a resident sees both sides, not only what lowers the score.
    reference = national_reference(duckdb, feature_year)
    ups = area_drivers(long[long["shap_value"] > 0], catalog, reference, top_n=3)
    downs = area_drivers(long[long["shap_value"] < 0], catalog, reference, top_n=3)
    drivers = pd.concat([ups.assign(side="up"), downs.assign(side="down")], ignore_index=True)
    # Per wijk: the release its features were taken as of (each source's latest release not after it).
    drivers = drivers.merge(rows[["area_code", "feature_year"]].astype({"feature_year": "int64"}), on="area_code", how="left")
    drivers["model_version"] = run["model_version"]

    oof = artifact.oof_predictions
    oof_latest = oof[oof["outcome_year"] == year].reset_index(drop=True)
    residuals = area_residuals(
        oof_latest["actual"], oof_latest["lightgbm"], artifact.oof_rmse,
        ids=oof_latest[["area_code", "gemeente_code", "outcome_year"]],
    )
    residuals.insert(0, "outcome", outcome)
    residuals["model_version"] = run["model_version"]

    written = {}
    with duckdb.connect() as con:
        for table, data in (
            ("ml.shap_values", stored),
            ("ml.global_importance", importance),
            ("ml.area_drivers", drivers),
            ("ml.area_residuals", residuals),
        ):
            data = data.copy()
            data["outcome"] = outcome
            written[table] = replace_partition(con, table, [(data, {})], sql_types(data), {"outcome": outcome})

    focus = residuals[residuals["area_code"].str.startswith("WK" + _focus_gemeente()[2:])]

    def lineage(frame: pd.DataFrame) -> dict:
        """Column lineage: which model inputs (and through them which raw source keys) feed each column."""
        return {"dagster/column_lineage": explanation_lineage(frame.columns, artifact.features, outcome)}

    yield dg.MaterializeResult(
        asset_key=SHAP_KEY,
        metadata={
            "dagster/row_count": written["ml.shap_values"],
            "dagster/table_name": "ml.shap_values",
            "areas_explained": int(rows.shape[0]),
            "outcome_year": year,
            "additivity_max_abs_error": additivity,
            "method": "LightGBM pred_contrib (TreeSHAP)",
            "model_version": run["model_version"],
            **lineage(stored),
        },
    )
    yield dg.MaterializeResult(
        asset_key=IMPORTANCE_KEY,
        metadata={
            **lineage(importance),
            "dagster/row_count": written["ml.global_importance"],
            "dagster/table_name": "ml.global_importance",
            "top_10": dg.MetadataValue.md(
                importance.head(10)[["rank", "feature", "label", "mean_abs_shap", "direction_text"]].to_markdown(index=False)
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DRIVERS_KEY,
        metadata={
            **lineage(drivers),
            "dagster/row_count": written["ml.area_drivers"],
            "dagster/table_name": "ml.area_drivers",
            "feature_year": feature_year,
            "example_focus_gemeente": dg.MetadataValue.md(
                drivers[drivers["area_code"].str.startswith("WK" + _focus_gemeente()[2:])]
                .sort_values(["area_code", "side", "rank"])[["area_code", "side", "rank", "sentence"]]
                .head(30)
                .to_markdown(index=False)
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=RESIDUALS_KEY,
        metadata={
            **lineage(residuals),
            "dagster/row_count": written["ml.area_residuals"],
            "dagster/table_name": "ml.area_residuals",
            "error_band_rmse": artifact.oof_rmse,
            "flag_counts": dg.MetadataValue.json(residuals["flag"].value_counts().to_dict()),
            "focus_gemeente": dg.MetadataValue.md(
                focus[["area_code", "actual", "predicted", "residual", "flag"]].to_markdown(index=False)
            ),
        },
    )


EXPLANATION_TABLES = {
    SHAP_KEY: "ml.shap_values",
    IMPORTANCE_KEY: "ml.global_importance",
    DRIVERS_KEY: "ml.area_drivers",
    RESIDUALS_KEY: "ml.area_residuals",
}


def _withheld(duckdb: WarehouseResource, outcome: str, model_version: str, reason: str):
    """Gate 3 withheld the outcome: no explanations of it exist (earlier rows are removed), and each
    partition says so in its metadata. Not an error."""
    from wijk_assets.lib.warehouse import table_exists

    with duckdb.connect() as con:
        for table in EXPLANATION_TABLES.values():
            if table_exists(con, table):
                con.execute(f"DELETE FROM {table} WHERE outcome = ?", [outcome])
    for key, table in EXPLANATION_TABLES.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "verdict": "withheld",
                "reason": reason,
                "model_version": model_version,
                "dagster/row_count": 0,
                "dagster/table_name": table,
            },
        )


def _focus_gemeente() -> str:
    from wijk_assets.settings import load_settings

    return load_settings().gemeente


@dg.asset(
    key=CORRELATIONS_KEY,
    deps=[TRAINING_KEY],
    group_name="explanations",
    pool=DUCKDB_POOL,
    code_version="explain-1",
    automation_condition=downstream_automation_condition(),
    description=(
        "Spearman correlation of every wijk feature with every Leefbaarometer outcome in the latest "
        "outcome year, with Benjamini-Hochberg q-values: the relations the models build on. "
        "Associations, not causes."
    ),
)
def correlations_table(duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.explain import correlations

    frame, catalog = load_training_frame(duckdb)
    latest = frame[frame["outcome_year"] == frame.loc[frame["fys"].notna(), "outcome_year"].max()]
    own = [f for f in catalog["feature"] if f in latest.columns and not f.startswith(("gm__", "bu_"))]
    table = correlations(latest, own, [o for o in OUTCOMES if latest[o].notna().any()])
    table = table.merge(catalog[["feature", "label", "source"]], on="feature", how="left")
    table["outcome_year"] = int(latest["outcome_year"].iloc[0])
    with duckdb.connect() as con:
        rows = replace_table(con, "ml.correlations", table)
    significant = table[table["q_value"] < 0.05]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dagster/table_name": "ml.correlations",
            "pairs_tested": int(table["p_value"].notna().sum()),
            "pairs_q_below_0_05": len(significant),
            "strongest_for_lbm": dg.MetadataValue.md(
                table[table["outcome"] == "lbm"].reindex(table["rho"].abs().sort_values(ascending=False).index)
                .dropna(subset=["rho"]).head(10)[["feature", "label", "rho", "q_value"]].to_markdown(index=False)
            ),
        }
    )
