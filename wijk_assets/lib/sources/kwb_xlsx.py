"""Reader for CBS "Kerncijfers wijken en buurten" in the kwb-YYYY.xlsx download layout.

One data sheet (normally ``kwb-YYYY``; any name when its header row is a KWB header), one header row of short names, one row per region. The region columns are
``gwb_code_10`` (area code, e.g. ``GM0344``/``WK034401``/``BU03440111``), ``regio`` (area name),
``gm_naam`` (municipality) and ``recs`` (region type); every other column — including ``gwb_code_8``,
the numeric part of the code as TEXT with its leading zeros (``'0344'``), and ``gwb_code``/``ind_wbi`` —
is a measure keyed by its short name verbatim. Short names change between releases (``g_woz`` vs
``g_wozbag``), which is why they stay keys here and get mapped per year in dbt staging.

Cells are read as text the way :func:`wijk_assets.lib.sources.odata_dump.cell_text` describes: numeric cells
become ``'367947'`` / ``'1.9'``, text cells (``'.'``, ``'0344'``) stay verbatim, empty cells are NULL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError, wide_to_long
from wijk_assets.lib.sources.odata_dump import choose_sheet_by_header, read_xlsx_sheet
from wijk_assets.lib.sources.statline_csv import check_codes_present, check_unique_keys, remap_source_rows

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

AREA_CODE = "gwb_code_10"
AREA_NAME = "regio"
GEMEENTE_NAME = "gm_naam"
REGION_TYPE = "recs"
_KWB_SHEET = re.compile(r"^kwb-(\d{4})$", re.IGNORECASE)


def _is_kwb_header(header: list[str]) -> bool:
    """A KWB data sheet: the area-code key column beside at least one other known region column."""
    cells = {h.strip() for h in header}
    return AREA_CODE in cells and bool(cells & {AREA_NAME, GEMEENTE_NAME, REGION_TYPE, "gwb_code_8"})


def _choose_kwb_sheet(source: str, year: int | None):
    """Strict about content, tolerant about packaging: a sheet named ``kwb-<year>`` is taken as is;
    otherwise the one sheet whose header row is a KWB header (``gwb_code_10`` beside ``regio``/
    ``gm_naam``/``recs``), whatever it is called (municipalities name it after the gemeente). A sheet
    named for *another* year still fails: the file name and the sheet contradict each other."""

    def choose(names: list[str], header_of) -> str:
        stripped = {n.strip(): n for n in names}
        if year is not None:
            wanted = f"kwb-{year}"
            if wanted in stripped:
                return stripped[wanted]
            other = [n for n in names if _KWB_SHEET.match(n.strip())]
            if other:
                raise SourceFormatError(
                    source,
                    f"a sheet {wanted!r} (the year in the file name)",
                    f"sheets {names}",
                    sheet=other[0],
                    hint="Rename the file to the year its sheet holds",
                )
        else:
            kwb = [n for n in names if _KWB_SHEET.match(n.strip())]
            if len(kwb) == 1:
                return kwb[0]
        return choose_sheet_by_header(
            source, names, header_of, _is_kwb_header,
            f"a KWB header row ({AREA_CODE!r} beside {AREA_NAME!r}/{GEMEENTE_NAME!r}/{REGION_TYPE!r})"
            + (f" or a sheet named 'kwb-{year}'" if year is not None else ""),
        )

    return choose


def read_kwb_xlsx(source_file: "SourceFile") -> RawExtract:
    source = source_file.relative_path
    sheet, sheet_names, table, numeric_columns = read_xlsx_sheet(
        source_file.path, source, _choose_kwb_sheet(source, source_file.filename_year)
    )
    year = source_file.filename_year
    if year is None:
        named = _KWB_SHEET.match(sheet.strip())
        if named is None:
            raise SourceFormatError(
                source, "a release year in the file name or a sheet named 'kwb-YYYY'", f"sheet {sheet!r}", sheet=sheet
            )
        year = int(named.group(1))
    header = table.header
    if AREA_CODE not in header:
        raise SourceFormatError(
            source,
            f"a key column {AREA_CODE!r}",
            f"none among the columns {header[:8]}{' …' if len(header) > 8 else ''}",
            sheet=sheet,
            row=table.header_row,
        )
    check_codes_present(table, AREA_CODE, source, sheet=sheet)
    check_unique_keys(table, [AREA_CODE], source, sheet=sheet)
    present = {c: (c if c in header else None) for c in (AREA_NAME, GEMEENTE_NAME, REGION_TYPE)}
    id_cols = {AREA_CODE, *(c for c in present.values() if c)}
    measures = [c for c in header if c not in id_cols]
    if not measures:
        raise SourceFormatError(source, "at least one measure column", "only region columns", sheet=sheet, row=table.header_row)
    long = wide_to_long(
        table.frame,
        id_columns={
            "area_code": AREA_CODE,
            "area_name": present[AREA_NAME],
            "region_type": present[REGION_TYPE],
            "gemeente_name": present[GEMEENTE_NAME],
        },
        measure_columns=measures,
        first_data_row=table.first_data_row,
        release_year=year,
    )
    long = remap_source_rows(long, table)
    metadata = {
        "format": "kwb_xlsx",
        "sheet": sheet,
        "sheet_names": sheet_names,
        "header_row": table.header_row,
        "columns": header,
        "missing_region_columns": [c for c, v in present.items() if v is None],
        # gwb_code_8 must be a text cell ('0344'); a numeric cell would have lost its leading zeros.
        "numeric_cell_columns": numeric_columns,
        "gwb_code_8_numeric": "gwb_code_8" in numeric_columns,
        "records": len(table.frame),
        "blank_rows": table.blank_rows,
    }
    return RawExtract.from_file(source_file, long, metadata)
