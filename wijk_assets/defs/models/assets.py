"""Liveability models: one LightGBM model per outcome (a static partition per outcome).

The asset function is thin: it loads the training mart, calls the pure functions in
:mod:`wijk_assets.lib.ml`, stores the model as a versioned artifact (model text + JSON with features,
hyperparameters, seed, training-data version and metrics) beside the database, and records the run in
``ml.model_runs`` and the out-of-fold predictions in ``ml.oof_predictions``.
"""

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.defs.house_style import rounded
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.keys import (
    FEATURE_CATALOG_KEY,
    MODEL_KEY,
    SELECTION_KEY,
    OUTCOME_LABELS,
    OUTCOMES,
    TRAINING_KEY,
    outcome_partitions,
)
from wijk_assets.lib.warehouse import (
    add_missing_columns, ensure_table, quote_ident, replace_partition, sql_types, table_exists,
)


SEED = 20240917
# ml-4: trains the stored model selection (features, training rows, settings); the CV's own fold models
# are kept (no refit), the reference fit moved to the selection
ML_CODE_VERSION = "ml-4"

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
    # retrain only on new training data (wijk_assets.lib.ml.reuse): the fingerprint the model was trained
    # under, whether this materialisation trained it or reused it, and when it was last confirmed
    "training_fingerprint": "VARCHAR",
    "action": "VARCHAR",
    "run_id": "VARCHAR",
    "checked_at": "TIMESTAMP",
}
# One row per materialisation of a model partition (never replaced): the record a test or an auditor
# reads to see whether a release retrained a model ("trained") or found its training data unchanged
# ("reused").
MODEL_RUN_LOG_COLUMNS = {
    "outcome": "VARCHAR",
    "model_version": "VARCHAR",
    "data_version": "VARCHAR",
    "training_fingerprint": "VARCHAR",
    "action": "VARCHAR",
    "run_id": "VARCHAR",
    "seconds": "DOUBLE",
    "logged_at": "TIMESTAMP",
}


def models_root(duckdb: WarehouseResource) -> Path:
    """Model artifacts live beside the database file, one folder per outcome and data version."""
    return Path(duckdb.path).resolve().parent / "models"


