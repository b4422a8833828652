"""Explanations for the wijk models: SHAP contributions, global importance, plain-language area drivers,
"higher/lower than its indicators predict" flags, and Spearman correlations with FDR control.

Pure functions, no Dagster. SHAP values come from LightGBM's own TreeSHAP (``pred_contrib=True``), which
is exact for tree ensembles and needs no extra package at run time; :func:`compare_with_tree_explainer`
checks it against ``shap.TreeExplainer``.

Wording rule: texts describe indicators and model predictions, never areas. They must not carry
judgemental labels ("problem", "worst", "bad neighbourhood", ...); :func:`assert_neutral_text` enforces it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Iterable, Mapping, Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats

HIGHER = "higher than its indicators predict"
LOWER = "lower than its indicators predict"
WITHIN = "within the expected range"
NO_SCORE = "no score to compare"

# Judgemental words that must never appear in area texts (English and the Dutch labels they mirror).
BANNED_WORDS: tuple[str, ...] = (
    "problem", "problems", "problematic", "worst", "best", "bad", "ghetto", "slum", "slums", "deprived",
    "troubled", "dangerous", "failing", "no-go", "undesirable", "probleemwijk", "achterstandswijk",
    "krachtwijk", "prachtwijk", "aandachtswijk", "slechtste", "beste", "slecht",
)
_BANNED_RE = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in BANNED_WORDS) + r")(?![\w-])", re.IGNORECASE)


def assert_neutral_text(text: str) -> str:
    """Return ``text`` unchanged, or raise ``ValueError`` if it contains a judgemental word."""
    hit = _BANNED_RE.search(text)
    if hit:
        raise ValueError(f"judgemental wording {hit.group(0)!r} in area text: {text!r}")
    return text


# ------------------------------------------------------------------------------------------- helpers


def _booster(model) -> lgb.Booster:
    """Accept a ModelArtifact (``.booster``), an ``lgb.Booster`` or a fitted ``LGBMRegressor``."""
    if isinstance(model, lgb.Booster):
        return model
    if hasattr(model, "booster") and isinstance(model.booster, lgb.Booster):
        return model.booster
    if hasattr(model, "booster_"):
        return model.booster_
    raise TypeError(f"cannot get a LightGBM booster from {type(model).__name__}")


def _features(model, X) -> list[str]:
    if isinstance(getattr(model, "features", None), (list, tuple)) and model.features:
        return list(model.features)
    if isinstance(X, pd.DataFrame):
        return list(X.columns)
    return list(_booster(model).feature_name())


def _matrix(model, X) -> tuple[np.ndarray, list[str]]:
    features = _features(model, X)
    if isinstance(X, pd.DataFrame):
        missing = [f for f in features if f not in X.columns]
        if missing:
            raise KeyError(f"X lacks model features: {missing[:5]}")
        M = X.loc[:, features].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        M = np.asarray(X, dtype=np.float64)
    if M.shape[1] != len(features):
        raise ValueError(f"X has {M.shape[1]} columns, the model {len(features)} features")
    return np.ascontiguousarray(M), features


def contributions(model, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shap matrix n x p, base values n, predictions n) from ``pred_contrib=True``."""
    booster = _booster(model)
    M, _ = _matrix(model, X)
    contrib = booster.predict(M, pred_contrib=True)
    shap_values, base = contrib[:, :-1], contrib[:, -1]
    prediction = booster.predict(M)
    return shap_values, base, prediction


# ---------------------------------------------------------------------------------------------- SHAP


