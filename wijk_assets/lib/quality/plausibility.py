"""Gate 1, part two: plausibility rules a GE column expectation cannot express. Pure, no Dagster.

The Great Expectations suite (``suites/raw_<source>.json``) checks each row on its own and each
release year as a whole. Damaged real files that pass such checks (issue 11, observation 2):

- a count written with a thousands separator (``367.947`` for 367947) parses as 367.947;
- a column shifted one row down gives a wijk the gemeente's population;
- an indicator dropped from one of several files of the same year, or half of one file, passes
  because the year as a whole still has every indicator and enough areas;
- a whole file missing from a reload of a release year (a RIVM year without its 18-64 file) passes
  every check of the files that are there, and the swap would remove that file's live rows.

So these rules run in DuckDB SQL on the *staged* partition (``raw_staging.<source>``, the rows that
would go live), compared where useful with the *previous live partition* of the same source (the
live rows of the same year when a year is reloaded, else the latest earlier year). They are fast on a
1.9M-row RIVM year (aggregations in DuckDB, Python only sees one row per file or measure).

Configuration: the suite's optional ``"plausibility"`` block, every key optional::

    "plausibility": {
      "per_file": {                       # every file of the partition, on its own
        "required": true,                 # the suite's required measure stems/concepts, per file
        "min_areas": 1, "max_areas": null,
        "sibling_min_ratio": null,        # e.g. 0.8: areas >= 0.8 x the largest file of the same glob
        "sibling_same_measures": false,   # files of the same glob deliver the same measure keys
        "previous_ratio": [0.8, 1.25]     # areas vs the same file role in the previous partition
      },
      "thousands_separator": {"measures": "^a_"},   # regex on measure_key; default: every measure
      "sum_of_parts": [                   # "sum of wijken ~ gemeente", generic per level pair
        {"measures": "^a_inw$", "parent_level": "gemeente", "child_level": "wijk",
         "rel_tolerance": 0.01, "abs_tolerance": 10, "blocking": true}
      ],
      "year_over_year": {"measures": "^a_", "levels": ["gemeente", "wijk"],
                         "factor": 5, "min_value": 100, "max_share": 0.05}
    }

Without the block the per-file rules run with the defaults above and the separator rule runs on
every measure; ``sum_of_parts`` and ``year_over_year`` run only where configured (they need to know
which measures are additive counts). Each rule yields results in the shape of
:class:`~wijk_assets.lib.quality.ge_runner.GateResult` rows, so the asset reports them exactly like a GE
expectation (``expectation``, ``column``, ``batch``, failing ``sample_rows`` with file and row).
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from wijk_assets.lib.quality.ge_runner import MAX_SAMPLES, GateResult, _jsonable, measure_parts

LEVEL_PREFIX = {"gemeente": "GM", "wijk": "WK", "buurt": "BU"}
# code length of the parent code a child code starts with (after its two-letter prefix)
PARENT_DIGITS = {"gemeente": 4, "wijk": 6}

DEFAULT_PER_FILE = {
    "required": True,
    "min_areas": 1,
    "max_areas": None,
    # Sibling rules compare files of the same catalog glob in one release year. Only for sources whose
    # glob matches several files of ONE table (RIVM: an xlsx per age group); a municipality's survey
    # folder holds different tables under one glob, so they are off unless the suite switches them on.
    "sibling_min_ratio": None,
    "sibling_same_measures": False,
    "previous_ratio": [0.8, 1.25],
}

# A number with a thousands separator: 1-3 leading digits (not 0), then groups of exactly three.
_SEPARATED = r"^-?[1-9][0-9]{0,2}([.,][0-9]{3})+$"
_INTEGER = r"^-?[0-9]+$"
_DECIMAL = r"^-?[0-9]*[.,][0-9]+$"
_NUMBER_SQL = "TRY_CAST(replace(trim(value_raw), ',', '.') AS DOUBLE)"
_CODE_SQL = "trim(area_code)"


@dataclass(frozen=True)
class Partition:
    """Where the candidate rows are and what to compare them with."""

    staged: str  # e.g. raw_staging.cbs_kwb (holds exactly the candidate partition)
    live: str  # e.g. raw.cbs_kwb
    year: int
    previous_year: int | None  # the live partition compared with (None: nothing live yet)
    # files the publisher withdrew on purpose (Settings.withdrawn_files): path in the data folder or name
    withdrawn: tuple[str, ...] = ()


def previous_live_year(con: duckdb.DuckDBPyConnection, live: str, year: int) -> int | None:
    """The live partition a candidate is compared with: the same year when it is reloaded, else the
    latest earlier year; None when neither exists (or the table does not exist yet)."""
    schema, name = live.split(".", 1)
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchall()[0][0]
    if not exists:
        return None
    row = con.execute(
        f"SELECT max(release_year) FROM {live} WHERE release_year <= ?", [int(year)]
    ).fetchall()[0]
    return int(row[0]) if row and row[0] is not None else None


def file_role(relative_path: str, year: int, file_globs: list[tuple[str, str | None]]) -> tuple[str, str]:
    """(catalog glob, role) of a file: the role is its path with the partition year replaced by
    ``{year}`` when the year comes from the file name, so ``…_2020_65plus.xlsx`` of 2020 and
    ``…_2016_65plus.xlsx`` of 2016 are the same role in different years. ``file_globs`` are the
    catalog's (glob, year regex or None) pairs."""
    for glob, year_regex in file_globs:
        if fnmatch.fnmatch(relative_path, glob):
            if year_regex:
                name = relative_path.rsplit("/", 1)[-1]
                match = re.search(year_regex, name)
                if match and match.group(1) == str(year):
                    start, end = match.span(1)
                    prefix = relative_path[: len(relative_path) - len(name)]
                    return glob, prefix + name[:start] + "{year}" + name[end:]
            return glob, relative_path
    return relative_path, relative_path


