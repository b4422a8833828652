"""Which wijken touch: one row per ordered pair of neighbouring wijken per boundary year.

Two wijken are neighbours when their boundaries (int_wijk_geometry, simplified WGS84 polygons) share a
border or a point, or, because simplification opens small gaps and overlaps along shared borders, lie
within ``TOLERANCE_DEGREES`` (about 25 m) of each other. Computed with shapely's STRtree (a dbt Python
model: DuckDB in this project has no spatial extension). Water/foreign wijken (no inhabitants) take part
like any other wijk. ``shared_border_m`` is a rough length (degrees -> metres at 52 N) of the buffered
intersection's boundary / 2, for weighting or filtering point contacts; ``same_gemeente`` tells whether
both wijken lie in one gemeente.
"""

import json
import math

import pandas as pd

TOLERANCE_DEGREES = 0.0003  # ~ 20-33 m at Dutch latitudes; simplification gaps are smaller


def neighbour_pairs(geometry: pd.DataFrame, tolerance: float = TOLERANCE_DEGREES) -> pd.DataFrame:
    """``geometry`` (year, area_code, gemeente_code, geometry_geojson) -> ordered neighbour pairs."""
    import numpy as np
    import shapely
    from shapely.geometry import shape

    columns = ["year", "area_code", "neighbour_code", "gemeente_code", "neighbour_gemeente_code",
               "same_gemeente", "shared_border_m"]
    metres_per_degree = 111_320 * math.cos(math.radians(52.2))
    frames = []
    for year, part in geometry.groupby("year"):
        part = part[part["geometry_geojson"].notna()].reset_index(drop=True)
        shapes = [shapely.make_valid(shape(json.loads(text))) for text in part["geometry_geojson"]]
        tree = shapely.STRtree(shapes)
        grown = shapely.buffer(np.array(shapes, dtype=object), tolerance / 2, quad_segs=16)  # as .buffer()
        left, right = tree.query(grown, predicate="intersects")
        keep = left < right  # each unordered pair once; both directions are written below
        left, right = left[keep], right[keep]
        overlap = shapely.intersection(grown[left], grown[right])
        length = shapely.length(overlap)
        # round() per value, as Python rounds (the decimal value), not numpy's scaled rint
        border = [round(m / 2 * metres_per_degree, 1) if not empty else 0.0
                  for m, empty in zip(length.tolist(), shapely.is_empty(overlap).tolist())]
        codes = part["area_code"].to_numpy(dtype=object)
        gemeenten = part["gemeente_code"].to_numpy(dtype=object)
        same = [a == b for a, b in zip(gemeenten[left], gemeenten[right])]
        for x, y in ((left, right), (right, left)):
            frames.append(pd.DataFrame({
                "year": int(year), "area_code": codes[x], "neighbour_code": codes[y],
                "gemeente_code": gemeenten[x], "neighbour_gemeente_code": gemeenten[y],
                "same_gemeente": same, "shared_border_m": border,
            }, columns=columns))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True).sort_values(["year", "area_code", "neighbour_code"])


def model(dbt, session):
    dbt.config(materialized="table")
    geometry = dbt.ref("int_wijk_geometry").df()
    return neighbour_pairs(geometry[["year", "area_code", "gemeente_code", "geometry_geojson"]])
