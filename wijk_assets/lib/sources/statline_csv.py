"""Readers for CBS StatLine CSV exports, plus the delimited-text helpers the other CSV readers share.

StatLine's "CSV met statistische symbolen" comes in two layouts:

* **regions as rows** (:func:`read_statline_csv`): one header line of *label* headers
  (``"Regioaanduiding/Codering (code)"``, ``"Gezondheid en welzijn/…/Afstand tot huisartsenpraktijk (km)"``,
  ``"Regiocode (gemeente, wijk, buurt) (code)"``), one line per region. Columns are recognised by what
  their header says, not by position: the area code is the one column whose header contains
  ``Codering`` or ``Regiocode``, the region type ``Soort regio``, the municipality ``Gemeentenaam``, the
  region name is the column headed ``Wijken en buurten`` and the period ``Perioden``. Every other
  column is a measure whose ``measure_key`` is the header verbatim.
* **transposed** (:func:`read_statline_csv_transposed`): title lines, a line ``"Onderwerp";"";<region
  names>``, then one line per subject (``"Gezondheid en welzijn|Huisartsenpraktijk|Afstand tot
  huisartsenpraktijk";"km";"1,0";…``) and a trailing ``"Bron: CBS"`` line. The region attributes are
  subject lines (``Regioaanduiding|Codering`` etc.). ``measure_key`` is the subject path verbatim (with
  StatLine's own ``|`` separators) followed by the unit in brackets, ``"<path> (<unit>)"`` — the same
  "label (unit)" convention the regions-as-rows headers use, so a concept map can match both by
  replacing ``|`` with ``/``. Values are kept verbatim, including the comma decimals (``"1,0"``) of
  this layout.

Cell text is never trimmed or converted: ``"GM0344    "``, ``"       ."`` and ``"1,0"`` land as written.
``source_row`` is the real 1-based line number in the file (header line = 1).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from wijk_assets.lib.sources.base import (
    RawExtract,
    SourceFormatError,
    wide_to_long,
)
from wijk_assets.lib.sources.odata_shape import period_year

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

_BOM = b"\xef\xbb\xbf"
_SEPARATORS = {";": "semicolon", ",": "comma", "\t": "tab", "|": "pipe"}


# ---------------------------------------------------------------------------------------------------
# Delimited text -> rows with their real line numbers
# ---------------------------------------------------------------------------------------------------


@dataclass
class DelimitedText:
    """A parsed delimited file: every record with the 1-based line on which it starts."""

    rows: list[list[str]]
    lines: list[int]
    bom: bool
    line_ending: str  # "CRLF", "LF" or "CR"


def read_delimited(path: Path, source: str, sep: str) -> DelimitedText:
    """Parse a UTF-8 (BOM optional) delimited file with double-quote quoting, keeping every field verbatim."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SourceFormatError(source, "a readable file", f"{type(error).__name__}: {error}") from error
    if not data.strip(_BOM + b" \r\n\t"):
        raise SourceFormatError(source, "a header line and data lines", f"an empty file ({len(data)} bytes)", row=1)
    bom = data.startswith(_BOM)
    body = data[len(_BOM) :] if bom else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body[: error.start].count(b"\n") + 1
        offset = error.start + (len(_BOM) if bom else 0)
        raise SourceFormatError(
            source,
            "UTF-8 text",
            f"byte 0x{body[error.start]:02x} at byte offset {offset} that is not valid UTF-8",
            row=line,
            hint="Export the file again as UTF-8 (StatLine and OData CSV are UTF-8 with BOM)",
        ) from error
    if "\r\n" in text:
        line_ending = "CRLF"
    elif "\r" in text and "\n" not in text:
        line_ending = "CR"
    else:
        line_ending = "LF"

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"', strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    previous_end = 0
    try:
        for record in reader:
            rows.append(record)
            lines.append(previous_end + 1)
            previous_end = reader.line_num
    except csv.Error as error:
        line = previous_end + 1
        physical = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
        raise SourceFormatError(
            source,
            f"well-formed fields separated by {sep!r} ({_SEPARATORS.get(sep, 'custom')}), quoted with '\"'",
            f"a quoting error ({error})",
            row=line,
            hint=_separator_hint(physical, sep),
        ) from error
    return DelimitedText(rows=rows, lines=lines, bom=bom, line_ending=line_ending)


