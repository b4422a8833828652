"""Gate 3 as an asset: ``models/model_gate_verdict``, one partition per outcome.

The verdict is data that later steps consume (explanations, the published tables, the register entry
and the model card all depend on it in the graph), so it is an asset, not a check that writes a table
on the side. A withheld outcome is a normal, non-error state: the asset materialises with
``verdict = withheld`` and the reason in its metadata; the run succeeds; the CLI prints ``WITHHELD``.

The rule (pure code in :mod:`wijk_assets.lib.ml.gate`): published only when

1. the paired out-of-fold R² margin of LightGBM over the ridge baseline (same grouped folds) has a
   90 % bootstrap interval over gemeenten whose lower bound is above 0,
2. no feature carrying ≥ ``DOMINANT_GAIN_SHARE`` of the gain is missing on more than
   ``MAX_MISSING_DOMINANT`` of the training rows, and
3. SHAP values add up to the prediction on a sample of training rows.

The verdicts are stored in ``ml.model_gate`` (one row per outcome) for SQL readers.
"""


import hashlib
import json

import dagster as dg
import numpy as np
import pandas as pd

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.resources import DUCKDB_POOL, WarehouseResource
from wijk_assets.keys import GATE_KEY, MODEL_KEY, TRAINING_KEY, outcome_partitions
from wijk_assets.lib.warehouse import add_missing_columns, replace_partition

ADDITIVITY_TOLERANCE = 1e-6
# A feature that carries at least DOMINANT_GAIN_SHARE of the model's total gain may be missing on at
# most MAX_MISSING_DOMINANT of the training rows; otherwise the model leans on imputed structure.
DOMINANT_GAIN_SHARE = 0.10
MAX_MISSING_DOMINANT = 0.30

MODEL_GATE_COLUMNS = {
    "outcome": "VARCHAR",
    "model_version": "VARCHAR",
    "verdict": "VARCHAR",
    "passed": "BOOLEAN",
    "problems": "VARCHAR",
    "cv_r2": "DOUBLE",
    "ridge_r2": "DOUBLE",
    "margin_r2": "DOUBLE",
    "margin_lower": "DOUBLE",
    "margin_upper": "DOUBLE",
    "interval_level": "DOUBLE",
    "n_gemeenten": "INTEGER",
    "n_boot": "INTEGER",
    "fold_margins": "VARCHAR",
    "method": "VARCHAR",
    "rule": "VARCHAR",
    "checked_at": "TIMESTAMP",
}


def load_model_run(duckdb: WarehouseResource, outcome: str) -> dict:
    with duckdb.connect(read_only=True) as con:
        row = con.execute("SELECT * FROM ml.model_runs WHERE outcome = ?", [outcome]).df()
    if row.empty:
        raise dg.Failure(f"no trained model for outcome {outcome!r}: materialise models/liveability_model first")
    return row.iloc[0].to_dict()


def load_verdict(duckdb: WarehouseResource, outcome: str, model_version: str) -> dict | None:
    """The stored verdict for this outcome's current model (None when gate 3 has not judged it)."""
    with duckdb.connect(read_only=True) as con:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ml' AND table_name = 'model_gate'"
        ).fetchone()[0]
        if not exists:
            return None
        row = con.execute(
            "SELECT * FROM ml.model_gate WHERE outcome = ? AND model_version = ?", [outcome, model_version]
        ).df()
    return None if row.empty else row.iloc[0].to_dict()


def other_problems(outcome: str, booster, features: list[str], rows: pd.DataFrame) -> tuple[list[str], dict]:
    """Conditions 2 and 3 of the gate: dominant features that are mostly missing, SHAP additivity."""
    from wijk_assets.lib.ml.explain import contributions

    problems = []
    gain = pd.Series(booster.feature_importance("gain"), index=features)
    gain_share = (gain / gain.sum()).sort_values(ascending=False, kind="mergesort")
    top = gain_share.head(5).index
    for feature in gain_share[gain_share >= DOMINANT_GAIN_SHARE].index:
        share = float(rows[feature].isna().mean())
        if share > MAX_MISSING_DOMINANT:
            problems.append(
                f"{outcome}: {feature} carries {gain_share[feature]:.0%} of the gain but is missing on "
                f"{share:.0%} of training rows"
            )
    # rows arrive sorted by (area_code, outcome_year), so this sample is the same on every build
    sample = rows.sample(n=min(500, len(rows)), random_state=0)
    shap_values, base, prediction = contributions(booster, sample[features])
    additivity = float(np.max(np.abs(shap_values.sum(axis=1) + base - prediction)))
    if additivity > ADDITIVITY_TOLERANCE:
        problems.append(f"{outcome}: SHAP additivity error {additivity:.2e}")
    details = {
        "top5_gain_share": {k: float(gain_share[k]) for k in top},
        "top5_missing_share": {k: float(rows[k].isna().mean()) for k in top},
        "additivity_max_abs_error": additivity,
    }
    return problems, details


