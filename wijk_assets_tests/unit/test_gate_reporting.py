"""Withheld outcomes and honest figures reach every report; content versions; model reuse; out-of-sample monitoring.

Everything here is SYNTHETIC (made-up metrics, hashes and frames) and fast; the real-data path is in
``test_determinism.py`` and the end-to-end test.
"""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from wijk_assets.defs.models.gate import GATE_KEY, withheld_in_result
from wijk_assets.lib.content_version import content_version
from wijk_assets.lib.change_monitoring import performance_on_new_year
from wijk_assets.lib.responsible.register import (
    build_model_card,
    build_register_entry,
    load_register_config,
    outcome_facts,
    register_json,
    render_register_markdown,
)


def _metrics(lgb_cv: float, ridge_cv: float, lgb_t: float, ridge_t: float, mean_t: float) -> dict:
    """SYNTHETIC stored metrics of a model run (the layout ml.model_runs.metrics has)."""
    return {
        "grouped_cv": {
            "lightgbm": {"r2": lgb_cv, "mae": 0.05, "rmse": 0.07},
            "ridge": {"r2": ridge_cv, "mae": 0.06, "rmse": 0.08},
            "mean": {"r2": -0.001, "mae": 0.1, "rmse": 0.12},
        },
        "temporal": {
            "available": True, "test_year": 2022, "lightgbm": {"r2": 0.95},  # all-wijken variant: inflated
            "unseen_gemeenten": {"n_test": 640, "lightgbm": {"r2": lgb_t}, "ridge": {"r2": ridge_t}, "mean": {"r2": mean_t}},
        },
    }


def _gate(verdict: str, margin: float, lower: float, upper: float) -> dict:
    reason = "" if verdict == "published" else (
        f"withheld: not shown to beat the linear baseline: {margin:+.4f} R² over ridge")
    return {"verdict": verdict, "reason": reason, "margin": margin, "lower": lower, "upper": upper, "level": 0.9,
            "method": "paired out-of-fold R² difference (LightGBM − ridge), percentile bootstrap over gemeenten",
            "rule": "published when the lower bound of the 90% interval of the R² margin over ridge is above 0"}


def _facts() -> dict:
    """SYNTHETIC run facts with one published (lbm) and one withheld (fys) outcome."""
    return {
        "run_id": "synthetic-run-0002",
        "code_version": "0.1.0+gabc1234",
        "generated_at": "2026-01-15T10:00:00+00:00",
        "gemeente": "GM0106",
        "gemeente_name": "Assen",
        "area_level": "wijk",
        "classification_year": 2022,
        "sources": [{
            "name": "leefbaarometer", "role": "uitkomst", "title": "Leefbaarometer 3.0", "publisher": "Ministerie van BZK",
            "licence": "open data", "cbs_table_ids": [], "years": [2022],
            "files": [{"path": "leefbaarometer/x.csv", "sha256": "a" * 64}],
        }, {
            "name": "rivm_gezondheid", "title": "Gezondheid per wijk en buurt",
            "publisher": "RIVM, GGD GHOR Nederland, CBS", "licence": "CC BY 4.0 (Bron: CBS)",
            "cbs_table_ids": ["50090NED"], "years": [2020],
            "files": [{"path": "rivm_gezondheid_50090NED/x.xlsx", "sha256": "b" * 64}],
        }],
        "model": {"type": "LightGBM", "version": "lbm=aaa, fys=bbb"},
        "outcomes": [
            outcome_facts("fys", "Leefbaarometer dimension: physical environment",
                          _metrics(0.2186, 0.2219, 0.1811, 0.2012, -0.003), 18633, _gate("withheld", -0.0033, -0.0278, 0.0212)),
            outcome_facts("lbm", "Leefbaarometer total score",
                          _metrics(0.6021, 0.5512, 0.5734, 0.5302, -0.002), 18633, _gate("published", 0.0509, 0.0401, 0.0611)),
        ],
        "features": ["a", "b"],
        "sensitive_opt_in": [],
        "suppression": {"min_inhabitants": 50, "min_respondents": 10, "n_areas": 10, "n_suppressed_population": 1,
                        "n_suppressed_signal": 0, "n_population_unknown": 0},
    }


