"""Train and evaluate one LightGBM model per Leefbaarometer outcome from the feature table.

Pure functions, no Dagster. Input is the dbt "training frame": one row per (wijk, outcome_year) with key
columns ``area_code``, ``gemeente_code``, ``outcome_year``, ``feature_year``, numeric feature columns and
the outcome columns ``lbm, fys, onv, soc, vrz, won`` (NaN where absent). Nothing here depends on feature
names; which columns are features is decided by :func:`select_features` from the feature catalog.

Evaluation is grouped by gemeente (see :mod:`wijk_assets.lib.ml.validation`): LightGBM, a mean predictor and a
regularised linear model are scored on the SAME folds. A small fixed grid of LightGBM settings is compared
on those folds (each candidate also at a few boosting-round checkpoints, read from one fitted model, so no
early stopping on test rows); the best by out-of-fold RMSE is refitted on all rows. Because the winner is
picked on the folds it is scored on, its CV score is slightly optimistic; with a dozen configurations the
effect is small, and the untuned reference ("default") can be run on the same folds for comparison.

Determinism: ``deterministic=True``, ``force_col_wise=True``, a fixed thread count (``n_jobs``, default
1, see :func:`_default_n_jobs`) and the seed passed in give an identical model string and identical
predictions for the same input.

The ridge baseline chooses its penalty by grouped inner CV, not RidgeCV's leave-one-out (which, with the
same wijk repeated over years, picks far too little regularisation); see :class:`GroupedRidgeCV`.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from wijk_assets.lib.lgbm_fits import (  # noqa: F401  (re-exported: the project's LightGBM settings and fit)
    BASE_PARAMS,
    _DATASET_KEYS,
    _SharedBins,
    _dataset,
    _default_n_jobs,
    _default_workers,
    _fit,
    resolve_params,
)
from wijk_assets.lib.ml.outer_fits import OuterFits
from wijk_assets.lib.ml.validation import (
    Fold,
    calibration,
    evaluate_predictions,
    fold_assignment,
    grouped_folds,
    temporal_split,
)

OUTCOMES: tuple[str, ...] = ("lbm", "fys", "onv", "soc", "vrz", "won")
OUTCOME_LABELS: dict[str, str] = {
    "lbm": "Leefbaarometer total score",
    "fys": "Leefbaarometer dimension: physical environment",
    "onv": "Leefbaarometer dimension: nuisance and insecurity",
    "soc": "Leefbaarometer dimension: social cohesion",
    "vrz": "Leefbaarometer dimension: amenities",
    "won": "Leefbaarometer dimension: housing stock",
}
KEY_COLUMNS: tuple[str, ...] = ("area_code", "gemeente_code", "outcome_year", "feature_year")
# Leefbaarometer columns: never features (they are, or are derived from, the target).
LEAKAGE_COLUMNS: frozenset[str] = frozenset(OUTCOMES) | {"afw"}
LEAKAGE_SOURCES: frozenset[str] = frozenset({"leefbaarometer", "lbm", "leefbaarometer_3"})


# LightGBM's own defaults (100 rounds, 31 leaves, lr 0.1, no subsampling): the "quick default" reference.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "bagging_freq": 0,
    "lambda_l2": 0.0,
    "max_bin": 255,
    "n_estimators": 100,
}

# The fixed tuning grid. Every candidate is also scored at 1/3 and 2/3 of its n_estimators
# (ROUND_CHECKPOINTS), so the grid covers 4 x 3 = 12 configurations for the price of 4 x n_folds fits.
# Low feature_fraction and bagging_fraction keep a fit on the wide (~500 column), highly redundant
# feature table (one indicator for three age groups, at wijk and gemeente level, and its spread across
# buurten) to a few seconds; in our runs they did not cost accuracy.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"name": "shallow", "num_leaves": 7, "min_data_in_leaf": 100, "feature_fraction": 0.15,
     "bagging_fraction": 0.5, "lambda_l2": 1.0, "learning_rate": 0.1, "n_estimators": 450},
    {"name": "medium", "num_leaves": 15, "min_data_in_leaf": 50, "feature_fraction": 0.15,
     "bagging_fraction": 0.5, "lambda_l2": 1.0, "learning_rate": 0.06, "n_estimators": 450},
    {"name": "medium_sparse", "num_leaves": 15, "min_data_in_leaf": 80, "feature_fraction": 0.1,
     "bagging_fraction": 0.5, "lambda_l2": 5.0, "learning_rate": 0.06, "n_estimators": 450},
    {"name": "wide_sparse", "num_leaves": 31, "min_data_in_leaf": 40, "feature_fraction": 0.1,
     "bagging_fraction": 0.5, "lambda_l2": 5.0, "learning_rate": 0.05, "n_estimators": 400},
)
ROUND_CHECKPOINTS: tuple[float, ...] = (1 / 3, 2 / 3, 1.0)



# ----------------------------------------------------------------------------------- feature selection


@dataclass
class FeatureSelection:
    kept: list[str]
    dropped: pd.DataFrame  # columns: feature, reason

    @property
    def reasons(self) -> dict[str, str]:
        return dict(zip(self.dropped["feature"], self.dropped["reason"]))


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y", "t"}
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return False
    return bool(value)


def select_features(
    frame: pd.DataFrame,
    catalog: pd.DataFrame,
    max_missing: float = 0.5,
    exclude_sensitive: bool = True,
    opt_in: Iterable[str] = (),
    *,
    outcome: str = "lbm",
) -> FeatureSelection:
    """Choose the model features for ``outcome``; report every dropped column with a reason.

    Candidates are the frame's columns other than the keys and the Leefbaarometer columns. A candidate is
    dropped when it is not numeric, not documented in the catalog, documented as coming from the
    Leefbaarometer (target leakage), marked ``sensitive`` in the catalog and not listed in ``opt_in``
    (when ``exclude_sensitive``), missing on more than ``max_missing`` of the rows where ``outcome`` is
    present, or constant on those rows. Catalog entries absent from the frame are reported too.
    """
    if outcome not in frame.columns:
        raise KeyError(f"outcome {outcome!r} not in frame")
    opt_in = set(opt_in)
    cat = catalog.drop_duplicates("feature", keep="last").set_index("feature")
    rows = frame[outcome].notna().to_numpy()
    n_rows = int(rows.sum())
    # first what the catalog and the types decide, column by column; then the rows' missing shares and
    # distinct counts of the remaining columns, taken together (one column at a time cost ~0.2 s a call)
    verdicts: list[tuple[str, str | None]] = []  # (column, reason it is dropped; None: decided by its values)
    entries = cat.to_dict("index")  # feature -> its catalog entry (a lookup per column in the frame: ~0.1 s)
    for col in frame.columns:
        if col in KEY_COLUMNS:
            continue
        if col in LEAKAGE_COLUMNS:
            continue  # outcomes/afw: never candidates (not reported: they are targets, not features)
        entry = entries.get(col)
        if entry is None:
            verdicts.append((col, "not in the feature catalog"))
            continue
        source = str(entry.get("source", "") or "").strip().lower()
        if source in LEAKAGE_SOURCES:
            verdicts.append((col, f"derived from the Leefbaarometer (source {source!r}): target leakage"))
            continue
        if not (pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col])):
            verdicts.append((col, f"not numeric (dtype {frame[col].dtype})"))
            continue
        if exclude_sensitive and _as_bool(entry.get("sensitive", False)) and col not in opt_in:
            verdicts.append((col, "sensitive: excluded unless opted in"))
            continue
        verdicts.append((col, None))
    candidates = [col for col, reason in verdicts if reason is None]
    # The candidates (numeric or boolean) on the outcome's rows as one float matrix, missing as NaN: a
    # column's missing share, and whether it is constant (fewer than two distinct present values, as
    # ``nunique`` counts them: its smallest and largest present values are equal, or there are none).
    # Integers are compared as float64, exact below 2**53. ``nunique`` per column took ~0.1 s a call.
    values = frame.loc[rows, candidates].to_numpy(dtype=np.float64, na_value=np.nan)
    missing_share = (pd.Series(np.isnan(values).mean(axis=0), index=candidates) if n_rows
                     else pd.Series(1.0, index=candidates))
    constant = dict(zip(candidates, ~(np.fmin.reduce(values, axis=0, initial=np.inf)
                                      < np.fmax.reduce(values, axis=0, initial=-np.inf))))
    kept: list[str] = []
    dropped: list[tuple[str, str]] = []
    for col, reason in verdicts:
        if reason is None:
            missing = float(missing_share[col])
            if missing > max_missing:
                reason = f"missing on {missing:.0%} of the {n_rows} rows with {outcome} (max {max_missing:.0%})"
            elif constant[col]:
                reason = f"constant on the rows with {outcome}"
        if reason is None:
            kept.append(col)
        else:
            dropped.append((col, reason))
    for feature in cat.index:
        if feature not in frame.columns:
            dropped.append((feature, "in the catalog but not in the frame"))
    return FeatureSelection(kept=kept, dropped=pd.DataFrame(dropped, columns=["feature", "reason"]))


# ------------------------------------------------------------------------------------------ params


def _candidates(params) -> tuple[list[dict[str, Any]], bool]:
    """(candidates, use_checkpoints). None -> the default grid; a mapping -> that one setting as given."""
    if params is None:
        return [dict(p) for p in DEFAULT_GRID], True
    if isinstance(params, Mapping):
        return [dict(params)], False
    candidates = [dict(p) for p in params]
    if not candidates:
        raise ValueError("empty parameter grid")
    return candidates, True


def _checkpoints(rounds: int, use: bool) -> list[int]:
    if not use:
        return [rounds]
    return sorted({max(1, int(round(rounds * c))) for c in ROUND_CHECKPOINTS})


# ------------------------------------------------------------------------------------ matrices, hashes


def feature_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The float64, C-ordered matrix LightGBM sees (NaN = missing)."""
    return np.ascontiguousarray(frame.loc[:, list(features)].to_numpy(dtype=np.float64, na_value=np.nan))


