"""Readers for files that are dumps of a CBS OData table: the RIVM 50090NED xlsx and OData CSV files.

Both hand their records to :func:`~wijk_assets.lib.sources.odata_shape.odata_records_to_long`, the same code
the live OData reader uses, so a file dump and a live query land identical raw rows.

xlsx cells are read as text. The workbook is parsed with ``python-calamine`` — the engine behind
``pandas.read_excel(engine="calamine")`` — called directly, because going through pandas costs ~1.7 s
per 17k x 43 sheet versus ~0.9 s, and because ``read_excel(dtype=str)`` still turns text cells such as
``'NA'`` or ``'NULL'`` into missing values. The text of a cell is what pandas' calamine engine with
``dtype=str`` gives: text cells verbatim (``'    78.4'``, ``'       .'``, ``'GM1680    '``), whole
numbers without a decimal part (``ID`` 0 -> ``'0'``, ``Leeftijd`` 20300 -> ``'20300'``), other numbers
as Python prints them (1.9 -> ``'1.9'``), and an empty cell as NULL.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from wijk_assets.lib.sources.base import RawExtract, SourceFormatError, key_stem, sha256_file
from wijk_assets.lib.sources.odata_shape import (
    GEO_DIMENSIONS,
    NOT_A_MEASURE,
    PERIOD_DIMENSIONS,
    odata_records_to_long,
)
from wijk_assets.lib.sources.statline_csv import (
    TextTable,
    check_codes_present,
    check_unique_keys,
    read_delimited,
    remap_source_rows,
    table_from_rows,
)

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

_TABLE_ID = re.compile(r"^(\d{5}[A-Z]{3})(?:_|$)")


# ---------------------------------------------------------------------------------------------------
# xlsx -> text rows
# ---------------------------------------------------------------------------------------------------


def cell_text(value: object) -> str | None:
    """One calamine cell as text, the way ``pandas.read_excel(engine="calamine", dtype=str)`` writes it."""
    if isinstance(value, str):
        return value if value != "" else None
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return str(pd.Timestamp(value))
    if isinstance(value, dt.timedelta):
        return str(pd.Timedelta(value))
    return str(value)


def _unreadable(source: str, error: Exception, sheet: str | None = None, path: Path | None = None) -> SourceFormatError:
    found = f"{type(error).__name__}: {error}"
    try:  # a failed download saved under the workbook's name is usually a web page
        head = Path(path).read_bytes()[:512].lstrip().lower() if path is not None else b""
    except OSError:
        head = b""
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        found += f"; the file starts with {head[:40].decode('utf-8', 'replace')!r}: a web page or error message, not a workbook"
    return SourceFormatError(
        source,
        "a complete .xlsx workbook (a zip archive of XML parts)",
        found,
        sheet=sheet,
        hint="The file is truncated, corrupt or not an xlsx; download it again",
    )


def _takes_header(choose_sheet: Callable) -> bool:
    import inspect

    try:
        return len(inspect.signature(choose_sheet).parameters) >= 2
    except (TypeError, ValueError):
        return False


def choose_sheet_by_header(
    source: str,
    names: list[str],
    header_of: Callable[[str], list[str]],
    matches: Callable[[list[str]], bool],
    looked_for: str,
) -> str:
    """The one sheet whose header row ``matches``: publishers name sheets freely (after the gemeente,
    'Blad1', 'data'), so the content decides. Fails when no sheet or several sheets match, naming every
    sheet with the start of its header and what was looked for."""
    headers = {name: header_of(name) for name in names}
    hits = [name for name, header in headers.items() if matches(header)]
    if len(hits) == 1:
        return hits[0]
    found = "; ".join(
        f"{name!r}: {', '.join(h for h in header[:6] if h) or 'empty'}{' …' if len(header) > 6 else ''}"
        for name, header in headers.items()
    )
    raise SourceFormatError(
        source,
        f"exactly one sheet with {looked_for}",
        f"{'several' if hits else 'no'} such sheets ({', '.join(map(repr, hits))}) among: {found}"
        if hits
        else f"none among: {found}",
        hint="Keep one data sheet in the workbook, or fix its header row" if hits else None,
    )


def read_xlsx_sheet(
    path: Path,
    source: str,
    choose_sheet: Callable[..., str],
) -> tuple[str, list[str], TextTable, list[str]]:
    """Read one sheet as text. Returns (sheet name, all sheet names, table, columns that had numeric cells).

    ``choose_sheet`` gets the workbook's sheet names (and, when it takes a second argument, a function
    returning a sheet's header row, to pick by content) and returns the one to read (or raises
    :class:`SourceFormatError`). Row numbers are the sheet's own (row 1 = the first row of the sheet,
    even when it is empty).
    """
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheet_names = list(workbook.sheet_names)
    except Exception as error:  # calamine raises ZipError/XmlError/CalamineError and OSError
        raise _unreadable(source, error, path=path) from error

    def header_of(name: str) -> list[str]:
        """The first non-empty row of a sheet as text (read lazily: only that row is parsed)."""
        try:
            for row in workbook.get_sheet_by_name(name).iter_rows():
                if any(v not in ("", None) for v in row):
                    return [cell_text(v) or "" for v in row]
        except Exception as error:
            raise _unreadable(source, error, name) from error
        return []

    sheet = choose_sheet(sheet_names, header_of) if _takes_header(choose_sheet) else choose_sheet(sheet_names)
    try:
        cells = workbook.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except Exception as error:
        raise _unreadable(source, error, sheet) from error
    finally:
        try:
            workbook.close()
        except Exception:  # older python-calamine has no close(); nothing to release then
            pass
    if not cells:
        raise SourceFormatError(source, "a header row and data rows", "an empty sheet", sheet=sheet, row=1)
    header_at = next((i for i, r in enumerate(cells) if any(v not in ("", None) for v in r)), 0)
    header = [cell_text(v) or "" for v in cells[header_at]]
    rows = [header, *cells[header_at + 1 :]]
    table = table_from_rows(rows, list(range(header_at + 1, len(cells) + 1)), source, sheet=sheet, min_columns=2)

    # Text conversion, column by column; only columns holding a non-text cell need the slow path.
    frame = table.frame
    numeric_columns: list[str] = []
    for column in frame.columns:
        values = frame[column].to_numpy()
        if pd.api.types.infer_dtype(values, skipna=False) != "string":  # a Cython scan, ~1 ms
            if any(v not in ("", None) and type(v) is not str for v in values):
                numeric_columns.append(column)
            values = np.array([cell_text(v) for v in values], dtype=object)
        else:
            values = values.copy()
            values[values == ""] = None
        frame[column] = values
    return sheet, sheet_names, table, numeric_columns


def table_id_from_name(name: str) -> str | None:
    """``'50090NED_UntypedDataSet_1305202'`` -> ``'50090NED'``."""
    match = _TABLE_ID.match(name.strip())
    return match.group(1) if match else None


def resolve_table_id(source_file: "SourceFile", found: str | None, where: str, *, sheet: str | None = None) -> str | None:
    """The catalog's table id, checked against one found in the file; the file's when the catalog has none."""
    expected = source_file.cbs_table_id
    if expected and found and expected != found:
        raise SourceFormatError(
            source_file.relative_path,
            f"CBS table {expected} (catalog.yaml / file name)",
            f"{found} ({where})",
            sheet=sheet,
            hint="The file holds another table than its name or catalog entry says",
        )
    return expected or found


# ---------------------------------------------------------------------------------------------------
# OData records -> raw long rows
# ---------------------------------------------------------------------------------------------------


def _odata_dimensions(header: list[str], geo: str, period: str | None) -> list[str]:
    # Same rule as odata_records_to_long: dimensions are the columns without a positional suffix.
    return [c for c in header if c not in (geo, period, *NOT_A_MEASURE) and key_stem(c) == c.strip()]


def odata_table_to_long(
    table: TextTable, source: str, expected_year: int | None, *, sheet: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Validate an OData-shaped table and melt it with :func:`odata_records_to_long`."""
    header = table.header
    geo = next((c for c in header if c in GEO_DIMENSIONS), None)
    if geo is None:
        raise SourceFormatError(
            source,
            f"a geo dimension column (one of {', '.join(GEO_DIMENSIONS)})",
            f"columns {header[:8]}{' …' if len(header) > 8 else ''}",
            sheet=sheet,
            row=table.header_row,
        )
    period = next((c for c in header if c in PERIOD_DIMENSIONS), None)
    dimensions = _odata_dimensions(header, geo, period)
    check_codes_present(table, geo, source, sheet=sheet)
    first = table.first_data_row
    try:
        long = odata_records_to_long(
            table.frame, source=source, first_data_row=first, expected_year=expected_year, sheet=sheet
        )
    except SourceFormatError as error:
        if table.contiguous or error.row is None or not first <= error.row < first + len(table.rows):
            raise
        raise SourceFormatError(
            source, error.expected, error.found, sheet=error.sheet,
            row=int(table.rows[error.row - first]), column=error.column, hint=error.hint,
        ) from error
    check_unique_keys(table, [geo, *([period] if period else []), *dimensions], source, sheet=sheet)
    long = remap_source_rows(long, table)
    info = {
        "header_row": table.header_row,
        "columns": header,
        "geo_dimension": geo,
        "period_dimension": period,
        "periods": sorted(map(str, table.frame[period].dropna().unique())) if period else [],
        "dimensions": {d: sorted(map(str, table.frame[d].dropna().unique()))[:50] for d in dimensions},
        "records": len(table.frame),
        "blank_rows": table.blank_rows,
    }
    return long, info


