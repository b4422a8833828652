"""Reader for a municipality's own resident-survey tables (catalog format ``survey_csv``).

The files are *aggregated* survey tables as municipalities publish them (the Utrecht in Cijfers
inwonersenquête exports): ``;``-separated UTF-8, one row per area label, the first column the area
label (``"Subwijk Lombok, Leidseweg"``, ``"Utrecht"``), every other column a percentage, headed
``<indicator>|<category>|<year>`` or by a bare category (``tevreden``; the indicator is then the file
name without its year). ``.`` = suppressed by the publisher. An optional respondents column (``n``,
``aantal respondenten``, ``basis``, ...) gives the number of respondents per area.

The rules come from :func:`wijk_assets.lib.responsible.privacy.read_survey_csv`, which this reader runs
first, so there is one implementation of them:

* a file that looks personal or respondent-level (``respondent_id``, ``postcode``, ``geboortedatum``,
  e-mail addresses, one row per respondent, ...) is rejected with a :class:`SourceFormatError` naming
  the file and the column - before anything else is read, and nothing is written;
* cells of an area with fewer respondents than ``WIJK_MIN_RESPONDENTS`` (``Settings.min_respondents``,
  default 10) are suppressed: their text is NEVER put in the extract. They land as ``value_raw`` NULL
  with ``subgroup = 'suppressed=too_few_respondents'``, so the reason stays recoverable downstream
  (dbt staging turns it into ``missing_reason``) and the gate can check it;
* every value must be a percentage 0-100 or ``.``.

Raw long layout (:data:`~wijk_assets.lib.sources.base.RAW_DATA_COLUMNS`):

=============  ===========================================================================================
area_name      the area label, verbatim
area_code      NULL, unless the label starts with a CBS code (``WK034401 ...``): then that code
region_type    the level word the label starts with, verbatim (``Subwijk``), else NULL (``Utrecht``)
gemeente_name  NULL (the files do not state it; the folder ``<gemeente>_inwonersenquete`` does)
measure_key    ``<indicator>|<category>`` for a percentage; the respondents column's own header
               (no ``|``) for the respondent count of the row
value_raw      cell text verbatim (``'53'``, ``'.'``), NULL for an empty cell or a suppressed one
subgroup       ``''``, or ``suppressed=too_few_respondents`` on a cell suppressed here
source_row     real 1-based line in the file (header = 1)
=============  ===========================================================================================

The year is the catalogued file-name year (a ``<indicator>|<category>|<year>`` header must agree with
it), or, with ``year: {from: header}`` in ``catalog.yaml``, each column header's own year.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import pandas as pd

from wijk_assets.lib.responsible.privacy import (
    REASON_EMPTY,
    REASON_PUBLISHER,
    REASON_RESPONDENTS,
    read_survey_csv,
)
from wijk_assets.lib.sources.base import RAW_DATA_COLUMNS, RawExtract, SourceFormatError
from wijk_assets.lib.sources.statline_csv import (
    check_codes_present,
    check_unique_keys,
    read_delimited,
    table_from_rows,
)

if TYPE_CHECKING:
    from pathlib import Path

    from wijk_assets.lib.sources.catalog import SourceFile

SEPARATOR = ";"
SUBGROUP_TOO_FEW_RESPONDENTS = f"suppressed={REASON_RESPONDENTS}"
SUPPRESSION_REASONS = (REASON_PUBLISHER, REASON_RESPONDENTS, REASON_EMPTY)
_CBS_CODE = re.compile(r"^\s*((?:GM\d{4}|WK\d{6}|BU\d{8}))(?![0-9A-Za-z])")


def _in_source(error: SourceFormatError, source: str) -> SourceFormatError:
    """The same error, naming the file relative to the data folder like every other reader."""
    return SourceFormatError(
        source,
        error.expected,
        error.found,
        sheet=error.sheet,
        row=error.row,
        column=error.column,
        hint=error.hint,
    )


def _min_respondents(value: int | None) -> int:
    if value is not None:
        return int(value)
    from wijk_assets.settings import load_settings  # read at run time, like the other assets do

    return int(load_settings().min_respondents)


def read_survey_table(
    path: "Path",
    source: str,
    *,
    min_respondents: int,
    filename_year: int | None,
) -> tuple[pd.DataFrame, dict]:
    """The raw long frame and the reader metadata of one survey file (see the module docstring)."""
    # 1. The file, parsed once: verbatim text cells with their real line numbers.
    text = read_delimited(path, source, SEPARATOR)
    table = table_from_rows(text.rows, text.lines, source, sep=SEPARATOR, min_columns=2)

    # 2. The privacy rules on that table, before anything is kept: personal / respondent-level data is
    #    refused, cells of too-small groups are blanked (the survey rules interpret the same cells).
    try:
        tidy = read_survey_csv(
            path, min_respondents=min_respondents, year=filename_year, sep=SEPARATOR, table=table.frame
        )
    except SourceFormatError as error:
        raise _in_source(error, source) from error
    counts = dict(tidy.attrs.get("suppression") or {})
    resp_col = counts.get("respondents_column")
    area_col = table.header[0]
    check_codes_present(table, area_col, source, what="an area label")
    check_unique_keys(table, [area_col], source)
    value_cols = [c for c in table.header[1:] if c != resp_col]

    # 3. Per value column: (year, indicator, category) as the survey parser resolved the header.
    by_label: dict[str, list[dict]] = {}
    for record in tidy.to_dict("records"):
        by_label.setdefault(str(record["area_label"]), []).append(record)
    labels = [str(v).strip() for v in table.frame[area_col]]
    missing = [label for label in labels if len(by_label.get(label, [])) != len(value_cols)]
    if missing or not labels:
        raise RuntimeError(  # every row yields one record per value column: anything else is a reader bug
            f"{source}: the survey rules read a different number of records per area ({missing[:3]})"
        )
    columns: dict[str, tuple[int, str, str]] = {}
    for col, record in zip(value_cols, by_label[labels[0]]):
        columns[col] = (int(record["year"]), str(record["indicator"]), str(record["category"]))

    header_row = table.header_row
    for col, (year, _, _) in columns.items():
        if filename_year is not None and year != filename_year:
            raise SourceFormatError(
                source,
                f"year {filename_year} (the year in the file name) in the column header",
                repr(col),
                row=header_row,
                column=col,
                hint="Rename the file to the year it holds, or split a table of several years into one "
                "file per year",
            )
    keys = Counter((year, f"{ind}|{cat}") for year, ind, cat in columns.values())
    repeated = [col for col, (y, i, c) in columns.items() if keys[(y, f"{i}|{c}")] > 1]
    if repeated:
        raise SourceFormatError(
            source,
            "one column per indicator, category and year",
            f"{len(repeated)} columns for {columns[repeated[0]][1]}|{columns[repeated[0]][2]}: {repeated}",
            row=header_row,
            column=repeated[1],
        )

    # 4. Long rows. A cell suppressed for too few respondents never leaves this function with its text.
    out: dict[str, list] = {name: [] for name in RAW_DATA_COLUMNS}
    frame = table.frame
    for position, (label, line) in enumerate(zip(labels, table.rows.tolist())):
        verbatim_label = frame[area_col].iat[position]
        code = _CBS_CODE.match(verbatim_label)
        level = by_label[label][0]["area_level"]
        region_type = label[: len(level)] if level else None
        base = {
            "area_code": code.group(1) if code else None,
            "area_name": verbatim_label,
            "region_type": region_type,
            "gemeente_name": None,
            "source_row": int(line),
        }
        cells: list[tuple[int, str, object, str]] = []
        for col, record in zip(value_cols, by_label[label]):
            year, indicator, category = columns[col]
            cell = frame[col].iat[position]
            if record["suppressed_reason"] == REASON_RESPONDENTS:
                cells.append((year, f"{indicator}|{category}", None, SUBGROUP_TOO_FEW_RESPONDENTS))
            else:
                cells.append((year, f"{indicator}|{category}", cell if cell not in (None, "") else None, ""))
        if resp_col is not None:
            cell = frame[resp_col].iat[position]
            row_years = sorted({year for year, *_ in cells})
            for year in row_years:  # the count belongs to every year the row reports
                cells.append((year, resp_col, cell if cell not in (None, "") else None, ""))
        for year, key, value, subgroup in cells:
            for name, item in base.items():
                out[name].append(item)
            out["release_year"].append(year)
            out["measure_key"].append(key)
            out["value_raw"].append(value)
            out["subgroup"].append(subgroup)
    long = pd.DataFrame(out, columns=list(RAW_DATA_COLUMNS))
    long["release_year"] = long["release_year"].astype("int64")
    long["source_row"] = long["source_row"].astype("int64")
    for name in ("area_code", "region_type", "gemeente_name", "value_raw"):
        long[name] = long[name].astype(object).where(long[name].notna(), None)

    # Belt and braces: the privacy promise is checked on the frame that will be written.
    leaked = long["subgroup"].eq(SUBGROUP_TOO_FEW_RESPONDENTS) & long["value_raw"].notna()
    if leaked.any():
        raise RuntimeError(f"{source}: a cell suppressed for too few respondents still has a value")

    # counted over the records written (a ';;' line is a blank record to the verbatim parser, not an area)
    written = tidy[tidy["area_label"].isin(set(labels))]
    by_reason = {reason: int((written["suppressed_reason"] == reason).sum()) for reason in SUPPRESSION_REASONS}
    metadata = {
        "format": "survey_csv",
        "header_row": header_row,
        "columns": table.header,
        "area_column": area_col,
        "respondents_column": resp_col,
        "records": len(frame),
        "areas_with_cbs_code": int(long.drop_duplicates("area_name")["area_code"].notna().sum()),
        "indicators": sorted({ind for _, ind, _ in columns.values()}),
        "years": sorted({year for year, _, _ in columns.values()}),
        "suppression": {
            "min_respondents": int(min_respondents),
            "respondents_column": resp_col,
            "n_cells": int(len(written)),
            "by_reason": by_reason,
            # per year too: with `year: {from: header}` one file feeds several release-year partitions
            "by_year": {
                str(int(year)): {
                    "n_cells": int(len(part)),
                    "by_reason": {r: int((part["suppressed_reason"] == r).sum()) for r in SUPPRESSION_REASONS},
                }
                for year, part in written.groupby("year")
            },
        },
        "bom": text.bom,
        "line_ending": text.line_ending,
        "blank_rows": table.blank_rows,
    }
    if resp_col is not None:
        # What the rows depend on besides the bytes: a new threshold must give a new data version.
        metadata["version_params"] = {"min_respondents": int(min_respondents)}
    return long, metadata


def read_survey_csv_source(source_file: "SourceFile", *, min_respondents: int | None = None) -> RawExtract:
    """Catalog reader ``survey_csv``: one aggregated survey table -> :class:`RawExtract`.

    ``min_respondents`` defaults to ``WIJK_MIN_RESPONDENTS`` (``Settings.min_respondents``), read when
    the file is read, so a changed setting applies to the next materialisation.
    """
    source = source_file.relative_path
    threshold = _min_respondents(min_respondents)
    long, metadata = read_survey_table(
        source_file.path, source, min_respondents=threshold, filename_year=source_file.filename_year
    )
    return RawExtract.from_file(source_file, long, metadata)


__all__ = [
    "SUBGROUP_TOO_FEW_RESPONDENTS",
    "SUPPRESSION_REASONS",
    "read_survey_csv_source",
    "read_survey_table",
]
