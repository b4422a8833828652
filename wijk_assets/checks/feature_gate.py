"""Gate 2 machinery: checks on the wide feature table (``fct_area_features``), no Dagster.

The feature table is still being designed, so its suite is not fixed yet. What the gate will need is
here, for a wide frame with ``area_code``, ``area_level`` ('gemeente' | 'wijk' | 'buurt'), ``year`` and
numeric feature columns:

- :func:`coverage_by_year_level` - how many areas per (year, level) and which share has each feature;
- :func:`null_ratio_expectations` - GE expectation specs (our suite JSON format) bounding NULL ratios;
- :func:`feature_suite_spec` - a complete suite spec for the table (keys, codes, levels, NULL ratios,
  optional value ranges) that :func:`wijk_assets.checks.ge_runner.validate_frame` runs;
- :func:`yoy_shift` - per feature, how the distribution moved from one year to the next (median shift
  in IQR units, IQR ratio, PSI, KS statistic, rank correlation of the areas present in both years) and
  whether that is implausible for real neighbourhood statistics (usually a unit change, a column
  shift, a suppression wave or a mapping error rather than a real change).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

KEY_COLUMNS = ("area_code", "area_level", "year")
LEVELS = ("gemeente", "wijk", "buurt")
# Since 2024 Amsterdam's wijk and buurt codes end in letters (WK0363AA, BU0363AA01).
CODE_REGEX_BY_LEVEL = {"gemeente": r"^GM\d{4}$", "wijk": r"^WK\d{4}[0-9A-Z]{2}$", "buurt": r"^BU\d{4}[0-9A-Z]{4}$"}


def feature_columns(df: pd.DataFrame, exclude: Iterable[str] = KEY_COLUMNS) -> list[str]:
    """Numeric columns other than the keys (booleans excluded)."""
    skip = set(exclude)
    return [
        c
        for c in df.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(df[c])
        and not pd.api.types.is_bool_dtype(df[c])
    ]


def coverage_by_year_level(df: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """Coverage per (year, area_level, feature): areas, areas with a value, and their share.

    Returns a long frame with columns ``year, area_level, feature, areas, non_null, coverage`` (coverage
    = non_null / areas, 0..1), sorted by year, level (gemeente, wijk, buurt) and feature. ``areas``
    counts distinct ``area_code`` values, so a duplicated area does not inflate coverage.
    """
    columns = columns if columns is not None else feature_columns(df)
    out_cols = ["year", "area_level", "feature", "areas", "non_null", "coverage"]
    if df.empty or not columns:
        return pd.DataFrame(columns=out_cols)
    dedup = df.drop_duplicates(subset=["year", "area_level", "area_code"])
    grouped = dedup.groupby(["year", "area_level"], dropna=False, observed=True)
    areas = grouped["area_code"].nunique().rename("areas")
    non_null = grouped[columns].count()
    long = non_null.reset_index().melt(
        id_vars=["year", "area_level"], var_name="feature", value_name="non_null"
    )
    long = long.merge(areas.reset_index(), on=["year", "area_level"], how="left")
    long["coverage"] = np.where(long["areas"] > 0, long["non_null"] / long["areas"], np.nan)
    order = {level: i for i, level in enumerate(LEVELS)}
    long["_level_order"] = long["area_level"].map(order).fillna(len(order))
    long = long.sort_values(["year", "_level_order", "feature"]).drop(columns="_level_order")
    return long[out_cols].reset_index(drop=True)


def coverage_matrix(coverage: pd.DataFrame) -> pd.DataFrame:
    """Pivot :func:`coverage_by_year_level` output to features x (year, level), for reports."""
    return coverage.pivot_table(
        index="feature", columns=["year", "area_level"], values="coverage", aggfunc="first"
    )


def null_ratio_expectations(
    columns: Iterable[str],
    max_null_ratio: float | Mapping[str, float],
    *,
    blocking: bool = True,
    level: str | None = None,
    why: str | None = None,
) -> list[dict]:
    """GE ``expect_column_values_to_not_be_null`` specs allowing at most ``max_null_ratio`` NULLs.

    ``max_null_ratio`` is one ratio for all columns or a per-column mapping (columns absent from it are
    skipped). ``level`` restricts the rule to one area level with a GE row_condition. Output is our
    suite JSON format (``type``/``kwargs``/``meta``), ready to append to a suite's ``expectations``.
    """
    specs = []
    for column in columns:
        ratio = max_null_ratio.get(column) if isinstance(max_null_ratio, Mapping) else max_null_ratio
        if ratio is None:
            continue
        ratio = float(ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"max_null_ratio for {column!r} must be within 0..1, got {ratio}")
        kwargs: dict = {"column": column}
        if ratio > 0:
            kwargs["mostly"] = round(1.0 - ratio, 6)
        if level:
            kwargs["row_condition"] = {
                "type": "comparison",
                "column": {"name": "area_level"},
                "operator": "==",
                "parameter": level,
            }
        reason = why or (
            f"At most {ratio:.0%} of {level + ' ' if level else ''}areas may lack {column}: more NULLs "
            "means a source year was not loaded, a concept mapping broke, or suppression swallowed the "
            "feature, and models would silently impute most of it."
        )
        specs.append(
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": kwargs,
                "meta": {"blocking": blocking, "why": reason},
            }
        )
    return specs


def feature_suite_spec(
    columns: list[str],
    *,
    name: str = "fct_area_features",
    max_null_ratio: float | Mapping[str, float] = 0.5,
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
    year_range: tuple[int, int] = (2000, 2100),
    blocking_nulls: bool = True,
) -> dict:
    """A suite spec for the wide feature table, in the format ``ge_runner`` loads from JSON.

    Structural rules (keys present and not NULL, one row per area and year, code format matching the
    level) are always blocking; NULL ratios are blocking unless ``blocking_nulls`` is False; ``ranges``
    maps a feature to (min, max) with None for an open side. ``json.dumps`` the result to freeze it as
    ``suites/fct_area_features.json`` once the table's columns are settled.
    """
    level_condition = {
        level: {"type": "comparison", "column": {"name": "area_level"}, "operator": "==", "parameter": level}
        for level in LEVELS
    }
    expectations: list[dict] = [
        {
            "type": "expect_table_columns_to_match_set",
            "kwargs": {"column_set": [*KEY_COLUMNS, *columns], "exact_match": False},
            "meta": {"blocking": True, "why": "The feature table is the model's input contract; a lost feature column must stop the run, not be imputed."},
        },
        *[
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": key},
                "meta": {"blocking": True, "why": f"Every feature row needs its {key} to be joined, filtered and explained."},
            }
            for key in KEY_COLUMNS
        ],
        {
            "type": "expect_compound_columns_to_be_unique",
            "kwargs": {"column_list": ["area_code", "year"]},
            "meta": {"blocking": True, "why": "One row per area and year; duplicates double-count an area in training and in rankings."},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "area_level", "value_set": list(LEVELS)},
            "meta": {"blocking": True, "why": "Only gemeente, wijk and buurt rows belong in the feature table."},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "year", "min_value": year_range[0], "max_value": year_range[1]},
            "meta": {"blocking": True, "why": "A year outside the plausible range means a period code was misread upstream."},
        },
    ]
    for level, regex in CODE_REGEX_BY_LEVEL.items():
        expectations.append(
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "area_code", "regex": regex, "row_condition": level_condition[level]},
                "meta": {"blocking": True, "why": f"{level} rows must carry a clean {regex[1:3]} code (stripped, right length) so they join to geometry and other sources."},
            }
        )
    expectations += null_ratio_expectations(columns, max_null_ratio, blocking=blocking_nulls)
    for column, (low, high) in (ranges or {}).items():
        kwargs: dict = {"column": column}
        if low is not None:
            kwargs["min_value"] = low
        if high is not None:
            kwargs["max_value"] = high
        expectations.append(
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": kwargs,
                "meta": {"blocking": True, "why": f"{column} outside [{low}, {high}] is not a real value for any area (unit or mapping error)."},
            }
        )
    return {"name": name, "description": "Gate 2 on the wide feature table.", "expectations": expectations}


# --------------------------------------------------------------------------------------------------
# Year-on-year shift
# --------------------------------------------------------------------------------------------------


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
    """
    from scipy.stats import ks_2samp, spearmanr

    limits = thresholds or ShiftThresholds()
    if columns is None:
        columns = [c for c in feature_columns(df_this_year) if c in df_prev_year.columns]
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
        for column in columns:
            p_all = pd.to_numeric(prev[column], errors="coerce") if column in prev else pd.Series(dtype=float)
            t_all = pd.to_numeric(this[column], errors="coerce") if column in this else pd.Series(dtype=float)
            p = p_all.dropna().to_numpy(float)
            t = t_all.dropna().to_numpy(float)
            row: dict = {
                "area_level": level,
                "feature": column,
                "n_prev": len(p),
                "n_this": len(t),
                "null_ratio_prev": float(p_all.isna().mean()) if len(p_all) else np.nan,
                "null_ratio_this": float(t_all.isna().mean()) if len(t_all) else np.nan,
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
                with warnings.catch_warnings():  # "exact calculation unsuccessful": statistic is fine
                    warnings.simplefilter("ignore", RuntimeWarning)
                    row["ks"] = float(ks_2samp(p, t, method="asymp").statistic)
            if paired is not None and f"{column}__prev" in paired and f"{column}__this" in paired:
                pair = paired[[f"{column}__prev", f"{column}__this"]].apply(pd.to_numeric, errors="coerce").dropna()
                row["paired_n"] = len(pair)
                if len(pair) >= 3 and pair.nunique().min() > 1:
                    row["spearman"] = float(spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic)
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


__all__ = [
    "CODE_REGEX_BY_LEVEL",
    "KEY_COLUMNS",
    "LEVELS",
    "ShiftThresholds",
    "coverage_by_year_level",
    "coverage_matrix",
    "feature_columns",
    "feature_suite_spec",
    "null_ratio_expectations",
    "yoy_shift",
]
