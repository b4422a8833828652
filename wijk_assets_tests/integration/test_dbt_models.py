"""dbt models end to end on the real data: raw partitions are materialised into a temporary DuckDB file
through Dagster, then ``dbt build`` (models + all dbt tests) runs on it, and the marts are checked against
facts of the source files (Assen, suppression and not-measured cells, WOZ scaling, unmapped keys, target
leakage, Leefbaarometer join coverage)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets_tests.integration.conftest import raw_copy
from wijk_assets.settings import DBT_PROJECT_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

OUTCOMES = {"lbm", "fys", "onv", "soc", "vrz", "won"}
LEEFBAAROMETER_NAMES = OUTCOMES | {"afw"}


def _dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


@pytest.fixture(scope="module")
def built_db(shared_data_dir, raw_stage, tmp_path_factory) -> Path:
    """Raw tables via Dagster, then the whole dbt project (models, seeds, tests) into one tmp DuckDB."""
    work = tmp_path_factory.mktemp("dbt")
    db = raw_copy(raw_stage, work / "wijk.duckdb")  # the session's raw load (conftest), copied

    env = {
        **os.environ,
        "WIJK_DUCKDB_PATH": str(db),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    env.pop("WIJK_SENSITIVE_OPT_IN", None)
    cmd = [
        _dbt_executable(), "build",
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(work / "target"),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"dbt build failed ({seconds:.0f}s):\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    print(f"dbt build: {seconds:.1f}s")
    return db


@pytest.fixture(scope="module")
def con(built_db):
    connection = duckdb.connect(str(built_db), read_only=True)
    yield connection
    connection.close()


def _one(con, sql: str, *params):
    return con.execute(sql, list(params)).fetchone()


def _columns(con, schema: str, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    ]


def test_schemas_are_named_exactly(con):
    schemas = {r[0] for r in con.execute("SELECT DISTINCT table_schema FROM information_schema.tables").fetchall()}
    assert {"raw", "staging", "intermediate", "marts"} <= schemas
    assert not any(s.startswith("main_") for s in schemas)


def test_assen_all_wijken_and_buurten_in_the_feature_table(con):
    wijken = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT area_code FROM marts.fct_area_features "
            "WHERE gemeente_code = 'GM0106' AND area_level = 'wijk' ORDER BY 1"
        ).fetchall()
    ]
    # Assen's ten wijken: 00 centrum ... 08 Kloosterveen, and 99 Buitengebied (the tenth is numbered 99,
    # not 09, in both the 2020 and the 2022 layout)
    assert wijken == [f"WK0106{i:02d}" for i in range(9)] + ["WK010699"]
    n_buurten = _one(
        con,
        "SELECT count(DISTINCT area_code) FROM marts.fct_area_features "
        "WHERE gemeente_code = 'GM0106' AND area_level = 'buurt'",
    )[0]
    assert n_buurten == 109
    # every Assen buurt hangs under one of the ten wijken in dim_area
    orphans = _one(
        con,
        "SELECT count(*) FROM marts.dim_area WHERE area_code LIKE 'BU0106%' "
        "AND wijk_code NOT IN (SELECT area_code FROM marts.dim_area WHERE area_level = 'wijk')",
    )[0]
    assert orphans == 0
    # and it has real health figures for 2020
    value = _one(
        con,
        "SELECT pct_hard_to_make_ends_meet__18plus FROM marts.fct_area_features "
        "WHERE area_code = 'GM0106' AND year = 2020",
    )[0]
    assert value is not None and 0 < value < 100


def test_feature_table_has_every_year_in_the_data(con):
    raw_years = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT release_year FROM raw.rivm_gezondheid UNION SELECT DISTINCT release_year FROM raw.cbs_kwb "
            "UNION SELECT DISTINCT release_year FROM raw.cbs_nabijheid UNION SELECT DISTINCT release_year FROM raw.cbs_ses_woa"
        ).fetchall()
    }
    wide_years = {r[0] for r in con.execute("SELECT DISTINCT year FROM marts.fct_area_features").fetchall()}
    assert wide_years == raw_years == {2012, 2016, 2019, 2020, 2021, 2023, 2024}  # 2024: national KWB JSON
    lbm_years = {r[0] for r in con.execute("SELECT DISTINCT year FROM marts.fct_liveability_outcomes").fetchall()}
    assert lbm_years == {2002, 2008, 2012, 2014, 2016, 2018, 2020, 2022}


def test_suppressed_dot_becomes_null_with_reason(con):
    # a real '.' cell of the 50090NED 2020 18+ file, followed by its file row and key into the fact table
    source_file, source_row, measure_key, value_raw = _one(
        con,
        "SELECT source_file, source_row, measure_key, value_raw FROM raw.rivm_gezondheid "
        "WHERE release_year = 2020 AND subgroup LIKE 'Leeftijd=20300%' AND trim(value_raw) = '.' "
        "AND measure_key = 'MoeiteMetRondkomen_38' ORDER BY source_row LIMIT 1",
    )
    assert value_raw.strip() == "."
    value, reason, feature = _one(
        con,
        "SELECT value, missing_reason, feature FROM marts.fct_area_feature_values "
        "WHERE source_file = ? AND source_row = ? AND measure_key = ?",
        source_file, source_row, measure_key,
    )
    assert feature == "pct_hard_to_make_ends_meet__18plus"
    assert value is None and reason == "suppressed"


def test_empty_not_measured_cell_is_not_measured(con):
    # VoldoetAanBeweegrichtlijn was not surveyed in 2012: empty cells in the file
    raw_non_empty = _one(
        con,
        "SELECT count(value_raw) FROM raw.rivm_gezondheid "
        "WHERE release_year = 2012 AND measure_key LIKE 'VoldoetAanBeweegrichtlijn%'",
    )[0]
    assert raw_non_empty == 0
    reasons = con.execute(
        "SELECT DISTINCT missing_reason, count(value) FROM marts.fct_area_feature_values "
        "WHERE year = 2012 AND concept = 'pct_meets_exercise_guideline' GROUP BY 1"
    ).fetchall()
    assert reasons == [("not_measured", 0)]
    # while 2016 has the figure (so it is not a mapping problem)
    assert _one(
        con,
        "SELECT pct_meets_exercise_guideline__18plus FROM marts.fct_area_features "
        "WHERE area_code = 'GM0106' AND year = 2016",
    )[0] is not None


def test_woz_is_scaled_to_euro(con):
    raw = _one(
        con,
        "SELECT trim(value_raw) FROM raw.cbs_kwb WHERE trim(area_code) = 'GM0344' AND measure_key = 'g_wozbag'",
    )[0]
    woz = _one(
        con, "SELECT avg_woz_value FROM marts.fct_area_features WHERE area_code = 'GM0344' AND year = 2023"
    )[0]
    assert woz == pytest.approx(float(raw) * 1000)
    assert 100_000 < woz < 2_000_000
    unit = _one(con, "SELECT unit FROM marts.feature_catalog WHERE feature = 'avg_woz_value'")[0]
    assert unit == "euro"


def test_counts_become_shares_and_first_release_dots_are_not_published(con):
    share, inhabitants = _one(
        con,
        "SELECT pct_age_0_14, inhabitants FROM marts.fct_area_features WHERE area_code = 'GM0344' AND year = 2023",
    )
    raw_0_14 = float(
        _one(con, "SELECT value_raw FROM raw.cbs_kwb WHERE trim(area_code) = 'GM0344' AND measure_key = 'a_00_14'")[0]
    )
    assert share == pytest.approx(100 * raw_0_14 / inhabitants)
    # income is '.' in every cell of the first kwb-2023 release: not published, not suppressed
    reasons = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT missing_reason FROM marts.fct_area_feature_values "
            "WHERE source = 'cbs_kwb' AND concept = 'avg_income_per_recipient'"
        ).fetchall()
    }
    assert reasons == {"not_published"}


def test_unmapped_measures_are_listed(con):
    rows = con.execute(
        "SELECT source, year, measure_key, n_rows FROM staging.stg_unmapped_measures ORDER BY 1, 2, 3"
    ).fetchall()
    keys = {(s, k) for s, _, k, _ in rows}
    assert ("cbs_kwb", "a_bed_a") in keys  # kwb company counts are not in the concept map
    assert ("cbs_nabijheid", "DistanceToSauna_108") in keys
    assert all(n > 0 for *_, n in rows)
    # mapped and identifier keys are not listed
    assert not {("cbs_kwb", "a_inw"), ("cbs_kwb", "g_wozbag"), ("rivm_gezondheid", "Codering_3")} & keys
    assert not any(s == "rivm_gezondheid" for s, _ in keys)  # all 35 RIVM indicators are mapped


def test_all_35_rivm_indicators_and_both_nabijheid_layouts_map(con):
    n_rivm = _one(
        con,
        "SELECT count(DISTINCT concept) FROM staging.stg_measure_map "
        "WHERE source = 'rivm_gezondheid' AND mapping_status = 'mapped'",
    )[0]
    assert n_rivm == 35
    # the Dutch label header (2023, 2021 transposed) and the 85231ENG key give the same concept
    files = {
        r[0]
        for r in con.execute(
            "SELECT DISTINCT source_file FROM staging.stg_measure_map "
            "WHERE source = 'cbs_nabijheid' AND concept = 'dist_large_supermarket_km'"
        ).fetchall()
    }
    assert len(files) == 3


def test_feature_catalog_documents_every_wide_column(con):
    keys = {"area_code", "area_level", "gemeente_code", "wijk_code", "year"}
    wide = set(_columns(con, "marts", "fct_area_features")) - keys
    catalog = {r[0] for r in con.execute("SELECT feature FROM marts.feature_catalog").fetchall()}
    assert wide and wide == catalog
    assert not wide & LEEFBAAROMETER_NAMES
    sensitive = {r[0] for r in con.execute("SELECT feature FROM marts.feature_catalog WHERE sensitive").fetchall()}
    assert "pct_origin_outside_europe" in sensitive


def test_training_mart_has_no_leefbaarometer_feature(con):
    cols = _columns(con, "marts", "mart_wijk_training")
    present = set(cols) & LEEFBAAROMETER_NAMES
    assert present == OUTCOMES  # afw is never there
    # no feature column carries an outcome name in any form (gm__lbm, bu_sd__fys, ...)
    for col in set(cols) - OUTCOMES:
        parts = col.split("_")
        assert not (set(parts) & LEEFBAAROMETER_NAMES), col
    # sensitive features stay out unless opted in
    assert "pct_origin_outside_europe" not in cols
    n_rows, n_lbm = _one(con, "SELECT count(*), count(DISTINCT (area_code, outcome_year)) FROM marts.mart_wijk_training")
    assert n_rows == n_lbm == _one(con, "SELECT count(*) FROM marts.fct_liveability_outcomes")[0]
    # outcomes are the Leefbaarometer values of that wijk and year
    mismatch = _one(
        con,
        "SELECT count(*) FROM marts.mart_wijk_training m JOIN marts.fct_liveability_outcomes o "
        "ON o.wijk_code = m.area_code AND o.year = m.outcome_year WHERE m.lbm IS DISTINCT FROM o.lbm",
    )[0]
    assert mismatch == 0
    # as-of join: features never come from after the outcome year, nor more than 4 years before it
    bad = _one(
        con,
        "SELECT count(*) FROM marts.mart_wijk_training WHERE feature_year > outcome_year "
        "OR outcome_year - feature_year_min > 4",
    )[0]
    assert bad == 0
    # Assen's wijken get their own, gemeente and buurt-spread features for 2020
    row = _one(
        con,
        "SELECT feature_year, pct_hard_to_make_ends_meet__18plus, gm__pct_hard_to_make_ends_meet__18plus, "
        "bu_sd__pct_hard_to_make_ends_meet__18plus, n_buurten FROM marts.mart_wijk_training "
        "WHERE area_code = 'WK010600' AND outcome_year = 2020",
    )
    assert row[0] == 2020 and all(v is not None for v in row)


def test_leefbaarometer_join_beats_the_raw_quick_join(con):
    # quick join of the raw files: Leefbaarometer wk_code equals a trimmed code of any raw feature table
    raw_total, raw_joined = _one(
        con,
        "WITH codes AS (SELECT DISTINCT trim(area_code) AS c FROM raw.rivm_gezondheid "
        "UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_kwb UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_nabijheid "
        "UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_ses_woa), "
        "l AS (SELECT DISTINCT release_year, trim(area_code) AS c FROM raw.leefbaarometer) "
        "SELECT count(*), count(*) FILTER (WHERE c IN (SELECT c FROM codes)) FROM l",
    )
    raw_fraction = raw_joined / raw_total
    # Since the national KWB 2024 file (current codes of nearly every wijk) the any-year quick join finds
    # almost every code; those 2024 codes can never feed an earlier outcome year, though (as-of rule).
    assert 0.85 < raw_fraction

    report = _one(
        con,
        "SELECT lbm_wijk_years, lbm_join_fraction, raw_quick_join_fraction, lbm_join_fraction_asof "
        "FROM marts.rpt_coverage WHERE source = 'all_feature_sources'",
    )
    assert report[0] == raw_total
    assert report[2] == pytest.approx(raw_fraction, abs=1e-4)
    # The quick join also counts codes reused for another area in a re-divided gemeente (Almere's
    # WK003402); those are deliberately unmatched (issue 12). Beyond them, the harmonisation joins at
    # least every wijk-year the quick join does.
    unproven_joined = _one(
        con,
        "WITH codes AS (SELECT DISTINCT trim(area_code) AS c FROM raw.rivm_gezondheid "
        "UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_kwb UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_nabijheid "
        "UNION SELECT DISTINCT trim(area_code) FROM raw.cbs_ses_woa), "
        "l AS (SELECT DISTINCT release_year, trim(area_code) AS c FROM raw.leefbaarometer) "
        "SELECT count(*) FROM l WHERE c IN (SELECT c FROM codes) "
        "AND c IN (SELECT lbm_wijk_code FROM intermediate.int_area_code_harmonisation "
        "          WHERE unmatched_reason = 'code_reused_area_unproven') "
        "AND c NOT IN (SELECT lbm_wijk_code FROM intermediate.int_area_code_harmonisation WHERE match_rule <> 'unmatched')",
    )[0]
    assert unproven_joined > 0
    raw_fraction = (raw_joined - unproven_joined) / raw_total
    assert report[1] >= raw_fraction

    # the training mart itself: wijk-years with own features, over the outcome years that have any feature
    # year in the 4-year window (2002 and 2008 have none)
    mart_fraction = _one(
        con,
        "SELECT count(feature_year) / count(*) FROM marts.mart_wijk_training "
        "WHERE outcome_year >= (SELECT min(year) FROM marts.fct_area_features)",
    )[0]
    assert mart_fraction == pytest.approx(report[3], abs=1e-3)
    # like with like: the quick join restricted to source years the as-of rule allows (<= the outcome
    # year, at most 4 years older) over the same outcome years; the harmonised join beats it
    asof_total = _one(
        con,
        "WITH codes AS (SELECT DISTINCT release_year AS y, trim(area_code) AS c FROM raw.rivm_gezondheid "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_kwb "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_nabijheid "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_ses_woa), "
        "l AS (SELECT DISTINCT release_year AS y, trim(area_code) AS c FROM raw.leefbaarometer "
        "WHERE release_year >= (SELECT min(year) FROM marts.fct_area_features)) "
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM codes k WHERE k.c = l.c "
        "AND k.y <= l.y AND l.y - k.y <= 4)), "
        # ... of which codes reused for another area without evidence (deliberately unmatched, issue 12)
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM codes k WHERE k.c = l.c AND k.y <= l.y AND l.y - k.y <= 4) "
        "AND l.c IN (SELECT lbm_wijk_code FROM intermediate.int_area_code_harmonisation "
        "            WHERE unmatched_reason = 'code_reused_area_unproven') "
        "AND l.c NOT IN (SELECT lbm_wijk_code FROM intermediate.int_area_code_harmonisation "
        "                WHERE match_rule <> 'unmatched')) FROM l",
    )
    asof_total, asof_joined, asof_unproven = asof_total
    assert 0.75 < asof_joined / asof_total and asof_unproven > 0
    # The harmonised join is stricter than the quick join by design: a code is reused across a boundary
    # change only with evidence (issue 12). Every wijk-year the quick as-of join finds but the harmonisation
    # leaves unmatched lies in a gemeente whose wijk codes were reused without that evidence.
    stray = _one(
        con,
        "WITH codes AS (SELECT DISTINCT release_year AS y, trim(area_code) AS c FROM raw.rivm_gezondheid "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_kwb "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_nabijheid "
        "UNION SELECT DISTINCT release_year, trim(area_code) FROM raw.cbs_ses_woa), "
        "l AS (SELECT DISTINCT release_year AS y, trim(area_code) AS c FROM raw.leefbaarometer "
        "WHERE release_year >= (SELECT min(year) FROM marts.fct_area_features)), "
        "redivided AS (SELECT DISTINCT substr(lbm_wijk_code, 3, 4) AS gm FROM intermediate.int_area_code_harmonisation "
        "              WHERE unmatched_reason = 'code_reused_area_unproven') "
        "SELECT count(*) FROM l WHERE EXISTS (SELECT 1 FROM codes k WHERE k.c = l.c AND k.y <= l.y AND l.y - k.y <= 4) "
        "AND NOT EXISTS (SELECT 1 FROM marts.mart_wijk_training m WHERE m.area_code = l.c AND m.outcome_year = l.y "
        "                AND m.feature_year IS NOT NULL) "
        "AND substr(l.c, 3, 4) NOT IN (SELECT gm FROM redivided)",
    )[0]
    assert stray <= 0.01 * asof_total, stray


def test_harmonisation_reports_every_rule_and_the_unmatched(con):
    rules = dict(
        con.execute(
            "SELECT match_rule, count(DISTINCT lbm_wijk_code) FROM intermediate.int_area_code_harmonisation "
            "WHERE source = 'rivm_gezondheid' GROUP BY 1"
        ).fetchall()
    )
    assert rules["exact"] > 2500
    assert rules["contained_in_sole_unmatched_wijk"] > 0
    assert rules["former_gemeente_name"] > 0
    assert rules["unmatched"] > 0  # Almere's 2022 wijken have no 2020 counterpart: listed, not dropped
    # WK043908 Beemster (Purmerend since 2022) takes the features of former gemeente GM0370 Beemster
    assert _one(
        con,
        "SELECT target_area_code, match_rule FROM intermediate.int_area_code_harmonisation "
        "WHERE source = 'rivm_gezondheid' AND source_year = 2020 AND lbm_wijk_code = 'WK043908'",
    ) == ("GM0370", "former_gemeente_name")
    unmatched_listed = _one(
        con,
        "SELECT unmatched_lbm_wijken FROM marts.rpt_coverage WHERE source = 'rivm_gezondheid' AND year = 2020",
    )[0]
    assert "WK003417" in unmatched_listed
    # every Leefbaarometer wijk is in dim_area with its gemeente
    assert _one(
        con,
        "SELECT count(*) FROM marts.fct_liveability_outcomes o LEFT JOIN marts.dim_area d "
        "ON d.area_code = o.wijk_code WHERE d.gemeente_code IS NULL",
    )[0] == 0


def test_lineage_of_every_number(con):
    nulls = _one(
        con,
        "SELECT count(*) FROM marts.fct_area_feature_values WHERE NOT aggregated_from_buurt AND "
        "(source_file IS NULL OR source_sha256 IS NULL OR source_row IS NULL OR measure_key IS NULL)",
    )[0]
    assert nulls == 0
    # a number traces back to its verbatim raw cell
    value, value_raw = _one(
        con,
        "SELECT f.value, r.value_raw FROM marts.fct_area_feature_values f JOIN raw.rivm_gezondheid r "
        "ON r.source_file = f.source_file AND r.source_row = f.source_row AND r.measure_key = f.measure_key "
        "WHERE f.area_code = 'WK010600' AND f.feature = 'pct_smokers__18plus' AND f.year = 2016",
    )
    assert value == pytest.approx(float(value_raw))


def test_content_data_version_ignores_row_order_and_sees_every_change(con, tmp_path):
    """The marts' data versions hash their content: same rows in another order, same version; one value or
    one column name changed, another version (on a copy of the real outcomes table)."""
    from wijk_assets.defs.dbt.assets import table_content_version
    from wijk_assets.defs.resources import WarehouseResource

    outcomes = con.execute("SELECT * FROM marts.fct_liveability_outcomes").df()
    copy = WarehouseResource(path=str(tmp_path / "copy.duckdb"))
    key = dg.AssetKey(["marts", "fct_liveability_outcomes"])

    def load(frame, sql: str = "SELECT * FROM frame") -> str:
        with copy.connect() as w:
            w.execute("CREATE SCHEMA IF NOT EXISTS marts")
            w.execute(f"CREATE OR REPLACE TABLE marts.fct_liveability_outcomes AS {sql}")
        return table_content_version(key, copy)

    original = load(outcomes)
    assert original.startswith(f"{len(outcomes)}-")
    assert load(outcomes.sample(frac=1.0, random_state=7)) == original
    changed = outcomes.copy()
    changed.loc[changed["lbm"].first_valid_index(), "lbm"] += 0.001
    assert load(changed) != original
    assert load(outcomes, "SELECT * RENAME (lbm AS lbm_score) FROM frame") != original
    assert load(outcomes, "SELECT * FROM frame LIMIT 100") != original
