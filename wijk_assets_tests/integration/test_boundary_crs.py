"""Boundary files in another coordinate reference system than WGS84.

A municipality's GIS team, the CBS wijk- en buurtkaart (GeoPackage) and PDOK's WFS (its default output)
hand over RD New (EPSG:28992) metres, and a WFS 2.0 export in EPSG:4326 writes latitude before
longitude. Read as WGS84, both drew every wijk map wrong without an error. The reader converts a file
that declares its system and refuses one whose coordinates are not lon/lat in the Netherlands.

The real 2024 wijk layer is converted to RD New here with pyproj (what ogr2ogr -t_srs EPSG:28992 does);
the synthetic cases at the end (a made-up square, labelled as such) cover the geometry shapes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import mapping, shape

from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import SourceFormatError
from wijk_assets.lib.sources.catalog import SourceFile, find_source_files

RD_NEW = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}}
TO_RD = Transformer.from_crs("OGC:CRS84", "EPSG:28992", always_xy=True)


def _real(shared_data_dir: Path) -> SourceFile:
    (real,) = find_source_files("cbs_wijkgrenzen", shared_data_dir)
    return real


def _map_coordinates(document: dict, fn) -> dict:
    """``document`` with ``fn(x, y) -> (x, y)`` applied to every coordinate of every feature."""
    out = copy.deepcopy(document)
    for feature in out["features"]:
        moved = shapely.transform(shape(feature["geometry"]), lambda xy: np.column_stack(fn(xy[:, 0], xy[:, 1])))
        feature["geometry"] = json.loads(json.dumps(mapping(moved)))
    return out


def _write(real: SourceFile, tmp_path: Path, document: dict) -> SourceFile:
    path = tmp_path / Path(real.relative_path).name
    path.write_text(json.dumps(document), encoding="utf-8")
    return dataclasses.replace(real, path=path, relative_path=path.name)


@pytest.fixture(scope="module")
def real_layer(shared_data_dir):
    real = _real(shared_data_dir)
    return real, json.loads(real.path.read_text(encoding="utf-8")), read_source_file(real)


def test_rd_new_declared_reads_as_the_same_wgs84_rows(real_layer, tmp_path):
    """The real layer in RD New, declared as GDAL writes it: the same raw rows as the WGS84 file, every
    boundary to the file's 5 decimals (the conversion back is exact at 6), and the read says from what."""
    real, document, wgs84 = real_layer
    rd = {**_map_coordinates(document, TO_RD.transform), "crs": RD_NEW}
    sample = rd["features"][0]["geometry"]["coordinates"][0][0][0]
    assert sample[0] > 1000 and sample[1] > 300_000  # metres, not degrees
    extract = read_source_file(_write(real, tmp_path, rd))
    assert extract.metadata["crs"] == "urn:ogc:def:crs:EPSG::28992" and extract.metadata["converted_to_wgs84"]
    assert wgs84.metadata["converted_to_wgs84"] is False
    columns = ["area_code", "measure_key", "value_raw", "source_row", "area_name", "gemeente_name"]
    assert extract.frame[columns].equals(wgs84.frame[columns])


def test_rd_new_without_crs_member_is_refused_and_named(real_layer, tmp_path):
    real, document, _ = real_layer
    with pytest.raises(SourceFormatError) as error:
        read_source_file(_write(real, tmp_path, _map_coordinates(document, TO_RD.transform)))
    message = str(error.value)
    first = document["features"][0]["properties"]["wijkcode"]
    assert Path(real.relative_path).name in message and "row 1" in message and "column 'geometry'" in message
    assert first in message and "RD New (EPSG:28992)" in message and "urn:ogc:def:crs:EPSG::28992" in message


def test_latitude_longitude_in_swapped_order_is_refused(real_layer, tmp_path):
    real, document, _ = real_layer
    with pytest.raises(SourceFormatError, match="swapped order") as error:
        read_source_file(_write(real, tmp_path, _map_coordinates(document, lambda x, y: (y, x))))
    assert "row 1" in str(error.value) and "[longitude, latitude]" in str(error.value)


def test_one_wijk_outside_the_netherlands_is_refused_by_feature(real_layer, tmp_path):
    """One feature moved by 10 degrees east (a typo in one boundary): the file is refused at that feature."""
    real, document, _ = real_layer
    moved = copy.deepcopy(document)
    row = next(i for i, f in enumerate(moved["features"]) if f["properties"]["wijkcode"] == "WK010601")
    moved["features"][row] = _map_coordinates({"features": [moved["features"][row]]}, lambda x, y: (x + 10, y))["features"][0]
    with pytest.raises(SourceFormatError) as error:
        read_source_file(_write(real, tmp_path, moved))
    assert f"row {row + 1}" in str(error.value) and "WK010601" in str(error.value)


def test_unknown_crs_is_refused(real_layer, tmp_path):
    real, document, _ = real_layer
    bad = {**document, "crs": {"type": "name", "properties": {"name": "EPSG:999999"}}}
    with pytest.raises(SourceFormatError, match="coordinate reference system PROJ knows"):
        read_source_file(_write(real, tmp_path, bad))


# Synthetic (made-up squares, not real boundaries): the geometry shapes the conversion must keep.
def _square(x0: float, y0: float, size: float) -> list[list[float]]:
    return [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]


def _synthetic(tmp_path: Path, geometry: dict, crs: dict | None = RD_NEW) -> SourceFile:
    folder = tmp_path / "cbs_wijkgrenzen_2025"
    folder.mkdir(exist_ok=True)
    document = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geometry, "properties": {
        "wijkcode": "WK010601", "wijknaam": "Lariks", "gemeentecode": "GM0106", "gemeentenaam": "Assen"}}]}
    if crs is not None:
        document["crs"] = crs
    (folder / "wijken_2025_synthetic.geojson").write_text(json.dumps(document), encoding="utf-8")
    (match,) = find_source_files("cbs_wijkgrenzen", tmp_path)
    return match


def test_synthetic_multipolygon_with_a_hole_keeps_its_structure(tmp_path):
    outer, hole, island = _square(233_000, 557_000, 1000), _square(233_200, 557_200, 100), _square(236_000, 557_000, 200)
    extract = read_source_file(_synthetic(tmp_path, {"type": "MultiPolygon", "coordinates": [[outer, hole], [island]]}))
    geometry = json.loads(extract.frame.loc[extract.frame["measure_key"] == "geometry", "value_raw"].iloc[0])
    assert geometry["type"] == "MultiPolygon"
    assert [len(p) for p in geometry["coordinates"]] == [2, 1]
    assert [len(r) for p in geometry["coordinates"] for r in p] == [5, 5, 5]
    lon, lat = geometry["coordinates"][0][0][0]
    assert lon == pytest.approx(6.549, abs=0.001) and lat == pytest.approx(52.994, abs=0.001)  # Assen, RD 233000/557000


def test_synthetic_ragged_ring_and_nameless_crs_are_refused(tmp_path):
    ragged = {"type": "Polygon", "coordinates": [[[233_000, 557_000], [233_100], [233_000, 557_100], [233_000, 557_000]]]}
    with pytest.raises(SourceFormatError, match="rings of \\[x, y\\] number pairs"):
        read_source_file(_synthetic(tmp_path, ragged))
    square = {"type": "Polygon", "coordinates": [_square(233_000, 557_000, 100)]}
    with pytest.raises(SourceFormatError, match="properties.name"):
        read_source_file(_synthetic(tmp_path, square, crs={"type": "name", "properties": {}}))