@dg.asset(
    key=GATE_KEY,
    partitions_def=outcome_partitions,
    deps=[MODEL_KEY, TRAINING_KEY],
    group_name="models",
    pool=DUCKDB_POOL,
    code_version="gate3-2",
    kinds={"python", "duckdb"},
    # follows the model only: a new training mart reaches the gate through the model (no double run)
    automation_condition=downstream_automation_condition(triggered_by=[MODEL_KEY]),
    description=(
        "Gate 3 verdict per outcome (published / withheld): LightGBM must be shown to beat the ridge "
        "baseline (90% bootstrap interval over gemeenten of the paired out-of-fold R² margin above 0), "
        f"no feature with ≥{DOMINANT_GAIN_SHARE:.0%} of the gain missing on more than "
        f"{MAX_MISSING_DOMINANT:.0%} of training rows, SHAP additivity. Withheld is not an error."
    ),
)
def model_gate_verdict(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.gate import compare_oof, decide
    from wijk_assets.lib.ml.training import load_artifact

    outcome = context.partition_key
    run = load_model_run(duckdb, outcome)
    artifact = load_artifact(run["artifact_path"])
    frame, _ = load_training_frame(duckdb, context.run.run_id, read_only_frame=True)
    rows = frame[frame[outcome].notna()].reset_index(drop=True)  # a new frame
    comparison = compare_oof(artifact.oof_predictions)
    problems, details = other_problems(outcome, artifact.booster, artifact.features, rows)
    verdict = decide(outcome, run["model_version"], comparison, problems)

    record = pd.DataFrame([{
        "outcome": outcome,
        "model_version": run["model_version"],
        "verdict": verdict.verdict,
        "passed": verdict.passed,
        "problems": verdict.reason,
        "cv_r2": comparison.model_r2,
        "ridge_r2": comparison.baseline_r2,
        "margin_r2": comparison.margin_r2,
        "margin_lower": comparison.margin_lower,
        "margin_upper": comparison.margin_upper,
        "interval_level": comparison.level,
        "n_gemeenten": comparison.n_groups,
        "n_boot": comparison.n_boot,
        "fold_margins": json.dumps([round(m, 6) for m in comparison.fold_margins]),
        "method": comparison.method,
        "rule": comparison.rule,
        "checked_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
    }])
    with duckdb.connect() as con:
        add_missing_columns(con, "ml.model_gate", MODEL_GATE_COLUMNS)
        replace_partition(con, "ml.model_gate", [(record, {})], MODEL_GATE_COLUMNS, {"outcome": outcome})

    if not verdict.passed:
        context.log.info(f"gate 3 withheld {outcome}: {verdict.reason}")
    # versioned by what was decided, so an unchanged verdict on an unchanged model triggers nothing
    content = json.dumps(
        {"model_version": run["model_version"], "verdict": verdict.verdict, "reason": verdict.reason}, sort_keys=True
    )
    return dg.MaterializeResult(
        metadata={
            "verdict": verdict.verdict,
            "reason": verdict.reason or "passed every condition",
            "model_version": run["model_version"],
            "cv_r2_lightgbm": round(comparison.model_r2, 4),
            "cv_r2_ridge": round(comparison.baseline_r2, 4),
            "margin_r2": round(comparison.margin_r2, 4),
            "margin_interval": f"{comparison.margin_lower:+.4f} to {comparison.margin_upper:+.4f} ({comparison.level:.0%})",
            "fold_margins": dg.MetadataValue.json([round(m, 4) for m in comparison.fold_margins]),
            "method": comparison.method,
            "rule": comparison.rule,
            "details": dg.MetadataValue.json(details),
            "dagster/table_name": "ml.model_gate",
        },
        data_version=dg.DataVersion(hashlib.sha256(content.encode()).hexdigest()[:16]),
    )


def withheld_in_result(result) -> list[str]:
    """``"<outcome>: <reason>"`` for every gate-3 verdict ``withheld`` materialised in a run result
    (``dg.materialize`` / ``ExecuteInProcessResult``), for the CLI's WITHHELD lines."""
    out = []
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key != GATE_KEY:
            continue
        metadata = materialization.metadata
        verdict = getattr(metadata.get("verdict"), "value", None)
        if verdict == "withheld":
            reason = getattr(metadata.get("reason"), "value", "")
            out.append(f"{materialization.partition}: {reason}")
    return out


__all__ = ["GATE_KEY", "load_model_run", "load_verdict", "model_gate_verdict", "withheld_in_result"]