def _separator_hint(line: str, sep: str) -> str | None:
    """Which other separator a line seems to use: first by quote-separator-quote pairs, then raw counts."""
    for pattern in ('"{}"', "{}"):
        counts = {s: line.count(pattern.format(s)) for s in _SEPARATORS if s != sep}
        best = max(counts, key=counts.get)
        if counts[best] > line.count(pattern.format(sep)):
            return f"The line looks {_SEPARATORS[best]}-separated ({counts[best]} x {best!r}), not {sep!r}"
    return None


# ---------------------------------------------------------------------------------------------------
# Rows (from CSV or a sheet) -> a validated table of text cells
# ---------------------------------------------------------------------------------------------------


@dataclass
class TextTable:
    """Header plus records (all text, verbatim), each record with its real 1-based row/line number."""

    header: list[str]
    frame: pd.DataFrame  # columns = header, object dtype, cells str (or None for an empty xlsx cell)
    rows: np.ndarray  # int64, file row/line of each record
    header_row: int
    blank_rows: int = 0
    footer: list[str] = field(default_factory=list)

    @property
    def contiguous(self) -> bool:
        return len(self.rows) == 0 or int(self.rows[-1] - self.rows[0]) == len(self.rows) - 1

    @property
    def first_data_row(self) -> int:
        return int(self.rows[0]) if len(self.rows) else self.header_row + 1


def _blank(record: list) -> bool:
    return all(v is None or v == "" for v in record)


def table_from_rows(
    rows: list[list],
    row_numbers: list[int],
    source: str,
    *,
    sheet: str | None = None,
    sep: str | None = None,
    min_columns: int = 2,
    footer_prefixes: tuple[str, ...] = ("Bron",),
) -> TextTable:
    """Validate header and records and build a :class:`TextTable`.

    The header is the first non-blank row. Raises :class:`SourceFormatError` for a header with fewer
    than ``min_columns`` fields (typically the wrong separator), a duplicated or missing header, a
    record with a different number of fields than the header, or no records at all. Blank rows are
    skipped; a trailing block of one-field lines starting with one of ``footer_prefixes`` (StatLine's
    ``"Bron: CBS"``) is kept as ``footer``.
    """
    start = next((i for i, r in enumerate(rows) if not _blank(r)), None)
    if start is None:
        raise SourceFormatError(source, "a header row", "only empty rows", sheet=sheet, row=1)
    header_row = row_numbers[start]
    header = ["" if h is None else str(h) for h in rows[start]]
    if len(header) < min_columns:
        found = f"{len(header)} column {header[0][:80]!r}" if header else "no columns"
        raise SourceFormatError(
            source,
            f"a header with at least {min_columns} columns"
            + (f" separated by {sep!r}" if sep else ""),
            found,
            sheet=sheet,
            row=header_row,
            hint=_separator_hint(header[0], sep) if (sep and header) else None,
        )

    body = rows[start + 1 :]
    body_rows = row_numbers[start + 1 :]
    # Trailing footer lines ("Bron: CBS") and blank lines.
    footer: list[str] = []
    end = len(body)
    while end > 0:
        record = body[end - 1]
        if _blank(record):
            end -= 1
            continue
        if len(record) == 1 and len(header) > 1 and str(record[0]).strip().startswith(footer_prefixes):
            footer.insert(0, str(record[0]))
            end -= 1
            continue
        break
    body, body_rows = body[:end], body_rows[:end]

    keep: list[list] = []
    keep_rows: list[int] = []
    blank_rows = 0
    width = len(header)
    for record, line in zip(body, body_rows):
        if len(record) != width:
            if _blank(record):
                blank_rows += 1
                continue
            raise SourceFormatError(
                source,
                f"{width} fields like the header (row {header_row})",
                f"{len(record)} fields (starting {record[:3]!r})",
                sheet=sheet,
                row=line,
                hint=(_separator_hint(sep.join(map(str, record)), sep) if sep and len(record) == 1 else None),
            )
        if _blank(record):
            blank_rows += 1
            continue
        keep.append(record)
        keep_rows.append(line)

    # Columns without a header: allowed only when completely empty (a trailing separator).
    unnamed = [j for j, h in enumerate(header) if h.strip() == ""]
    drop: list[int] = []
    for j in unnamed:
        filled = next((i for i, r in enumerate(keep) if r[j] not in (None, "")), None)
        if filled is not None:
            raise SourceFormatError(
                source,
                "a header for every column that holds data",
                f"an empty header above the value {keep[filled][j]!r} (row {keep_rows[filled]})",
                sheet=sheet,
                row=header_row,
                column=f"#{j + 1}",
            )
        drop.append(j)
    if drop:
        header = [h for j, h in enumerate(header) if j not in drop]
        keep = [[v for j, v in enumerate(r) if j not in drop] for r in keep]

    duplicates = [h for h, n in Counter(header).items() if n > 1]
    if duplicates:
        name = duplicates[0]
        positions = [j + 1 for j, h in enumerate(header) if h == name]
        raise SourceFormatError(
            source,
            "unique column headers",
            f"{name!r} in columns {', '.join(map(str, positions))}",
            sheet=sheet,
            row=header_row,
            column=name,
        )
    if not keep:
        raise SourceFormatError(
            source, "at least one data row below the header", "none", sheet=sheet, row=header_row + 1
        )
    frame = pd.DataFrame(keep, columns=header, dtype=object)
    return TextTable(
        header=header,
        frame=frame,
        rows=np.asarray(keep_rows, dtype="int64"),
        header_row=header_row,
        blank_rows=blank_rows,
        footer=footer,
    )


