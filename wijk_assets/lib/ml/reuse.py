"""Retrain only when the training data changed.

A release that adds no training row (a KWB or RIVM year after the last Leefbaarometer outcome year)
still rebuilds the marts, and a new column or a rebuilt mart can trigger the model asset. Training
again on the same rows with the same code gives the same model (training is deterministic), so it is
wasted time at best. The model asset therefore computes a **training fingerprint** before it trains:
the sha256 of the exact training matrix (selected features in order, their values, the outcome; see
:func:`wijk_assets.lib.ml.training.data_version`) together with everything else that decides the model (ML
code version, seed, tuning grid, LightGBM version). When the current model of the outcome was trained
under the same fingerprint and its artifact is still on disk, the stored model version is reused.

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

TRAINED = "trained"
REUSED = "reused"


def training_fingerprint(data_version: str, *, code_version: str, seed: int, grid: Any, library_version: str) -> str:
    """sha256 over the training-data version and every setting that decides the fitted model."""
    payload = json.dumps(
        {
            "data_version": data_version,
            "code_version": code_version,
            "seed": int(seed),
            "grid": grid,
            "library_version": library_version,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def reusable_run(current: Mapping[str, Any] | None, fingerprint: str, model_file: str) -> bool:
    """True when ``current`` (the outcome's row in ``ml.model_runs``) was trained under ``fingerprint``
    and its model file still exists."""
    if not current:
        return False
    if current.get("training_fingerprint") != fingerprint:
        return False
    path = current.get("artifact_path")
    return bool(path) and (Path(str(path)) / model_file).is_file()


__all__ = ["REUSED", "TRAINED", "reusable_run", "training_fingerprint"]
