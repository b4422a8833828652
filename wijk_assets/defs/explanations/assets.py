"""Explanation tables per outcome (SHAP), plus the model's quality gate (gate 3).

The "t-shape": breadth (``global_importance`` over all drivers) and depth per wijk
(``shap_values``, ``area_drivers``, ``area_residuals``). Explanations are computed for each wijk's
latest outcome year, the picture a wijkanalyse starts from. SHAP values come from LightGBM's own
``pred_contrib`` (exact TreeSHAP; a test shows it equals ``shap.TreeExplainer`` and the benchmark shows
it is faster). Contributions that are exactly 0 (features the trees never split on) are not stored:
base value + the stored contributions still add up to the prediction.
"""

import json

import dagster as dg
import numpy as np
import pandas as pd

from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.raw.assets import DUCKDB_POOL
from wijk_assets.defs.resources import WarehouseResource
from wijk_assets.keys import (
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
from wijk_assets.defs.column_lineage import explanation_lineage
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.lib.warehouse import replace_partition, replace_table, sql_types

ADDITIVITY_TOLERANCE = 1e-6
# Gate 3: a feature that carries at least DOMINANT_GAIN_SHARE of the model's total gain may be missing on
# at most MAX_MISSING_DOMINANT of the training rows; otherwise the model leans on imputed structure.
DOMINANT_GAIN_SHARE = 0.10
MAX_MISSING_DOMINANT = 0.30


def load_model_run(duckdb: WarehouseResource, outcome: str) -> dict:
    with duckdb.connect(read_only=True) as con:
        row = con.execute("SELECT * FROM ml.model_runs WHERE outcome = ?", [outcome]).df()
    if row.empty:
        raise dg.Failure(f"no trained model for outcome {outcome!r}: materialise models/liveability_model first")
    return row.iloc[0].to_dict()


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
        dg.AssetSpec(SHAP_KEY, deps=[MODEL_KEY, TRAINING_KEY], automation_condition=downstream_automation_condition(), description="SHAP contribution per wijk x outcome x feature (long), with base value and prediction."),
        dg.AssetSpec(IMPORTANCE_KEY, deps=[MODEL_KEY], automation_condition=downstream_automation_condition(), description="Global importance per outcome: mean |SHAP|, rank and direction of effect."),
        dg.AssetSpec(DRIVERS_KEY, deps=[MODEL_KEY, FEATURE_TABLE_KEY], automation_condition=downstream_automation_condition(), description="Per wijk, the top drivers pushing the predicted score up and down, in plain language."),
        dg.AssetSpec(RESIDUALS_KEY, deps=[MODEL_KEY], automation_condition=downstream_automation_condition(), description="Actual vs out-of-fold predicted score; flagged outside the cross-validated error band."),
    ],
    partitions_def=outcome_partitions,
    group_name="explanations",
    pool=DUCKDB_POOL,
    code_version="explain-1",
    can_subset=False,
)
def explanations(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    from wijk_assets.lib.ml.explain import area_drivers, area_residuals, global_importance, shap_long
    from wijk_assets.lib.ml.training import load_artifact

    outcome = context.partition_key
    run = load_model_run(duckdb, outcome)
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


@dg.asset_check(
    asset=MODEL_KEY,
    name="model_quality_gate",
    blocking=True,
    pool=DUCKDB_POOL,
    description=(
        "Gate 3 (blocking): grouped-CV R² above the ridge baseline, no feature carrying "
        f"≥{DOMINANT_GAIN_SHARE:.0%} of the gain that is missing on more than {MAX_MISSING_DOMINANT:.0%} of "
        "training rows, and SHAP additivity on a sample of training rows."
    ),
)
def model_quality_gate(context: dg.AssetCheckExecutionContext, duckdb: WarehouseResource) -> dg.AssetCheckResult:
    from wijk_assets.lib.ml.explain import contributions
    from wijk_assets.lib.ml.training import load_artifact

    outcomes = [context.partition_key] if context.has_partition_key else list(OUTCOMES)
    frame, _ = load_training_frame(duckdb)
    problems, details, verdicts = [], {}, []
    for outcome in outcomes:
        before = len(problems)
        run = load_model_run(duckdb, outcome)
        artifact = load_artifact(run["artifact_path"])
        metrics = json.loads(run["metrics"])["grouped_cv"]
        r2, ridge = metrics["lightgbm"]["r2"], metrics["ridge"]["r2"]
        if not r2 > ridge:
            problems.append(f"{outcome}: CV R² {r2:.3f} does not beat the ridge baseline {ridge:.3f}")
        rows = frame[frame[outcome].notna()]
        gain = pd.Series(artifact.booster.feature_importance("gain"), index=artifact.features)
        gain_share = (gain / gain.sum()).sort_values(ascending=False)
        top = gain_share.head(5).index
        missing = rows[list(top)].isna().mean()
        for feature in gain_share[gain_share >= DOMINANT_GAIN_SHARE].index:
            share = float(rows[feature].isna().mean())
            if share > MAX_MISSING_DOMINANT:
                problems.append(
                    f"{outcome}: {feature} carries {gain_share[feature]:.0%} of the gain but is missing on "
                    f"{share:.0%} of training rows"
                )
        sample = rows.sample(n=min(500, len(rows)), random_state=0)
        shap_values, base, prediction = contributions(artifact.booster, sample[artifact.features])
        additivity = float(np.max(np.abs(shap_values.sum(axis=1) + base - prediction)))
        if additivity > ADDITIVITY_TOLERANCE:
            problems.append(f"{outcome}: SHAP additivity error {additivity:.2e}")
        verdicts.append({
            "outcome": outcome,
            "model_version": run["model_version"],
            "passed": len(problems) == before,
            "problems": "; ".join(problems[before:]),
            "cv_r2": r2,
            "ridge_r2": ridge,
            "checked_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        })
        details[outcome] = {
            "cv_r2": r2, "ridge_r2": ridge,
            "top5_gain_share": {k: float(gain_share[k]) for k in top},
            "top5_missing_share": {k: float(v) for k, v in missing.items()},
            "additivity_max_abs_error": additivity,
        }
    # The verdict is also stored, so publishing and the register entry use only models that passed.
    with duckdb.connect() as con:
        for verdict in verdicts:
            row = pd.DataFrame([verdict])
            replace_partition(con, "ml.model_gate", [(row, {})], sql_types(row), {"outcome": verdict["outcome"]})
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"problems": "; ".join(problems) or "none", "details": dg.MetadataValue.json(details)},
    )