def test_each_baseline_row_carries_its_own_figures_and_the_honest_temporal_r2():
    fys = _facts()["outcomes"][0]
    assert fys["metrics"] == {"r2": 0.2186, "mae": 0.05, "rmse": 0.07, "r2_temporal": 0.1811}
    assert fys["baselines"]["ridge"]["r2_temporal"] == 0.2012  # not LightGBM's 0.1811, not the inflated 0.95
    assert fys["baselines"]["mean"]["r2_temporal"] == -0.003
    assert "0.95" not in json.dumps(fys)
    card = build_model_card(_facts())
    ridge_row = next(line for line in card.splitlines() if line.startswith("| fys | baseline: ridge"))
    assert "| 0.201 |" in ridge_row and "0.181" not in ridge_row  # 3 decimals in the card


def test_model_card_states_margin_interval_and_withheld_outcomes():
    card = build_model_card(_facts())
    assert "## Gate 3: margin over the linear baseline" in card
    fys_row = next(line for line in card.splitlines() if line.startswith("| fys | withheld"))
    assert "-0.0033" in fys_row and "-0.0278 to +0.0212 (90%)" in fys_row
    assert "| lbm | published | +0.0509 | +0.0401 to +0.0611 (90%)" in card
    assert "**Withheld outcomes**: fys" in card


def test_register_entry_states_withheld_outcomes_in_dutch():
    entry = build_register_entry(_facts(), load_register_config())
    technical = entry["technische_werking"]
    fys = next(v for v in technical["validatie"] if v["uitkomst"] == "fys")
    assert fys["kwaliteitspoort"]["oordeel"] == "achtergehouden"
    assert fys["kwaliteitspoort"]["interval"] == [-0.0278, 0.0212]
    assert fys["omschrijving"] == "Leefbaarometer-dimensie fysieke omgeving"
    assert fys["validatiemethode"].startswith("5-voudige kruisvalidatie")
    assert technical["achtergehouden_uitkomsten"][0].startswith("Fysieke omgeving: niet aangetoond")
    markdown = render_register_markdown(entry)
    assert "**Achtergehouden uitkomsten**: Fysieke omgeving: niet aangetoond" in markdown
    assert "| Leefbaarometer totaalscore | gepubliceerd |" in markdown
    for english in ("withheld", "not shown", "NOT PUBLISHED", "physical environment", "cross-validation"):
        assert english not in markdown, english
        assert english not in register_json(entry), english


def test_withheld_verdict_is_read_from_a_successful_run():
    """A toy asset with gate 3's key stands in for the verdict asset: the run succeeds and the CLI helper
    finds the withheld outcome with its reason (what ``wijk-assets materialize`` prints as WITHHELD)."""

    @dg.asset(key=GATE_KEY, partitions_def=dg.StaticPartitionsDefinition(["lbm", "fys"]))
    def toy_gate(context) -> dg.MaterializeResult:
        withheld = context.partition_key == "fys"
        return dg.MaterializeResult(metadata={
            "verdict": "withheld" if withheld else "published",
            "reason": "withheld: not shown to beat the linear baseline" if withheld else "passed every condition",
        })

    instance = dg.DagsterInstance.ephemeral()
    fys = dg.materialize([toy_gate], partition_key="fys", instance=instance)
    lbm = dg.materialize([toy_gate], partition_key="lbm", instance=instance)
    assert fys.success and lbm.success
    assert withheld_in_result(fys) == ["fys: withheld: not shown to beat the linear baseline"]
    assert withheld_in_result(lbm) == []


def test_lineage_summary_says_withheld_not_passed():
    from wijk_assets.definitions import build_definitions
    from wijk_assets.defs.reports.audit import lineage_report_markdown

    instance = dg.DagsterInstance.ephemeral()
    for partition, verdict in (("fys", "withheld"), ("lbm", "published")):
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=GATE_KEY, partition=partition,
            metadata={"verdict": verdict, "reason": f"reason for {partition}", "model_version": "v"},
        ))
    report = lineage_report_markdown(build_definitions(), instance)
    section = report[report.index("## Gate 3 verdicts"):report.index("## Dependencies")]
    assert "| fys | WITHHELD (not published) | reason for fys |" in section
    assert "| lbm | published | reason for lbm |" in section
    assert "| onv | not judged yet |" in section


