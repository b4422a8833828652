"""What changed with a new release: indicator values, model predictions, feature drift, model fit.

Pure pandas/numpy/scipy functions (no Dagster, no DuckDB) so the ML/reporting assets and notebooks share
one definition of "changed". Inputs are ordinary frames:

* **long**: one row per area x year x indicator, columns ``area_code``, ``release_year``,
  ``indicator``, ``value`` (the names are parameters);
* **wide**: one row per area x year, one column per indicator (``key_indicators`` name the columns).

Values are coerced to numbers the way the raw layer stores them: ``'    78.4'`` -> 78.4, CBS's
suppression marker ``'.'`` and empty cells -> NaN.

Drift thresholds (defaults, all parameters):

* PSI (population stability index, 10 quantile bins of the previous year): < 0.1 stable,
  0.1-0.25 moderate, >= 0.25 major; flagged from ``psi_threshold`` = 0.2.
* SMD (standardised mean difference, pooled SD): flagged from ``|SMD|`` >= 0.25.
* KS: reported with its p-value; flagged only when p < ``ks_alpha`` AND the statistic is at least
  ``ks_min_statistic`` (0.1) -- with ~3,000 wijken a shift too small to matter is still "significant".
* null ratio: flagged when it moves by ``null_threshold`` (0.1) or more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

PSI_EPSILON = 1e-4  # stands in for an empty bin, so PSI stays finite


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def to_number(values: pd.Series) -> pd.Series:
    """Numbers from raw cell text: strip padding, '.'/''/'NA' -> NaN. Numeric input passes through."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    return pd.to_numeric(text, errors="coerce").astype("float64")


def _is_long(frame: pd.DataFrame, indicator_col: str, value_col: str) -> bool:
    return indicator_col in frame.columns and value_col in frame.columns


def _to_long(
    frame: pd.DataFrame,
    key_indicators: Sequence[str] | None,
    area_col: str,
    year_col: str,
    indicator_col: str,
    value_col: str,
) -> pd.DataFrame:
    """area, year, indicator, value (numeric) from a long or a wide frame."""
    for column in (area_col, year_col):
        if column not in frame.columns:
            raise ValueError(f"frame has no {column!r} column (columns: {list(frame.columns)[:12]})")
    if _is_long(frame, indicator_col, value_col):
        long = frame[[area_col, year_col, indicator_col, value_col]].copy()
        if key_indicators is not None:
            long = long[long[indicator_col].isin(list(key_indicators))]
    else:
        if key_indicators is None:
            key_indicators = [
                c for c in frame.columns
                if c not in (area_col, year_col) and pd.api.types.is_numeric_dtype(frame[c])
            ]
        missing = [c for c in key_indicators if c not in frame.columns]
        if missing:
            raise ValueError(f"wide frame lacks indicator columns {missing}")
        long = frame.melt(
            id_vars=[area_col, year_col], value_vars=list(key_indicators), var_name=indicator_col,
            value_name=value_col,
        )
    long[value_col] = to_number(long[value_col])
    long[area_col] = long[area_col].astype(str).str.strip()
    long[year_col] = pd.to_numeric(long[year_col], errors="coerce").astype("Int64")
    return long


def _relative(change: pd.Series, base: pd.Series) -> pd.Series:
    base = base.abs()
    return (change / base).where(base > 0)


# ---------------------------------------------------------------------------------------------------
# indicator_changes
# ---------------------------------------------------------------------------------------------------