def _result(
    expectation: str,
    column: str | None,
    batch: str,
    success: bool,
    why: str,
    *,
    blocking: bool = True,
    unexpected_count: int | None = None,
    sample: list | None = None,
    sample_rows: list | None = None,
    missing: list | None = None,
    observed: object = None,
) -> dict:
    return {
        "expectation": expectation,
        "column": column,
        "batch": batch,
        "success": success,
        "blocking": blocking,
        "unexpected_count": unexpected_count,
        "unexpected_percent": None,
        "sample": _jsonable(sample or [])[:MAX_SAMPLES] if not success else [],
        "sample_rows": _jsonable(sample_rows or [])[:MAX_SAMPLES] if not success else [],
        "missing": missing or None,
        "observed_value": _jsonable(observed),
        "why": why,
        "exception": None,
    }


def _rows(con, sql: str, params: list | None = None) -> list[dict]:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r)) for r in cursor.fetchall()]


_ROW_ADDRESS = "release_year, area_code, subgroup, measure_key, value_raw, source_file, source_row"


# --------------------------------------------------------------------------------------------------
# Per file: required indicators and a row band
# --------------------------------------------------------------------------------------------------


def required_measures(spec: dict) -> dict[str, list[str]]:
    """The suite's required measures per derived column (``measure_stem``/``measure_concept``): the
    value sets of its unconditioned ``expect_column_distinct_values_to_contain_set`` expectations."""
    out: dict[str, list[str]] = {}
    for exp in spec["expectations"]:
        kwargs = exp.get("kwargs") or {}
        if (
            exp["type"] == "expect_column_distinct_values_to_contain_set"
            and kwargs.get("column") in ("measure_stem", "measure_concept")
            and not kwargs.get("row_condition")
        ):
            out.setdefault(kwargs["column"], []).extend(kwargs.get("value_set") or [])
    return out


def _derive(keys: list[str], column: str, spec: dict) -> set[str]:
    """The suite's derived measure column (stem, concept, group) for these keys: the same derivation
    gate 1's GE suite uses (:func:`wijk_assets.lib.quality.ge_runner.measure_parts`), so the key-stem and
    concept rules have one home."""
    derived = measure_parts(spec.get("measure_groups"), spec.get("measure_concepts"), spec.get("source"))(
        pd.Series(list(keys), dtype=object)
    )[column]
    return {str(v) for v in derived.dropna()}