def test_content_version_ignores_row_order_and_float_noise_but_not_changes():
    """SYNTHETIC table: 5,000 rows with doubles."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS id, range * 0.1::DOUBLE / 7 AS x, 'w' || range AS code FROM range(5000)")
    reference = content_version(con, "main", "t")
    con.execute("CREATE TABLE shuffled AS SELECT id, x * (1 + 1e-15) AS x, code FROM t ORDER BY random()")
    assert content_version(con, "main", "shuffled") == reference
    con.execute("CREATE TABLE changed AS SELECT id, CASE WHEN id = 17 THEN x + 1e-6 ELSE x END AS x, code FROM t")
    assert content_version(con, "main", "changed") != reference
    con.execute("CREATE TABLE retyped AS SELECT id::INTEGER AS id, x, code FROM t")
    assert content_version(con, "main", "retyped") != reference
    con.execute("CREATE TABLE renamed AS SELECT id, x AS y, code FROM t")
    assert content_version(con, "main", "renamed") != reference
    with pytest.raises(ValueError, match="main.nothing not found"):
        content_version(con, "main", "nothing")


def test_monitoring_scores_only_years_after_the_training_cut_off():
    """SYNTHETIC: outcome years 2020 and 2022; a model trained up to 2020 is scored on 2022 only."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "outcome_year": np.repeat([2020, 2022], 100),
        "x": rng.normal(size=200),
    })
    frame["y"] = frame["x"] * 2 + rng.normal(scale=0.1, size=200)
    seen = []

    def predict(features: pd.DataFrame) -> np.ndarray:
        seen.append(sorted(features["outcome_year"].unique()))
        return features["x"].to_numpy() * 2

    result = performance_on_new_year(predict, frame, "y", training_cutoff=2020)
    assert result["available"] and result["n"] == 100 and seen == [[2022]]
    assert result["r2"] > 0.9
    none_left = performance_on_new_year(predict, frame, "y", training_cutoff=2022)
    assert none_left["available"] is False and none_left["n"] == 0
    assert "no outcome year after the model's training cut-off 2022" in none_left["reason"]
    assert len(seen) == 1  # the model was not asked to predict its own training years


def test_an_outcome_gate_3_has_not_judged_is_not_reported_as_published():
    facts = _facts()
    facts["outcomes"].append(outcome_facts("won", "Leefbaarometer dimension: housing stock",
                                           _metrics(0.67, 0.66, 0.6, 0.6, 0.0), 18633, None))
    entry = build_register_entry(facts, load_register_config())
    won = next(v for v in entry["technische_werking"]["validatie"] if v["uitkomst"] == "won")
    assert won["kwaliteitspoort"]["oordeel"] == "niet beoordeeld"
    assert any(line.startswith("Woningvoorraad: kwaliteitspoort 3 heeft dit model niet beoordeeld")
               for line in entry["technische_werking"]["achtergehouden_uitkomsten"])
    card = build_model_card(facts)
    assert "| won | not judged |" in card and "**Withheld outcomes**: fys, won" in card