def indicator_changes(
    features: pd.DataFrame,
    years: tuple[int, int] | None = None,
    key_indicators: Sequence[str] | None = None,
    *,
    area_col: str = "area_code",
    year_col: str = "release_year",
    indicator_col: str = "indicator",
    value_col: str = "value",
) -> pd.DataFrame:
    """Per area and indicator: the value in the previous and the latest year and how much it moved.

    ``features``: long or wide (see the module docstring). ``years``: (previous, latest); default the
    two most recent years in the frame. Returns columns ``area_code, indicator, value_prev,
    value_latest, abs_change, rel_change, status`` (``rel_change`` = change / |previous|, NaN when the
    previous value is 0 or missing; ``status`` = ``both``, ``new_area`` or ``dropped_area`` for areas
    present in one of the two years only, e.g. after a municipal merger). Sorted by indicator, then
    the largest absolute change first. ``attrs["years"]`` holds the two years compared.
    """
    long = _to_long(features, key_indicators, area_col, year_col, indicator_col, value_col)
    present = sorted(int(y) for y in long[year_col].dropna().unique())
    if years is None:
        if len(present) < 2:
            raise ValueError(f"need two years to compare, the frame has {present}")
        years = (present[-2], present[-1])
    prev_year, latest_year = (int(y) for y in years)
    for year in (prev_year, latest_year):
        if year not in present:
            raise ValueError(f"year {year} is not in the frame (years present: {present})")

    keys = [area_col, indicator_col]
    subset = long[long[year_col].isin([prev_year, latest_year])]
    duplicated = subset.duplicated(keys + [year_col], keep=False)
    if duplicated.any():
        example = subset.loc[duplicated, keys + [year_col]].head(3).to_dict("records")
        raise ValueError(
            f"{int(duplicated.sum())} rows share area, indicator and year (e.g. {example}): "
            "filter the frame to one value per area, indicator and year (one subgroup/age group)"
        )
    prev = subset[subset[year_col] == prev_year].set_index(keys)[value_col].rename("value_prev")
    latest = subset[subset[year_col] == latest_year].set_index(keys)[value_col].rename("value_latest")
    out = pd.concat([prev, latest], axis=1, join="outer").reset_index()
    in_prev = out.set_index(keys).index.isin(prev.index)
    in_latest = out.set_index(keys).index.isin(latest.index)
    out["abs_change"] = out["value_latest"] - out["value_prev"]
    out["rel_change"] = _relative(out["abs_change"], out["value_prev"])
    out["status"] = np.select([in_prev & in_latest, in_latest], ["both", "new_area"], default="dropped_area")
    out = out.rename(columns={area_col: "area_code", indicator_col: "indicator"})
    out["_order"] = out["abs_change"].abs().fillna(-1)
    out = out.sort_values(["indicator", "_order", "area_code"], ascending=[True, False, True])
    out = out.drop(columns="_order").reset_index(drop=True)
    out.attrs["years"] = (prev_year, latest_year)
    return out


# ---------------------------------------------------------------------------------------------------
# prediction_changes
# ---------------------------------------------------------------------------------------------------


def _predictions(pred: pd.DataFrame | pd.Series, id_col: str, pred_col: str) -> pd.Series:
    if isinstance(pred, pd.Series):
        series = pred.copy()
    else:
        if id_col not in pred.columns or pred_col not in pred.columns:
            raise ValueError(f"prediction frame needs columns {id_col!r} and {pred_col!r}, has {list(pred.columns)}")
        series = pred.set_index(id_col)[pred_col]
    series.index = series.index.astype(str).str.strip()
    if series.index.duplicated().any():
        raise ValueError(f"duplicate areas in predictions: {list(series.index[series.index.duplicated()][:5])}")
    return to_number(series)


