"""The CBS OData client and live reader against the loopback fake CBS server (real shared data).

The fake serves the real 50090NED records (from the xlsx dumps), the real 85231ENG records (from the
TypedDataSet CSV) and the real 85984NED metadata in CBS's JSON shape, in small pages; see
``fake_cbs_server.py`` for what is real and what is constructed.
"""

from __future__ import annotations

import json
import math
import re
import time

import pandas as pd
import pytest

from wijk_assets.lib.sources.catalog import find_source_files, load_catalog
from wijk_assets.lib.sources.base import RAW_DATA_COLUMNS, SourceFormatError
from wijk_assets.lib.sources.odata import (
    CbsODataClient,
    CbsODataError,
    catalog_url_for,
    combine_filters,
    properties_by_stem,
    read_live_table,
)
from wijk_assets_tests.fakes.fake_cbs_server import UNKNOWN, FakeCbsServer, parse_filter

RIVM_2012 = [
    "gezondheid_buurt_2012_18plus.xlsx",
    "gezondheid_buurt_2012_65plus.xlsx",
    "gezondheid_buurt_2012_18-64.xlsx",
]
RIVM_LIVE_FILTER = load_catalog()["rivm_gezondheid"].live_filter
NABIJHEID_CSV = "cbs_nabijheid/85231ENG_proximity_facilities_2021_10_municipalities_typeddataset.csv"
NABIJHEID_PAGE = 200  # 909 records -> 5 pages
NABIJHEID_DATASET = "/85231ENG/TypedDataSet"
PAGE_3 = "$skip=400"  # the third of the five 85231ENG pages


@pytest.fixture(scope="module")
def fake_cbs(shared_data_dir):
    with FakeCbsServer(shared_data_dir, page_size=500, timeout_delay=3.0) as server:
        server.preload("85231ENG")
        yield server


@pytest.fixture
def cbs(fake_cbs):
    """The fake with no faults, an empty request log and the original catalog."""
    fake_cbs.reset()
    yield fake_cbs
    fake_cbs.reset()


def make_client(server: FakeCbsServer, **kwargs) -> CbsODataClient:
    options = {"timeout": 30, "max_retries": 4, "backoff": 0.01}
    options.update(kwargs)
    return CbsODataClient(server.base_url, **options)


# ---------------------------------------------------------------------------------------------------
# 50090NED 2012 through the fake (paged) == the real xlsx dumps
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_rivm_2012(fake_cbs):
    fake_cbs.reset()
    started = time.perf_counter()
    with make_client(fake_cbs, timeout=120) as client:
        extract = read_live_table(client, "50090NED", year=2012, filter=RIVM_LIVE_FILTER)
    seconds = time.perf_counter() - started
    pages = len(fake_cbs.requests_matching("/50090NED/TypedDataSet"))
    return extract, pages, seconds


@pytest.fixture(scope="module")
def xlsx_rivm_2012(shared_data_dir):
    """The same figures through the file reader (or, until it exists, a direct pandas read)."""
    try:
        from wijk_assets.lib.sources.odata_dump import read_odata_xlsx
    except ImportError:  # pragma: no cover - the reader is written in parallel
        read_odata_xlsx = None
    files = {f.path.name: f for f in find_source_files("rivm_gezondheid", shared_data_dir)}
    frames = []
    for name in RIVM_2012:
        if read_odata_xlsx is not None:
            frames.append(read_odata_xlsx(files[name]).frame)
        else:  # pragma: no cover
            from wijk_assets.lib.sources.odata_shape import odata_records_to_long

            wide = pd.read_excel(files[name].path, engine="calamine", dtype=str)
            frames.append(odata_records_to_long(wide, source=name, first_data_row=2, expected_year=2012))
    return pd.concat(frames, ignore_index=True)


def _as_number(values: pd.Series) -> pd.Series:
    """Raw text -> numbers: padding stripped, '.' (suppressed) and NULL -> NaN; anything else must parse."""
    text = values.str.strip()
    return pd.to_numeric(text.where(text != "."), errors="raise").astype("float64")


def _assen_buurten(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["area_code"].str.strip().str.match(r"^BU0106\d{4}$")]