def per_file_rules(con, part: Partition, spec: dict, file_globs: list[tuple[str, str | None]]) -> list[dict]:
    config = {**DEFAULT_PER_FILE, **((spec.get("plausibility") or {}).get("per_file") or {})}
    batch = f"release_year={part.year}"
    files = _rows(
        con,
        f"SELECT source_file, count(*) AS n_rows, count(DISTINCT ({_CODE_SQL}, subgroup)) AS n_areas, "
        f"list(DISTINCT measure_key) AS keys FROM {part.staged} GROUP BY 1 ORDER BY 1",
    )
    previous: dict[str, dict] = {}
    if part.previous_year is not None:
        for row in _rows(
            con,
            f"SELECT source_file, count(DISTINCT ({_CODE_SQL}, subgroup)) AS n_areas, list(DISTINCT measure_key) AS keys "
            f"FROM {part.live} WHERE release_year = ? GROUP BY 1",
            [part.previous_year],
        ):
            row["glob"], role = file_role(row["source_file"], part.previous_year, file_globs)
            previous[role] = row
    for row in files:
        row["glob"], row["role"] = file_role(row["source_file"], part.year, file_globs)
    results: list[dict] = []
    required = required_measures(spec) if config.get("required") else {}
    for row in files:
        where = f"{batch}, file={row['source_file']}"
        keys = [k for k in row["keys"] if k is not None]
        for column, wanted in required.items():
            present = _derive(keys, column, spec)
            missing = sorted(set(wanted) - present)
            results.append(
                _result(
                    "file_delivers_required_measures", column, where, not missing,
                    f"every file of {spec['name']} must deliver the suite's required measures on its own "
                    "(completeness per year hides an indicator dropped from one of several files)",
                    missing=missing, observed=f"{len(keys)} measure keys",
                )
            )
        low, high = config.get("min_areas"), config.get("max_areas")
        ok = (low is None or row["n_areas"] >= low) and (high is None or row["n_areas"] <= high)
        results.append(
            _result(
                "file_area_count_between", "area_code", where, ok,
                f"each file must hold between {low} and {high or 'any number of'} areas",
                observed=row["n_areas"],
            )
        )
        siblings = [f for f in files if f["glob"] == row["glob"] and f is not row]
        ratio = config.get("sibling_min_ratio")
        if siblings and ratio:
            largest = max(f["n_areas"] for f in siblings)
            ok = row["n_areas"] >= ratio * largest
            results.append(
                _result(
                    "file_area_count_vs_sibling_files", "area_code", where, ok,
                    f"files of the same kind ({row['glob']}) in one release year cover the same areas; this "
                    f"one must hold at least {ratio:.0%} of the largest (a half file does not)",
                    observed={"areas": row["n_areas"], "largest_sibling": largest},
                )
            )
        if siblings and config.get("sibling_same_measures"):
            sibling_keys = set().union(*(set(f["keys"]) for f in siblings))
            missing = sorted(k for k in sibling_keys - set(keys) if k is not None)
            results.append(
                _result(
                    "file_measures_match_sibling_files", "measure_key", where, not missing,
                    f"files of the same kind ({row['glob']}) in one release year deliver the same indicators",
                    missing=missing,
                )
            )
        before = previous.get(row["role"])
        bounds = config.get("previous_ratio")
        if before is not None and bounds:
            lo, hi = bounds
            ok = lo * before["n_areas"] <= row["n_areas"] <= hi * before["n_areas"]
            results.append(
                _result(
                    "file_area_count_vs_previous_partition", "area_code", where, ok,
                    f"areas in this file vs the same file in release year {part.previous_year} must stay "
                    f"within x{lo}-x{hi} (a truncated file does not)",
                    observed={"areas": row["n_areas"], "previous": before["n_areas"],
                              "previous_year": part.previous_year},
                )
            )
            if part.previous_year == part.year:  # a revised file of the same year keeps its indicators
                missing = sorted(k for k in set(before["keys"]) - set(keys) if k is not None)
                results.append(
                    _result(
                        "file_measures_match_previous_version", "measure_key", where, not missing,
                        "a revised file of the same release year must deliver every indicator its "
                        "previous version did",
                        missing=missing,
                    )
                )
    if part.previous_year == part.year:
        results += _files_of_live_partition(files, previous, part, batch)
    return results