def prediction_changes(
    pred_prev: pd.DataFrame | pd.Series,
    pred_latest: pd.DataFrame | pd.Series,
    *,
    id_col: str = "area_code",
    pred_col: str = "prediction",
) -> pd.DataFrame:
    """Per area: previous and latest prediction, the change, and the change in rank.

    Inputs: a Series indexed by area, or a frame with ``id_col`` and ``pred_col``. Rank 1 is the
    highest prediction (computed among areas present in that run). Returns columns ``area_code,
    prediction_prev, prediction_latest, abs_change, rel_change, rank_prev, rank_latest, rank_change,
    status``; sorted by the largest absolute change. ``attrs`` holds ``n_common``,
    ``spearman`` (rank correlation over areas in both) and ``mean_abs_change``.
    """
    prev = _predictions(pred_prev, id_col, pred_col).rename("prediction_prev")
    latest = _predictions(pred_latest, id_col, pred_col).rename("prediction_latest")
    out = pd.concat([prev, latest], axis=1, join="outer")
    out.index.name = "area_code"
    out["abs_change"] = out["prediction_latest"] - out["prediction_prev"]
    out["rel_change"] = _relative(out["abs_change"], out["prediction_prev"])
    out["rank_prev"] = out["prediction_prev"].rank(ascending=False, method="min").astype("Int64")
    out["rank_latest"] = out["prediction_latest"].rank(ascending=False, method="min").astype("Int64")
    out["rank_change"] = out["rank_prev"] - out["rank_latest"]  # positive: moved up
    in_prev, in_latest = out.index.isin(prev.index), out.index.isin(latest.index)
    out["status"] = np.select([in_prev & in_latest, in_latest], ["both", "new_area"], default="dropped_area")
    out = out.reset_index()
    out["_order"] = out["abs_change"].abs().fillna(-1)
    out = out.sort_values(["_order", "area_code"], ascending=[False, True]).drop(columns="_order")
    out = out.reset_index(drop=True)
    common = out.dropna(subset=["prediction_prev", "prediction_latest"])
    out.attrs.update(
        n_common=len(common),
        spearman=float(common["prediction_prev"].corr(common["prediction_latest"], method="spearman"))
        if len(common) > 1
        else float("nan"),
        mean_abs_change=float(common["abs_change"].abs().mean()) if len(common) else float("nan"),
    )
    return out


# ---------------------------------------------------------------------------------------------------
# feature_drift
# ---------------------------------------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``current`` against ``reference``, quantile bins of the reference.

    Bin edges are the reference's quantiles (ties collapse bins, so discrete data gets fewer bins);
    the outer bins are open, so values outside the reference range still count. Empty bins are given
    a share of ``PSI_EPSILON``.
    """
    reference = np.asarray(reference, dtype="float64")
    current = np.asarray(current, dtype="float64")
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    cuts = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    n_bins = len(cuts) + 1
    ref_share = np.bincount(np.searchsorted(cuts, reference, side="right"), minlength=n_bins) / len(reference)
    cur_share = np.bincount(np.searchsorted(cuts, current, side="right"), minlength=n_bins) / len(current)
    ref_share = np.clip(ref_share, PSI_EPSILON, None)
    cur_share = np.clip(cur_share, PSI_EPSILON, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def psi_level(value: float) -> str:
    if np.isnan(value):
        return "n/a"
    return "stable" if value < 0.1 else "moderate" if value < 0.25 else "major"


def standardised_mean_difference(reference: np.ndarray, current: np.ndarray) -> float:
    """(mean_new - mean_prev) / pooled SD; 0 for two identical constants, +-inf for different ones."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    diff = float(np.mean(current) - np.mean(reference))
    var_ref = float(np.var(reference, ddof=1)) if len(reference) > 1 else 0.0
    var_cur = float(np.var(current, ddof=1)) if len(current) > 1 else 0.0
    pooled = np.sqrt((var_ref + var_cur) / 2)
    if pooled == 0:
        return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return diff / pooled


