"""The feature set of issue 12's reference fit: the wijk's OWN health-monitor features (no gemeente
context, no buurt spread). The reference fit itself (LightGBM defaults on these features, exact matches
only) is one of the candidates of the nested model selection (:mod:`wijk_assets.lib.ml.selection`),
scored on the same outer folds and rows as the others.

Pure functions, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

CONTEXT_PREFIXES = ("gm__", "bu_sd__", "bu_min__", "bu_max__")


def own_health_features(catalog: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """The model features that are the wijk's own health-monitor values (source rivm_gezondheid)."""
    health = set(catalog.loc[catalog["source"].astype(str) == "rivm_gezondheid", "feature"])
    return [f for f in features if f in health and not f.startswith(CONTEXT_PREFIXES)]
