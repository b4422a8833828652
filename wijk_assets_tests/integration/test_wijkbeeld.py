"""Wijkbeeld on the REAL shared data: the pages an omgevingsregisseur opens.

One module fixture materialises the raw tables, the dbt project and the ``lbm`` outcome (model, gate 3,
explanations, published tables) into a tmp DuckDB, with ``reports/wijkbeeld`` for Assen (GM0106) in the
same run, then the wijkbeeld alone for Utrecht (GM0344). Then:

- the folder holds the overview and one page per wijk under their official names; Utrecht's pages carry
  the municipality's own survey; the asset's metadata links the pages and previews the overview;
- numbers on the pages equal the DuckDB tables they come from (a sample); suppressed wijken show
  "te klein om te tonen" and none of their figures; no judgement label in the page text;
- in real headless Chromium from ``file://`` with the network blocked: no console error, no failed or
  outside request, one map shape per wijk, every chart present, a PNG screenshot written.
"""

from __future__ import annotations

from dataclasses import replace

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from wijk_assets.definitions import build_definitions
from wijk_assets.keys import WIJKBEELD_KEY
from wijk_assets.lib.responsible.stigma import find_judgemental_labels
from wijk_assets.lib.wijkbeeld.data import NoWijkenError, load_gemeente
from wijk_assets.lib.wijkbeeld.fmt import nl_int, nl_number, nl_pct
from wijk_assets.lib.wijkbeeld.site import NOT_LINKED, OTHER_GEMEENTE_LAYOUT, SUPPRESSED, build_wijk, write_site
from wijk_assets.runner.materialize import materialize_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

ASSEN = {"WK010600": "Centrum", "WK010601": "Lariks", "WK010602": "Noorderpark", "WK010603": "Assen-Oost",
         "WK010604": "Pittelo", "WK010605": "Assen-West", "WK010606": "Peelo", "WK010607": "Marsdijk",
         "WK010608": "Kloosterveen", "WK010699": "Buitengebied"}
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def built(lbm_warehouse):
    """The shared lbm build (integration/conftest.py: pages for Assen, the gemeente in focus), plus
    Utrecht's pages from the same warehouse with definitions built for it (the settings route a run uses)."""
    settings, instance, root = lbm_warehouse["settings"], lbm_warehouse["instance"], lbm_warehouse["root"]
    assen_event = instance.get_latest_materialization_event(WIJKBEELD_KEY)
    utrecht = build_definitions(replace(settings, gemeente="GM0344"))
    assert materialize_keys(utrecht, instance, [WIJKBEELD_KEY], None, trigger="test").success
    site = root / "reports" / "wijkbeeld"
    return {"db": lbm_warehouse["db"], "root": root, "site": site,
            "assen_metadata": assen_event.asset_materialization.metadata}


@pytest.fixture(scope="module")
def con(built):
    connection = duckdb.connect(str(built["db"]), read_only=True)
    yield connection
    connection.close()


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def page_text(path: Path) -> list[str]:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.parts


def _row(html: str, code: str) -> str:
    match = re.search(rf'<tr data-code="{code}">(.*?)</tr>', html, re.S)
    assert match, f"no table row for {code}"
    return match.group(1)


# ------------------------------------------------------------------------------------------ pages


def test_assen_overview_and_ten_wijk_pages(built):
    folder = built["site"] / "GM0106"
    assert (folder / "index.html").is_file()
    pages = sorted(p.stem for p in folder.glob("WK*.html"))
    assert pages == sorted(ASSEN)
    for code, name in ASSEN.items():
        html = (folder / f"{code}.html").read_text(encoding="utf-8")
        assert '<html lang="nl">' in html
        assert f"<h1>{name}</h1>" in html
    index = (folder / "index.html").read_text(encoding="utf-8")
    for code, name in ASSEN.items():
        assert f'<a href="{code}.html">{name}</a>' in index
    assert "Welke wijk als volgende?" in index
    # nothing outside the folder: no http(s) address in a src/href, no CDN, no web font
    for page in folder.glob("*.html"):
        assert not re.search(r'(?:src|href)="(?:https?:)?//', page.read_text(encoding="utf-8")), page.name


def test_asset_metadata_links_pages_and_previews_overview(built):
    meta = built["assen_metadata"]
    assert meta["index"].value.endswith("wijkbeeld/GM0106/index.html")
    assert set(meta["wijk_pages"].value) == set(ASSEN.values())
    assert meta["n_wijk_pages"].value == 10
    preview = meta["overview"].value
    assert preview.startswith("**Wijkbeeld Assen**") and "| Pittelo |" in preview


