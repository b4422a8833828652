"""The whole pipeline on the real data, as the README's main command runs it: raw sources, GE gates,
dbt, models, explanations, published tables and reports, into a temporary DuckDB file.

Then: an auditor traces a number in ``area_drivers`` for an Assen wijk back to the raw row and the
source file's sha256; a corrupted source is stopped at the gate and the tables downstream keep their
previous content.

The first load runs without the RIVM 2020 health-monitor files. They are then dropped into the data
folder, as a data engineer would when the new release comes out, and the release sensor and the
assets' automation conditions take it from there (no code change, no hand-started run): the tests
check the new year reached the feature table and the models through every gate, once.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets.runner.materialize import materialize_all
from wijk_assets.definitions import build_definitions
from wijk_assets.runner.refresh import apply_sensor_result, follow_automation, refresh
from wijk_assets.lib.responsible.stigma import find_judgemental_labels
from wijk_assets.settings import Settings

# The module fixture loads everything, then the new release: longer than the default per-test timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ASSEN_WIJKEN = [f"WK0106{n:02d}" for n in range(9)] + ["WK010699"]  # 00-08 and 99 Buitengebied


def _settings(data_dir: Path, db: Path) -> Settings:
    return Settings(data_dir=data_dir, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")


# The "new release" of this scenario: held back from the first load, dropped in afterwards.
NEW_RELEASE = ("rivm_gezondheid_50090NED/gezondheid_buurt_2020_18plus.xlsx",
               "rivm_gezondheid_50090NED/gezondheid_buurt_2020_65plus.xlsx")


def _tick(sensor, instance, cursor, cbs) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"cbs": cbs}) as context:
        return sensor(context)


def _data_versions(instance, keys) -> dict[str, str | None]:
    out = {}
    for key in keys:
        event = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
        out[key] = event.asset_materialization.tags.get("dagster/data_version") if event else None
    return out


VERSIONED = ["marts/fct_area_features", "marts/mart_wijk_training", "marts/fct_liveability_outcomes",
             "models/liveability_model", "explanations/area_drivers"]


@pytest.fixture(scope="module")
def pipeline(shared_data_dir, tmp_path_factory):
    """Materialise every asset (without RIVM 2020), then let the sensors bring in RIVM 2020.

    Tests share the database (read-only) and the instance.
    """
    root = tmp_path_factory.mktemp("e2e")
    # A data folder of links to the real files, so a test can swap one file without touching ../shared.
    data = root / "data"
    held_back = []
    for path in shared_data_dir.rglob("*"):
        if path.is_file():
            relative = path.relative_to(shared_data_dir).as_posix()
            target = data / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative in NEW_RELEASE:
                held_back.append((target, path))
            else:
                target.symlink_to(path)
    assert len(held_back) == len(NEW_RELEASE)
    db = root / "wijk.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    settings = _settings(data, db)
    report = materialize_all(settings, instance=instance)
    failed = [t for t in report.timings if not t.success]
    assert report.success, f"failed steps: {failed}"
    with duckdb.connect(str(db), read_only=True) as con:
        before = {
            "feature_years": [r[0] for r in con.execute(
                "SELECT DISTINCT year FROM marts.fct_area_features ORDER BY 1").fetchall()],
            "model_versions": dict(con.execute("SELECT outcome, model_version FROM ml.model_runs").fetchall()),
            "training_rows": con.execute("SELECT count(*) FROM marts.mart_wijk_training").fetchone()[0],
        }
    before["data_versions"] = _data_versions(instance, VERSIONED)

    # From here on the daemon's work: the automation sensor's first evaluation (its baseline), the
    # release sensor's first tick over the loaded warehouse, then the new files arrive.
    defs = build_definitions(settings)
    baseline = follow_automation(defs, instance)
    sensor = defs.get_sensor_def("release_sensor")
    cbs = defs.resources["cbs"]
    quiet = _tick(sensor, instance, None, cbs)
    for target, path in held_back:
        target.symlink_to(path)
    release = _tick(sensor, instance, quiet.cursor, cbs)
    sensor_runs = apply_sensor_result(defs, instance, release, trigger="release_sensor")
    followed = follow_automation(defs, instance, cursor=baseline.automation_cursor)
    return {
        "db": db, "data": data, "instance": instance, "settings": settings, "report": report, "defs": defs,
        "before": before, "baseline": baseline, "quiet": quiet, "release": release,
        "sensor_runs": sensor_runs, "followed": followed,
    }


def _con(pipeline):
    return duckdb.connect(str(pipeline["db"]), read_only=True)


def test_a_new_release_flows_from_the_sensor_through_the_gates_to_features_and_models(pipeline):
    """No code change and no hand-started run: drop the files in, the sensors do the rest, once."""
    before = pipeline["before"]
    assert 2020 not in before["feature_years"]
    assert pipeline["baseline"].runs == []  # after a full load nothing is out of date
    assert not pipeline["quiet"].run_requests and not pipeline["quiet"].dynamic_partitions_requests

    release = pipeline["release"]
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in release.dynamic_partitions_requests] == [
        ("rivm_gezondheid_release_year", ["2020"])]
    assert [(r.asset_selection, r.partition_key, r.tags["wijk_assets/reason"]) for r in release.run_requests] == [
        ([dg.AssetKey(["raw", "rivm_gezondheid"])], "2020", "new_year")]
    cursor = json.loads(release.cursor)
    assert set(cursor["sources"]["rivm_gezondheid"]) >= set(NEW_RELEASE)
    assert "2020" in pipeline["instance"].get_dynamic_partitions("rivm_gezondheid_release_year")
    assert [r.success for r in pipeline["sensor_runs"]] == [True]

    followed = pipeline["followed"]
    assert followed.success, [(r.asset_keys, r.partition_key, r.failed_checks) for r in followed.runs if not r.success]
    done = followed.materialised()
    # Everything that depends on the health monitor, and nothing twice.
    for key in ("staging/stg_rivm_gezondheid", "marts/fct_area_features", "marts/mart_wijk_training",
                "explanations/correlations", "monitoring/release_changes", "publish/area_explanations",
                "reports/algorithm_register_entry", "reports/model_card", "reports/audit_trail"):
        assert done.get(key) == [None], key
    assert sorted(done["models/liveability_model"]) == sorted(["lbm", "fys", "onv", "soc", "vrz", "won"])
    assert all(len(partitions) == len(set(partitions)) for partitions in done.values()), {k: v for k, v in done.items() if len(v) != len(set(v))}
    # Only what lies downstream of the health monitor in the asset graph; not the survey branch or seeds.
    graph = pipeline["defs"].resolve_asset_graph()
    downstream = dg.AssetSelection.assets(dg.AssetKey(["raw", "rivm_gezondheid"])).downstream().resolve(graph)
    assert set(done) <= {k.to_user_string() for k in downstream} - {"raw/rivm_gezondheid"}
    assert "marts/fct_survey_indicators" not in done and "staging/concept_map" not in done
    assert followed.ticks <= 8  # it settled: the last evaluation requested nothing

    # The gates ran on the new data in those runs: raw (gate 1), feature table (gate 2), models (gate 3).
    instance = pipeline["instance"]
    run_ids = {r.run_id for r in pipeline["sensor_runs"] + followed.runs}
    evaluated = {
        (e.asset_key.to_user_string(), e.check_name)
        for run_id in run_ids
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        for e in [record.dagster_event.event_specific_data]
    }
    assert ("raw/rivm_gezondheid", "ge_gate_rivm_gezondheid") in evaluated
    assert ("marts/fct_area_features", "ge_gate_fct_area_features") in evaluated
    # gate 3 is an asset: its verdict was re-materialised for every retrained model in those runs
    assert sorted(done["models/model_gate_verdict"]) == sorted(["lbm", "fys", "onv", "soc", "vrz", "won"])

    con = _con(pipeline)
    years = [r[0] for r in con.execute("SELECT DISTINCT year FROM marts.fct_area_features ORDER BY 1").fetchall()]
    assert 2020 in years
    assert con.execute(
        "SELECT count(*) FROM marts.fct_area_feature_values WHERE year = 2020 AND source_file LIKE '%2020_18plus%'"
    ).fetchone()[0] > 0
    after = dict(con.execute("SELECT outcome, model_version FROM ml.model_runs").fetchall())
    assert all(after[o] != before["model_versions"][o] for o in after)  # retrained on the new features

    # Data versions changed exactly where the inputs did.
    versions = _data_versions(instance, VERSIONED)
    for key in ("marts/fct_area_features", "marts/mart_wijk_training", "models/liveability_model"):
        assert versions[key] != before["data_versions"][key], key
    # The outcomes table is rebuilt (its staging reads the shared cell table that now holds RIVM 2020),
    # but its content, and so its data version, is what it was.
    assert versions["marts/fct_liveability_outcomes"] == before["data_versions"]["marts/fct_liveability_outcomes"]


def test_published_intervals_cover_90_to_97_percent_in_every_group_of_every_published_outcome(pipeline):
    """Issue 12 for all outcomes, not only lbm: every outcome gate 3 published has intervals whose
    empirical coverage on all out-of-fold rows is 90-97 % in every match-quality group and every
    calibration group (the rough matches of the dimensions are 132 wijk-years from 9 gemeenten)."""
    con = _con(pipeline)
    published = [r[0] for r in con.execute("SELECT outcome FROM ml.model_gate WHERE passed ORDER BY 1").fetchall()]
    assert published, "gate 3 published no outcome"
    coverage = con.execute("SELECT outcome, grouping, \"group\", n, coverage FROM ml.interval_coverage "
                           "WHERE scope = 'all_years' ORDER BY 1, 2, 3").df()
    assert sorted(coverage["outcome"].unique()) == published
    assert {"match_quality"} <= set(coverage["grouping"])
    bad = coverage[(coverage["coverage"] < 0.90) | (coverage["coverage"] > 0.97)]
    assert bad.empty, bad.to_string()


def test_feature_table_has_every_year_and_all_of_assen(pipeline):
    con = _con(pipeline)
    years = [r[0] for r in con.execute("SELECT DISTINCT year FROM marts.fct_area_features ORDER BY 1").fetchall()]
    assert years == [2012, 2016, 2019, 2020, 2021, 2023, 2024]  # 2024: national KWB JSON
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
        "SELECT r.outcome, r.metrics, g.passed, g.margin_lower FROM ml.model_runs r "
        "JOIN ml.model_gate g USING (outcome, model_version) ORDER BY r.outcome"
    ).fetchall()
    assert [r[0] for r in runs] == sorted(["lbm", "fys", "onv", "soc", "vrz", "won"])
    for outcome, metrics, passed, margin_lower in runs:
        cv = json.loads(metrics)["grouped_cv"]
        assert cv["mean"]["r2"] < 0.01, outcome  # predicting the training mean explains nothing
        if passed:
            assert cv["lightgbm"]["r2"] > cv["ridge"]["r2"], outcome
            assert margin_lower > 0, outcome  # and shown to be better, not by noise
    passed = {o for o, _, p, _ in runs if p}
    assert "lbm" in passed
    # every model trains the stored model selection (grouped CV, scored by BBC-CV), made once per outcome on the
    # first build; its figures and the reference fit's are what the model card shows
    first = con.execute("SELECT outcome, list(action ORDER BY logged_at)[1] FROM ml.model_selection_log GROUP BY 1").fetchall()
    assert sorted(first) == [(o, "selected") for o in sorted(["lbm", "fys", "onv", "soc", "vrz", "won"])]
    for outcome, metrics, _, _ in runs:
        chosen = json.loads(metrics)["model_selection"]
        stored = con.execute("SELECT selection_version, params FROM ml.model_selection WHERE outcome = ?",
                             [outcome]).fetchone()
        assert chosen["version"] == stored[0] and chosen["chosen"]["params"] == json.loads(stored[1]), outcome
        assert {"r2", "ridge_r2", "margin_lower", "margin_upper"} <= set(chosen["corrected"]), outcome
        assert chosen["corrected"]["method"] == "bbc", outcome
        assert chosen["reference"]["r2"] is not None, outcome
        # each model was trained right after its (re-)selection: its CV took the selection's outer-fold fits
        assert json.loads(metrics)["cross_validation_fits"] == "model selection's outer folds", outcome
    card = (pipeline["settings"].duckdb_path.parent / "reports" / "model_card.md").read_text(encoding="utf-8")
    assert "## Model selection: grouped cross-validation, scored with the choice included" in card
    for outcome in ("lbm", "fys", "onv", "soc", "vrz", "won"):
        assert re.search(rf"^\| {outcome} \| [a-z_]+@\d+ \| \d+ \| bbc \| [01]\.\d{{3}} \|", card, re.M), outcome
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

    # The same path in Dagster's column lineage, as the UI shows it: area_drivers.feature_value <-
    # mart_wijk_training.<feature> (the model input the driver's value is) <- fct_area_features.<feature>
    # <- raw/rivm_gezondheid.<source key>.
    drivers = _column_lineage(pipeline, ["explanations", "area_drivers"], "lbm")
    assert dg.TableColumnDep(dg.AssetKey(["marts", "mart_wijk_training"]), feature) in drivers["feature_value"]
    features = _column_lineage(pipeline, ["marts", "fct_area_features"])
    assert dg.TableColumnDep(dg.AssetKey(["raw", "rivm_gezondheid"]), measure_key) in features[feature]
    training = _column_lineage(pipeline, ["marts", "mart_wijk_training"])
    assert training["lbm"] == [dg.TableColumnDep(dg.AssetKey(["marts", "fct_liveability_outcomes"]), "lbm")]
    assert training[feature] == [dg.TableColumnDep(dg.AssetKey(["marts", "fct_area_features"]), feature)]
    context = next(c for c in training if c.startswith("gm__"))
    assert training[context] == [dg.TableColumnDep(dg.AssetKey(["marts", "fct_area_features"]), context[4:])]


def _column_lineage(pipeline, key, partition=None) -> dict:
    records = pipeline["instance"].fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    value = records[0].asset_materialization.metadata["dagster/column_lineage"]
    return {column: list(deps) for column, deps in getattr(value, "value", value).deps_by_column.items()}


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


def test_tune_on_demand_reselects_and_retrains_only_what_changed(pipeline):
    """``wijk-assets tune --nested``: the selection runs again when asked (the refresh never does), here
    scored by nested CV (the auditor's check of the BBC-CV figures); on the same data it finds the same
    choice, so the following refresh retrains nothing."""
    from wijk_assets.runner.tune import tune

    with _con(pipeline) as con:
        models_before = con.execute("SELECT count(*) FROM ml.model_run_log").fetchone()[0]
        stored = con.execute("SELECT selection_version FROM ml.model_selection WHERE outcome = 'won'").fetchone()[0]
    lines = []
    assert tune(pipeline["settings"], ["won"], instance=pipeline["instance"], log=lines.append, nested=True), lines
    assert any(line.startswith("tuned [won]:") and "(unchanged)" in line and "corrected for the choice (nested)" in line
               for line in lines), lines
    with _con(pipeline) as con:
        last = con.execute("SELECT action, reason, selection_version FROM ml.model_selection_log "
                           "WHERE outcome = 'won' ORDER BY logged_at DESC LIMIT 1").fetchone()
        assert last == ("selected", "asked for (retune)", stored)
        assert con.execute("SELECT count(*) FROM ml.model_run_log").fetchone()[0] == models_before


def test_a_source_file_in_another_format_fails_the_refresh_and_keeps_the_live_rows(pipeline):
    """The Leefbaarometer file re-saved with ';' as separator (same rows; not the layout the reader
    takes): the refresh cannot list that source's releases. It says which file, which row and what it
    expected, reports failure (the CLI exits 1, as for a refused load), and every live row stays."""
    con = _con(pipeline)
    raw_before = con.execute("SELECT count(*), bit_xor(hash(release_year, area_code, measure_key, value_raw, "
                             "source_sha256)) FROM raw.leefbaarometer").fetchone()
    con.close()
    link = next((pipeline["data"] / "leefbaarometer").glob("*.csv"))
    original = link.resolve()
    link.unlink()
    link.write_text(original.read_text(encoding="utf-8").replace(",", ";"), encoding="utf-8")
    lines: list[str] = []
    try:
        report = refresh(pipeline["settings"], pipeline["instance"], log=lines.append)
        assert not report.success
        assert list(report.unreadable) == ["leefbaarometer"]
        message = report.unreadable["leefbaarometer"]
        assert link.name in message and "row 1" in message and "semicolon" in message, message
        assert any(line.startswith("could not list leefbaarometer") for line in lines), lines
        # nothing else changed since the last refresh (tune's), so nothing ran. This test comes before
        # test_corrupted_source_stops_at_the_gate_and_keeps_downstream on purpose: that one reloads
        # Leefbaarometer years without following them (downstream=False), and a refresh follows such loads
        # (the automation cursor is kept between refreshes), which would rebuild the marts here.
        assert report.runs == [], [(r.trigger, r.asset_keys[:3]) for r in report.runs]
        con = _con(pipeline)
        assert con.execute("SELECT count(*), bit_xor(hash(release_year, area_code, measure_key, value_raw, "
                           "source_sha256)) FROM raw.leefbaarometer").fetchone() == raw_before
        con.close()
    finally:
        link.unlink()
        link.symlink_to(original)


def test_corrupted_source_stops_at_the_gate_and_keeps_downstream(pipeline, shared_data_dir):
    """Leefbaarometer scores out of range: gate 1 refuses the 2002 partition before the swap, so the live
    raw rows and the marts built on them keep their content.

    Raw stage only (``downstream=False``): what the rest of the pipeline does after a refused partition
    (it carries on with the live rows) is ``integration/test_failure_isolation.py``'s subject, and
    re-running every model here cost the CI run ~100 s without testing anything new."""
    con = _con(pipeline)
    before = con.execute("SELECT count(*), sum(lbm) FROM marts.fct_liveability_outcomes").fetchone()
    raw_before = con.execute("SELECT count(*), any_value(source_sha256) FROM raw.leefbaarometer "
                             "WHERE release_year = 2002").fetchone()
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
            pipeline["settings"], instance=pipeline["instance"], sources=["leefbaarometer"], downstream=False
        )
        refused = [t for t in report.timings if not t.success]
        assert [(t.label, t.partition) for t in refused] == [("raw/leefbaarometer", "2002")]
        con = _con(pipeline)
        assert con.execute("SELECT count(*), any_value(source_sha256) FROM raw.leefbaarometer "
                           "WHERE release_year = 2002").fetchone() == raw_before
        after = con.execute("SELECT count(*), sum(lbm) FROM marts.fct_liveability_outcomes").fetchone()
        assert after == before
        con.close()
    finally:
        link.unlink()
        link.symlink_to(original)


def test_every_materialised_dbt_model_reports_its_row_count(pipeline):
    """The UI shows a row count on every dbt asset (issue 10), equal to the table's."""
    instance, defs = pipeline["instance"], pipeline["defs"]
    graph = defs.resolve_asset_graph()
    con = _con(pipeline)
    checked = 0
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if "dbt" not in node.kinds or not node.is_materializable:
            continue
        event = instance.get_latest_materialization_event(key)
        assert event is not None, key
        metadata = event.asset_materialization.metadata
        assert "dagster/row_count" in metadata, f"{key.to_user_string()} has no row count"
        schema, name = key.path
        assert metadata["dagster/row_count"].value == con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
        checked += 1
    assert checked >= 30