def test_live_50090ned_2012_is_paged_and_complete(live_rivm_2012, fake_cbs):
    extract, pages, _ = live_rivm_2012
    records = 3 * 17341  # three age groups, whole Netherlands
    assert extract.metadata["records"] == records
    assert extract.metadata["pages"] == pages == math.ceil(records / 500) == 105
    assert extract.cbs_table_id == "50090NED"
    assert extract.years() == [2012]
    assert list(extract.frame.columns) == list(RAW_DATA_COLUMNS)
    # source = the first page's full URL, with the period filter combined with the catalog filter
    assert extract.source.startswith(f"{fake_cbs.base_url}/50090NED/TypedDataSet?")
    assert "Perioden%20eq%20'2012JJ00'" in extract.source and "$format=json" in extract.source
    assert extract.metadata["filter"] == combine_filters("Perioden eq '2012JJ00'", RIVM_LIVE_FILTER)
    assert re.fullmatch(r"[0-9a-f]{64}", extract.sha256)
    assert extract.metadata["dimensions"] == ["Leeftijd", "Marges"]
    assert extract.metadata["period_dimension"] == "Perioden"
    assert extract.metadata["geo_dimension"] == "WijkenEnBuurten"
    assert extract.metadata["table_infos"]["Title"].startswith("Gezondheid per wijk en buurt")
    stems = extract.metadata["properties_by_stem"]
    assert stems["ErvarenGezondheidGoedZeerGoed"]["key"] == "ErvarenGezondheidGoedZeerGoed_4"
    assert stems["MoeiteMetRondkomen"]["unit"] == "%"


def test_live_50090ned_2012_equals_the_xlsx_dumps(live_rivm_2012, xlsx_rivm_2012):
    live = live_rivm_2012[0].frame
    xlsx = xlsx_rivm_2012
    # Same raw rows: 3 x 17,341 records x 36 measures (35 indicators + Codering_3).
    assert len(live) == len(xlsx) == 3 * 17341 * 36
    assert set(live["subgroup"]) == set(xlsx["subgroup"]) == {
        "Leeftijd=20300|Marges=MW00000",
        "Leeftijd=80200|Marges=MW00000",
        "Leeftijd=53115|Marges=MW00000",
    }
    assert set(live["measure_key"]) == set(xlsx["measure_key"])
    # Area attributes verbatim, padding included ('BU01060000', 'Buurt     ', gemeente name to 40).
    ids = ["area_code", "region_type", "gemeente_name"]
    assert set(map(tuple, live[ids].drop_duplicates().to_numpy())) == set(
        map(tuple, xlsx[ids].drop_duplicates().to_numpy())
    )

    live_assen, xlsx_assen = _assen_buurten(live), _assen_buurten(xlsx)
    assert live_assen["area_code"].nunique() == 109
    assert len(live_assen) == len(xlsx_assen) == 109 * 3 * 36
    # Non-null values per measure and age group. The feed has null where the dump has '.' (suppressed)
    # or an empty cell (not measured in 2012), so '.' counts as null on the xlsx side.
    live_counts = live_assen.assign(v=live_assen["value_raw"].notna()).groupby(["subgroup", "measure_key"])["v"].sum()
    xlsx_present = xlsx_assen["value_raw"].notna() & (xlsx_assen["value_raw"].str.strip() != ".")
    xlsx_counts = xlsx_assen.assign(v=xlsx_present).groupby(["subgroup", "measure_key"])["v"].sum()
    pd.testing.assert_series_equal(live_counts, xlsx_counts)
    assert (live_counts == 0).groupby(level="subgroup").sum().to_dict() == {
        "Leeftijd=20300|Marges=MW00000": 15,  # not measured in 2012 (empty in the dump)
        "Leeftijd=53115|Marges=MW00000": 12,
        "Leeftijd=80200|Marges=MW00000": 15,
    }
    # And the same numbers: JSON 76.1 -> '76.1' live, '    76.1' in the xlsx.
    keys = ["area_code", "subgroup", "measure_key"]
    both = live_assen.merge(xlsx_assen, on=keys, suffixes=("_live", "_xlsx"), validate="one_to_one")
    numeric = both["measure_key"] != "Codering_3"
    pd.testing.assert_series_equal(
        _as_number(both.loc[numeric, "value_raw_live"]),
        _as_number(both.loc[numeric, "value_raw_xlsx"]),
        check_names=False,
    )
    assert (both.loc[~numeric, "value_raw_live"] == both.loc[~numeric, "value_raw_xlsx"]).all()


# ---------------------------------------------------------------------------------------------------
# Metadata, key stems, catalog
# ---------------------------------------------------------------------------------------------------


