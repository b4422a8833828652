"""Run Great Expectations (GX Core 1.x) suites on pandas frames. Pure functions, no Dagster.

Why not ``dagster-ge``: it is written against the GE 0.x ``DataContext``/``Validator`` API and does not
work with GE 1.x. We drive GE ourselves, the 1.x way::

    ephemeral context -> pandas data source -> dataframe asset -> whole-dataframe batch definition
    -> batch.validate(suite)

Each :func:`validate_frame` call builds a fresh ephemeral context (nothing is written to disk; no
``gx/`` folder in the repo). GE is imported on first use (it takes ~3 s, more on a busy machine), with
``GX_ANALYTICS_ENABLED=false`` set before the import.

Suites are JSON files ``wijk_assets/lib/quality/suites/<name>.json`` in our own small format holding GE
expectation type names and their kwargs verbatim, so every rule is plain GE::

    {"name": "raw_rivm_gezondheid",
     "prepare": "raw_long",               # add the derived columns of prepare_raw_for_validation
     "batch_by": ["release_year"],        # validate each release year as its own GE batch
     "measure_groups": {"percentage": "."},        # regex on measure_key -> column measure_group
     "measure_concepts": {"inwoners": "^a_inw$"},  # regex on measure_key -> column measure_concept
     "expectations": [
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "area_code_clean", "regex": "^(?:BU\\d{8}|WK\\d{6}|GM\\d{4}|NL0[01])$"},
         "meta": {"blocking": true, "why": "plain English reason"}}]}

``meta.blocking`` (default true) decides whether a failure fails the gate; non-blocking expectations
are reported as warnings. Value rules per kind of measure (percentages 0-100, counts >= 0, ...) use
GE 1.x ``row_condition`` in its Condition dict form
(``{"type": "comparison", "column": {"name": "measure_group"}, "operator": "==", "parameter": "x"}``);
the pandas engine applies it with ``DataFrame.query`` and it works reliably in GE 1.24 for
``==``/``!=``/``IN`` and null tests (string row conditions are deprecated since GE 1.9 and not used).

GE 1.24 pitfalls met here (and handled):

- ``expect_column_values_to_match_regex`` runs ``str.contains`` (a *search*): anchor with ``^...$``;
  use ``(?:...)``, capture groups make pandas warn on every run.
- ``result_format`` with ``unexpected_index_column_names`` builds a dict per failing row in a Python
  loop *before* truncating: minutes when a million rows fail. We validate on a RangeIndex and look up
  ``partial_unexpected_index_list`` positions ourselves.
- ``expect_column_distinct_values_to_contain_set`` returns ``observed_value: None``; what is missing
  is in ``partial_missing_list``.
- The pandas engine copies the whole frame for each metric domain and re-runs ``DataFrame.query`` for
  each row-conditioned metric. On a 1.9M-row RIVM year that was minutes; dropping unused helper
  columns and turning text into ``category`` (:func:`_compact_for_ge`) brings it to ~20 s. Categoricals
  need care: ``value_counts`` lists unused categories (so batches drop them, and value-count based
  expectations keep object dtype) and pair equality refuses categoricals (``level`` and
  ``region_type_level`` stay object).
- Progress bars ("Calculating Metrics") are on by default: switched off per context.
- A missing column does not raise: the expectation result carries ``exception_info``; we report it
  as a failure with the message.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Any

import numpy as np
import pandas as pd

from wijk_assets.lib.sources.base import key_stem

SUITES_DIR = Path(__file__).resolve().parent / "suites"

MAX_SAMPLES = 10  # failing values / failing rows reported per expectation
MAX_OBSERVED_ITEMS = 25  # long observed values (distinct value lists) are cut to this many items

# Columns of a failing row reported as its "address" (only those present in the frame are used).
SAMPLE_ROW_COLUMNS: tuple[str, ...] = (
    "release_year",
    "area_code",
    "subgroup",
    "measure_key",
    "value_raw",
    "source_file",
    "source_row",
)

# GE result format: SUMMARY gives counts, up to MAX_SAMPLES failing values and the *index* of up to
# MAX_SAMPLES failing rows. We deliberately do NOT pass ``unexpected_index_column_names``: with named
# columns GE 1.24 builds a dict per failing row in a Python loop (all failing rows, before truncating),
# which takes minutes when a million rows fail. With the default RangeIndex it returns plain integers
# and we look the rows up ourselves.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "SUMMARY",
    "partial_unexpected_count": MAX_SAMPLES,
    "include_unexpected_rows": False,
}

# Marker cells. CBS: '.' = not available / suppressed, 'x' = secret, '?' = unreliable, '-' = nil or
# not applicable (ambiguous, so not read as 0). Leefbaarometer writes 'NA'. Empty / NULL = not
# measured (e.g. 50090NED indicators a year did not measure) - kept apart from suppression.
SUPPRESSION_MARKERS = frozenset({".", "x", "X", "?", "-"})
MISSING_MARKERS = frozenset({"", "NA", "N/A", "NaN", "nan"})

LEVEL_BY_PREFIX = {"NL": "land", "GM": "gemeente", "WK": "wijk", "BU": "buurt"}
LEVEL_BY_REGION_TYPE = {
    "land": "land",
    "nederland": "land",
    "country": "land",
    "the netherlands": "land",
    "gemeente": "gemeente",
    "municipality": "gemeente",
    "wijk": "wijk",
    "district": "wijk",
    "buurt": "buurt",
    "neighbourhood": "buurt",
    "neighborhood": "buurt",
}

# Columns prepare_raw_for_validation adds (raw columns are never modified).
DERIVED_RAW_COLUMNS: tuple[str, ...] = (
    "area_code_clean",
    "level",
    "gemeente_code",
    "region_type_level",
    "measure_stem",
    "measure_group",
    "measure_concept",
    "value_clean",
    "value_num",
    "value_status",
    "is_suppressed",
    "is_missing",
)

_PREPARED_FLAG = "wijk_checks_prepared"


# --------------------------------------------------------------------------------------------------
# Suites
# --------------------------------------------------------------------------------------------------


def suite_path(name: str) -> Path:
    return SUITES_DIR / f"{name}.json"


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.json"))


def load_suite(name: str) -> dict:
    """Read ``suites/<name>.json`` (or a path to a JSON file) and check its shape."""
    path = Path(name) if str(name).endswith(".json") else suite_path(name)
    if not path.is_file():
        raise FileNotFoundError(
            f"GE suite {name!r} not found at {path}; available: {', '.join(list_suites()) or 'none'}"
        )
    spec = json.loads(path.read_text(encoding="utf-8"))
    _check_spec(spec, str(path))
    return spec


def _check_spec(spec: dict, where: str) -> None:
    if not isinstance(spec, dict) or "name" not in spec or "expectations" not in spec:
        raise ValueError(f"{where}: a suite needs 'name' and 'expectations'")
    for i, exp in enumerate(spec["expectations"]):
        if not isinstance(exp, dict) or not str(exp.get("type", "")).startswith("expect_"):
            raise ValueError(f"{where}: expectation #{i} needs a 'type' like 'expect_...'")
        if not isinstance(exp.get("kwargs", {}), dict):
            raise ValueError(f"{where}: expectation #{i} ({exp['type']}): 'kwargs' must be an object")
        if not (exp.get("meta") or {}).get("why"):
            raise ValueError(f"{where}: expectation #{i} ({exp['type']}) has no meta.why")


def _resolve_spec(suite_spec: dict | str) -> dict:
    if isinstance(suite_spec, str):
        return load_suite(suite_spec)
    _check_spec(suite_spec, f"suite {suite_spec.get('name', '?')!r}")
    return suite_spec


@lru_cache(maxsize=1)
def _gx():
    """Import GE once per process (≈3 s), with usage statistics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    _no_batch_fingerprint()
    return gx