# ---------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------


ODATA_REGION_KEYS = ("WijkenEnBuurten", "RegioS", "Regio's", "Regios")


def _is_odata_header(header: list[str]) -> bool:
    cells = {h.strip() for h in header}
    return "Perioden" in cells and any(key in cells for key in ODATA_REGION_KEYS)


def _choose_odata_sheet(source: str) -> Callable[..., str]:
    def choose(names: list[str], header_of: Callable[[str], list[str]]) -> str:
        if not names:
            raise SourceFormatError(source, "at least one sheet", "none")
        dataset = [n for n in names if "DataSet" in n]
        if dataset:
            return dataset[0]
        if len(names) == 1:  # the only sheet: the table reader names what is wrong with it
            return names[0]
        return choose_sheet_by_header(
            source, names, header_of, _is_odata_header,
            f"a header row holding 'Perioden' and a region key ({', '.join(ODATA_REGION_KEYS)})",
        )

    return choose


def read_odata_xlsx(source_file: "SourceFile") -> RawExtract:
    """An xlsx dump of a CBS OData (Untyped/Typed)DataSet, e.g. RIVM 50090NED per year and age group."""
    source = source_file.relative_path
    sheet, sheet_names, table, numeric_columns = read_xlsx_sheet(
        source_file.path, source, _choose_odata_sheet(source)
    )
    table_id = resolve_table_id(source_file, table_id_from_name(sheet), f"sheet name {sheet!r}", sheet=sheet)
    long, info = odata_table_to_long(table, source, source_file.filename_year, sheet=sheet)
    metadata = {
        "format": "odata_xlsx",
        "sheet": sheet,
        "sheet_names": sheet_names,
        "numeric_cell_columns": numeric_columns,
        **info,
    }
    return RawExtract(
        frame=long,
        source=source,
        sha256=sha256_file(source_file.path),
        cbs_table_id=table_id,
        metadata=metadata,
    )


def read_odata_csv(source_file: "SourceFile") -> RawExtract:
    """A CSV dump of a CBS OData TypedDataSet (UTF-8 BOM, ';', every field quoted, CRLF)."""
    source = source_file.relative_path
    text = read_delimited(source_file.path, source, ";")
    table = table_from_rows(text.rows, text.lines, source, sep=";", min_columns=2)
    table_id = resolve_table_id(source_file, table_id_from_name(Path(source).name), "file name")
    long, info = odata_table_to_long(table, source, source_file.filename_year)
    metadata = {
        "format": "odata_csv",
        "bom": text.bom,
        "line_ending": text.line_ending,
        "footer": table.footer,
        **info,
    }
    return RawExtract(
        frame=long,
        source=source,
        sha256=sha256_file(source_file.path),
        cbs_table_id=table_id,
        metadata=metadata,
    )
