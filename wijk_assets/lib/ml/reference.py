"""The reference fit of issue 12: a deliberately simple model to hold the pipeline's model against.

LightGBM with its own defaults (no tuning) on the wijk's OWN health-monitor features only (no gemeente
context, no buurt spread), trained and scored only on rows whose area match is exact, with 5-fold CV
grouped by gemeente. Beside it, the pipeline model's out-of-fold R² on the same rows (its predictions
come from folds over all rows, so the comparison is on the same wijk-years, not the same folds).

Pure functions, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from wijk_assets.lib.ml.training import LIGHTGBM_DEFAULTS, evaluate
from wijk_assets.lib.ml.uncertainty import match_quality
from wijk_assets.lib.ml.validation import evaluate_predictions

CONTEXT_PREFIXES = ("gm__", "bu_sd__", "bu_min__", "bu_max__")


def own_health_features(catalog: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """The model features that are the wijk's own health-monitor values (source rivm_gezondheid)."""
    health = set(catalog.loc[catalog["source"].astype(str) == "rivm_gezondheid", "feature"])
    return [f for f in features if f in health and not f.startswith(CONTEXT_PREFIXES)]


def reference_fit(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    catalog: pd.DataFrame,
    oof: pd.DataFrame,
    *,
    seed: int = 0,
    n_jobs: int | None = None,
) -> dict[str, Any]:
    """Grouped-CV metrics of the reference fit, and the pipeline model's out-of-fold metrics on the same
    (exact-match) wijk-years. ``oof`` is the pipeline's out-of-fold table (``area_code``,
    ``outcome_year``, ``actual``, ``lightgbm``)."""
    own = own_health_features(catalog, features)
    rows = frame[frame[outcome].notna()].reset_index(drop=True)
    exact = (match_quality(rows["match_rules"]) == "exact").to_numpy()
    subset = rows[exact].reset_index(drop=True)
    result = evaluate(subset, outcome, own, params={"name": "lightgbm_defaults", **LIGHTGBM_DEFAULTS},
                      seed=seed, n_jobs=n_jobs, baselines=True)
    keys = subset[["area_code", "outcome_year"]].astype({"area_code": str})
    same = keys.merge(oof.astype({"area_code": str}), on=["area_code", "outcome_year"], how="left")
    ok = same["lightgbm"].notna().to_numpy()
    pipeline = evaluate_predictions(same.loc[ok, "actual"].to_numpy(), same.loc[ok, "lightgbm"].to_numpy())
    return {
        "description": "LightGBM defaults on the wijk's own health-monitor features, exact matches only, "
                       "5-fold CV grouped by gemeente",
        "n_rows": len(subset),
        "n_rows_all_matches": len(rows),
        "n_features": len(own),
        "reference_lightgbm": result.metrics["lightgbm"],
        "reference_ridge": result.metrics.get("ridge", {}),
        "pipeline_model_on_same_rows": {**pipeline, "n": int(ok.sum())},
        "r2_difference_pipeline_minus_reference": float(pipeline["r2"] - result.metrics["lightgbm"]["r2"]),
    }