# ---------------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------------


def find_column(
    header: list[str],
    match: Callable[[str], bool],
    what: str,
    source: str,
    *,
    required: bool,
    header_row: int,
    sheet: str | None = None,
) -> str | None:
    """The one header for which ``match`` holds; an error when several match (or none and required)."""
    hits = [h for h in header if match(h)]
    if len(hits) > 1:
        raise SourceFormatError(
            source, f"one {what} column", f"{len(hits)}: {hits}", sheet=sheet, row=header_row, column=hits[1]
        )
    if not hits:
        if required:
            shown = header[:8]
            raise SourceFormatError(
                source,
                f"a {what} column",
                f"none among the columns {shown}{' …' if len(header) > 8 else ''}",
                sheet=sheet,
                row=header_row,
            )
        return None
    return hits[0]


def check_codes_present(
    table: TextTable, column: str, source: str, *, sheet: str | None = None, what: str = "a region code"
) -> None:
    values = table.frame[column]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        i = int(empty.to_numpy().nonzero()[0][0])
        raise SourceFormatError(
            source, what, "an empty cell", sheet=sheet, row=int(table.rows[i]), column=column
        )


def check_unique_keys(
    table: TextTable, columns: list[str], source: str, *, sheet: str | None = None
) -> None:
    """Each (area, other key columns) may occur once; a repeat would double-count downstream."""
    # Codes are compared without their padding ('GM0344    ' is GM0344); other key cells verbatim.
    keys = pd.DataFrame(
        {c: (table.frame[c].astype(str).str.strip() if k == 0 else table.frame[c]) for k, c in enumerate(columns)}
    )
    repeated = keys.duplicated(keep="first")
    if repeated.any():
        i = int(repeated.to_numpy().nonzero()[0][0])
        key = tuple(keys.iloc[i])
        first = int((keys == keys.iloc[i]).all(axis=1).to_numpy().nonzero()[0][0])
        raise SourceFormatError(
            source,
            f"one row per {' + '.join(columns)}",
            f"{key if len(key) > 1 else key[0]!r} again (first on row {int(table.rows[first])})",
            sheet=sheet,
            row=int(table.rows[i]),
            column=columns[0],
        )


