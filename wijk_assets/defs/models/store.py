"""Stored model selections (``ml.model_selection``): the tables' columns and their readers.

Apart from :mod:`wijk_assets.defs.models.selection` so that the model asset can read the stored choice
without importing the selection asset (which imports the model module).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from wijk_assets.defs.resources import WarehouseResource
from wijk_assets.lib.warehouse import table_exists

SELECTION_COLUMNS = {
    "outcome": "VARCHAR",
    "selection_version": "VARCHAR",
    "recipe": "VARCHAR",
    "feature_set": "VARCHAR",
    "training_rows": "VARCHAR",
    "params": "VARCHAR",
    "record": "VARCHAR",  # the whole selection record (candidates, nested figures, reference, training)
    "selected_at": "TIMESTAMP",
    "run_id": "VARCHAR",
}
SELECTION_LOG_COLUMNS = {
    "outcome": "VARCHAR",
    "selection_version": "VARCHAR",
    "action": "VARCHAR",  # selected | kept
    "reason": "VARCHAR",
    "seconds": "DOUBLE",
    "run_id": "VARCHAR",
    "logged_at": "TIMESTAMP",
}
SELECTED, KEPT = "selected", "kept"


def load_selection(duckdb: WarehouseResource, outcome: str) -> dict | None:
    """The stored choice of an outcome (the ``ml.model_selection`` row, ``record`` parsed), or None."""
    with duckdb.connect(read_only=True) as con:
        if not table_exists(con, "ml.model_selection"):
            return None
        row = con.execute("SELECT * FROM ml.model_selection WHERE outcome = ?", [outcome]).df()
    if row.empty:
        return None
    out = row.iloc[0].to_dict()
    out["record"] = json.loads(out["record"])
    out["params"] = json.loads(out["params"])
    return out


def training_rows_for(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """The rows a model of ``outcome`` learns from, in the canonical order (the model asset uses the same).

    The order is found on the two key columns (a stable sort, as sorting the rows themselves); the wide
    rows are taken once, in that order (the training mart is read sorted already, so usually as they are)."""
    positions = np.flatnonzero(frame[outcome].notna().to_numpy())
    keys = ["area_code", "outcome_year"]
    order = frame[keys].iloc[positions].reset_index(drop=True).sort_values(keys, kind="mergesort").index.to_numpy()
    rows = frame.iloc[positions[order]]  # a new frame
    rows.index = pd.RangeIndex(len(rows))
    return rows


# The model selection's outer-fold fits of its choice, handed to the model step (see
# wijk_assets.lib.ml.outer_fits): one folder per outcome beside the model artifacts.
OUTER_FITS_FOLDER = "selection_outer_fits"


def outer_fits_dir(models_root: Path, outcome: str) -> Path:
    return Path(models_root) / outcome / OUTER_FITS_FOLDER


def outer_fits_key_for(frame: pd.DataFrame, outcome: str, fingerprint: str, baseline_features: list[str]) -> str:
    """The key of the outer-fold fits that the model step's cross-validation would make of the model
    with training ``fingerprint`` (see ``assets.model_inputs``; ``frame``: the outcome's training rows, as
    both steps read them), with the ridge on ``baseline_features``."""
    import numpy as np

    from wijk_assets.lib.ml.outer_fits import outer_fits_key
    from wijk_assets.lib.ml.selection import N_OUTER
    from wijk_assets.lib.ml.training import data_version, feature_matrix

    y = frame[outcome].to_numpy(dtype=np.float64)
    return outer_fits_key(
        training_fingerprint=fingerprint,
        baseline_version=data_version(feature_matrix(frame, baseline_features), y, baseline_features),
        groups=frame["gemeente_code"].astype(str).tolist(), n_folds=N_OUTER,
        years=frame["outcome_year"].astype(str).tolist() if "outcome_year" in frame.columns else (),
    )


def selection_metrics(choice: dict, n_training_rows: int, n_rows_scored: int) -> dict:
    """The ``model_selection`` block of a model's metrics: the stored choice it is trained with (version,
    chosen configuration, its figures corrected for the choice, reference fit, candidates, method)."""
    from wijk_assets.lib.ml.selection_estimate import corrected_figures

    record = choice["record"]
    return {
        "version": choice["selection_version"], "chosen": record["chosen"], "corrected": corrected_figures(record),
        "reference": record.get("reference") or {}, "chosen_plain_cv": record.get("chosen_plain_cv") or {},
        "candidates": record.get("candidates") or [], "method": record.get("method", ""),
        "n_training_rows": int(n_training_rows), "n_rows_scored": int(n_rows_scored),
    }