def _no_batch_fingerprint() -> None:
    """Skip the batch fingerprint GE's pandas engine adds to every batch under 1e9 bytes.

    ``PandasExecutionEngine.get_batch_data_and_markers`` hashes every row of each batch (pandas'
    ``hash_pandas_object``, then md5) into a ``pandas_data_fingerprint`` batch marker whenever
    ``HASH_THRESHOLD`` (1e9 bytes, shallow) is not reached: a national RIVM year's frame and each of its
    narrow frames, ~0.85 s per RIVM load. Nothing here reads that marker (a result's evidence names the
    file, its sha256 and the source row), and it changes no metric or verdict. With the threshold at 0 only
    the marker is skipped. A GE layout without the constant is left as it is."""
    try:
        from great_expectations.execution_engine import pandas_execution_engine
    except ImportError:  # pragma: no cover - another GE layout
        return
    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0


def _quiet(context) -> None:
    """No tqdm "Calculating Metrics" bars in Dagster logs / pytest output."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # cosmetic only
        pass


def build_suite(spec: dict | str, only: Iterable[int] | None = None, name: str | None = None):
    """Our JSON spec -> ``gx.ExpectationSuite`` (not registered in any context).

    Each expectation keeps its spec ``meta`` plus ``wijk_index`` (its position in the spec), which is
    how results are matched back to ``why``/``blocking``. ``only``: the positions to include (default
    all); ``name``: the suite's name (default the spec's).
    """
    spec = _resolve_spec(spec)
    gx = _gx()
    from great_expectations.expectations.registry import get_expectation_impl
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    keep = None if only is None else set(only)
    expectations = []
    for i, exp in enumerate(spec["expectations"]):
        if keep is not None and i not in keep:
            continue
        kwargs = dict(exp.get("kwargs") or {})
        if isinstance(kwargs.get("row_condition"), dict):
            kwargs["row_condition"] = deserialize_row_condition(kwargs["row_condition"])
        meta = {**(exp.get("meta") or {}), "wijk_index": i}
        try:
            impl = get_expectation_impl(exp["type"])
            expectations.append(impl(**kwargs, meta=meta))
        except Exception as error:  # name the suite and the expectation, GE's messages do not
            raise ValueError(
                f"suite {spec['name']!r}, expectation #{i} ({exp['type']}): {error}"
            ) from error
    return gx.ExpectationSuite(name=name or spec["name"], expectations=expectations)


# Expectations whose verdict on a row depends only on that row's value in one column (or, for the pair
# expectation, its two columns). Without ``mostly`` (every value must pass), "every row passes" is the
# same as "every distinct value passes"; with a row condition, the same holds for the distinct
# combinations of the column(s) and the condition's columns (the condition selects the same
# combinations). A null is one of the distinct values (the not-null expectation fails on it; the others
# skip nulls on rows and on distinct values alike).
_BY_VALUE_TYPES = frozenset({
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list",
    "expect_column_values_to_not_match_regex_list",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_not_be_null",
    "expect_column_pair_values_to_be_equal",
})
# Expectations on the *set* of a column's distinct values (among the rows a row condition keeps): the
# distinct combinations of the column and the condition's columns hold the same set, so the verdict and
# the observed value are the same as over every row; there is no per-row evidence to look up.
_BY_SET_TYPES = frozenset({
    "expect_column_unique_value_count_to_be_between",
    "expect_column_distinct_values_to_contain_set",
    "expect_column_distinct_values_to_be_in_set",
    "expect_column_distinct_values_to_equal_set",
})


# From this many rows on, per-row expectations that are not checked by value run on a frame of only the
# columns they read. GE's pandas engine applies a row condition to the whole batch frame (a copy of every
# column of the kept rows) and builds a compound key's domain from it: on a national RIVM year (1.9 M
# rows, ~20 columns) the compound-uniqueness and the conditional not-null expectations took 0.7-1.1 s
# each on the whole frame and 0.35-0.4 s on their own columns. On small frames the extra validations'
# fixed cost would outweigh that.
NARROW_MIN_ROWS = 200_000


def _expectation_columns(exp: dict) -> tuple[str, ...] | None:
    """The columns a column-level expectation reads (its column(s) and its row condition's), sorted;
    None for a table-level one (it needs the whole frame)."""
    if not str(exp.get("type", "")).startswith(("expect_column", "expect_compound_columns", "expect_multicolumn",
                                                 "expect_select_column")):
        return None
    kwargs = exp.get("kwargs") or {}
    columns = {str(c) for c in _kwarg_columns(kwargs)} | _condition_columns(kwargs.get("row_condition"))
    return tuple(sorted(columns)) or None


def _narrow_groups(spec: dict, frame: pd.DataFrame, positions: list[int]) -> dict[tuple[str, ...], list[int]]:
    """Of the expectations at ``positions``: those to validate on a frame of their own columns, grouped
    by those columns (none below :data:`NARROW_MIN_ROWS` rows, none whose columns the frame lacks: GE
    reports a missing column on the whole frame)."""
    if len(frame) < NARROW_MIN_ROWS:
        return {}
    groups: dict[tuple[str, ...], list[int]] = {}
    for i in positions:
        columns = _expectation_columns(spec["expectations"][i])
        if columns and all(c in frame.columns for c in columns):
            groups.setdefault(columns, []).append(i)
    return groups


def _by_value_expectations(spec: dict, frame: pd.DataFrame) -> dict[tuple[str, ...], list[int]]:
    """Per (column(s), row-condition columns…), the positions of the expectations checked on their
    distinct combinations (see ``_BY_VALUE_TYPES`` and ``_BY_SET_TYPES``)."""
    out: dict[tuple[str, ...], list[int]] = {}
    for i, exp in enumerate(spec["expectations"]):
        kwargs = exp.get("kwargs") or {}
        columns = [kwargs.get("column_A"), kwargs.get("column_B")] if "column_A" in kwargs else [kwargs.get("column")]
        by_value = exp["type"] in _BY_VALUE_TYPES and kwargs.get("mostly", 1) in (1, None)
        if not (by_value or exp["type"] in _BY_SET_TYPES) or any(c not in frame.columns for c in columns):
            continue
        condition = sorted(_condition_columns(kwargs.get("row_condition")) - set(columns))
        if any(c not in frame.columns for c in condition):
            continue
        out.setdefault((*columns, *condition), []).append(i)
    return out


def _distinct_values(part: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """The distinct combinations of ``columns`` in ``part`` (nulls included), text as plain objects."""
    if len(columns) == 1 and isinstance(part[columns[0]].dtype, pd.CategoricalDtype):
        column = part[columns[0]]
        distinct = list(column.cat.categories) + ([None] if (column.cat.codes.to_numpy() < 0).any() else [])
        values = pd.DataFrame({columns[0]: pd.Series(distinct, dtype=object)})
    else:
        values = part[list(columns)].drop_duplicates().reset_index(drop=True)
    for name in values.columns:
        if isinstance(values[name].dtype, pd.CategoricalDtype):
            values[name] = _none_if_na(values[name].astype(object))
    return values


# --------------------------------------------------------------------------------------------------
# Raw long rows -> checkable columns
# --------------------------------------------------------------------------------------------------


# Derived text columns that stay plain object dtype: GE compares them pairwise
# (expect_column_pair_values_to_be_equal), which pandas refuses for categoricals.
_OBJECT_DERIVED = frozenset({"level", "region_type_level"})


def _per_distinct(series: pd.Series, func) -> pd.DataFrame:
    """Apply ``func`` (distinct non-null values as a Series -> DataFrame of derived columns, same
    index) once per distinct value and broadcast back to every row; nulls give None/NaN/False.

    A raw table has millions of rows but only thousands of distinct codes and keys and about a
    thousand distinct value texts, so this is much faster than string ops on every row. Derived
    text comes back as ``category`` (cheap for GE to copy and filter), except ``_OBJECT_DERIVED``.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    derived = func(pd.Series(np.asarray(uniques, dtype=object)))
    null_rows = codes < 0
    safe_codes = np.where(null_rows, 0, codes)
    out = {}
    for name in derived.columns:
        values = derived[name].to_numpy()
        if len(values) == 0:
            kind_fill = {"f": np.nan, "b": False}.get(values.dtype.kind)
            out[name] = np.full(len(codes), kind_fill, dtype=values.dtype if kind_fill is not None else object)
            if name not in _OBJECT_DERIVED and values.dtype.kind not in "fb":
                out[name] = pd.Categorical(out[name])
            continue
        if values.dtype.kind == "f":
            out[name] = np.where(null_rows, np.nan, values[safe_codes])
        elif values.dtype.kind == "b":
            out[name] = np.where(null_rows, False, values[safe_codes])
        elif name in _OBJECT_DERIVED:
            taken = values.astype(object)[safe_codes]
            taken[null_rows] = None
            out[name] = taken
        else:
            value_codes, categories = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
            row_codes = np.where(null_rows, -1, value_codes[safe_codes])
            out[name] = pd.Categorical.from_codes(row_codes, categories=pd.Index(categories, dtype=object))
    return pd.DataFrame(out, index=series.index)


def _none_if_na(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def _code_parts(codes: pd.Series) -> pd.DataFrame:
    clean = codes.astype(str).str.strip()
    prefix = clean.str[:2]
    digits = clean.str[2:6]
    is_area = prefix.isin(["GM", "WK", "BU"]) & digits.str.fullmatch(r"\d{4}")
    return pd.DataFrame(
        {
            "area_code_clean": clean,
            "level": _none_if_na(prefix.map(LEVEL_BY_PREFIX)),
            "gemeente_code": ("GM" + digits).where(is_area, None),
        }
    )


def _region_type_level(types: pd.Series) -> pd.DataFrame:
    clean = types.astype(str).str.strip()
    mapped = clean.str.lower().map(LEVEL_BY_REGION_TYPE)
    level = mapped.where(mapped.notna(), "?" + clean).where(clean != "", None)
    return pd.DataFrame({"region_type_level": _none_if_na(level)})


# A suite may say ``"measure_concepts": "concept_map"`` / ``"measure_groups": "concept_map"``: the
# concept (and the raw value group) then come from dbt's concept-map seed for the suite's ``source``, so
# required measures are named by concept whatever key a file or feed uses (a_inw, AantalInwoners_5).
CONCEPT_MAP = "concept_map"


def _from_concept_map(clean: pd.Series, source: str | None, what: str) -> pd.Series:
    if not source:
        raise ValueError(f'a suite with "measure_{what}s": "{CONCEPT_MAP}" needs a "source"')
    from wijk_assets.lib.sources.concepts import ConceptResolver

    resolver = ConceptResolver(source)
    rows = clean.map(resolver.row)
    values = rows.map(lambda r: None if r is None else (r.concept if what == "concept" else r.raw_group))
    return values.astype(object)


def measure_parts(groups: dict | str | None, concepts: dict | str | None, source: str | None = None):
    def parts(keys: pd.Series) -> pd.DataFrame:
        clean = keys.astype(str).str.strip()
        return pd.DataFrame(
            {
                "measure_stem": clean.map(key_stem),  # the one OData-key rule (dbt_project.yml)
                "measure_group": _from_concept_map(clean, source, "group")
                if groups == CONCEPT_MAP
                else _classify(clean, groups),
                "measure_concept": _from_concept_map(clean, source, "concept")
                if concepts == CONCEPT_MAP
                else _classify(clean, concepts),
            }
        )

    return parts


def _value_parts(texts: pd.Series) -> pd.DataFrame:
    text = texts.astype(str).str.strip()
    is_missing = text.isin(MISSING_MARKERS)
    is_suppressed = ~is_missing & text.isin(SUPPRESSION_MARKERS)
    clean = text.str.replace(",", ".", regex=False)
    number = pd.to_numeric(clean.where(~is_missing & ~is_suppressed), errors="coerce").astype("float64")
    is_number = number.notna() & np.isfinite(number.fillna(0.0))
    status = np.select(
        [is_missing.to_numpy(bool), is_suppressed.to_numpy(bool), is_number.to_numpy(bool)],
        ["missing", "suppressed", "number"],
        default="unparseable",
    )
    return pd.DataFrame(
        {
            "value_clean": clean,
            "value_num": number.where(is_number),
            "value_status": pd.Series(status, index=texts.index, dtype=object),
            "is_suppressed": is_suppressed.to_numpy(bool),
            "is_missing": is_missing.to_numpy(bool),
        }
    )


def _classify(text: pd.Series, patterns: dict[str, str] | None) -> pd.Series:
    """Label each value with the first pattern (regex, searched) it matches; None when none does."""
    out = pd.Series(None, index=text.index, dtype=object)
    if not patterns:
        return out
    remaining = pd.Series(True, index=text.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "pattern has match groups"
        for label, pattern in patterns.items():
            hit = remaining & text.str.contains(pattern, regex=True)
            out[hit] = label
            remaining &= ~hit
    return out


def prepare_raw_for_validation(
    df: pd.DataFrame,
    *,
    measure_groups: dict[str, str] | str | None = None,
    measure_concepts: dict[str, str] | str | None = None,
    concept_source: str | None = None,
    inplace: bool = False,
) -> pd.DataFrame:
    """Add derived columns GE can check on raw long rows; the raw columns are left untouched
    (``inplace``: added to ``df`` itself instead of a copy, for a caller that owns a large frame).

    - ``area_code_clean``: ``area_code`` stripped (``'WK034401  '`` -> ``'WK034401'``)
    - ``level``: ``land``/``gemeente``/``wijk``/``buurt`` from the code prefix NL/GM/WK/BU, else None
    - ``gemeente_code``: ``GM`` + the 4 municipality digits of a GM/WK/BU code
    - ``region_type_level``: ``region_type`` stripped and mapped to the same level names (Dutch or
      English: 'Buurt     ', 'Neighbourhood', 'District', ...); unknown text is kept as
      ``'?<text>'`` so a pair check against ``level`` fails on it; NULL stays None
    - ``measure_stem``: ``measure_key`` without the OData positional suffix (``_38``)
    - ``measure_group`` / ``measure_concept``: first regex in ``measure_groups`` /
      ``measure_concepts`` that ``measure_key`` matches (searched, case-sensitive unless the pattern
      says ``(?i)``), else None
    - with ``measure_groups``/``measure_concepts`` = ``"concept_map"``: the concept-map row of the key
      for ``concept_source`` (see :mod:`wijk_assets.lib.sources.concepts`) gives ``measure_concept`` and, as
      ``measure_group``, the raw value kind (``count`` for numerators of shares, ``code`` for ignored
      identifier columns, else the concept's kind)
    - ``value_clean``: ``value_raw`` stripped, comma decimal turned into a dot
    - ``value_num``: float; NaN for markers ('.', 'x', '?', '-', 'NA', '', NULL) and unparseable text
    - ``value_status``: ``number`` | ``suppressed`` (a CBS marker) | ``missing`` (NULL/''/'NA') |
      ``unparseable`` (anything else: a reader bug or a changed format)
    - ``is_suppressed`` / ``is_missing``: booleans of the above
    """
    out = df if inplace else df.copy()
    empty = pd.Series(None, index=out.index, dtype=object)
    parts = [
        _per_distinct(out["area_code"] if "area_code" in out else empty, _code_parts),
        _per_distinct(out["region_type"] if "region_type" in out else empty, _region_type_level),
        _per_distinct(
            out["measure_key"] if "measure_key" in out else empty,
            measure_parts(measure_groups, measure_concepts, concept_source),
        ),
        _per_distinct(out["value_raw"] if "value_raw" in out else empty, _value_parts),
    ]
    for part in parts:
        for name in part.columns:
            out[name] = part[name]
    # NULL value_raw is "missing" (not measured), never suppressed and never a number.
    status = out["value_status"]
    if isinstance(status.dtype, pd.CategoricalDtype) and "missing" not in status.cat.categories:
        status = status.cat.add_categories(["missing"])
    out["value_status"] = status.fillna("missing")
    out["is_missing"] = out["is_missing"].astype(bool) | (out["value_status"] == "missing").to_numpy(bool)
    out["is_suppressed"] = out["is_suppressed"].astype(bool)
    out["value_num"] = out["value_num"].astype("float64")
    out.attrs[_PREPARED_FLAG] = _prepare_signature(measure_groups, measure_concepts, concept_source)
    return out


def _prepare_signature(groups, concepts, source=None) -> str:
    parts: list = [groups or {}, concepts or {}]
    if CONCEPT_MAP in (groups, concepts):  # older suites keep their signature
        parts += [source]
    return json.dumps(parts, sort_keys=True)


def prepare_for_suite(df: pd.DataFrame, suite_spec: dict | str, *, inplace: bool = False) -> pd.DataFrame:
    """Apply the preparation a suite asks for (``"prepare": "raw_long"``), else return ``df``."""
    spec = _resolve_spec(suite_spec)
    groups, concepts = spec.get("measure_groups"), spec.get("measure_concepts")
    source = spec.get("source")
    signature = _prepare_signature(groups, concepts, source)
    if spec.get("prepare") == "raw_long" and df.attrs.get(_PREPARED_FLAG) != signature:
        return prepare_raw_for_validation(
            df,
            measure_groups=groups,
            measure_concepts=concepts,
            concept_source=source,
            inplace=inplace,
        )
    return df


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


def _jsonable(value: Any, depth: int = 0) -> Any:
    """numpy/pandas scalars, timestamps, NaN, tuples -> plain JSON values."""
    if depth > 6:
        return str(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [_jsonable(v, depth + 1) for v in list(value)]
    return str(value)


def _cut(value: Any) -> Any:
    """Keep observed values short enough for Dagster metadata."""
    if isinstance(value, list) and len(value) > MAX_OBSERVED_ITEMS:
        return value[:MAX_OBSERVED_ITEMS] + [f"... {len(value) - MAX_OBSERVED_ITEMS} more"]
    if isinstance(value, dict) and len(value) > MAX_OBSERVED_ITEMS:
        items = list(value.items())[:MAX_OBSERVED_ITEMS]
        return {**dict(items), "...": f"{len(value) - MAX_OBSERVED_ITEMS} more"}
    return value


def _column_of(kwargs: dict) -> str | None:
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ",".join(str(c) for c in kwargs["column_list"])
    if kwargs.get("column_A"):
        return f"{kwargs['column_A']},{kwargs['column_B']}"
    return None


@dataclass
class GateResult:
    """The outcome of one suite on one frame (possibly several batches, e.g. one per release year).

    ``success`` is True when every *blocking* expectation passed on every batch; failed non-blocking
    expectations are warnings. ``results`` holds one dict per (expectation, batch).
    """

    suite: str
    success: bool
    results: list[dict] = field(default_factory=list)
    rows: int = 0
    batches: list[str] = field(default_factory=list)
    runtime_seconds: float = 0.0

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if not r["success"] and r["blocking"]]

    @property
    def warnings(self) -> list[dict]:
        return [r for r in self.results if not r["success"] and not r["blocking"]]

    def failed_expectations(self) -> list[str]:
        """``['expect_x(column)', ...]`` of blocking failures, without duplicates, in order."""
        seen: dict[str, None] = {}
        for r in self.failures:
            seen[_label(r)] = None
        return list(seen)

    def summary(self) -> str:
        """One line: verdict, then each failed expectation with its column and batch."""
        evaluated = len(self.results)
        if self.success and not self.warnings:
            return (
                f"{self.suite}: passed {evaluated} expectation results on "
                f"{len(self.batches)} batch(es), {self.rows:,} rows"
            )
        grouped: dict[tuple[str, bool], list[dict]] = {}
        for r in self.failures + self.warnings:
            grouped.setdefault((_label(r), r["blocking"]), []).append(r)
        parts = []
        for (label, blocking), items in grouped.items():
            batches = [r["batch"] for r in items if r.get("batch")]
            where = f" [{', '.join(batches)}]" if batches else ""
            detail = _detail(items[0])
            parts.append(f"{'' if blocking else 'warning '}{label}{where}{': ' + detail if detail else ''}")
        verdict = "FAILED" if not self.success else "passed with warnings"
        return (
            f"{self.suite}: {verdict} ({len(self.failures)} blocking, {len(self.warnings)} warning) - "
            + "; ".join(parts)
        )

    def to_metadata(self) -> dict:
        """A compact JSON-able dict for Dagster check metadata."""
        failed = [
            {k: v for k, v in r.items() if v not in (None, [], {}) or k in ("success", "blocking")}
            for r in self.failures + self.warnings
        ]
        passed = sorted({_label(r) for r in self.results if r["success"]})
        return _jsonable(
            {
                "suite": self.suite,
                "success": self.success,
                "summary": self.summary(),
                "rows": self.rows,
                "batches": self.batches,
                "evaluated": len(self.results),
                "blocking_failures": len(self.failures),
                "warnings": len(self.warnings),
                "failed_expectations": self.failed_expectations(),
                "failed": failed,
                "passed": passed,
                "runtime_seconds": round(self.runtime_seconds, 2),
            }
        )


def _label(result: dict) -> str:
    return f"{result['expectation']}({result['column'] or ''})"


def _detail(result: dict) -> str:
    if result.get("exception"):
        return f"error {result['exception'][:160]}"
    bits = []
    if result.get("missing"):
        bits.append(f"missing {', '.join(map(str, result['missing'][:MAX_SAMPLES]))}")
    if result.get("unexpected_count"):
        pct = result.get("unexpected_percent")
        bits.append(
            f"{result['unexpected_count']:,} unexpected"
            + (f" ({pct:.3g}%)" if isinstance(pct, (int, float)) else "")
        )
    if result.get("describe_rows") and result.get("sample_rows"):  # rows that are findings themselves
        bits.append("e.g. " + "; ".join(", ".join(f"{k} {v}" for k, v in row.items())
                                        for row in result["sample_rows"][:3])[:400])
    elif result.get("sample"):
        bits.append(f"e.g. {json.dumps(result['sample'][:3], ensure_ascii=False, default=str)[:160]}")
    if not bits and result.get("observed_value") is not None:
        bits.append(f"observed {json.dumps(result['observed_value'], default=str)[:120]}")
    if not bits and result.get("why"):
        bits.append(str(result["why"])[:200])
    return ", ".join(bits)


def _sample_rows(frame: pd.DataFrame, indices: list, columns: tuple[str, ...]) -> list[dict]:
    if not indices:
        return []
    cols = [c for c in columns if c in frame.columns]
    plain = [i for i in indices if not isinstance(i, dict)][:MAX_SAMPLES]
    if not plain or not cols:
        return []
    try:
        rows = frame.loc[plain, cols]
    except KeyError:
        return []
    return [_jsonable(r) for r in rows.to_dict(orient="records")]


def _summarise(evr, exp_spec: dict, frame: pd.DataFrame, batch: str | None, sample_cols) -> dict:
    config = evr.expectation_config
    kwargs = dict(config.kwargs)
    result = dict(evr.result or {})
    meta = exp_spec.get("meta") or {}
    exception = None
    info = evr.exception_info or {}
    if isinstance(info, dict) and info.get("raised_exception"):
        exception = str(info.get("exception_message") or "exception")
    elif isinstance(info, dict):  # GE 1.x nests exception info per metric
        for sub in info.values():
            if isinstance(sub, dict) and sub.get("raised_exception"):
                exception = str(sub.get("exception_message") or "exception")
                break

    observed = _jsonable(result.get("observed_value"))
    missing = None
    if result.get("partial_missing_list"):  # distinct-values expectations in GE >= 1.2x
        missing = sorted(str(v) for v in result["partial_missing_list"])
    elif config.type == "expect_column_distinct_values_to_contain_set" and isinstance(observed, list):
        missing = sorted(str(v) for v in (kwargs.get("value_set") or []) if v not in set(observed))
    if config.type == "expect_table_columns_to_match_set" and isinstance(observed, list):
        missing = sorted(set(kwargs.get("column_set") or []) - set(observed))
    missing = missing or None

    success = bool(evr.success) and exception is None
    sample = _jsonable(result.get("partial_unexpected_list") or [])[:MAX_SAMPLES]
    rows = []
    if not success:
        rows = _sample_rows(frame, list(result.get("partial_unexpected_index_list") or []), sample_cols)
    unexpected_percent = result.get("unexpected_percent")
    return {
        "expectation": config.type,
        "column": _column_of(kwargs),
        "batch": batch,
        "success": success,
        "blocking": bool(meta.get("blocking", True)),
        "unexpected_count": _jsonable(result.get("unexpected_count")),
        "unexpected_percent": round(float(unexpected_percent), 4)
        if isinstance(unexpected_percent, (int, float)) and not math.isnan(unexpected_percent)
        else None,
        "sample": sample if not success else [],
        "sample_rows": rows,
        "missing": missing,
        "observed_value": _cut(observed),
        "why": meta.get("why"),
        "exception": exception,
        "describe_rows": meta.get("describe_rows") or None,  # the summary names the sample rows, not values
    }


# Expectation types whose pandas metrics use ``value_counts``, which lists *unused* categories of a
# categorical column with count 0; columns they check stay plain object dtype.
_VALUE_COUNTS_TYPES = frozenset(
    {
        "expect_column_distinct_values_to_be_in_set",
        "expect_column_distinct_values_to_equal_set",
        "expect_column_most_common_value_to_be_in_set",
        "expect_column_kl_divergence_to_be_less_than",
        "expect_column_chisquare_test_p_value_to_be_greater_than",
    }
)


def _condition_columns(condition: Any) -> set[str]:
    if isinstance(condition, dict):
        found = set()
        column = condition.get("column")
        if isinstance(column, dict) and column.get("name"):
            found.add(str(column["name"]))
        for sub in condition.get("conditions") or []:
            found |= _condition_columns(sub)
        return found
    return set()


def _kwarg_columns(kwargs: dict) -> list:
    """The columns an expectation's kwargs name (``column``, ``column_A``/``column_B``, ``column_list``),
    not those of its row condition (see :func:`_condition_columns`)."""
    return [kwargs[k] for k in ("column", "column_A", "column_B") if kwargs.get(k)] + list(kwargs.get("column_list") or [])


def _referenced_columns(spec: dict) -> tuple[set[str], set[str]]:
    """(columns any expectation or row_condition uses, columns that must stay object dtype)."""
    used: set[str] = set(spec.get("batch_by") or [])
    keep_object: set[str] = set()
    for exp in spec["expectations"]:
        kwargs = exp.get("kwargs") or {}
        cols = _kwarg_columns(kwargs)
        used.update(cols)
        used |= _condition_columns(kwargs.get("row_condition"))
        if "column_A" in kwargs or exp["type"] in _VALUE_COUNTS_TYPES:
            keep_object.update(cols)  # pair equality cannot compare categoricals with other categories
    return used, keep_object


def _compact_for_ge(frame: pd.DataFrame, spec: dict, *, copy: bool = True) -> pd.DataFrame:
    """Make GE's pandas engine affordable on million-row raw tables, without changing any value.

    GE 1.24 copies the whole frame for every metric domain and filters it with ``DataFrame.query``
    for every row_condition metric; with two dozen object columns that is most of the run time.
    So derived helper columns no expectation uses are dropped (raw columns are always kept: the
    column-set expectation needs them) and text columns become ``category`` (copying int codes
    instead of Python object pointers).
    """
    used, keep_object = _referenced_columns(spec)
    if spec.get("prepare") == "raw_long":
        # a new frame of the kept columns; its columns are replaced below, never written into, so a
        # shallow copy (no "copy of a slice" flag, no data copied) is enough
        frame = frame[[c for c in frame.columns if c not in DERIVED_RAW_COLUMNS or c in used]].copy(deep=False)
    elif copy:
        frame = frame.copy()
    for name in frame.columns:
        if name in keep_object:
            if isinstance(frame[name].dtype, pd.CategoricalDtype):
                frame[name] = _none_if_na(frame[name].astype(object))
        elif frame[name].dtype == object:
            codes, uniques = pd.factorize(frame[name], use_na_sentinel=True)
            frame[name] = pd.Categorical.from_codes(codes, categories=pd.Index(uniques, dtype=object))
    return frame


def _drop_unused_categories(part: pd.DataFrame) -> pd.DataFrame:
    """Drop the categories a batch does not use (GE's value_counts would list them with count 0).

    A column whose every category occurs (always so for one batch of a factorized frame) is left as it
    is: the check is a count over the codes, while ``remove_unused_categories`` rebuilt the column
    (~1 s over the ~15 text columns of a national RIVM year). A changed column goes into a shallow copy:
    the batch passed in (a group of the frame, or the frame itself) is not written into."""
    shallow = None
    for name in part.columns:
        column = part[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = column.cat.codes.to_numpy()
            used = np.bincount(codes[codes >= 0], minlength=len(column.cat.categories))
            if not used.all():
                shallow = part.copy(deep=False) if shallow is None else shallow
                shallow[name] = column.cat.remove_unused_categories()
    return part if shallow is None else shallow


def _batches(df: pd.DataFrame, batch_by: list[str] | None) -> list[tuple[str | None, pd.DataFrame]]:
    if not batch_by or df.empty:
        return [(None, df)]
    missing = [c for c in batch_by if c not in df.columns]
    if missing:  # let the suite's own column checks report it; validate as one batch
        return [(None, df)]
    if all(df[c].nunique(dropna=False) == 1 for c in batch_by):  # one batch (a staged partition): no copy
        key = tuple(df[c].iloc[0] for c in batch_by)
        return [(", ".join(f"{c}={_jsonable(v)}" for c, v in zip(batch_by, key)), df)]
    out = []
    for key, part in df.groupby(list(batch_by), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{c}={_jsonable(v)}" for c, v in zip(batch_by, key))
        out.append((label, part))
    return out


def validate_frame(
    df: pd.DataFrame,
    suite_spec: dict | str,
    *,
    batch_by: list[str] | None = None,
    sample_columns: tuple[str, ...] | None = None,
    consume: bool = False,
) -> GateResult:
    """Validate ``df`` against a suite (spec dict or suite name) with GE; return a :class:`GateResult`.

    When the suite says ``"prepare": "raw_long"`` the derived raw columns are added first (unless
    ``df`` already went through :func:`prepare_raw_for_validation`). With ``batch_by`` (argument, or
    the suite's ``"batch_by"``), each group is validated as its own GE batch - e.g. one release year -
    so row-count bands and "required measures present" hold per year, not over the whole table.

    ``consume=True``: the caller hands ``df`` over (gate 1 on a staged partition of ~2 M rows): it is
    prepared in place and emptied once GE's compact copy exists, so no second full copy is held.
    """
    try:
        return _validate_frame(df, suite_spec, batch_by=batch_by, sample_columns=sample_columns, consume=consume)
    finally:
        _forget_ge_context()


def _forget_ge_context() -> None:
    """Let go of the ephemeral GE context a validation made.

    ``gx.get_context`` keeps the context it returns as GE's current project (a module-level singleton),
    and with it the data sources, the batches and the execution engine's cached batch data: the last
    validated frame. After a RIVM year's gate that held ~200 MB until the next validation, on every
    later step's peak (measured: a process at 700 MiB after one national RIVM load, 919 MiB after
    the next one, 934 MiB after a third)."""
    try:
        from great_expectations.data_context.data_context.context_factory import project_manager
    except ImportError:  # pragma: no cover - another GE layout: nothing to let go of
        return
    project_manager.set_project(None)


def _validate_frame(df, suite_spec, *, batch_by, sample_columns, consume) -> GateResult:
    started = time.perf_counter()
    spec = _resolve_spec(suite_spec)
    frame = prepare_for_suite(df, spec, inplace=consume)
    batch_by = spec.get("batch_by") if batch_by is None else batch_by
    sample_cols = tuple(sample_columns or spec.get("sample_columns") or SAMPLE_ROW_COLUMNS)

    gx = _gx()
    context = gx.get_context(mode="ephemeral")
    _quiet(context)
    source = context.data_sources.add_pandas(name="wijk_frames")
    asset = source.add_dataframe_asset(name=spec["name"])
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
    suite = context.suites.add(build_suite(spec))

    results: list[dict] = []
    labels: list[str] = []
    n_rows = len(frame)
    compact = _compact_for_ge(frame, spec, copy=not consume)
    if consume and compact is not frame:
        frame.drop(columns=list(frame.columns), inplace=True)  # the caller's frame: release its columns
    del frame

    # By-value expectations (a regex, a range or a value set over one column, every row) are checked on
    # the distinct values (or value x condition-column combinations): GE's pandas engine turns a whole
    # column into Python objects for a regex (1.2 GiB peak and 5 s for the sha256 column of a national
    # RIVM year, ~3 distinct values) and tests a range row by row with Series.map (~5 s for a RIVM year).
    # Only when a distinct value fails is the expectation run on every row, for the row-level evidence.
    by_value = _by_value_expectations(spec, compact)
    skipped = {i for positions in by_value.values() for i in positions}
    # On a large frame, every other per-row expectation runs on a frame of only the columns it reads
    # (see _narrow_groups); the table-level ones (and every one on a small frame) on the whole frame.
    narrow = _narrow_groups(spec, compact, [i for i in range(len(spec["expectations"])) if i not in skipped])
    skipped |= {i for positions in narrow.values() for i in positions}
    if narrow:
        narrow_asset = source.add_dataframe_asset(name=f"{spec['name']}__narrow")
        narrow_definition = narrow_asset.add_batch_definition_whole_dataframe("narrow_columns")
        narrow_suites = {columns: context.suites.add(build_suite(spec, only=positions, name=f"{spec['name']}__narrow__{'__'.join(columns)}"))
                         for columns, positions in narrow.items()}
    if skipped:
        suite = context.suites.add(build_suite(
            spec, only=[i for i in range(len(spec["expectations"])) if i not in skipped], name=f"{spec['name']}__rows"))
    if by_value:
        distinct_asset = source.add_dataframe_asset(name=f"{spec['name']}__distinct")
        distinct_definition = distinct_asset.add_batch_definition_whole_dataframe("distinct_values")
        by_value_suites = {columns: context.suites.add(build_suite(spec, only=positions, name=f"{spec['name']}__{'__'.join(columns)}"))
                           for columns, positions in by_value.items()}

    indices: list[int] = []  # each result's position in the spec, for the narrow validations' order

    def summarise_all(suite_result, frame_for_rows, label):
        for evr in suite_result.results:
            index = evr.expectation_config.meta.get("wijk_index")
            exp_spec = spec["expectations"][int(index)] if index is not None else {}
            results.append(_summarise(evr, exp_spec, frame_for_rows, label, sample_cols))
            indices.append(-1 if index is None else int(index))

    for label, part in _batches(compact, batch_by):
        # A RangeIndex makes GE report failing rows as plain positions we can look up cheaply.
        if not (isinstance(part.index, pd.RangeIndex) and part.index.start == 0 and part.index.step == 1):
            part = part.reset_index(drop=True)
        part = _drop_unused_categories(part)
        part.attrs = {}
        batch = batch_definition.get_batch(batch_parameters={"dataframe": part})
        first = len(results)
        summarise_all(batch.validate(suite, result_format=RESULT_FORMAT), part, label)
        for columns, positions in narrow.items():
            columns_only = part[list(columns)]  # the same rows and RangeIndex: evidence rows are looked up in part
            checked = narrow_definition.get_batch(batch_parameters={"dataframe": columns_only}).validate(
                narrow_suites[columns], result_format=RESULT_FORMAT)
            summarise_all(checked, part, label)
        if narrow:  # the batch's row-level results in the suite's order (GE's own order within one
            # validation can differ); the final sort ranks them by verdict and blocking, stably
            results[first:] = [r for _, r in sorted(zip(indices[first:], results[first:]), key=lambda pair: pair[0])]
        for columns in by_value:
            values = _distinct_values(part, columns)
            checked = distinct_definition.get_batch(batch_parameters={"dataframe": values}).validate(
                by_value_suites[columns], result_format=RESULT_FORMAT)
            for evr in checked.results:
                index = int(evr.expectation_config.meta["wijk_index"])
                if spec["expectations"][index]["type"] in _BY_SET_TYPES:  # the same set as over the rows
                    results.append(_summarise(evr, spec["expectations"][index], values, label, sample_cols))
                    indices.append(index)
                elif evr.success and not (evr.exception_info or {}).get("raised_exception"):
                    summary = _summarise(evr, spec["expectations"][index], values, label, sample_cols)
                    summary.update(unexpected_count=0, unexpected_percent=0.0)  # no row fails
                    results.append(summary)
                    indices.append(index)
                else:  # the row-level evidence: this expectation over every row
                    one = context.suites.add(build_suite(spec, only=[index], name=f"{spec['name']}__{index}_{len(results)}"))
                    summarise_all(batch.validate(one, result_format=RESULT_FORMAT), part, label)
        labels.append(label or "all rows")
    results.sort(key=lambda r: (r["success"], not r["blocking"]))
    success = all(r["success"] for r in results if r["blocking"])
    return GateResult(
        suite=spec["name"],
        success=success,
        results=results,
        rows=n_rows,
        batches=labels,
        runtime_seconds=time.perf_counter() - started,
    )


def expectation_types(spec: dict | str) -> list[str]:
    """The GE expectation types a suite uses (for docs and tests)."""
    return [e["type"] for e in _resolve_spec(spec)["expectations"]]


__all__ = [
    "DERIVED_RAW_COLUMNS",
    "GateResult",
    "SUITES_DIR",
    "build_suite",
    "expectation_types",
    "list_suites",
    "load_suite",
    "prepare_for_suite",
    "prepare_raw_for_validation",
    "suite_path",
    "validate_frame",
]
