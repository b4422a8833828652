"""What the wijkbeeld pages show, read from the warehouse into DataFrames (DuckDB SQL, no Dagster).

Every frame keeps the provenance columns of its source (file, row, CBS table id) so a page can name
where a figure comes from. Tables that a partial build has not produced yet (``publish.*``, ``ml.*``)
give an empty frame; the pages then say the figure is not available instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from wijk_assets.lib.wijkbeeld.links import (
    health_targets,
    linked_codes,
    load_links,
    reference_gemeenten,
    to_page_codes,
)

NATIONAL_CODE = "NL00"
HEALTH_SOURCE = "rivm_gezondheid"
HEALTH_GROUP = "18plus"  # the age group the pages show (all adults)
AGE_KEYS = {"0_15": "0–15 jaar", "15_25": "15–25 jaar", "25_45": "25–45 jaar", "45_65": "45–65 jaar",
            "65plus": "65 jaar en ouder"}


class NoWijkenError(ValueError):
    """The gemeente has no wijk in the boundary data (unknown code or no wijk layer)."""


@dataclass
class GemeenteData:
    gemeente_code: str
    gemeente_name: str
    wijken: pd.DataFrame  # area_code, area_name, geometry_geojson, inhabitants, provenance
    ages: pd.DataFrame  # area_code, age_key, pct, source_file, source_row
    lbm: pd.DataFrame  # fct_liveability_outcomes rows of the gemeente's wijken
    # per year: the gemeente's mean of each Leefbaarometer column over its wijken (without the wijken
    # publish.* suppresses) and Nederland's (nl_lbm, nl_fys, ...: the mean over all wijken of the
    # country); the pages use page_reference(), which also leaves out the wijken they do not show
    lbm_reference: pd.DataFrame
    health: pd.DataFrame  # area_code, feature, year, value, missing_reason, provenance
    comparison: pd.DataFrame  # publish.area_comparison rows of the gemeente
    drivers: pd.DataFrame  # publish.area_drivers rows of the gemeente
    importance: pd.DataFrame  # ml.global_importance top features per published outcome
    gate: pd.DataFrame  # ml.model_gate: outcome, passed, problems
    survey: pd.DataFrame  # marts.fct_survey_indicators of this gemeente's own survey
    comparables: pd.DataFrame = field(default_factory=pd.DataFrame)  # nearest wijken (comparable.py)
    buurt_values: pd.DataFrame = field(default_factory=pd.DataFrame)  # buurt figures behind bu_max/bu_min drivers
    notes: list[str] = field(default_factory=list)
    # page wijk -> Leefbaarometer wijk (links.py: area_code, lbm_wijk_code, lbm_wijk_name, lbm_layout_year,
    # link_rule) and, per health-monitor year, the area whose figures are the wijk's (area_code, year,
    # target_area_code, match_rule)
    links: pd.DataFrame = field(default_factory=pd.DataFrame)
    health_links: pd.DataFrame = field(default_factory=pd.DataFrame)
    # the Leefbaarometer rows behind lbm_reference: one per wijk (its own layout) and year, with the page
    # wijk it is linked to (page_code) and whether publish.* suppresses it (publish_suppressed)
    lbm_reference_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    # site._health_index: the health table indexed once for all pages (not an input: not compared)
    health_index: tuple | None = field(default=None, repr=False, compare=False)
    # page_reference() per set of hidden page wijken (a cache, not an input)
    reference_cache: dict = field(default_factory=dict, repr=False, compare=False)


def _tables(con) -> set[str]:
    return {f"{s}.{t}" for s, t in con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}


def _frame(con, tables: set[str], table: str, sql: str, params: list, notes: list[str]) -> pd.DataFrame:
    if table not in tables:
        notes.append(f"{table} ontbreekt in de database")
        return pd.DataFrame()
    return con.execute(sql, params).df()


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def load_gemeente(con, gemeente_code: str) -> GemeenteData:
    """Everything the pages of ``gemeente_code`` show. Raises :class:`NoWijkenError` when the latest
    wijk boundaries (``intermediate.int_wijk_geometry``) hold no populated wijk of that gemeente."""
    tables = _tables(con)
    notes: list[str] = []
    for required in ("intermediate.int_wijk_geometry", "marts.fct_area_feature_values", "marts.dim_area"):
        if required not in tables:
            raise NoWijkenError(f"{required} is missing: materialise the dbt marts before the wijkbeeld")
    wijken = con.execute(
        """
        WITH geo AS (
            SELECT * FROM intermediate.int_wijk_geometry
            WHERE gemeente_code = ? AND year = (SELECT max(year) FROM intermediate.int_wijk_geometry)
        ), inh AS (
            SELECT area_code, value AS inhabitants, year AS inhabitants_year, source_file AS inhabitants_file,
                   source_row AS inhabitants_row, cbs_table_id AS inhabitants_table
            FROM marts.fct_area_feature_values
            WHERE feature = 'inhabitants' AND area_level = 'wijk' AND value IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY area_code ORDER BY year DESC) = 1
        )
        SELECT geo.area_code, coalesce(d.area_name, geo.area_name) AS area_name, geo.gemeente_name,
               geo.year AS boundary_year, geo.geometry_geojson, geo.source_file, geo.source_row,
               inh.inhabitants, inh.inhabitants_year, inh.inhabitants_file, inh.inhabitants_row,
               inh.inhabitants_table
        FROM geo LEFT JOIN inh USING (area_code) LEFT JOIN marts.dim_area d USING (area_code)
        -- water and foreign wijken (codes ..99 without any inhabitant, e.g. 'Groot water') are not wijken
        -- a municipality steers; a populated ..99 wijk (Assen's 'Buitengebied') is
        WHERE inh.inhabitants IS NOT NULL OR geo.area_code IN (
            SELECT wijk_code FROM marts.fct_liveability_outcomes)
        ORDER BY geo.area_code
        """,
        [gemeente_code],
    ).df()
    if wijken.empty:
        known = con.execute(
            "SELECT count(DISTINCT gemeente_code) FROM intermediate.int_wijk_geometry").fetchone()[0]
        raise NoWijkenError(
            f"gemeente {gemeente_code!r} has no wijk in intermediate.int_wijk_geometry (latest boundary "
            f"year; {known} gemeenten have wijken there): check WIJK_GEMEENTE (a CBS code such as GM0106)"
        )
    codes = list(wijken["area_code"])
    gemeente_name = str(wijken["gemeente_name"].dropna().iloc[0]) if wijken["gemeente_name"].notna().any() else gemeente_code
    ages = con.execute(
        f"""
        SELECT area_code, measure_key AS age_key, TRY_CAST(value_raw AS DOUBLE) AS pct, release_year AS year,
               source_file, source_row
        FROM raw.cbs_wijkgrenzen
        WHERE area_code IN (SELECT unnest(?)) AND measure_key IN ({', '.join("'" + k + "'" for k in AGE_KEYS)})
          AND release_year = (SELECT max(release_year) FROM raw.cbs_wijkgrenzen)
        ORDER BY area_code, age_key, source_file, source_row
        """,
        [codes],
    ).df() if "raw.cbs_wijkgrenzen" in tables else pd.DataFrame()
    # The Leefbaarometer, the models and the health monitor use older layouts: figures are read for the
    # wijk each page wijk is linked to (links.py) and carry the page wijk's code from here on.
    links = load_links(con, tables, gemeente_code)
    lbm_codes = linked_codes(links)
    lbm = to_page_codes(_frame(
        con, tables, "marts.fct_liveability_outcomes",
        "SELECT * FROM marts.fct_liveability_outcomes WHERE wijk_code IN (SELECT unnest(?)) ORDER BY wijk_code, year",
        [lbm_codes], notes), "wijk_code", links)
    if not lbm.empty:
        lbm = lbm.sort_values(["wijk_code", "year"], kind="stable").reset_index(drop=True)
    # the gemeente's mean over its wijken in the Leefbaarometer's own layout (see page_reference)
    lbm_reference_rows = _frame(con, tables, "marts.fct_liveability_outcomes", _LBM_REFERENCE_ROWS_SQL,
                                [reference_gemeenten(con, tables, gemeente_code)], notes)
    national = _frame(con, tables, "marts.fct_liveability_outcomes", _NATIONAL_SQL.format(
        hidden=_NATIONAL_HIDDEN if "publish.area_comparison" in tables else ""), [], notes)
    if not lbm_reference_rows.empty:
        page_of = dict(zip(links["lbm_wijk_code"].dropna(), links.loc[links["lbm_wijk_code"].notna(), "area_code"]))
        lbm_reference_rows["page_code"] = lbm_reference_rows["wijk_code"].map(page_of)
        suppressed = set()
        if "publish.area_comparison" in tables:
            suppressed = {r[0] for r in con.execute(
                "SELECT DISTINCT area_code FROM publish.area_comparison WHERE suppressed_reason IS NOT NULL "
                "AND area_code IN (SELECT unnest(?))", [sorted(set(lbm_reference_rows["wijk_code"]))]).fetchall()}
        lbm_reference_rows["publish_suppressed"] = lbm_reference_rows["wijk_code"].isin(suppressed)
        lbm_reference_rows = lbm_reference_rows.merge(national, on="year", how="left")
    lbm_reference = _reference_means(lbm_reference_rows, set())
    health_links = health_targets(con, tables, links, HEALTH_SOURCE)
    con.register("__health_links", health_links[["area_code", "year", "target_area_code"]])
    try:
        health = con.execute(
            """
            WITH v AS (
                SELECT area_code, area_level, feature, concept, year, value, missing_reason, cbs_table_id,
                       source_file, source_row
                FROM marts.fct_area_feature_values WHERE source = ? AND ends_with(feature, ?)
            )
            SELECT * FROM (
                SELECT l.area_code, v.area_level, v.feature, v.concept, v.year, v.value, v.missing_reason,
                       v.cbs_table_id, v.source_file, v.source_row
                FROM v JOIN __health_links AS l ON v.area_code = l.target_area_code AND v.year = l.year
                UNION ALL
                SELECT * FROM v WHERE area_code IN (?, ?)
            )
            ORDER BY feature, year, area_code, source_file, source_row
            """,
            [HEALTH_SOURCE, f"__{HEALTH_GROUP}", gemeente_code, NATIONAL_CODE],
        ).df()
    finally:
        con.unregister("__health_links")
    health = health[health["feature"].str.endswith(f"__{HEALTH_GROUP}")]
    comparison = to_page_codes(_frame(
        con, tables, "publish.area_comparison",
        "SELECT * FROM publish.area_comparison WHERE area_code IN (SELECT unnest(?)) ORDER BY area_code, outcome",
        [lbm_codes], notes), "area_code", links)
    drivers = to_page_codes(_frame(
        con, tables, "publish.area_drivers",
        "SELECT * FROM publish.area_drivers WHERE area_code IN (SELECT unnest(?)) ORDER BY outcome, side, rank",
        [lbm_codes], notes), "area_code", links)
    importance = _frame(
        con, tables, "ml.global_importance",
        "SELECT i.* FROM ml.global_importance i JOIN ml.model_runs r USING (outcome, model_version) "
        "WHERE i.rank <= 5 ORDER BY outcome, rank", [], notes,
    ) if "ml.model_runs" in tables else pd.DataFrame()
    gate = _frame(
        con, tables, "ml.model_gate",
        "SELECT g.outcome, g.passed, g.problems FROM ml.model_gate g JOIN ml.model_runs r "
        "USING (outcome, model_version) ORDER BY g.outcome", [], notes,
    ) if "ml.model_runs" in tables else pd.DataFrame()
    survey = pd.DataFrame()
    if "marts.fct_survey_indicators" in tables:
        survey = con.execute("SELECT * FROM marts.fct_survey_indicators ORDER BY source_file, source_row").df()
        # a survey folder is named after its gemeente: <gemeente>_inwonersenquete
        survey = survey[survey["survey"].map(lambda s: str(s).split("_inwonersenquete")[0]) == _slug(gemeente_name)]
    from wijk_assets.lib.wijkbeeld.comparable import nearest_wijken

    comparables = to_page_codes(nearest_wijken(con, lbm_codes, tables), "area_code", links)
    buurt_values = pd.DataFrame()
    if not drivers.empty:
        aggregated = sorted({f.split("__", 1)[1] for f in drivers["feature"] if re.match(r"^bu_(max|min)__", str(f))})
        if aggregated:
            buurt_values = con.execute(
                "SELECT area_code, feature, year, value FROM marts.fct_area_feature_values WHERE area_level = 'buurt' "
                "AND feature IN (SELECT unnest(?)) AND starts_with(area_code, ?) AND value IS NOT NULL "
                "ORDER BY area_code, feature, year",
                [aggregated, "BU" + gemeente_code[2:]],
            ).df()
    return GemeenteData(gemeente_code, gemeente_name, wijken, ages, lbm, lbm_reference, health, comparison,
                        drivers, importance, gate, survey, comparables, buurt_values, notes, links, health_links,
                        lbm_reference_rows)


# Gemeente: the plain mean over its wijken (the Leefbaarometer file has wijk scores only); Nederland:
# the plain mean over all wijken of the country, per year and per column. Not ``lbm - afw``: afw and the
# five dimensions are deviations from a FIXED reference level (lbm - afw is the same 4.1023 in every
# year of the 2002-2022 file), so they are no national mean of the year: the mean of the wijken rose
# from 4.096 (2002) to 4.153 (2022), and the dimensions' means are not 0 (vrz about -0.07).
_LBM_REFERENCE_ROWS_SQL = """
SELECT wijk_code, year, lbm, fys, onv, soc, vrz, won FROM marts.fct_liveability_outcomes
WHERE gemeente_code IN (SELECT unnest(?)) ORDER BY wijk_code, year
"""
_NATIONAL_SQL = """
SELECT year, avg(lbm) AS nl_lbm, avg(fys) AS nl_fys, avg(onv) AS nl_onv,
       avg(soc) AS nl_soc, avg(vrz) AS nl_vrz, avg(won) AS nl_won
FROM marts.fct_liveability_outcomes WHERE lbm IS NOT NULL {hidden} GROUP BY year ORDER BY year
"""
# the wijken publish.* suppresses count in no mean the pages show, the national one included
_NATIONAL_HIDDEN = ("AND wijk_code NOT IN (SELECT area_code FROM publish.area_comparison "
                    "WHERE suppressed_reason IS NOT NULL)")
REFERENCE_COLUMNS = ("lbm", "fys", "onv", "soc", "vrz", "won")
NATIONAL_COLUMNS = tuple(f"nl_{c}" for c in REFERENCE_COLUMNS)


def _reference_means(rows: pd.DataFrame, hidden: set[str]) -> pd.DataFrame:
    """Per year the mean of every Leefbaarometer column over the wijken that are shown: without those
    publish.* suppresses and those linked to a hidden page wijk. A mean that still held a wijk the pages
    hide would give that wijk's score away: the mean minus the shown wijken's differences from it."""
    columns = ["year", *REFERENCE_COLUMNS, "n_wijken", *NATIONAL_COLUMNS]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    shown = rows[~rows["publish_suppressed"] & ~rows["page_code"].isin(hidden)]
    years = rows.reindex(columns=["year", *NATIONAL_COLUMNS]).drop_duplicates("year").sort_values("year")
    means = shown.groupby("year")[list(REFERENCE_COLUMNS)].mean()
    out = years.merge(means, on="year", how="left")
    out["n_wijken"] = out["year"].map(shown.groupby("year")["lbm"].count()).fillna(0).astype(int)
    return out[columns].reset_index(drop=True)


def page_reference(data: GemeenteData, hidden: set[str]) -> pd.DataFrame:
    """``data.lbm_reference`` without the page wijken in ``hidden`` (site.suppressed_codes) either."""
    if data.lbm_reference_rows.empty:
        return data.lbm_reference
    key = frozenset(hidden)
    if key not in data.reference_cache:
        data.reference_cache[key] = _reference_means(data.lbm_reference_rows, set(hidden))
    return data.reference_cache[key]


def hidden_in_reference(data: GemeenteData, hidden: set[str]) -> int:
    """How many Leefbaarometer wijken of the gemeente the page mean leaves out (suppressed or hidden)."""
    rows = data.lbm_reference_rows
    if rows.empty:
        return 0
    left_out = rows[rows["publish_suppressed"] | rows["page_code"].isin(hidden)]
    return int(left_out["wijk_code"].nunique())