def shap_long(model, X: pd.DataFrame, ids: pd.DataFrame | pd.Series | Sequence, outcome: str) -> pd.DataFrame:
    """One row per (area, year, feature): area_code, year, outcome, feature, feature_value, shap_value,
    base_value, prediction.

    ``ids`` is aligned with the rows of ``X``: a frame with ``area_code`` and ``year`` (or
    ``outcome_year``), or just the area codes (year left empty). Per area, the shap values plus the base
    value add up to the prediction (LightGBM TreeSHAP, raw score).
    """
    M, features = _matrix(model, X)
    shap_values, base, prediction = contributions(model, M)
    n, p = shap_values.shape
    if isinstance(ids, pd.DataFrame):
        area = ids["area_code"].to_numpy()
        year_col = "year" if "year" in ids.columns else ("outcome_year" if "outcome_year" in ids.columns else None)
        year = pd.to_numeric(ids[year_col], errors="coerce").to_numpy(dtype=float) if year_col else np.full(n, np.nan)
    else:
        area = np.asarray(ids)
        year = np.full(n, np.nan)
    if len(area) != n:
        raise ValueError(f"ids has {len(area)} rows, X has {n}")
    # object columns built with repeat/tile hold references to the same few strings: cheap in memory
    out = pd.DataFrame(
        {
            "area_code": np.repeat(np.asarray(area, dtype=object), p),
            "year": np.repeat(year, p),
            "outcome": np.full(n * p, outcome, dtype=object),
            "feature": np.tile(np.asarray(features, dtype=object), n),
            "feature_value": M.reshape(-1),
            "shap_value": shap_values.reshape(-1),
            "base_value": np.repeat(base, p),
            "prediction": np.repeat(prediction, p),
        }
    )
    if np.isfinite(out["year"]).all() and n:
        out["year"] = out["year"].astype(np.int64)
    return out


def compare_with_tree_explainer(model, X, max_rows: int | None = None) -> dict[str, Any]:
    """Check LightGBM ``pred_contrib`` SHAP values against the ``shap`` package, with timings.

    Note: for a LightGBM model ``shap.TreeExplainer(...).shap_values`` itself calls LightGBM's
    ``pred_contrib`` (shap 0.4x-0.5x shortcut), so that comparison is equal by construction. The
    independent check therefore also runs shap's OWN C++ TreeSHAP on shap's parsed copy of the trees
    (by marking the parsed ensemble as ``"internal"``) and reports its difference as ``max_abs_diff``.
    Keys: max_abs_diff, base_value_diff (independent path), max_abs_diff_shap_default (the shortcut),
    seconds_pred_contrib, seconds_tree_explainer (shortcut, incl. explainer set-up),
    seconds_tree_explainer_own (shap's own algorithm), independent (bool), n_rows, n_features.
    """
    import shap  # imported lazily: only this check needs the package

    booster = _booster(model)
    M, _ = _matrix(model, X)
    if max_rows is not None:
        M = M[:max_rows]
    t0 = time.perf_counter()
    contrib = booster.predict(M, pred_contrib=True)
    t1 = time.perf_counter()
    explainer = shap.TreeExplainer(booster)
    default_values = np.asarray(explainer.shap_values(M))
    t2 = time.perf_counter()
    out: dict[str, Any] = {
        "n_rows": int(M.shape[0]),
        "n_features": int(M.shape[1]),
        "max_abs_diff_shap_default": float(np.max(np.abs(contrib[:, :-1] - default_values))) if M.size else 0.0,
        "seconds_pred_contrib": t1 - t0,
        "seconds_tree_explainer": t2 - t1,
    }
    try:
        own = shap.TreeExplainer(booster)
        own.model.model_type = "internal"  # bypass the LightGBM shortcut: shap's own TreeSHAP
        t3 = time.perf_counter()
        own_values = np.asarray(own.shap_values(M, check_additivity=False))
        t4 = time.perf_counter()
        out.update(
            independent=True,
            max_abs_diff=float(np.max(np.abs(contrib[:, :-1] - own_values))) if M.size else 0.0,
            base_value_diff=float(np.max(np.abs(contrib[:, -1] - np.ravel(own.expected_value)[0]))) if M.size else 0.0,
            seconds_tree_explainer_own=t4 - t3,
        )
    except Exception as exc:  # pragma: no cover - depends on shap internals
        out.update(
            independent=False,
            independent_error=f"{type(exc).__name__}: {exc}",
            max_abs_diff=out["max_abs_diff_shap_default"],
            base_value_diff=float(np.max(np.abs(contrib[:, -1] - np.ravel(explainer.expected_value)[0]))) if M.size else 0.0,
            seconds_tree_explainer_own=float("nan"),
        )
    return out


