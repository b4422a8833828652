"""The model selection's outer-fold fits of the chosen configuration, handed to the model step.

The nested CV (:func:`wijk_assets.lib.ml.selection.select_model`) fits every candidate on each of the 5
outer folds grouped by gemeente, and the ridge baseline on the same folds. The model step
(:func:`wijk_assets.lib.ml.training.evaluate`) then cross-validates the chosen configuration on exactly
those folds: same rows (outcome rows in canonical order), same fold assignment (same seed and
gemeente codes), same training mask, same shared bins, same LightGBM parameters and the same ridge
call. A boosting run read at ``k`` rounds is the run of ``k`` rounds (the trees are added one after the
other; the selection's checkpoints rely on that too), so those fits *are* the model step's fits.
Fitting them again cost the model step about half its time right after every selection.

So the selection stores them (the chosen configuration's five fold models, cut to the chosen number of
rounds, their out-of-fold predictions, and the ridge's) under a **key** over everything that decides them
(:func:`outer_fits_key`), and the model step uses them only when its own inputs give the same key and
the fold assignment matches; otherwise it fits as before. With them go the chosen configuration's final
fit and temporal-check fits, which the selection makes right after choosing in the worker processes that
already hold the matrices (the model step would otherwise start its own workers for just these three
fits; :func:`wijk_assets.lib.ml.model_fits.handed_over_fits`). Results are the same either way; the model's
metrics (``ml.model_runs``, ``cross_validation_fits``) say which way the fits were obtained.

The out-of-fold predictions are the selection's own (each fold's fit read at the chosen rounds, which is
what the cut model predicts: the same trees summed in the same order), so the model step does not
predict every row again; it still predicts them with the cut fold models it stores, and fails when
the two differ (``fold_models_max_abs_diff_vs_oof``).

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

FOLD_FILE = "fold_{}.txt"
FINAL_FILE = "final.txt"
ARRAYS_FILE = "arrays.npz"
KEY_FILE = "key.txt"
CHECKSUM_FILE = "sha256.json"


@dataclass
class OuterFits:
    """Outer-fold fits of one configuration: ``models[f]`` (LightGBM model text) was trained without
    fold ``f``; ``fold_of`` gives each outcome row its test fold; ``ridge`` the ridge baseline's
    out-of-fold predictions on the same folds."""

    fold_of: np.ndarray
    models: list[str]
    ridge: np.ndarray
    # the chosen configuration's final model (every training row) and its temporal check's test predictions
    # ({variant: {"lightgbm": ..., "ridge": ...}}), fitted by the selection right after choosing (see
    # wijk_assets.lib.ml.model_fits.handed_over_fits); None when it did not make them
    final_model: str | None = None
    temporal: dict[str, dict[str, np.ndarray]] | None = None
    # the fold models' own out-of-fold predictions (row r predicted by ``models[fold_of[r]]``), made where
    # they were fitted; None when not made (the model step then predicts with the models)
    predictions: np.ndarray | None = None

    def boosters(self) -> list[lgb.Booster]:
        return [lgb.Booster(model_str=text) for text in self.models]

    def apply_to(self, fold_of: np.ndarray) -> bool:
        """Whether these are fits on the folds ``fold_of`` (one model per fold, the same assignment)."""
        return len(self.models) == int(np.max(fold_of)) + 1 and np.array_equal(self.fold_of, fold_of)


def cut_to_rounds(model_text: str, rounds: int) -> str:
    """The model text of the first ``rounds`` trees of a fitted model (what a ``rounds``-round fit gives)."""
    return lgb.Booster(model_str=model_text).model_to_string(num_iteration=int(rounds))


def outer_fits_key(*, training_fingerprint: str, baseline_version: str, groups: Sequence[Any], n_folds: int,
                   years: Sequence[Any] = ()) -> str:
    """sha256 over everything that decides the outer-fold fits: the model's training fingerprint
    (:func:`wijk_assets.lib.ml.reuse.training_fingerprint`: training matrix and outcome, parameters with
    the number of rounds, training mask, seed, code and LightGBM versions), the ridge's matrix
    (``baseline_version``), the gemeente of every row (the folds) and the number of folds; and the outcome
    year of every row (``years``), which with the first fold decides the temporal check's fits."""
    payload = json.dumps({
        "training_fingerprint": training_fingerprint,
        "baseline_version": baseline_version,
        "groups": hashlib.sha256("\n".join(str(g) for g in groups).encode()).hexdigest(),
        "n_folds": int(n_folds),
        **({"years": hashlib.sha256("\n".join(str(y) for y in years).encode()).hexdigest()} if len(years) else {}),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def save_outer_fits(fits: OuterFits, directory: str | Path, key: str) -> Path:
    """Write the fits to ``directory`` (replacing what was there): written beside it first, then moved
    in, so a reader finds the whole set or none."""
    directory = Path(directory)
    staging = directory.with_name(directory.name + ".incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    texts = list(fits.models)
    for fold, text in enumerate(fits.models):
        (staging / FOLD_FILE.format(fold)).write_text(text, encoding="utf-8")
    if fits.final_model is not None:
        (staging / FINAL_FILE).write_text(fits.final_model, encoding="utf-8")
        texts.append(fits.final_model)
    temporal = {f"temporal__{variant}__{model}": np.asarray(values, dtype=np.float64)
                for variant, by_model in (fits.temporal or {}).items() for model, values in by_model.items()}
    predictions = {} if fits.predictions is None else {"lightgbm": np.asarray(fits.predictions, dtype=np.float64)}
    np.savez(staging / ARRAYS_FILE, fold_of=np.asarray(fits.fold_of, dtype=np.int64),
             ridge=np.asarray(fits.ridge, dtype=np.float64), **predictions, **temporal)
    (staging / KEY_FILE).write_text(key, encoding="utf-8")
    (staging / CHECKSUM_FILE).write_text(json.dumps([_sha256(text) for text in texts]), encoding="utf-8")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_outer_fits(directory: str | Path, key: str) -> OuterFits | None:
    """The fits stored in ``directory`` under ``key``; None when there are none, for another key, or when
    a file is damaged: every model text is checked against the sha256 written with it before anything
    parses it (LightGBM crashes the process on a truncated model text instead of raising), and the arrays'
    file by its zip checksums (a damaged one raised ``BadZipFile`` out of here before)."""
    directory = Path(directory)
    try:
        if (directory / KEY_FILE).read_text(encoding="utf-8") != key:
            return None
        temporal: dict[str, dict[str, np.ndarray]] = {}
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
            fold_of, ridge = arrays["fold_of"], arrays["ridge"]
            predictions = arrays["lightgbm"] if "lightgbm" in arrays.files else None
            for name in arrays.files:
                if name.startswith("temporal__"):
                    _, variant, model = name.split("__", 2)
                    temporal.setdefault(variant, {})[model] = arrays[name]
        n_folds = int(fold_of.max()) + 1 if fold_of.size else 0
        models = [(directory / FOLD_FILE.format(f)).read_text(encoding="utf-8") for f in range(n_folds)]
        final = (directory / FINAL_FILE).read_text(encoding="utf-8") if (directory / FINAL_FILE).exists() else None
        texts = models + ([final] if final is not None else [])
        if json.loads((directory / CHECKSUM_FILE).read_text(encoding="utf-8")) != [_sha256(m) for m in texts]:
            return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # missing, cut, damaged (zip CRC)
        return None
    if predictions is not None and predictions.shape != fold_of.shape:
        predictions = None  # not one per row: the model step predicts with the models instead
    return OuterFits(fold_of=fold_of, models=models, ridge=ridge, final_model=final,
                     temporal=temporal if final is not None else None, predictions=predictions)


__all__ = ["OuterFits", "cut_to_rounds", "load_outer_fits", "outer_fits_key", "save_outer_fits"]
