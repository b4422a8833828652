"""The model selection's candidates (:data:`RECIPES`): feature set, training rows and LightGBM settings,
and the rows and columns each one trains on. The selection itself is :mod:`wijk_assets.lib.ml.selection`
(which re-exports these names).

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from wijk_assets.lib.ml.reference import own_health_features
from wijk_assets.lib.ml.training import LIGHTGBM_DEFAULTS
from wijk_assets.lib.ml.uncertainty import match_quality

FEATURE_SETS = ("all", "own_health")
TRAINING_ROWS = ("all_matches", "exact_only")

MEDIUM = {"num_leaves": 15, "min_data_in_leaf": 50, "feature_fraction": 0.15, "bagging_fraction": 0.5,
          "lambda_l2": 1.0, "learning_rate": 0.06, "n_estimators": 450}
# On the ~80 own health features a feature fraction of 0.15 leaves too few per tree; half of them.
MEDIUM_OWN = {**MEDIUM, "feature_fraction": 0.5}


@dataclass(frozen=True)
class Recipe:
    name: str
    feature_set: str
    training_rows: str
    params: Mapping[str, Any]
    checkpoints: bool = True

    def __post_init__(self):
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"recipe {self.name}: feature_set must be one of {FEATURE_SETS}, got {self.feature_set!r}")
        if self.training_rows not in TRAINING_ROWS:
            raise ValueError(f"recipe {self.name}: training_rows must be one of {TRAINING_ROWS}, got {self.training_rows!r}")


RECIPES: tuple[Recipe, ...] = (
    Recipe("wide_medium", "all", "all_matches", MEDIUM),
    Recipe("own_health_medium", "own_health", "all_matches", MEDIUM_OWN),
    Recipe("reference", "own_health", "exact_only", LIGHTGBM_DEFAULTS, checkpoints=False),
)
REFERENCE = "reference"


def recipe_features(feature_set: str, features: Sequence[str], catalog: pd.DataFrame) -> list[str]:
    """The model features of a feature set, in the order of ``features`` (the selected features)."""
    if feature_set == "all":
        return list(features)
    if feature_set == "own_health":
        own = own_health_features(catalog, features)
        return own or list(features)  # no health columns at all (synthetic frames): every feature
    raise ValueError(f"unknown feature set {feature_set!r}")


def exact_rows(data: pd.DataFrame) -> np.ndarray:
    """Rows whose area match is exact (every row when the frame has no ``match_rules`` column)."""
    if "match_rules" not in data.columns:
        return np.ones(len(data), dtype=bool)
    quality = match_quality(data["match_rules"].reset_index(drop=True))
    return (quality == "exact").fillna(False).to_numpy(dtype=bool)


def training_mask(training_rows: str, exact: np.ndarray) -> np.ndarray:
    if training_rows == "all_matches":
        return np.ones(exact.size, dtype=bool)
    if training_rows == "exact_only":
        return exact.copy()
    raise ValueError(f"unknown training rows {training_rows!r}")


__all__ = ["FEATURE_SETS", "MEDIUM", "MEDIUM_OWN", "RECIPES", "REFERENCE", "TRAINING_ROWS", "Recipe", "exact_rows",
           "recipe_features", "training_mask"]