def load_training_frame(duckdb: WarehouseResource, run_id: str | None = None,
                        latest_year_of: str | None = None, *, read_only_frame: bool = False,
                        ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wijk training mart and a catalog covering every model input column (context columns
    ``gm__x`` / ``bu_sd__x`` … inherit the label of ``x`` with a prefix in words). With ``run_id``
    (the Dagster run's), the frame is read once for as long as the mart and the catalog do not change
    (:mod:`.frame_cache`; callers get copies, or with ``read_only_frame`` the kept frame itself, for a
    caller that only takes rows or columns out of it). ``latest_year_of`` (an outcome; not with
    ``run_id``): only the rows of the latest outcome year with a value for it."""
    from wijk_assets.defs.models.frame_cache import cached_frame

    latest = "" if not latest_year_of else (
        " AND outcome_year = (SELECT max(outcome_year) FROM marts.mart_wijk_training "
        f"WHERE feature_year IS NOT NULL AND {quote_ident(latest_year_of)} IS NOT NULL)")

    def read(con) -> tuple[pd.DataFrame, pd.DataFrame]:
        # sorted by the mart's keys: the models see the same rows in the same order on every build
        frame = con.execute(
            f"SELECT * FROM marts.mart_wijk_training WHERE feature_year IS NOT NULL{latest} "
            "ORDER BY area_code, outcome_year"
        ).df()
        base = con.execute(
            "SELECT feature, label, unit, source, cbs_table_ids, sensitive FROM marts.feature_catalog ORDER BY feature"
        ).df()
        return frame, model_feature_catalog(frame, base)

    with duckdb.connect(read_only=True) as con:
        if run_id and not latest_year_of:
            return cached_frame(str(Path(duckdb.path).resolve()), run_id, con, lambda: read(con),
                                copy_frame=not read_only_frame)
        return read(con)


def outcome_training_inputs(duckdb: WarehouseResource, outcome: str, opt_in, run_id: str | None = None) -> tuple:
    """(training rows of ``outcome`` in canonical order, feature catalog, feature selection): what the
    model selection and the model both start from."""
    from wijk_assets.defs.models.store import training_rows_for
    from wijk_assets.lib.ml.training import select_features

    frame, catalog = load_training_frame(duckdb, run_id, read_only_frame=True)
    frame = training_rows_for(frame, outcome)  # a new frame
    if frame.empty:
        raise dg.Failure(f"no training rows with outcome {outcome!r} in marts.mart_wijk_training")
    selection = select_features(frame, catalog, max_missing=0.5, exclude_sensitive=True, opt_in=opt_in, outcome=outcome)
    return frame, catalog, selection


CONTEXT_PREFIXES = {
    "gm__": "municipality value of: {label}",
    "bu_sd__": "spread across the wijk's buurten of: {label}",
    "bu_min__": "lowest buurt value in the wijk of: {label}",
    "bu_max__": "highest buurt value in the wijk of: {label}",
}


def model_inputs(frame: pd.DataFrame, outcome: str, kept: list[str], catalog: pd.DataFrame, choice: dict) -> tuple:
    """(features, training mask, training-data version, training fingerprint) of the model a stored
    choice (``feature_set``, ``training_rows``, ``params``) trains on ``frame`` (the outcome's rows). The
    fingerprint covers everything that decides the fitted model (see :mod:`wijk_assets.lib.ml.reuse`)."""
    import lightgbm

    from wijk_assets.lib.ml.reuse import training_fingerprint
    from wijk_assets.lib.ml.recipes import exact_rows, recipe_features, training_mask
    from wijk_assets.lib.ml.training import data_version, feature_matrix

    features = recipe_features(choice["feature_set"], kept, catalog)
    mask = training_mask(choice["training_rows"], exact_rows(frame))
    training_version = data_version(feature_matrix(frame, features), frame[outcome].to_numpy(dtype="float64"), features)
    fingerprint = training_fingerprint(
        training_version, code_version=ML_CODE_VERSION, seed=SEED,
        grid={"training_rows": choice["training_rows"], "params": choice["params"],
              "train_mask_sha": hashlib.sha256(mask.tobytes()).hexdigest()},
        library_version=lightgbm.__version__,
    )
    return features, mask, training_version, fingerprint


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
        add_missing_columns(con, table, columns)
        return replace_partition(con, table, [(frame, {})], columns, {"outcome": outcome})


def _current_run(duckdb: WarehouseResource, outcome: str) -> dict | None:
    """The outcome's row in ``ml.model_runs`` (None before the first model)."""
    with duckdb.connect(read_only=True) as con:
        if not table_exists(con, "ml.model_runs"):
            return None
        row = con.execute("SELECT * FROM ml.model_runs WHERE outcome = ?", [outcome]).df()
    if row.empty:
        return None
    record = row.iloc[0].to_dict()
    return {k: (None if not isinstance(v, (list, dict)) and pd.isna(v) else v) for k, v in record.items()}


def _log_run(duckdb: WarehouseResource, entry: dict) -> None:
    with duckdb.connect() as con:
        ensure_table(con, "ml.model_run_log", MODEL_RUN_LOG_COLUMNS)
        frame = pd.DataFrame([entry])[list(MODEL_RUN_LOG_COLUMNS)]
        con.register("__log", frame)
        try:
            con.execute("INSERT INTO ml.model_run_log SELECT * FROM __log")
        finally:
            con.unregister("__log")


@dg.asset(
    key=MODEL_KEY,
    partitions_def=outcome_partitions,
    deps=[TRAINING_KEY, FEATURE_CATALOG_KEY, SELECTION_KEY],
    group_name="models",
    code_version=ML_CODE_VERSION,
    pool=DUCKDB_POOL,
    kinds={"lightgbm", "duckdb"},
    automation_condition=downstream_automation_condition(),
    description=(
        "LightGBM model of one Leefbaarometer outcome at wijk level, trained with the stored model selection "
        "(features, training rows, settings), validated with cross-validation grouped by gemeente (no "
        "gemeente in both train and test) and a temporal hold-out of the latest year, beside a mean and a "
        "ridge baseline on the same folds."
    ),
)
def liveability_model(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    from wijk_assets.defs.models.store import load_selection, outer_fits_dir, outer_fits_key_for, selection_metrics
    from wijk_assets.lib.ml.model_fits import train_model
    from wijk_assets.lib.ml.outer_fits import load_outer_fits
    from wijk_assets.lib.ml.gate import compare_oof
    from wijk_assets.lib.ml.reuse import REUSED, TRAINED, reusable_run
    from wijk_assets.lib.ml.selection_estimate import corrected_figures
    from wijk_assets.lib.ml.training import (
        MODEL_FILE,
        feature_matrix,
        fold_predictions,
        model_version_of,
        save_artifact,
        save_fold_models,
        train_outcome,
    )

    started = datetime.now(timezone.utc).replace(tzinfo=None)
    outcome = context.partition_key
    frame, catalog, selection = outcome_training_inputs(duckdb, outcome, settings.sensitive_opt_in, context.run.run_id)
    choice = load_selection(duckdb, outcome)
    if choice is None:
        raise dg.Failure(f"no stored model selection for {outcome!r}: materialise models/model_selection first")
    features, mask, training_version, fingerprint = model_inputs(frame, outcome, selection.kept, catalog, choice)
    current = _current_run(duckdb, outcome)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if reusable_run(current, fingerprint, MODEL_FILE):
        # Same training rows, same code: the stored model is the model this data gives. Nothing trains.
        action = REUSED
        model_version, target_dir = current["model_version"], Path(current["artifact_path"])
        metrics = json.loads(current["metrics"])
        selected = selection_metrics(choice, int(mask.sum()), len(frame))
        if _text(metrics.get("model_selection")) != _text(selected):
            # selected again with the same outcome (same fingerprint, so this very model): the figures of the
            # current selection describe it, not those of the selection run it was trained after
            metrics["model_selection"] = selected
            current = {**current, "metrics": json.dumps(metrics, default=_json_default)}
        run_row = pd.DataFrame([{**current, "action": REUSED, "run_id": context.run.run_id, "checked_at": now}])
        _write_partition(duckdb, "ml.model_runs", run_row, MODEL_RUNS_COLUMNS, outcome)
        n_rows, n_features, params = int(current["n_rows"]), int(current["n_features"]), json.loads(current["params"])
    else:
        action = TRAINED
        # exactly the stored choice: one setting, so the cross-validation's own fold models are kept; right
        # after a selection its outer-fold fits are these very fits (same key: same inputs) and are used
        handed_over = load_outer_fits(outer_fits_dir(models_root(duckdb), outcome),
                                      outer_fits_key_for(frame, outcome, fingerprint, selection.kept))
        artifact = train_model(frame, outcome, features, params=choice["params"], seed=SEED,
                               n_jobs=settings.ml_n_jobs, workers=settings.ml_workers, train_mask=mask,
                               baseline_features=selection.kept, outer_fits=handed_over)
        model_version = model_version_of(artifact.model_string)
        target_dir = models_root(duckdb) / outcome / model_version
        save_artifact(artifact, target_dir)
        # The fold models: the published (out-of-fold) prediction of a wijk and its SHAP drivers come from
        # the model of its own fold, the very models the cross-validation scored.
        fold_models = artifact.fold_models or []
        fold_of = artifact.oof_predictions["fold"].to_numpy()
        refit = fold_predictions(fold_models, feature_matrix(frame, features), fold_of)
        fold_refit_diff = float(abs(refit - artifact.oof_predictions["lightgbm"].to_numpy()).max())
        if len(fold_models) != int(fold_of.max()) + 1 or fold_refit_diff > 1e-9:
            raise dg.Failure(
                f"{outcome}: the fold models do not reproduce the cross-validation's out-of-fold "
                f"predictions (max difference {fold_refit_diff:.3g}); the published drivers would explain "
                "another prediction than the published one"
            )
        save_fold_models(fold_models, target_dir)
        oof = artifact.oof_predictions.copy()
        metrics = {
            "grouped_cv": {"lightgbm": artifact.cv_metrics, **artifact.baseline_metrics},
            "temporal": artifact.temporal_metrics,
            "tuning": artifact.tuning.to_dict(orient="records"),
            "timings": artifact.timings,
            # gate 3's evidence: the paired margin over ridge on the same out-of-fold rows
            "margin_over_ridge": compare_oof(oof).to_dict(),
            # the choice this model was trained with (its figures corrected for the choice, reference fit,
            # candidates)
            "model_selection": selection_metrics(choice, int(mask.sum()), len(frame)),
            "fold_models": len(fold_models),
            "fold_models_max_abs_diff_vs_oof": fold_refit_diff,
            "cross_validation_fits": artifact.cv_fits_from,
        }
        n_rows, n_features, params = artifact.n_rows, len(features), artifact.params
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
            "created_at": now,
            "training_fingerprint": fingerprint,
            "action": TRAINED,
            "run_id": context.run.run_id,
            "checked_at": now,
        }])
        _write_partition(duckdb, "ml.model_runs", run_row, MODEL_RUNS_COLUMNS, outcome)
        oof.insert(0, "outcome", outcome)
        _write_partition(duckdb, "ml.oof_predictions", oof, sql_types(oof), outcome)
    shutil.rmtree(outer_fits_dir(models_root(duckdb), outcome), ignore_errors=True)  # used, or of no use
    _log_run(duckdb, {
        "outcome": outcome, "model_version": model_version, "data_version": training_version,
        "training_fingerprint": fingerprint, "action": action, "run_id": context.run.run_id,
        "seconds": (datetime.now(timezone.utc).replace(tzinfo=None) - started).total_seconds(), "logged_at": now,
    })

    cv, temporal = metrics["grouped_cv"], metrics.get("temporal") or {}
    margin = metrics.get("margin_over_ridge") or {}
    return dg.MaterializeResult(
        metadata=rounded({
            "outcome": OUTCOME_LABELS[outcome],
            "action": action,
            "retrained": action == TRAINED,
            "rows": n_rows,
            "features_used": n_features,
            "features_dropped": len(selection.dropped),
            "cv_r2": cv["lightgbm"]["r2"],
            "cv_mae": cv["lightgbm"]["mae"],
            "cv_r2_ridge_baseline": cv["ridge"]["r2"],
            "cv_r2_mean_baseline": cv["mean"]["r2"],
            "margin_over_ridge": margin.get("margin_r2", float("nan")),
            "margin_interval": f"{margin.get('margin_lower', float('nan')):+.4f} to {margin.get('margin_upper', float('nan')):+.4f}",
            "temporal_r2": (temporal.get("lightgbm") or {}).get("r2", float("nan")),
            "temporal_test_year": str(temporal.get("test_year", "")),
            "calibration_slope": cv["lightgbm"].get("calibration_slope", float("nan")),
            "fold_models": int(metrics.get("fold_models", 0)),
            "fold_models_max_abs_diff_vs_oof": float(metrics.get("fold_models_max_abs_diff_vs_oof", float("nan"))),
            "selection": str((metrics.get("model_selection") or {}).get("chosen", {}).get("config", "")),
            "corrected_cv_r2": float(corrected_figures(metrics.get("model_selection")).get("r2", float("nan"))),
            "reference_fit_cv_r2": float((metrics.get("model_selection") or {}).get("reference", {}).get("r2", float("nan"))),
            "validation": dg.MetadataValue.json(json.loads(json.dumps(metrics, default=_json_default))),
            "artifact": dg.MetadataValue.path(str(target_dir)),
            "model_version": model_version,
            "training_data_version": training_version,
            "training_fingerprint": fingerprint,
            "seed": SEED,
            "params": dg.MetadataValue.json(json.loads(json.dumps(params, default=str))),
        }),
        data_version=dg.DataVersion(model_version),
    )


def _text(value) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
