"""The model step's LightGBM fits in worker processes, with its ridge baselines in the calling thread.

:func:`wijk_assets.lib.ml.training.train_outcome` trains one setting (the stored model selection) and
makes, one after the other: the five cross-validation fits (unless the selection handed its own over,
see :mod:`.outer_fits`), the final fit on every training row, and the two fits of the temporal check
(:func:`~wijk_assets.lib.ml.training.temporal_evaluation`); each with a ridge baseline fitted beside it
on one BLAS thread. Run that way, one core idled through every ridge and a two-thread LightGBM fit used
the two cores at ~0.6x, not 0.5x, the one-thread time.

Here every LightGBM fit of the step is a task for the selection's fit workers
(:func:`wijk_assets.lib.ml.parallel_fits.run_fits`, one thread each) while this thread fits the ridges.
The fits are the same fits: the cross-validation folds are row subsets of the shared bins, as in
:func:`~wijk_assets.lib.ml.training.evaluate`; the final and temporal fits bin their own rows, as
``train_outcome`` and ``temporal_evaluation`` do; with ``deterministic`` and a fixed histogram layout the
thread count does not change a tree. ``unit/test_model_fits.py`` compares both paths bit for bit.

Pure: no Dagster, no DuckDB.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wijk_assets.lib.ml.outer_fits import OuterFits
from wijk_assets.lib.ml.parallel_fits import run_fits
from wijk_assets.lib.ml.training import (
    ModelArtifact,
    _fit_predict_ridge,
    _model_feature_names,
    _outcome_rows,
    _train_mask,
    feature_matrix,
    resolve_params,
    temporal_variants,
    train_outcome,
)
from wijk_assets.lib.ml.validation import fold_assignment, grouped_folds

MODEL = "model"  # the one feature set of the model step's fits


@dataclass
class ModelFits:
    """What the worker processes fitted for one model: ``outer_fits`` (None when the selection's were
    handed over), the final model's text, and the temporal variants' test predictions."""

    outer_fits: OuterFits | None
    final_model: str
    temporal: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0


def fit_in_workers(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    *,
    n_jobs: int,
    workers: int,
    n_splits: int = 5,
    train_mask: np.ndarray | None = None,
    baseline_features: Sequence[str] | None = None,
    outer_fits: OuterFits | None = None,
    temporal: bool = True,
    baselines: bool = True,
) -> ModelFits:
    """Every LightGBM fit of ``train_outcome`` for one setting, in ``workers`` processes, and the ridge
    baselines (cross-validation unless handed over, temporal variants) in this thread meanwhile."""
    started = time.perf_counter()
    features = list(features)
    data = _outcome_rows(frame, outcome)
    X = feature_matrix(data, features)
    y = data[outcome].to_numpy(dtype=np.float64)
    groups = data["gemeente_code"].to_numpy()
    mask = _train_mask(train_mask, len(data))
    X_base = X if baseline_features is None else feature_matrix(data, baseline_features)
    _, rounds = resolve_params(params, seed, 1)
    folds = grouped_folds(data, "gemeente_code", n_splits, seed)
    fold_of = fold_assignment(len(data), folds)
    cross_validate = outer_fits is None or not outer_fits.apply_to(fold_of)

    payloads: list[tuple] = []
    if cross_validate:  # shared bins; the fold model kept, and its prediction of its test fold
        payloads += [(MODEL, dict(params), [rounds], train[mask[train]], test, True, False) for train, test in folds]
    final_and_temporal, variants = final_and_temporal_payloads(data, MODEL, params, mask, seed, n_splits, temporal)
    payloads += final_and_temporal

    ridge_cv = np.full(len(data), np.nan)
    ridge_temporal: dict[str, np.ndarray] = {}

    def ridges() -> None:
        if not baselines:
            return
        if cross_validate:
            for train, test in folds:
                ridge_cv[test] = _fit_predict_ridge(X_base[train], y[train], X_base[test], groups[train], seed)
        for name, (tr, te) in variants.items():
            ridge_temporal[name] = _fit_predict_ridge(X_base[tr], y[tr], X_base[te], groups[tr], seed)

    matrices, names = {MODEL: X}, {MODEL: _model_feature_names(features)}
    with ThreadPoolExecutor(max_workers=1) as waiter:
        pending = waiter.submit(run_fits, payloads, matrices, y, names, seed, n_jobs, workers)
        ridges()
        results = pending.result()

    n_cv = len(folds) if cross_validate else 0
    fold_models = [text for _, text in results[:n_cv]]
    oof = np.full(len(data), np.nan)
    for (_, test), (predictions, _) in zip(folds if cross_validate else [], results[:n_cv]):
        oof[test] = predictions[rounds]
    final_model, temporal_predictions = final_and_temporal_results(results[n_cv:], variants, rounds,
                                                                   ridge_temporal if baselines else None)
    return ModelFits(
        outer_fits=(OuterFits(fold_of=fold_of, models=fold_models, ridge=ridge_cv, predictions=oof)
                    if cross_validate else None),
        final_model=final_model,
        temporal=temporal_predictions,
        seconds=time.perf_counter() - started,
    )


def final_and_temporal_payloads(data: pd.DataFrame, feature_set: str, params: Mapping[str, Any], mask: np.ndarray,
                                seed: int, n_splits: int, temporal: bool = True,
                                candidates: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                                ) -> tuple[list[tuple], dict]:
    """The fit payloads (see :func:`wijk_assets.lib.lgbm_fits.fit_task`) of a setting's final fit on every
    training row and of the temporal check's fits (each bins its own rows, as ``train_outcome`` and
    ``temporal_evaluation`` do), and the temporal variants {name: (training rows, test rows)} they fit.
    ``candidates``: :func:`~wijk_assets.lib.ml.training.temporal_variants` of ``data`` when the caller
    already made them (the selection does, for the ridges it fits before choosing)."""
    _, rounds = resolve_params(params, seed, 1)
    none = np.array([], dtype=np.int64)
    payloads = [(feature_set, dict(params), [], np.flatnonzero(mask), none, True, True)]  # the final fit
    variants: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if temporal and data["outcome_year"].nunique() >= 2:
        if candidates is None:
            _, candidates = temporal_variants(data, seed, n_splits)
        variants = {name: (tr, te) for name, (tr, te) in candidates.items()
                    if tr.size and te.size and mask[tr].any()}
        payloads += [(feature_set, dict(params), [rounds], tr[mask[tr]], te, False, True) for tr, te in variants.values()]
    return payloads, variants


def final_and_temporal_results(results: list, variants: Mapping[str, Any], rounds: int,
                               ridge_temporal: Mapping[str, np.ndarray] | None) -> tuple[str, dict]:
    """(the final model's text, the temporal variants' test predictions, with their ridge baselines when
    given) from the results of :func:`final_and_temporal_payloads`' fits."""
    temporal = {name: {"lightgbm": predictions[rounds],
                       **({"ridge": ridge_temporal[name]} if ridge_temporal is not None else {})}
                for name, (predictions, _) in zip(variants, results[1:])}
    return results[0][1], temporal


