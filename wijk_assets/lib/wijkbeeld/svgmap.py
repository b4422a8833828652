"""Inline SVG maps of a gemeente's wijken from their GeoJSON boundaries (WGS84 lon/lat).

A simple equirectangular projection around the gemeente's mid-latitude (longitude scaled by cos φ) is
exact enough for an area the size of a gemeente. One ``<path>`` per wijk, with a ``<title>`` (hover)
and ``data-fill-<indicator>`` attributes so a few lines of inline JavaScript can recolour the map by
the indicator chosen; without JavaScript (print) the map shows the first indicator.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from html import escape

from shapely.geometry import shape

# A colour-blind-safe sequential blue scale (ColorBrewer "Blues", 5 classes): light = lower.
PALETTE = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")
NO_VALUE = "#d9d9d9"
# Map labels, in the map's own units (the style sheet's ``.kaart text.label``: 13px with a 3px white halo);
# the text scales with the map. A name's width is measured in DejaVu Sans (matplotlib's bundled font, the
# sans-serif of a Debian browser and one of the widest, so other fonts need no more room); the height is
# the font's ascent and descent.
LABEL_FONT = 13.0
LABEL_HALO = 1.5  # half the halo: what a label may not lose at the map's edge
LABEL_EDGE = 0.1  # a label's halo stays this far inside the map
LABEL_GAP = 1.0  # each side: labels at least 2 units apart (halos may touch)
LABEL_ASCENT, LABEL_DESCENT = 0.76 * LABEL_FONT, 0.24 * LABEL_FONT


@dataclass(frozen=True)
class Indicator:
    key: str
    label: str
    values: dict[str, float | None]  # area_code -> value
    texts: dict[str, str]  # area_code -> formatted value for the hover text


def classify(values: dict[str, float | None]) -> tuple[dict[str, str], list[tuple[float, float, str]]]:
    """Fill colour per area (equal-width classes over the observed range) and the legend.

    Every fill is a colour the legend shows: when all values are (practically) equal - one wijk, or a
    gemeente whose wijken score alike - there is one class, drawn in the legend's single swatch; no value
    at all gives no class (every area grey, ``NO_VALUE``).
    """
    present = [v for v in values.values() if not _missing(v)]
    if not present:
        return {k: NO_VALUE for k in values}, []
    low, high = min(present), max(present)
    if math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-12):  # one class: the middle colour
        single = PALETTE[len(PALETTE) // 2]
        return {k: NO_VALUE if _missing(v) else single for k, v in values.items()}, [(low, high, single)]
    width = (high - low) / len(PALETTE)
    fills = {}
    for code, value in values.items():
        if _missing(value):
            fills[code] = NO_VALUE
        else:
            fills[code] = PALETTE[max(0, min(int((value - low) / width), len(PALETTE) - 1))]
    legend = [(low + i * width, low + (i + 1) * width, c) for i, c in enumerate(PALETTE)]
    return fills, legend


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def _rings(geometry: dict) -> list[list[list[float]]]:
    if geometry["type"] == "Polygon":
        return list(geometry["coordinates"])
    if geometry["type"] == "MultiPolygon":
        return [ring for polygon in geometry["coordinates"] for ring in polygon]
    raise ValueError(f"unsupported geometry type {geometry['type']!r} (expected Polygon or MultiPolygon)")


def render_map(
    geometries: dict[str, str],
    names: dict[str, str],
    indicators: list[Indicator],
    *,
    width: int = 640,
    highlight: str | None = None,
    links: dict[str, str] | None = None,
    labels: bool = True,
    element_id: str = "kaart",
) -> str:
    """The SVG text: one path per area code in ``geometries`` (GeoJSON text per code)."""
    parsed = {code: json.loads(text) for code, text in geometries.items() if text}
    xs = [p[0] for g in parsed.values() for ring in _rings(g) for p in ring]
    ys = [p[1] for g in parsed.values() for ring in _rings(g) for p in ring]
    if not xs:
        raise ValueError("no geometry to draw: every wijk lacks a GeoJSON boundary")
    x_min, x_max, y_min, y_max = min(xs), max(xs), min(ys), max(ys)  # once: project() runs per point
    kx = math.cos(math.radians((y_min + y_max) / 2))
    span_x, span_y = (x_max - x_min) * kx, y_max - y_min
    scale = (width - 20) / max(span_x, span_y * 0.8, 1e-9)
    height = int(span_y * scale) + 20

    def project(lon: float, lat: float) -> tuple[float, float]:
        return 10 + (lon - x_min) * kx * scale, 10 + (y_max - lat) * scale

    colourings = [(ind, *classify(ind.values)) for ind in indicators]
    paths = []
    candidates = []
    for code, geometry in parsed.items():
        d = " ".join(
            "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in (project(*p[:2]) for p in ring)) + " Z"
            for ring in _rings(geometry)
        )
        name = names.get(code, code)
        attrs = [f'data-code="{escape(code)}"', f'data-name="{escape(name)}"']
        hover = [name]
        fill = NO_VALUE
        for i, (ind, fills, _legend) in enumerate(colourings):
            attrs.append(f'data-fill-{ind.key}="{fills[code] if code in fills else NO_VALUE}"')
            hover.append(f"{ind.label}: {ind.texts.get(code, 'geen waarde')}")
            if i == 0:
                fill = fills.get(code, NO_VALUE)
        if highlight is not None:
            fill = "#08519c" if code == highlight else "#eeeeee"
        classes = "wijk" + (" gekozen" if code == highlight else "")
        path = (f'<path class="{classes}" d="{d}" fill="{fill}" {" ".join(attrs)} fill-rule="evenodd">'
                f"<title>{escape(' — '.join(hover) if highlight is None else name)}</title></path>")
        if links and code in links:
            path = f'<a href="{escape(links[code])}">{path}</a>'
        paths.append(path)
        if labels:
            area = shape(geometry)
            point = area.representative_point()
            candidates.append((code, name, *project(point.x, point.y), area.area))
    placed = place_labels(candidates, width, height)
    omitted = len(candidates) - len(placed)
    out = [f'<svg id="{element_id}" class="kaart" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="Kaart van de wijken"'
           + (f' data-labels-omitted="{omitted}"' if omitted else "") + ">"]
    out.extend(paths)
    out.extend(f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(name)}</text>'
               for _code, name, x, y in placed)
    out.append("</svg>")
    return "\n".join(out)


@lru_cache(maxsize=4096)
def label_width(name: str) -> float:
    """The advance width of ``name`` at ``LABEL_FONT`` in DejaVu Sans, in the map's units."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    width, _height, _descent = TextToPath().get_text_width_height_descent(
        name, FontProperties(family="DejaVu Sans", size=LABEL_FONT), ismath=False)
    return float(width)


