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
    import shapely
    from shapely.geometry import shape

    rows = []
    for year, part in geometry.groupby("year"):
        part = part[part["geometry_geojson"].notna()].reset_index(drop=True)
        shapes = [shapely.make_valid(shape(json.loads(text))) for text in part["geometry_geojson"]]
        tree = shapely.STRtree(shapes)
        grown = [s.buffer(tolerance / 2) for s in shapes]
        left, right = tree.query(grown, predicate="intersects")
        metres_per_degree = 111_320 * math.cos(math.radians(52.2))
        for i, j in zip(left, right):
            if i >= j:
                continue
            overlap = grown[i].intersection(grown[j])
            border = overlap.length / 2 * metres_per_degree if not overlap.is_empty else 0.0
            a, b = part.loc[i], part.loc[j]
            for x, y in ((a, b), (b, a)):
                rows.append(
                    {
                        "year": int(year),
                        "area_code": x["area_code"],
                        "neighbour_code": y["area_code"],
                        "gemeente_code": x["gemeente_code"],
                        "neighbour_gemeente_code": y["gemeente_code"],
                        "same_gemeente": x["gemeente_code"] == y["gemeente_code"],
                        "shared_border_m": round(border, 1),
                    }
                )
    columns = ["year", "area_code", "neighbour_code", "gemeente_code", "neighbour_gemeente_code",
               "same_gemeente", "shared_border_m"]
    return pd.DataFrame(rows, columns=columns).sort_values(["year", "area_code", "neighbour_code"])


def model(dbt, session):
    dbt.config(materialized="table")
    geometry = dbt.ref("int_wijk_geometry").df()
    return neighbour_pairs(geometry[["year", "area_code", "gemeente_code", "geometry_geojson"]])
