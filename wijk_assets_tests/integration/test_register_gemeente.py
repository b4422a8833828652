"""The register entry and model card speak of the gemeente in focus only (issue 15), and list exactly the
sources that feed the model.

Gemeente names, codes, source titles and file hashes are REAL (the 2024 wijk boundaries file, the
catalogued shared files); the model metrics are SYNTHETIC (no model is trained here).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from wijk_assets.lib.sources.catalog import find_source_files, load_catalog
from wijk_assets.lib.responsible.model_sources import (
    base_feature,
    context_source_years,
    model_source_years,
    sources_of_features,
)
from wijk_assets.lib.responsible.register import (
    MissingFactError,
    RegisterConfigError,
    build_model_card,
    build_register_entry,
    fill_template,
    load_register_config,
    register_json,
    render_register_markdown,
)
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import sha256_file


@pytest.fixture(scope="module")
def official_gemeenten(shared_data_dir) -> dict[str, str]:
    """GM code -> official 2024 name, from the real wijk boundaries (CBS/Kadaster)."""
    extract = read_source_file(find_source_files("cbs_wijkgrenzen", shared_data_dir)[0])
    rows = extract.frame[extract.frame["measure_key"] == "gemeentecode"]
    names = dict(zip(rows["value_raw"], rows["gemeente_name"]))
    names.pop("GM0998", None)  # 'Buitenland': not a gemeente
    assert len(names) == 342
    return names


def _source_fact(shared_data_dir, name: str, years: list[int], role: str) -> dict:
    spec = load_catalog()[name]
    files = [f for f in find_source_files(name, shared_data_dir) if f.filename_year in years or f.filename_year is None]
    return {
        "name": name,
        "role": role,
        "title": spec.title,
        "publisher": spec.publisher,
        "licence": spec.licence,
        "cbs_table_ids": sorted({f.cbs_table_id for f in files if f.cbs_table_id}),
        "years": years,
        "files": [{"path": f.relative_path, "sha256": sha256_file(f.path)} for f in files],
    }


def _facts(shared_data_dir, gemeente: str, name: str) -> dict:
    """Real sources and names; SYNTHETIC metrics and run ids."""
    return {
        "run_id": "synthetic-run",
        "code_version": "synthetic",
        "generated_at": "2026-12-02T00:00:00+00:00",
        "gemeente": gemeente,
        "gemeente_name": name,
        "area_level": "wijk",
        "classification_year": 2022,
        "sources": [
            _source_fact(shared_data_dir, "leefbaarometer", [2014, 2016, 2018, 2020, 2022], "uitkomst"),
            _source_fact(shared_data_dir, "rivm_gezondheid", [2012, 2016, 2020], "kenmerken"),
        ],
        "context_sources": [
            _source_fact(shared_data_dir, "cbs_kwb", [2024], "kenmerken"),
            _source_fact(shared_data_dir, "cbs_wijkgrenzen", [2024], "kenmerken"),
        ],
        "model": {"type": "LightGBM (synthetic facts)", "version": "synthetic"},
        "outcomes": [{
            "outcome": "lbm", "validation": "5-fold grouped by gemeente", "n_areas": 3000,
            "metrics": {"r2": 0.5}, "baselines": {"ridge": {"r2": 0.4}, "mean": {"r2": 0.0}},
        }],
        "features": ["pct_good_health__18plus", "gm__pct_lonely__18plus"],
        "sensitive_opt_in": [],
        "suppression": {
            "min_inhabitants": 50, "min_respondents": 10, "n_areas": 29, "n_suppressed_population": 1,
            "n_suppressed_signal": 0, "n_population_unknown": 2,
            "population_source": "cbs_kwb 2024 (85984NED): 27 areas",
        },
    }


def _documents(facts: dict) -> list[str]:
    config = load_register_config()
    entry = build_register_entry(facts, config)
    return [render_register_markdown(entry), register_json(entry), build_model_card(facts, config)]


def _names_in(text: str, names: dict[str, str]) -> set[str]:
    """Official gemeente names that occur in ``text`` as whole words (case-sensitive, as names are)."""
    return {n for n in names.values() if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)}


@pytest.mark.parametrize(("gemeente", "expected"), [("GM0344", "Utrecht"), ("GM0106", "Assen"), ("GM0363", "Amsterdam")])
def test_reports_name_only_the_gemeente_in_focus(shared_data_dir, official_gemeenten, gemeente, expected):
    name = official_gemeenten[gemeente]
    assert name == expected
    documents = _documents(_facts(shared_data_dir, gemeente, name))
    register_md, register_js, card = documents
    assert f"Gemeente {name}" in register_md and f"Gemeente {name} ({gemeente})" in card
    assert json.loads(register_js)["organisatie"] == f"Gemeente {name}"
    assert f"door de gemeente {name}" in register_md  # the concept sentence
    for text in documents:
        assert _names_in(text, official_gemeenten) == {name}, gemeente
        assert "{" + "gemeente_naam}" not in text
    if gemeente != "GM0106":
        assert not any("Assen" in text for text in documents)


def test_register_lists_the_feeding_sources_apart_from_the_describing_ones(shared_data_dir, official_gemeenten):
    facts = _facts(shared_data_dir, "GM0344", official_gemeenten["GM0344"])
    register_md, register_js, card = _documents(facts)
    entry = json.loads(register_js)
    assert [s["bron"] for s in entry["gegevens"]["bronnen"]] == ["leefbaarometer", "rivm_gezondheid"]
    assert [s["bron"] for s in entry["gegevens"]["alleen_beschrijvend"]] == ["cbs_kwb", "cbs_wijkgrenzen"]
    # the short description names the feature source from the run, not a fixed list of themes
    assert "Gezondheid per wijk en buurt" in entry["korte_omschrijving"]
    assert "voorzieningen" not in entry["korte_omschrijving"] and "wonen" not in entry["korte_omschrijving"]
    assert "85984NED" in register_md and "Loaded but not a model input" in card
    # per-rule suppression counts and where the inhabitants came from
    measures = entry["risicobeheer"]["maatregelen_in_deze_run"]
    assert measures["gebieden_onderdrukt_te_weinig_inwoners"] == 1
    assert measures["gebieden_onderdrukt_signaal_bron"] == 0
    assert measures["gebieden_inwonertal_bekend"] == 27
    assert measures["bron_inwonertal"] == "Kerncijfers wijken en buurten 2024 (CBS-tabel 85984NED): 27 gebieden"
    assert "Rule 1, real inhabitants (27 of 29 areas, from cbs_kwb 2024" in card


def test_a_gemeente_without_an_official_name_is_refused(shared_data_dir):
    facts = _facts(shared_data_dir, "GM0344", "Utrecht")
    del facts["gemeente_name"]
    with pytest.raises(MissingFactError, match="gemeente_naam"):
        build_register_entry(facts, load_register_config())
    with pytest.raises(RegisterConfigError, match="unknown placeholder"):
        fill_template("Gemeente {gemeentenaam}", {"gemeente_naam": "Utrecht"}, "organisatie")


def test_model_sources_follow_the_features_synthetic():
    """SYNTHETIC catalog: which sources a model's features come from, with the years training used."""
    catalog = pd.DataFrame({
        "feature": ["pct_good_health__18plus", "dist_gp_km", "inhabitants"],
        "source": ["rivm_gezondheid", "cbs_nabijheid", "cbs_kwb"],
    })
    features = ["pct_good_health__18plus", "gm__pct_good_health__18plus", "bu_sd__dist_gp_km", "n_buurten",
                "nb_mean__pct_good_health__18plus"]
    assert base_feature("bu_sd__dist_gp_km") == "dist_gp_km"
    assert sources_of_features(features, catalog) == {
        "cbs_nabijheid": ["bu_sd__dist_gp_km"],
        "cbs_wijkgrenzen": ["nb_mean__pct_good_health__18plus"],
        "rivm_gezondheid": ["gm__pct_good_health__18plus", "nb_mean__pct_good_health__18plus", "pct_good_health__18plus"],
    }
    years = pd.DataFrame({"source": ["rivm_gezondheid", "rivm_gezondheid", "cbs_nabijheid", "cbs_kwb"],
                          "source_year": [2016, 2020, 2021, 2023]})
    feeding = model_source_years(features, catalog, years, "leefbaarometer", [2018, 2020, 2022],
                                 structural_years={"cbs_wijkgrenzen": [2024]})
    assert [(s["name"], s["role"], s["years"]) for s in feeding] == [
        ("leefbaarometer", "uitkomst", [2018, 2020, 2022]),
        ("cbs_nabijheid", "kenmerken", [2021]),
        ("cbs_wijkgrenzen", "kenmerken", [2024]),
        ("rivm_gezondheid", "kenmerken", [2016, 2020]),
    ]
    # kwb was loaded but no model feature comes from it: it only describes the present
    loaded = {"cbs_kwb": [2023, 2024], "rivm_gezondheid": [2012, 2016, 2020], "leefbaarometer": [2002, 2018]}
    assert context_source_years(loaded, feeding) == {
        "cbs_kwb": [2023, 2024], "rivm_gezondheid": [2012], "leefbaarometer": [2002],
    }
    with pytest.raises(ValueError, match="not in marts.feature_catalog"):
        sources_of_features(["mystery_column"], catalog)
