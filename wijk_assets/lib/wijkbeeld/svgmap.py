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
from html import escape

from shapely.geometry import shape

# A colour-blind-safe sequential blue scale (ColorBrewer "Blues", 5 classes): light = lower.
PALETTE = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")
NO_VALUE = "#d9d9d9"


@dataclass(frozen=True)
class Indicator:
    key: str
    label: str
    values: dict[str, float | None]  # area_code -> value
    texts: dict[str, str]  # area_code -> formatted value for the hover text


def classify(values: dict[str, float | None]) -> tuple[dict[str, str], list[tuple[float, float, str]]]:
    """Fill colour per area (equal-width classes over the observed range) and the legend."""
    present = [v for v in values.values() if v is not None and not math.isnan(v)]
    if not present:
        return {k: NO_VALUE for k in values}, []
    low, high = min(present), max(present)
    width = (high - low) / len(PALETTE) or 1.0
    fills = {}
    for code, value in values.items():
        if value is None or math.isnan(value):
            fills[code] = NO_VALUE
        else:
            fills[code] = PALETTE[min(int((value - low) / width), len(PALETTE) - 1)]
    legend = [(low + i * width, low + (i + 1) * width, c) for i, c in enumerate(PALETTE)] if high > low else [(low, high, PALETTE[2])]
    return fills, legend


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
    out = [f'<svg id="{element_id}" class="kaart" viewBox="0 0 {width} {height}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="Kaart van de wijken">']
    label_parts = []
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
        out.append(path)
        if labels:
            point = shape(geometry).representative_point()
            x, y = project(point.x, point.y)
            label_parts.append(f'<text class="label" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(name)}</text>')
    out.extend(label_parts)
    out.append("</svg>")
    return "\n".join(out)


def legends(indicators: list[Indicator], fmt) -> dict[str, list[tuple[str, str]]]:
    """Per indicator key the legend rows (colour, 'van – tot' text) in Dutch number format."""
    result = {}
    for ind in indicators:
        _fills, legend = classify(ind.values)
        result[ind.key] = [(colour, f"{fmt(lo)} – {fmt(hi)}") for lo, hi, colour in legend]
    return result
