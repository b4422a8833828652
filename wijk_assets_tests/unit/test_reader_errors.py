"""Malformed inputs, made from the REAL files into tmp_path, must raise SourceFormatError.

The message must name the file and where the problem is (sheet / row / column) and what was expected.
No reader may return a partial frame: every case below raises instead of returning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wijk_assets.lib.sources.catalog import SourceFile, find_source_files
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import SourceFormatError

SES = "ses_woa_scores_wijk_buurt_2019_gm0363_amsterdam.csv"
NABIJHEID = "nabijheid_voorzieningen_buurt_2023_gm0344_utrecht.csv"
ODATA_CSV = "85231ENG_proximity_facilities_2021_10_municipalities_typeddataset.csv"
TRANSPOSED = "nabijheid_afstand_wijk_buurt_2021_aa_en_hunze_sample_transposed.csv"
LBM = "lbm3_scores_wijken_2002-2022.csv"
KWB = "kwb-2023_gm0344_utrecht.xlsx"
RIVM = "gezondheid_buurt_2012_18plus.xlsx"


def _real(data_dir: Path, source: str, name: str) -> SourceFile:
    (match,) = [sf for sf in find_source_files(source, data_dir) if Path(sf.relative_path).name == name]
    return match


def _copy_as(real: SourceFile, path: Path, **changes) -> SourceFile:
    """The real file's catalog entry pointed at a tmp file (same format, table id and year unless changed)."""
    return dataclasses.replace(real, path=path, relative_path=path.name, **changes)


def _text(real: SourceFile) -> str:
    return real.path.read_bytes().decode("utf-8-sig")


def _write(path: Path, text: str, *, bom: bool = True, newline: str = "\n") -> Path:
    data = text.replace("\r\n", "\n").replace("\n", newline).encode("utf-8")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def _error(source_file: SourceFile) -> SourceFormatError:
    with pytest.raises(SourceFormatError) as info:
        read_source_file(source_file)
    message = str(info.value)
    assert f"file {source_file.relative_path}" in message, message
    assert "expected" in message, message
    return info.value


def _sheet_cells(path: Path, sheet: str | None = None) -> list[list]:
    from python_calamine import CalamineWorkbook

    workbook = CalamineWorkbook.from_path(str(path))
    worksheet = workbook.get_sheet_by_name(sheet) if sheet else workbook.get_sheet_by_index(0)
    return worksheet.to_python()


def _write_xlsx(path: Path, sheet: str, rows: list[list]) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    worksheet = workbook.active
    worksheet.title = sheet
    for row in rows:
        worksheet.append([None if v == "" else v for v in row])
    workbook.save(path)
    return path


@pytest.fixture(scope="module")
def rivm_head(shared_data_dir) -> list[list]:
    """Header + the first 30 records of the real 2012 18+ RIVM sheet."""
    return _sheet_cells(_real(shared_data_dir, "rivm_gezondheid", RIVM).path)[:31]


# ---------------------------------------------------------------------------------------------------
# Truncated / corrupt xlsx
# ---------------------------------------------------------------------------------------------------


