"""Asset keys and outcomes: the names every stage refers to, defined once.

The outcomes themselves are model facts and live with the pure ML code
(:data:`wijk_assets.lib.ml.training.OUTCOMES`, no Dagster there); this module re-exports them so Dagster
code imports every name it shares from one place.
"""

from __future__ import annotations

import dagster as dg

from wijk_assets.lib.ml.training import OUTCOME_LABELS, OUTCOMES

RAW_PREFIX = "raw"


def raw_asset_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([RAW_PREFIX, source])


# dbt marts (their keys come from dbt: schema + model name)
FEATURE_TABLE_KEY = dg.AssetKey(["marts", "fct_area_features"])
FEATURE_CATALOG_KEY = dg.AssetKey(["marts", "feature_catalog"])
TRAINING_KEY = dg.AssetKey(["marts", "mart_wijk_training"])
OUTCOMES_KEY = dg.AssetKey(["marts", "fct_liveability_outcomes"])
RPT_COVERAGE_KEY = dg.AssetKey(["marts", "rpt_coverage"])
FEATURE_VALUES_KEY = dg.AssetKey(["marts", "fct_area_feature_values"])
DIM_AREA_KEY = dg.AssetKey(["marts", "dim_area"])
SURVEY_KEY = dg.AssetKey(["marts", "fct_survey_indicators"])
WIJK_GEOMETRY_KEY = dg.AssetKey(["intermediate", "int_wijk_geometry"])

# models and explanations (partitioned per outcome where it says so)
MODEL_KEY = dg.AssetKey(["models", "liveability_model"])
GATE_KEY = dg.AssetKey(["models", "model_gate_verdict"])  # gate 3's verdict per outcome
SELECTION_KEY = dg.AssetKey(["models", "model_selection"])  # nested-CV choice of features, rows, settings
SHAP_KEY = dg.AssetKey(["explanations", "shap_values"])
IMPORTANCE_KEY = dg.AssetKey(["explanations", "global_importance"])
DRIVERS_KEY = dg.AssetKey(["explanations", "area_drivers"])
RESIDUALS_KEY = dg.AssetKey(["explanations", "area_residuals"])
CORRELATIONS_KEY = dg.AssetKey(["explanations", "correlations"])

# published tables, reports, monitoring
PUBLISH_KEY = dg.AssetKey(["publish", "area_explanations"])
REGISTER_KEY = dg.AssetKey(["reports", "algorithm_register_entry"])
MODEL_CARD_KEY = dg.AssetKey(["reports", "model_card"])
AUDIT_KEY = dg.AssetKey(["reports", "audit_trail"])
COVERAGE_KEY = dg.AssetKey(["reports", "coverage_report"])
CHANGES_KEY = dg.AssetKey(["monitoring", "release_changes"])
WIJKBEELD_KEY = dg.AssetKey(["reports", "wijkbeeld"])

outcome_partitions = dg.StaticPartitionsDefinition(list(OUTCOMES))

__all__ = [
    "AUDIT_KEY", "CHANGES_KEY", "CORRELATIONS_KEY", "COVERAGE_KEY", "DIM_AREA_KEY", "DRIVERS_KEY",
    "FEATURE_CATALOG_KEY", "FEATURE_VALUES_KEY", "SURVEY_KEY", "WIJKBEELD_KEY", "WIJK_GEOMETRY_KEY",
    "FEATURE_TABLE_KEY", "GATE_KEY", "IMPORTANCE_KEY", "MODEL_CARD_KEY", "MODEL_KEY", "OUTCOMES", "OUTCOMES_KEY",
    "OUTCOME_LABELS", "PUBLISH_KEY", "RAW_PREFIX", "REGISTER_KEY", "RESIDUALS_KEY", "RPT_COVERAGE_KEY",
    "SELECTION_KEY", "SHAP_KEY", "TRAINING_KEY", "outcome_partitions", "raw_asset_key",
]
