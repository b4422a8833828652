"""Prediction intervals that mean what they say, and orders derived from them.

Pure functions, no Dagster.

- :func:`match_quality` turns the training mart's ``match_rules`` (per source, the harmonisation rule
  that linked a Leefbaarometer wijk to its features) into one quality class per row: the worst rule wins.
- :func:`conformal_intervals`: split-conformal prediction intervals calibrated *per group* (match
  quality x wijk size) on out-of-fold residuals. Leave-one-gemeente-out: a row's interval half-width
  is the finite-sample conformal quantile of |residual| over the rows of its group in OTHER gemeenten,
  so the interval of a wijk is never calibrated on its own residual (nor on the correlated residuals of
  its gemeente) and the empirical coverage computed on the same out-of-fold rows is an honest estimate.
- :func:`coverage_by_group`: the empirical coverage (and width) per group, the check that the intervals
  hold what they promise in every group, not only on average.
- :func:`simulated_rank_ranges`: the order of the quantity being ranked (a wijk's score as its interval
  describes it), from simulation: per draw every wijk gets prediction + a residual drawn from its own
  group's out-of-fold residuals, and the wijken are ranked; the 5 % and 95 % quantiles of a wijk's rank
  form its rank range. A range is published only where it is informative (narrower than
  ``max_share`` of all ranks); otherwise the wijk is "not distinguishable".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

# Quality of the area match, best first. 'exact': the same wijk code in an unchanged gemeente, or the
# same code AND the same name in a redrawn one; 'name': a different code with the same name in the same
# gemeente; 'rough': the features describe a larger or different area (the sole unmatched old wijk, a
# former gemeente).
RULE_QUALITY: dict[str, str] = {
    "exact": "exact",
    "exact_code_and_name": "exact",
    "exact_code_changed_gemeente": "rough",  # no longer produced by dbt; kept so old marts classify safely
    "name_within_gemeente": "name",
    "contained_in_sole_unmatched_wijk": "rough",
    "former_gemeente_name": "rough",
    "former_gemeente_in_name": "rough",
}
QUALITY_ORDER: tuple[str, ...] = ("exact", "name", "rough")
NOMINAL_COVERAGE = 0.95
MIN_GROUP_ROWS = 150
# Below this a quality class has too few residuals for a 95 % conformal quantile once its own gemeente
# is left out (at least 19 are needed).
MIN_QUALITY_ROWS = 40
# A calibration group drawn from fewer gemeenten than this leaves out the wijk, not the whole gemeente
# (see conformal_intervals).
MIN_GROUP_CLUSTERS = 20


def match_quality(match_rules: pd.Series | Sequence[str | None]) -> pd.Series:
    """Per row the worst quality over its sources' rules ("source:rule, source:rule" as in
    ``marts.mart_wijk_training.match_rules``); 'rough' for an unknown rule, NA for a missing value."""
    values = pd.Series(match_rules)
    out = []
    for text in values:
        if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
            out.append(pd.NA)
            continue
        worst = 0
        for part in str(text).split(","):
            rule = part.split(":", 1)[-1].strip()
            quality = RULE_QUALITY.get(rule, "rough")
            worst = max(worst, QUALITY_ORDER.index(quality))
        out.append(QUALITY_ORDER[worst])
    return pd.Series(out, index=values.index, dtype=object)


def size_class(n_buurten: pd.Series | Sequence[float], threshold: float = 3) -> pd.Series:
    """'small' (fewer than ``threshold`` buurten, or unknown) or 'large': small wijken have noisier
    scores and features (small-area model estimates), so they get their own calibration."""
    n = pd.to_numeric(pd.Series(n_buurten), errors="coerce")
    return pd.Series(np.where(n.notna() & (n >= threshold), "large", "small"), index=n.index, dtype=object)


def calibration_groups(
    quality: pd.Series, size: pd.Series, min_rows: int = MIN_GROUP_ROWS, min_quality_rows: int = MIN_QUALITY_ROWS
) -> pd.Series:
    """Group label ``<quality>/<size>``. When any size class of a quality has fewer than ``min_rows``
    rows, that whole quality is one group (``<quality>/all``); a quality with fewer than
    ``min_quality_rows`` rows in all is calibrated together with all other rows (``pooled/all``), so every group has enough
    residuals to calibrate on and a label always means what it says. A missing quality counts as
    'rough'."""
    quality = pd.Series(quality)
    quality = quality.astype(object).where(quality.notna(), "rough").astype(str)
    size = pd.Series(size, index=quality.index).astype(str)
    label = quality + "/" + size
    counts = label.value_counts()
    too_small = {q for q in quality.unique() if (counts[label[quality == q].unique()] < min_rows).any()}
    label = label.where(~quality.isin(too_small), quality + "/all")
    # a quality class that is too small even as a whole is calibrated with the other qualities
    tiny = label.map(label.value_counts()) < min_quality_rows
    return label.where(~tiny, "pooled/all")


def conformal_quantile(abs_residuals: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile: the ceil((n+1) * coverage)-th smallest |residual| (inf if n is too
    small for that coverage)."""
    r = np.sort(np.asarray(abs_residuals, dtype=float)[np.isfinite(abs_residuals)])
    n = r.size
    k = math.ceil((n + 1) * coverage)
    if n == 0 or k > n:
        return float("inf")
    return float(r[k - 1])


