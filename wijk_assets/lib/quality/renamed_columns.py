"""A feature that went missing in a source's new release while the release brought a column the concept map
does not know: most likely a renamed column (DuckDB SQL over dbt's staging tables, no Dagster).

A publisher renames columns between releases (KWB ``g_wozbag`` -> ``g_woz``, a StatLine header whose unit
reads ``(Score)`` instead of ``(Getal)``). The concept map then maps no column to the feature, the feature
is simply empty in the new year - "not measured" for gate 2, which only judges features a release has -
and the new column is listed in ``staging.stg_unmapped_measures``. Each on its own is normal (a first KWB
release lacks figures; most releases carry columns we do not use); both in one release of one source is
what a rename looks like, so gate 2's warning names them together.

A feature whose column is still mapped but has only suppression marks ("." for a figure not yet
published, as in the 2023 nabijheid file) is not missing in this sense: its column was found.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = ["source", "year", "missing_features", "last_published", "new_unmapped_columns"]

# columns of a source's latest release, with numbers, that map to no concept and that no earlier release of
# the source had (a column we have always left unmapped is not news)
_NEW_UNMAPPED_SQL = """
WITH latest AS (SELECT source, max(release_year) AS year FROM staging.stg_measure_map GROUP BY source)
SELECT u.source, u.year, u.measure_key
FROM staging.stg_unmapped_measures AS u JOIN latest AS l ON u.source = l.source AND u.year = l.year
WHERE u.n_with_number > 0
  AND u.measure_key NOT IN (SELECT m.measure_key FROM staging.stg_measure_map AS m
                            WHERE m.source = u.source AND m.release_year < u.year)
ORDER BY u.source, u.measure_key
"""

_MAPPED_SQL = """
SELECT DISTINCT source, release_year AS year, feature FROM staging.stg_measure_map
WHERE mapping_status = 'mapped' AND feature IS NOT NULL
"""


def possible_renames(con, not_published: pd.DataFrame) -> pd.DataFrame:
    """Per source whose latest release both lacks features it published before (``not_published`` of
    :func:`~wijk_assets.lib.quality.feature_shift.shift_since_last_publication`: source, feature,
    last_published, source_latest) and carries new columns with numbers that map to no concept: one row
    (:data:`COLUMNS`, the two lists sorted). ``con``: a DuckDB connection to the warehouse."""
    tables = {r[0] for r in con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()}
    if not {"staging.stg_measure_map", "staging.stg_unmapped_measures"} <= tables or not_published.empty:
        return pd.DataFrame(columns=COLUMNS)
    new = con.execute(_NEW_UNMAPPED_SQL).df()
    mapped = {(s, int(y), f) for s, y, f in con.execute(_MAPPED_SQL).fetchall()}
    rows = []
    for (source, year), group in new.groupby(["source", "year"], sort=True):
        gone = not_published[(not_published["source"] == source) & (not_published["source_latest"] == year)]
        still_mapped = gone["feature"].map(lambda f: (source, int(year), f) in mapped).astype(bool)
        gone = gone.loc[~still_mapped].sort_values("feature")
        if not gone.empty:
            rows.append({"source": source, "year": int(year), "missing_features": list(gone["feature"]),
                         "last_published": sorted({int(y) for y in gone["last_published"]}),
                         "new_unmapped_columns": sorted(group["measure_key"])})
    return pd.DataFrame(rows, columns=COLUMNS)


def renames_summary(renames: pd.DataFrame, limit: int = 5) -> str:
    """One line per source: what went missing and which new columns may be it."""
    def listed(items: list[str]) -> str:
        return ", ".join(items[:limit]) + (f" (+{len(items) - limit} more)" if len(items) > limit else "")

    return "\n".join(
        f"{r.source} {r.year}: {len(r.missing_features)} feature(s) published in "
        f"{', '.join(map(str, r.last_published))} have no column in this release ({listed(r.missing_features)}), and {len(r.new_unmapped_columns)} new column(s) with numbers "
        f"map to no concept ({listed(r.new_unmapped_columns)}) - a renamed column? Add it to the concept map "
        "(dbt_project/seeds/concept_map.csv) or confirm the figures are not in this release."
        for r in renames.itertuples(index=False)
    )


__all__ = ["COLUMNS", "possible_renames", "renames_summary"]