def test_metadata_is_paged_and_verbatim(cbs, shared_data_dir, monkeypatch):
    fixtures = shared_data_dir / "cbs_odata_fixtures"
    expected = json.loads((fixtures / "85984NED_DataProperties.json").read_text(encoding="utf-8"))
    infos = json.loads((fixtures / "85984NED_TableInfos.json").read_text(encoding="utf-8"))
    monkeypatch.setattr(cbs, "page_size", 50)
    with make_client(cbs) as client:
        assert client.data_properties("85984NED") == expected  # 172 entries over 4 pages
        assert client.table_infos("85984NED") == infos[0]
        assert client.category_groups("85984NED") == []
    pages = cbs.requests_matching("/85984NED/DataProperties")
    assert len(expected) == 172 and len(pages) == 4
    assert [r.params.get("$skip") for r in pages] == [None, "50", "100", "150"]
    assert all(r.params.get("$format") == "json" and r.status == 200 for r in pages)


def test_properties_by_stem_ignores_the_suffix(shared_data_dir):
    props = json.loads(
        (shared_data_dir / "cbs_odata_fixtures" / "85984NED_DataProperties.json").read_text(encoding="utf-8")
    )
    stems = properties_by_stem(props)
    households = stems["HuishoudensTotaal"]
    assert households["key"] == "HuishoudensTotaal_29"  # KWB 2024
    assert households["title"] == "Huishoudens totaal" and households["unit"] == "aantal"
    assert households["title_path"] == "Bevolking/Particuliere huishoudens/Huishoudens totaal"
    assert stems["AantalInwoners"]["key"] == "AantalInwoners_5"

    # The 2022 table numbers the same concept _28: renumber every topic one down, the stem still finds it.
    renumbered = [
        {**p, "Key": re.sub(r"_(\d+)$", lambda m: f"_{int(m.group(1)) - 1}", p["Key"])} for p in props
    ]
    again = properties_by_stem(renumbered)
    assert again["HuishoudensTotaal"]["key"] == "HuishoudensTotaal_28"
    assert again["HuishoudensTotaal"]["title"] == households["title"]
    assert set(again) == set(stems)

    # A stem used twice is flagged, with the group path to tell the candidates apart.
    nederland = stems["Nederland"]
    assert nederland["ambiguous"] and nederland["key"] is None
    assert nederland["keys"] == ["Nederland_17", "Nederland_20"]
    assert [c["title_path"] for c in nederland["candidates"]] == [
        "Bevolking/Bevolking naar herkomst/Herkomstland/Nederland",
        "Bevolking/Bevolking naar herkomst/Geboren in Nederland/Nederland",
    ]
    assert not any(info["stem"] == "" for info in stems.values())  # TopicGroups (Key '') are left out


def test_catalog_listing_and_new_release(cbs):
    with make_client(cbs) as client:
        assert client.catalog_url == cbs.catalog_url
        tables = {t["Identifier"]: t for t in client.catalog_tables()}
        assert set(tables) == {"85984NED", "50090NED", "85231ENG"}
        kwb = tables["85984NED"]
        assert (kwb["Title"], kwb["ShortTitle"], kwb["Period"], kwb["Modified"]) == (
            "Kerncijfers wijken en buurten 2024",
            "Kerncijfers wijken en buurten 2024",
            "2024",
            "2025-03-27T02:00:00",
        )
        # The catalog's live title patterns find their tables.
        catalog = load_catalog()
        for source, table_id in (("cbs_kwb", "85984NED"), ("rivm_gezondheid", "50090NED")):
            pattern = re.compile(catalog[source].live_title_pattern)
            assert [t for t, e in tables.items() if pattern.search(e["Title"])] == [table_id]

        only = client.catalog_tables(filter="Identifier eq '50090NED' or Identifier eq '85231ENG'")
        assert sorted(t["Identifier"] for t in only) == ["50090NED", "85231ENG"]
        assert client.catalog_tables(filter="substringof('wijken en buurten 2024', Title)")[0]["Identifier"] == "85984NED"

        # A new CBS release: a new table appears, an existing one gets a new Modified.
        cbs.publish_table(
            {"Identifier": "86165NED", "Title": "Kerncijfers wijken en buurten 2025", "Period": "2025",
             "Modified": "2025-11-03T02:00:00"},
            data_from="85984NED",
        )
        cbs.update_modified("85984NED", "2025-12-01T02:00:00")
        tables = {t["Identifier"]: t for t in client.catalog_tables()}
        assert tables["86165NED"]["Period"] == "2025" and tables["86165NED"]["Modified"] == "2025-11-03T02:00:00"
        assert tables["85984NED"]["Modified"] == "2025-12-01T02:00:00"
        assert client.table_infos("85984NED")["Modified"] == "2025-12-01T02:00:00"
        assert client.table_infos("86165NED")["Title"] == "Kerncijfers wijken en buurten 2025"
        assert len(client.data_properties("86165NED")) == 172
    assert len(cbs.requests_matching("/ODataCatalog/Tables")) == 4


