"""Wijkbeeld on the REAL shared data, on a phone: Assen's and Utrecht's pages (Utrecht with its own survey
table, the widest) opened in headless Chromium at 390 px wide, as test_wijkbeeld.py opens them at 1280.

- no page is wider than the screen (document.documentElement.scrollWidth <= 390): wide tables scroll in
  their own box, long names and file names break;
- the map stands above its legend (overview) or the text (wijk page) at the full width, instead of being
  squeezed beside it;
- at 1280 px the map still stands beside its legend (the wide layout is unchanged);
- map labels lie inside the map and do not overlap.

The checks (``phone_layout_problems``) also run on pages built elsewhere (a national warehouse).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wijk_assets.lib.wijkbeeld.data import load_gemeente
from wijk_assets.lib.wijkbeeld.site import write_site
from wijk_assets_tests.integration.test_wijkbeeld import CHROMIUM, _browser_or_skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

PHONE = 390
WIDE = 1280

_LABEL_BOXES = """() => {
  const svg = document.querySelector('#kaart');
  if (!svg) return null;
  const s = svg.getBoundingClientRect();
  const boxes = [...svg.querySelectorAll('text.label')].map(t => { const r = t.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom, t.textContent]; });
  return {svg: [s.left, s.top, s.right, s.bottom], labels: boxes};
}"""


def _label_problems(name: str, found: dict | None) -> list[str]:
    if not found:
        return []
    problems = []
    left, top, right, bottom = found["svg"]
    boxes = found["labels"]
    for box in boxes:
        if box[0] < left - 0.5 or box[2] > right + 0.5 or box[1] < top - 0.5 or box[3] > bottom + 0.5:
            problems.append(f"{name}: label {box[4]!r} sticks out of the map")
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            # the browser's box of a text runs from the font's ascent (above the capitals and accents) to
            # its descent: the top sixth is empty room, which a neighbour's descenders may share
            a_top, b_top = a[1] + (a[3] - a[1]) / 6, b[1] + (b[3] - b[1]) / 6
            if a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a_top < b[3] - 0.5 and b_top < a[3] - 0.5:
                problems.append(f"{name}: labels {a[4]!r} and {b[4]!r} overlap")
    return problems


def phone_layout_problems(pages: list[Path], sync_playwright) -> list[str]:
    """What is wrong with ``pages`` at phone width (and the wide layout at 1280 px): an empty list if nothing."""
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        for width in (PHONE, WIDE):
            context = browser.new_context(offline=True, viewport={"width": width, "height": 900})
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
            page = context.new_page()
            for path in pages:
                name = f"{path.parent.name}/{path.name} at {width} px"
                page.goto(path.as_uri(), wait_until="load")
                scroll = page.evaluate("document.documentElement.scrollWidth")
                if scroll > width:
                    problems.append(f"{name}: the page is {scroll} px wide")
                figure = page.locator(".kaartblok, .kop").first
                svg = page.locator("svg.kaart").first
                beside = figure.locator(":scope > div").first
                m, b = svg.bounding_box(), beside.bounding_box()
                if width == PHONE:
                    content = width - 2 * 16  # the phone padding: 1rem each side
                    if m["width"] < 0.9 * content:
                        problems.append(f"{name}: the map is {m['width']:.0f} px wide, not the full width")
                    if b["y"] < m["y"] + m["height"] - 1:
                        problems.append(f"{name}: the map is not above the text beside it")
                elif b["x"] < m["x"] + m["width"]:
                    problems.append(f"{name}: the map is no longer beside its legend or text")
                if path.name == "index.html":
                    problems += _label_problems(name, page.evaluate(_LABEL_BOXES))
            context.close()
        browser.close()
    return problems


def test_pages_fit_a_phone_screen(lbm_warehouse, tmp_path):
    import duckdb

    sync_playwright = _browser_or_skip()
    pages = []
    con = duckdb.connect(str(lbm_warehouse["db"]), read_only=True)
    try:
        for code in ("GM0106", "GM0344"):  # Assen; Utrecht with its own survey
            site = write_site(load_gemeente(con, code), tmp_path / code,
                              min_inhabitants=lbm_warehouse["settings"].min_inhabitants)
            pages += [site.index, *site.wijk_pages.values()]
    finally:
        con.close()
    assert any("enquete" in p.read_text(encoding="utf-8") for p in pages)  # the widest table is there
    problems = phone_layout_problems(pages, sync_playwright)
    assert not problems, "\n".join(problems[:20])