def is_withdrawn(source_file: str, withdrawn: tuple[str, ...] | list[str]) -> bool:
    """Whether a declared withdrawal (a path in the data folder, or a file name) names ``source_file``."""
    name = source_file.replace("\\", "/").rsplit("/", 1)[-1]
    return any(w.strip() in (source_file, name) for w in withdrawn if w.strip())


def _files_of_live_partition(files: list[dict], previous: dict[str, dict], part: Partition, batch: str) -> list[dict]:
    """A reload of a live release year must deliver every file (role) the live rows came from, unless the
    publisher's withdrawal of that file is declared (``WIJK_WITHDRAWN_FILES``). Each remaining file can
    pass every rule on its own while the swap would silently delete the missing file's rows. A new
    release year is not compared: its publisher may deliver fewer files than the year before (RIVM 2020
    has no 18-64 file).

    A file *replaced* by one under another name (a corrected release, ``…_v2.xlsx``) is not lost: when a
    catalog glob has at least as many new files in this load as it has live files missing, those files
    count as replaced (a warning names both; every other rule still judges the new file on its own)."""
    delivered = {row["role"] for row in files}
    missing = {role: before for role, before in previous.items() if role not in delivered}
    new_by_glob: dict[str, list[str]] = {}
    for row in files:
        if row["role"] not in previous:
            new_by_glob.setdefault(row["glob"], []).append(row["source_file"])
    missing_by_glob: dict[str, int] = {}
    for before in missing.values():
        missing_by_glob[before["glob"]] = missing_by_glob.get(before["glob"], 0) + 1
    results = []
    for role, before in sorted(missing.items()):
        gone = before["source_file"]
        replacements = new_by_glob.get(before["glob"], [])
        if len(replacements) >= missing_by_glob[before["glob"]]:
            results.append(
                _result(
                    "files_of_live_partition_delivered", "source_file", f"{batch}, file={gone}", False,
                    f"release year {part.year} is live with rows from {gone}; this load delivers "
                    f"{', '.join(sorted(replacements))} of the same kind instead, taken as its replacement",
                    blocking=False, observed={"file": gone, "replaced_by": sorted(replacements),
                                              "live_areas": before["n_areas"]},
                )
            )
            continue
        declared = is_withdrawn(gone, part.withdrawn)
        results.append(
            _result(
                "files_of_live_partition_delivered", "source_file", f"{batch}, file={gone}", declared,
                f"release year {part.year} is live with rows from {gone}, and this load does not deliver that "
                "file: swapping it in would delete those rows. Put the file back, or, when the publisher "
                f"withdrew it, declare that with WIJK_WITHDRAWN_FILES={gone} and load again",
                missing=None if declared else [gone],
                observed={"file": gone, "live_areas": before["n_areas"], "withdrawal_declared": declared},
            )
        )
    if not results:
        results.append(
            _result(
                "files_of_live_partition_delivered", "source_file", batch, True,
                f"a reload of release year {part.year} delivers every file its live rows came from",
                observed={"live_files": len(previous)},
            )
        )
    return results


# --------------------------------------------------------------------------------------------------
# Thousands separators, detected from the column's own values
# --------------------------------------------------------------------------------------------------