def test_catalog_url_is_derived_from_the_base_url():
    assert catalog_url_for("https://opendata.cbs.nl/ODataApi/odata") == "https://opendata.cbs.nl/ODataCatalog"
    assert catalog_url_for("https://opendata.cbs.nl/ODataApi/OData/") == "https://opendata.cbs.nl/ODataCatalog"
    assert catalog_url_for("https://opendata.cbs.nl/ODataFeed/odata") == "https://opendata.cbs.nl/ODataCatalog"
    assert catalog_url_for("https://proxy.example/cbs") is None
    explicit = CbsODataClient("https://proxy.example/cbs", catalog_url="https://proxy.example/catalog/")
    assert explicit.catalog_url == "https://proxy.example/catalog"
    with pytest.raises(CbsODataError, match="catalog_url"):
        CbsODataClient("https://proxy.example/cbs").catalog_tables()
    with pytest.raises(ValueError):
        CbsODataClient("opendata.cbs.nl/ODataApi/odata")


def test_dimensions_select_and_single_year_tables(cbs):
    with make_client(cbs) as client:
        assert [p["Key"] for p in client.dimension("50090NED", "Perioden")] == ["2012JJ00", "2016JJ00", "2020JJ00"]
        rows = client.typed_dataset(
            "85231ENG", filter="DistrictsAndNeighbourhoods eq 'GM0034    '", select=["ID", "MunicipalityName_1"]
        )
        assert rows == [{"ID": 384, "MunicipalityName_1": "Almere" + " " * 34}]
        # A KWB-style table holds one year (TableInfos Period), asking another is an error ...
        with pytest.raises(SourceFormatError, match="2021"):
            read_live_table(client, "85231ENG", year=2020)
        # ... and a year a table with a period dimension does not have gives no records.
        with pytest.raises(SourceFormatError, match="2013"):
            read_live_table(client, "50090NED", year=2013, filter=RIVM_LIVE_FILTER)


# ---------------------------------------------------------------------------------------------------
# 85231ENG (5 pages of 200): the baseline, and faults
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nabijheid_baseline(fake_cbs):
    fake_cbs.reset()
    original, fake_cbs.page_size = fake_cbs.page_size, NABIJHEID_PAGE
    try:
        with make_client(fake_cbs) as client:
            extract = read_live_table(client, "85231ENG", year=2021)
    finally:
        fake_cbs.page_size = original
    return extract


@pytest.fixture
def paged_cbs(cbs, monkeypatch):
    monkeypatch.setattr(cbs, "page_size", NABIJHEID_PAGE)
    return cbs


def _dataset_requests(server: FakeCbsServer):
    return server.requests_matching(NABIJHEID_DATASET)


def test_live_85231eng_equals_the_csv_dump(nabijheid_baseline, shared_data_dir):
    from wijk_assets.lib.sources.odata_dump import read_odata_csv

    [csv_file] = [f for f in find_source_files("cbs_nabijheid", shared_data_dir) if f.relative_path == NABIJHEID_CSV]
    dump = read_odata_csv(csv_file).frame
    live = nabijheid_baseline.frame
    assert nabijheid_baseline.metadata["pages"] == 5 and nabijheid_baseline.metadata["records"] == 909
    assert len(live) == len(dump) == 909 * 112  # 110 numeric topics + Encoding_3 + ChangeInDistrictOrNeighbourhood_4
    keys = ["area_code", "measure_key"]
    both = live.merge(dump, on=keys, suffixes=("_live", "_csv"), validate="one_to_one")
    assert (both["region_type_live"] == both["region_type_csv"]).all()
    assert (both["gemeente_name_live"] == both["gemeente_name_csv"]).all()
    text = both["measure_key"].isin(["Encoding_3", "ChangeInDistrictOrNeighbourhood_4"])
    assert (both.loc[text, "value_raw_live"] == both.loc[text, "value_raw_csv"]).all()
    pd.testing.assert_series_equal(
        _as_number(both.loc[~text, "value_raw_live"]), _as_number(both.loc[~text, "value_raw_csv"]), check_names=False
    )


@pytest.mark.parametrize("kind", ["503", "timeout", "truncate", "badjson", "drop"])
def test_a_failing_page_is_retried_and_the_result_is_complete(paged_cbs, nabijheid_baseline, kind):
    paged_cbs.inject(PAGE_3, kind, times=1)
    with make_client(paged_cbs, timeout=1, max_retries=2) as client:
        extract = read_live_table(client, "85231ENG", year=2021)
    assert extract.sha256 == nabijheid_baseline.sha256
    pd.testing.assert_frame_equal(extract.frame, nabijheid_baseline.frame)
    page_3 = [r for r in _dataset_requests(paged_cbs) if PAGE_3 in r.target]
    assert [r.fault for r in page_3] == [kind, None]
    assert len(_dataset_requests(paged_cbs)) == 6  # 5 pages + 1 retry