def test_pages_are_rendered_again_only_when_their_inputs_or_files_changed(built, lbm_warehouse):
    """Same inputs, same pages: a second materialisation keeps the pages (not rewritten), one after a page
    was removed renders them again, identical to before; switching gemeente renders."""
    settings, instance = lbm_warehouse["settings"], lbm_warehouse["instance"]
    assen = build_definitions(settings)

    def run():
        assert materialize_keys(assen, instance, [WIJKBEELD_KEY], None, trigger="test").success
        return instance.get_latest_materialization_event(WIJKBEELD_KEY).asset_materialization.metadata

    first = run()  # the last materialisation was Utrecht's (fixture): other inputs, so rendered
    assert first["rendered"].value is True
    pages = {Path(p): sha for p, sha in first["pages_sha256"].value.items()}
    assert len(pages) == 11 and all(p.is_file() for p in pages)
    written = {p: p.stat().st_mtime_ns for p in pages}

    second = run()
    assert second["rendered"].value is False
    assert second["inputs_version"].value == first["inputs_version"].value
    assert {p: p.stat().st_mtime_ns for p in pages} == written  # not written again
    assert second["overview"].value == first["overview"].value and second["n_wijk_pages"].value == 10

    lariks = next(p for p in pages if p.name == "WK010601.html")
    lariks.unlink()
    third = run()
    assert third["rendered"].value is True and lariks.is_file()
    assert third["pages_sha256"].value == first["pages_sha256"].value  # the same bytes as before


def test_utrecht_pages_include_the_survey(built):
    folder = built["site"] / "GM0344"
    pages = list(folder.glob("WK*.html"))
    assert len(pages) >= 10
    for page in [folder / "index.html", *pages]:
        html = page.read_text(encoding="utf-8")
        assert 'id="enquete"' in html and "Inwonersenquête van de gemeente" in html, page.name
    assert 'id="enquete"' not in (built["site"] / "GM0106" / "index.html").read_text(encoding="utf-8")


def test_gemeente_without_wijken_is_a_clear_error(con):
    with pytest.raises(NoWijkenError, match="GM9999.*WIJK_GEMEENTE"):
        load_gemeente(con, "GM9999")


# ------------------------------------------------------------------------------------------ numbers


def test_numbers_on_the_pages_equal_the_warehouse(built, con):
    folder = built["site"] / "GM0106"
    index = (folder / "index.html").read_text(encoding="utf-8")
    latest = con.execute("SELECT max(year) FROM marts.fct_liveability_outcomes").fetchone()[0]
    for code in ("WK010600", "WK010604", "WK010699"):
        lbm = con.execute("SELECT lbm FROM marts.fct_liveability_outcomes WHERE wijk_code = ? AND year = ?",
                          [code, latest]).fetchone()[0]
        inhabitants = con.execute(
            "SELECT value FROM marts.fct_area_feature_values WHERE area_code = ? AND feature = 'inhabitants' "
            "ORDER BY year DESC LIMIT 1", [code]).fetchone()[0]
        row = _row(index, code)
        assert f'data-col="lbm">{nl_number(lbm, 2)}<' in row
        assert f">{nl_int(inhabitants)}<" in row
        page = (folder / f"{code}.html").read_text(encoding="utf-8")
        assert f"<strong>{nl_int(inhabitants)}</strong> inwoners" in page
        # a health figure of the latest published year, next to the gemeente's and the national one
        feature, year, value = con.execute(
            "SELECT feature, year, value FROM marts.fct_area_feature_values WHERE area_code = ? "
            "AND feature = 'pct_smokers__18plus' AND value IS NOT NULL ORDER BY year DESC LIMIT 1", [code]).fetchone()
        health_row = re.search(rf'<tr data-feature="{feature}">(.*?)</tr>', page, re.S).group(1)
        assert f">{nl_pct(value)}<" in health_row
        # the model's published score and expected value
        actual, predicted = con.execute(
            "SELECT actual, predicted FROM publish.area_comparison WHERE outcome = 'lbm' AND area_code = ?",
            [code]).fetchone()
        assert f"<strong>{nl_number(actual, 2)}</strong>" in page
        assert f"verwacht {nl_number(predicted, 2)}" in page


