"""Issue 11, observation 3: be strict about content, tolerant about packaging.

A genuine KWB xlsx whose sheet is named after the gemeente instead of ``kwb-<year>`` was refused. The
KWB and OData xlsx readers now pick the sheet by its header row; they fail only when no sheet or
several sheets carry the expected header, and then list the sheets found and what was looked for.
All workbooks are generated here from the REAL KWB Utrecht / RIVM files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from openpyxl import Workbook
from python_calamine import CalamineWorkbook

from wijk_assets.defs.raw.assets import raw_asset_key, release_year_partitions
from wijk_assets.lib.sources.catalog import SourceFile, find_source_files
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.definitions import build_definitions
from wijk_assets.settings import Settings
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import SourceFormatError

KWB = Path("cbs_kwb_xlsx_utrecht") / "kwb-2023_gm0344_utrecht.xlsx"
RIVM = "gezondheid_buurt_2012_18plus.xlsx"
NOTES = [["Toelichting"], ["Bron: CBS, Kerncijfers wijken en buurten"], ["'.' = geheim"]]


def _real(data_dir: Path, source: str, name: str) -> SourceFile:
    (match,) = [sf for sf in find_source_files(source, data_dir) if Path(sf.relative_path).name == name]
    return match


def _cells(path: Path) -> list[list]:
    workbook = CalamineWorkbook.from_path(str(path))
    return workbook.get_sheet_by_index(0).to_python(skip_empty_area=False)


def _workbook(path: Path, sheets: list[tuple[str, list[list]]]) -> Path:
    workbook = Workbook(write_only=True)
    for name, rows in sheets:
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append([None if v == "" else v for v in row])
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def _as(real: SourceFile, path: Path) -> SourceFile:
    return dataclasses.replace(real, path=path, relative_path=path.name)


@pytest.fixture(scope="module")
def kwb_cells(shared_data_dir) -> list[list]:
    return _cells(shared_data_dir / KWB)


def test_kwb_sheet_named_after_the_gemeente_loads_like_the_original(shared_data_dir, kwb_cells, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB.name)
    renamed = _workbook(tmp_path / KWB.name, [("Toelichting", NOTES), ("Utrecht", kwb_cells)])
    extract = read_source_file(_as(real, renamed))
    original = read_source_file(real)
    assert extract.metadata["sheet"] == "Utrecht"
    assert extract.metadata["sheet_names"] == ["Toelichting", "Utrecht"]
    columns = ["release_year", "area_code", "measure_key", "value_raw", "source_row"]
    assert extract.frame[columns].equals(original.frame[columns])


def test_kwb_file_with_renamed_sheet_loads_through_the_raw_asset_and_gate_1(shared_data_dir, kwb_cells, tmp_path):
    data = tmp_path / "data"
    _workbook(data / KWB, [("Gemeente Utrecht", kwb_cells)])
    db = tmp_path / "wijk.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(release_year_partitions("cbs_kwb").name, ["2023"])
    defs = build_definitions(Settings(data_dir=data, duckdb_path=db, cbs_base_url=None, gemeente="GM0106"))
    result = materialize_keys(defs, instance, [raw_asset_key("cbs_kwb")], "2023", trigger="test")
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    with duckdb.connect(str(db), read_only=True) as con:
        inhabitants = con.execute(
            "SELECT value_raw FROM raw.cbs_kwb WHERE trim(area_code) = 'GM0344' AND measure_key = 'a_inw'"
        ).fetchone()[0]
    assert inhabitants == "367947"


def test_two_kwb_sheets_are_ambiguous_and_named(shared_data_dir, kwb_cells, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB.name)
    path = _workbook(tmp_path / KWB.name, [("Utrecht", kwb_cells[:20]), ("Utrecht (2)", kwb_cells[:20])])
    with pytest.raises(SourceFormatError) as info:
        read_source_file(_as(real, path))
    message = str(info.value)
    assert "exactly one sheet with a KWB header row" in message and "'gwb_code_10'" in message
    assert "several" in message and "'Utrecht'" in message and "'Utrecht (2)'" in message


def test_no_kwb_sheet_lists_what_was_found(shared_data_dir, kwb_cells, tmp_path):
    real = _real(shared_data_dir, "cbs_kwb", KWB.name)
    path = _workbook(tmp_path / KWB.name, [("Toelichting", NOTES), ("Blad1", [r[1:] for r in kwb_cells[:20]])])
    with pytest.raises(SourceFormatError) as info:
        read_source_file(_as(real, path))
    message = str(info.value)
    assert f"file {KWB.name}" in message and "none among" in message
    assert "'Toelichting': Toelichting" in message and "'Blad1': gwb_code_8" in message
    assert "or a sheet named 'kwb-2023'" in message


def test_rivm_dump_with_a_notes_sheet_first_is_read_by_content(shared_data_dir, tmp_path):
    real = _real(shared_data_dir, "rivm_gezondheid", RIVM)
    head = _cells(real.path)[:31]
    path = _workbook(tmp_path / RIVM, [("Toelichting", NOTES), ("Blad2", head)])
    extract = read_source_file(_as(real, path))
    assert extract.metadata["sheet"] == "Blad2"
    assert extract.frame["area_code"].nunique() == 30