def conformal_intervals(
    actual: Sequence[float],
    predicted: Sequence[float],
    groups: Sequence[str],
    clusters: Sequence,
    *,
    coverage: float = NOMINAL_COVERAGE,
    units: Sequence | None = None,
    min_clusters: int = MIN_GROUP_CLUSTERS,
) -> pd.DataFrame:
    """Per row: ``half_width``, ``lower``, ``upper`` of a ``coverage`` prediction interval around
    ``predicted``, calibrated on the |out-of-fold residuals| of the same group outside the row's
    cluster (pass the gemeente: a wijk's interval never uses a residual of its own gemeente, where
    residuals are correlated, nor its own; CV folds work too, with less calibration data).

    Few clusters: leaving out a whole gemeente is only sound when the group's gemeenten are many and
    alike. A group drawn from fewer than ``min_clusters`` gemeenten (the rough area matches come from a
    handful of redrawn gemeenten) under-covers that way: leave out the one gemeente with large residuals
    and the rest calibrate too narrow an interval for it (onv: 54 % coverage in GM1979, 90 % in the
    group). In such a group the row's ``units`` (pass the wijk code) are left out instead: never its
    own residual, nor the wijk's other years, but its gemeente's other wijken do calibrate it.

    ``actual`` may be NaN for rows without a score (they get an interval but calibrate nothing).
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    g = np.asarray(pd.Series(groups).astype(str))
    c = np.asarray(pd.Series(clusters).astype(str))
    u = c if units is None else np.asarray(pd.Series(units).astype(str))
    if not (len(a) == len(p) == len(g) == len(c) == len(u)):
        raise ValueError("actual, predicted, groups, clusters and units differ in length")
    abs_res = np.abs(a - p)
    half = np.full(len(a), np.nan)
    for group in np.unique(g):
        in_group = g == group
        leave_out = c if np.unique(c[in_group]).size >= min_clusters else u
        for cluster in np.unique(leave_out[in_group]):
            target = in_group & (leave_out == cluster)
            calib = in_group & (leave_out != cluster) & np.isfinite(abs_res)
            half[target] = conformal_quantile(abs_res[calib], coverage)
    # Too few calibration rows in the group for this coverage (a tiny group, e.g. a first load with few
    # years): calibrate on every row outside the cluster instead of publishing an infinite interval.
    for cluster in np.unique(c[~np.isfinite(half)]):
        target = ~np.isfinite(half) & (c == cluster)
        half[target] = conformal_quantile(abs_res[(c != cluster) & np.isfinite(abs_res)], coverage)
    return pd.DataFrame({"half_width": half, "lower": p - half, "upper": p + half})


def coverage_by_group(actual, lower, upper, groups) -> pd.DataFrame:
    """Empirical coverage (share of rows with lower <= actual <= upper), rows and mean width per group."""
    frame = pd.DataFrame({
        "group": pd.Series(groups).astype(str).to_numpy(),
        "actual": np.asarray(actual, dtype=float),
        "lower": np.asarray(lower, dtype=float),
        "upper": np.asarray(upper, dtype=float),
    })
    frame = frame[np.isfinite(frame["actual"])]
    frame["covered"] = (frame["actual"] >= frame["lower"]) & (frame["actual"] <= frame["upper"])
    frame["width"] = frame["upper"] - frame["lower"]
    out = frame.groupby("group").agg(n=("covered", "size"), coverage=("covered", "mean"), mean_width=("width", "mean"))
    return out.reset_index()


def simulated_rank_ranges(
    predicted: pd.Series,
    groups: pd.Series,
    residual_pool: pd.DataFrame,
    *,
    n_draws: int = 400,
    quantiles: tuple[float, float] = (0.05, 0.95),
    max_share: float = 0.25,
    seed: int = 0,
    descending: bool = True,
) -> pd.DataFrame:
    """Rank ranges of each wijk's score under its own uncertainty, by simulation.

    Per draw, wijk i's score is ``predicted[i] + e`` with ``e`` drawn from the out-of-fold residuals of
    its calibration group (``residual_pool``: columns ``group``, ``residual``); all wijken are ranked
    (1 = highest with ``descending``). ``rank_low``/``rank_high`` are the ``quantiles`` of a wijk's
    rank over the draws. ``informative`` is True when the range covers at most ``max_share`` of the
    ranks; otherwise the wijk is not distinguishable from most others and no range should be shown.
    """
    pred = pd.to_numeric(predicted, errors="coerce").astype(float)
    valid = pred.notna().to_numpy()
    p = pred.to_numpy()[valid]
    g = pd.Series(groups, index=pred.index).astype(str).to_numpy()[valid]
    pool = {k: v["residual"].to_numpy(dtype=float) for k, v in residual_pool.groupby("group")}
    everything = residual_pool["residual"].to_numpy(dtype=float)
    n = int(valid.sum())
    rng = np.random.default_rng(seed)
    ranks = np.empty((n_draws, n), dtype=np.int32)
    noise = np.empty(n)
    # each group's wijken and residuals, in the order of np.unique (the draws' order of random numbers)
    members = [(np.flatnonzero(g == group), pool.get(group, everything)) for group in np.unique(g)]
    for d in range(n_draws):
        for idx, source in members:
            noise[idx] = source[rng.integers(0, source.size, size=idx.size)]
        score = p + noise
        order = np.argsort(-score if descending else score, kind="mergesort")
        r = np.empty(n, dtype=np.int32)
        r[order] = np.arange(1, n + 1)
        ranks[d] = r
    low = np.floor(np.quantile(ranks, quantiles[0], axis=0)).astype(int)
    high = np.ceil(np.quantile(ranks, quantiles[1], axis=0)).astype(int)
    out = pd.DataFrame(index=pred.index)
    out["rank_low"] = pd.Series(pd.NA, index=pred.index, dtype="Int64")
    out["rank_high"] = pd.Series(pd.NA, index=pred.index, dtype="Int64")
    out.loc[valid, "rank_low"] = low
    out.loc[valid, "rank_high"] = high
    out["n_ranked"] = n
    share = (out["rank_high"] - out["rank_low"] + 1) / max(n, 1)
    out["rank_share"] = share.astype(float)
    out["informative"] = (share <= max_share).fillna(False).astype(bool)
    return out