def data_version(X: np.ndarray, y: np.ndarray, features: Sequence[str]) -> str:
    """sha256 of the training matrix bytes (features in order, then X, then y)."""
    h = hashlib.sha256()
    h.update("\n".join(features).encode("utf-8"))
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.float64).tobytes())
    return h.hexdigest()


def model_version_of(model_string: str) -> str:
    """The version of a model: sha256 (16 hex digits) of its LightGBM text without the thread count.

    The text records ``num_threads`` among its parameters, the only line in which fits with 1 and 2
    threads differ (their trees are identical, see :func:`_default_n_jobs`): the same training data,
    settings and seed give the same version on any machine."""
    text = "\n".join(line for line in model_string.splitlines() if not line.startswith("[num_threads:"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _model_feature_names(features: Sequence[str]) -> list[str]:
    bad = set('"\\,:[]{}')
    if all(f and not (set(f) & bad) and " " not in f for f in features):
        return list(features)
    return [f"Column_{i}" for i in range(len(features))]


# ------------------------------------------------------------------------------------------ baselines


class _DropDuplicateColumns(BaseEstimator, TransformerMixin):
    """Drop exact duplicate columns (e.g. the missing indicators of indicators that are missing together):
    a column goes when an earlier column holds the same bytes; the first one stays."""

    def fit(self, X, y=None):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] < 2 or X.shape[0] == 0:
            self.keep_ = np.arange(X.shape[1] if X.ndim == 2 else 0, dtype=np.int64)
            return self
        dropped = np.zeros(X.shape[1], dtype=bool)
        for group in _duplicate_candidates(X):
            _drop_repeats(X, group, dropped)
        self.keep_ = np.flatnonzero(~dropped).astype(np.int64)
        return self

    def transform(self, X):
        X = np.asarray(X)
        return X if self.keep_.size == X.shape[1] else X[:, self.keep_]


def _duplicate_candidates(X: np.ndarray) -> list[np.ndarray]:
    """Groups of columns that may be exact duplicates of each other (each group ascending, >= 2 columns).

    Every column is projected on one fixed random row vector (one pass over ``X`` in its row order;
    copying each column out of a row-major matrix, as the plain loop does, reads it with a stride of a
    whole row: ~0.2 s per fit on the national lbm table). Equal columns get projections equal up to
    rounding, which is below ``n * eps * (|w| @ |column|)``; neighbours in projection order within 1e-9
    of that scale (at least 1e-300, for values near the underflow) form a group, so two equal columns
    always share one. Columns with a non-finite projection (a NaN, an infinity, an overflow) form one
    group of their own. Callers confirm every candidate exactly (:func:`_drop_repeats`)."""
    n = X.shape[0]
    weights = np.random.default_rng(0).standard_normal(n)
    scale = np.zeros(X.shape[1])
    with np.errstate(all="ignore"):
        projection = weights @ X
        for start in range(0, n, 4096):  # |w| @ |X| in row blocks: no full-size temporary
            block = slice(start, start + 4096)
            scale += np.abs(weights[block]) @ np.abs(X[block])
    scale = np.maximum(scale, 1e-300)
    finite = np.isfinite(projection) & np.isfinite(scale)
    groups = []
    if (~finite).sum() >= 2:
        groups.append(np.flatnonzero(~finite))
    columns = np.flatnonzero(finite)
    order = columns[np.argsort(projection[columns], kind="stable")]
    start, reach = 0, scale[order[0]] if order.size else 0.0
    for k in range(1, order.size + 1):
        if k < order.size:
            gap = projection[order[k]] - projection[order[k - 1]]
            if gap <= 1e-9 * max(reach, scale[order[k]]):
                reach = max(reach, scale[order[k]])
                continue
        if k - start >= 2:
            groups.append(np.sort(order[start:k]))
        if k < order.size:
            start, reach = k, scale[order[k]]
    return groups


def _drop_repeats(X: np.ndarray, columns: np.ndarray, dropped: np.ndarray) -> None:
    """Mark in ``dropped`` every column of ``columns`` (ascending) that repeats an earlier one of them
    byte for byte (compared as the values, so a column with a NaN is never a repeat)."""
    block = np.ascontiguousarray(X[:, columns].T)  # the group's columns as rows (a gather in X's row order)
    seen: dict[bytes, int] = {}
    for position, j in enumerate(columns):
        column = block[position]
        key = hashlib.blake2b(column.tobytes(), digest_size=16).digest()
        if key in seen and np.array_equal(block[seen[key]], column):
            dropped[j] = True
            continue
        seen.setdefault(key, position)


class MedianImputer(BaseEstimator, TransformerMixin):
    """Median imputation plus missing indicators; same output as
    ``SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=False)`` (columns with no
    observed value are dropped; one indicator per column that had a missing value in fit), but using
    ``np.nanmedian``, which is about ten times faster on the wide feature table."""

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        observed = ~np.isnan(X)
        self.keep_ = np.flatnonzero(observed.any(axis=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self.medians_ = np.nanmedian(X[:, self.keep_], axis=0) if self.keep_.size else np.zeros(0)
        self.indicator_ = np.flatnonzero((~observed).any(axis=0))
        return self

    def transform(self, X):
        # Written into one preallocated output, the missing mask taken once and gathered as booleans (not
        # float64 columns), no column gather when every column is kept: the same values as
        # np.hstack([np.where(nan, medians, kept), indicators]) in ~40 % of its time on the wide table.
        X = np.asarray(X, dtype=np.float64)
        missing = np.isnan(X)
        k = self.keep_.size
        whole = k == X.shape[1]  # every column had an observed value in fit: nothing to drop
        out = np.empty((X.shape[0], k + self.indicator_.size), dtype=np.float64)
        filled = out[:, :k]
        filled[...] = X if whole else X[:, self.keep_]
        np.copyto(filled, self.medians_, where=missing if whole else missing[:, self.keep_])
        out[:, k:] = missing[:, self.indicator_]
        return out


class GroupedRidgeCV(BaseEstimator, RegressorMixin):
    """Ridge regression whose alpha is chosen by CROSS-VALIDATION OVER GIVEN (grouped) FOLDS.

    Same model and selection rule as ``sklearn.linear_model.RidgeCV(alphas, cv=folds)`` (intercept
    fitted, alpha maximising the mean R² over the folds, ties -> smaller alpha), computed with one
    eigendecomposition per fold instead of one solve per alpha per fold, so a wide feature table costs
    seconds. Why not RidgeCV's default efficient leave-one-out: the training frame repeats each wijk over
    several years (with identical feature rows for years sharing a feature year), so leave-one-out picks
    an alpha that is far too small and the "baseline" overfits (grouped-CV R² 0.49 vs 0.62 for lbm).
    ``cv``: a list of (train, test) position arrays; None -> three contiguous folds (pass grouped folds).
    """

    def __init__(self, alphas=tuple(np.logspace(-1, 5, 13)), cv=None):
        self.alphas = alphas
        self.cv = cv

    @staticmethod
    def _centered_system(S, s, Xy, ysum, n):
        """Centred normal equations of ``n`` rows from their raw sums: ``S`` = X'X, ``s`` = X'1,
        ``Xy`` = X'y, ``ysum`` = 1'y."""
        x_mean = s / n
        y_mean = float(ysum / n)
        G = S - n * np.outer(x_mean, x_mean)
        b = Xy - n * x_mean * y_mean
        return G, b, x_mean, y_mean

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        alphas = np.asarray(sorted(float(a) for a in self.alphas))
        folds = self.cv
        if folds is None:
            edges = np.linspace(0, len(y), 4).astype(int)
            positions = np.arange(len(y))
            folds = [(np.setdiff1d(positions, positions[a:b]), positions[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        # Raw sums of all rows once; a fold's training part is all rows minus its test part, so each fold
        # costs the Gram matrix of its (smaller) test part instead of its training part, and the final fit
        # none. The columns come standardised from the pipeline, so centring by subtraction loses nothing.
        S, s, Xy, ysum, n = X.T @ X, X.sum(axis=0), X.T @ y, float(y.sum()), len(y)
        scores = np.zeros((len(folds), alphas.size))
        for i, (train, test) in enumerate(folds):
            Xte = X[test]
            if len(train) + len(test) == n and _partitions(np.concatenate([train, test]), n):
                G, b, x_mean, y_mean = self._centered_system(
                    S - Xte.T @ Xte, s - Xte.sum(axis=0), Xy - Xte.T @ y[test], ysum - float(y[test].sum()), len(train))
            else:  # folds that do not partition the rows: sums of the training part itself
                Xtr = X[train]
                G, b, x_mean, y_mean = self._centered_system(
                    Xtr.T @ Xtr, Xtr.sum(axis=0), Xtr.T @ y[train], float(y[train].sum()), len(train))
            evals, evecs = np.linalg.eigh(G)
            evals = np.clip(evals, 0.0, None)
            proj = evecs.T @ b
            # One coefficient vector per alpha, back in the feature space (p x n_alphas): the test rows are
            # multiplied by that thin matrix once instead of being rotated into the eigenbasis (p x p).
            coefs = evecs @ (proj[:, None] / (evals[:, None] + alphas[None, :]))
            pred = (Xte - x_mean) @ coefs + y_mean
            yt = y[test]
            ss_tot = float(np.sum((yt - yt.mean()) ** 2))
            ss_res = np.sum((yt[:, None] - pred) ** 2, axis=0)
            scores[i] = 1.0 - ss_res / ss_tot if ss_tot > 0 else -ss_res
        mean_scores = scores.mean(axis=0)
        best = int(np.argmax(mean_scores))  # first maximum = smallest alpha among ties
        self.alpha_ = float(alphas[best])
        self.cv_scores_ = dict(zip(alphas.tolist(), mean_scores.tolist()))
        G, b, x_mean, y_mean = self._centered_system(S, s, Xy, ysum, n)
        self.coef_ = np.linalg.solve(G + self.alpha_ * np.eye(G.shape[0]), b)
        self.intercept_ = y_mean - float(x_mean @ self.coef_)
        return self

    def predict(self, X):
        return np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_


def _partitions(positions: np.ndarray, n: int) -> bool:
    """Whether ``positions`` holds every row position 0..n-1 exactly once (a count, not a sort)."""
    positions = np.asarray(positions)
    if positions.size != n or (n and (positions.min() < 0 or positions.max() >= n)):
        return False
    return bool((np.bincount(positions, minlength=n) == 1).all())


def ridge_pipeline(cv=None) -> Pipeline:
    """Median imputation + missing indicators + standardisation + ridge with alpha chosen on ``cv``
    (grouped inner folds; see :class:`GroupedRidgeCV`)."""
    return Pipeline(
        [
            ("impute", MedianImputer()),
            ("dedupe", _DropDuplicateColumns()),
            ("scale", StandardScaler()),
            ("ridge", GroupedRidgeCV(cv=cv)),
        ]
    )


def _fit_predict_ridge(X_train, y_train, X_test, groups_train, seed: int) -> np.ndarray:
    """Fit the ridge baseline on the training rows (alpha by 3 grouped inner folds) and predict."""
    inner = grouped_folds(pd.DataFrame({"g": np.asarray(groups_train)}), "g", n_splits=3, seed=seed)
    # BLAS on one thread: the matrices are small, and a second OpenBLAS thread on a busy 2-core machine
    # made the eigendecomposition ten times slower in our measurements.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", UserWarning)  # all-NaN columns in a fold are dropped by the imputer
        warnings.simplefilter("ignore", RuntimeWarning)
        model = ridge_pipeline(cv=inner).fit(X_train, y_train)
        return model.predict(X_test)


# ----------------------------------------------------------------------------------------- evaluation

# How a cross-validation's fits were obtained: fitted here, or the model selection's own outer-fold fits
# of the same setting on the same folds (identical fits; see wijk_assets.lib.ml.outer_fits).
FITS_FITTED = "fitted"
FITS_FROM_SELECTION = "model selection's outer folds"


@dataclass
class EvaluationResult:
    outcome: str
    features: list[str]
    folds: list[Fold]
    best_params: dict[str, Any]  # the winning candidate (user-level keys, with n_estimators)
    metrics: dict[str, dict[str, float]]  # model -> r2/mae/rmse/n/calibration_slope/intercept
    oof: pd.DataFrame  # keys, fold, actual, lightgbm, ridge, mean
    tuning: pd.DataFrame  # candidate, n_estimators, r2, mae, rmse, selected
    calibration_table: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    fold_models: list[lgb.Booster] | None = None  # only for a single setting (see evaluate)
    fits_from: str = FITS_FITTED  # or FITS_FROM_SELECTION


def _outcome_rows(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """The rows of ``frame`` with ``outcome`` present, numbered from 0; ``frame`` itself (not a copy) when
    it is that already (readers only: nothing here writes to it)."""
    if outcome not in frame.columns:
        raise KeyError(f"outcome {outcome!r} not in frame")
    present = frame[outcome].notna().to_numpy()
    if present.all() and frame.index.equals(pd.RangeIndex(len(frame))):
        return frame
    return frame.loc[present].reset_index(drop=True)


def evaluate(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    seed: int = 0,
    *,
    n_splits: int = 5,
    folds: Sequence[Fold] | None = None,
    n_jobs: int | None = None,
    baselines: bool = True,
    train_mask: np.ndarray | None = None,
    baseline_features: Sequence[str] | None = None,
    outer_fits: OuterFits | None = None,
    outer_fits_from: str = "",
) -> EvaluationResult:
    """Grouped-CV metrics for LightGBM and the baselines on the same folds.

    Only rows where ``outcome`` is present are used; ``folds`` (if given) are positions in that subset.
    ``params``: None -> tune over :data:`DEFAULT_GRID`; a mapping -> evaluate exactly that setting;
    a sequence of mappings -> tune over that grid.

    ``train_mask`` (one bool per outcome row): LightGBM trains only on the masked rows of each fold
    (e.g. exact area matches) but predicts EVERY test row, so the out-of-fold table covers all rows.
    The baselines are fixed reference points: they train on all rows of the fold, on
    ``baseline_features`` (default: ``features``). With a single setting (a mapping) the fold models are
    returned in ``fold_models``: they produced the out-of-fold predictions, so nothing is refitted for
    the drivers.

    ``outer_fits`` (a single setting only): the model selection's fits of this very setting on these
    folds (see :mod:`wijk_assets.lib.ml.outer_fits`; the caller checks they were made from the same
    inputs). They are used instead of fitting again when their fold assignment is this one;
    ``fits_from`` says which way the fits were obtained (``outer_fits_from`` names where given fits came
    from, default the model selection).
    """
    features = list(features)
    if not features:
        raise ValueError("no features")
    n_jobs = max(1, min(2, n_jobs if n_jobs is not None else _default_n_jobs()))
    data = _outcome_rows(frame, outcome)
    X = feature_matrix(data, features)
    y = data[outcome].to_numpy(dtype=np.float64)
    folds = list(folds) if folds is not None else grouped_folds(data, "gemeente_code", n_splits, seed)
    groups = data["gemeente_code"].to_numpy()
    names = _model_feature_names(features)
    mask = _train_mask(train_mask, len(data))
    candidates, use_checkpoints = _candidates(params)
    resolved = [resolve_params(c, seed, n_jobs) for c in candidates]
    configs = [(ci, k) for ci, (_, rounds) in enumerate(resolved) for k in _checkpoints(rounds, use_checkpoints)]
    oof = {cfg: np.full(len(data), np.nan) for cfg in configs}
    fold_of = fold_assignment(len(data), folds)

    t0 = time.perf_counter()
    given = given_oof = None
    if outer_fits is not None and len(resolved) == 1 and not use_checkpoints and outer_fits.apply_to(fold_of):
        given = outer_fits.boosters()
        if outer_fits.predictions is not None and np.shape(outer_fits.predictions) == (len(data),):
            given_oof = np.asarray(outer_fits.predictions, dtype=np.float64)  # their own (see outer_fits)
    bins = _SharedBins(X, y, names) if given is None else None
    fold_models: list[lgb.Booster] = []
    for fold_no, (train, test) in enumerate(folds):
        fit_rows = train[mask[train]]
        if fit_rows.size == 0:
            raise ValueError(f"{outcome}: fold {fold_no} has no training row inside the training mask")
        for ci, (native, rounds) in enumerate(resolved):
            booster = (given[fold_no] if given is not None else
                       _fit(X[fit_rows], y[fit_rows], native, rounds, names, bins.subset(native, fit_rows, fold_no)))
            for k in _checkpoints(rounds, use_checkpoints):
                oof[(ci, k)][test] = given_oof[test] if given_oof is not None else booster.predict(X[test], num_iteration=k)
            if len(resolved) == 1 and not use_checkpoints:
                fold_models.append(booster)
    t_lgb = time.perf_counter() - t0

    tuning_rows = []
    for ci, k in configs:
        m = evaluate_predictions(y, oof[(ci, k)])
        tuning_rows.append(
            {"candidate": candidates[ci].get("name", f"candidate_{ci}"), "candidate_index": ci, "n_estimators": k,
             "r2": m["r2"], "mae": m["mae"], "rmse": m["rmse"]}
        )
    tuning = pd.DataFrame(tuning_rows)
    best_pos = int(tuning["rmse"].to_numpy().argmin())  # first minimum -> deterministic tie-break
    tuning["selected"] = False
    tuning.loc[best_pos, "selected"] = True
    best_ci, best_k = configs[best_pos]
    best_params = {**candidates[best_ci], "n_estimators": int(best_k)}
    pred_lgb = oof[(best_ci, best_k)]

    oof_frame = data[[c for c in KEY_COLUMNS if c in data.columns]].copy()
    oof_frame["fold"] = fold_of
    oof_frame["actual"] = y
    oof_frame["lightgbm"] = pred_lgb
    metrics = {"lightgbm": evaluate_predictions(y, pred_lgb)}
    seconds = {"lightgbm_cv": t_lgb}

    if baselines:
        pred_mean = np.full(len(data), np.nan)
        pred_ridge = np.full(len(data), np.nan)
        X_base = X if baseline_features is None else feature_matrix(data, baseline_features)
        t1 = time.perf_counter()
        for train, test in folds:
            pred_mean[test] = float(np.mean(y[train]))
            if given is None:
                pred_ridge[test] = _fit_predict_ridge(X_base[train], y[train], X_base[test], groups[train], seed)
        if given is not None:
            pred_ridge = np.asarray(outer_fits.ridge, dtype=np.float64).copy()
        seconds["ridge_cv"] = time.perf_counter() - t1
        oof_frame["ridge"] = pred_ridge
        oof_frame["mean"] = pred_mean
        metrics["ridge"] = evaluate_predictions(y, pred_ridge)
        metrics["mean"] = evaluate_predictions(y, pred_mean)

    return EvaluationResult(
        outcome=outcome,
        features=features,
        folds=folds,
        best_params=best_params,
        metrics=metrics,
        oof=oof_frame,
        tuning=tuning,
        calibration_table=calibration(y, pred_lgb)["table"],
        seconds=seconds,
        fold_models=fold_models or None,
        fits_from=(outer_fits_from or FITS_FROM_SELECTION) if given is not None else FITS_FITTED,
    )


def _train_mask(train_mask: np.ndarray | None, n_rows: int) -> np.ndarray:
    if train_mask is None:
        return np.ones(n_rows, dtype=bool)
    mask = np.asarray(train_mask, dtype=bool)
    if mask.shape != (n_rows,):
        raise ValueError(f"train_mask has shape {mask.shape}, the outcome rows are {n_rows}")
    if not mask.any():
        raise ValueError("train_mask selects no row")
    return mask


def temporal_variants(data: pd.DataFrame, seed: int, n_splits: int = 5) -> tuple[Any, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(the temporal split, {variant: (training rows, test rows)}) of :func:`temporal_evaluation`, on the
    outcome's rows ``data`` (positions)."""
    split = temporal_split(data, "outcome_year")
    groups = data["gemeente_code"].to_numpy()
    held_out = set(groups[grouped_folds(data, "gemeente_code", n_splits, seed)[0][1]])
    in_held_out = np.isin(groups, list(held_out))
    return split, {
        "all_wijken": (split.train_idx, split.test_idx),
        "unseen_gemeenten": (split.train_idx[~in_held_out[split.train_idx]], split.test_idx[in_held_out[split.test_idx]]),
    }


def temporal_evaluation(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    params: Mapping[str, Any],
    seed: int = 0,
    *,
    n_jobs: int | None = None,
    baselines: bool = True,
    n_splits: int = 5,
    train_mask: np.ndarray | None = None,
    baseline_features: Sequence[str] | None = None,
    precomputed: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Fit on the outcome years before the latest one and score the latest year.

    Two variants: ``all_wijken`` (every wijk; the same wijk is in train via its earlier years, so this
    mostly measures how stable a wijk's score is) and ``unseen_gemeenten`` (train on earlier years of the
    gemeenten outside the first grouped fold, test on the latest year of that fold's gemeenten: new year
    AND new gemeenten). LightGBM uses ``params`` and trains on the ``train_mask`` rows only; baselines
    as in :func:`evaluate` (all training rows, ``baseline_features``).

    ``precomputed`` (variant -> {"lightgbm": predictions, "ridge": predictions} on the variant's test
    rows): those fits were made elsewhere (:mod:`wijk_assets.lib.ml.model_fits`, in worker processes) on
    exactly these rows and settings; they are scored instead of fitted again.
    """
    n_jobs = max(1, min(2, n_jobs if n_jobs is not None else _default_n_jobs()))
    data = _outcome_rows(frame, outcome)
    if data["outcome_year"].nunique() < 2:
        return {"available": False, "reason": f"{outcome} has fewer than two outcome years"}
    split, variants = temporal_variants(data, seed, n_splits)
    X = feature_matrix(data, features)
    y = data[outcome].to_numpy(dtype=np.float64)
    groups = data["gemeente_code"].to_numpy()
    X_base = X if baseline_features is None else feature_matrix(data, baseline_features)
    mask = _train_mask(train_mask, len(data))
    native, rounds = resolve_params(params, seed, n_jobs)
    names = _model_feature_names(features)

    out: dict[str, Any] = {"available": True, "train_years": list(split.train_years), "test_year": split.test_year}
    for name, (tr, te) in variants.items():
        if tr.size == 0 or te.size == 0:
            continue
        fit_rows = tr[mask[tr]]
        if fit_rows.size == 0:
            continue
        given = (precomputed or {}).get(name) or {}
        pred = given.get("lightgbm")
        if pred is None:
            pred = _fit(X[fit_rows], y[fit_rows], native, rounds, names).predict(X[te])
        res: dict[str, Any] = {
            "n_train": int(fit_rows.size),
            "n_test": int(te.size),
            "lightgbm": evaluate_predictions(y[te], pred),
        }
        if baselines:
            ridge = given.get("ridge")
            if ridge is None:
                ridge = _fit_predict_ridge(X_base[tr], y[tr], X_base[te], groups[tr], seed)
            res["ridge"] = evaluate_predictions(y[te], ridge)
            res["mean"] = evaluate_predictions(y[te], np.full(te.size, y[tr].mean()))
        out[name] = res
    # top-level shortcut to the all-wijken variant (the plain "train < latest, test = latest" split)
    for key in ("n_train", "n_test", "lightgbm", "ridge", "mean"):
        if key in out.get("all_wijken", {}):
            out[key] = out["all_wijken"][key]
    return out


# --------------------------------------------------------------------------------------------- artifact


@dataclass
class ModelArtifact:
    outcome: str
    booster: lgb.Booster
    features: list[str]
    params: dict[str, Any]  # winning candidate, user-level keys incl. n_estimators
    native_params: dict[str, Any]  # exactly what lgb.train received (incl. seed, num_threads)
    seed: int
    data_version: str
    lightgbm_version: str
    n_rows: int
    cv_metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    temporal_metrics: dict[str, Any]
    oof_predictions: pd.DataFrame
    calibration_table: pd.DataFrame
    tuning: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    fold_models: list[lgb.Booster] | None = None  # the CV's own fold models (single setting only)
    cv_fits_from: str = FITS_FITTED  # how the CV's fits were obtained (see evaluate's ``fits_from``)

    @property
    def model_string(self) -> str:
        return self.booster.model_to_string()

    @property
    def oof_rmse(self) -> float:
        """RMSE of the out-of-fold residuals: the CV error band used to flag areas."""
        return float(self.cv_metrics["rmse"])

    def predict(self, frame_or_X) -> np.ndarray:
        X = feature_matrix(frame_or_X, self.features) if isinstance(frame_or_X, pd.DataFrame) else frame_or_X
        return self.booster.predict(np.asarray(X, dtype=np.float64))

    def metadata(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "features": list(self.features),
            "params": _jsonable(self.params),
            "native_params": _jsonable(self.native_params),
            "seed": int(self.seed),
            "data_version": self.data_version,
            "lightgbm_version": self.lightgbm_version,
            "n_rows": int(self.n_rows),
            "cv_metrics": _jsonable(self.cv_metrics),
            "baseline_metrics": _jsonable(self.baseline_metrics),
            "temporal_metrics": _jsonable(self.temporal_metrics),
            "calibration_table": _jsonable(self.calibration_table.to_dict(orient="records")),
            "tuning": _jsonable(self.tuning.to_dict(orient="records")),
            "timings": _jsonable(self.timings),
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def train_outcome(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    seed: int = 0,
    *,
    n_splits: int = 5,
    n_jobs: int | None = None,
    temporal: bool = True,
    baselines: bool = True,
    train_mask: np.ndarray | None = None,
    baseline_features: Sequence[str] | None = None,
    outer_fits: OuterFits | None = None,
    fitted: Any = None,
) -> ModelArtifact:
    """Evaluate (grouped CV, tuning as in :func:`evaluate`), then refit the winner on every row with the
    outcome present (inside ``train_mask``, see :func:`evaluate`); add the temporal check (latest
    outcome year held out).

    ``fitted`` (one setting only): this model's LightGBM fits made in worker processes by
    :func:`wijk_assets.lib.ml.model_fits.train_model` (a ``ModelFits``: cross-validation fits unless
    handed over, the final model's text, the temporal variants' predictions); the same fits, so the same
    model, predictions and metrics."""
    features = list(features)
    n_jobs = max(1, min(2, n_jobs if n_jobs is not None else _default_n_jobs()))
    t0 = time.perf_counter()
    if fitted is not None and not isinstance(params, Mapping):
        raise ValueError("fitted: worker fits exist for one setting only, not for a grid of settings")
    data = _outcome_rows(frame, outcome)  # once: evaluate and the temporal check take these rows as they are
    result = evaluate(data, outcome, features, params, seed, n_splits=n_splits, n_jobs=n_jobs, baselines=baselines,
                      train_mask=train_mask, baseline_features=baseline_features,
                      outer_fits=(fitted.outer_fits or outer_fits) if fitted else outer_fits,
                      outer_fits_from=FITS_FITTED if fitted is not None and fitted.outer_fits is not None else "")
    t1 = time.perf_counter()
    mask = _train_mask(train_mask, len(data))
    X = feature_matrix(data, features)[mask]
    y = data[outcome].to_numpy(dtype=np.float64)[mask]
    native, rounds = resolve_params(result.best_params, seed, n_jobs)
    booster = (lgb.Booster(model_str=fitted.final_model) if fitted is not None
               else _fit(X, y, native, rounds, _model_feature_names(features)))
    t2 = time.perf_counter()
    temporal_metrics = (
        temporal_evaluation(data, outcome, features, result.best_params, seed, n_jobs=n_jobs, baselines=baselines,
                            train_mask=train_mask, baseline_features=baseline_features,
                            precomputed=fitted.temporal if fitted is not None else None)
        if temporal
        else {"available": False, "reason": "not requested"}
    )
    t3 = time.perf_counter()
    return ModelArtifact(
        outcome=outcome,
        booster=booster,
        features=features,
        params=dict(result.best_params),
        # a final fit in a worker ran with the worker's thread count (the trees do not depend on it)
        native_params={**native, "n_estimators": rounds,
                       **({"num_threads": int(booster.params.get("num_threads", native["num_threads"]))}
                          if fitted is not None else {})},
        seed=int(seed),
        data_version=data_version(X, y, features),
        lightgbm_version=lgb.__version__,
        n_rows=int(mask.sum()),
        cv_metrics=result.metrics["lightgbm"],
        baseline_metrics={k: v for k, v in result.metrics.items() if k != "lightgbm"},
        temporal_metrics=temporal_metrics,
        oof_predictions=result.oof,
        calibration_table=result.calibration_table,
        tuning=result.tuning,
        fold_models=result.fold_models,
        cv_fits_from=result.fits_from,
        timings={
            # (fits the model selection made and handed over took no time of this step)
            **({"fits_in_workers_seconds": fitted.seconds} if fitted is not None and fitted.seconds else {}),
            "cv_seconds": t1 - t0,
            "final_fit_seconds": t2 - t1,
            "temporal_seconds": t3 - t2,
            "total_seconds": t3 - t0,
            **{f"{k}_seconds": v for k, v in result.seconds.items()},
        },
    )


# ------------------------------------------------------------------------------------------ save/load

MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
OOF_FILE = "oof_predictions.csv"


def save_artifact(artifact: ModelArtifact, directory: str | Path) -> Path:
    """Write ``model.txt`` (LightGBM text model), ``metadata.json`` and ``oof_predictions.csv``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).write_text(artifact.model_string, encoding="utf-8")
    (directory / METADATA_FILE).write_text(
        json.dumps(artifact.metadata(), indent=2, sort_keys=True, allow_nan=False), encoding="utf-8"
    )
    artifact.oof_predictions.to_csv(directory / OOF_FILE, index=False)
    return directory


def load_artifact(directory: str | Path) -> ModelArtifact:
    directory = Path(directory)
    meta = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    booster = lgb.Booster(model_str=(directory / MODEL_FILE).read_text(encoding="utf-8"))
    oof_path = directory / OOF_FILE
    oof = pd.read_csv(oof_path, dtype={"area_code": str, "gemeente_code": str}) if oof_path.is_file() else pd.DataFrame()
    return ModelArtifact(
        outcome=meta["outcome"],
        booster=booster,
        features=list(meta["features"]),
        params=meta["params"],
        native_params=meta.get("native_params", {}),
        seed=int(meta["seed"]),
        data_version=meta["data_version"],
        lightgbm_version=meta["lightgbm_version"],
        n_rows=int(meta.get("n_rows", 0)),
        cv_metrics=meta["cv_metrics"],
        baseline_metrics=meta.get("baseline_metrics", {}),
        temporal_metrics=meta.get("temporal_metrics", {}),
        oof_predictions=oof,
        calibration_table=pd.DataFrame(meta.get("calibration_table", [])),
        tuning=pd.DataFrame(meta.get("tuning", [])),
        timings=meta.get("timings", {}),
    )


# ------------------------------------------------------------------------------------------ fold models
#
# The published prediction of a wijk is its OUT-OF-FOLD prediction (the model never saw the wijk's
# gemeente). Its drivers must explain that same number, so the fold models are kept: SHAP of the model
# of the wijk's fold adds up to exactly the published prediction.

FOLD_DIR = "folds"


def fit_fold_models(
    frame: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    params: Mapping[str, Any],
    fold_of: Sequence[int],
    seed: int = 0,
    *,
    n_jobs: int | None = None,
) -> list[lgb.Booster]:
    """Refit the winning setting ``params`` on each fold's training rows, as :func:`evaluate` did.

    ``fold_of`` gives each row of the outcome subset (``frame`` rows with ``outcome`` present, in
    order, as in ``ModelArtifact.oof_predictions["fold"]``) its test fold. The bins are shared over all
    rows as in :func:`evaluate`, so with the same seed the fold models reproduce the stored out-of-fold
    predictions (checked by :func:`fold_predictions` callers).
    """
    features = list(features)
    n_jobs = max(1, min(2, n_jobs if n_jobs is not None else _default_n_jobs()))
    data = _outcome_rows(frame, outcome)
    fold_of = np.asarray(fold_of, dtype=np.int64)
    if fold_of.size != len(data):
        raise ValueError(f"fold_of has {fold_of.size} entries, the {outcome} rows are {len(data)}")
    X = feature_matrix(data, features)
    y = data[outcome].to_numpy(dtype=np.float64)
    names = _model_feature_names(features)
    native, rounds = resolve_params(params, seed, n_jobs)
    bins = _SharedBins(X, y, names)
    boosters = []
    for fold_no in range(int(fold_of.max()) + 1):
        train = np.flatnonzero(fold_of != fold_no)
        boosters.append(_fit(X[train], y[train], native, rounds, names, bins.subset(native, train, fold_no)))
    return boosters


def fold_predictions(boosters: Sequence[lgb.Booster], X: np.ndarray, fold_of: Sequence[int]) -> np.ndarray:
    """Each row predicted by the model of its own fold (the out-of-fold prediction)."""
    fold_of = np.asarray(fold_of, dtype=np.int64)
    out = np.full(len(fold_of), np.nan)
    for fold_no, booster in enumerate(boosters):
        rows = np.flatnonzero(fold_of == fold_no)
        if rows.size:
            out[rows] = booster.predict(np.asarray(X, dtype=np.float64)[rows])
    return out


def save_fold_models(boosters: Sequence[lgb.Booster], directory: str | Path) -> Path:
    """Write ``folds/fold_<k>.txt`` beside the artifact's ``model.txt``."""
    target = Path(directory) / FOLD_DIR
    target.mkdir(parents=True, exist_ok=True)
    for fold_no, booster in enumerate(boosters):
        (target / f"fold_{fold_no}.txt").write_text(booster.model_to_string(), encoding="utf-8")
    return target


def load_fold_models(directory: str | Path) -> list[lgb.Booster]:
    """The fold models of an artifact folder, in fold order; an error names the folder if none exist."""
    target = Path(directory) / FOLD_DIR
    files = sorted(target.glob("fold_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise FileNotFoundError(
            f"no fold models in {target}: re-materialise models/liveability_model (it writes folds/fold_<k>.txt)"
        )
    return [lgb.Booster(model_str=f.read_text(encoding="utf-8")) for f in files]
