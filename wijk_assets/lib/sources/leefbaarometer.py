"""Reader for the Leefbaarometer 3.0 open-data scores per wijk (BZK), e.g. ``lbm3_scores_wijken_2002-2022.csv``.

Plain UTF-8, ``,``-separated, names with commas in double quotes, ``NA`` for missing. One row per
(wijk, jaar): ``wk_code`` is the area code, ``wk_naam`` the area name, ``jaar`` the release year of that
row (one file holds every measurement year); the region type is not in the file (NULL, all rows are
wijken). The measures ``lbm`` (score), ``afw`` (deviation from the national mean) and the dimensions
``fys onv soc vrz won`` — and any column a later release adds — are kept as verbatim text, ``NA``
included (it is NOT turned into NULL: 'NA' says "not computed for this year", an empty cell would say
"missing").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError, wide_to_long
from wijk_assets.lib.sources.statline_csv import (
    check_codes_present,
    check_unique_keys,
    read_delimited,
    remap_source_rows,
    table_from_rows,
)

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

AREA_CODE = "wk_code"
AREA_NAME = "wk_naam"
YEAR = "jaar"
EXPECTED_MEASURES = ("lbm", "afw", "fys", "onv", "soc", "vrz", "won")
_YEAR = re.compile(r"\s*(\d{4})\s*")
_RANGE = re.compile(r"(?<!\d)(\d{4})-(\d{4})(?!\d)")


def read_leefbaarometer_csv(source_file: "SourceFile") -> RawExtract:
    source = source_file.relative_path
    text = read_delimited(source_file.path, source, ",")
    table = table_from_rows(text.rows, text.lines, source, sep=",", min_columns=3)
    header, hr = table.header, table.header_row
    year_column = source_file.spec.year_column or YEAR
    for required in (AREA_CODE, year_column):
        if required not in header:
            raise SourceFormatError(
                source,
                f"a key column {required!r}",
                f"none among the columns {header[:10]}",
                row=hr,
            )
    check_codes_present(table, AREA_CODE, source)

    years_text = table.frame[year_column]
    matched = years_text.astype(str).str.fullmatch(_YEAR.pattern)
    if not matched.all():
        i = int((~matched).to_numpy().nonzero()[0][0])
        raise SourceFormatError(
            source, "a 4-digit year", repr(years_text.iloc[i]), row=int(table.rows[i]), column=year_column
        )
    years = years_text.astype(str).str.strip().astype("int64")
    # The file name states the years it covers ("..._2002-2022.csv", or one year): rows must agree.
    span = _RANGE.search(Path(source).name)
    low, high = (int(span.group(1)), int(span.group(2))) if span else (None, None)
    if source_file.filename_year is not None:
        low = high = source_file.filename_year
    if low is not None:
        outside = (years < low) | (years > high)
        if outside.any():
            i = int(outside.to_numpy().nonzero()[0][0])
            expected = f"a year from {low} to {high}" if low != high else f"year {low}"
            raise SourceFormatError(
                source,
                f"{expected} (the years in the file name)",
                repr(years_text.iloc[i]),
                row=int(table.rows[i]),
                column=year_column,
            )
    check_unique_keys(table, [AREA_CODE, year_column], source)

    id_cols = {AREA_CODE, AREA_NAME, year_column}
    measures = [c for c in header if c not in id_cols]
    if not measures:
        raise SourceFormatError(source, f"measure columns ({', '.join(EXPECTED_MEASURES)})", "none", row=hr)
    long = wide_to_long(
        table.frame,
        id_columns={
            "area_code": AREA_CODE,
            "area_name": AREA_NAME if AREA_NAME in header else None,
            "region_type": None,
            "gemeente_name": None,
        },
        measure_columns=measures,
        first_data_row=table.first_data_row,
        release_year=years,
    )
    long = remap_source_rows(long, table)
    metadata = {
        "format": "leefbaarometer_csv",
        "header_row": hr,
        "columns": header,
        "year_column": year_column,
        "years": sorted(int(y) for y in years.unique()),
        "missing_measures": [m for m in EXPECTED_MEASURES if m not in header],
        "extra_measures": [m for m in measures if m not in EXPECTED_MEASURES],
        "records": len(table.frame),
        "bom": text.bom,
        "line_ending": text.line_ending,
        "blank_rows": table.blank_rows,
    }
    return RawExtract.from_file(source_file, long, metadata)
