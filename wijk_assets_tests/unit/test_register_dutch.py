"""The register entry is Dutch text for the municipality: decimal commas and thousands dots, Dutch names
instead of codes and English fragments, a readable feature summary, a deduplicated file list that names
no other gemeente, and a clear error for a code that is not a gemeente.

Everything here is SYNTHETIC (made-up metrics, hashes, file names and features), except the model texts
of the reports asset, which are read from its source.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import duckdb
import pytest

from wijk_assets.lib.responsible.model_sources import files_with_gemeente, mark_files_with_gemeente
from wijk_assets.lib.responsible.register import (
    MODEL_TEXT_NL,
    MissingFactError,
    UnknownGemeenteError,
    build_model_card,
    build_register_entry,
    load_register_config,
    outcome_facts,
    population_source_nl,
    register_json,
    render_register_markdown,
)

ASSETS = Path(__file__).resolve().parents[2] / "wijk_assets" / "defs" / "reports" / "assets.py"
LBM_FILE = "leefbaarometer/lbm_synthetic_2002-2022.csv"


def _metrics(lgb: float, ridge: float) -> dict:
    """SYNTHETIC stored metrics of a model run (the layout of ml.model_runs.metrics)."""
    return {
        "grouped_cv": {
            "lightgbm": {"r2": lgb, "mae": 0.0231, "rmse": 0.0362},
            "ridge": {"r2": ridge, "mae": 0.0242, "rmse": 0.0364},
            "mean": {"r2": -0.0091, "mae": 0.0291, "rmse": 0.0421},
        },
        "temporal": {"test_year": 2022, "unseen_gemeenten": {
            "n_test": 1532, "lightgbm": {"r2": 0.2431}, "ridge": {"r2": 0.3201}, "mean": {"r2": -0.003}}},
    }


def _gate(verdict: str, margin: float, lower: float, upper: float) -> dict:
    return {"verdict": verdict, "reason": "" if verdict == "published" else "withheld: not shown to beat ridge",
            "margin": margin, "lower": lower, "upper": upper, "level": 0.9, "method": "bootstrap", "rule": "lower > 0"}


def _file(path: str, char: str, covers: bool | None = None) -> dict:
    f = {"path": path, "sha256": char * 64}
    if covers is not None:
        f["covers_gemeente"] = covers
    return f


def _facts(model_texts: dict | None = None) -> dict:
    """SYNTHETIC run facts shaped like the reports asset's run_facts (file names made up; the describing
    files include one of 'another gemeente', GM0344 Utrecht, and the outcome file twice)."""
    features = ["bu_max__pct_smokers__65plus", "bu_sd__pct_smokers__18plus", "gm__pct_lonely__18plus",
                "n_buurten", "pct_lonely__18_64", "pct_smokers__18plus"]
    return {
        "run_id": "synthetic-run-nl", "code_version": "synthetic", "generated_at": "2026-12-04T00:00:00+00:00",
        "gemeente": "GM1900", "gemeente_name": "Súdwest-Fryslân", "area_level": "wijk", "classification_year": 2022,
        "sources": [
            {"name": "leefbaarometer", "role": "uitkomst", "title": "Leefbaarometer 3.0 scores per wijk",
             "publisher": "Ministerie van BZK", "licence": "open data (BZK)", "cbs_table_ids": [],
             "years": [2020, 2022], "files": [_file(LBM_FILE, "a")]},
            {"name": "rivm_gezondheid", "role": "kenmerken", "title": "Gezondheid per wijk en buurt",
             "publisher": "RIVM, GGD GHOR Nederland, CBS", "licence": "CC BY 4.0", "cbs_table_ids": ["50090NED"],
             "years": [2020], "files": [_file("rivm/gezondheid_2020_18plus.xlsx", "b"),
                                        _file("rivm/gezondheid_2020_65plus.xlsx", "c")],
             "features": [f for f in features if f != "n_buurten"]},
        ],
        "context_sources": [
            {"name": "leefbaarometer", "title": "Leefbaarometer 3.0 scores per wijk", "publisher": "Ministerie van BZK",
             "licence": "open data (BZK)", "cbs_table_ids": [], "years": [2002], "files": [_file(LBM_FILE, "a", True)]},
            {"name": "cbs_kwb", "title": "Kerncijfers wijken en buurten", "publisher": "CBS", "licence": "CC BY 4.0",
             "cbs_table_ids": ["85984NED"], "years": [2023, 2024],
             "files": [_file("cbs_kwb/kwb-2023_gm0344_utrecht.xlsx", "d", False),
                       _file("cbs_kwb/kwb_2024_national.json", "e", True)]},
            {"name": "cbs_nabijheid", "title": "Nabijheid voorzieningen", "publisher": "CBS", "licence": "CC BY 4.0",
             "cbs_table_ids": ["85231ENG"], "years": [2021],
             "files": [_file("cbs_nabijheid/nabijheid_2021_aa_en_hunze_sample.csv", "f")]},  # coverage not recorded
        ],
        "model": model_texts or {"type": "LightGBM gradient-boosted regression trees, one model per outcome",
                                 "version": "fys=02abc5f37ea10307, lbm=1a896fd02cf35c0e",
                                 "library": "lightgbm 4.7.0",
                                 "explainer": "TreeSHAP via LightGBM pred_contrib (checked equal to shap.TreeExplainer)",
                                 "trained_on": "all Dutch wijken with a Leefbaarometer score, outcome years with "
                                               "features at most 4 years older"},
        "outcomes": [
            outcome_facts("fys", "physical environment", _metrics(0.2591, 0.2612), 10291,
                          _gate("withheld", -0.0027, -0.0359, 0.0294)),
            outcome_facts("lbm", "total score", _metrics(0.6601, 0.6381), 15626, _gate("published", 0.0219, 0.0085, 0.0351)),
        ],
        "features": features,
        "sensitive_opt_in": [],
        "suppression": {"min_inhabitants": 50, "min_respondents": 10, "n_areas": 2610, "n_suppressed_population": 24,
                        "n_suppressed_signal": 0, "n_population_unknown": 132,
                        "population_source": "cbs_kwb 2024 (85984NED): 2478 areas"},
    }


def _render(facts: dict) -> tuple[dict, str, str]:
    entry = build_register_entry(facts, load_register_config())
    return entry, render_register_markdown(entry), register_json(entry)


def _table(markdown: str, header_start: str) -> list[str]:
    """The lines of the Markdown table whose header starts with ``header_start``."""
    lines = markdown.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    out = []
    for line in lines[i:]:
        if not line.startswith("|"):
            break
        out.append(line)
    return out


# -- 1. numbers ------------------------------------------------------------------------------------


def test_validation_and_gate_figures_have_decimal_commas_and_thousands_dots():
    entry, md, js = _render(_facts())
    table = _table(md, "| uitkomst | model of basismodel")
    assert table[0] == "| uitkomst | model of basismodel | R² | RMSE | MAE | R² nieuw jaar | n |"
    assert "| Fysieke omgeving | model (LightGBM) | 0,259 | 0,036 | 0,023 | 0,243 | 10.291 |" in table
    assert "| Fysieke omgeving | basismodel: gemiddelde | -0,009 | 0,042 | 0,029 | -0,003 | 10.291 |" in table
    assert "| Leefbaarometer totaalscore | basismodel: lineair (ridge) | 0,638 |" in "\n".join(table)
    gate = _table(md, "| uitkomst | oordeel")
    assert ("| Fysieke omgeving | achtergehouden | niet aangetoond dat het model beter voorspelt dan het lineaire "
            "basismodel: marge -0,0027 R² boven het lineaire basismodel (ridge), 90%-interval -0,0359 tot +0,0294 |") in gate
    for line in table + gate:
        assert not re.search(r"\d\.\d", line.replace("10.291", "").replace("15.626", "")), line
    assert "(n = 1.532 wijken)" in md
    measures = [line for line in md.splitlines() if line.startswith("  - **gebieden")]
    assert "  - **gebieden totaal**: 2.610" in measures and "  - **gebieden inwonertal bekend**: 2.478" in measures
    # the counts are national, and the entry says so before them (they read as the gemeente's own otherwise)
    explained = md.index("  - **toelichting gebieden**: gebieden: alle wijken in de gepubliceerde tabellen")
    assert explained < md.index("  - **gebieden totaal**")
    # the JSON keeps machine-readable numbers numeric
    parsed = json.loads(js)
    fys = parsed["technische_werking"]["validatie"][0]
    assert fys["model"]["r2"] == 0.2591 and fys["aantal_gebieden"] == 10291
    assert fys["kwaliteitspoort"]["interval"] == [-0.0359, 0.0294]
    assert parsed["risicobeheer"]["maatregelen_in_deze_run"]["gebieden_totaal"] == 2610
    # the model card (for the data team) stays English with decimal points
    card = build_model_card(_facts())
    assert "| fys | model: LightGBM | 0.259 |" in card


# -- 2. Dutch, not English or codes ------------------------------------------------------------------


ENGLISH = ("gradient-boosted", "one model per outcome", "checked equal", "all Dutch wijken", "years older",
           "areas", "r2_temporal", "| r2 |", "| rmse |", "basismodel: ridge", "basismodel: mean", "| fys |",
           "| lbm |", "withheld", "not shown")


def test_entry_has_no_english_fragments_or_outcome_codes():
    entry, md, js = _render(_facts())
    for fragment in ENGLISH:
        assert fragment not in md, fragment
    tw = entry["technische_werking"]
    for text in (tw["modeltype"], tw["uitleg"], tw["getraind_op"], tw["validatie"][0]["validatiemethode"],
                 entry["risicobeheer"]["maatregelen_in_deze_run"]["bron_inwonertal"], *tw["achtergehouden_uitkomsten"]):
        for fragment in ENGLISH:
            assert fragment not in text, (fragment, text)
    assert tw["modeltype"].startswith("LightGBM: een regressiemodel van beslisbomen")
    assert tw["modelversie"] == "Fysieke omgeving: 02abc5f37ea10307; Leefbaarometer totaalscore: 1a896fd02cf35c0e"
    assert tw["achtergehouden_uitkomsten"][0].startswith("Fysieke omgeving: niet aangetoond")
    assert (entry["risicobeheer"]["maatregelen_in_deze_run"]["bron_inwonertal"]
            == "Kerncijfers wijken en buurten 2024 (CBS-tabel 85984NED): 2.478 gebieden")
    for line in _table(md, "| uitkomst | model of basismodel") + _table(md, "| uitkomst | oordeel"):
        assert not re.match(r"\| (fys|lbm|onv|soc|vrz|won) \|", line), line
    # the sources table and the describing list give titles, not catalog keys
    assert "| leefbaarometer |" not in md and "(cbs_kwb;" not in md


def test_the_reports_asset_model_texts_all_have_a_dutch_wording():
    """The model texts run_facts writes (English, for the model card) are read from its source, so a new
    wording there without a Dutch one here fails instead of reaching the entry in English."""
    tree = ast.parse(ASSETS.read_text(encoding="utf-8"))
    run_facts = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_facts")
    texts = {}
    for node in ast.walk(run_facts):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if (isinstance(key, ast.Constant) and key.value in ("type", "explainer", "trained_on")
                        and isinstance(value, ast.Constant)):
                    texts[key.value] = value.value
    assert set(texts) == {"type", "explainer", "trained_on"}
    for key, text in texts.items():
        assert text in MODEL_TEXT_NL, (key, text)


def test_population_source_in_dutch():
    titles = {"cbs_kwb": "Kerncijfers wijken en buurten"}
    assert (population_source_nl("cbs_kwb 2024 (85984NED): 3,300 areas; cbs_kwb 2023: 12 areas", titles)
            == "Kerncijfers wijken en buurten 2024 (CBS-tabel 85984NED): 3.300 gebieden; "
               "Kerncijfers wijken en buurten 2023: 12 gebieden")
    assert population_source_nl("none: no inhabitants known for the published areas", titles).startswith("geen:")


# -- 3. features ----------------------------------------------------------------------------------


def test_features_are_summarised_in_dutch_not_listed_as_codes():
    entry, md, js = _render(_facts())
    block = md[md.index("- **Kenmerken**"):md.index("- **Gevoelige indicatoren")]
    assert "__" not in block and "pct_" not in block
    assert block.startswith("- **Kenmerken**: 6\n")
    assert "  - per bron: Gezondheid per wijk en buurt: 5; afgeleid uit de gebiedsindeling: 1" in block
    assert ("  - per soort: cijfer van de wijk zelf: 2; cijfer van de hele gemeente: 1; hoogste buurtwaarde in de "
            "wijk: 1; spreiding tussen de buurten in de wijk: 1; aantal buurten in de wijk: 1") in block
    assert "  - onderwerpen (2): eenzaam; rookt" in block
    assert "  - leeftijdsgroepen: 65 jaar en ouder; 18 jaar en ouder; 18–64 jaar" in block
    assert "marts.feature_catalog" in block and "modelkaart" in block
    # the full list stays machine-readable in the JSON and in the model card
    assert json.loads(js)["technische_werking"]["kenmerken"] == _facts()["features"]
    assert "bu_max__pct_smokers__65plus" in build_model_card(_facts())


# -- 4. files -------------------------------------------------------------------------------------


def test_file_list_names_each_model_file_once_and_no_other_gemeente():
    entry, md, js = _render(_facts())
    files = md[md.index("Bestanden die het model voeden"):md.index("## Technische werking")]
    assert files.count(LBM_FILE) == 1  # the outcome file: feeding years and describing years, listed once
    for path in ("rivm/gezondheid_2020_18plus.xlsx", "rivm/gezondheid_2020_65plus.xlsx"):
        assert f"`{path}` - `" in files
    # a describing file with rows of this gemeente: named, apart from the model's files
    describing = files[files.index("Geladen bestanden met gegevens van de gemeente Súdwest-Fryslân"):]
    assert "`cbs_kwb/kwb_2024_national.json` - `" + "e" * 64 + "`" in describing
    # another gemeente's file and one whose coverage was not recorded: counted, not named
    for text in (md, js):
        assert "utrecht" not in text.lower() and "gm0344" not in text.lower() and "hunze" not in text.lower()
    assert ("Daarnaast is 1 geladen bestand niet bij naam genoemd: het voedt het model niet en bevat geen "
            "gegevens van de gemeente Súdwest-Fryslân.") in files
    assert "- Kerncijfers wijken en buurten: 1 bestand" in files
    assert "de run heeft niet vastgelegd of het gegevens van de gemeente Súdwest-Fryslân bevat" in files
    # ... but their sha256 stays in the JSON for provenance
    other = json.loads(js)["gegevens"]["overige_geladen_bestanden"]
    assert sorted(f["sha256"] for f in other) == ["d" * 64, "f" * 64]
    assert all("pad" not in f for f in other)


def test_files_with_gemeente_reads_the_raw_area_codes(tmp_path):
    """SYNTHETIC raw tables: a national file, one gemeente's sample and one with only buurten of GM1900."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.cbs_kwb AS SELECT * FROM (VALUES ('national.json', 'WK190001'), "
                "('national.json', 'GM0344'), ('gm0344_utrecht.xlsx', 'WK034401'), ('buurten.csv', 'BU19000101'), "
                "('gm0190.csv', 'WK019001')) t(source_file, area_code)")
    covering = files_with_gemeente(con, ["cbs_kwb"], "GM1900")
    assert covering == {"cbs_kwb": {"national.json", "buurten.csv"}}
    assert files_with_gemeente(con, ["cbs_kwb"], "Assen") == {"cbs_kwb": set()}
    marked = mark_files_with_gemeente([{"name": "cbs_kwb", "files": [{"path": "national.json", "sha256": "e" * 64},
                                                                     {"path": "gm0344_utrecht.xlsx", "sha256": "d" * 64}]}],
                                      covering)
    assert [f["covers_gemeente"] for f in marked[0]["files"]] == [True, False]


# -- 5. unknown gemeente --------------------------------------------------------------------------


def test_an_unknown_gemeente_code_is_a_clear_error():
    facts = _facts()
    facts["gemeente"] = "GM9999"
    del facts["gemeente_name"]  # what run_facts gives when marts.dim_area has no such area
    with pytest.raises(UnknownGemeenteError) as info:
        build_register_entry(facts, load_register_config())
    message = str(info.value)
    assert "'GM9999' is not a gemeente in the loaded data" in message
    assert "marts.dim_area" in message and "like GM0106" in message and "WIJK_GEMEENTE" in message
    assert isinstance(info.value, MissingFactError)  # callers catching the old error still do
    with pytest.raises(UnknownGemeenteError, match="GM9999"):
        build_model_card(facts, load_register_config())
    facts["gemeente"] = "Assen"
    with pytest.raises(UnknownGemeenteError, match="'Assen' is not a CBS gemeente code"):
        build_register_entry(facts, load_register_config())
