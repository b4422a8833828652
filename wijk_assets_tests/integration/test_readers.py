"""The file readers against the REAL files in ../shared/data (facts from shared/data/PROVENANCE.md).

Each file is read once per test session (fixture cache); the assertions check counts, verbatim cell
text (padding, '.', 'NA', comma decimals), NULL for empty cells and real 1-based source rows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from pathlib import Path

import pandas as pd
import pytest

from wijk_assets.lib.sources.catalog import SourceFile, find_source_files
from wijk_assets.lib.sources import READERS, read_source_file
from wijk_assets.lib.sources.base import RAW_DATA_COLUMNS, RawExtract, sha256_file

RIVM_FILES = [
    "gezondheid_buurt_2012_18-64.xlsx",
    "gezondheid_buurt_2012_18plus.xlsx",
    "gezondheid_buurt_2012_65plus.xlsx",
    "gezondheid_buurt_2016_18-64.xlsx",
    "gezondheid_buurt_2016_18plus.xlsx",
    "gezondheid_buurt_2016_65plus.xlsx",
    "gezondheid_buurt_2020_18plus.xlsx",
    "gezondheid_buurt_2020_65plus.xlsx",
]
LEEFTIJD = {"18plus": "20300", "65plus": "80200", "18-64": "53115"}
# Indicator columns that are empty in every row (not measured that year / age group).
EMPTY_INDICATORS = {
    "gezondheid_buurt_2012_18-64.xlsx": 12,
    "gezondheid_buurt_2012_18plus.xlsx": 15,
    "gezondheid_buurt_2012_65plus.xlsx": 15,
    "gezondheid_buurt_2016_18-64.xlsx": 5,
    "gezondheid_buurt_2016_18plus.xlsx": 8,
    "gezondheid_buurt_2016_65plus.xlsx": 8,
    "gezondheid_buurt_2020_18plus.xlsx": 3,
    "gezondheid_buurt_2020_65plus.xlsx": 3,
}

_CACHE: dict[str, tuple[RawExtract, float]] = {}


def _source_file(data_dir: Path, source: str, name: str) -> SourceFile:
    matches = [sf for sf in find_source_files(source, data_dir) if Path(sf.relative_path).name == name]
    assert len(matches) == 1, f"{name} not found for source {source} in {data_dir}"
    return matches[0]


def _read(data_dir: Path, source: str, name: str) -> RawExtract:
    key = f"{source}/{name}"
    if key not in _CACHE:
        start = time.perf_counter()
        extract = read_source_file(_source_file(data_dir, source, name))
        _CACHE[key] = (extract, time.perf_counter() - start)
    return _CACHE[key][0]


def _seconds(source: str, name: str) -> float:
    return _CACHE[f"{source}/{name}"][1]


def _areas_by_type(frame: pd.DataFrame) -> dict[str, int]:
    regions = frame[["area_code", "region_type"]].drop_duplicates()
    return regions["region_type"].str.strip().value_counts().to_dict()


def _value(frame: pd.DataFrame, code: str, measure: str, **extra) -> object:
    rows = frame[(frame["area_code"].str.strip() == code) & (frame["measure_key"] == measure)]
    for column, wanted in extra.items():
        rows = rows[rows[column] == wanted]
    assert len(rows) == 1, f"{code}/{measure}: {len(rows)} rows"
    return rows["value_raw"].iloc[0]


def _csv_line(path: Path, line: int, sep: str = ";") -> list[str]:
    text = path.read_bytes().decode("utf-8-sig").splitlines()[line - 1]
    return next(csv.reader(io.StringIO(text), delimiter=sep))


# ---------------------------------------------------------------------------------------------------
# Invariants of every reader on every real file
# ---------------------------------------------------------------------------------------------------

ALL_FILES = [("rivm_gezondheid", n) for n in RIVM_FILES] + [
    ("leefbaarometer", "lbm3_scores_wijken_2002-2022.csv"),
    ("cbs_kwb", "kwb-2023_gm0344_utrecht.xlsx"),
    ("cbs_kwb", "kwb_2024_gemeente_wijk_8vars.json"),
    ("cbs_wijkgrenzen", "wijken_2024_wgs84_simplified.geojson"),
    ("cbs_nabijheid", "nabijheid_voorzieningen_buurt_2023_gm0344_utrecht.csv"),
    ("cbs_nabijheid", "85231ENG_proximity_facilities_2021_10_municipalities_typeddataset.csv"),
    ("cbs_nabijheid", "nabijheid_afstand_wijk_buurt_2021_aa_en_hunze_sample_transposed.csv"),
    ("cbs_ses_woa", "ses_woa_scores_wijk_buurt_2019_gm0363_amsterdam.csv"),
]


def test_every_catalogued_file_has_a_reader(shared_data_dir):
    found = [
        (sf.spec.source, Path(sf.relative_path).name)
        for source in ("rivm_gezondheid", "leefbaarometer", "cbs_kwb", "cbs_wijkgrenzen", "cbs_nabijheid", "cbs_ses_woa")
        for sf in find_source_files(source, shared_data_dir)
    ]
    assert sorted(found) == sorted(ALL_FILES)
    for source, name in ALL_FILES:
        assert _source_file(shared_data_dir, source, name).spec.format in READERS


@pytest.mark.parametrize(("source", "name"), ALL_FILES, ids=[n for _, n in ALL_FILES])
def test_raw_layout_invariants(shared_data_dir, source, name):
    source_file = _source_file(shared_data_dir, source, name)
    extract = _read(shared_data_dir, source, name)
    frame = extract.frame
    assert list(frame.columns) == list(RAW_DATA_COLUMNS)
    assert extract.source == source_file.relative_path
    assert extract.sha256 == sha256_file(source_file.path)
    assert len(frame) > 0
    assert frame["release_year"].dtype == "int64"
    assert frame["source_row"].dtype == "int64"
    if source_file.spec.format in ("kwb_odata_json", "area_geojson"):
        assert frame["source_row"].min() == 1  # JSON: the 1-based record (feature) number
    else:
        assert frame["source_row"].min() >= 2  # row 1 is a header (or title) line
    assert frame["area_code"].notna().all() and (frame["area_code"].str.strip() != "").all()
    assert frame["measure_key"].notna().all()
    # Empty cells are NULL, never ''; everything else is a string.
    values = frame["value_raw"].dropna()
    assert (values != "").all()
    assert values.map(type).eq(str).all()
    # One value per area, subgroup, measure and year.
    assert not frame.duplicated(["area_code", "subgroup", "measure_key", "release_year"]).any()
    if source_file.filename_year is not None:
        assert extract.years() == [source_file.filename_year]


# ---------------------------------------------------------------------------------------------------
# RIVM 50090NED xlsx (odata_xlsx)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RIVM_FILES)
def test_rivm_every_file_is_the_whole_netherlands(shared_data_dir, name):
    extract = _read(shared_data_dir, "rivm_gezondheid", name)
    frame = extract.frame
    year = int(name.split("_")[2])
    age = LEEFTIJD[name.split("_")[3].removesuffix(".xlsx")]
    assert extract.cbs_table_id == "50090NED"
    assert extract.years() == [year]
    assert extract.metadata["records"] == 17341
    assert extract.metadata["periods"] == [f"{year}JJ00"]
    assert extract.metadata["dimensions"] == {"Leeftijd": [age], "Marges": ["MW00000"]}
    assert len(extract.metadata["columns"]) == 43
    assert frame["area_code"].nunique() == 17341
    assert _areas_by_type(frame) == {"Land": 1, "Gemeente": 355, "Wijk": 3177, "Buurt": 13808}
    # 35 indicators + Codering_3 (a topic in CBS's metadata); ID/Leeftijd/Marges/Perioden are not measures.
    assert frame["measure_key"].nunique() == 36
    assert len(frame) == 17341 * 36
    assert set(frame["subgroup"]) == {f"Leeftijd={age}|Marges=MW00000"}
    assert frame["source_row"].min() == 2 and frame["source_row"].max() == 17342
    all_null = frame.groupby("measure_key")["value_raw"].apply(lambda v: v.isna().all())
    assert int(all_null.sum()) == EMPTY_INDICATORS[name]
    # ID and Leeftijd are numeric cells in these files; everything else is text.
    assert extract.metadata["numeric_cell_columns"] == ["ID", "Leeftijd"]
    assert _seconds("rivm_gezondheid", name) < 10  # ~1.1-1.8 s on a loaded 2-core box; see report


def test_rivm_2012_18plus_facts(shared_data_dir):
    extract = _read(shared_data_dir, "rivm_gezondheid", "gezondheid_buurt_2012_18plus.xlsx")
    frame = extract.frame
    assert extract.metadata["sheet"] == "50090NED_UntypedDataSet_1305202"
    codes = frame["area_code"].drop_duplicates().str.strip()
    assert codes.str.startswith("GM").sum() == 355
    assert codes.str.startswith("WK").sum() == 3177
    assert codes.str.startswith("BU").sum() == 13808
    assert set(codes[~codes.str[:2].isin(["GM", "WK", "BU"])]) == {"NL01"}  # NL01, not NL00
    assert codes.str.match(r"^BU0106\d{4}$").sum() == 109  # Assen buurten
    # Padding kept verbatim: codes to 10, gemeente names to 40, SoortRegio to 10 characters.
    assert "WK168000  " in set(frame["area_code"])
    assert "Buurt     " in set(frame["region_type"])
    assert "Aa en Hunze".ljust(40) in set(frame["gemeente_name"])
    assert frame["area_name"].isna().all()  # the OData dump has no region names
    # Not measured in 2012: empty cells -> NULL; small-area suppression: the text '       .'.
    for measure in ("VoldoetAanBeweegrichtlijn_5", "WekelijkseSporters_6"):
        assert frame.loc[frame["measure_key"] == measure, "value_raw"].isna().all()
    suppressed = frame["value_raw"].dropna()
    suppressed = suppressed[suppressed.str.strip() == "."]
    assert len(suppressed) == 17200
    assert set(suppressed) == {"       ."}
    assert _value(frame, "NL01", "ErvarenGezondheidGoedZeerGoed_4") == "    76.1"
    assert _value(frame, "NL01", "Codering_3") == "NL01".ljust(20)


def test_rivm_2020_values_and_rows_match_the_sheet(shared_data_dir):
    from python_calamine import CalamineWorkbook

    name = "gezondheid_buurt_2020_18plus.xlsx"
    source_file = _source_file(shared_data_dir, "rivm_gezondheid", name)
    extract = _read(shared_data_dir, "rivm_gezondheid", name)
    frame = extract.frame
    assert extract.metadata["sheet"] == "RIVM_gezondheid2020_18+"
    assert _value(frame, "NL01", "ErvarenGezondheidGoedZeerGoed_4") == "    78.4"
    # source_row is the sheet row: check a spread of long rows against an independent read.
    sheet = CalamineWorkbook.from_path(str(source_file.path)).get_sheet_by_index(0).to_python()
    header = sheet[0]
    code_at, roker_at = header.index("WijkenEnBuurten"), header.index("Roker_11")
    roker = frame[frame["measure_key"] == "Roker_11"]
    for i in range(0, len(roker), 997):
        row = roker.iloc[i]
        cells = sheet[row["source_row"] - 1]
        assert cells[code_at] == row["area_code"]
        assert (cells[roker_at] or None) == row["value_raw"]


# ---------------------------------------------------------------------------------------------------
# Leefbaarometer
# ---------------------------------------------------------------------------------------------------


def test_leefbaarometer_facts(shared_data_dir):
    extract = _read(shared_data_dir, "leefbaarometer", "lbm3_scores_wijken_2002-2022.csv")
    frame = extract.frame
    assert extract.cbs_table_id is None
    assert extract.metadata["records"] == 26366
    assert len(frame) == 26366 * 7
    assert set(frame["measure_key"]) == {"lbm", "afw", "fys", "onv", "soc", "vrz", "won"}
    assert extract.years() == [2002, 2008, 2012, 2014, 2016, 2018, 2020, 2022]
    per_year = frame.groupby("release_year")["area_code"].nunique()
    assert per_year.min() == 3289 and per_year.max() == 3308
    # 10 Assen wijken. PROVENANCE.md says WK010600-WK010609; the file has WK010600-WK010608 + WK010699
    # (Wijk 99 Buitengebied), each in all 8 years.
    assen = frame[frame["area_code"].str.startswith("WK0106")]
    assert sorted(assen["area_code"].unique()) == [f"WK01060{i}" for i in range(9)] + ["WK010699"]
    assert len(assen) == 10 * 8 * 7
    assert set(assen.loc[assen["area_code"] == "WK010699", "area_name"]) == {"Wijk 99 Buitengebied"}
    assert frame["region_type"].isna().all() and frame["gemeente_name"].isna().all()
    assert frame["subgroup"].eq("").all()
    # 'NA' is kept as the text 'NA' (the dimension scores exist only for 2014/2018/2020/2022).
    dims = frame[frame["measure_key"].isin(["fys", "onv", "soc", "vrz", "won"])]
    not_scored = dims[dims["release_year"].isin([2002, 2008, 2012, 2016])]
    assert set(not_scored["value_raw"]) == {"NA"}
    assert (dims[dims["release_year"] == 2022]["value_raw"] != "NA").mean() > 0.95
    assert frame["value_raw"].notna().all()
    lbm = pd.to_numeric(frame.loc[frame["measure_key"] == "lbm", "value_raw"], errors="coerce")
    assert 3.0 < lbm.min() and lbm.max() < 5.0
    # Quoted names with commas stay one field.
    assert "Appel, Driedorp, Kruishaar, Prinsenkamp" in set(frame["area_name"])
    # Verbatim number text and the real line number.
    first = frame.iloc[0]
    assert (first["area_code"], first["release_year"], first["measure_key"], first["value_raw"]) == (
        "WK001400", 2002, "lbm", "4.131519995884998"
    )
    assert first["source_row"] == 2
    assert frame["source_row"].max() == 26367
    path = _source_file(shared_data_dir, "leefbaarometer", "lbm3_scores_wijken_2002-2022.csv").path
    sample = frame[frame["area_name"] == "Appel, Driedorp, Kruishaar, Prinsenkamp"].iloc[0]
    line = _csv_line(path, int(sample["source_row"]), sep=",")
    assert line[0] == sample["area_code"] and int(line[2]) == sample["release_year"]


# ---------------------------------------------------------------------------------------------------
# KWB xlsx
# ---------------------------------------------------------------------------------------------------


def test_kwb_utrecht_facts(shared_data_dir):
    extract = _read(shared_data_dir, "cbs_kwb", "kwb-2023_gm0344_utrecht.xlsx")
    frame = extract.frame
    assert extract.metadata["sheet"] == "kwb-2023"
    assert extract.years() == [2023]
    assert extract.cbs_table_id is None
    assert frame["area_code"].nunique() == 122
    assert _areas_by_type(frame) == {"Gemeente": 1, "Wijk": 10, "Buurt": 111}
    assert set(frame["gemeente_name"]) == {"Utrecht"}
    assert frame["measure_key"].nunique() == 121 - 4
    assert {"gwb_code_8", "gwb_code", "ind_wbi", "a_inw", "g_wozbag", "a_opl_lg"} <= set(frame["measure_key"])
    assert not {"gwb_code_10", "regio", "gm_naam", "recs"} & set(frame["measure_key"])
    # gwb_code_8 is text with leading zeros, never an int.
    assert _value(frame, "GM0344", "gwb_code_8") == "0344"
    assert _value(frame, "BU03440111", "gwb_code_8") == "03440111"
    assert extract.metadata["gwb_code_8_numeric"] is False
    # Numeric cells as text; '.' verbatim; names with commas.
    assert _value(frame, "GM0344", "a_inw") == "367947"
    assert _value(frame, "GM0344", "g_hhgro") == "1.9"
    assert _value(frame, "GM0344", "g_ele") == "."
    assert _value(frame, "BU03440111", "a_inw") == "1810"
    assert frame.loc[frame["area_code"] == "BU03440111", "area_name"].iloc[0] == "Welgelegen, Den Hommel"
    assert frame.loc[frame["area_code"] == "GM0344", "source_row"].unique().tolist() == [2]
    assert frame["source_row"].max() == 123


# ---------------------------------------------------------------------------------------------------
# CBS nabijheid: StatLine CSV, OData CSV, transposed StatLine CSV
# ---------------------------------------------------------------------------------------------------


def test_nabijheid_2023_utrecht_statline_csv(shared_data_dir):
    name = "nabijheid_voorzieningen_buurt_2023_gm0344_utrecht.csv"
    extract = _read(shared_data_dir, "cbs_nabijheid", name)
    frame = extract.frame
    assert extract.years() == [2023]
    assert extract.metadata["bom"] is True
    assert extract.metadata["area_code_column"] == "Regioaanduiding/Codering (code)"
    assert frame["area_code"].nunique() == 123
    assert _areas_by_type(frame) == {"Land": 1, "Gemeente": 1, "Wijk": 10, "Buurt": 111}
    assert {"NL00      ", "GM0344    ", "WK034401  ", "BU03440111"} <= set(frame["area_code"])
    assert frame["measure_key"].nunique() == 115 - 4
    key = "Gezondheid en welzijn/Huisartsenpraktijk/Afstand tot huisartsenpraktijk (km)"
    assert key in set(frame["measure_key"])
    assert _value(frame, "NL00", key) == "       ."
    assert set(frame.loc[frame["area_code"] == "WK034401  ", "area_name"]) == {"Wijk 01 West"}
    assert set(frame.loc[frame["area_code"] == "WK034401  ", "gemeente_name"]) == {"Utrecht".ljust(40)}
    path = _source_file(shared_data_dir, "cbs_nabijheid", name).path
    row = frame[frame["area_code"] == "BU03441041"].iloc[0]
    assert row["source_row"] == 124
    assert _csv_line(path, 124)[3] == "BU03441041"


def test_85231eng_odata_csv(shared_data_dir):
    name = "85231ENG_proximity_facilities_2021_10_municipalities_typeddataset.csv"
    extract = _read(shared_data_dir, "cbs_nabijheid", name)
    frame = extract.frame
    assert extract.cbs_table_id == "85231ENG"
    assert extract.years() == [2021]
    assert extract.metadata["line_ending"] == "CRLF" and extract.metadata["bom"] is True
    assert frame["area_code"].nunique() == 909
    assert _areas_by_type(frame) == {"Municipality": 10, "District": 137, "Neighbourhood": 762}
    assert "Municipality " in set(frame["region_type"])  # padded
    assert "GM0034    " in set(frame["area_code"])
    assert frame["measure_key"].nunique() == 116 - 4  # minus ID, geo, MunicipalityName_1, RegionType_2
    assert _value(frame, "GM0034", "DistanceToGPPractice_5") == "     1.1"
    assert _value(frame, "GM0034", "ChangeInDistrictOrNeighbourhood_4") == "."
    values = frame["value_raw"].dropna()
    assert "       ." in set(values)
    assert not values.str.contains("\r").any()  # CRLF handled, no stray carriage returns
    assert frame["source_row"].min() == 2 and frame["source_row"].max() == 910
    path = _source_file(shared_data_dir, "cbs_nabijheid", name).path
    row = frame[frame["area_code"] == "BU00340101"].iloc[0]
    assert _csv_line(path, int(row["source_row"]))[1] == "BU00340101"


def test_transposed_aa_en_hunze_sample(shared_data_dir):
    name = "nabijheid_afstand_wijk_buurt_2021_aa_en_hunze_sample_transposed.csv"
    extract = _read(shared_data_dir, "cbs_nabijheid", name)
    frame = extract.frame
    assert extract.years() == [2021]
    codes = frame["area_code"].drop_duplicates().tolist()
    assert codes == [
        "NL00", "GM1680", "WK168000", "BU16800000", "BU16800009", "WK168001", "BU16800100", "BU16800109",
    ]
    assert extract.metadata["footer"] == ["Bron: CBS"]
    assert extract.metadata["title"] == "Nabijheid voorzieningen; afstand locatie, wijk- en buurtcijfers 2021"
    key = "Gezondheid en welzijn|Huisartsenpraktijk|Afstand tot huisartsenpraktijk (km)"
    assert _value(frame, "NL00", key) == "1,0"  # comma decimal kept verbatim
    assert _value(frame, "GM1680", key) == "2,5"
    assert frame.loc[frame["measure_key"] == key, "source_row"].unique().tolist() == [9]
    bu = frame[frame["area_code"] == "BU16800009"].iloc[0]
    assert (bu["area_name"], bu["region_type"], bu["gemeente_name"]) == ("Verspreide huizen Annen", "Buurt", "AaenHunze")
    # 119 lines: 3 title lines, the 'Onderwerp' line, 4 region-attribute lines (3 of them ids), 110
    # subject lines, 'Bron: CBS'. Indelingswijziging is a measure like in the other layouts.
    assert frame["measure_key"].nunique() == 111
    assert "Afstand tot brandweerkazerne (km)" in set(frame["measure_key"])
    assert frame["source_row"].min() == 8 and frame["source_row"].max() == 118
    assert len(frame) == 8 * 111


def test_ses_woa_amsterdam(shared_data_dir):
    name = "ses_woa_scores_wijk_buurt_2019_gm0363_amsterdam.csv"
    extract = _read(shared_data_dir, "cbs_ses_woa", name)
    frame = extract.frame
    assert extract.cbs_table_id == "85163NED"
    assert extract.years() == [2019]
    assert extract.metadata["period_column"] == "Perioden"
    assert extract.metadata["area_code_column"] == "Regiocode (gemeente, wijk, buurt) (code)"
    codes = frame["area_code"].drop_duplicates()
    assert len(codes) == 579
    assert codes.str[:2].value_counts().to_dict() == {"BU": 479, "WK": 99, "GM": 1}
    assert "GM0363    " in set(codes)
    assert frame["region_type"].isna().all() and frame["gemeente_name"].isna().all()
    assert set(frame["measure_key"]) == {
        "Particuliere huishoudens (Aantal)",
        "Opleidingsniveau/Laag/Waarde (%)",
        "Opleidingsniveau/Middelbaar/Waarde (%)",
        "Opleidingsniveau/Hoog/Waarde (%)",
        "SES-WOA/Totaalscore/Gemiddelde score (Getal)",
        "Spreiding/Spreiding totaal/Waarde (Getal)",
    }
    assert _value(frame, "GM0363", "SES-WOA/Totaalscore/Gemiddelde score (Getal)") == "  -0.100"
    assert _value(frame, "BU03639801", "Opleidingsniveau/Laag/Waarde (%)") == "       ."
    assert frame.loc[frame["area_code"] == "GM0363    ", "area_name"].iloc[0] == "Amsterdam"
    assert frame.loc[frame["area_code"] == "BU03639801", "source_row"].iloc[0] == 580


# ---------------------------------------------------------------------------------------------------
# Real rows in a sheet that does not start at A1: source_row follows the sheet, blank rows skipped
# ---------------------------------------------------------------------------------------------------


def test_xlsx_source_rows_are_sheet_rows(shared_data_dir, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    real = _source_file(shared_data_dir, "cbs_kwb", "kwb-2023_gm0344_utrecht.xlsx")
    from python_calamine import CalamineWorkbook

    cells = CalamineWorkbook.from_path(str(real.path)).get_sheet_by_name("kwb-2023").to_python()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "kwb-2023"
    sheet.append([])  # row 1 empty
    sheet.append([])  # row 2 empty
    sheet.append(cells[0])  # header on row 3
    sheet.append(cells[1])  # row 4
    sheet.append([])  # row 5 empty
    sheet.append(cells[3])  # row 6
    path = tmp_path / "kwb-2023_offset.xlsx"
    workbook.save(path)
    source_file = dataclasses.replace(real, path=path, relative_path=path.name)
    frame = read_source_file(source_file).frame
    rows = frame.drop_duplicates("area_code").set_index("area_code")["source_row"].to_dict()
    assert rows == {cells[1][0]: 4, cells[3][0]: 6}
    assert _value(frame, cells[3][0], "gwb_code_8") == "03440111"


def test_a_file_that_feeds_several_release_years_is_read_once_per_content(shared_data_dir, tmp_path):
    """The Leefbaarometer's one CSV feeds eight release-year partitions: the partition listing and every
    year read it once (the same rows as a fresh read, year by year); a changed file is read again."""
    import shutil

    from wijk_assets.defs.resources import CbsSourceResource
    from wijk_assets.lib.sources import _MULTI_YEAR

    real = next((shared_data_dir / "leefbaarometer").glob("*.csv"))
    data = tmp_path / "data"
    (data / "leefbaarometer").mkdir(parents=True)
    copy = data / "leefbaarometer" / real.name
    shutil.copyfile(real, copy)
    cbs = CbsSourceResource(data_dir=str(data))
    _MULTI_YEAR.clear()
    years = cbs.available_years("leefbaarometer")
    assert len(years) == 8 and len(_MULTI_YEAR) == 1
    fresh = read_source_file(find_source_files("leefbaarometer", data)[0]).frame
    for year in years:
        [extract] = cbs.extracts("leefbaarometer", year)
        expected = fresh[fresh["release_year"] == year]
        pd.testing.assert_frame_equal(extract.frame, expected)
        extract.frame = extract.frame.iloc[0:0]  # what the raw asset does once the rows are staged
    assert len(_MULTI_YEAR) == 1

    text = copy.read_text(encoding="utf-8").replace("WK001400,Centrum,2022,", "WK001400,Centrum (nieuw),2022,", 1)
    copy.write_text(text, encoding="utf-8")
    [changed] = cbs.extracts("leefbaarometer", 2022)
    assert "Centrum (nieuw)" in set(changed.frame["area_name"]) and changed.sha256 == sha256_file(copy)
    assert len(_MULTI_YEAR) == 2
