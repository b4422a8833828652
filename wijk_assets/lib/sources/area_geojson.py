"""Reader for area boundaries as GeoJSON (CBS/Kadaster wijk- en buurtkaart, e.g. wijken 2024 via PDOK).

A FeatureCollection with one feature per area: ``properties`` hold the code (``wijkcode``/``buurtcode``/
``gemeentecode``), the name and the gemeente's name, plus whatever statistics the map layer carries
(``aantal_inwoners``, age bands, ...); ``geometry`` is a Polygon or MultiPolygon in WGS84.

Raw long layout like every other source: one row per feature x property (``measure_key`` = the property
name, ``value_raw`` = its text; a property that is absent stays absent, as in the file), plus one row
``measure_key = 'geometry'`` whose ``value_raw`` is the feature's geometry as compact GeoJSON text, so
the boundary travels with its provenance (file, sha256, feature number) like any figure. The code goes
to ``area_code``, the names to ``area_name`` / ``gemeente_name``; ``source_row`` is the 1-based feature
number.

**Coordinates end up in WGS84 lon/lat**, what the maps and the neighbour computation downstream expect.
A file in another reference system says so in a ``crs`` member, as GDAL and PDOK's WFS write it (e.g.
``urn:ogc:def:crs:EPSG::28992``, RD New: the CBS wijk- en buurtkaart and PDOK's default output); it is
converted to WGS84 when read (pyproj through shapely, axis order x/y as GeoJSON writes it, 6 decimals,
~0.1 m) and the read's metadata records the reference system it came from. A file without ``crs`` is WGS84 (RFC 7946).
After conversion every coordinate must lie in the Netherlands' box (:data:`NL_LONLAT`); a file that does
not is refused, naming the feature, its code and the coordinate, with what it looks like: RD New
coordinates in a file that does not declare them, or latitude/longitude in swapped order (WFS 2.0 with
``EPSG:4326``). Accepted as they were, such files drew every map wrong without any error.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import numpy as np
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
# (lon min, lat min, lon max, lat max): the European Netherlands with a margin (the real 2024 wijk layer,
# water and "Buitenland" included, spans 3.31-7.23 E, 50.75-53.58 N).
NL_LONLAT = (2.5, 50.0, 8.0, 54.5)
# RD New (EPSG:28992) x/y of the Netherlands, with a margin: only to name what a refused file looks like.
RD_XY = (-10_000.0, 280_000.0, 310_000.0, 640_000.0)
WGS84 = "OGC:CRS84"
DECIMALS = 6


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


def _declared_crs(source: str, document: dict):
    """(the ``crs`` member's name or None, a pyproj CRS to convert from or None when the file is WGS84)."""
    member = document.get("crs")
    if member is None:
        return None, None
    name = (member.get("properties") or {}).get("name") if isinstance(member, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise SourceFormatError(source, "a 'crs' member with properties.name (e.g. urn:ogc:def:crs:EPSG::28992)",
                                repr(member)[:120], column="crs")
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        crs = CRS.from_user_input(name.strip())
    except CRSError as error:
        raise SourceFormatError(source, "a coordinate reference system PROJ knows", repr(name), column="crs",
                                hint=str(error)) from error
    return name.strip(), (None if crs.equals(CRS.from_user_input(WGS84), ignore_axis_order=True) else crs)


def _inside(box: tuple[float, float, float, float], xy: np.ndarray) -> np.ndarray:
    return (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])


def _to_wgs84(source: str, geometry: dict, transformer, row: int, code: str) -> dict:
    """The geometry in WGS84 (converted when ``transformer`` is given), checked to lie in the Netherlands."""
    import shapely
    from shapely.geometry import mapping, shape

    expected = "rings of [x, y] number pairs"
    try:
        polygon = shape(geometry)
        xy = shapely.get_coordinates(polygon)
    except (TypeError, ValueError, shapely.errors.ShapelyError) as error:
        raise SourceFormatError(source, expected, f"{type(error).__name__}: {error}", row=row,
                                column=GEOMETRY_KEY) from error
    if not len(xy):
        raise SourceFormatError(source, expected, "no coordinates", row=row, column=GEOMETRY_KEY)
    if transformer is not None:
        def to_wgs84(coordinates: np.ndarray) -> np.ndarray:
            return np.round(np.column_stack(transformer.transform(coordinates[:, 0], coordinates[:, 1])), DECIMALS)

        polygon = shapely.transform(polygon, to_wgs84)
    ok = _inside(NL_LONLAT, shapely.get_coordinates(polygon))
    if not ok.all():
        found = xy[int(np.argmin(ok))].tolist()
        if transformer is None and _inside(RD_XY, xy).all():
            hint = ("These look like RD New (EPSG:28992) metres in a file that names no reference system: "
                    "add \"crs\": {\"type\": \"name\", \"properties\": {\"name\": "
                    "\"urn:ogc:def:crs:EPSG::28992\"}} or export in WGS84 (ogr2ogr -t_srs EPSG:4326)")
        elif transformer is None and _inside(NL_LONLAT, xy[:, ::-1]).all():
            hint = ("These look like latitude/longitude in swapped order (as WFS 2.0 writes EPSG:4326): "
                    "GeoJSON takes [longitude, latitude]; export with srsName=CRS:84 or ogr2ogr -t_srs EPSG:4326")
        else:
            hint = "A boundary file for Dutch wijken lies within the Netherlands"
        raise SourceFormatError(
            source,
            f"WGS84 [longitude, latitude] within {NL_LONLAT[0]}-{NL_LONLAT[2]} E, {NL_LONLAT[1]}-{NL_LONLAT[3]} N"
            + (" after conversion" if transformer is not None else ""),
            f"{found} in {code}", row=row, column=GEOMETRY_KEY, hint=hint,
        )
    return geometry if transformer is None else mapping(polygon)


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

    crs_name, crs = _declared_crs(source, document)
    transformer = None
    if crs is not None:
        from pyproj import Transformer

        transformer = Transformer.from_crs(crs, WGS84, always_xy=True)
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
        geometry = _to_wgs84(source, geometry, transformer, row, code.strip())
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
        "crs": crs_name or "not stated: WGS84 (RFC 7946)",
        "converted_to_wgs84": crs is not None,
        "geometry_types": {
            t: int(n)
            for t, n in pd.Series([f["geometry"]["type"] for f in features]).value_counts().sort_index().items()
        },
        "properties": sorted({k for f in features for k in f["properties"]}),
    }
    return RawExtract.from_file(source_file, frame, metadata)


__all__ = ["GEOMETRY_KEY", "read_area_geojson"]