def test_truncated_rivm_xlsx(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    data = real.path.read_bytes()
    path = tmp_path / RIVM
    path.write_bytes(data[: len(data) // 2])
    error = _error(_copy_as(real, path))
    assert "xlsx" in str(error) and "truncated" in str(error)


def test_truncated_kwb_xlsx(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB)
    data = real.path.read_bytes()
    path = tmp_path / KWB
    path.write_bytes(data[: len(data) // 2])
    _error(_copy_as(real, path))


def test_web_page_saved_as_xlsx_is_named_as_such(shared_data_dir, tmp_path):
    """A failed download (an HTML error page, SYNTHETIC) saved under the workbook's name."""
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    path = tmp_path / RIVM
    path.write_text("<!DOCTYPE html><html><body>503 Service Unavailable</body></html>")
    error = str(_error(_copy_as(real, path)))
    assert "a web page or error message, not a workbook" in error and "<!doctype html" in error


def test_csv_saved_as_xlsx(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB)
    path = tmp_path / KWB
    path.write_bytes(_real(shared_data_dir, "cbs_ses_woa", SES).path.read_bytes())
    _error(_copy_as(real, path))


# ---------------------------------------------------------------------------------------------------
# Wrong separator
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name"),
    [("cbs_ses_woa", SES), ("cbs_nabijheid", NABIJHEID), ("cbs_nabijheid", ODATA_CSV)],
)
def test_comma_instead_of_semicolon(shared_data_dir, tmp_path, source, name):
    real = _real(shared_data_dir, source, name)
    path = _write(tmp_path / name, _text(real).replace('";"', '","'))
    error = _error(_copy_as(real, path))
    assert error.row == 1
    assert "row 1" in str(error) and "';'" in str(error) and "comma-separated" in str(error)


def test_transposed_with_commas(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", TRANSPOSED)
    path = _write(tmp_path / TRANSPOSED, _text(real).replace('";"', '","'))
    error = _error(_copy_as(real, path))
    # Lines 1-2 are one-field title lines; line 3 is the first with separators.
    assert error.row == 3 and "';'" in str(error) and "comma-separated" in str(error)


def test_leefbaarometer_with_semicolons(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "leefbaarometer", LBM)
    lines = _text(real).splitlines()
    path = _write(tmp_path / LBM, "\n".join(line.replace(",", ";") for line in lines[:50]) + "\n", bom=False)
    error = _error(_copy_as(real, path))
    assert error.row == 1 and "semicolon-separated" in str(error)


# ---------------------------------------------------------------------------------------------------
# Missing key column
# ---------------------------------------------------------------------------------------------------


def _drop_field(text: str, index: int, sep: str = ";") -> str:
    out = []
    for line in text.splitlines():
        fields = line.split(sep)  # fine for these files: no separator inside quoted fields
        out.append(sep.join(fields[:index] + fields[index + 1 :]))
    return "\n".join(out) + "\n"


def test_ses_without_code_column(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    path = _write(tmp_path / SES, _drop_field(_text(real), 2))
    error = _error(_copy_as(real, path))
    assert error.row == 1
    assert "region code" in str(error) and "Regiocode" in str(error)


def test_nabijheid_without_codering_column(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", NABIJHEID)
    path = _write(tmp_path / NABIJHEID, _drop_field(_text(real), 3))
    error = _error(_copy_as(real, path))
    assert error.row == 1 and "Codering" in str(error)


def test_odata_csv_without_geo_column(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", ODATA_CSV)
    path = _write(tmp_path / ODATA_CSV, _drop_field(_text(real), 1), newline="\r\n")
    error = _error(_copy_as(real, path))
    assert error.row == 1 and "DistrictsAndNeighbourhoods" in str(error)


def test_rivm_xlsx_without_geo_column(shared_data_dir, tmp_path, rivm_head):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    geo = rivm_head[0].index("WijkenEnBuurten")
    rows = [r[:geo] + r[geo + 1 :] for r in rivm_head]
    path = _write_xlsx(tmp_path / RIVM, "50090NED_UntypedDataSet_1305202", rows)
    error = _error(_copy_as(real, path))
    assert error.row == 1 and error.sheet == "50090NED_UntypedDataSet_1305202"
    assert "sheet '50090NED_UntypedDataSet_1305202', row 1" in str(error)


def test_kwb_without_gwb_code_10(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB)
    cells = _sheet_cells(real.path, "kwb-2023")
    path = _write_xlsx(tmp_path / KWB, "kwb-2023", [r[1:] for r in cells[:20]])
    error = _error(_copy_as(real, path))
    assert error.row == 1 and error.sheet == "kwb-2023" and "gwb_code_10" in str(error)


def test_leefbaarometer_without_wk_code(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "leefbaarometer", LBM)
    lines = _text(real).splitlines()[:30]
    path = _write(tmp_path / LBM, "\n".join(line.split(",", 1)[1] for line in lines) + "\n", bom=False)
    error = _error(_copy_as(real, path))
    assert error.row == 1 and "wk_code" in str(error)


def test_transposed_without_codering_line(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", TRANSPOSED)
    lines = [line for line in _text(real).splitlines() if not line.startswith('"Regioaanduiding|Codering"')]
    path = _write(tmp_path / TRANSPOSED, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 4 and error.column == "Onderwerp" and "Codering" in str(error)


# ---------------------------------------------------------------------------------------------------
# Year in the rows disagrees with the file name
# ---------------------------------------------------------------------------------------------------


def test_ses_perioden_changed(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    assert lines[9].startswith('"2019";')
    lines[9] = '"2018";' + lines[9][len('"2019";') :]  # line 10 of the file
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (10, "Perioden")
    assert "row 10, column 'Perioden'" in str(error) and "2019" in str(error) and "'2018'" in str(error)


def test_ses_file_named_for_another_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    name = SES.replace("_2019_", "_2020_")
    path = tmp_path / name
    path.write_bytes(real.path.read_bytes())
    error = _error(_copy_as(real, path, filename_year=2020))
    assert (error.row, error.column) == (2, "Perioden")


def test_ses_perioden_not_a_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    lines[4] = '"totaal";' + lines[4][len('"2019";') :]
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (5, "Perioden")


def test_rivm_perioden_changed(shared_data_dir, tmp_path, rivm_head):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    period = rivm_head[0].index("Perioden")
    rows = [list(r) for r in rivm_head]
    rows[6][period] = "2016JJ00"  # sheet row 7
    path = _write_xlsx(tmp_path / RIVM, "50090NED_UntypedDataSet_1305202", rows)
    error = _error(_copy_as(real, path))
    assert (error.sheet, error.row, error.column) == ("50090NED_UntypedDataSet_1305202", 7, "Perioden")
    assert "'2016JJ00'" in str(error)


def test_rivm_perioden_changed_below_a_blank_row(shared_data_dir, tmp_path, rivm_head):
    """With a blank row in the sheet, the reported row is still the real sheet row."""
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    period = rivm_head[0].index("Perioden")
    rows = [list(r) for r in rivm_head]
    rows[10][period] = "2016JJ00"  # sheet row 11, becomes row 12 after the blank row
    rows.insert(3, [""] * len(rows[0]))  # blank sheet row 4
    path = _write_xlsx(tmp_path / RIVM, "50090NED_UntypedDataSet_1305202", rows)
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (12, "Perioden")


def test_kwb_sheet_for_another_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB)
    path = tmp_path / "kwb-2022_gm0344_utrecht.xlsx"
    path.write_bytes(real.path.read_bytes())
    error = _error(_copy_as(real, path, filename_year=2022))
    assert error.sheet == "kwb-2023" and "'kwb-2022'" in str(error)


def test_transposed_title_for_another_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", TRANSPOSED)
    name = TRANSPOSED.replace("_2021_", "_2022_")
    path = tmp_path / name
    path.write_bytes(real.path.read_bytes())
    error = _error(_copy_as(real, path, filename_year=2022))
    assert error.row == 1 and "2021" in str(error)


def test_leefbaarometer_year_outside_file_name(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "leefbaarometer", LBM)
    lines = _text(real).splitlines()[:40]
    assert lines[20].split(",")[2] in {"2002", "2008", "2012", "2014", "2016", "2018", "2020", "2022"}
    fields = lines[20].split(",")
    fields[2] = "2024"
    lines[20] = ",".join(fields)  # line 21
    path = _write(tmp_path / LBM, "\n".join(lines) + "\n", bom=False)
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (21, "jaar")


def test_leefbaarometer_year_not_a_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "leefbaarometer", LBM)
    lines = _text(real).splitlines()[:40]
    fields = lines[7].split(",")
    fields[2] = "NA"
    lines[7] = ",".join(fields)  # line 8
    path = _write(tmp_path / LBM, "\n".join(lines) + "\n", bom=False)
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (8, "jaar")


# ---------------------------------------------------------------------------------------------------
# Duplicated header, ragged rows, duplicated regions, empty codes, bad bytes, table id
# ---------------------------------------------------------------------------------------------------


def test_ses_duplicated_header(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    lines[0] = lines[0].replace('"Opleidingsniveau/Middelbaar/Waarde (%)"', '"Opleidingsniveau/Laag/Waarde (%)"')
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (1, "Opleidingsniveau/Laag/Waarde (%)")
    assert "unique column headers" in str(error) and "columns 5, 6" in str(error)


def test_odata_csv_duplicated_header(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", ODATA_CSV)
    text = _text(real).replace('"Within1Km_6"', '"DistanceToGPPractice_5"', 1)
    path = _write(tmp_path / ODATA_CSV, text, newline="\r\n")
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (1, "DistanceToGPPractice_5")


def test_kwb_duplicated_header(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB)
    cells = [list(r) for r in _sheet_cells(real.path, "kwb-2023")[:10]]
    cells[0][cells[0].index("a_man")] = "a_inw"
    path = _write_xlsx(tmp_path / KWB, "kwb-2023", cells)
    error = _error(_copy_as(real, path))
    assert (error.sheet, error.row, error.column) == ("kwb-2023", 1, "a_inw")


def test_ses_row_with_a_missing_field(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    lines[49] = lines[49].rsplit(";", 1)[0]  # line 50 loses its last field
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 50 and "9 fields" in str(error) and "8 fields" in str(error)


def test_ses_stray_quote(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    lines[29] = lines[29].replace('";"', '"x;"', 1)  # line 30: text after a closing quote
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 30 and "quoting" in str(error)


def test_ses_duplicated_region(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    lines = _text(real).splitlines()
    lines.insert(100, lines[3])  # line 4's region again as line 101
    path = _write(tmp_path / SES, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 101 and "first on row 4" in str(error)


def test_leefbaarometer_duplicated_wijk_year(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "leefbaarometer", LBM)
    lines = _text(real).splitlines()[:40]
    lines.append(lines[5])  # line 6 again as line 41
    path = _write(tmp_path / LBM, "\n".join(lines) + "\n", bom=False)
    error = _error(_copy_as(real, path))
    assert error.row == 41 and "first on row 6" in str(error)


def test_nabijheid_empty_code(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", NABIJHEID)
    lines = _text(real).splitlines()
    fields = lines[11].split(";")
    fields[3] = '""'
    lines[11] = ";".join(fields)  # line 12
    path = _write(tmp_path / NABIJHEID, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (12, "Regioaanduiding/Codering (code)")


def test_invalid_utf8_byte(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    data = real.path.read_bytes()
    lines = data.split(b"\n")
    lines[4] = lines[4] + b"\xe4"  # a Latin-1 byte at the end of line 5
    path = tmp_path / SES
    path.write_bytes(b"\n".join(lines))
    error = _error(_copy_as(real, path))
    assert error.row == 5 and "UTF-8" in str(error) and "byte 0xe4" in str(error)


def test_empty_csv(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    path = tmp_path / SES
    path.write_bytes(b"\xef\xbb\xbf")
    _error(_copy_as(real, path))


def test_header_only_csv(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_ses_woa", SES)
    path = _write(tmp_path / SES, _text(real).splitlines()[0] + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 2 and "data row" in str(error)


def test_xlsx_sheet_of_another_table(shared_data_dir, tmp_path, rivm_head):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    path = _write_xlsx(tmp_path / RIVM, "85163NED_UntypedDataSet_0101202", rivm_head)
    error = _error(_copy_as(real, path))
    assert error.sheet == "85163NED_UntypedDataSet_0101202" and "50090NED" in str(error)


def test_rivm_empty_geo_cell(shared_data_dir, tmp_path, rivm_head):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    geo = rivm_head[0].index("WijkenEnBuurten")
    rows = [list(r) for r in rivm_head]
    rows[14][geo] = ""  # sheet row 15
    path = _write_xlsx(tmp_path / RIVM, "50090NED_UntypedDataSet_1305202", rows)
    error = _error(_copy_as(real, path))
    assert (error.row, error.column) == (15, "WijkenEnBuurten")


def test_transposed_ragged_subject_line(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", TRANSPOSED)
    lines = _text(real).splitlines()
    assert lines[8].startswith('"Gezondheid en welzijn|Huisartsenpraktijk|Afstand tot huisartsenpraktijk"')
    lines[8] = lines[8].rsplit(";", 1)[0]  # line 9 loses a region
    path = _write(tmp_path / TRANSPOSED, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 9 and "10 fields" in str(error)


def test_transposed_duplicated_subject(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "cbs_nabijheid", TRANSPOSED)
    lines = _text(real).splitlines()
    lines.insert(20, lines[8])  # line 9's subject again as line 21
    path = _write(tmp_path / TRANSPOSED, "\n".join(lines) + "\n")
    error = _error(_copy_as(real, path))
    assert error.row == 21 and "[9, 21]" in str(error)
