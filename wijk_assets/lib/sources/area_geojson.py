"""Reader for area boundaries as GeoJSON (CBS/Kadaster wijk- en buurtkaart, e.g. wijken 2024 via PDOK).

A FeatureCollection with one feature per area: ``properties`` hold the code (``wijkcode``/``buurtcode``/
``gemeentecode``), the name and the gemeente's name, plus whatever statistics the map layer carries
(``aantal_inwoners``, age bands, ...); ``geometry`` is a Polygon or MultiPolygon in WGS84.

Raw long layout like every other source: one row per feature x property (``measure_key`` = the property
name, ``value_raw`` = its text; a property that is absent stays absent, as in the file), plus one row
``measure_key = 'geometry'`` whose ``value_raw`` is the feature's geometry as compact GeoJSON text, so
the boundary travels with its provenance (file, sha256, feature number) like any figure. The code goes
to ``area_code``, the names to ``area_name`` / ``gemeente_name``; ``source_row`` is the 1-based feature
number. Pure: no geometry library is needed to read (shapely is used downstream for neighbours).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pandas as pd

from wijk_assets.lib.sources.base import RAW_DATA_COLUMNS, RawExtract, SourceFormatError
from wijk_assets.lib.sources.odata import value_text  # one rule for JSON values as raw text

if TYPE_CHECKING:
    from wijk_assets.lib.sources.catalog import SourceFile

GEOMETRY_KEY = "geometry"
# (code property, name property, level) per map layer; the first present code property wins.
LAYERS = (
    ("buurtcode", "buurtnaam", "buurt"),
    ("wijkcode", "wijknaam", "wijk"),
    ("gemeentecode", "gemeentenaam", "gemeente"),
)
GEMEENTE_NAME = "gemeentenaam"
# Since 2024 Amsterdam's wijk and buurt codes end in letters (WK0363AA, BU0363AA01).
_CODE = {
    "buurt": re.compile(r"^BU\d{4}[0-9A-Z]{4}$"),
    "wijk": re.compile(r"^WK\d{4}[0-9A-Z]{2}$"),
    "gemeente": re.compile(r"^GM\d{4}$"),
}
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")


def _layer(source: str, properties: dict, row: int) -> tuple[str, str, str]:
    for code_key, name_key, level in LAYERS:
        if code_key in properties:
            return code_key, name_key, level
    raise SourceFormatError(
        source,
        f"a code property ({', '.join(c for c, _, _ in LAYERS)})",
        f"properties {sorted(properties)[:8]}",
        row=row,
    )


def read_area_geojson(source_file: "SourceFile") -> RawExtract:
    source = source_file.relative_path
    try:
        document = json.loads(source_file.path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SourceFormatError(
            source, "a complete UTF-8 GeoJSON document", f"{type(error).__name__}: {error}",
            hint="The file is truncated or not JSON; download it again",
        ) from error
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        found = document.get("type") if isinstance(document, dict) else type(document).__name__
        raise SourceFormatError(source, "a GeoJSON FeatureCollection", repr(found))
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise SourceFormatError(source, "a non-empty 'features' list", repr(type(features).__name__))

    year = source_file.filename_year
    columns: dict[str, list] = {name: [] for name in RAW_DATA_COLUMNS}
    seen: dict[str, int] = {}
    level_of_file = None
    for row, feature in enumerate(features, start=1):
        properties = feature.get("properties") if isinstance(feature, dict) else None
        if not isinstance(properties, dict):
            raise SourceFormatError(source, "a feature with a 'properties' object", repr(feature)[:80], row=row)
        code_key, name_key, level = _layer(source, properties, row)
        if level_of_file is None:
            level_of_file = level
        code = properties.get(code_key)
        if not isinstance(code, str) or not _CODE[level].match(code.strip()):
            raise SourceFormatError(
                source, f"a {level} code in {code_key!r} ({_CODE[level].pattern})", repr(code), row=row, column=code_key
            )
        if code.strip() in seen:
            raise SourceFormatError(
                source, "each area once", f"{code.strip()} again (first in feature {seen[code.strip()]})",
                row=row, column=code_key,
            )
        seen[code.strip()] = row
        geometry = feature.get("geometry")
        if (
            not isinstance(geometry, dict)
            or geometry.get("type") not in GEOMETRY_TYPES
            or not isinstance(geometry.get("coordinates"), list)
            or not geometry["coordinates"]
        ):
            found = geometry.get("type") if isinstance(geometry, dict) else geometry
            raise SourceFormatError(
                source, f"a {' or '.join(GEOMETRY_TYPES)} geometry with coordinates", repr(found), row=row,
                column=GEOMETRY_KEY,
            )
        items = [(k, value_text(v)) for k, v in properties.items() if k not in (code_key, name_key, GEMEENTE_NAME)]
        items.append((GEOMETRY_KEY, json.dumps(geometry, separators=(",", ":"))))
        for key, value in items:
            columns["release_year"].append(year)
            columns["area_code"].append(code)
            columns["area_name"].append(value_text(properties.get(name_key)))
            columns["region_type"].append(None)  # the map layer states no region type; the code does
            columns["gemeente_name"].append(value_text(properties.get(GEMEENTE_NAME)))
            columns["subgroup"].append("")
            columns["measure_key"].append(key)
            columns["value_raw"].append(value)
            columns["source_row"].append(row)
    if year is None:
        meta_year = (document.get("metadata") or {}).get("year")
        raise SourceFormatError(
            source, "the year in the file name", "none" + (f" (metadata says {meta_year})" if meta_year else ""),
            hint="Rename the file like wijken_2024_....geojson",
        )
    frame = pd.DataFrame(columns, columns=list(RAW_DATA_COLUMNS))
    metadata = {
        "format": "area_geojson",
        "features": len(features),
        "level": level_of_file,
        "file_metadata": document.get("metadata"),
        "geometry_types": {
            t: int(n)
            for t, n in pd.Series([f["geometry"]["type"] for f in features]).value_counts().sort_index().items()
        },
        "properties": sorted({k for f in features for k in f["properties"]}),
    }
    return RawExtract.from_file(source_file, frame, metadata)


__all__ = ["GEOMETRY_KEY", "read_area_geojson"]