def thousands_separator_rule(con, part: Partition, spec: dict) -> list[dict]:
    """A measure whose numbers are whole numbers, except some written ``d{1,3}(.ddd)+`` (and none with
    another decimal form), holds thousands separators: ``367.947`` in a count column is 367947, not
    367.947. A genuine decimal column has decimals of other shapes (``1.9``, ``0.123``, ``4.1315…``)."""
    config = (spec.get("plausibility") or {}).get("thousands_separator", {})
    if config is False:
        return []
    pattern = (config or {}).get("measures")
    batch = f"release_year={part.year}"
    filt = "AND regexp_matches(measure_key, ?)" if pattern else ""
    params = [pattern] if pattern else []
    flagged = _rows(
        con,
        f"""
        WITH v AS (SELECT measure_key, trim(value_raw) AS t FROM {part.staged}
                   WHERE value_raw IS NOT NULL {filt})
        SELECT measure_key,
               count(*) FILTER (WHERE regexp_full_match(t, '{_INTEGER[1:-1]}')) AS n_int,
               count(*) FILTER (WHERE regexp_full_match(t, '{_SEPARATED[1:-1]}')) AS n_sep,
               count(*) FILTER (WHERE regexp_full_match(t, '{_DECIMAL[1:-1]}')
                                AND NOT regexp_full_match(t, '{_SEPARATED[1:-1]}')) AS n_dec,
               count(*) FILTER (WHERE regexp_full_match(t, '-?[1-9][0-9]{{0,2}}([.,][0-9]{{3}}){{2,}}')) AS n_multi
        FROM v GROUP BY 1
        HAVING n_multi > 0 OR (n_sep > 0 AND n_dec = 0 AND n_int > 0)
        ORDER BY 1
        """,
        params,
    )
    if not flagged:
        return [
            _result(
                "values_have_no_thousands_separator", "value_raw", batch, True,
                "whole-number columns must not carry thousands separators",
            )
        ]
    keys = [f["measure_key"] for f in flagged]
    samples = _rows(
        con,
        f"SELECT {_ROW_ADDRESS} FROM {part.staged} WHERE list_contains(?, measure_key) "
        f"AND regexp_full_match(trim(value_raw), '{_SEPARATED[1:-1]}') ORDER BY source_file, source_row LIMIT {MAX_SAMPLES}",
        [keys],
    )
    return [
        _result(
            "values_have_no_thousands_separator", "value_raw", batch, False,
            "a column of whole numbers holds values like '367.947': that is a thousands separator "
            "(367947), which would be read as 367.947; write the numbers without separators",
            unexpected_count=int(sum(f["n_sep"] for f in flagged)),
            sample=[s["value_raw"] for s in samples],
            sample_rows=samples,
            observed={f["measure_key"]: {"whole": f["n_int"], "separated": f["n_sep"]} for f in flagged},
        )
    ]


# --------------------------------------------------------------------------------------------------
# Sum of parts ~ whole (wijken ~ gemeente, buurten ~ wijk)
# --------------------------------------------------------------------------------------------------


def _parent_code_sql(child_level: str, parent_level: str) -> str:
    digits = PARENT_DIGITS[parent_level]
    return f"'{LEVEL_PREFIX[parent_level]}' || substr(code, 3, {digits})"


def _rule_keys(con, part: Partition, rule: dict, spec: dict) -> tuple[list[str], str]:
    """The measure keys a rule applies to, and how to name them: by ``concepts`` (through the suite's
    concept derivation, so an xlsx short name and an OData key of the same concept are both found) or
    by a ``measures`` regex on the key."""
    keys = [r[0] for r in con.execute(f"SELECT DISTINCT measure_key FROM {part.staged}").fetchall() if r[0]]
    if rule.get("concepts"):
        wanted = set(rule["concepts"])
        derived = measure_parts(spec.get("measure_groups"), spec.get("measure_concepts"), spec.get("source"))(
            pd.Series(keys, dtype=object)
        )["measure_concept"]
        selected = [k for k, c in zip(keys, derived) if c in wanted]
        return selected, "concepts " + ",".join(sorted(wanted))
    return [k for k in keys if re.search(rule["measures"], k)], rule["measures"]