def test_publisher_suppression_is_shown_as_not_published(con, tmp_path):
    """A health cell the publisher suppressed reads "niet gepubliceerd", never blank, never a number.

    The only suppressed 18+ cell of a shown, published wijk in the national data is Schiedam's WK060605
    (2020), and that code is "Nieuw Mathenesse" in the health layout but "Kethel" in 2024: its page says
    the figure cannot be assigned (links.py). The rendering of a suppression is then checked on Assen's
    real data with one cell marked suppressed (a synthetic edit, labelled as such)."""
    rows = con.execute(
        "SELECT f.area_code, d.gemeente_code, f.feature, f.year FROM marts.fct_area_feature_values f "
        "JOIN marts.dim_area d USING (area_code) JOIN publish.area_comparison p ON p.area_code = f.area_code "
        "AND p.outcome = 'lbm' AND p.suppressed_reason IS NULL "
        "WHERE f.area_level = 'wijk' AND f.source = 'rivm_gezondheid' AND ends_with(f.feature, '__18plus') "
        "AND f.missing_reason = 'suppressed' AND f.area_code IN (SELECT area_code FROM intermediate.int_wijk_geometry) "
        "ORDER BY f.area_code, f.feature, f.year").fetchall()
    assert ("WK060605", "GM0606", "pct_alcohol_drinkers__18plus", 2020) in rows
    schiedam = load_gemeente(con, "GM0606")
    assert schiedam.links.set_index("area_code").loc["WK060605", "link_rule"] == "unlinked"
    kethel = build_wijk(schiedam, "WK060605", 50, {c: f"{c}.html" for c in schiedam.wijken["area_code"]})
    assert _health_cell(kethel, "pct_alcohol_drinkers__18plus", 2020) == NOT_LINKED

    data = load_gemeente(con, "GM0106")
    code, feature, year = "WK010604", "pct_smokers__18plus", int(data.health["year"].max())
    cell = (data.health["area_code"] == code) & (data.health["feature"] == feature) & (data.health["year"] == year)
    assert cell.sum() == 1 and data.health.loc[cell, "value"].notna().all()
    data.health = data.health.copy()
    data.health.loc[cell, ["value", "missing_reason"]] = [None, "suppressed"]  # synthetic: as the publisher writes it
    site = write_site(data, tmp_path / "GM0106", min_inhabitants=50)
    page = site.wijk_pages[code].read_text(encoding="utf-8")
    years = [int(y) for y in re.findall(r'<th class="num" colspan="3">(\d{4})</th>', page)]
    cells = re.findall(r'<td class="num"[^>]*>([^<]*)</td>',
                       re.search(rf'<tr data-feature="{feature}">(.*?)</tr>', page, re.S).group(1))
    assert cells[3 * years.index(year)] == "niet gepubliceerd"


def test_suppressed_wijken_show_no_figure(con, tmp_path):
    small = con.execute(
        "SELECT area_code, gemeente_code, actual FROM publish.area_comparison "
        "WHERE outcome = 'lbm' AND suppressed_reason IS NOT NULL "
        "AND area_code IN (SELECT area_code FROM intermediate.int_wijk_geometry) ORDER BY area_code LIMIT 1").fetchone()
    assert small is not None, "expected at least one suppressed wijk in publish.area_comparison"
    code, gemeente, _ = small
    lbm = con.execute("SELECT lbm FROM marts.fct_liveability_outcomes WHERE wijk_code = ? ORDER BY year DESC LIMIT 1",
                      [code]).fetchone()
    site = write_site(load_gemeente(con, gemeente), tmp_path / gemeente, min_inhabitants=50)
    page = site.wijk_pages[code].read_text(encoding="utf-8")
    assert SUPPRESSED in page
    assert "<h2>Leefbaarometer</h2>" not in page and 'id="gezondheid"' not in page and "inwoners (" not in page
    index = site.index.read_text(encoding="utf-8")
    assert SUPPRESSED in _row(index, code)
    assert not re.search(r"\d,\d", re.sub(r"<[^>]+>", " ", _row(index, code)))  # no figure in its row
    path = re.search(rf'<path [^>]*data-code="{code}"[^>]*>(.*?)</path>', index, re.S)
    assert path and SUPPRESSED in path.group(1)
    if lbm and lbm[0] is not None:
        assert nl_number(lbm[0], 2) not in _row(index, code)


def test_no_judgement_labels_in_the_page_text(built):
    for page in built["site"].rglob("*.html"):
        hits = find_judgemental_labels(page_text(page))
        assert not hits, f"{page}: {hits[:5]}"


# ------------------------------------------------------------------------------------------ browser


def _browser_or_skip():
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (CI=true): apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium); not in CI")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("playwright (python) is not installed (CI=true): pip install playwright")
        pytest.skip("playwright (python) is not installed; not in CI")
    return sync_playwright


