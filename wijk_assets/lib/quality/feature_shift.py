"""Gate 2's warning: how each feature's distribution moved since its previous publication (no Dagster).

:func:`yoy_shift` measures, per feature, how the distribution moved from one year to the next (median
shift in IQR units, IQR ratio, PSI, KS statistic, rank correlation of the areas present in both years)
and whether that is implausible for real neighbourhood statistics (usually a unit change, a column
shift, a suppression wave or a mapping error rather than a real change).
:func:`shift_since_last_publication` applies it to every feature over its own two latest published
years.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wijk_assets.lib.quality.feature_gate import LEVELS, feature_columns


@dataclass(frozen=True)
class ShiftThresholds:
    """When a year-on-year change of a feature's distribution is implausible.

    Neighbourhood statistics move slowly: a median moving by more than half an IQR, the spread
    halving or doubling, PSI above 0.25 (the usual "major shift" rule of thumb), a KS statistic above
    0.3, or areas losing their rank order (Spearman < 0.5 over the areas present in both years) is far
    more often a unit change, a column shift or a mapping error than a real change.
    """

    median_shift_iqr: float = 0.5
    iqr_ratio_low: float = 0.5
    iqr_ratio_high: float = 2.0
    psi: float = 0.25
    ks: float = 0.3
    min_spearman: float = 0.5
    null_ratio_jump: float = 0.2
    min_n: int = 20


def _psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``actual`` against ``expected`` using expected's quantile bins.

    Bins shrink for small groups (at least ~20 values per bin), otherwise PSI is mostly sampling noise
    (a gemeente has a handful of wijken).
    """
    if len(expected) == 0 or len(actual) == 0:
        return float("nan")
    bins = int(max(2, min(bins, min(len(expected), len(actual)) // 20)))
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # constant last year: compare "same value" vs "other" shares
        e = np.array([1.0, 0.0])
        a = np.array([np.mean(actual == edges[0]), np.mean(actual != edges[0])])
    else:
        inner = edges[1:-1]
        e = np.bincount(np.searchsorted(inner, expected, side="right"), minlength=len(edges) - 1) / len(expected)
        a = np.bincount(np.searchsorted(inner, actual, side="right"), minlength=len(edges) - 1) / len(actual)
    e = np.clip(e, eps, None)
    a = np.clip(a, eps, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _iqr(values: np.ndarray) -> float:
    q1, q3 = np.quantile(values, [0.25, 0.75])
    return float(q3 - q1)


def _ks_statistic(data1: np.ndarray, data2: np.ndarray) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov statistic, computed as ``scipy.stats.ks_2samp`` does (same
    operations, same value) without its p-value, which is not used here and cost most of its time."""
    data1, data2 = np.sort(data1), np.sort(data2)
    data_all = np.concatenate([data1, data2])
    cddiffs = np.searchsorted(data1, data_all, side="right") / len(data1) - np.searchsorted(
        data2, data_all, side="right") / len(data2)
    min_s = np.clip(-cddiffs[np.argmin(cddiffs)], 0, 1)
    max_s = cddiffs[np.argmax(cddiffs)]
    return float(min_s if min_s > max_s else max_s)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation as ``scipy.stats.spearmanr(a, b).statistic`` computes it (average
    ranks, then the Pearson correlation of the two rank columns), for inputs without NaN that are not
    constant."""
    from scipy.stats import rankdata

    return float(np.corrcoef(np.column_stack((rankdata(a), rankdata(b))), rowvar=False)[1, 0])


def _as_float(frame: pd.DataFrame, columns: list[str]) -> dict[str, np.ndarray]:
    """Each column as float values (text that is not a number becomes NaN, as ``pd.to_numeric(...,
    errors="coerce")``)."""
    return {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in columns}


def _narrow(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The grouping and pairing keys plus ``columns`` (a view of the compared columns, not the wide frame)."""
    keys = [k for k in ("area_level", "area_code") if k in frame.columns]
    return frame[keys + [c for c in columns if c not in keys]]


def yoy_shift(
    df_prev_year: pd.DataFrame,
    df_this_year: pd.DataFrame,
    columns: list[str] | None = None,
    *,
    by_level: bool = True,
    thresholds: ShiftThresholds | None = None,
) -> pd.DataFrame:
    """Per feature (and per area_level when ``by_level``), how its distribution moved between years.

    Columns of the result: ``area_level`` (or 'all'), ``feature``, ``n_prev``, ``n_this``,
    ``null_ratio_prev``, ``null_ratio_this``, ``median_prev``, ``median_this``, ``iqr_prev``,
    ``iqr_this``, ``median_shift_iqr`` (median change in units of last year's IQR), ``iqr_ratio``,
    ``psi``, ``ks`` (two-sample Kolmogorov-Smirnov statistic), ``paired_n`` and ``spearman`` (rank
    correlation over areas present in both years), ``flagged`` and ``reasons`` (why it was flagged).
    Too few values (< ``min_n``) are reported but never flagged.

    Only the compared columns are taken out of the (wide) frames, once per year and level, as float
    arrays; the per-feature statistics are numpy on those arrays.
    """
    limits = thresholds or ShiftThresholds()
    if columns is None:
        columns = [c for c in feature_columns(df_this_year) if c in df_prev_year.columns]
    prev_columns = [c for c in columns if c in df_prev_year.columns]
    this_columns = [c for c in columns if c in df_this_year.columns]
    df_prev_year, df_this_year = _narrow(df_prev_year, prev_columns), _narrow(df_this_year, this_columns)
    groups: list[tuple[str, pd.DataFrame, pd.DataFrame]]
    if by_level and "area_level" in df_prev_year and "area_level" in df_this_year:
        levels = [lv for lv in LEVELS if lv in set(df_prev_year["area_level"]) | set(df_this_year["area_level"])]
        levels += sorted(
            {str(v) for v in set(df_prev_year["area_level"]) | set(df_this_year["area_level"])} - set(levels)
        )
        groups = [
            (lv, df_prev_year[df_prev_year["area_level"] == lv], df_this_year[df_this_year["area_level"] == lv])
            for lv in levels
        ]
    else:
        groups = [("all", df_prev_year, df_this_year)]

    rows = []
    for level, prev, this in groups:
        paired = None
        if "area_code" in prev and "area_code" in this:
            paired = prev.drop_duplicates("area_code").set_index("area_code").join(
                this.drop_duplicates("area_code").set_index("area_code"),
                how="inner",
                lsuffix="__prev",
                rsuffix="__this",
            )
        prev_values, this_values = _as_float(prev, prev_columns), _as_float(this, this_columns)
        for column in columns:
            p_all = prev_values.get(column, np.empty(0))
            t_all = this_values.get(column, np.empty(0))
            p = p_all[~np.isnan(p_all)]
            t = t_all[~np.isnan(t_all)]
            row: dict = {
                "area_level": level,
                "feature": column,
                "n_prev": len(p),
                "n_this": len(t),
                "null_ratio_prev": float(np.isnan(p_all).mean()) if len(p_all) else np.nan,
                "null_ratio_this": float(np.isnan(t_all).mean()) if len(t_all) else np.nan,
                "median_prev": float(np.median(p)) if len(p) else np.nan,
                "median_this": float(np.median(t)) if len(t) else np.nan,
                "iqr_prev": _iqr(p) if len(p) else np.nan,
                "iqr_this": _iqr(t) if len(t) else np.nan,
                "median_shift_iqr": np.nan,
                "iqr_ratio": np.nan,
                "psi": np.nan,
                "ks": np.nan,
                "paired_n": 0,
                "spearman": np.nan,
            }
            if len(p) and len(t):
                scale = row["iqr_prev"] if row["iqr_prev"] > 0 else (np.std(p) or 1.0)
                row["median_shift_iqr"] = (row["median_this"] - row["median_prev"]) / scale
                row["iqr_ratio"] = row["iqr_this"] / row["iqr_prev"] if row["iqr_prev"] > 0 else np.nan
                row["psi"] = _psi(p, t)
                row["ks"] = _ks_statistic(p, t)
            if paired is not None and f"{column}__prev" in paired and f"{column}__this" in paired:
                a, b = _as_float(paired, [f"{column}__prev", f"{column}__this"]).values()
                both = ~np.isnan(a) & ~np.isnan(b)
                a, b = a[both], b[both]
                row["paired_n"] = len(a)
                if len(a) >= 3 and len(np.unique(a)) > 1 and len(np.unique(b)) > 1:
                    row["spearman"] = _spearman(a, b)
            reasons = []
            enough = row["n_prev"] >= limits.min_n and row["n_this"] >= limits.min_n
            if enough:
                if abs(row["median_shift_iqr"]) > limits.median_shift_iqr:
                    reasons.append(f"median moved {row['median_shift_iqr']:+.2f} IQR")
                if not np.isnan(row["iqr_ratio"]) and not (
                    limits.iqr_ratio_low <= row["iqr_ratio"] <= limits.iqr_ratio_high
                ):
                    reasons.append(f"spread x{row['iqr_ratio']:.2f}")
                if row["psi"] > limits.psi:
                    reasons.append(f"PSI {row['psi']:.2f}")
                if row["ks"] > limits.ks:
                    reasons.append(f"KS {row['ks']:.2f}")
                if row["paired_n"] >= limits.min_n and not np.isnan(row["spearman"]) and row["spearman"] < limits.min_spearman:
                    reasons.append(f"rank correlation {row['spearman']:.2f} over {row['paired_n']} areas")
            if (
                not np.isnan(row["null_ratio_prev"])
                and not np.isnan(row["null_ratio_this"])
                and row["null_ratio_this"] - row["null_ratio_prev"] > limits.null_ratio_jump
            ):
                reasons.append(f"NULLs {row['null_ratio_prev']:.0%} -> {row['null_ratio_this']:.0%}")
            row["flagged"] = bool(reasons)
            row["reasons"] = "; ".join(reasons)
            rows.append(row)
    return pd.DataFrame(rows)


def shift_since_last_publication(
    areas: pd.DataFrame, feature_source: dict[str, str], thresholds: ShiftThresholds | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Year-over-year shift of every feature between the two latest years in which *it* was published.

    A publisher releases indicators at different moments (a first KWB release has many "." for figures
    not yet published; RIVM measured some indicators only from 2016). Comparing a feature's latest year
    of values with the source's latest year would call "not yet published" a collapse to 100 % NULL, so
    each feature is compared over its own two latest published years, within the gemeenten the source
    covers in both of those years. Features with values in an earlier year of their source but none in
    the source's latest year are returned apart (``not_published``), not flagged.

    Returns ``(shift table as yoy_shift plus source and years columns, not_published table)``.
    """
    reports = []
    not_published = []
    for source in sorted(set(feature_source.values())):
        columns = [c for c, s in feature_source.items() if s == source and c in areas.columns]
        if not columns:
            continue
        has_value = areas[columns].notna().groupby(areas["year"]).any()
        source_years = sorted(int(y) for y in has_value.index[has_value.any(axis=1)])
        if not source_years:
            continue
        pairs: dict[tuple[int, int], list[str]] = {}
        for column in columns:
            years = sorted(int(y) for y in has_value.index[has_value[column]])
            if years and years[-1] < source_years[-1]:
                not_published.append(
                    {"source": source, "feature": column, "last_published": years[-1], "source_latest": source_years[-1]}
                )
            if len(years) >= 2:
                pairs.setdefault((years[-2], years[-1]), []).append(column)
        for (prev, this), cols in sorted(pairs.items()):
            covered = [
                set(areas.loc[(areas["year"] == y) & areas[cols].notna().any(axis=1), "gemeente_code"])
                for y in (prev, this)
            ]
            common = covered[0] & covered[1]
            if not common:
                continue
            in_common = areas["gemeente_code"].isin(common)
            # the keys and this pair's columns only: filtering the whole wide frame copied every column
            narrow = areas[[k for k in ("area_level", "area_code") if k in areas.columns] + cols]
            shift = yoy_shift(
                narrow[(areas["year"] == prev) & in_common],
                narrow[(areas["year"] == this) & in_common],
                cols,
                thresholds=thresholds,
            )
            shift.insert(0, "years", f"{prev}->{this}")
            shift.insert(0, "source", source)
            reports.append(shift)
    table = pd.concat(reports, ignore_index=True) if reports else pd.DataFrame(columns=["source", "years", "flagged"])
    return table, pd.DataFrame(not_published, columns=["source", "feature", "last_published", "source_latest"])


__all__ = ["ShiftThresholds", "shift_since_last_publication", "yoy_shift"]