def check_period_column(
    table: TextTable,
    column: str,
    source: str,
    expected_year: int | None,
    *,
    sheet: str | None = None,
) -> pd.Series:
    """Parse every period cell to a year; an error for a bad cell or one disagreeing with ``expected_year``."""
    parsed = table.frame[column].map(period_year)
    bad = parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise SourceFormatError(
            source,
            "a period starting with a 4-digit year (e.g. '2019' or '2019JJ00')",
            repr(table.frame[column].iloc[i]),
            sheet=sheet,
            row=int(table.rows[i]),
            column=column,
        )
    parsed = parsed.astype("int64")
    if expected_year is not None:
        wrong = parsed != expected_year
        if wrong.any():
            i = int(wrong.to_numpy().nonzero()[0][0])
            raise SourceFormatError(
                source,
                f"period {expected_year} (the year in the file name)",
                repr(table.frame[column].iloc[i]),
                sheet=sheet,
                row=int(table.rows[i]),
                column=column,
                hint="Rename the file to the year it holds",
            )
    return parsed


def remap_source_rows(long: pd.DataFrame, table: TextTable) -> pd.DataFrame:
    """When records are not on consecutive lines (blank lines, multi-line fields), fix ``source_row``.

    ``wide_to_long`` numbers records consecutively from ``table.first_data_row``; map that position back
    to the record's real line.
    """
    if not table.contiguous and len(long):
        position = long["source_row"].to_numpy() - table.first_data_row
        long["source_row"] = table.rows[position]
    return long


# ---------------------------------------------------------------------------------------------------
# StatLine regions-as-rows
# ---------------------------------------------------------------------------------------------------

AREA_CODE_MARKERS = ("Codering", "Regiocode")
REGION_TYPE_MARKER = "Soort regio"
GEMEENTE_NAME_MARKER = "Gemeentenaam"
AREA_NAME_HEADER = "Wijken en buurten"
PERIOD_HEADERS = ("Perioden", "Periods")


def _is_area_code(label: str) -> bool:
    return any(marker in label for marker in AREA_CODE_MARKERS)


def read_statline_csv(source_file: "SourceFile") -> RawExtract:
    """StatLine "CSV met statistische symbolen", one line per region (nabijheid, SES-WOA)."""
    source = source_file.relative_path
    text = read_delimited(source_file.path, source, ";")
    table = table_from_rows(text.rows, text.lines, source, sep=";", min_columns=2)
    header, hr = table.header, table.header_row

    code_col = find_column(header, _is_area_code, "region code ('Codering' or 'Regiocode')", source, required=True, header_row=hr)
    region_col = find_column(header, lambda h: REGION_TYPE_MARKER in h, "'Soort regio'", source, required=False, header_row=hr)
    gemeente_col = find_column(header, lambda h: GEMEENTE_NAME_MARKER in h, "'Gemeentenaam'", source, required=False, header_row=hr)
    name_col = find_column(header, lambda h: h.strip() == AREA_NAME_HEADER, f"{AREA_NAME_HEADER!r}", source, required=False, header_row=hr)
    period_col = find_column(header, lambda h: h.strip() in PERIOD_HEADERS, "'Perioden'", source, required=False, header_row=hr)
    check_codes_present(table, code_col, source)

    expected_year = source_file.filename_year
    if period_col is not None:
        years: int | pd.Series = check_period_column(table, period_col, source, expected_year)
    elif expected_year is not None:
        years = expected_year
    else:
        raise SourceFormatError(
            source, "a 'Perioden' column or a year in the file name", "neither", row=hr
        )
    check_unique_keys(table, [code_col] + ([period_col] if period_col else []), source)

    id_cols = {code_col, region_col, gemeente_col, name_col, period_col} - {None}
    measures = [h for h in header if h not in id_cols]
    if not measures:
        raise SourceFormatError(source, "at least one measure column", "only region columns", row=hr)
    long = wide_to_long(
        table.frame,
        id_columns={
            "area_code": code_col,
            "area_name": name_col,
            "region_type": region_col,
            "gemeente_name": gemeente_col,
        },
        measure_columns=measures,
        first_data_row=table.first_data_row,
        release_year=years,
    )
    long = remap_source_rows(long, table)
    metadata = {
        "format": "statline_csv",
        "layout": "regions as rows",
        "header_row": hr,
        "columns": header,
        "area_code_column": code_col,
        "area_name_column": name_col,
        "region_type_column": region_col,
        "gemeente_name_column": gemeente_col,
        "period_column": period_col,
        "periods": sorted(table.frame[period_col].unique().tolist()) if period_col else [],
        "measure_columns": len(measures),
        "records": len(table.frame),
        "bom": text.bom,
        "line_ending": text.line_ending,
        "footer": table.footer,
        "blank_rows": table.blank_rows,
    }
    return RawExtract.from_file(source_file, long, metadata)


