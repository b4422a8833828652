"""The whole pipeline on the real data, as the README's main command runs it: raw sources, GE gates,
dbt, models, explanations, published tables and reports, into a temporary DuckDB file.

Then: an auditor traces a number in ``area_drivers`` for an Assen wijk back to the raw row and the
source file's sha256; a corrupted source is stopped at the gate and the tables downstream keep their
previous content.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets.cli import materialize_all
from wijk_assets.responsible.stigma import find_judgemental_labels
from wijk_assets.settings import Settings

pytestmark = pytest.mark.slow

ASSEN_WIJKEN = [f"WK0106{n:02d}" for n in range(9)] + ["WK010699"]  # 00-08 and 99 Buitengebied


def _settings(data_dir: Path, db: Path) -> Settings:
    return Settings(data_dir=data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")


@pytest.fixture(scope="module")
def pipeline(shared_data_dir, tmp_path_factory):
    """Materialise every asset once; tests share the database (read-only) and the instance."""
    root = tmp_path_factory.mktemp("e2e")
    # A data folder of links to the real files, so a test can swap one file without touching ../shared.
    data = root / "data"
    for path in shared_data_dir.rglob("*"):
        if path.is_file():
            target = data / path.relative_to(shared_data_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    db = root / "wijk.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    settings = _settings(data, db)
    report = materialize_all(settings, instance=instance)
    failed = [t for t in report.timings if not t.success]
    assert report.success, f"failed steps: {failed}"
    return {"db": db, "data": data, "instance": instance, "settings": settings, "report": report}


def _con(pipeline):
    return duckdb.connect(str(pipeline["db"]), read_only=True)


def test_feature_table_has_every_year_and_all_of_assen(pipeline):
    con = _con(pipeline)
    years = [r[0] for r in con.execute("SELECT DISTINCT year FROM marts.fct_area_features ORDER BY 1").fetchall()]
    assert years == [2012, 2016, 2019, 2020, 2021, 2023]
    for year in (2012, 2016, 2020):
        wijken = {r[0] for r in con.execute(
            "SELECT area_code FROM marts.fct_area_features WHERE area_level='wijk' AND gemeente_code='GM0106' AND year=?",
            [year]).fetchall()}
        assert wijken == set(ASSEN_WIJKEN)
        buurten = con.execute(
            "SELECT count(*) FROM marts.fct_area_features WHERE area_level='buurt' AND gemeente_code='GM0106' AND year=?",
            [year]).fetchone()[0]
        assert buurten == 109


def test_models_are_validated_and_gate_3_decides_what_is_published(pipeline):
    con = _con(pipeline)
    runs = con.execute(
        "SELECT r.outcome, r.metrics, g.passed FROM ml.model_runs r JOIN ml.model_gate g USING (outcome, model_version) "
        "ORDER BY r.outcome"
    ).fetchall()
    assert [r[0] for r in runs] == sorted(["lbm", "fys", "onv", "soc", "vrz", "won"])
    for outcome, metrics, passed in runs:
        cv = json.loads(metrics)["grouped_cv"]
        assert cv["mean"]["r2"] < 0.01, outcome  # predicting the training mean explains nothing
        if passed:
            assert cv["lightgbm"]["r2"] > cv["ridge"]["r2"], outcome
    passed = {o for o, _, p in runs if p}
    assert "lbm" in passed
    published = {r[0] for r in con.execute("SELECT DISTINCT outcome FROM publish.area_comparison").fetchall()}
    assert published == passed  # a model that does not beat the linear baseline is not published


def test_assen_drivers_read_as_neutral_sentences(pipeline):
    con = _con(pipeline)
    drivers = con.execute(
        "SELECT * FROM ml.area_drivers WHERE outcome='lbm' AND area_code LIKE 'WK0106%'"
    ).df()
    assert set(drivers["area_code"]) == set(ASSEN_WIJKEN)
    assert set(drivers["side"]) == {"up", "down"}
    assert not find_judgemental_labels(drivers[["sentence", "label"]])
    for sentence, shap in zip(drivers["sentence"], drivers["shap_value"]):
        assert ("raises" in sentence) == (shap > 0)
        assert "predicted score by" in sentence


def test_auditor_traces_a_driver_value_to_the_raw_row_and_file_hash(pipeline):
    """area_drivers -> fct_area_feature_values -> raw row -> the bytes of the source file."""
    con = _con(pipeline)
    driver = con.execute(
        """
        SELECT d.area_code, d.feature, d.feature_value, d.feature_year
        FROM ml.area_drivers d JOIN marts.feature_catalog c ON c.feature = d.feature
        WHERE d.outcome = 'lbm' AND d.area_code = 'WK010601' AND c.source = 'rivm_gezondheid'
        ORDER BY d.side, d.rank LIMIT 1
        """
    ).fetchone()
    assert driver is not None, "expected a health-monitor driver for Lariks (WK010601)"
    area, feature, value, year = driver
    # The feature's value as of the driver's feature year: that source's latest release not after it.
    lineage = con.execute(
        "SELECT value, source_file, source_sha256, source_row, measure_key FROM marts.fct_area_feature_values "
        "WHERE area_code = ? AND feature = ? AND year <= ? AND value IS NOT NULL ORDER BY year DESC LIMIT 1",
        [area, feature, year],
    ).fetchone()
    assert lineage is not None
    lineage_value, source_file, sha256, source_row, measure_key = lineage
    assert lineage_value == pytest.approx(value)
    raw_value = con.execute(
        "SELECT value_raw FROM raw.rivm_gezondheid WHERE source_file = ? AND source_row = ? AND measure_key = ? "
        "AND trim(area_code) = ?",
        [source_file, source_row, measure_key, area],
    ).fetchone()[0]
    assert float(raw_value.strip()) == pytest.approx(value)
    on_disk = (pipeline["data"] / source_file).resolve().read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == sha256


def test_register_entry_and_model_card_carry_the_run_figures(pipeline):
    con = _con(pipeline)
    reports = pipeline["db"].parent / "reports"
    entry = json.loads((reports / "algorithm_register_entry.json").read_text(encoding="utf-8"))
    text = json.dumps(entry)
    lbm_r2 = json.loads(
        con.execute("SELECT metrics FROM ml.model_runs WHERE outcome='lbm'").fetchone()[0]
    )["grouped_cv"]["lightgbm"]["r2"]
    assert "50090NED" in text
    rivm_sha = con.execute("SELECT any_value(source_sha256) FROM raw.rivm_gezondheid").fetchone()[0]
    assert rivm_sha in text
    card = (reports / "model_card.md").read_text(encoding="utf-8")
    assert f"{lbm_r2:.3f}" in card or f"{lbm_r2:.2f}" in card
    assert "causal" in card.lower()


def test_published_tables_pass_the_guards_and_audit_trail_lists_runs(pipeline):
    con = _con(pipeline)
    published = con.execute("SELECT * FROM publish.area_comparison").df()
    assert "rank" not in published.columns  # rank ranges only
    assert published["rank_range"].dropna().str.contains("–").all()
    audit = con.execute("SELECT * FROM audit.audit_trail").df()
    assert (audit["asset_key"] == "raw/rivm_gezondheid").sum() == 3  # one per release year
    assert audit["code_version"].notna().all()


def test_corrupted_source_stops_at_the_gate_and_keeps_downstream(pipeline, shared_data_dir):
    """Leefbaarometer scores out of range: gate 1 fails, dbt does not run, marts keep their content."""
    con = _con(pipeline)
    before = con.execute("SELECT count(*), sum(lbm) FROM marts.fct_liveability_outcomes").fetchone()
    con.close()
    link = next((pipeline["data"] / "leefbaarometer").glob("*.csv"))
    original = link.resolve()
    lines = original.read_text(encoding="utf-8").splitlines(keepends=True)
    # Row 2 (the first record, a 2002 score) gets an impossible score of 99.
    fields = lines[1].split(",")
    fields[3] = "99"
    lines[1] = ",".join(fields)
    link.unlink()
    link.write_text("".join(lines), encoding="utf-8")
    try:
        report = materialize_all(
            pipeline["settings"], instance=pipeline["instance"], sources=["leefbaarometer"]
        )
        assert not report.success
        con = _con(pipeline)
        after = con.execute("SELECT count(*), sum(lbm) FROM marts.fct_liveability_outcomes").fetchone()
        assert after == before
    finally:
        link.unlink()
        link.symlink_to(original)
