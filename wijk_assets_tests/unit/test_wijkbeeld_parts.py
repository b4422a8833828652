"""Wijkbeeld building blocks on SYNTHETIC inputs: Dutch number format, Dutch labels, the SVG map (one
shape per area, colours, hover text), the rank-order statement and the withheld-model wording."""

from __future__ import annotations

import json

import pandas as pd

from wijk_assets.lib.wijkbeeld import svgmap
from wijk_assets.lib.wijkbeeld.fmt import nl_int, nl_number, nl_pct
from wijk_assets.lib.wijkbeeld.labels import feature_label_nl
from wijk_assets.lib.wijkbeeld.model_text import _ranges_overlap, expected_text, withheld_reason


def test_dutch_number_format():
    assert nl_number(4.0334, 2) == "4,03"
    assert nl_number(12345.6, 0) == "12.346"
    assert nl_int(367947) == "367.947"
    assert nl_number(0.0712, 3, sign=True) == "+0,071"
    assert nl_number(-0.0712, 3, sign=True) == "−0,071"
    assert nl_number(-0.0001, 3) == "0,000"  # no "minus zero"
    assert nl_number(None) == "–" and nl_number(float("nan"), missing="x") == "x"
    assert nl_pct(36.66) == "36,7%"


def test_dutch_labels_never_fall_back_to_english_sentences():
    assert feature_label_nl("pct_obese__65plus") == "ernstig overgewicht (obesitas), 65 jaar en ouder"
    assert feature_label_nl("bu_max__pct_chronic_condition__18plus").startswith("hoogste buurtwaarde in de wijk van: ")
    assert feature_label_nl("dist_train_station_km") == "afstand tot treinstation (km)"
    assert feature_label_nl("unknown_concept") == "unknown_concept"  # the code, not an English label


def _square(x0: float, y0: float, size: float = 0.01) -> str:
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def test_map_draws_one_shape_per_area_with_values_on_hover():  # synthetic squares near Assen
    geometries = {"WK1": _square(6.55, 52.99), "WK2": _square(6.56, 52.99), "WK3": json.dumps(
        {"type": "MultiPolygon", "coordinates": [json.loads(_square(6.57, 52.99))["coordinates"],
                                                 json.loads(_square(6.59, 52.99))["coordinates"]]})}
    names = {"WK1": "Noord", "WK2": "Zuid", "WK3": "Oost"}
    ind = svgmap.Indicator("lbm", "Totaalscore", {"WK1": 4.0, "WK2": 4.2, "WK3": None},
                           {"WK1": "4,00", "WK2": "4,20", "WK3": "te klein om te tonen"})
    svg = svgmap.render_map(geometries, names, [ind])
    assert svg.count("<path ") == 3  # a MultiPolygon is one shape (one path with two rings)
    assert "Noord — Totaalscore: 4,00" in svg and "Oost — Totaalscore: te klein om te tonen" in svg
    assert f'data-fill-lbm="{svgmap.NO_VALUE}"' in svg  # no value -> grey, never a class colour
    assert svgmap.PALETTE[0] in svg and svgmap.PALETTE[-1] in svg  # lowest and highest class


def test_rank_order_and_model_wording():
    assert _ranges_overlap((1, 10), (5, 20)) and not _ranges_overlap((1, 4), (5, 20))
    row = pd.Series({"predicted": 4.1234, "lower": 3.98, "upper": 4.27, "nominal_coverage": 0.95})
    assert expected_text(row) == "verwacht 4,12 (95%-interval 3,98 – 4,27)"
    assert "lineair" in withheld_reason("withheld: not shown to beat the linear baseline")


def test_the_inhabitants_source_line_names_the_releases_the_figures_come_from():
    """SYNTHETIC wijken. The overview named "Kerncijfers wijken en buurten 2024 (85984NED)" whatever the
    figures' release was, and a wijk page printed "(None)" for a KWB file without a CBS table id."""
    from types import SimpleNamespace

    from wijk_assets.lib.wijkbeeld.site import inhabitants_sources, kwb_source

    assert kwb_source(2024.0, "85984NED") == "CBS, Kerncijfers wijken en buurten 2024 (85984NED)"
    assert kwb_source(2025, None) == "CBS, Kerncijfers wijken en buurten 2025"
    assert kwb_source(float("nan"), "") == "CBS, Kerncijfers wijken en buurten"
    wijken = pd.DataFrame({
        "inhabitants": [100.0, 200.0, None, 300.0],
        "inhabitants_year": [2025.0, 2024.0, 2023.0, 2025.0],
        "inhabitants_table": [None, "85984NED", "85984NED", float("nan")],
    })
    assert inhabitants_sources(SimpleNamespace(wijken=wijken)) == (
        "CBS, Kerncijfers wijken en buurten 2024 (85984NED); CBS, Kerncijfers wijken en buurten 2025")
    assert inhabitants_sources(SimpleNamespace(wijken=wijken.iloc[2:3])) == "niet bekend"
