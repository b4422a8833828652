"""Tests of wijk_assets.lib.responsible: privacy, stigma, register/model card and audit trail.

Frames built inside these tests are SYNTHETIC (made-up codes and figures, marked as such); the survey
tests read the real Utrecht inwonersenquête files from ../shared/data.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.responsible.privacy import (
    REASON_POPULATION,
    REASON_PUBLISHER,
    REASON_RESPONDENTS,
    REASON_SIGNAL,
    read_survey_csv,
    reject_personal_data,
    suppress_small_areas,
)
from wijk_assets.lib.responsible.register import (
    MissingFactError,
    RegisterConfigError,
    build_model_card,
    build_register_entry,
    load_register_config,
    register_json,
    render_register_markdown,
)
from wijk_assets.lib.responsible.stigma import (
    check_no_judgemental_labels,
    check_no_sensitive_columns,
    find_judgemental_labels,
    is_sensitive,
    sensitive_columns,
)
from wijk_assets.lib.sources.base import SourceFormatError

SURVEY_DIR = "utrecht_inwonersenquete"
CULTUUR = "uic_tevredenheid_culturele_voorzieningen_buurt_2023_subwijk.csv"
JONGEREN = "uic_tevredenheid_jongerenvoorzieningen_subwijk_2023.csv"


# ------------------------------------------------------------------------------------------------
# privacy: small-area suppression (SYNTHETIC data)
# ------------------------------------------------------------------------------------------------


def _synthetic_areas() -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """SYNTHETIC: six made-up buurten (CBS-style padded codes), two value columns."""
    frame = pd.DataFrame(
        {
            "area_code": ["BU99990001", "BU99990002  ", "BU99990003", "BU99990004", "BU99990005", "BU99990006"],
            "eenzaamheid_pct": [40.1, 38.0, 45.5, np.nan, 41.0, 39.9],
            "rondkomen_pct": [20.0, 18.5, 25.0, np.nan, 22.0, 19.0],
            "label": ["a", "b", "c", "d", "e", "f"],
        }
    )
    population = pd.Series(
        {
            "BU99990001": 1200,
            "BU99990002": 30,  # small -> suppressed by population
            "BU99990003": 0,  # known zero -> suppressed by population
            "BU99990004": np.nan,  # unknown, signal True -> suppressed by signal
            # BU99990005 absent: unknown, signal False -> kept
            "BU99990006": 50,  # exactly the threshold -> kept
        }
    )
    signal = pd.Series({"BU99990004": True, "BU99990005": False, "BU99990001": True})
    return frame, population, signal


def test_suppress_small_areas_counts_synthetic():
    frame, population, signal = _synthetic_areas()
    out, report = suppress_small_areas(
        frame,
        population=population,
        threshold=50,
        value_columns=["eenzaamheid_pct", "rondkomen_pct"],
        small_area_signal=signal,
    )
    assert report.n_areas == 6
    assert report.n_suppressed_population == 2
    assert report.n_suppressed_signal == 1
    assert report.n_population_unknown == 2
    assert report.suppressed_codes == ["BU99990002", "BU99990003", "BU99990004"]
    assert report.n_rows_suppressed == 3
    # the signal of an area with a KNOWN large population is ignored
    kept = out.set_index(out["area_code"].str.strip())
    assert kept.loc["BU99990001", "eenzaamheid_pct"] == 40.1
    assert pd.isna(kept.loc["BU99990002", "eenzaamheid_pct"])
    assert pd.isna(kept.loc["BU99990003", "rondkomen_pct"])
    assert kept.loc["BU99990002", "suppressed_reason"] == REASON_POPULATION
    assert kept.loc["BU99990004", "suppressed_reason"] == REASON_SIGNAL
    assert kept.loc["BU99990006", "eenzaamheid_pct"] == 39.9
    assert pd.isna(kept.loc["BU99990005", "suppressed_reason"])
    assert kept.loc["BU99990003", "label"] == "c"  # non-value columns untouched
    # input not modified
    assert frame.loc[1, "eenzaamheid_pct"] == 38.0
    meta = report.to_metadata()
    assert meta["n_suppressed"] == 3 and meta["suppression_threshold_inhabitants"] == 50
    json.dumps(meta)  # JSON-able for Dagster metadata


def test_suppress_small_areas_long_frame_and_population_column_synthetic():
    """SYNTHETIC long layout: several rows per area, population in a column of the frame."""
    long = pd.DataFrame(
        {
            "area_code": ["WK999901"] * 3 + ["WK999902"] * 3,
            "measure": ["x", "y", "z"] * 2,
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "inwoners": [20, 20, 20, 900, 900, 900],
        }
    )
    out, report = suppress_small_areas(
        long, population="inwoners", threshold=50, value_columns=["value"]
    )
    assert report.n_areas == 2 and report.n_suppressed_population == 1
    assert report.n_rows_suppressed == 3
    assert out.loc[out.area_code == "WK999901", "value"].isna().all()
    assert out.loc[out.area_code == "WK999902", "value"].notna().all()


def test_suppress_keeps_existing_reason_synthetic():
    frame = pd.DataFrame(
        {"area_code": ["A", "B"], "v": [None, 3.0], "suppressed_reason": [REASON_PUBLISHER, None]}
    )
    out, report = suppress_small_areas(
        frame, population=pd.Series({"A": 5, "B": 5}), threshold=10, value_columns=["v"]
    )
    assert list(out["suppressed_reason"]) == [REASON_PUBLISHER, REASON_POPULATION]
    assert report.n_suppressed_population == 2


# ------------------------------------------------------------------------------------------------
# privacy: real Utrecht survey files
# ------------------------------------------------------------------------------------------------


def test_read_real_utrecht_survey_suppresses_dots(shared_data_dir: Path):
    path = shared_data_dir / SURVEY_DIR / CULTUUR
    tidy = read_survey_csv(path, min_respondents=10)
    assert {"area_label", "indicator", "category", "year", "value_pct", "suppressed"} <= set(tidy.columns)
    # 35 data rows (34 subwijken + Utrecht) x 3 categories
    assert len(tidy) == 105
    assert tidy["area_label"].nunique() == 35
    assert set(tidy["year"]) == {2023}
    assert set(tidy["category"]) == {"(zeer) tevreden", "neutraal", "(zeer) ontevreden"}
    supp = tidy[tidy["suppressed"]]
    assert set(supp["area_label"]) == {"Subwijk Leidsche Rijn-zuid", "Subwijk Rijnenburg"}
    assert supp["value_pct"].isna().all()
    assert set(supp["suppressed_reason"]) == {REASON_PUBLISHER}
    assert tidy.attrs["suppression"]["n_suppressed_by_publisher"] == 6
    row = tidy[(tidy.area_label == "Subwijk Oog in Al, Welgelegen") & (tidy.category == "(zeer) tevreden")]
    assert float(row["value_pct"].iloc[0]) == 53.0
    assert tidy[~tidy["suppressed"]]["value_pct"].notna().all()


def test_read_real_utrecht_survey_bare_headers(shared_data_dir: Path):
    path = shared_data_dir / SURVEY_DIR / JONGEREN
    tidy = read_survey_csv(path, min_respondents=10)
    assert len(tidy) == 9
    assert set(tidy["year"]) == {2023}  # from the file name
    assert set(tidy["category"]) == {"tevreden", "neutraal", "ontevreden"}
    assert not tidy["suppressed"].any()
    utrecht = tidy[(tidy.area_label == "Utrecht") & (tidy.category == "tevreden")]
    assert float(utrecht["value_pct"].iloc[0]) == 31.0


def test_survey_min_respondents_synthetic(tmp_path: Path):
    """SYNTHETIC survey table with a respondents column."""
    path = tmp_path / "synthetic_survey_2024.csv"
    path.write_text(
        "regio;n;tevreden;ontevreden\n"
        "Subwijk Synthetisch-noord;8;60;40\n"
        "Subwijk Synthetisch-zuid;120;55;45\n"
        "Subwijk Synthetisch-west;.;.;.\n",
        encoding="utf-8",
    )
    tidy = read_survey_csv(path, min_respondents=10)
    assert len(tidy) == 6
    few = tidy[tidy.suppressed_reason == REASON_RESPONDENTS]
    assert set(few["area_label"]) == {"Subwijk Synthetisch-noord"} and len(few) == 2
    assert few["value_pct"].isna().all()
    assert tidy.attrs["suppression"]["n_too_few_respondents"] == 2
    assert tidy.attrs["suppression"]["n_suppressed_by_publisher"] == 2
    assert tidy.attrs["suppression"]["respondents_column"] == "n"
    ok = tidy[tidy.area_label == "Subwijk Synthetisch-zuid"]
    assert list(ok["value_pct"].astype(float)) == [55.0, 45.0]
    assert list(ok["n_respondents"]) == [120, 120]


# ------------------------------------------------------------------------------------------------
# privacy: personal data is rejected (SYNTHETIC, made-up values)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, values",
    [
        ("respondent_id", [f"R{i:04d}" for i in range(4)]),
        ("Respondentnummer", [1, 2, 3, 4]),
        ("e-mail", ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]),
        ("postcode", ["9401AB", "9402 CD", "9403EF", "9404GH"]),
        ("geboortedatum", ["1970-01-01"] * 4),
        ("telefoon", ["0612345678"] * 4),
        ("BSN", ["111222333"] * 4),
    ],
)
def test_reject_personal_columns_synthetic(tmp_path: Path, column: str, values: list):
    frame = pd.DataFrame(
        {"regio": ["Subwijk X", "Subwijk X", "Subwijk Y", "Subwijk Y"], column: values, "tevreden": [1, 2, 3, 4]}
    )
    with pytest.raises(SourceFormatError) as err:
        reject_personal_data(frame, "synthetic_survey.csv")
    msg = str(err.value)
    assert "synthetic_survey.csv" in msg and repr(column) in msg
    # the offending values themselves are never echoed
    assert str(values[0]) not in msg or column == "Respondentnummer"


@pytest.mark.parametrize(
    "values, what",
    [
        (["jan@example.org", "x", "y"], "e-mail"),
        (["9401 AB", "x", "y"], "postcode"),
        (["06-12345678", "x", "y"], "phone"),
        (["111222333", "123456782", "x"], "BSN"),
    ],
)
def test_reject_personal_values_in_innocent_column_synthetic(values: list, what: str):
    frame = pd.DataFrame({"regio": ["A", "B", "C"], "opmerking": values})
    with pytest.raises(SourceFormatError, match=r"'opmerking'") as err:
        reject_personal_data(frame, "synthetic.csv")
    assert what in str(err.value)


def test_reject_one_row_per_respondent_synthetic():
    """SYNTHETIC respondent-level layout: a generic per-row id and 12 rows for the same area."""
    frame = pd.DataFrame(
        {"id": range(24), "wijk": ["Wijk A"] * 12 + ["Wijk B"] * 12, "tevreden": [1, 0] * 12}
    )
    with pytest.raises(SourceFormatError, match="one row per respondent"):
        reject_personal_data(frame, "synthetic_respondents.csv")


def test_survey_file_with_email_is_rejected_naming_the_column(tmp_path: Path):
    path = tmp_path / "synthetic_survey_2023.csv"
    path.write_text(
        "regio;E-mailadres;tevreden\nSubwijk A;a@example.org;50\nSubwijk B;b@example.org;60\n",
        encoding="utf-8",
    )
    with pytest.raises(SourceFormatError) as err:
        read_survey_csv(path, min_respondents=10)
    assert "E-mailadres" in str(err.value) and path.name in str(err.value)


def test_clean_aggregated_tables_pass(shared_data_dir: Path):
    raw = pd.read_csv(shared_data_dir / SURVEY_DIR / CULTUUR, sep=";", dtype=str)
    assert reject_personal_data(raw, CULTUUR) is None
    # a real CBS table with area names (wk_naam), codes and ~26k rows is not mistaken for personal data
    lbm = pd.read_csv(shared_data_dir / "leefbaarometer" / "lbm3_scores_wijken_2002-2022.csv", dtype=str)
    assert reject_personal_data(lbm, "lbm3_scores_wijken_2002-2022.csv") is None
    # PC4 (an area) is allowed
    pc4 = pd.DataFrame({"postcode": ["9401", "9402"], "inwoners": [1000, 2000]})
    assert reject_personal_data(pc4, "synthetic_pc4.csv") is None


# ------------------------------------------------------------------------------------------------
# stigma
# ------------------------------------------------------------------------------------------------


def test_judgemental_label_in_text_column_synthetic():
    """SYNTHETIC output table with a free-text column."""
    table = pd.DataFrame(
        {
            "wijk_code": ["WK999901", "WK999902", "WK999903"],
            "toelichting": [
                "Score ligt onder het gemiddelde.",
                "Dit is een echte Probleemwijk volgens het model.",
                "Beste schatting: 4,1 (interval 3,9-4,3).",
            ],
            "score": [3.9, 3.7, 4.1],
        }
    )
    hits = find_judgemental_labels(table)
    assert hits == [("toelichting", 1, "probleemwijk")]
    violations = check_no_judgemental_labels({"wijk_uitleg": table})
    assert len(violations) == 1 and violations[0].table == "wijk_uitleg"
    assert violations[0].column == "toelichting" and violations[0].row == 1
    assert check_no_judgemental_labels({"clean": table.drop(index=1)}) == []


def test_judgemental_labels_variants():
    texts = [
        "probleemwijken in Assen",
        "de beste wijk",
        "worst neighbourhoods",
        "no-go area",
        "krachtwijkaanpak",
        "beste schatting",  # fine
        "best estimate",  # fine
        "hoogste score",  # fine
    ]
    found = {(row, term) for _, row, term in find_judgemental_labels(texts)}
    assert found == {(0, "probleemwijk"), (1, "beste"), (2, "worst"), (3, "no-go"), (4, "krachtwijk")}
    # column names are checked too
    assert find_judgemental_labels(pd.DataFrame({"is_aandachtswijk": [True]})) == [
        ("is_aandachtswijk", None, "aandachtswijk")
    ]


def test_sensitive_column_check_opt_in_synthetic():
    table = pd.DataFrame({"wijk_code": ["WK999901"], "a_nw_all": [12.0], "a_inw": [1000]})
    violations = check_no_sensitive_columns({"features": table}, catalog=None, opt_in=())
    assert [(v.table, v.column) for v in violations] == [("features", "a_nw_all")]
    assert check_no_sensitive_columns({"features": table}, catalog=None, opt_in=("a_nw_all",)) == []
    assert check_no_sensitive_columns({"features": table}, None, opt_in=("a_*_all",)) == []


def test_sensitive_catalog_flags_and_patterns():
    assert is_sensitive("NietWestersTotaal_18", None)
    assert is_sensitive("pct_migratieachtergrond", None)
    assert not is_sensitive("a_inw", None)
    # the catalog can flag concepts the patterns do not know (the OData 'Nederland_17' key)
    catalog = {"Nederland_17": {"sensitive": True}, "AantalInwoners_5": {"sensitive": False}}
    assert is_sensitive("Nederland_17", catalog)
    cols = ["AantalInwoners_5", "Nederland_17", "BuitenEuropa_19", "herkomst_marokko"]
    assert sensitive_columns(cols, catalog, opt_in=()) == ["Nederland_17", "BuitenEuropa_19", "herkomst_marokko"]
    assert sensitive_columns(cols, catalog, opt_in=["BuitenEuropa_19"]) == ["Nederland_17", "herkomst_marokko"]
    # long layout: sensitive measure keys as values
    long = pd.DataFrame({"measure_key": ["a_inw", "a_we_all"], "value_raw": ["1", "2"]})
    v = check_no_sensitive_columns({"long": long})
    assert [(x.column, x.row) for x in v] == [("measure_key", "a_we_all")]


# ------------------------------------------------------------------------------------------------
# register and model card (SYNTHETIC facts)
# ------------------------------------------------------------------------------------------------


def _facts() -> dict:
    """SYNTHETIC facts of a run (made-up hashes and figures)."""
    return {
        "run_id": "synthetic-run-0001",
        "code_version": "0.1.0+gabc1234",
        "generated_at": "2026-01-15T10:00:00+00:00",
        "gemeente": "GM0106",
        "gemeente_name": "Assen",
        "area_level": "wijk",
        "classification_year": 2022,
        "sources": [
            {
                "name": "leefbaarometer",
                "role": "uitkomst",
                "title": "Leefbaarometer 3.0 scores per wijk",
                "publisher": "Ministerie van BZK",
                "licence": "open data (BZK)",
                "cbs_table_ids": [],
                "years": [2020, 2022],
                "files": [{"path": "leefbaarometer/lbm3_scores_wijken_2002-2022.csv", "sha256": "a" * 64}],
            },
            {
                "name": "rivm_gezondheid",
                "title": "Gezondheid per wijk en buurt",
                "publisher": "RIVM, GGD GHOR Nederland, CBS",
                "licence": "CC BY 4.0 (Bron: CBS)",
                "cbs_table_ids": ["50090NED"],
                "years": [2020],
                "files": [{"path": "rivm_gezondheid_50090NED/gezondheid_buurt_2020_18plus.xlsx", "sha256": "b" * 64}],
            },
        ],
        "model": {"type": "LightGBM regressor", "version": "m-2026.01", "explainer": "SHAP TreeExplainer"},
        "outcomes": [
            {
                "outcome": "lbm",
                "validation": "5-fold GroupKFold (groups = gemeente)",
                "n_areas": 3177,
                "metrics": {"r2": 0.6123, "mae": 0.0521},
                "baselines": {"mean": {"r2": 0.0, "mae": 0.0987}, "linear": {"r2": 0.4411, "mae": 0.0702}},
            }
        ],
        "features": ["eenzaamheid_pct", "moeite_met_rondkomen_pct", "g_wozbag"],
        "sensitive_opt_in": [],
        "suppression": {
            "min_inhabitants": 50,
            "min_respondents": 10,
            "n_areas": 10,
            "n_suppressed_population": 1,
            "n_suppressed_signal": 0,
            "n_population_unknown": 0,
        },
    }


def test_register_refuses_missing_facts():
    config = load_register_config()
    for drop in ("run_id", "sources", "outcomes", "suppression"):
        facts = _facts()
        del facts[drop]
        with pytest.raises(MissingFactError, match=f"facts.{drop} is missing"):
            build_register_entry(facts, config)
    facts = _facts()
    del facts["outcomes"][0]["baselines"]
    with pytest.raises(MissingFactError, match="baselines is missing"):
        build_register_entry(facts, config)
    facts = _facts()
    facts["model"]["version"] = "TBD"
    with pytest.raises(MissingFactError, match="placeholder"):
        build_register_entry(facts, config)
    facts = _facts()
    facts["sources"][0]["files"][0]["sha256"] = "not-a-hash"
    with pytest.raises(MissingFactError, match="sha256"):
        build_model_card(facts)
    facts = _facts()
    facts["outcomes"][0]["metrics"]["r2"] = float("nan")
    with pytest.raises(MissingFactError, match="finite"):
        build_model_card(facts)


def test_register_renders_supplied_figures():
    config = load_register_config()
    assert config["concept"] is True and config["organisatie"] == "Gemeente {gemeente_naam}"
    entry = build_register_entry(_facts(), config)
    assert entry["organisatie"] == "Gemeente Assen"
    for field in (
        "naam", "korte_omschrijving", "organisatie", "thema", "status", "doel_en_impact", "afwegingen",
        "menselijke_tussenkomst", "risicobeheer", "wettelijke_basis", "gegevens", "technische_werking",
        "leverancier", "publicatiecategorie", "links", "contact",
    ):
        assert field in entry, field
    md = render_register_markdown(entry)
    js = register_json(entry)
    for text in (md, js):
        assert "50090NED" in text
        assert "a" * 64 in text
        assert "synthetic-run-0001" in text
        assert "LightGBM regressor" in text
        assert "moeite_met_rondkomen_pct" in text
        assert "TBD" not in text
    assert "CONCEPT" in md
    # Dutch figures in the Markdown (decimal comma), numbers in the JSON
    assert "| 0,612 |" in md and "| 0,441 |" in md and "0.612" not in md
    assert "0.6123" in js and "0.4411" in js
    parsed = json.loads(js)
    assert parsed["gegevens"]["bronnen"][1]["cbs_tabellen"] == ["50090NED"]
    assert parsed["gegevens"]["bronnen"][0]["jaren"] == [2020, 2022]
    assert parsed["technische_werking"]["validatie"][0]["basismodellen"]["linear"]["r2"] == 0.4411
    assert parsed["risicobeheer"]["maatregelen_in_deze_run"]["gebieden_onderdrukt_te_weinig_inwoners"] == 1
    # the generated documents must pass our own label check
    assert find_judgemental_labels([md, js]) == []


def test_register_config_not_concept_must_be_complete():
    config = copy.deepcopy(load_register_config())
    config["concept"] = False
    with pytest.raises(RegisterConfigError, match="contact"):
        build_register_entry(_facts(), config)


def test_model_card_contents():
    card = build_model_card(_facts(), load_register_config())
    for text in ("Intended use", "Out-of-scope", "Limitations", "Ethical considerations", "wijkanalyse",
                 "not causal", "*model estimates*", "baseline: mean", "baseline: linear", "0.612",
                 "0.099", "3177", "50090NED", "fewer than 50 inhabitants"):
        assert text in card, text
    assert find_judgemental_labels(card) == []


# ------------------------------------------------------------------------------------------------
# audit trail (tiny in-test Definitions)
# ------------------------------------------------------------------------------------------------


@dg.asset(code_version="src-v1")
def synthetic_source():
    """SYNTHETIC source asset."""
    return dg.Output(
        [1, 2, 3],
        metadata={"dagster/row_count": 3, "source_sha256": "c" * 64},
        data_version=dg.DataVersion("src-data-1"),
    )


@dg.asset(code_version="mart-v2")
def synthetic_mart(synthetic_source):
    return dg.Output([x * 2 for x in synthetic_source], metadata={"dagster/row_count": len(synthetic_source)})


@dg.asset_check(asset=synthetic_mart, description="values are positive")
def synthetic_mart_positive(synthetic_mart):
    return dg.AssetCheckResult(passed=all(x > 0 for x in synthetic_mart))


@pytest.mark.filterwarnings("ignore:Parameter `data_version`")
def test_audit_trail_and_lineage_report():
    with dg.DagsterInstance.ephemeral() as instance:
        _check_audit_trail_and_lineage_report(instance)


def _check_audit_trail_and_lineage_report(instance: dg.DagsterInstance) -> None:
    from wijk_assets.defs.reports.audit import AUDIT_COLUMNS, audit_trail_rows, lineage_report_markdown

    defs = dg.Definitions(assets=[synthetic_source, synthetic_mart], asset_checks=[synthetic_mart_positive])
    first = dg.materialize([synthetic_source, synthetic_mart, synthetic_mart_positive], instance=instance)
    second = dg.materialize([synthetic_source, synthetic_mart, synthetic_mart_positive], instance=instance)
    assert first.success and second.success

    graph = defs.resolve_asset_graph()
    rows = audit_trail_rows(
        instance, ["synthetic_source", dg.AssetKey("synthetic_mart")], check_keys=graph.asset_check_keys
    )
    assert list(rows.columns) == AUDIT_COLUMNS
    assert len(rows) == 4
    src = rows[rows.asset_key == "synthetic_source"]
    mart = rows[rows.asset_key == "synthetic_mart"]
    assert list(src["run_id"]) == [first.run_id, second.run_id]
    assert set(src["code_version"]) == {"src-v1"} and set(mart["code_version"]) == {"mart-v2"}
    assert set(src["data_version"]) == {"src-data-1"}
    assert json.loads(src["source_sha256"].iloc[0]) == {"source_sha256": "c" * 64}
    assert list(src["row_count"]) == [3, 3]
    assert mart["source_sha256"].isna().all()
    inputs = json.loads(mart["input_data_versions"].iloc[0])
    assert inputs == {"synthetic_source": "src-data-1"}
    assert mart["data_version"].notna().all()
    checks = json.loads(mart["checks"].iloc[1])
    assert checks[0]["check_name"] == "synthetic_mart_positive" and checks[0]["passed"] is True
    assert list(mart["checks_passed"]) == [True, True]
    assert src["checks_passed"].isna().all() and (src["n_checks"] == 0).all()
    assert pd.api.types.is_datetime64_any_dtype(rows["timestamp"])

    report = lineage_report_markdown(defs, instance)
    assert "`synthetic_source` → `synthetic_mart`" in report
    assert "src-v1" in report and "mart-v2" in report
    assert "synthetic_mart_positive" in report and "values are positive" in report
    assert "SUCCEEDED" in report and second.run_id in report
    assert "src-data-1" in report
    assert report.index("### `synthetic_source`") < report.index("### `synthetic_mart`")
    # default asset_keys = everything the instance knows
    assert len(audit_trail_rows(instance)) == 4


def test_audit_trail_records_failed_check():
    from wijk_assets.defs.reports.audit import audit_trail_rows, lineage_report_markdown

    @dg.asset(name="synthetic_mart")
    def failing_mart():
        return [-1]

    @dg.asset_check(asset="synthetic_mart", name="synthetic_mart_positive")
    def failing_check(synthetic_mart):
        return dg.AssetCheckResult(passed=False, description="negative value found")

    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize([failing_mart, failing_check], instance=instance)
        rows = audit_trail_rows(instance, ["synthetic_mart"])
        defs = dg.Definitions(assets=[failing_mart], asset_checks=[failing_check])
        report = lineage_report_markdown(defs, instance)
    assert list(rows["checks_passed"]) == [False] and list(rows["n_checks_failed"]) == [1]
    assert "FAILED" in report and "(source)" in report


def test_audit_trail_check_that_errored_is_not_silently_passed():
    from wijk_assets.defs.reports.audit import audit_trail_rows

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2022", "2023"]))
    def synthetic_partitioned():
        return 1

    @dg.asset_check(asset=synthetic_partitioned)
    def synthetic_crashing_check(synthetic_partitioned):
        raise RuntimeError("synthetic crash")

    defs = dg.Definitions(assets=[synthetic_partitioned], asset_checks=[synthetic_crashing_check])
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [synthetic_partitioned, synthetic_crashing_check],
            instance=instance,
            partition_key="2023",
            raise_on_error=False,
        )
        assert not result.success
        rows = audit_trail_rows(
            instance, ["synthetic_partitioned"], check_keys=defs.resolve_asset_graph().asset_check_keys
        )
    assert list(rows["partition"]) == ["2023"]
    checks = json.loads(rows["checks"].iloc[0])
    assert checks[0]["status"] == "EXECUTION_FAILED" and checks[0]["passed"] is None
    assert list(rows["checks_passed"]) == [False]


def test_the_word_prefilter_never_hides_a_banned_term():
    """Synthetic texts around every banned term (case, plural, compound, punctuation, long-s and Kelvin
    sign spellings): the prefiltered scan finds exactly what one regex search per term finds."""
    from wijk_assets.lib.responsible import stigma

    texts = []
    for term in stigma.BANNED_TERMS:
        for variant in (term, term.upper(), term.title(), term.replace(" ", "_"), term.replace(" ", "-")):
            texts += [variant, f"de {variant}en van de stad", f"({variant}s)", f"Een {variant}aanpak.",
                      f"the {variant} neighbourhood", f"{variant} wijken", f"x{variant}x",
                      variant.replace("s", "\u017f").replace("k", "\u212a")]
    texts += ["best scorende wijk", "The best 3", "no go zone", "worstenbroodje", "getto's", "Beste buurten"]
    for text in texts:
        prepared = stigma._prepare(text)
        plain = [t for t, p in stigma._COMPILED.items() if p.search(prepared)]
        assert stigma._terms_in(text, stigma._COMPILED) == plain, text
    assert sum(bool(stigma._terms_in(t, stigma._COMPILED)) for t in texts) > len(stigma.BANNED_TERMS)
