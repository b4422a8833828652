"""The wijkbeeld overview on SYNTHETIC data (four made-up wijken): the gemeente mean gives no hidden
wijk's score away, the order statement counts every wijk with a model outcome, and the overview
explains its gaps (figures that cannot be linked, no model outcome, a withheld model)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from wijk_assets.lib.wijkbeeld.data import GemeenteData, _reference_means
from wijk_assets.lib.wijkbeeld.model_text import order_text
from wijk_assets.lib.wijkbeeld.site import build_overview, build_wijk, suppressed_codes

DIMS = ("fys", "onv", "soc", "vrz", "won")


def _square(x0: float) -> str:
    ring = [[x0, 52.99], [x0 + 0.01, 52.99], [x0 + 0.01, 53.0], [x0, 53.0], [x0, 52.99]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def _data(*, small_inhabitants: int = 20, lbm_passed: bool = True) -> GemeenteData:
    """Gemeente GM9990 (synthetic): WK999001-03 linked to the Leefbaarometer by code, WK999001 with
    ``small_inhabitants`` inhabitants; WK999004 a new wijk whose older-layout figures cannot be linked."""
    codes = ["WK999001", "WK999002", "WK999003", "WK999004"]
    wijken = pd.DataFrame({
        "area_code": codes, "area_name": ["Klein", "Noord", "Zuid", "Nieuwbouw"],
        "geometry_geojson": [_square(6.5 + i / 50) for i in range(4)],
        "inhabitants": [small_inhabitants, 4000, 5000, 3000], "inhabitants_year": [2024] * 4,
        "inhabitants_table": ["85984NED"] * 4, "inhabitants_file": ["kwb.json"] * 4, "inhabitants_row": [1, 2, 3, 4],
        "source_file": ["grenzen.geojson"] * 4, "source_row": [1, 2, 3, 4], "boundary_year": [2025] * 4,
    })
    scores = {"WK999001": 4.60, "WK999002": 4.00, "WK999003": 3.90}
    lbm_rows = []
    for code, score in scores.items():
        for year in (2020, 2022):
            lbm_rows.append({"wijk_code": code, "year": year, "lbm": score + (0.01 if year == 2022 else 0.0),
                             "afw": score - 4.05, **{d: (score - 4.0) / 10 for d in DIMS},
                             "source_file": "lbm.csv", "source_row": len(lbm_rows) + 1})
    lbm = pd.DataFrame(lbm_rows)
    rows = lbm[["wijk_code", "year", "lbm", *DIMS]].copy()
    rows["page_code"] = rows["wijk_code"]  # the Leefbaarometer wijken keep their codes here
    rows["publish_suppressed"] = False
    rows["nl_lbm"] = 4.05
    for d in DIMS:
        rows[f"nl_{d}"] = 0.0
    links = pd.DataFrame({"area_code": codes, "lbm_wijk_code": codes[:3] + [None],
                          "lbm_wijk_name": ["Klein", "Noord", "Zuid", None], "lbm_layout_year": [2022, 2022, 2022, None],
                          "link_rule": ["exact_code_and_name"] * 3 + ["unlinked"]})
    comparison = pd.DataFrame([
        {"outcome": "lbm", "area_code": c, "outcome_year": 2022, "actual": scores[c] + 0.01, "predicted": scores[c],
         "lower": scores[c] - 0.1, "upper": scores[c] + 0.1, "nominal_coverage": 0.95, "flag": "within the expected range",
         "rank_min": rmin, "rank_max": rmax, "n_ranked": 2600, "model_version": "v1", "suppressed_reason": None}
        # Klein's rank range is not informative (not distinguishable from most wijken): no range
        for c, (rmin, rmax) in {"WK999001": (None, None), "WK999002": (100, 300), "WK999003": (2000, 2400)}.items()])
    gate = pd.DataFrame({"outcome": ["lbm"], "passed": [lbm_passed],
                         "problems": [None if lbm_passed else "withheld: not shown to beat the linear baseline"]})
    return GemeenteData(
        "GM9990", "Proefgemeente", wijken, pd.DataFrame(), lbm, _reference_means(rows, set()),
        pd.DataFrame(columns=["area_code", "feature", "year", "value"]), comparison,
        pd.DataFrame(columns=["outcome", "area_code", "side", "rank", "feature"]), pd.DataFrame(), gate, pd.DataFrame(), links=links, lbm_reference_rows=rows)


def _links(data: GemeenteData) -> dict[str, str]:
    return {c: f"{c}.html" for c in data.wijken["area_code"]}


def test_the_gemeente_mean_gives_no_hidden_wijk_score_away():
    data = _data()
    assert suppressed_codes(data, 50) == {"WK999001"}
    overview = build_overview(data, 50, _links(data))
    # the mean of the two wijken shown (4,01 and 3,91), not of all three: with Klein's 4,61 in it, the
    # mean and the shown wijken's differences from it would give Klein's score away
    assert overview["gem_lbm"] == "3,96"
    shown = {r["code"]: r for r in overview["rows"] if not r["suppressed"]}
    assert shown["WK999002"]["vs_gemeente"] == "+0,050" and shown["WK999003"]["vs_gemeente"] == "−0,050"
    assert any("telt de wijk die te klein is om te tonen niet mee" in n for n in overview["table_notes"])
    # the charts of a shown wijk compare it with the same mean, year by year
    page = build_wijk(data, "WK999002", 50, _links(data))
    total = next(c for c in page["lbm_charts"] if c["key"] == "lbm")
    assert "4,61" not in total["svg"] and "3,96" in total["svg"]
    # with Klein big enough to be shown, it counts again and no note is needed
    big = build_overview(_data(small_inhabitants=800), 50, _links(data))
    assert big["gem_lbm"] == "4,18" and not any("te klein" in n for n in big["table_notes"])
    # three wijken with a model outcome, three pairs; only Noord and Zuid have rank ranges that do not overlap
    assert big["next"]["order_text"].startswith("Bij 1 van de 3 paren wijken met een modeluitkomst")


def test_the_overview_explains_unlinked_wijken_and_missing_or_withheld_model_outcomes():
    data = _data(small_inhabitants=800)
    data.comparison = data.comparison[data.comparison["area_code"] != "WK999003"].reset_index(drop=True)
    overview = build_overview(data, 50, _links(data))
    notes = " ".join(overview["table_notes"])
    assert "1 wijk met alleen “–”" in notes and "Nieuwbouw" in notes
    assert "“geen modeluitkomst” (1 wijk)" in notes  # Zuid: linked, scored, no model row
    assert any("Nieuwbouw" in n and "zonder signalen" in n for n in overview["next_notes"])
    withheld = build_overview(_data(small_inhabitants=800, lbm_passed=False), 50, _links(data))
    assert any(n.startswith("Model niet gepubliceerd: niet aangetoond") for n in withheld["table_notes"])
    assert {r["model"] for r in withheld["rows"] if r["code"] != "WK999004"} == {"model niet gepubliceerd"}


@pytest.mark.parametrize(("codes", "ranges", "expected"), [
    ([], {}, "Er zijn geen gepubliceerde modeluitkomsten"),
    (["A"], {"A": (1, 5)}, "Er is maar één wijk met een gepubliceerde modeluitkomst"),
    # only two of ten have a rank range: one pair of 45 can be ordered, the other 44 cannot
    (list("ABCDEFGHIJ"), {"A": (1, 5), "B": (10, 20)}, "Bij 1 van de 45 paren wijken met een modeluitkomst laat "
                                                        "de onzekerheid een volgorde toe; bij de andere 44 niet."),
    (["A", "B"], {"A": (1, 15), "B": (10, 20)}, "De onzekerheid laat geen volgorde toe"),
])
def test_the_order_statement_counts_every_wijk_with_a_model_outcome(codes, ranges, expected):
    assert order_text(codes, ranges).startswith(expected)


def test_the_signal_count_is_spelled_in_dutch(tmp_path):
    """'2 signalen', '1 signaal' (the page said '2 signaalen')."""
    from wijk_assets.lib.wijkbeeld.site import write_site

    data = _data(small_inhabitants=800)
    # Zuid: below the gemeente and Nederland, and lower than its features predict: two signals
    data.comparison.loc[data.comparison["area_code"] == "WK999003", "flag"] = "lower than its indicators predict"
    html = write_site(data, tmp_path, min_inhabitants=50).index.read_text(encoding="utf-8")
    assert "2 signalen" in html and "signaalen" not in html


def test_the_map_source_names_the_year_of_the_boundaries_drawn(tmp_path):
    """The source line under the maps said 'Wijk- en buurtkaart 2024' whatever boundaries were drawn."""
    from wijk_assets.lib.wijkbeeld.site import write_site

    site = write_site(_data(small_inhabitants=800), tmp_path, min_inhabitants=50)
    for page in (site.index, *site.wijk_pages.values()):
        html = page.read_text(encoding="utf-8")
        assert "Wijk- en buurtkaart 2025" in html and "buurtkaart 2024" not in html, page.name


def test_nederland_is_the_mean_of_all_wijken_in_each_year_not_the_fixed_reference_level(monkeypatch):
    """The pages drew 'Nederland' as lbm − afw (4.10 in every year of the real file) and the dimensions'
    'Nederland' as 0: afw and the dimensions are deviations from a reference level that is FIXED over the
    years, while the mean of the wijken rose. A wijk that kept pace with a rising country looked like it
    held its own, and "gedaald ten opzichte van Nederland" measured the wijk's own change."""
    from wijk_assets.lib.wijkbeeld import charts

    data = _data(small_inhabitants=800)
    rows = data.lbm_reference_rows
    # synthetic: the country's mean rises by 0,05 from 2020 to 2022, its mean fys from −0,020 to +0,030;
    # Noord rises by 0,01 (4,00 -> 4,01), so it falls 0,04 behind; Zuid keeps pace (3,90 -> 3,95). afw
    # stays as the fixture has it (the same in both years: the old drift was 0 for every wijk)
    rows["nl_lbm"] = rows["year"].map({2020: 4.05, 2022: 4.10})
    for frame in (data.lbm, rows):
        frame.loc[(frame["wijk_code"] == "WK999003") & (frame["year"] == 2022), "lbm"] = 3.95
    rows["nl_fys"] = rows["year"].map({2020: -0.02, 2022: 0.03})
    data.lbm_reference = _reference_means(rows, set())
    overview = build_overview(data, 50, _links(data))
    assert overview["nl_lbm"] == "4,10"
    noord = next(r for r in overview["rows"] if r["code"] == "WK999002")
    assert noord["vs_nl"] == "−0,090"  # 4,01 − 4,10
    assert any("ten opzichte van Nederland gedaald sinds 2020 (−0,040)" in s for s in noord["signals"]), noord["signals"]
    zuid = next(r for r in overview["rows"] if r["code"] == "WK999003")
    assert not any("gedaald" in s for s in zuid["signals"]), zuid["signals"]
    drawn = {}
    monkeypatch.setattr(charts, "line_chart", lambda series, **kw: drawn.setdefault(kw["chart_id"], series) and "<svg/>")
    page = build_wijk(data, "WK999002", 50, _links(data))
    assert drawn["lbm-lbm"]["Nederland"] == [(2020, 4.05), (2022, 4.10)]
    assert drawn["lbm-fys"]["Nederland"] == [(2020, -0.02), (2022, 0.03)]
    fys = next(c for c in page["lbm_charts"] if c["key"] == "fys")
    assert "gemiddelde van alle wijken in Nederland" in fys["source"] and "Nederland = 0" not in fys["source"]
