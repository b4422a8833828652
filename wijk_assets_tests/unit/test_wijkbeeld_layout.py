"""Wijkbeeld layout on SYNTHETIC inputs (a made-up gemeente GM9999 of small squares near Assen): the phone
style rules and the scroll boxes around wide tables, map colours that are always a legend colour (one
wijk, equal values, two values, no value), map labels inside the map and not on top of each other, and
chart legends that fit their chart. The browser check at phone width is in the integration tier
(integration/test_wijkbeeld_phone.py)."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from wijk_assets.lib.wijkbeeld import charts, svgmap
from wijk_assets.lib.wijkbeeld.data import GemeenteData
from wijk_assets.lib.wijkbeeld.site import write_site

# ----------------------------------------------------------------------------------- synthetic input


def _square(x0: float, y0: float, size: float = 0.01) -> str:
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def _synthetic_gemeente(n_categories: int = 14) -> GemeenteData:
    """Two wijken with age shares and a survey table with many answer categories (as wide as Utrecht's)."""
    codes, names = ["WK999901", "WK999902"], ["Noord", "Zuid"]
    wijken = pd.DataFrame({
        "area_code": codes, "area_name": names, "geometry_geojson": [_square(6.50, 53.0), _square(6.51, 53.0)],
        "inhabitants": [5000, 6000], "inhabitants_year": [2024, 2024],
        "source_file": ["synthetic_boundaries.geojson"] * 2, "source_row": [1, 2], "boundary_year": [2024] * 2,
        "inhabitants_table": ["synthetic"] * 2, "inhabitants_file": ["synthetic_kwb.json"] * 2,
        "inhabitants_row": [1, 2]})
    ages = pd.DataFrame([{"area_code": c, "age_key": k, "pct": 20.0, "source_file": "synthetic_kwb.json",
                          "source_row": 1} for c in codes for k in ("0_15", "15_25", "25_45", "45_65", "65plus")])
    survey = pd.DataFrame([{"survey": "synthetic", "indicator": "tevredenheid_woonomgeving",
                            "category": f"antwoordcategorie {i}", "area_label": f"Subwijk {name}",
                            "value_pct": 7.0, "is_suppressed": False, "year": 2023,
                            "source_file": "synthetic_survey.csv", "source_row": i}
                           for name in names for i in range(n_categories)])
    empty = pd.DataFrame()
    return GemeenteData("GM9999", "Synthetisch", wijken, ages, empty, empty, empty, empty, empty, empty, empty,
                        survey)


class _TableWrappers(HTMLParser):
    """Per <table> (by id or class) the classes of the elements around it."""

    VOID = {"meta", "br", "img", "input", "hr", "link", "source", "wbr", "col", "area", "base", "embed"}

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.tables: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            key = attrs.get("id") or attrs.get("class") or f"table{len(self.tables)}"
            self.tables[key] = [cls for _tag, cls in self.stack]
        if tag not in self.VOID:
            self.stack.append((tag, attrs.get("class") or ""))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def _style(html: str) -> str:
    return re.search(r"<style>(.*?)</style>", html, re.S).group(1)


# ------------------------------------------------------------------------------------- phone layout


@pytest.fixture(scope="module")
def synthetic_site(tmp_path_factory):
    return write_site(_synthetic_gemeente(), tmp_path_factory.mktemp("wijkbeeld_synthetic"), min_inhabitants=50)


def test_map_and_legend_stack_on_a_phone_but_not_in_print(synthetic_site):
    for page in [synthetic_site.index, *synthetic_site.wijk_pages.values()]:
        style = _style(page.read_text(encoding="utf-8"))
        phone = re.search(r"@media screen and \(max-width: (\d+)px\) \{(.*?)\} \}", style, re.S)
        assert phone, f"{page.name}: no phone rule"
        assert 600 <= int(phone.group(1)) <= 800  # a phone (390 px) and a small tablet, not a laptop
        rules = phone.group(2)
        assert re.search(r"\.kop, \.kaartblok \{ display: block; \}", rules)  # map above its legend/text
        assert "grid-template-columns: minmax(0, 1fr)" in rules  # one chart per row, never wider than the page
        assert re.search(r"h1, [^{]*\.bron \{ overflow-wrap: anywhere;", rules)  # long names and file names break
        # the wide layout (side by side) stays the default; print keeps its own rule
        assert re.search(r"\.kop \{ display: flex;", style) and re.search(r"\.kaartblok \{ display: flex;", style)
        assert re.search(r"@media print \{ \.kaartblok, \.kop \{ display: block; \}", style)


def test_every_table_scrolls_in_its_own_box(synthetic_site):
    pages = [synthetic_site.index, *synthetic_site.wijk_pages.values()]
    seen = set()
    for page in pages:
        html = page.read_text(encoding="utf-8")
        parser = _TableWrappers()
        parser.feed(html)
        assert parser.tables, page.name
        for table, around in parser.tables.items():
            seen.add(table)
            assert {"breed", "rol"} & set(" ".join(around).split()), f"{page.name}: table {table} is not in a scroll box"
    assert {"wijktabel", "gezondheid", "leeftijd", "enquete"} <= seen  # the synthetic site has each kind
    style = _style(synthetic_site.index.read_text(encoding="utf-8"))
    assert re.search(r"\.rol \{ overflow-x: auto;", style) and re.search(r"\.breed \{ overflow-x: auto;", style)


# ------------------------------------------------------------------------------------------ colours


def _fills_are_legend_colours(values: dict[str, float | None]) -> tuple[dict[str, str], list]:
    fills, legend = svgmap.classify(values)
    shown = {colour for _lo, _hi, colour in legend}
    for code, value in values.items():
        if value is None or math.isnan(value):
            assert fills[code] == svgmap.NO_VALUE, code
        else:
            assert fills[code] in shown, (code, fills[code], legend)
    return fills, legend


@pytest.mark.parametrize("values", [
    {"WK1": 4.506},  # a gemeente of one wijk (Vlieland, Schiermonnikoog)
    {"WK1": 4.2, "WK2": 4.2, "WK3": None},  # equal values
    {"WK1": 4.2, "WK2": 4.2 + 1e-15},  # equal up to the float's last bit (a mean of means)
    {"WK1": -0.03, "WK2": float("nan"), "WK3": -0.03},  # a dimension (negative), with NaN
])
def test_one_value_gets_the_one_legend_colour(values):
    fills, legend = _fills_are_legend_colours(values)
    assert len(legend) == 1 and legend[0][2] == svgmap.PALETTE[2]


def test_two_values_are_the_lightest_and_darkest_class_and_no_value_is_grey():
    fills, legend = _fills_are_legend_colours({"WK1": 3.9, "WK2": 4.3, "WK3": None})
    assert [c for _lo, _hi, c in legend] == list(svgmap.PALETTE)
    assert (fills["WK1"], fills["WK2"], fills["WK3"]) == (svgmap.PALETTE[0], svgmap.PALETTE[-1], svgmap.NO_VALUE)
    fills, legend = _fills_are_legend_colours({"WK1": None, "WK2": float("nan")})
    assert legend == [] and set(fills.values()) == {svgmap.NO_VALUE}


def test_single_wijk_map_colour_is_the_legend_swatch():
    ind = svgmap.Indicator("lbm", "Totaalscore", {"WK1": 4.506}, {"WK1": "4,51"})
    svg = svgmap.render_map({"WK1": _square(4.9, 53.25)}, {"WK1": "Vlieland"}, [ind])
    [(colour, text)] = svgmap.legends([ind], lambda v: f"{v:.3f}")["lbm"]
    assert text == "4.506 – 4.506"
    assert re.search(r'<path class="wijk"[^>]* fill="([^"]+)"', svg).group(1) == colour
    assert f'data-fill-lbm="{colour}"' in svg


# ------------------------------------------------------------------------------------------- labels


def _labels(svg: str) -> tuple[float, float, list[tuple[str, float, float]]]:
    width, height = map(float, re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())
    labels = [(name, float(x), float(y)) for x, y, name in
              re.findall(r'<text class="label" x="([^"]+)" y="([^"]+)" text-anchor="middle">([^<]*)</text>', svg)]
    return width, height, labels


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_stay_inside_the_map():
    # a row of three wijken; the eastern one has a long name at the map's right edge (as Boarnsterhim in
    # De Fryske Marren, clipped to "Wijk 19 Boarnsterhir"), the western one at the left edge
    geometries = {"WK1": _square(6.50, 53.0), "WK2": _square(6.60, 53.0), "WK3": _square(6.70, 53.0)}
    names = {"WK1": "Recreatiestrook Brielse Maas West", "WK2": "Midden", "WK3": "Wijk 19 Boarnsterhim en omgeving"}
    svg = svgmap.render_map(geometries, names, [])
    width, height, labels = _labels(svg)
    assert {n for n, _x, _y in labels} == set(names.values())  # room for all three: all drawn
    for name, x, y in labels:
        left, top, right, bottom = svgmap.label_box(name, x, y, svgmap.LABEL_HALO)
        assert 0 <= left and right <= width and 0 <= top and bottom <= height, (name, left, right, width)
    assert "data-labels-omitted" not in svg


def test_a_crowded_map_draws_only_labels_that_do_not_overlap():
    # 110 small wijken with long names on one map, as Amsterdam's
    geometries, names = {}, {}
    for i in range(110):
        code = f"WK{i:04d}"
        geometries[code] = _square(4.80 + (i % 11) * 0.012, 52.30 + (i // 11) * 0.008, 0.011)
        names[code] = f"Synthetische buurt {i} en omgeving"
    svg = svgmap.render_map(geometries, names, [])
    width, height, labels = _labels(svg)
    assert 0 < len(labels) < 110
    assert f'data-labels-omitted="{110 - len(labels)}"' in svg
    boxes = [svgmap.label_box(n, x, y) for n, x, y in labels]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] and a[2] <= width
        for b in boxes[i + 1:]:
            assert not _overlap(a, b), (a, b)
    assert svg.count("<path ") == 110 and svg.count("<title>") == 110  # every wijk keeps its shape and name


def test_overview_says_when_names_are_left_off_the_map(tmp_path):
    data = _synthetic_gemeente()
    site = write_site(data, tmp_path / "roomy", min_inhabitants=50)
    assert "Niet elke wijknaam past" not in site.index.read_text(encoding="utf-8")
    codes = [f"WK9999{i:02d}" for i in range(60)]
    data.wijken = pd.DataFrame({
        "area_code": codes, "area_name": [f"Synthetische buurt {i} en omgeving" for i in range(60)],
        "geometry_geojson": [_square(6.5 + (i % 10) * 0.011, 53.0 + (i // 10) * 0.007) for i in range(60)],
        "inhabitants": 1000, "inhabitants_year": 2024, "source_file": "synthetic_boundaries.geojson",
        "source_row": range(60), "boundary_year": 2024, "inhabitants_table": "synthetic", "inhabitants_file": "synthetic_kwb.json",
        "inhabitants_row": range(60)})
    data.ages = data.ages.iloc[0:0]
    site = write_site(data, tmp_path / "crowded", min_inhabitants=50)
    index = site.index.read_text(encoding="utf-8")
    assert "data-labels-omitted=" in index and "wijkpagina. Niet elke wijknaam\npast leesbaar" in index


# ------------------------------------------------------------------------------------------- charts


def test_chart_legend_fits_the_chart():
    short = ["Pittelo", "gemiddelde wijken Assen", "Nederland"]
    assert charts.fitting_legend_labels(short) == short  # unchanged when it fits
    long = ["Nieuwendammerdijk/Buiksloterdijk", "gemiddelde wijken Amsterdam", "Nederland"]
    room = charts.FIGSIZE[0] * 72
    assert charts._legend_width(long) > room  # one row would be cut at both sides of the chart
    fitted = charts.fitting_legend_labels(long)
    assert charts._legend_width(fitted) <= room
    assert fitted[0] == "Nieuwendammerdijk/\nBuiksloterdijk" and [t.replace("\n", " ") for t in fitted[1:]] == long[1:]
    svg = charts.line_chart({long[0]: [(2002, 4.1), (2022, 4.2)], long[1]: [(2002, 4.0), (2022, 4.1)],
                             long[2]: [(2002, 4.1), (2022, 4.1)]}, title="Totaalscore", chart_id="t")
    assert "Buiksloterdijk" in svg and "Nieuwendammerdijk/" in svg
