"""Gate 2 machinery: checks on the wide feature table (``fct_area_features``), no Dagster.

The feature table is still being designed, so its suite is not fixed yet. What the gate will need is
here, for a wide frame with ``area_code``, ``area_level`` ('gemeente' | 'wijk' | 'buurt'), ``year`` and
numeric feature columns:

- :func:`coverage_by_year_level` - how many areas per (year, level) and which share has each feature;
- :func:`null_ratio_expectations` - GE expectation specs (our suite JSON format) bounding NULL ratios;
- :func:`footprint_null_ratios` and :func:`footprint_null_spec` - gate 2's NULL-ratio rule: one row per
  source, year and feature inside the source's footprint, checked by one expectation;
- :func:`feature_suite_spec` - a complete suite spec for the table (keys, codes, levels, NULL ratios,
  optional value ranges) that :func:`wijk_assets.lib.quality.ge_runner.validate_frame` runs;
- the year-over-year shift warning lives in :mod:`wijk_assets.lib.quality.feature_shift`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from wijk_assets.lib.warehouse import quote_ident

KEY_COLUMNS = ("area_code", "area_level", "year")
LEVELS = ("gemeente", "wijk", "buurt")
# SQL condition for rows at the gated levels; its parameters are LEVELS
GATED_LEVELS_SQL = f"area_level IN ({', '.join('?' for _ in LEVELS)})"
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
        if ratio == 1.0:  # "every row may be NULL" can never fail: no expectation (it cost GE time)
            continue
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


FOOTPRINT_COLUMNS = ["source", "year", "feature", "areas", "missing", "null_ratio"]


def footprint_null_ratios(con, table: str, catalog: pd.DataFrame) -> pd.DataFrame:
    """One row per source, year and feature the source published that year: how many areas of the
    source's footprint that year lack it. The footprint: the areas of the gemeenten where the source has
    any value that year, at the gated levels the source has any value at that year. A wijk-level source
    (the national KWB) is not judged on the buurten another source (the health monitor) brings into the
    same year; a gemeente whose wijken are all empty at a level the source publishes still counts.

    A feature the source did not publish at all that year (e.g. not measured in 2012) is "not measured",
    recorded by staging, not a gap, and has no row. A NaN counts as missing, as a NULL does.

    Computed in DuckDB on ``table`` (a wide table with ``area_level``, ``gemeente_code``, ``year`` and the
    feature columns; ``con`` a DuckDB connection), one aggregate query per source over that source's
    columns: the pandas version read the whole national table into a frame first (~2-3 s per build).
    """
    schema, _, name = table.rpartition(".")
    types = dict(con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "AND table_schema = coalesce(nullif(?, ''), current_schema()) ORDER BY ordinal_position",
        [name, schema],
    ).fetchall())
    feature_source = dict(zip(catalog["feature"], catalog["source"]))
    by_source: dict[str, list[str]] = {}
    for column in types:
        if column in feature_source:
            by_source.setdefault(feature_source[column], []).append(column)

    def present(column: str) -> str:
        col = quote_ident(column)
        if types[column].upper() in ("DOUBLE", "FLOAT", "REAL"):
            return f"({col} IS NOT NULL AND NOT isnan({col}))"
        return f"({col} IS NOT NULL)"

    source_sql = ".".join(quote_ident(part) for part in table.split("."))
    rows = []
    for source, columns in sorted(by_source.items()):
        counts = ", ".join(f"count(*) FILTER (WHERE {present(c)})" for c in columns)
        result = con.execute(
            f"""
            WITH base AS (SELECT * FROM {source_sql} WHERE {GATED_LEVELS_SQL}),
            valued AS (SELECT year, gemeente_code, area_level FROM base WHERE {' OR '.join(present(c) for c in columns)}),
            gemeenten AS (SELECT DISTINCT year, gemeente_code FROM valued),
            levels AS (SELECT DISTINCT year, area_level FROM valued)
            SELECT b.year, count(*), {counts}
            FROM base AS b SEMI JOIN gemeenten AS g
              ON b.year = g.year AND b.gemeente_code IS NOT DISTINCT FROM g.gemeente_code
            WHERE (b.year, b.area_level) IN (SELECT (year, area_level) FROM levels)
            GROUP BY b.year ORDER BY b.year
            """,
            list(LEVELS),
        ).fetchall()
        for year, areas, *column_counts in result:
            for column, count in zip(columns, column_counts):
                if count:
                    missing = int(areas) - int(count)
                    rows.append({"source": source, "year": int(year), "feature": column, "areas": int(areas),
                                 "missing": missing, "null_ratio": missing / int(areas)})
    return pd.DataFrame(rows, columns=FOOTPRINT_COLUMNS)


def footprint_null_spec(max_null_ratio: float) -> dict:
    """Gate 2's NULL-ratio rule as one expectation over :func:`footprint_null_ratios` (one row per source,
    year and feature) instead of one per feature and source year (~320 expectations, ~2.8 s of Great
    Expectations' per-expectation overhead on a national build for a few thousand rows)."""
    return {
        "name": "fct_area_features_footprint_nulls",
        "sample_columns": FOOTPRINT_COLUMNS,
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "null_ratio", "min_value": 0.0, "max_value": float(max_null_ratio)},
                "meta": {"blocking": True, "describe_rows": True, "why": (
                    f"At most {max_null_ratio:.0%} of the areas a source covers in a year may lack one of the "
                    "features it published that year: more NULLs means a file was not loaded whole, a concept "
                    "mapping broke, or suppression swallowed the feature, and models would silently impute "
                    "most of it.")},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "null_ratio"},
             "meta": {"blocking": True, "why": "every published feature has a NULL ratio"}},
        ],
    }


# --------------------------------------------------------------------------------------------------
# Year-on-year shift
# --------------------------------------------------------------------------------------------------


__all__ = [
    "CODE_REGEX_BY_LEVEL",
    "KEY_COLUMNS",
    "LEVELS",
    "coverage_by_year_level",
    "feature_columns",
    "feature_suite_spec",
    "footprint_null_ratios",
    "footprint_null_spec",
    "null_ratio_expectations",
]