def test_pages_render_offline_in_headless_chromium(built, tmp_path):
    sync_playwright = _browser_or_skip()
    folder = built["site"] / "GM0106"
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        outside: list[str] = []

        def only_files(route):
            if route.request.url.startswith("file://"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_files)
        for page_path in [folder / "index.html", *sorted(folder.glob("WK*.html"))]:
            page = context.new_page()
            errors, failed = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(page_path.as_uri(), wait_until="load")
            assert not errors and not failed and not outside, (page_path.name, errors, failed, outside)
            if page_path.name == "index.html":
                assert page.locator("#kaart path.wijk").count() == len(ASSEN)
                assert page.locator("#kaart text.label").count() == len(ASSEN)
                assert page.locator("#wijktabel tbody tr").count() == len(ASSEN)
                before = page.locator("#kaart path.wijk").first.get_attribute("fill")
                page.select_option("#indicator", "verandering")  # recolour by the change since an earlier year
                after = [page.locator("#kaart path.wijk").nth(i).get_attribute("fill") for i in range(len(ASSEN))]
                expected = [page.locator("#kaart path.wijk").nth(i).get_attribute("data-fill-verandering")
                            for i in range(len(ASSEN))]
                assert after == expected and before is not None
                assert page.locator('.legenda[data-key="verandering"]').is_visible()
                assert not errors
            else:
                assert page.locator("#locator path.wijk").count() == len(ASSEN)
                assert page.locator("#locator path.gekozen").count() == 1
                assert page.locator("svg.grafiek").count() == 6  # totaalscore + 5 dimensies
                for chart in page.locator("svg.grafiek").all():
                    box = chart.bounding_box()
                    assert box and box["width"] > 200 and box["height"] > 100
                assert page.locator("#gezondheid tbody tr").count() > 10
                assert page.locator("section.model").count() == 6
            shot = shots / f"{page_path.stem}.png"
            page.screenshot(path=str(shot), full_page=page_path.name == "index.html")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
            page.close()
        browser.close()
    print(f"wijkbeeld screenshots: {shots}")