def sum_of_parts_rule(con, part: Partition, rule: dict, spec: dict | None = None) -> list[dict]:
    """Per parent area and measure: the children's values must add up to the parent's within CBS
    rounding, no child may exceed its parent, and a parent with numeric children must have a value
    itself. Judged only where every child is numeric (a suppressed child makes the sum unknowable).

    The allowed gap is ``per_part_tolerance x n_parts + max(rel_tolerance x parent, abs_tolerance)``:
    CBS rounds every published part (KWB wijk inhabitants to multiples of 5 since 2021) and counts some
    residents only at the parent's level. Measures are chosen by ``concepts`` or a ``measures`` regex.
    """
    parent_level, child_level = rule["parent_level"], rule["child_level"]
    rel, absolute = float(rule.get("rel_tolerance", 0.01)), float(rule.get("abs_tolerance", 10))
    per_part = float(rule.get("per_part_tolerance", 0))
    blocking = bool(rule.get("blocking", True))
    batch = f"release_year={part.year}"
    keys, label = _rule_keys(con, part, rule, spec or {})
    column = f"value_raw[{label}, {child_level}->{parent_level}]"
    rows = _rows(
        con,
        f"""
        WITH v AS (
            SELECT {_CODE_SQL} AS code, subgroup, measure_key, {_NUMBER_SQL} AS num, value_raw,
                   source_file, source_row
            FROM {part.staged} WHERE list_contains(?, measure_key)),
        parents AS (SELECT * FROM v WHERE code LIKE '{LEVEL_PREFIX[parent_level]}%'),
        children AS (
            SELECT {_parent_code_sql(child_level, parent_level)} AS parent_code, subgroup, measure_key,
                   source_file, count(*) AS n, count(num) AS n_num, sum(num) AS total, max(num) AS largest,
                   arg_max(code, num) AS largest_code
            FROM v WHERE code LIKE '{LEVEL_PREFIX[child_level]}%' GROUP BY ALL)
        SELECT p.code, p.subgroup, p.measure_key, p.num AS parent_value, p.value_raw, p.source_file,
               p.source_row, c.n, c.n_num, c.total, c.largest, c.largest_code
        FROM parents p JOIN children c
          ON c.parent_code = p.code AND c.subgroup IS NOT DISTINCT FROM p.subgroup
         AND c.measure_key = p.measure_key AND c.source_file = p.source_file
        ORDER BY p.code, p.measure_key
        """,
        [keys],
    )
    bad = []
    judged = 0
    for r in rows:
        problem = None
        if r["parent_value"] is None and r["n_num"] > 0 and r["value_raw"] is None:
            problem = "parent has no value while its parts have"
        elif r["parent_value"] is not None and r["largest"] is not None and r["largest"] > (
            r["parent_value"] + per_part + max(rel * abs(r["parent_value"]), absolute)
        ):  # one part may exceed the whole only by its own rounding
            problem = f"part {r['largest_code']} ({r['largest']:g}) exceeds the whole ({r['parent_value']:g})"
        elif r["parent_value"] is not None and r["n_num"] == r["n"]:
            judged += 1
            allowed = per_part * r["n"] + max(rel * abs(r["parent_value"]), absolute)
            if abs(r["total"] - r["parent_value"]) > allowed:
                problem = (f"parts add up to {r['total']:g}, the whole is {r['parent_value']:g} "
                           f"(allowed gap {allowed:g})")
        if problem:
            bad.append(
                {
                    "area_code": r["code"], "measure_key": r["measure_key"], "value_raw": r["value_raw"],
                    "parts_sum": r["total"], "parts_n": r["n"],
                    "source_file": r["source_file"], "source_row": r["source_row"], "problem": problem,
                }
            )
    return [
        _result(
            "sum_of_parts_matches_whole", column, batch, not bad,
            f"the {child_level} values of a {parent_level} add up to its own value within CBS rounding "
            f"({per_part:g} per part + max({rel} x whole, {absolute:g})); a shifted column, a part missing "
            "or loaded twice, or a mis-scaled cell breaks that",
            blocking=blocking, unexpected_count=len(bad),
            sample=[b["problem"] for b in bad], sample_rows=bad,
            observed={"parents": len(rows), "judged": judged, "failing": len(bad)},
        )
    ]


# --------------------------------------------------------------------------------------------------
# Year over year
# --------------------------------------------------------------------------------------------------