# ---------------------------------------------------------------------------------------------------
# StatLine transposed (subjects as rows, regions as columns)
# ---------------------------------------------------------------------------------------------------

SUBJECT_HEADER = "Onderwerp"
_TITLE_YEAR = re.compile(r"(?<!\d)(\d{4})\s*$")


def transposed_measure_key(subject: str, unit: str) -> str:
    """``("Gezondheid en welzijn|…|Afstand tot huisartsenpraktijk", "km")`` -> ``"… (km)"``."""
    return f"{subject} ({unit})" if unit.strip() else subject


def read_statline_csv_transposed(source_file: "SourceFile") -> RawExtract:
    """StatLine export with subjects as rows and regions as columns (the 2021 Aa en Hunze sample)."""
    source = source_file.relative_path
    text = read_delimited(source_file.path, source, ";")
    rows, lines = text.rows, text.lines

    start = next((i for i, r in enumerate(rows) if r and r[0].strip() == SUBJECT_HEADER), None)
    if start is None:
        first = next((r for r in rows if not _blank(r)), [])
        raise SourceFormatError(
            source,
            f"a line starting with {SUBJECT_HEADER!r} followed by the unit column and the region names",
            f"no such line (first line {first[:3]!r})",
            row=1,
            hint=_separator_hint(first[0], ";") if len(first) == 1 else None,
        )
    preamble = [(line, r) for line, r in zip(lines[:start], rows[:start]) if not _blank(r)]
    title_line, title = next(((line, r[0]) for line, r in preamble if len(r) == 1 and r[0].strip()), (None, None))
    dimension_label = next((r[-1] for _, r in preamble if len(r) > 1 and r[-1].strip()), None)
    # The subject line is the header of a table whose columns are: subject, unit, region 1..n. Region
    # names need not be unique (two buurten may share a name), so the table gets positional column
    # labels and the names are kept aside.
    region_names = [str(v) for v in rows[start][2:]]
    labels = [f"{name} (column {j + 3})" for j, name in enumerate(region_names)]
    subject_col, unit_col = rows[start][0], "unit (column 2)"
    synthetic = [[subject_col, unit_col, *labels], *rows[start + 1 :]]
    table = table_from_rows(synthetic, lines[start:], source, sep=";", min_columns=3)
    hr = table.header_row
    if len(region_names) == 0:
        raise SourceFormatError(source, "at least one region column", "none", row=hr)

    frame = table.frame
    subjects = frame[subject_col].astype(str)
    units = frame[unit_col].astype(str)
    keys = [transposed_measure_key(s, u) for s, u in zip(subjects, units)]
    counts = Counter(keys)
    repeated = [k for k in keys if counts[k] > 1]
    if repeated:
        where = [int(table.rows[i]) for i, k in enumerate(keys) if k == repeated[0]]
        raise SourceFormatError(
            source,
            "each subject line once",
            f"{repeated[0]!r} on lines {where}",
            row=where[1],
            column=subject_col,
        )

    def attribute(match: Callable[[str], bool], what: str, required: bool) -> int | None:
        hits = [i for i, s in enumerate(subjects) if match(s)]
        if len(hits) > 1:
            raise SourceFormatError(
                source, f"one {what} line", f"{len(hits)} (lines {[int(table.rows[i]) for i in hits]})",
                row=int(table.rows[hits[1]]), column=subject_col,
            )
        if not hits:
            if required:
                raise SourceFormatError(
                    source,
                    f"a {what} line (a subject like 'Regioaanduiding|Codering')",
                    f"none among {len(subjects)} subject lines",
                    row=hr,
                    column=subject_col,
                )
            return None
        return hits[0]

    code_i = attribute(_is_area_code, "region code ('Codering' or 'Regiocode')", True)
    region_i = attribute(lambda s: REGION_TYPE_MARKER in s, "'Soort regio'", False)
    gemeente_i = attribute(lambda s: GEMEENTE_NAME_MARKER in s, "'Gemeentenaam'", False)
    period_i = attribute(lambda s: s.strip() in PERIOD_HEADERS, "'Perioden'", False)

    region_values = frame[labels]
    codes = region_values.iloc[code_i]
    empty = [j for j, c in enumerate(codes) if c is None or str(c).strip() == ""]
    if empty:
        raise SourceFormatError(
            source, "a region code for every region column", "an empty cell",
            row=int(table.rows[code_i]), column=labels[empty[0]],
        )
    code_counts = Counter(str(c).strip() for c in codes)
    again = [c for c in codes if code_counts[str(c).strip()] > 1]
    if again:
        raise SourceFormatError(
            source, "each region code once", f"{again[0]!r} in several columns",
            row=int(table.rows[code_i]), column=labels[[str(c) for c in codes].index(again[0])],
        )

    expected_year = source_file.filename_year
    title_year = None
    if title:
        match = _TITLE_YEAR.search(title)
        title_year = int(match.group(1)) if match else None
    if expected_year is not None and title_year is not None and title_year != expected_year:
        raise SourceFormatError(
            source,
            f"a title for year {expected_year} (the year in the file name)",
            repr(title),
            row=title_line,
            hint="Rename the file to the year it holds",
        )
    years: int | pd.Series | None = expected_year if expected_year is not None else title_year
    if period_i is not None:
        period_cells = region_values.iloc[period_i]
        for name, cell in zip(labels, period_cells):
            year = period_year(cell)
            if year is None or (expected_year is not None and year != expected_year):
                raise SourceFormatError(
                    source,
                    f"period {expected_year} (the year in the file name)" if year is not None
                    else "a period starting with a 4-digit year",
                    repr(cell),
                    row=int(table.rows[period_i]),
                    column=name,
                )
        years = pd.Series([period_year(c) for c in period_cells], dtype="int64")
    if years is None:
        raise SourceFormatError(source, "a year in the file name, the title or a 'Perioden' line", "none", row=1)

    attribute_rows = {i for i in (code_i, region_i, gemeente_i, period_i) if i is not None}
    measure_idx = [i for i in range(len(frame)) if i not in attribute_rows]
    if not measure_idx:
        raise SourceFormatError(source, "at least one subject line with figures", "only region lines", row=hr)

    # Regions become records: one wide row per region column, one column per subject line.
    wide = pd.DataFrame(
        region_values.iloc[measure_idx].to_numpy(dtype=object).T,
        columns=[keys[i] for i in measure_idx],
    )
    wide["__area_code"] = codes.to_numpy()
    wide["__area_name"] = np.asarray(region_names, dtype=object)
    wide["__region_type"] = region_values.iloc[region_i].to_numpy() if region_i is not None else None
    wide["__gemeente_name"] = region_values.iloc[gemeente_i].to_numpy() if gemeente_i is not None else None
    long = wide_to_long(
        wide,
        id_columns={
            "area_code": "__area_code",
            "area_name": "__area_name",
            "region_type": "__region_type" if region_i is not None else None,
            "gemeente_name": "__gemeente_name" if gemeente_i is not None else None,
        },
        measure_columns=[keys[i] for i in measure_idx],
        first_data_row=1,
        release_year=years,
    )
    # For this layout the line that holds a figure is its subject line.
    line_of = {keys[i]: int(table.rows[i]) for i in measure_idx}
    long["source_row"] = long["measure_key"].map(line_of).astype("int64")

    metadata = {
        "format": "statline_csv_transposed",
        "layout": "subjects as rows, regions as columns",
        "title": title,
        "title_year": title_year,
        "region_dimension": dimension_label,
        "header_row": hr,
        "regions": region_names,
        "area_code_line": int(table.rows[code_i]),
        "subject_lines": len(measure_idx),
        "measure_key": "subject path verbatim ('|'-separated) + ' (' + unit + ')'",
        "comma_decimals": int(
            region_values.iloc[measure_idx].stack().astype(str).str.fullmatch(r"\s*-?\d+,\d+\s*").sum()
        ),
        "bom": text.bom,
        "line_ending": text.line_ending,
        "footer": table.footer,
    }
    return RawExtract.from_file(source_file, long, metadata)
