"""Which wijk of the older source layouts a wijk page shows figures of (DuckDB SQL, no Dagster).

The pages show the wijken of the latest boundary layer (``intermediate.int_wijk_geometry``, 2024). The
Leefbaarometer (and so the models, ``publish.*``) uses its own layout (2022, back-cast) and the health
monitor 50090NED the 2020 layout. A code is not an area: Amsterdam renumbered all its wijken (2024
``WK0363AD`` Burgwallen-Nieuwe Zijde was ``WK036301``), and a re-divided gemeente reuses codes for other
areas (Almere ``WK003402`` is the small "De Werven" in 2022 and 2024 but a 22-buurt district of Almere
Haven in the 2020 health layout). Matching by code showed "niet gemeten" for every health figure of
Amsterdam and no Leefbaarometer or model result at all, and gave De Werven the health figures of another
area.

A page wijk is linked to the Leefbaarometer wijk by the first rules of
``int_area_code_harmonisation`` (the rules the models' features were linked by), applied to the boundary
layer as the "source":

- ``exact``: same code, and the gemeente's wijk codes are the same set in both layouts;
- ``exact_code_and_name``: same code in a re-divided gemeente, and the same name (name key: case,
  accents, punctuation and a 'Wijk 01' prefix ignored);
- ``name_within_gemeente``: a different code, and exactly one Leefbaarometer wijk of the gemeente whose
  code the boundary layer lacks has the same name (and no other page wijk has that name). The wijken of a
  gemeente that merged into this one (seed ``gemeente_changes``) count as the gemeente's here: the
  Leefbaarometer keeps the layout of the year before a merger (Voorne aan Zee, formed in 2023, has the wijken
  of Brielle, Hellevoetsluis and Westvoorne there; Amsterdam those of Weesp).

Anything else is ``unlinked``: the page says the figures of the older layout cannot be assigned to it.
The health figures then follow the Leefbaarometer wijk to the health layout through
``int_area_code_harmonisation`` (``rivm_gezondheid``), with the same three rules only: rules that give
a larger or former area's figures (e.g. ``contained_in_sole_unmatched_wijk``) are fine as model inputs
but would not be this wijk's figure on its page.
"""

from __future__ import annotations

import pandas as pd

PAGE_RULES = ("exact", "exact_code_and_name", "name_within_gemeente")
UNLINKED = "unlinked"
LBM_SOURCE = "leefbaarometer"
LINK_COLUMNS = ["area_code", "lbm_wijk_code", "lbm_wijk_name", "lbm_layout_year", "link_rule"]


def name_key(expr: str) -> str:
    """SQL of the name key; the same expression as the dbt macro ``name_key`` (macros/cleaning.sql)."""
    return (f"regexp_replace(regexp_replace(strip_accents(lower(trim({expr}))), '^wijk\\s*[0-9]+\\s*', ''), "
            f"'[^a-z0-9]', '', 'g')")


_LINKS_SQL = """
WITH predecessors AS (
    {predecessors}
), page AS (
    SELECT area_code, area_name FROM intermediate.int_wijk_geometry
    WHERE gemeente_code = $gemeente AND year = (SELECT max(year) FROM intermediate.int_wijk_geometry)
), lbm AS (
    SELECT area_code AS lbm_wijk_code, arg_max(area_name, year) AS lbm_wijk_name,
           max(layout_year) AS lbm_layout_year
    FROM intermediate.int_area_names
    WHERE source = '{lbm_source}' AND area_level = 'wijk' AND gemeente_code = $gemeente
    GROUP BY area_code
), lbm_named AS (  -- for the name rule: also the wijken of gemeenten that merged into this one
    SELECT * FROM lbm
    UNION ALL
    SELECT area_code, arg_max(area_name, year), max(layout_year)
    FROM intermediate.int_area_names
    WHERE source = '{lbm_source}' AND area_level = 'wijk' AND gemeente_code IN (SELECT code FROM predecessors)
    GROUP BY area_code
), same_set AS (
    SELECT NOT EXISTS (SELECT 1 FROM page WHERE area_code NOT IN (SELECT lbm_wijk_code FROM lbm))
       AND NOT EXISTS (SELECT 1 FROM lbm WHERE lbm_wijk_code NOT IN (SELECT area_code FROM page)) AS unchanged
), by_code AS (
    SELECT p.area_code, l.lbm_wijk_code, l.lbm_wijk_name, l.lbm_layout_year,
           CASE WHEN s.unchanged THEN 'exact' ELSE 'exact_code_and_name' END AS link_rule
    FROM page AS p JOIN lbm AS l ON l.lbm_wijk_code = p.area_code CROSS JOIN same_set AS s
    WHERE s.unchanged OR (p.area_name IS NOT NULL AND {page_key} = {lbm_key})
), by_name AS (
    SELECT p.area_code, l.lbm_wijk_code, l.lbm_wijk_name, l.lbm_layout_year, 'name_within_gemeente' AS link_rule
    FROM page AS p JOIN lbm_named AS l
      ON p.area_name IS NOT NULL AND {page_key} = {lbm_key}
    WHERE p.area_code NOT IN (SELECT area_code FROM by_code)
      AND l.lbm_wijk_code NOT IN (SELECT area_code FROM page)
    QUALIFY count(*) OVER (PARTITION BY p.area_code) = 1 AND count(*) OVER (PARTITION BY l.lbm_wijk_code) = 1
), linked AS (
    SELECT * FROM by_code UNION ALL SELECT * FROM by_name
)
SELECT p.area_code, k.lbm_wijk_code, k.lbm_wijk_name, k.lbm_layout_year,
       coalesce(k.link_rule, '{unlinked}') AS link_rule
FROM page AS p LEFT JOIN linked AS k USING (area_code)
ORDER BY p.area_code
"""