def year_over_year_rule(con, part: Partition, config: dict) -> list[dict]:
    """Per measure: areas whose value moved by more than ``factor`` (either way) since the previous
    live partition; a measure fails when more than ``max_share`` of its matched areas did (and at
    least one). Only values of at least ``min_value`` in the previous partition are compared."""
    if part.previous_year is None:
        return []
    factor = float(config.get("factor", 5))
    min_value = float(config.get("min_value", 100))
    max_share = float(config.get("max_share", 0.05))
    levels = config.get("levels") or list(LEVEL_PREFIX)
    prefixes = [LEVEL_PREFIX[lv] for lv in levels]
    batch = f"release_year={part.year}"
    compared = _rows(
        con,
        f"""
        WITH new AS (SELECT {_CODE_SQL} AS code, subgroup, measure_key, {_NUMBER_SQL} AS num, value_raw,
                            source_file, source_row
                     FROM {part.staged} WHERE regexp_matches(measure_key, ?) AND list_contains(?, substr({_CODE_SQL}, 1, 2))),
             old AS (SELECT {_CODE_SQL} AS code, subgroup, measure_key, {_NUMBER_SQL} AS num
                     FROM {part.live} WHERE release_year = ? AND regexp_matches(measure_key, ?))
        SELECT n.measure_key, count(*) AS matched,
               count(*) FILTER (WHERE n.num IS NOT NULL AND (abs(n.num) * ? < abs(o.num) OR abs(n.num) > ? * abs(o.num))) AS jumps,
               list({{'area_code': n.code, 'value_raw': n.value_raw, 'previous': o.num, 'source_file': n.source_file,
                      'source_row': n.source_row}} ORDER BY n.code)
                   FILTER (WHERE n.num IS NOT NULL AND (abs(n.num) * ? < abs(o.num) OR abs(n.num) > ? * abs(o.num))) AS examples
        FROM new n JOIN old o USING (code, subgroup, measure_key)
        WHERE abs(o.num) >= ?
        GROUP BY 1 ORDER BY 1
        """,
        [config["measures"], prefixes, part.previous_year, config["measures"], factor, factor, factor, factor, min_value],
    )
    flagged = [c for c in compared if c["jumps"] > 0 and c["jumps"] > max_share * c["matched"]]
    samples = [dict(e, measure_key=c["measure_key"]) for c in flagged for e in (c["examples"] or [])[:3]]
    return [
        _result(
            "year_over_year_change_within_factor", f"value_raw[{config['measures']}]", batch, not flagged,
            f"a value that moved by more than x{factor:g} since release year {part.previous_year} is a unit, "
            "separator or shifted-column error far more often than a real change",
            unexpected_count=sum(c["jumps"] for c in flagged),
            sample=[f"{s['measure_key']} {s['area_code']}: {s['previous']:g} -> {s['value_raw']}" for s in samples],
            sample_rows=samples,
            observed={c["measure_key"]: {"matched": c["matched"], "jumps": c["jumps"]} for c in flagged}
            or {"measures_compared": len(compared), "previous_year": part.previous_year},
        )
    ]


# --------------------------------------------------------------------------------------------------
# All rules
# --------------------------------------------------------------------------------------------------


def validate_plausibility(
    con: duckdb.DuckDBPyConnection, part: Partition, spec: dict, file_globs: list[tuple[str, str | None]]
) -> GateResult:
    """Every plausibility rule of the suite on the staged partition; a GateResult like the GE suite's."""
    started = time.perf_counter()
    config = spec.get("plausibility") or {}
    results = per_file_rules(con, part, spec, file_globs)
    results += thousands_separator_rule(con, part, spec)
    for rule in config.get("sum_of_parts") or []:
        results += sum_of_parts_rule(con, part, rule, spec)
    if config.get("year_over_year"):
        results += year_over_year_rule(con, part, config["year_over_year"])
    results.sort(key=lambda r: (r["success"], not r["blocking"]))
    rows = con.execute(f"SELECT count(*) FROM {part.staged}").fetchall()[0][0]
    return GateResult(
        suite=f"{spec['name']}:plausibility",
        success=all(r["success"] for r in results if r["blocking"]),
        results=results,
        rows=int(rows),
        batches=[f"release_year={part.year}"],
        runtime_seconds=time.perf_counter() - started,
    )


__all__ = [
    "Partition",
    "file_role",
    "previous_live_year",
    "required_measures",
    "validate_plausibility",
]
