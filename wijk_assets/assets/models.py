"""Liveability models: one LightGBM model per outcome (a static partition per outcome).

The asset function is thin: it loads the training mart, calls the pure functions in
:mod:`wijk_assets.ml`, stores the model as a versioned artifact (model text + JSON with features,
hyperparameters, seed, training-data version and metrics) beside the database, and records the run in
``ml.model_runs`` and the out-of-fold predictions in ``ml.oof_predictions``.
"""

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.assets.raw import DUCKDB_POOL
from wijk_assets.resources import WarehouseResource
from wijk_assets.sensors import downstream_automation_condition
from wijk_assets.warehouse import replace_partition, sql_types

OUTCOMES = ("lbm", "fys", "onv", "soc", "vrz", "won")
OUTCOME_LABELS = {
    "lbm": "Leefbaarometer total score",
    "fys": "Leefbaarometer dimension: physical environment",
    "onv": "Leefbaarometer dimension: nuisance and insecurity",
    "soc": "Leefbaarometer dimension: social cohesion",
    "vrz": "Leefbaarometer dimension: amenities",
    "won": "Leefbaarometer dimension: housing stock",
}
outcome_partitions = dg.StaticPartitionsDefinition(list(OUTCOMES))

TRAINING_KEY = dg.AssetKey(["marts", "mart_wijk_training"])
FEATURE_CATALOG_KEY = dg.AssetKey(["marts", "feature_catalog"])
FEATURE_TABLE_KEY = dg.AssetKey(["marts", "fct_area_features"])
MODEL_KEY = dg.AssetKey(["models", "liveability_model"])
SEED = 20240917
ML_CODE_VERSION = "ml-2"

# Identifier / bookkeeping columns of the training mart; never model inputs.
NON_FEATURE_COLUMNS = {
    "area_code", "area_name", "gemeente_code", "outcome_year", "feature_year", "feature_year_min",
    "context_year", "feature_sources", "match_rules", *OUTCOMES,
}

MODEL_RUNS_COLUMNS = {
    "outcome": "VARCHAR",
    "model_version": "VARCHAR",
    "data_version": "VARCHAR",
    "artifact_path": "VARCHAR",
    "n_rows": "INTEGER",
    "n_features": "INTEGER",
    "features": "VARCHAR",
    "dropped_features": "VARCHAR",
    "params": "VARCHAR",
    "seed": "BIGINT",
    "metrics": "VARCHAR",
    "created_at": "TIMESTAMP",
}


def models_root(duckdb: WarehouseResource) -> Path:
    """Model artifacts live beside the database file, one folder per outcome and data version."""
    return Path(duckdb.path).resolve().parent / "models"


