"""LightGBM fitting with the project's settings, and the fit workers of the model selection.

Everything here needs numpy and LightGBM's training API only, and this module sits outside
:mod:`wijk_assets.lib.ml` (whose package imports scikit-learn, scipy.stats and pandas) so that a fit
worker process (:mod:`wijk_assets.lib.ml.parallel_fits`, started with "spawn": a fresh interpreter) does
not import them: LightGBM imports its optional scikit-learn and pandas integrations when they are
installed, which took 1.2-1.6 s of the 1.6-2.0 s a worker needed to start, before every outcome's
selection. :func:`worker_init` keeps both out of the worker (it never uses them); results are the same
either way, a unit test compares fits in workers with fits in the calling process bit for bit.

:mod:`wijk_assets.lib.ml.training` re-exports the names the rest of the code uses.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

# Settings shared by every LightGBM fit (the candidates only override model capacity / speed).
BASE_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "max_bin": 63,
    "bagging_freq": 1,
    "deterministic": True,
    # Column-wise histograms: a tree then builds histograms only for the features its feature_fraction drew
    # (wide_medium draws 15 % of ~400 columns). On the national data (5-fold CV, lbm and fys, every
    # selection recipe) the predictions were bit-identical to row-wise ones, with 1 and 2 threads, and
    # the medium recipes fitted 8-15 % faster. Fixed, not auto-chosen: LightGBM's auto choice is timed.
    "force_col_wise": True,
    "feature_pre_filter": False,  # lets candidates change min_data_in_leaf on one constructed Dataset
    "verbosity": -1,
}

# sklearn-style aliases accepted in params, mapped to LightGBM's native names.
_ALIASES = {
    "min_child_samples": "min_data_in_leaf",
    "colsample_bytree": "feature_fraction",
    "subsample": "bagging_fraction",
    "subsample_freq": "bagging_freq",
    "reg_lambda": "lambda_l2",
    "reg_alpha": "lambda_l1",
    "n_jobs": "num_threads",
    "num_boost_round": "n_estimators",
    "num_iterations": "n_estimators",
    "random_state": "seed",
}
_DATASET_KEYS = ("max_bin", "min_data_in_bin", "use_missing", "zero_as_missing", "bin_construct_sample_cnt")


def _default_n_jobs() -> int:
    """Threads for LightGBM: ``WIJK_ML_N_JOBS`` (clipped to 1..2), default the CPU count up to 2.

    With ``deterministic=True`` and a fixed histogram layout (``force_col_wise``) a fit with 1 or 2 threads
    gives the same trees and bit-identical predictions (checked on the national lbm and fys data), so the
    thread count only changes speed: on an idle 2-core machine a 2-thread fit takes ~0.6x the wall time of a 1-thread one.
    On a *busy* machine it is the other way round: LightGBM's OpenMP threads spin while they wait, and
    two processes with 2-thread fits each took ~2.8x the time of 1-thread fits (OMP_WAIT_POLICY=PASSIVE
    removes the spinning but makes an idle 2-thread fit ~3x slower). So: 2 threads where runs go one at
    a time (the CLI, the daemon's runs queue for the DuckDB pool), ``WIJK_ML_N_JOBS=1`` where other work
    shares the cores (the test suite's parallel workers set it). The model selection's fits run one
    thread per worker process (:func:`wijk_assets.lib.ml.parallel_fits.run_fits`).
    """
    from wijk_assets.settings import load_settings

    return max(1, min(2, load_settings().ml_n_jobs))


def _default_workers() -> int:
    """Worker processes for the model selection's fits: ``WIJK_ML_WORKERS`` (default: the CPU count, at most 2)."""
    from wijk_assets.settings import load_settings

    return max(1, load_settings().ml_workers)


def _normalise(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        out[_ALIASES.get(key, key)] = value
    return out


def resolve_params(params: Mapping[str, Any], seed: int, n_jobs: int | None = None) -> tuple[dict[str, Any], int]:
    """Native LightGBM params (BASE_PARAMS + ``params`` + seed/threads) and the number of rounds."""
    merged = {**BASE_PARAMS, **_normalise(params)}
    merged.pop("name", None)
    rounds = int(merged.pop("n_estimators", 100))
    merged["seed"] = int(seed)
    merged["num_threads"] = int(n_jobs if n_jobs is not None else merged.get("num_threads", _default_n_jobs()))
    merged["num_threads"] = max(1, min(2, merged["num_threads"]))
    if merged.get("bagging_fraction", 1.0) >= 1.0:
        merged["bagging_freq"] = 0
    return merged, rounds


def _dataset(X: np.ndarray, y: np.ndarray, params: Mapping[str, Any], names: list[str]):
    import lightgbm as lgb

    ds_params = {k: params[k] for k in _DATASET_KEYS if k in params}
    ds_params.update({"verbosity": -1, "feature_pre_filter": False})
    return lgb.Dataset(X, label=y, feature_name=names, params=ds_params, free_raw_data=False)


class _SharedBins:
    """One binned LightGBM Dataset over all rows (per distinct binning setting) with row subsets for
    the folds, as ``lgb.cv`` does: bin boundaries are computed once from the feature values (never the
    labels) instead of once per fold, which saves most of the Dataset construction time."""

    def __init__(self, X: np.ndarray, y: np.ndarray, names: list[str]):
        self.X, self.y, self.names = X, y, names
        self._full: dict[tuple, Any] = {}
        self._subsets: dict[tuple, Any] = {}

    def subset(self, native: Mapping[str, Any], rows: np.ndarray, tag: Any):
        key = tuple((k, native.get(k)) for k in _DATASET_KEYS)
        if key not in self._full:
            self._full[key] = _dataset(self.X, self.y, native, self.names).construct()
        if tag is None:  # a one-off row set: not kept (the selection fits dozens of them)
            return self._full[key].subset(np.sort(np.asarray(rows, dtype=np.int32)))
        if (key, tag) not in self._subsets:
            self._subsets[(key, tag)] = self._full[key].subset(np.sort(np.asarray(rows, dtype=np.int32)))
        return self._subsets[(key, tag)]


def _fit(X, y, native: Mapping[str, Any], rounds: int, names: list[str], dataset=None):
    import lightgbm as lgb

    ds = dataset if dataset is not None else _dataset(X, y, native, names)
    return lgb.train(dict(native), ds, num_boost_round=rounds)


# ------------------------------------------------------------------------------------- fit workers

_STATE: dict[str, Any] = {}


def worker_init(matrices, y, names, seed, n_jobs, *, lean: bool = True) -> None:
    """Pool initializer: keep the feature matrices and bin them on first use. In a fresh worker
    (``lean``) LightGBM's optional scikit-learn and pandas integrations are kept out first (see the
    module docstring): a fit worker uses neither."""
    if lean and "lightgbm" not in sys.modules:
        for optional in ("sklearn", "pandas"):
            sys.modules.setdefault(optional, None)  # ``import`` now raises ImportError: LightGBM skips it
    _STATE.clear()
    _STATE.update(matrices=matrices, y=y, names=names, seed=seed, n_jobs=n_jobs,
                  bins={fs: _SharedBins(X, y, names[fs]) for fs, X in matrices.items()})


def clear_state() -> None:
    _STATE.clear()


def fit_task(payload) -> tuple[dict[int, np.ndarray], str | None]:
    """One fit: (predictions per checkpoint, the model text when the payload asks to keep the model).

    ``payload``: (feature set, params, checkpoints, fit rows, predict rows, keep model[, own bins]). With
    ``own bins`` true the fit bins its own rows (a fresh Dataset, as a final fit on every row or a
    temporal fit does); otherwise it is a row subset of the feature set's shared bins (the CV folds)."""
    feature_set, params, checkpoints, fit_rows, predict_rows, keep_model, *rest = payload
    own_bins = bool(rest[0]) if rest else False
    X, y = _STATE["matrices"][feature_set], _STATE["y"]
    native, rounds = resolve_params(params, _STATE["seed"], _STATE["n_jobs"])
    if own_bins:
        booster = _fit(X[fit_rows], y[fit_rows], native, rounds, _STATE["names"][feature_set])
    else:  # a row subset of the shared bins: no copy of the fit rows' values is needed
        dataset = _STATE["bins"][feature_set].subset(native, fit_rows, None)
        booster = _fit(None, None, native, rounds, _STATE["names"][feature_set], dataset)
    predictions = ({k: booster.predict(X[predict_rows], num_iteration=k) for k in checkpoints}
                   if len(predict_rows) else {})
    return predictions, (booster.model_to_string() if keep_model else None)


__all__ = ["BASE_PARAMS", "clear_state", "fit_task", "resolve_params", "worker_init"]
