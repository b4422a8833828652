"""Model selection as an asset: ``models/model_selection``, one partition per outcome.

The choice of feature set, training rows and LightGBM settings (grouped CV of every candidate, scored
with a correction for the choice; pure code in :mod:`wijk_assets.lib.ml.selection`) is stored and versioned in ``ml.model_selection`` (the current
choice per outcome) and ``ml.model_selection_log`` (every materialisation: selected or kept, and why).
``models/liveability_model`` trains exactly the stored choice, so a refresh never searches settings.

Selecting again costs 9-15 s per outcome on two cores (BBC-CV; three times that with ``--nested``); it
happens only when
:func:`wijk_assets.lib.ml.selection.retune_reason` says so (no stored choice, other candidates or code,
a new LightGBM, a new outcome year or feature column, more than 10 % change in training rows) or when
asked: ``wijk-assets tune [--nested]`` (the ``tune_models`` job, config ``retune: true``). Otherwise the asset
keeps the stored choice in a second or two and its data version stays the same.
"""


import json
from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.defs.house_style import rounded
from wijk_assets.defs.models.assets import SEED, model_inputs, models_root, outcome_training_inputs
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import FEATURE_CATALOG_KEY, OUTCOME_LABELS, SELECTION_KEY, TRAINING_KEY, outcome_partitions
from wijk_assets.defs.models.store import (
    KEPT,
    SELECTED,
    SELECTION_COLUMNS,
    SELECTION_LOG_COLUMNS,
    load_selection,
    outer_fits_dir,
    outer_fits_key_for,
)
from wijk_assets.lib.warehouse import ensure_table, replace_partition

class SelectionConfig(dg.Config):
    retune: bool = False  # run the selection even when the stored choice still holds
    # score the choice by nested grouped CV (three times the fits) instead of BBC-CV; implies retune
    nested: bool = False


@dg.asset(
    key=SELECTION_KEY,
    partitions_def=outcome_partitions,
    deps=[TRAINING_KEY, FEATURE_CATALOG_KEY],
    group_name="models",
    code_version="selection-4",
    pool=DUCKDB_POOL,
    kinds={"lightgbm", "duckdb"},
    automation_condition=downstream_automation_condition(),
    description=(
        "Which features, training rows and LightGBM settings the outcome's model uses, chosen by "
        "cross-validation grouped by gemeente and scored with a correction for the choice (bootstrap "
        "bias-corrected CV; nested CV on request) against the ridge baseline; stored and versioned. Kept as is "
        "on a refresh unless the training data changed beyond the documented rule or a re-selection is asked for."
    ),
)
def model_selection(
    context: dg.AssetExecutionContext, config: SelectionConfig, duckdb: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.outer_fits import save_outer_fits
    from wijk_assets.lib.ml.selection import retune_reason, select_model, training_summary
    from wijk_assets.lib.ml.selection_estimate import BBC, NESTED, corrected_figures

    started = datetime.now(timezone.utc).replace(tzinfo=None)
    outcome = context.partition_key
    frame, catalog, selection = outcome_training_inputs(duckdb, outcome, settings.sensitive_opt_in, context.run.run_id)
    features = selection.kept
    stored = load_selection(duckdb, outcome)
    current = training_summary(frame, outcome, features)
    reason = retune_reason(stored["record"]["training"] if stored else None, current,
                           force=config.retune or config.nested)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if reason is None:
        action, record, version = KEPT, stored["record"], stored["selection_version"]
        reason = "training data within the re-selection rule of the stored choice"
    else:
        action = SELECTED
        result = select_model(frame, outcome, features, catalog, seed=SEED, n_jobs=settings.ml_n_jobs,
                              workers=settings.ml_workers, method=NESTED if config.nested else BBC)
        record, version = result.record(), result.version
        # the chosen configuration's outer-fold fits are the model step's cross-validation fits: handed over
        # (keyed by the fingerprint of the model the model step will train from this choice)
        fingerprint = model_inputs(frame, outcome, features, catalog, result.chosen)[3]
        save_outer_fits(result.chosen_outer_fits, outer_fits_dir(models_root(duckdb), outcome),
                        outer_fits_key_for(frame, outcome, fingerprint, features))
        row = pd.DataFrame([{
            "outcome": outcome, "selection_version": version, "recipe": result.chosen["recipe"],
            "feature_set": result.chosen["feature_set"], "training_rows": result.chosen["training_rows"],
            "params": json.dumps(result.chosen["params"], sort_keys=True), "record": json.dumps(record, sort_keys=True),
            "selected_at": now, "run_id": context.run.run_id,
        }])
        with duckdb.connect() as con:
            replace_partition(con, "ml.model_selection", [(row, {})], SELECTION_COLUMNS, {"outcome": outcome})
    seconds = (datetime.now(timezone.utc).replace(tzinfo=None) - started).total_seconds()
    with duckdb.connect() as con:
        ensure_table(con, "ml.model_selection_log", SELECTION_LOG_COLUMNS)
        log = pd.DataFrame([{"outcome": outcome, "selection_version": version, "action": action, "reason": reason,
                             "seconds": seconds, "run_id": context.run.run_id, "logged_at": now}])
        con.register("__log", log)
        try:
            con.execute("INSERT INTO ml.model_selection_log SELECT * FROM __log")
        finally:
            con.unregister("__log")

    corrected, reference, chosen = corrected_figures(record), record.get("reference") or {}, record["chosen"]
    candidates = pd.DataFrame(record["candidates"])
    context.log.info(f"{outcome}: {action} ({reason}); {chosen['config']}, R² corrected for the choice "
                     f"({corrected['method']}) {corrected['r2']:.4f}")
    return dg.MaterializeResult(
        metadata=rounded({
            "outcome": OUTCOME_LABELS[outcome],
            "action": action,
            "reason": reason,
            "selection_version": version,
            "chosen": chosen["config"],
            "feature_set": chosen["feature_set"],
            "training_rows": chosen["training_rows"],
            "params": dg.MetadataValue.json(chosen["params"]),
            "corrected_method": corrected["method"],
            "corrected_cv_r2": corrected["r2"],
            "corrected_ridge_r2": corrected["ridge_r2"],
            "corrected_margin_over_ridge": corrected["margin_r2"],
            "corrected_margin_interval": f"{corrected['margin_lower']:+.4f} to {corrected['margin_upper']:+.4f}",
            "reference_fit_cv_r2": reference.get("r2", float("nan")),
            "candidates": dg.MetadataValue.md(
                candidates[["config", "n_features", "n_train_rows", "r2_exact_rows", "r2_all_rows",
                            "chosen_share", "chosen"]].round(4).to_markdown(index=False)
            ),
            "method": record.get("method", ""),
            "seconds": seconds,
        }),
        data_version=dg.DataVersion(version),
    )


tune_models = dg.define_asset_job(
    "tune_models",
    selection=dg.AssetSelection.assets(SELECTION_KEY),
    description=(
        "The model selection of one outcome. Launched with config retune: true (as `wijk-assets tune` does) "
        "it runs the selection again even when the stored choice still holds; nested: true scores the "
        "choice by nested cross-validation (`wijk-assets tune --nested`)."
    ),
)
def retune_run_config(nested: bool = False) -> dict:
    """Run config of the ``tune_models`` job: select again, scored by BBC-CV or (``nested``) nested CV."""
    return {"ops": {"models__model_selection": {"config": {"retune": True, "nested": bool(nested)}}}}