def load_links(con, tables: set[str], gemeente_code: str) -> pd.DataFrame:
    """One row per wijk of the latest boundary layer of the gemeente (:data:`LINK_COLUMNS`).

    Without ``int_area_names`` (a partial build) every wijk is linked by its code, as the layouts were
    assumed to agree before."""
    if "intermediate.int_area_names" not in tables:
        codes = con.execute(
            "SELECT area_code FROM intermediate.int_wijk_geometry WHERE gemeente_code = ? AND year = "
            "(SELECT max(year) FROM intermediate.int_wijk_geometry) ORDER BY area_code", [gemeente_code]).df()
        return codes.assign(lbm_wijk_code=codes["area_code"], lbm_wijk_name=None, lbm_layout_year=None,
                            link_rule="exact")[LINK_COLUMNS]
    sql = _LINKS_SQL.format(predecessors=_predecessors_sql(tables), lbm_source=LBM_SOURCE, unlinked=UNLINKED,
                            page_key=name_key("p.area_name"), lbm_key=name_key("l.lbm_wijk_name"))
    return con.execute(sql, {"gemeente": gemeente_code}).df()[LINK_COLUMNS]


def _predecessors_sql(tables: set[str]) -> str:
    if "staging.gemeente_changes" not in tables:
        return "SELECT NULL::VARCHAR AS code WHERE false"
    return "SELECT old_code AS code FROM staging.gemeente_changes WHERE new_code = $gemeente AND old_code <> $gemeente"


def reference_gemeenten(con, tables: set[str], gemeente_code: str) -> list[str]:
    """The gemeente codes whose Leefbaarometer wijken make up the gemeente's mean: its own, or, when the
    Leefbaarometer has none under its code (formed after the Leefbaarometer's layout year), those of the
    gemeenten that merged into it."""
    if "staging.gemeente_changes" not in tables or "marts.fct_liveability_outcomes" not in tables or con.execute(
            "SELECT count(*) FROM marts.fct_liveability_outcomes WHERE gemeente_code = ?", [gemeente_code]).fetchone()[0]:
        return [gemeente_code]
    rows = con.execute(_predecessors_sql(tables) + " ORDER BY 1", {"gemeente": gemeente_code}).fetchall()
    return [gemeente_code, *(r[0] for r in rows)]


def linked_codes(links: pd.DataFrame) -> list[str]:
    """The Leefbaarometer wijk codes the pages show (one per linked page wijk)."""
    return sorted(links.loc[links["lbm_wijk_code"].notna(), "lbm_wijk_code"])


def to_page_codes(frame: pd.DataFrame, column: str, links: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``column`` (Leefbaarometer wijk codes) replaced by the page wijk's code; rows of a
    code no page wijk is linked to are dropped. The link is one to one, so no row is repeated."""
    if frame.empty or column not in frame:
        return frame
    mapping = dict(zip(links["lbm_wijk_code"].dropna(), links.loc[links["lbm_wijk_code"].notna(), "area_code"]))
    kept = frame[frame[column].isin(mapping)].copy()
    kept[column] = kept[column].map(mapping)
    return kept.reset_index(drop=True)


def health_targets(con, tables: set[str], links: pd.DataFrame, source: str) -> pd.DataFrame:
    """Per linked page wijk and ``source`` year: the source's area whose figures are the wijk's own
    (``area_code``, ``year``, ``target_area_code``, ``match_rule``). Without the harmonisation table the
    Leefbaarometer code is taken as the source's code (the old behaviour)."""
    linked = links[links["lbm_wijk_code"].notna()][["area_code", "lbm_wijk_code"]]
    columns = ["area_code", "year", "target_area_code", "match_rule"]
    if linked.empty:
        return pd.DataFrame(columns=columns)
    if "intermediate.int_area_code_harmonisation" not in tables:
        years = [r[0] for r in con.execute(
            "SELECT DISTINCT year FROM marts.fct_area_feature_values WHERE source = ? ORDER BY 1", [source]).fetchall()]
        return pd.DataFrame([(a, y, c, "exact") for a, c in zip(linked["area_code"], linked["lbm_wijk_code"])
                             for y in years], columns=columns)
    con.register("__page_links", linked)
    try:
        return con.execute(
            f"""
            SELECT l.area_code, h.source_year AS year, h.target_area_code, h.match_rule
            FROM __page_links AS l JOIN intermediate.int_area_code_harmonisation AS h USING (lbm_wijk_code)
            WHERE h.source = ? AND h.target_area_level = 'wijk'
              AND h.match_rule IN ({', '.join(repr(r) for r in PAGE_RULES)})
            ORDER BY l.area_code, year
            """,
            [source],
        ).df()[columns]
    finally:
        con.unregister("__page_links")
