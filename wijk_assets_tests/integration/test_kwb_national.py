"""National context (issue 15): the real KWB 2024 JSON (85984NED values) and the 2024 wijk boundaries as
raw sources, mapped by concept; gate 1 incl. the wijken-add-up-to-the-gemeente rule; the live 85984NED
path through the loopback fake CBS server landing Assen's inhabitants in marts.fct_area_features.

Real data from ../shared/data; damaged inputs are generated inside the tests from the real files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from wijk_assets.lib.sources.catalog import find_source_files
from wijk_assets.lib.quality.ge_runner import validate_frame
from wijk_assets.runner.materialize import materialize_all
from wijk_assets.lib.sources.concepts import ConceptResolver, load_concept_map
from wijk_assets.defs.resources import raw_parts
from wijk_assets.settings import DBT_PROJECT_DIR, REPO_ROOT, Settings
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import RAW_COLUMNS, SourceFormatError, key_stem, odata_key_pattern
from wijk_assets.lib.warehouse import ensure_table
from wijk_assets_tests.fakes.fake_cbs_server import FakeCbsServer

KWB_JSON = "cbs_kwb_85984NED_2024_wijk/kwb_2024_gemeente_wijk_8vars.json"
WIJKGRENZEN = "cbs_wijkgrenzen_2024/wijken_2024_wgs84_simplified.geojson"
DATA_PROPERTIES = "cbs_odata_fixtures/85984NED_DataProperties.json"
ASSEN_WIJKEN = [f"WK0106{i:02d}" for i in range(9)] + ["WK010699"]


def _file(shared_data_dir: Path, source: str, relative: str):
    return next(f for f in find_source_files(source, shared_data_dir) if f.relative_path == relative)


def _as_raw_table(extract) -> pd.DataFrame:
    frame, constants = raw_parts([extract])[0]
    frame = frame.copy()
    for name, value in constants.items():
        frame[name] = value
    return frame


@pytest.fixture(scope="module")
def kwb_json_extract(shared_data_dir):
    return read_source_file(_file(shared_data_dir, "cbs_kwb", KWB_JSON))


@pytest.fixture(scope="module")
def geojson_extract(shared_data_dir):
    return read_source_file(_file(shared_data_dir, "cbs_wijkgrenzen", WIJKGRENZEN))


# ---------------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------------


def test_kwb_json_lands_long_with_the_real_odata_keys(shared_data_dir, kwb_json_extract):
    extract = kwb_json_extract
    frame = extract.frame
    assert extract.cbs_table_id == "85984NED"  # from the folder name, catalog `cbs_table_id: {from: path}`
    assert extract.years() == [2024]
    assert len(frame) == 3735 * 8
    assert extract.metadata["levels"] == {"GM": 342, "WK": 3393}
    assert set(frame["measure_key"]) == {
        "AantalInwoners_5", "Mannen_6", "Vrouwen_7", "Bevolkingsdichtheid_34", "Woningvoorraad_35",
        "OppervlakteTotaal_122", "OppervlakteLand_123", "OppervlakteWater_124",
    }
    raw = json.loads((shared_data_dir / KWB_JSON).read_text(encoding="utf-8"))
    assen = frame[(frame["area_code"] == "GM0106") & (frame["measure_key"] == "AantalInwoners_5")]
    assert assen["value_raw"].tolist() == ["69701"] == [str(raw["GM0106"]["AantalInwoners_5"])]
    # CBS nulls stay NULL (37 densities, 3 housing stocks per PROVENANCE.md)
    nulls = frame[frame["value_raw"].isna()]["measure_key"].value_counts().to_dict()
    assert nulls == {"Bevolkingsdichtheid_34": 37, "Woningvoorraad_35": 3}
    # source_row is the region's position in the file
    position = list(raw).index("WK010600") + 1
    assert set(frame.loc[frame["area_code"] == "WK010600", "source_row"]) == {position}


def test_geojson_lands_geometry_and_official_names(geojson_extract):
    frame = geojson_extract.frame
    assert geojson_extract.years() == [2024]
    geometry = frame[frame["measure_key"] == "geometry"]
    assert len(geometry) == 3475 and geometry["area_code"].is_unique
    assert geojson_extract.metadata["geometry_types"] == {"MultiPolygon": 214, "Polygon": 3261}
    assen = geometry[geometry["area_code"].str.startswith("WK0106")].set_index("area_code")
    assert sorted(assen.index) == ASSEN_WIJKEN
    assert assen.loc["WK010608", "area_name"] == "Kloosterveen"
    assert set(assen["gemeente_name"]) == {"Assen"}
    first = json.loads(assen.loc["WK010600", "value_raw"])
    assert first["type"] in ("Polygon", "MultiPolygon") and first["coordinates"]
    # attributes in the long layout: absent keys stay absent (CBS suppression), no invented rows
    per_area = frame[frame["measure_key"] == "aantal_inwoners"]
    assert 3299 <= len(per_area) < 3475


def test_kwb_json_reader_names_the_bad_region(shared_data_dir, tmp_path):
    raw = json.loads((shared_data_dir / KWB_JSON).read_text(encoding="utf-8"))
    raw["WK010600"]["AantalInwoners_5"] = {"value": 2840}  # damaged copy: an object where a number belongs
    folder = tmp_path / "cbs_kwb_85984NED_2024_wijk"
    folder.mkdir()
    (folder / "kwb_2024_gemeente_wijk_8vars.json").write_text(json.dumps(raw), encoding="utf-8")
    source_file = _file(tmp_path, "cbs_kwb", KWB_JSON)
    with pytest.raises(SourceFormatError, match=r"row \d+, column 'AantalInwoners_5'.*region 'WK010600'"):
        read_source_file(source_file)


# ---------------------------------------------------------------------------------------------------
# one stem rule, one concept map for the xlsx short names and the OData keys
# ---------------------------------------------------------------------------------------------------


def test_one_stem_rule_in_python_and_sql(shared_data_dir):
    properties = json.loads((shared_data_dir / DATA_PROPERTIES).read_text(encoding="utf-8"))
    odata_keys = [p["Key"] for p in properties if p.get("Key") and p.get("Type") == "Topic"]
    xlsx_keys = load_concept_map().query("source == 'cbs_kwb'")["measure_key_stem"].tolist()
    keys = odata_keys + xlsx_keys + ["a_00_14", "gwb_code_8", "Gezondheid en welzijn/Afstand tot apotheek (km)"]
    python = [key_stem(k) for k in keys]
    pattern = odata_key_pattern().pattern
    con = duckdb.connect()
    sql = con.execute(
        "SELECT CASE WHEN regexp_full_match(k, $p) THEN regexp_extract(k, $p, 1) ELSE k END FROM unnest($keys) t(k)",
        {"p": pattern, "keys": keys},
    ).fetchall()
    # the macro is the same expression over the same var (dbt_project.yml): compare it textually, too
    macro = (DBT_PROJECT_DIR / "macros" / "cleaning.sql").read_text(encoding="utf-8")
    assert "var(\"odata_key_pattern\")" in macro
    assert python == [r[0] for r in sql]
    assert key_stem("k_0Tot15Jaar_8") == "k_0Tot15Jaar"
    assert key_stem("k_40PersonenMetLaagsteInkomen_84") == "k_40PersonenMetLaagsteInkomen"
    assert key_stem("AantalInwoners_5") == "AantalInwoners"
    assert key_stem("a_00_14") == "a_00_14" and key_stem("gwb_code_8") == "gwb_code_8"


def test_concept_map_maps_kwb_by_concept_for_xlsx_and_odata(shared_data_dir):
    properties = json.loads((shared_data_dir / DATA_PROPERTIES).read_text(encoding="utf-8"))
    topics = [p["Key"] for p in properties if p.get("Key") and p.get("Type") == "Topic"]
    resolver = ConceptResolver("cbs_kwb")
    pairs = {
        "a_inw": "AantalInwoners_5", "a_man": "Mannen_6", "a_vrouw": "Vrouwen_7", "a_00_14": "k_0Tot15Jaar_8",
        "a_65_oo": "k_65JaarOfOuder_12", "a_hh": "HuishoudensTotaal_29", "bev_dich": "Bevolkingsdichtheid_34",
        "a_woning": "Woningvoorraad_35", "g_wozbag": "GemiddeldeWOZWaardeVanWoningen_39",
        "p_koopw": "Koopwoningen_47", "g_ink_pi": "GemiddeldInkomenPerInwoner_83",
        "p_ink_li": "k_40PersonenMetLaagsteInkomen_84", "a_opp_ha": "OppervlakteTotaal_122",
        "ste_mvs": "MateVanStedelijkheid_127",
    }
    for short, odata in pairs.items():
        assert odata in topics
        assert resolver.concept(short, 2023) == resolver.concept(odata, 2024) is not None, (short, odata)
    # a future year's renumbered key maps by stem
    assert resolver.concept("HuishoudensTotaal_31", 2026) == "households"
    # every OData stem in the concept map exists, unambiguously, in the real 85984NED DataProperties
    stems: dict[str, list[str]] = {}
    for key in topics:
        stems.setdefault(key_stem(key), []).append(key)
    rows = load_concept_map().query("source == 'cbs_kwb'")
    odata_rows = [s for s in rows["measure_key_stem"] if s[:1].isupper() or s.startswith("k_")]
    assert len(odata_rows) >= 60
    for stem in odata_rows:
        if stem in topics:  # full keys (Nederland_17) where the stem is shared
            continue
        assert stems.get(stem) and len(stems[stem]) == 1, stem
    # all topics of the real JSON are mapped
    assert all(resolver.concept(k, 2024) for k in ("AantalInwoners_5", "Mannen_6", "Vrouwen_7",
               "Bevolkingsdichtheid_34", "Woningvoorraad_35", "OppervlakteTotaal_122",
               "OppervlakteLand_123", "OppervlakteWater_124"))


# ---------------------------------------------------------------------------------------------------
# gate 1
# ---------------------------------------------------------------------------------------------------


def test_gates_pass_on_the_real_files(kwb_json_extract, geojson_extract, shared_data_dir):
    result = validate_frame(_as_raw_table(kwb_json_extract), "raw_cbs_kwb")
    assert result.success, result.summary()
    xlsx = read_source_file(find_source_files("cbs_kwb", shared_data_dir)[0])
    assert xlsx.frame["measure_key"].eq("a_inw").any()
    result = validate_frame(_as_raw_table(xlsx), "raw_cbs_kwb")
    assert result.success, result.summary()
    result = validate_frame(_as_raw_table(geojson_extract), "raw_cbs_wijkgrenzen")
    assert result.success, result.summary()


def test_gate_requires_concepts_not_keys(kwb_json_extract):
    frame = _as_raw_table(kwb_json_extract)
    renamed = frame.copy()
    # CBS renumbers a key: still the same concept, the gate passes
    renamed["measure_key"] = renamed["measure_key"].replace({"AantalInwoners_5": "AantalInwoners_7"})
    assert validate_frame(renamed, "raw_cbs_kwb").success
    # CBS renames a topic to something the concept map does not know: blocked, concept named
    dropped = frame.copy()
    dropped["measure_key"] = dropped["measure_key"].replace({"AantalInwoners_5": "InwonersTotaal_5"})
    result = validate_frame(dropped, "raw_cbs_kwb")
    assert not result.success
    failed = [r for r in result.failures if r["column"] == "measure_concept"]
    assert failed and "inhabitants" in failed[0]["missing"]


def test_gate_blocks_a_file_whose_wijken_do_not_add_up(shared_data_dir, tmp_path):
    """A damaged copy of the real JSON (one Assen wijk 1,000 inhabitants too many) goes through the raw
    asset and gate 1 in Dagster: gate 1 refuses it before it goes live (nothing materialised, rows in
    quarantine), and the failure names GM0106 and what its wijken add up to."""
    from wijk_assets.definitions import build_definitions
    from wijk_assets.keys import raw_asset_key
    from wijk_assets.runner.materialize import materialize_keys, register_partitions

    raw = json.loads((shared_data_dir / KWB_JSON).read_text(encoding="utf-8"))
    raw["WK010605"]["AantalInwoners_5"] += 1000
    folder = tmp_path / "data" / "cbs_kwb_85984NED_2024_wijk"
    folder.mkdir(parents=True)
    (folder / "kwb_2024_gemeente_wijk_8vars.json").write_text(json.dumps(raw), encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", duckdb_path=tmp_path / "w.duckdb", cbs_base_url=None,
                        gemeente="GM0106")
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(settings)
    assert register_partitions(instance, defs.resources["cbs"], ["cbs_kwb"]) == {"cbs_kwb": ["2024"]}
    result = materialize_keys(defs, instance, [raw_asset_key("cbs_kwb")], "2024", trigger="test")
    assert not result.success
    assert instance.get_latest_materialization_event(raw_asset_key("cbs_kwb")) is None  # never went live
    failure = result.get_step_failure_events()[0].event_specific_data.user_failure_data
    details = failure.metadata["failures"].value
    sums = [f for f in details if f["expectation"] == "sum_of_parts_matches_whole"
            and f["column"].startswith("value_raw[concepts inhabitants, wijk->gemeente]")]
    assert len(sums) == 1, details
    rows = sums[0]["sample_rows"]
    assert [r["area_code"] for r in rows] == ["GM0106"]
    assert rows[0]["parts_sum"] == 69700 + 1000 and rows[0]["parts_n"] == 10
    assert rows[0]["source_file"] == KWB_JSON
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        quarantined = con.execute(
            "SELECT count(*) FROM quarantine.cbs_kwb WHERE run_id = ?", [result.run_id]
        ).fetchone()[0]
    assert quarantined > 0


def test_geojson_gate_blocks_shifted_gemeente_codes(geojson_extract):
    frame = _as_raw_table(geojson_extract)
    frame = frame.astype({"value_raw": object})
    hit = (frame["area_code"] == "WK010600") & (frame["measure_key"] == "gemeentecode")
    frame.loc[hit, "value_raw"] = "GM0109"
    result = validate_frame(frame, "raw_cbs_wijkgrenzen")
    assert not result.success
    assert {r["column"] for r in result.failures} == {"gemeente_code,value_clean"}


# ---------------------------------------------------------------------------------------------------
# the live path: 85984NED from the fake CBS server -> raw -> gate 1 -> dbt -> fct_area_features
# ---------------------------------------------------------------------------------------------------


def _dbt(args: list[str], db: Path, work: Path) -> subprocess.CompletedProcess:
    dbt = Path(sys.executable).with_name("dbt")
    env = {**os.environ, "WIJK_DUCKDB_PATH": str(db), "DBT_LOG_PATH": str(work / "logs"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("WIJK_SENSITIVE_OPT_IN", None)
    cmd = [str(dbt) if dbt.exists() else "dbt", *args, "--project-dir", str(DBT_PROJECT_DIR),
           "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(work / "target")]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def live_db(shared_data_dir, tmp_path_factory):
    """raw.cbs_kwb 2024 read LIVE from the fake CBS server (85984NED: real metadata, real 2024 values),
    raw.cbs_wijkgrenzen from the data folder (not in the CBS catalog), the other raw tables empty; then
    dbt builds the feature table."""
    work = tmp_path_factory.mktemp("live")
    db = work / "wijk.duckdb"
    with FakeCbsServer(shared_data_dir, page_size=1000) as server:
        settings = Settings(data_dir=shared_data_dir, duckdb_path=db, cbs_base_url=server.base_url, gemeente="GM0106")
        report = materialize_all(settings, instance=dg.DagsterInstance.ephemeral(),
                                 sources=["cbs_kwb", "cbs_wijkgrenzen"], downstream=False, log=lambda *_: None)
        requests = [r.target for r in server.requests_matching("/85984NED/TypedDataSet")]
    assert report.success, [t for t in report.timings if not t.success]
    assert [t.partition for t in report.timings if t.label == "raw/cbs_kwb"] == ["2024"]
    con = duckdb.connect(str(db))
    from wijk_assets.lib.sources.catalog import source_names

    for source in source_names():
        ensure_table(con, f"raw.{source}", RAW_COLUMNS)
    con.close()
    for args in (["seed"], ["run", "--select", "+fct_area_features", "+dim_area", "+int_wijk_neighbours"]):
        proc = _dbt(args, db, work)
        assert proc.returncode == 0, proc.stdout[-4000:]
    return db, requests


def test_live_85984NED_lands_assen_inhabitants_in_the_feature_table(live_db, shared_data_dir, kwb_json_extract):
    db, requests = live_db
    assert len(requests) == 4  # 3,735 records in pages of 1,000, following odata.nextLink
    raw = json.loads((shared_data_dir / KWB_JSON).read_text(encoding="utf-8"))
    con = duckdb.connect(str(db), read_only=True)
    # raw rows: padded codes verbatim, the feed URL and the real table id as provenance
    sample = con.execute(
        "SELECT area_code, region_type, cbs_table_id, source_file FROM raw.cbs_kwb "
        "WHERE trim(area_code) = 'WK010600' AND measure_key = 'AantalInwoners_5'"
    ).fetchone()
    assert sample[0] == "WK010600  " and sample[1] == "Wijk      " and sample[2] == "85984NED"
    assert sample[3].startswith("http://127.0.0.1:") and "/85984NED/TypedDataSet" in sample[3]
    # the live raw rows carry exactly the JSON file's keys and values (one mapping serves both)
    live = con.execute(
        "SELECT trim(area_code) AS code, measure_key, value_raw FROM raw.cbs_kwb WHERE release_year = 2024 "
        "AND measure_key NOT IN ('Gemeentenaam_1', 'Codering_3')"
    ).df()
    offline = kwb_json_extract.frame[["area_code", "measure_key", "value_raw"]]
    merged = live.merge(offline, left_on=["code", "measure_key"], right_on=["area_code", "measure_key"],
                        how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["value_raw_x"].fillna("NULL") == merged["value_raw_y"].fillna("NULL")).all()
    # nothing of 85984NED is unmapped except the region code attribute
    unmapped = con.execute(
        "SELECT DISTINCT measure_key FROM staging.stg_measure_map WHERE source = 'cbs_kwb' "
        "AND mapping_status = 'no_concept'"
    ).fetchall()
    assert unmapped == []
    # inhabitants for every Assen wijk, equal to CBS's figures
    rows = dict(con.execute(
        "SELECT area_code, inhabitants FROM marts.fct_area_features WHERE year = 2024 AND gemeente_code = 'GM0106' "
        "AND area_level = 'wijk' ORDER BY 1"
    ).fetchall())
    assert sorted(rows) == ASSEN_WIJKEN
    assert rows == {code: float(raw[code]["AantalInwoners_5"]) for code in ASSEN_WIJKEN}
    share = con.execute(
        "SELECT pct_men FROM marts.fct_area_features WHERE year = 2024 AND area_code = 'GM0106'"
    ).fetchone()[0]
    assert share == pytest.approx(100 * raw["GM0106"]["Mannen_6"] / raw["GM0106"]["AantalInwoners_5"])


def test_dim_area_has_the_official_2024_names(live_db, geojson_extract):
    db, _ = live_db
    con = duckdb.connect(str(db), read_only=True)
    names = geojson_extract.frame.query("measure_key == 'geometry'").set_index("area_code")
    dim = con.execute(
        "SELECT area_code, area_name, gemeente_name, official_name_year FROM marts.dim_area WHERE area_level = 'wijk'"
    ).df().set_index("area_code")
    wijken = dim.index.intersection(names.index)
    assert len(wijken) == 3393  # every wijk KWB 2024 reports
    assert (dim.loc[wijken, "area_name"] == names.loc[wijken, "area_name"]).all()
    assert (dim.loc[wijken, "official_name_year"] == 2024).all()
    gemeenten = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE official_name_year = 2024 AND area_name IS NOT NULL) "
        "FROM marts.dim_area WHERE area_level = 'gemeente'"
    ).fetchone()
    assert gemeenten == (342, 342)
    assert con.execute("SELECT area_name FROM marts.dim_area WHERE area_code = 'GM0106'").fetchone()[0] == "Assen"
    assert con.execute("SELECT area_name FROM marts.dim_area WHERE area_code = 'WK010608'").fetchone()[0] == "Kloosterveen"


def test_neighbours_from_the_2024_boundaries(live_db):
    db, _ = live_db
    con = duckdb.connect(str(db), read_only=True)
    pairs = con.execute(
        "SELECT area_code, list(neighbour_code ORDER BY neighbour_code) FROM intermediate.int_wijk_neighbours "
        "WHERE area_code IN ('WK010600', 'WK010608') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    # Assen Centrum borders Lariks, Noorderpark, Assen-Oost, Assen-West and Marsdijk; Kloosterveen lies
    # in the north-west, against Pittelo, Assen-West, the Buitengebied and two wijken of Tynaarlo/Midden-Drenthe
    assert pairs[0] == ("WK010600", ["WK010601", "WK010602", "WK010603", "WK010605", "WK010607"])
    assert {"WK010604", "WK010605", "WK010699"} <= set(pairs[1][1])
    assert "WK010600" not in pairs[1][1]
    symmetric = con.execute(
        "SELECT count(*) FROM intermediate.int_wijk_neighbours a LEFT JOIN intermediate.int_wijk_neighbours b "
        "ON a.area_code = b.neighbour_code AND a.neighbour_code = b.area_code AND a.year = b.year "
        "WHERE b.area_code IS NULL"
    ).fetchone()[0]
    assert symmetric == 0
    isolated = con.execute(
        "SELECT count(*) FROM intermediate.int_wijk_geometry g WHERE area_code NOT IN "
        "(SELECT area_code FROM intermediate.int_wijk_neighbours)"
    ).fetchone()[0]
    assert isolated == 0