def test_comparable_wijken_are_published_neighbours_in_feature_space(built, con):
    from wijk_assets.lib.wijkbeeld.comparable import N_NEAREST, nearest_wijken

    tables = {f"{s}.{t}" for s, t in con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
    near = nearest_wijken(con, ["WK010604"], tables)
    assert len(near) == N_NEAREST
    assert "WK010604" not in set(near["other_code"])
    assert list(near["distance"]) == sorted(near["distance"])
    published = con.execute(
        "SELECT area_code, actual FROM publish.area_comparison WHERE outcome = 'lbm' AND suppressed_reason IS NULL"
    ).df().set_index("area_code")["actual"]
    page = (built["site"] / "GM0106" / "WK010604.html").read_text(encoding="utf-8")
    table = re.search(r'<table id="vergelijkbaar".*?</table>', page, re.S).group(0)
    for r in near.itertuples(index=False):
        assert r.other_code in published.index  # never a suppressed wijk
        assert f"<td>{r.other_name}</td>" in table and f"{nl_number(published[r.other_code], 2)} (" in table


def _health_cell(context: dict, feature: str, year: int) -> str:
    row = next(h for h in context["health"] if h["feature"] == feature)
    return row["cells"][context["health_years"].index(year)]["wijk"]


def test_a_renumbered_gemeente_shows_the_figures_of_the_wijk_with_the_same_name(con):
    """Amsterdam renumbered all its wijken (2024: WK0363AD Burgwallen-Nieuwe Zijde; the Leefbaarometer,
    the models and the 2020 health layout: WK036301). Matched by code, every Amsterdam page said "niet
    gemeten" for all health figures and showed no Leefbaarometer score and no model result."""

    data = load_gemeente(con, "GM0363")
    rules = data.links.set_index("area_code")["link_rule"]
    assert (rules == "name_within_gemeente").sum() >= 70 and (rules == "exact").sum() == 0
    link = data.links.set_index("area_code").loc["WK0363AD"]
    assert (link["lbm_wijk_code"], link["lbm_wijk_name"]) == ("WK036301", "Burgwallen-Nieuwe Zijde")

    page = build_wijk(data, "WK0363AD", 50, {c: f"{c}.html" for c in data.wijken["area_code"]})
    assert "WK036301" in page["link_note"] and "Burgwallen-Nieuwe Zijde" in page["link_note"]
    feature, value = con.execute(
        "SELECT feature, value FROM marts.fct_area_feature_values WHERE source = 'rivm_gezondheid' AND year = 2020 "
        "AND area_code = 'WK036301' AND feature LIKE '%__18plus' AND value IS NOT NULL ORDER BY feature LIMIT 1").fetchone()
    assert _health_cell(page, feature, 2020) == nl_pct(value)
    lbm_2022 = con.execute("SELECT lbm FROM marts.fct_liveability_outcomes WHERE wijk_code = 'WK036301' AND year = 2022").fetchone()[0]
    chart = next(c for c in page["lbm_charts"] if c["key"] == "lbm")
    assert "rij" in chart["lineage"] and "geen score" not in chart["lineage"]
    assert data.lbm.loc[(data.lbm["wijk_code"] == "WK0363AD") & (data.lbm["year"] == 2022), "lbm"].item() == pytest.approx(lbm_2022)
    published = con.execute("SELECT actual FROM publish.area_comparison WHERE area_code = 'WK036301' AND outcome = 'lbm'").fetchone()
    lbm_section = next(m for m in page["models"] if m["outcome"] == "lbm")
    assert lbm_section["published"] and published is not None and nl_number(published[0], 2) in lbm_section["score"]


def test_a_reused_code_does_not_show_the_health_figures_of_another_area(con):
    """Almere's WK003402 is the small "De Werven" in the 2024 and Leefbaarometer layouts but a district of
    Almere Haven in the 2020 health layout (the harmonisation finds no evidence it is the same area). The
    page showed that district's figures as De Werven's; it now shows its Leefbaarometer scores and says the
    health figures cannot be assigned."""

    assert con.execute(
        "SELECT DISTINCT unmatched_reason FROM intermediate.int_area_code_harmonisation "
        "WHERE source = 'rivm_gezondheid' AND lbm_wijk_code = 'WK003402'").fetchall() == [("code_reused_area_unproven",)]
    data = load_gemeente(con, "GM0034")
    assert data.links.set_index("area_code").loc["WK003402", "link_rule"] == "exact_code_and_name"
    page = build_wijk(data, "WK003402", 50, {c: f"{c}.html" for c in data.wijken["area_code"]})
    other = dict(con.execute(
        "SELECT feature, value FROM marts.fct_area_feature_values WHERE source = 'rivm_gezondheid' AND year = 2020 "
        "AND area_code = 'WK003402' AND feature LIKE '%__18plus' AND value IS NOT NULL").fetchall())
    assert len(other) > 10
    cells = {h["feature"]: _health_cell(page, h["feature"], 2020) for h in page["health"]}
    assert set(cells.values()) == {NOT_LINKED} and page["not_linked"]
    assert not data.lbm[data.lbm["wijk_code"] == "WK003402"].empty  # its own Leefbaarometer scores stay

    # a gemeente formed after the Leefbaarometer's layout: its wijken are found under the former gemeenten
    voorne = load_gemeente(con, "GM1992")
    linked = voorne.links.set_index("area_code")
    assert (linked.loc["WK199200", "lbm_wijk_code"], linked.loc["WK199200", "link_rule"]) == ("WK053000", "name_within_gemeente")
    assert (linked["link_rule"] == "name_within_gemeente").sum() >= 15
    assert not voorne.lbm[voorne.lbm["wijk_code"] == "WK199200"].empty and not voorne.lbm_reference.empty
    # The health monitor's layouts predate the 2023 merger: the gemeente column said "niet gemeten" ("not asked
    # that year"); it was asked, under the former gemeenten. The wijk's own figures come through its link.
    assert not con.execute("SELECT count(*) FROM marts.fct_area_feature_values WHERE source = 'rivm_gezondheid' "
                           "AND area_code = 'GM1992'").fetchone()[0]
    hellevoet = build_wijk(voorne, "WK199200", 50, {c: f"{c}.html" for c in voorne.wijken["area_code"]})
    cells = [c for h in hellevoet["health"] for c in h["cells"]]
    assert cells and {c["gemeente"] for c in cells} == {OTHER_GEMEENTE_LAYOUT} and hellevoet["gemeente_other_layout"]
    assert sum(c["wijk"][0].isdigit() for c in cells) > 10  # the wijk's own percentages

    assen = load_gemeente(con, "GM0106")  # same codes in every layout: linked by code, as before
    assert set(assen.links["link_rule"]) == {"exact"} and len(assen.links) == len(ASSEN)
    assert not build_wijk(assen, "WK010600", 50, {c: f"{c}.html" for c in assen.wijken["area_code"]})["gemeente_other_layout"]
