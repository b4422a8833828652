"""Machine learning for the wijk liveability models: pure functions, no Dagster.

- :mod:`wijk_assets.lib.ml.validation`: gemeente-grouped folds, temporal split, leakage check, metrics and
  calibration.
- :mod:`wijk_assets.lib.ml.training`: feature selection from the catalog, LightGBM training with a small
  tuning grid, ridge and mean baselines on the same folds, artifacts (model text + JSON metadata).
- :mod:`wijk_assets.lib.ml.explain`: SHAP contributions (LightGBM ``pred_contrib``), global importance,
  plain-language area drivers, residual flags, Spearman correlations with BH q-values.
- :mod:`wijk_assets.lib.ml.uncertainty`: match quality, prediction intervals calibrated per group
  (conformal, leave-one-gemeente-out), coverage per group, simulated rank ranges.
- :mod:`wijk_assets.lib.ml.reference`: the issue-12 reference fit (LightGBM defaults, own health features,
  exact matches only) beside the pipeline model.
"""

from wijk_assets.lib.ml.explain import (
    area_drivers,
    area_residuals,
    compare_with_tree_explainer,
    correlations,
    global_importance,
    shap_long,
)
from wijk_assets.lib.ml.training import (
    OUTCOMES,
    FeatureSelection,
    ModelArtifact,
    evaluate,
    load_artifact,
    save_artifact,
    select_features,
    train_outcome,
)
from wijk_assets.lib.ml.validation import (
    assert_no_group_leakage,
    calibration,
    grouped_folds,
    regression_metrics,
    temporal_split,
)

__all__ = [
    "OUTCOMES",
    "FeatureSelection",
    "ModelArtifact",
    "area_drivers",
    "area_residuals",
    "assert_no_group_leakage",
    "calibration",
    "compare_with_tree_explainer",
    "correlations",
    "evaluate",
    "global_importance",
    "grouped_folds",
    "load_artifact",
    "regression_metrics",
    "save_artifact",
    "select_features",
    "shap_long",
    "temporal_split",
    "train_outcome",
]