def load_training_frame(duckdb: WarehouseResource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wijk training mart and a catalog covering every model input column (context columns
    ``gm__x`` / ``bu_sd__x`` … inherit the label of ``x`` with a prefix in words)."""
    with duckdb.connect(read_only=True) as con:
        frame = con.execute("SELECT * FROM marts.mart_wijk_training WHERE feature_year IS NOT NULL").df()
        base = con.execute("SELECT * FROM marts.feature_catalog").df()
    return frame, model_feature_catalog(frame, base)


CONTEXT_PREFIXES = {
    "gm__": "municipality value of: {label}",
    "bu_sd__": "spread across the wijk's buurten of: {label}",
    "bu_min__": "lowest buurt value in the wijk of: {label}",
    "bu_max__": "highest buurt value in the wijk of: {label}",
}


def model_feature_catalog(frame: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    by_feature = base.set_index("feature")
    rows = []
    for column in frame.columns:
        if column in NON_FEATURE_COLUMNS:
            continue
        prefix = next((p for p in CONTEXT_PREFIXES if column.startswith(p)), "")
        feature = column[len(prefix):]
        if column == "n_buurten":
            rows.append({"feature": column, "base_feature": None, "label": "number of buurten in the wijk",
                         "unit": "count", "source": "derived", "cbs_table_id": "", "sensitive": False})
            continue
        if feature not in by_feature.index:
            continue
        info = by_feature.loc[feature]
        label = str(info["label"])
        rows.append({
            "feature": column,
            "base_feature": feature,
            "label": CONTEXT_PREFIXES[prefix].format(label=label) if prefix else label,
            "unit": info["unit"],
            "source": info["source"],
            "cbs_table_id": info.get("cbs_table_ids", ""),
            "sensitive": bool(info["sensitive"]),
        })
    return pd.DataFrame(rows)


def _write_partition(duckdb: WarehouseResource, table: str, frame: pd.DataFrame, columns: dict, outcome: str):
    with duckdb.connect() as con:
        return replace_partition(con, table, [(frame, {})], columns, {"outcome": outcome})


@dg.asset(
    key=MODEL_KEY,
    partitions_def=outcome_partitions,
    deps=[TRAINING_KEY, FEATURE_CATALOG_KEY],
    group_name="models",
    code_version=ML_CODE_VERSION,
    pool=DUCKDB_POOL,
    kinds={"lightgbm", "duckdb"},
    automation_condition=downstream_automation_condition(),
    description=(
        "LightGBM model of one Leefbaarometer outcome at wijk level, validated with cross-validation "
        "grouped by gemeente (no gemeente in both train and test) and a temporal hold-out of the latest "
        "year, beside a mean and a ridge baseline on the same folds."
    ),
)
def liveability_model(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.ml.training import (
        feature_matrix,
        fit_fold_models,
        fold_predictions,
        save_artifact,
        save_fold_models,
        select_features,
        train_outcome,
    )
    from wijk_assets.settings import load_settings

    outcome = context.partition_key
    frame, catalog = load_training_frame(duckdb)
    frame = frame[frame[outcome].notna()].reset_index(drop=True)
    if frame.empty:
        raise dg.Failure(f"no training rows with outcome {outcome!r} in marts.mart_wijk_training")
    settings = load_settings()
    selection = select_features(
        frame, catalog, max_missing=0.5, exclude_sensitive=True, opt_in=settings.sensitive_opt_in,
        outcome=outcome,
    )
    features = selection.kept
    artifact = train_outcome(frame, outcome, features, seed=SEED)
    model_version = hashlib.sha256(artifact.model_string.encode()).hexdigest()[:16]
    target_dir = models_root(duckdb) / outcome / model_version
    save_artifact(artifact, target_dir)
    # The fold models: the published (out-of-fold) prediction of a wijk and its SHAP drivers come from
    # the model of its own fold; refitted here exactly as in the cross-validation.
    fold_of = artifact.oof_predictions["fold"].to_numpy()
    fold_models = fit_fold_models(frame, outcome, features, artifact.params, fold_of, seed=SEED)
    refit = fold_predictions(fold_models, feature_matrix(frame, features), fold_of)
    fold_refit_diff = float(abs(refit - artifact.oof_predictions["lightgbm"].to_numpy()).max())
    if fold_refit_diff > 1e-9:
        raise dg.Failure(
            f"{outcome}: the refitted fold models do not reproduce the cross-validation's out-of-fold "
            f"predictions (max difference {fold_refit_diff:.3g}); the published drivers would explain "
            "another prediction than the published one"
        )
    save_fold_models(fold_models, target_dir)
    # Issue 12's reference fit (LightGBM defaults, own health features, exact matches only), recorded
    # beside the model so the model card can set the two side by side.
    from wijk_assets.ml.reference import reference_fit

    reference = reference_fit(frame, outcome, features, catalog, artifact.oof_predictions, seed=SEED)

    metrics = {
        "grouped_cv": {"lightgbm": artifact.cv_metrics, **artifact.baseline_metrics},
        "temporal": artifact.temporal_metrics,
        "tuning": artifact.tuning.to_dict(orient="records"),
        "timings": artifact.timings,
        "reference_fit": reference,
    }
    run_row = pd.DataFrame([{
        "outcome": outcome,
        "model_version": model_version,
        "data_version": artifact.data_version,
        "artifact_path": str(target_dir),
        "n_rows": artifact.n_rows,
        "n_features": len(features),
        "features": json.dumps(features),
        "dropped_features": json.dumps(selection.reasons),
        "params": json.dumps(artifact.params, default=str),
        "seed": SEED,
        "metrics": json.dumps(metrics, default=_json_default),
        "created_at": datetime.now(timezone.utc).replace(tzinfo=None),
    }])
    _write_partition(duckdb, "ml.model_runs", run_row, MODEL_RUNS_COLUMNS, outcome)
    oof = artifact.oof_predictions.copy()
    oof.insert(0, "outcome", outcome)
    _write_partition(duckdb, "ml.oof_predictions", oof, sql_types(oof), outcome)

    cv, base, temporal = artifact.cv_metrics, artifact.baseline_metrics, artifact.temporal_metrics
    return dg.MaterializeResult(
        metadata={
            "outcome": OUTCOME_LABELS[outcome],
            "rows": artifact.n_rows,
            "features_used": len(features),
            "features_dropped": len(selection.dropped),
            "cv_r2": cv["r2"],
            "cv_mae": cv["mae"],
            "cv_r2_ridge_baseline": base["ridge"]["r2"],
            "cv_r2_mean_baseline": base["mean"]["r2"],
            "temporal_r2": (temporal.get("lightgbm") or {}).get("r2", float("nan")),
            "temporal_test_year": str(temporal.get("test_year", "")),
            "calibration_slope": cv.get("calibration_slope", float("nan")),
            "fold_models": len(fold_models),
            "reference_fit_cv_r2": reference["reference_lightgbm"]["r2"],
            "pipeline_cv_r2_on_reference_rows": reference["pipeline_model_on_same_rows"]["r2"],
            "fold_models_max_abs_diff_vs_oof": fold_refit_diff,
            "validation": dg.MetadataValue.json(json.loads(json.dumps(metrics, default=_json_default))),
            "artifact": dg.MetadataValue.path(str(target_dir)),
            "model_version": model_version,
            "training_data_version": artifact.data_version,
            "seed": SEED,
            "params": dg.MetadataValue.json(json.loads(json.dumps(artifact.params, default=str))),
        },
        data_version=dg.DataVersion(model_version),
    )


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