def test_explanations_of_a_withheld_outcome_materialise_empty_without_error(tmp_path):
    """SYNTHETIC warehouse: a model run, its gate-3 verdict 'withheld', and stale explanation rows."""
    from wijk_assets.defs.explanations.assets import explanations
    from wijk_assets.defs.resources import SettingsResource, WarehouseResource

    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA ml")
        con.execute("CREATE TABLE ml.model_runs AS SELECT 'fys' AS outcome, 'v1' AS model_version, '/nowhere' AS artifact_path")
        con.execute("CREATE TABLE ml.model_gate AS SELECT 'fys' AS outcome, 'v1' AS model_version, false AS passed, "
                    "'withheld: not shown to beat the linear baseline' AS problems")
        for table in ("shap_values", "global_importance", "area_drivers", "area_residuals"):
            con.execute(f"CREATE TABLE ml.{table} AS SELECT * FROM (VALUES ('fys', 1.0), ('lbm', 2.0)) t(outcome, value)")
    result = dg.materialize([explanations], partition_key="fys", resources={"duckdb": WarehouseResource(path=str(db)), "settings": SettingsResource()},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    events = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    assert len(events) == 4
    assert all(m.metadata["verdict"].value == "withheld" for m in events)
    assert all("not shown to beat" in m.metadata["reason"].value for m in events)
    with duckdb.connect(str(db), read_only=True) as con:
        for table in ("shap_values", "global_importance", "area_drivers", "area_residuals"):
            assert con.execute(f"SELECT outcome FROM ml.{table}").fetchall() == [("lbm",)]  # fys removed, lbm kept


def test_a_model_is_reused_only_under_the_same_training_fingerprint_with_its_file_on_disk(tmp_path):
    from wijk_assets.lib.ml.reuse import reusable_run, training_fingerprint

    base = dict(code_version="ml-2", seed=1, grid=[{"name": "a"}], library_version="4.6.0")
    fingerprint = training_fingerprint("data-v1", **base)
    assert fingerprint == training_fingerprint("data-v1", **base)
    for changed in ({"code_version": "ml-3"}, {"seed": 2}, {"grid": [{"name": "b"}]}, {"library_version": "4.7"}):
        assert training_fingerprint("data-v1", **{**base, **changed}) != fingerprint, changed
    assert training_fingerprint("data-v2", **base) != fingerprint
    (tmp_path / "model.txt").write_text("tree")
    current = {"training_fingerprint": fingerprint, "artifact_path": str(tmp_path)}
    assert reusable_run(current, fingerprint, "model.txt")
    assert not reusable_run(current, training_fingerprint("data-v2", **base), "model.txt")
    assert not reusable_run({**current, "artifact_path": str(tmp_path / "gone")}, fingerprint, "model.txt")
    assert not reusable_run(None, fingerprint, "model.txt")


def test_monitoring_records_changes_for_every_source_that_released():
    """SYNTHETIC wide feature table: a health source with 2 years, a KWB-like source with 1 year."""
    from wijk_assets.defs.monitoring.assets import source_changes

    features = pd.DataFrame({
        "area_code": ["WK1", "WK2", "WK1", "WK2", "WK1", "WK2"],
        "year": [2016, 2016, 2020, 2020, 2023, 2023],
        "smokers__18plus": [20.0, 30.0, 18.0, 31.0, np.nan, np.nan],
        "smokers__65plus": [10.0, 12.0, 9.0, 12.0, np.nan, np.nan],
        "inhabitants": [np.nan, np.nan, np.nan, np.nan, 1000.0, 2000.0],
    })
    catalog = pd.DataFrame({"feature": ["smokers__18plus", "smokers__65plus", "inhabitants"],
                            "source": ["rivm_gezondheid", "rivm_gezondheid", "cbs_kwb"]})
    changes, sources = source_changes(features, catalog, national_source="rivm_gezondheid")
    summary = sources.set_index("source")
    assert summary.loc["rivm_gezondheid", "status"] == "compared"
    assert (summary.loc["rivm_gezondheid", "year_prev"], summary.loc["rivm_gezondheid", "year_latest"]) == (2016, 2020)
    assert summary.loc["cbs_kwb", "status"] == "one release only: nothing to compare yet"
    assert summary.loc["cbs_kwb", "year_latest"] == 2023
    assert set(changes["indicator"]) == {"smokers__18plus"}  # the health monitor: its 18+ figures
    wk1 = changes[changes["area_code"] == "WK1"].iloc[0]
    assert wk1["abs_change"] == pytest.approx(-2.0) and wk1["source"] == "rivm_gezondheid"


def test_model_card_shows_the_corrected_cv_and_the_reference_fit_with_margins_over_ridge():
    """Issue 12: the published choice's grouped-CV R² corrected for the choice (issue 14: BBC-CV) and the
    reference fit's, each with its margin over ridge and the interval, and every candidate (SYNTHETIC
    metrics)."""
    facts = _facts()
    metrics = _metrics(0.6021, 0.5512, 0.5734, 0.5302, -0.002)

    def fig(r2, margin, lower, upper):
        return {"r2": r2, "ridge_r2": 0.6433, "margin_r2": margin, "margin_lower": lower, "margin_upper": upper,
                "level": 0.9, "n_rows": 15428}

    metrics["model_selection"] = {
        "chosen": {"config": "wide_medium@450", "feature_set": "all", "training_rows": "all_matches"},
        "corrected": {**fig(0.6534, 0.0100, -0.0005, 0.0245), "method": "bbc"},
        "reference": fig(0.6537, 0.0103, -0.0119, 0.0306),
        "chosen_plain_cv": fig(0.6642, 0.0209, 0.0101, 0.0322),
        "candidates": [
            {"config": "wide_medium@450", "n_features": 386, "n_train_rows": 15626, "r2_exact_rows": 0.6642,
             "chosen_share": 0.614, "chosen": True},
            {"config": "reference@100", "n_features": 77, "n_train_rows": 15428, "r2_exact_rows": 0.6537,
             "chosen_share": 0.0, "chosen": False},
        ],
        "method": "grouped 5-fold CV by gemeente of every candidate; the choice scored by BBC-CV",
    }
    facts["outcomes"][1] = outcome_facts("lbm", "Leefbaarometer total score", metrics, 18633,
                                         _gate("published", 0.0509, 0.0401, 0.0611))
    card = build_model_card(facts)
    assert "## Model selection: grouped cross-validation, scored with the choice included" in card
    assert ("| lbm | wide_medium@450 | 15428 | bbc | 0.653 | 0.643 | +0.0100 | -0.0005 to +0.0245 (90%) | 0.654 | "
            "+0.0103 | -0.0119 to +0.0306 (90%) |") in card
    assert "| lbm | reference@100 | 77 | 15428 | 0.654 | 0% |  |" in card
    assert "| lbm | wide_medium@450 | 386 | 15626 | 0.664 | 61% | yes |" in card
    # the register entry (Dutch, decimal commas) says how the model was chosen
    from wijk_assets.lib.responsible.register import build_register_entry

    entry = build_register_entry(facts)
    keuze = next(v for v in _find_key(entry, "validatie") if v["uitkomst"] == "lbm")["modelkeuze"]
    assert keuze["kenmerken"] == "alle geselecteerde kenmerken"
    assert keuze["r2_gecorrigeerd_voor_de_keuze"] == "0,653" and keuze["interval_marge"] == "-0,0005 tot +0,0245"
    assert "bootstrap-gecorrigeerde kruisvalidatie" in keuze["correctie_voor_de_keuze"]
    from wijk_assets.lib.responsible.register import render_register_markdown

    markdown = render_register_markdown(entry)
    assert ("| Leefbaarometer totaalscore | alle geselecteerde kenmerken | alle gekoppelde wijk-jaren | "
            "bootstrap over gemeenten | 0,653 | 0,643 | +0,0100 | -0,0005 tot +0,0245 |") in markdown
    # a model kept from before BBC-CV (its metrics name nested CV) next to one selected since: each row
    # says its own method and both methods are explained (the first row's method used to stand for all)
    old = _metrics(0.85, 0.84, 0.80, 0.79, 0.001)
    old["model_selection"] = {**metrics["model_selection"], "corrected": None,
                              "nested": fig(0.8462, 0.0011, -0.0048, 0.0090), "method": "nested grouped CV"}
    facts["outcomes"][0] = outcome_facts("onv", "Nuisance and unsafety", old, 10423, _gate("withheld", 0.006, -0.001, 0.013))
    markdown = render_register_markdown(build_register_entry(facts))
    assert "| geneste kruisvalidatie | 0,846 |" in markdown and "| bootstrap over gemeenten | 0,653 |" in markdown
    assert ("de R² is gecorrigeerd voor die keuze met geneste kruisvalidatie: de keuze is telkens gemaakt zonder "
            "de gemeenten") in markdown
    assert "; of met bootstrap-gecorrigeerde kruisvalidatie: 2.000 keer" in markdown


def _find_key(obj, key):
    """The value of ``key`` anywhere in a nested dict/list."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        values = obj.values()
    elif isinstance(obj, list):
        values = obj
    else:
        return None
    for value in values:
        found = _find_key(value, key)
        if found is not None:
            return found
    return None


def test_a_withheld_outcome_leaves_no_explanation_or_interval_rows(tmp_path):
    """Gate 3 withholds an outcome that was published before: its explanations AND the tables that
    describe its published intervals (coverage per group, error per match rule) are removed, so no
    report reads figures of a model that is not published (SYNTHETIC rows)."""
    from wijk_assets.defs.explanations.assets import EXPLANATION_TABLES, RESIDUAL_SIDE_TABLES, _withheld
    from wijk_assets.defs.resources import WarehouseResource

    db = tmp_path / "w.duckdb"
    tables = [*EXPLANATION_TABLES.values(), *RESIDUAL_SIDE_TABLES]
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE SCHEMA ml")
        for table in tables:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM (VALUES ('onv', 1), ('lbm', 2)) t(outcome, x)")
    results = list(_withheld(WarehouseResource(path=str(db)), "onv", "v1", "withheld: not shown to beat ridge"))
    assert {r.asset_key for r in results} == set(EXPLANATION_TABLES)
    with duckdb.connect(str(db), read_only=True) as con:
        for table in tables:
            assert con.execute(f"SELECT list(outcome) FROM {table}").fetchone()[0] == ["lbm"], table