def train_model(frame: pd.DataFrame, outcome: str, features: Sequence[str], params: Mapping[str, Any], seed: int,
                *, n_jobs: int, workers: int, **inputs: Any) -> ModelArtifact:
    """:func:`~wijk_assets.lib.ml.training.train_outcome` of one setting, its LightGBM fits in ``workers``
    processes when there are two or more (the model step passes ``Settings.ml_workers``). ``inputs``:
    ``train_mask``, ``baseline_features``, ``outer_fits``, as for ``train_outcome``."""
    unknown = set(inputs) - {"train_mask", "baseline_features", "outer_fits"}
    if unknown:
        raise TypeError(f"train_model: unexpected arguments {sorted(unknown)}")
    data = _outcome_rows(frame, outcome)  # once (a copy only if frame has other rows): the calls below take it as it is
    fitted = handed_over_fits(data, outcome, seed, inputs.get("outer_fits"))
    if fitted is None and max(1, int(workers)) > 1:
        fitted = fit_in_workers(data, outcome, features, params, seed, n_jobs=n_jobs, workers=workers, **inputs)
    return train_outcome(data, outcome, features, params=params, seed=seed, n_jobs=n_jobs, fitted=fitted, **inputs)


def handed_over_fits(frame: pd.DataFrame, outcome: str, seed: int, outer_fits: OuterFits | None,
                     n_splits: int = 5) -> ModelFits | None:
    """The final and temporal fits the model selection made of its choice in its own workers (see
    :func:`wijk_assets.lib.ml.selection.select_model`), when ``outer_fits`` (handed over under the key of
    this very model) carries them and its folds are this model's folds (then the temporal variants, which
    the first fold and the outcome years decide, are the same too); else None."""
    if outer_fits is None or outer_fits.final_model is None:
        return None
    data = _outcome_rows(frame, outcome)
    if not outer_fits.apply_to(fold_assignment(len(data), grouped_folds(data, "gemeente_code", n_splits, seed))):
        return None
    # the cross-validation's fits go to ``evaluate`` as ``outer_fits`` (so they count as the selection's)
    return ModelFits(outer_fits=None, final_model=outer_fits.final_model, temporal=dict(outer_fits.temporal or {}))


__all__ = ["ModelFits", "final_and_temporal_payloads", "final_and_temporal_results", "fit_in_workers",
           "handed_over_fits", "train_model"]