def test_first_request_503_then_success(paged_cbs, nabijheid_baseline):
    paged_cbs.inject("/85231ENG/", "503", times=2)  # TableInfos fails twice, then everything works
    with make_client(paged_cbs, timeout=1, max_retries=2) as client:
        extract = read_live_table(client, "85231ENG", year=2021)
    assert extract.sha256 == nabijheid_baseline.sha256
    assert [r.status for r in paged_cbs.requests_matching("/85231ENG/TableInfos")] == [503, 503, 200]


def test_persistent_503_raises_and_returns_nothing(paged_cbs):
    paged_cbs.inject(PAGE_3, "503", times=100)
    with make_client(paged_cbs, timeout=1, max_retries=2) as client:
        with pytest.raises(CbsODataError) as caught:
            read_live_table(client, "85231ENG", year=2021)
        error = caught.value
        assert PAGE_3 in error.url and error.url.startswith(paged_cbs.base_url)
        assert error.url in str(error) and "503" in str(error) and "gave up" in str(error)
        assert error.status == 503 and error.attempts == 3
        # pages 1-2 once, page 3 three times, page 4 never asked for
        skips = [r.params.get("$skip") for r in _dataset_requests(paged_cbs)]
        assert skips == [None, "200", "400", "400", "400"]
        # the plain fetch gives no partial list either
        with pytest.raises(CbsODataError):
            client.typed_dataset("85231ENG")


def test_persistent_timeout_raises(paged_cbs):
    paged_cbs.inject("/85231ENG/TableInfos", "timeout", times=2, delay=2.0)
    with make_client(paged_cbs, timeout=0.5, max_retries=1) as client:
        with pytest.raises(CbsODataError, match=r"TableInfos.*(Timeout|timed out)"):
            client.table_infos("85231ENG")


def test_404_raises_at_once_with_the_server_message(paged_cbs):
    paged_cbs.inject("/85231ENG/TableInfos", "404")
    with make_client(paged_cbs, timeout=1) as client:
        with pytest.raises(CbsODataError) as caught:
            read_live_table(client, "85231ENG", year=2021)
        assert caught.value.status == 404
        assert f"{paged_cbs.base_url}/85231ENG/TableInfos?$format=json" in str(caught.value)
        assert "Not Found" in str(caught.value)
        assert len(paged_cbs.requests_matching("/85231ENG/TableInfos")) == 1  # a 4xx is not retried
        assert _dataset_requests(paged_cbs) == []

        with pytest.raises(CbsODataError, match=r"HTTP 404.*Resource not found for the segment '00000XXX'"):
            client.table_infos("00000XXX")
        # A filter naming a column the table lacks: HTTP 400 with CBS's message.
        with pytest.raises(CbsODataError, match=r"HTTP 400.*No property 'Geslacht'"):
            read_live_table(client, "85231ENG", year=2021, filter="Geslacht eq 'T001038'")


# ---------------------------------------------------------------------------------------------------
# The fake's $filter
# ---------------------------------------------------------------------------------------------------


def test_fake_filter_forms():
    row = {"Perioden": "2012JJ00", "Leeftijd": "20300", "Marges": "MW00000", "WijkenEnBuurten": "BU01060000"}
    for text, expected in [
        ("Perioden eq '2012JJ00'", True),
        ("Leeftijd eq '20300'", True),
        (RIVM_LIVE_FILTER, True),
        (combine_filters("Perioden eq '2016JJ00'", RIVM_LIVE_FILTER), False),
        ("(Leeftijd eq '80200' or Leeftijd eq '53115') and Marges eq 'MW00000'", False),
        ("not (Leeftijd eq '80200')", True),
        ("startswith(WijkenEnBuurten,'BU0106')", True),
    ]:
        predicate, _ = parse_filter(text)
        assert predicate(row) is expected, text
    # Partition pruning: only the constants are known; undecidable parts stay UNKNOWN.
    predicate, fields = parse_filter("Perioden eq '2012JJ00' and WijkenEnBuurten eq 'GM0106    '")
    assert fields == {"Perioden", "WijkenEnBuurten"}
    assert predicate({"Perioden": "2016JJ00"}) is False
    assert predicate({"Perioden": "2012JJ00"}) is UNKNOWN