def label_box(name: str, x: float, y: float, pad: float = 0.0) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of a label centred on ``x`` with its baseline at ``y``, in the
    map's units, widened by ``pad`` on every side."""
    half = label_width(name) / 2 + pad
    return x - half, y - LABEL_ASCENT - pad, x + half, y + LABEL_DESCENT + pad


def place_labels(candidates: list[tuple[str, str, float, float, float]], width: float,
                 height: float) -> list[tuple[str, str, float, float]]:
    """The labels to draw: (code, name, x, y) in the order given, each moved inside the map
    (``0..width`` x ``0..height``) where it would stick out, and none overlapping another.

    ``candidates`` are (code, name, x, y, area) at the area's label point. Larger areas are placed first;
    a label that would overlap one already placed is left out (the name is in the hover text and the
    table): a gemeente with many small wijken (Amsterdam, 110 on one map) shows the names that fit
    instead of a heap of overlapping text. A name wider than the map is left out.
    """
    placed: dict[str, tuple[float, float]] = {}
    boxes: list[tuple[float, float, float, float]] = []
    for code, name, x, y, _area in sorted(candidates, key=lambda c: (-c[4], c[0])):
        left, top, right, bottom = label_box(name, x, y, LABEL_HALO)
        if right - left > width - 2 * LABEL_EDGE or bottom - top > height - 2 * LABEL_EDGE:
            continue
        # inside the map: shift, never shrink (by LABEL_EDGE, so the coordinates rounded to 0.1 still are)
        x += max(0.0, LABEL_EDGE - left) - max(0.0, right - (width - LABEL_EDGE))
        y += max(0.0, LABEL_EDGE - top) - max(0.0, bottom - (height - LABEL_EDGE))
        box = label_box(name, x, y, LABEL_GAP)
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
            continue
        boxes.append(box)
        placed[code] = (x, y)
    return [(code, name, *placed[code]) for code, name, _x, _y, _a in candidates if code in placed]


def legends(indicators: list[Indicator], fmt) -> dict[str, list[tuple[str, str]]]:
    """Per indicator key the legend rows (colour, 'van – tot' text) in Dutch number format."""
    result = {}
    for ind in indicators:
        _fills, legend = classify(ind.values)
        result[ind.key] = [(colour, f"{fmt(lo)} – {fmt(hi)}") for lo, hi, colour in legend]
    return result