def feature_drift(
    prev_frame: pd.DataFrame,
    new_frame: pd.DataFrame,
    columns: Iterable[str] | None = None,
    *,
    bins: int = 10,
    psi_threshold: float = 0.2,
    smd_threshold: float = 0.25,
    null_threshold: float = 0.1,
    ks_alpha: float = 0.01,
    ks_min_statistic: float = 0.1,
) -> pd.DataFrame:
    """Per feature column: how the new year's distribution differs from the previous one.

    ``prev_frame``/``new_frame``: one row per area (wide); ``columns`` default to the numeric columns
    the two frames share. Returns one row per column with ``n_prev, n_new`` (rows),
    ``null_ratio_prev, null_ratio_new``, ``mean_prev, mean_new, mean_shift``, ``median_prev,
    median_new, median_shift``, ``smd``, ``psi``, ``psi_level``, ``ks_statistic, ks_pvalue``, ``flag``
    and ``reasons`` (why it is flagged); sorted with the largest PSI first.
    """
    from scipy import stats

    if columns is None:
        columns = [
            c for c in prev_frame.columns
            if c in new_frame.columns
            and (pd.api.types.is_numeric_dtype(prev_frame[c]) or pd.api.types.is_numeric_dtype(new_frame[c]))
        ]
    columns = list(columns)
    missing = [c for c in columns if c not in prev_frame.columns or c not in new_frame.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in both frames")

    rows = []
    for column in columns:
        prev_all, new_all = to_number(prev_frame[column]), to_number(new_frame[column])
        p, q = prev_all.dropna().to_numpy(), new_all.dropna().to_numpy()
        null_prev = float(prev_all.isna().mean()) if len(prev_all) else float("nan")
        null_new = float(new_all.isna().mean()) if len(new_all) else float("nan")
        mean_prev = float(np.mean(p)) if len(p) else float("nan")
        mean_new = float(np.mean(q)) if len(q) else float("nan")
        median_prev = float(np.median(p)) if len(p) else float("nan")
        median_new = float(np.median(q)) if len(q) else float("nan")
        smd = standardised_mean_difference(p, q)
        psi_value = psi(p, q, bins=bins)
        if len(p) and len(q):
            ks = stats.ks_2samp(p, q)
            ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        else:
            ks_stat, ks_p = float("nan"), float("nan")

        reasons = []
        if not np.isnan(psi_value) and psi_value >= psi_threshold:
            reasons.append(f"PSI {psi_value:.3f} >= {psi_threshold}")
        if not np.isnan(smd) and abs(smd) >= smd_threshold:
            reasons.append(f"|SMD| {abs(smd):.3f} >= {smd_threshold}")
        if not np.isnan(ks_p) and ks_p < ks_alpha and ks_stat >= ks_min_statistic:
            reasons.append(f"KS {ks_stat:.3f} (p={ks_p:.2g})")
        if not (np.isnan(null_prev) or np.isnan(null_new)) and abs(null_new - null_prev) >= null_threshold:
            reasons.append(f"null ratio {null_prev:.2f} -> {null_new:.2f}")
        if len(p) == 0 or len(q) == 0:
            reasons.append("no values in " + ("either year" if len(p) == len(q) else "previous year" if len(p) == 0 else "new year"))
        rows.append(
            {
                "column": column,
                "n_prev": len(prev_all),
                "n_new": len(new_all),
                "null_ratio_prev": null_prev,
                "null_ratio_new": null_new,
                "mean_prev": mean_prev,
                "mean_new": mean_new,
                "mean_shift": mean_new - mean_prev,
                "median_prev": median_prev,
                "median_new": median_new,
                "median_shift": median_new - median_prev,
                "smd": smd,
                "psi": psi_value,
                "psi_level": psi_level(psi_value),
                "ks_statistic": ks_stat,
                "ks_pvalue": ks_p,
                "flag": bool(reasons),
                "reasons": "; ".join(reasons),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_order"] = out["psi"].fillna(np.inf)
    return out.sort_values(["_order", "column"], ascending=[False, True]).drop(columns="_order").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------
# performance_on_new_year
# ---------------------------------------------------------------------------------------------------


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true, y_pred = np.asarray(y_true, dtype="float64"), np.asarray(y_pred, dtype="float64")
    n = len(y_true)
    if n == 0:
        return {"r2": float("nan"), "mae": float("nan"), "rmse": float("nan"), "bias": float("nan")}
    residual = y_pred - y_true
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "r2": 1 - ss_res / ss_tot if n > 1 and ss_tot > 0 else float("nan"),
        "mae": float(np.mean(np.abs(residual))),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "bias": float(np.mean(residual)),  # > 0: the model over-predicts the new year
    }


def performance_on_new_year(
    model_predict_fn: Callable[[pd.DataFrame], Any],
    new_frame: pd.DataFrame,
    outcome: str | pd.Series,
    *,
    feature_columns: Sequence[str] | None = None,
    reference: Mapping[str, float] | None = None,
    training_cutoff: int | None = None,
    year_col: str = "outcome_year",
) -> dict[str, Any]:
    """How the existing (not yet retrained) model does on the new year's rows.

    ``training_cutoff``: the latest outcome year the model was trained on. When given, only rows of
    later years (``year_col``) are scored: a model scored on a year it was trained on measures its
    fit, not its performance on a new year. When no such row exists the result says so
    (``available`` False, ``reason``, ``n`` 0) instead of returning an in-sample figure.

    ``model_predict_fn`` gets the feature frame (``new_frame[feature_columns]``, or ``new_frame``
    without the outcome column) and returns one prediction per row. ``outcome``: the column name in
    ``new_frame`` or a Series aligned with it. Rows without an observed outcome are left out; rows the
    model returns NaN for are counted in ``n_no_prediction`` and left out. Returns ``n``,
    ``n_no_outcome``, ``n_no_prediction``, ``r2``, ``mae``, ``rmse``, ``bias`` (mean prediction -
    outcome), ``mean_outcome``, ``mean_prediction``; with ``reference`` (the metrics the model had
    when it was trained, e.g. ``{"r2": 0.71, "mae": 2.3}``) also ``r2_drop`` (reference - new) and
    ``mae_increase`` (new - reference).
    """
    if training_cutoff is not None:
        if year_col not in new_frame.columns:
            raise ValueError(f"training_cutoff needs the year column {year_col!r} in the frame")
        years = pd.to_numeric(new_frame[year_col], errors="coerce")
        later = (years > int(training_cutoff)).to_numpy()
        if not later.any():
            present = sorted(int(y) for y in years.dropna().unique())
            return {
                "available": False,
                "reason": f"no outcome year after the model's training cut-off {int(training_cutoff)} "
                          f"(years in the frame: {present}): no out-of-sample year to score",
                "n": 0, "training_cutoff": int(training_cutoff),
            }
        if not isinstance(outcome, str):
            outcome = pd.Series(np.asarray(outcome), index=new_frame.index)[later]
        new_frame = new_frame.loc[later]
    if isinstance(outcome, str):
        if outcome not in new_frame.columns:
            raise ValueError(f"outcome column {outcome!r} is not in the frame")
        y = to_number(new_frame[outcome])
        features = new_frame[list(feature_columns)] if feature_columns else new_frame.drop(columns=[outcome])
    else:
        if len(outcome) != len(new_frame):
            raise ValueError(f"outcome has {len(outcome)} values for {len(new_frame)} rows")
        y = to_number(pd.Series(np.asarray(outcome), index=new_frame.index))
        features = new_frame[list(feature_columns)] if feature_columns else new_frame
    has_outcome = y.notna().to_numpy()
    features = features.loc[has_outcome]
    y_obs = y.to_numpy()[has_outcome]
    predictions = np.asarray(model_predict_fn(features), dtype="float64").reshape(-1)
    if len(predictions) != len(y_obs):
        raise ValueError(f"model returned {len(predictions)} predictions for {len(y_obs)} rows")
    has_prediction = ~np.isnan(predictions)
    y_obs, predictions = y_obs[has_prediction], predictions[has_prediction]
    result: dict[str, Any] = {
        **({"available": True, "training_cutoff": int(training_cutoff)} if training_cutoff is not None else {}),
        "n": int(len(y_obs)),
        "n_no_outcome": int((~has_outcome).sum()),
        "n_no_prediction": int((~has_prediction).sum()),
        **regression_metrics(y_obs, predictions),
        "mean_outcome": float(np.mean(y_obs)) if len(y_obs) else float("nan"),
        "mean_prediction": float(np.mean(predictions)) if len(predictions) else float("nan"),
    }
    if reference:
        if "r2" in reference:
            result["r2_drop"] = float(reference["r2"]) - result["r2"]
        if "mae" in reference:
            result["mae_increase"] = result["mae"] - float(reference["mae"])
    return result


__all__ = [
    "feature_drift",
    "indicator_changes",
    "performance_on_new_year",
    "prediction_changes",
    "psi",
    "psi_level",
    "regression_metrics",
    "standardised_mean_difference",
    "to_number",
]