def global_importance(shap_long_frame: pd.DataFrame) -> pd.DataFrame:
    """Per outcome and feature: mean |SHAP|, rank (1 = largest), and direction = sign of the Spearman
    correlation between the feature's value and its SHAP value (+1: higher values push the prediction
    up, -1: down, 0: no monotone relation or too few values)."""
    rows = []
    # each (outcome, feature)'s rows as positions into two arrays taken once (a pandas group per feature
    # cost ~1 ms each, ~0.4 s for a wide model); the same rows in the same order as the groups
    values = shap_long_frame["feature_value"].to_numpy()
    shap = shap_long_frame["shap_value"].to_numpy()
    missing = pd.isna(values)
    grouped = shap_long_frame.groupby(["outcome", "feature"], observed=True, sort=True)
    # each row's group number, in the groups' order (-1: a missing key, in no group)
    codes = grouped.ngroup().fillna(-1).to_numpy(dtype=np.int64)
    keys = grouped.size().index
    kept = np.flatnonzero(codes >= 0)
    order = kept[np.argsort(codes[kept], kind="stable")]
    bounds = np.cumsum(np.bincount(codes[kept], minlength=len(keys)))[:-1]
    for (outcome, feature), at in zip(keys, np.split(order, bounds)):
        ok = at[~missing[at]]
        x, s = values[ok], shap[ok]
        rho = float("nan")
        if x.size >= 3 and np.ptp(x) > 0 and np.ptp(s) > 0:
            rho = float(stats.spearmanr(x, s).statistic)
        rows.append(
            {
                "outcome": outcome,
                "feature": feature,
                "mean_abs_shap": float(np.abs(shap[at]).mean()),
                "spearman_value_shap": rho,
                "direction": int(np.sign(rho)) if np.isfinite(rho) else 0,
            }
        )
    out = pd.DataFrame(rows, columns=["outcome", "feature", "mean_abs_shap", "spearman_value_shap", "direction"])
    out["rank"] = out.groupby("outcome")["mean_abs_shap"].rank(ascending=False, method="first").astype(int)
    out["direction_text"] = out["direction"].map(
        {1: "higher values raise the prediction", -1: "higher values lower the prediction", 0: "no single direction"}
    )
    return out.sort_values(["outcome", "rank"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ area texts


def _reference_mapping(national_reference) -> dict[str, float]:
    if national_reference is None:
        return {}
    if isinstance(national_reference, pd.DataFrame):
        value_col = "value" if "value" in national_reference.columns else national_reference.columns[-1]
        return dict(zip(national_reference["feature"], national_reference[value_col].astype(float)))
    if isinstance(national_reference, pd.Series):
        return {k: float(v) for k, v in national_reference.items()}
    return {k: float(v) for k, v in dict(national_reference).items()}


def format_value(value: float, unit: str | None) -> str:
    """12.0% / +3.1 percentage points / 5 / 1.2 km."""
    if value is None or not np.isfinite(value):
        return "not available"
    unit = (unit or "").strip()
    u = unit.lower()
    if u in {"%", "percent", "percentage"}:
        return f"{value:.1f}%"
    if u in {"%-points", "%-point", "percentage points", "pp", "procentpunt", "procentpunten"}:
        return f"{value:+.1f} percentage points"
    if u in {"count", "number", "aantal", "n"}:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.1f} {unit}".strip() if unit else f"{value:.3g}"


def format_delta(value: float) -> str:
    """Size of a SHAP contribution on the score scale: 2 decimals, 3 when below 0.01."""
    a = abs(float(value))
    return f"{a:.2f}" if a >= 0.01 else f"{a:.3f}"


def driver_sentence(
    label: str, value: float, unit: str | None, national: float | None, shap_value: float,
    reference_label: str = "national",
) -> str:
    """"<label>: <value> (<reference_label> <reference>) raises/lowers the predicted score by <d>"; the
    reference part is left out when ``national`` is missing."""
    text = f"{label}: {format_value(value, unit)}"
    if national is not None and np.isfinite(national):
        text += f" ({reference_label} {format_value(national, unit)})"
    verb = "raises" if shap_value > 0 else "lowers"
    text += f" {verb} the predicted score by {format_delta(shap_value)}"
    return assert_neutral_text(text)


def comparison_agrees(value: float, comparison: float, direction: int, shap_value: float) -> bool:
    """True when showing ``comparison`` beside the verb cannot read the wrong way round: the feature has
    one direction of effect (+1: higher values raise the prediction, -1: lower it) and the value lies on
    the side of the comparison value that this direction and the sign of ``shap_value`` imply."""
    if not (np.isfinite(value) and comparison is not None and np.isfinite(comparison)) or direction == 0:
        return False
    side = np.sign(value - comparison)
    return bool(side != 0 and side * direction == np.sign(shap_value))


def _sort_codes(values: pd.Series) -> np.ndarray:
    """Integer codes that order like ``values`` in ``sort_values`` (categories in their order, missing last)."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.where(codes < 0, len(uniques), codes)


def _top_by_abs_shap(frame: pd.DataFrame, keys: list[str], top_n: int, sign: int | None = None) -> pd.DataFrame:
    """Per ``keys`` group, the ``top_n`` rows with a feature value and a non-zero SHAP value (of ``sign``,
    +1 or -1, when given), largest |SHAP| first (ties: feature name), with their ``rank``; groups in key
    order (missing keys last).

    The same rows and order as sorting the filtered frame by keys, -|SHAP| and feature and taking each
    group's head, but sorted as integer codes and copying only the chosen rows: a national outcome has
    ~1 M SHAP rows, and sorting them on their text columns took most of the explanation texts' time."""
    shap = frame["shap_value"].to_numpy(dtype=float)
    pushes = (shap != 0) if sign is None else (np.sign(shap) == sign)
    pos = np.flatnonzero(frame["feature_value"].notna().to_numpy() & pushes)
    group_codes = [_sort_codes(frame[k])[pos] for k in keys]
    order = np.lexsort((np.arange(pos.size), _sort_codes(frame["feature"])[pos],
                        -np.abs(shap[pos]), *reversed(group_codes)))
    new_group = np.ones(order.size, dtype=bool)
    if order.size:
        new_group[1:] = np.logical_or.reduce([c[order][1:] != c[order][:-1] for c in group_codes])
    starts = np.flatnonzero(new_group)
    rank = np.arange(order.size) - starts[np.cumsum(new_group) - 1] + 1
    chosen = rank <= top_n
    top = frame.iloc[pos[order[chosen]]].copy()
    top["rank"] = rank[chosen].astype(np.int64)
    return top


def area_drivers(
    shap_long_frame: pd.DataFrame,
    catalog: pd.DataFrame,
    national_reference: Mapping[str, float] | pd.Series | pd.DataFrame | None,
    top_n: int = 3,
    *,
    directions: Mapping[str, int] | None = None,
    reference_label: str = "national",
    sign: int | None = None,
) -> pd.DataFrame:
    """The ``top_n`` features with the largest |SHAP| per (area, year, outcome), each with a sentence like
    "share of adults who find it hard to make ends meet: 12.0% (national 8.1%) lowers the predicted score
    by 0.05". Labels and units come from the feature catalog; a feature without a national reference value
    gets no "(national ...)" part. Features whose value is missing are skipped (a missing value says
    nothing about the area).

    With ``directions`` (feature -> +1/-1/0, e.g. :func:`global_importance`'s ``direction``) the
    reference value is a *comparison* value (pass the values SHAP compares with, e.g. the average over
    the model's training wijken, with a matching ``reference_label``) and it is shown only where
    :func:`comparison_agrees`: never "lowers" beside a value on the favourable side of its comparison
    value. ``comparison_shown`` records per row whether the sentence carries it. ``sign`` (+1 or -1): only
    the features that push the prediction up, or down (the same rows as passing only those rows, without
    copying the frame)."""
    ref = _reference_mapping(national_reference)
    cat = catalog.drop_duplicates("feature", keep="last").set_index("feature")
    top = _top_by_abs_shap(shap_long_frame, ["outcome", "area_code", "year"], top_n, sign)
    feats = top["feature"].astype(str)
    top["feature"] = feats
    label_of = {f: str(v) for f, v in cat["label"].items() if pd.notna(v)}
    unit_of = {f: str(v) for f, v in cat["unit"].items() if pd.notna(v)} if "unit" in cat.columns else {}
    top["label"] = [label_of.get(f, f) for f in feats]
    units = [unit_of.get(f, "") for f in feats]
    top["national_value"] = [ref.get(f, np.nan) for f in feats]
    top["direction"] = np.where(top["shap_value"] > 0, "raises", "lowers")
    if directions is None:
        shown = top["national_value"].notna().to_numpy()
    else:
        shown = np.array([
            comparison_agrees(val, ref_value, int(directions.get(f, 0)), sv)
            for f, val, ref_value, sv in zip(feats, top["feature_value"], top["national_value"], top["shap_value"])
        ], dtype=bool)
    top["comparison_shown"] = shown
    top["sentence"] = [
        driver_sentence(lab, val, unit, nat if show else None, sv, reference_label)
        for lab, val, unit, nat, sv, show in zip(
            top["label"], top["feature_value"], units, top["national_value"], top["shap_value"], shown)
    ]
    cols = ["area_code", "year", "outcome", "rank", "feature", "label", "feature_value", "national_value",
            "comparison_shown", "shap_value", "direction", "sentence"]
    top["area_code"] = top["area_code"].astype(str)
    top["outcome"] = top["outcome"].astype(str)
    return top[cols].reset_index(drop=True)


def area_residuals(
    actual,
    predicted,
    error_band: float | None = None,
    *,
    half_width=None,
    ids: pd.DataFrame | None = None,
    z: float = 1.96,
) -> pd.DataFrame:
    """Compare each area's actual score with its (out-of-fold) prediction.

    Preferred: ``half_width`` per area, the half-width of its calibrated prediction interval (see
    :func:`wijk_assets.lib.ml.uncertainty.conformal_intervals`); an area is flagged higher/lower only when
    its actual score lies outside ``predicted ± half_width``. Legacy: one global ``error_band`` (the
    RMSE of the out-of-fold residuals) with ``band = z * error_band`` for every area. Use OUT-OF-FOLD
    predictions: in-sample predictions of the final model are pulled towards the actual values and would
    hide real gaps.
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    if a.shape != p.shape:
        raise ValueError("actual and predicted differ in length")
    if half_width is not None:
        band = np.asarray(half_width, dtype=float)
        if band.shape != a.shape:
            raise ValueError("half_width and actual differ in length")
        if not (np.isfinite(band) & (band > 0)).all():
            raise ValueError("every half_width must be a positive number")
        scale = band
    else:
        if error_band is None or not np.isfinite(error_band) or error_band <= 0:
            raise ValueError(f"error_band must be a positive number, got {error_band}")
        band = np.full(a.shape, z * float(error_band))
        scale = np.full(a.shape, float(error_band))
    residual = a - p
    flag = np.where(
        ~np.isfinite(residual), NO_SCORE, np.where(residual > band, HIGHER, np.where(residual < -band, LOWER, WITHIN))
    )
    out = pd.DataFrame(
        {
            "actual": a,
            "predicted": p,
            "residual": residual,
            "standardised_residual": residual / scale,
            "band": band,
            "lower": p - band,
            "upper": p + band,
            "flag": flag,
        }
    )
    if ids is not None:
        ids = ids.reset_index(drop=True)
        if len(ids) != len(out):
            raise ValueError("ids and actual differ in length")
        out = pd.concat([ids, out], axis=1)
    elif isinstance(actual, pd.Series):
        out.index = actual.index
    return out


# -------------------------------------------------------------------------------------- correlations


def correlations(frame: pd.DataFrame, features: Iterable[str], outcomes: Iterable[str]) -> pd.DataFrame:
    """Spearman rho with p-value for every (feature, outcome) pair on pairwise-complete rows, with
    Benjamini-Hochberg q-values over all pairs tested. Caveat: when the frame pools several years the
    same wijk appears more than once, so rows are not independent and p-values are too small; filter
    to one year for inference."""
    rows = []
    for outcome in outcomes:
        y_all = frame[outcome].to_numpy(dtype=float)
        for feature in features:
            x_all = frame[feature].to_numpy(dtype=float)
            ok = np.isfinite(x_all) & np.isfinite(y_all)
            x, y = x_all[ok], y_all[ok]
            rho = pval = float("nan")
            if x.size >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
                res = stats.spearmanr(x, y)
                rho, pval = float(res.statistic), float(res.pvalue)
            rows.append({"feature": feature, "outcome": outcome, "n": int(x.size), "rho": rho, "p_value": pval})
    out = pd.DataFrame(rows, columns=["feature", "outcome", "n", "rho", "p_value"])
    out["q_value"] = np.nan
    tested = out["p_value"].notna().to_numpy()
    if tested.any():
        out.loc[tested, "q_value"] = stats.false_discovery_control(out.loc[tested, "p_value"].to_numpy(), method="bh")
    return out
