"""Which older-layout wijk a wijk page shows (wijk_assets.lib.wijkbeeld.links), on SYNTHETIC tables.

Each case is a small gemeente built to hit one rule; the real cases (Amsterdam renumbered, Almere's
reused code) are in integration/test_wijkbeeld.py.
"""

from __future__ import annotations

import duckdb
import pandas as pd
from wijk_assets.lib.wijkbeeld.links import (
    health_targets,
    linked_codes,
    load_links,
    reference_gemeenten,
    to_page_codes,
)

TABLES = {"intermediate.int_wijk_geometry", "intermediate.int_area_names",
          "intermediate.int_area_code_harmonisation", "marts.fct_area_feature_values"}


def _insert(con, sql: str, rows: list) -> None:
    if rows:
        con.executemany(sql, rows)


def _con(page: list[tuple[str, str, str]], lbm: list[tuple[str, str, str]], harmonisation=()) -> duckdb.DuckDBPyConnection:
    """page/lbm: (gemeente, wijk code, name); harmonisation: (lbm code, source year, target, rule)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA intermediate")
    con.execute("CREATE TABLE intermediate.int_wijk_geometry (year INTEGER, area_code VARCHAR, area_name VARCHAR, "
                "gemeente_code VARCHAR)")
    _insert(con, "INSERT INTO intermediate.int_wijk_geometry VALUES (2024, ?, ?, ?)",
                    [(code, name, g) for g, code, name in page])
    con.execute("CREATE TABLE intermediate.int_area_names (source VARCHAR, year INTEGER, layout_year INTEGER, "
                "area_code VARCHAR, area_level VARCHAR, area_name VARCHAR, gemeente_code VARCHAR)")
    _insert(con, "INSERT INTO intermediate.int_area_names VALUES ('leefbaarometer', ?, 2022, ?, 'wijk', ?, ?)",
                    [(year, code, name, g) for g, code, name in lbm for year in (2020, 2022)])
    con.execute("CREATE TABLE intermediate.int_area_code_harmonisation (source VARCHAR, source_year INTEGER, "
                "lbm_wijk_code VARCHAR, target_area_code VARCHAR, target_area_level VARCHAR, match_rule VARCHAR)")
    _insert(con, "INSERT INTO intermediate.int_area_code_harmonisation VALUES ('rivm_gezondheid', ?, ?, ?, 'wijk', ?)",
                    [(year, code, target, rule) for code, year, target, rule in harmonisation])
    return con


def _rules(con, gemeente="GM0001") -> dict[str, tuple[str | None, str]]:
    links = load_links(con, TABLES, gemeente)
    return {a: (c, r) for a, c, r in zip(links["area_code"], links["lbm_wijk_code"], links["link_rule"])}


def test_same_codes_in_both_layouts_link_by_code_whatever_the_names():
    con = _con([("GM0001", "WK000100", "Centrum"), ("GM0001", "WK000101", "Noord (nieuw)")],
               [("GM0001", "WK000100", "Centrum"), ("GM0001", "WK000101", "Noord")])
    assert _rules(con) == {"WK000100": ("WK000100", "exact"), "WK000101": ("WK000101", "exact")}


def test_in_a_redivided_gemeente_a_kept_code_needs_the_same_name():
    # GM0001 gained WK000103: the sets differ, so a code alone does not prove the area is the same
    con = _con([("GM0001", "WK000101", "De Werven"), ("GM0001", "WK000102", "Haven-Zuid"),
                ("GM0001", "WK000103", "Haven-Noord")],
               [("GM0001", "WK000101", "de  Werven"), ("GM0001", "WK000102", "Haven")])
    assert _rules(con) == {"WK000101": ("WK000101", "exact_code_and_name"),  # case and spaces ignored
                           "WK000102": (None, "unlinked"), "WK000103": (None, "unlinked")}


def test_a_renumbered_wijk_is_found_by_its_name_once_and_only_when_unambiguous():
    con = _con([("GM0001", "WK0001AA", "Burgwallen-Oude Zijde"), ("GM0001", "WK0001AB", "Wijk 02 Zuid"),
                ("GM0001", "WK0001AC", "Oost"), ("GM0001", "WK0001AD", "Oost"), ("GM0001", "WK0001AE", "Nieuw-West")],
               [("GM0001", "WK000100", "Burgwallen Oude Zijde"), ("GM0001", "WK000102", "Zuid"),
                ("GM0001", "WK000103", "Oost"), ("GM0002", "WK000200", "Nieuw-West")])
    assert _rules(con) == {
        "WK0001AA": ("WK000100", "name_within_gemeente"),  # punctuation ignored
        "WK0001AB": ("WK000102", "name_within_gemeente"),  # the 'Wijk 02' prefix ignored
        "WK0001AC": (None, "unlinked"), "WK0001AD": (None, "unlinked"),  # two page wijken named Oost
        "WK0001AE": (None, "unlinked"),  # the same name in another gemeente is not this wijk
    }


def test_a_merged_gemeente_finds_its_wijken_among_those_of_the_gemeenten_it_was_formed_from():
    # GM0003 was formed from GM0001 and GM0002; the Leefbaarometer still has the old gemeenten's wijken
    con = _con([("GM0003", "WK000300", "Dorp"), ("GM0003", "WK000301", "Haven"), ("GM0003", "WK000302", "Centrum")],
               [("GM0001", "WK000100", "Wijk 00 Dorp"), ("GM0002", "WK000200", "Haven"),
                ("GM0001", "WK000101", "Centrum"), ("GM0002", "WK000201", "Centrum"), ("GM0009", "WK000900", "Haven")])
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.gemeente_changes (old_code VARCHAR, new_code VARCHAR)")
    con.execute("INSERT INTO staging.gemeente_changes VALUES ('GM0001', 'GM0003'), ('GM0002', 'GM0003')")
    without_seed = _rules(con, "GM0003")
    assert set(r for _c, r in without_seed.values()) == {"unlinked"}  # the seed is not in TABLES yet
    links = load_links(con, TABLES | {"staging.gemeente_changes"}, "GM0003")
    assert {a: (c, r) for a, c, r in zip(links["area_code"], links["lbm_wijk_code"], links["link_rule"])} == {
        "WK000300": ("WK000100", "name_within_gemeente"),
        "WK000301": ("WK000200", "name_within_gemeente"),  # not GM0009's Haven: not a predecessor
        "WK000302": (None, "unlinked"),  # a Centrum in both former gemeenten: ambiguous
    }


def test_health_follows_the_link_only_through_rules_that_give_the_wijks_own_area():
    con = _con([("GM0001", "WK0001AA", "Centrum"), ("GM0001", "WK0001AB", "Zuid")],
               [("GM0001", "WK000100", "Centrum"), ("GM0001", "WK000101", "Zuid")],
               [("WK000100", 2020, "WK000100", "exact"), ("WK000101", 2020, "WK000199", "contained_in_sole_unmatched_wijk"),
                ("WK000101", 2016, None, "unmatched")])
    links = load_links(con, TABLES, "GM0001")
    targets = health_targets(con, TABLES, links, "rivm_gezondheid")
    assert targets.to_dict("records") == [
        {"area_code": "WK0001AA", "year": 2020, "target_area_code": "WK000100", "match_rule": "exact"}]
    assert linked_codes(links) == ["WK000100", "WK000101"]


def test_frames_of_the_older_layout_carry_the_page_codes():
    links = pd.DataFrame({"area_code": ["WK0001AA", "WK0001AB"], "lbm_wijk_code": ["WK000100", None],
                          "lbm_wijk_name": ["Centrum", None], "lbm_layout_year": [2022, None],
                          "link_rule": ["name_within_gemeente", "unlinked"]})
    frame = pd.DataFrame({"wijk_code": ["WK000100", "WK000100", "WK000101"], "year": [2020, 2022, 2022]})
    out = to_page_codes(frame, "wijk_code", links)
    assert out.to_dict("list") == {"wijk_code": ["WK0001AA", "WK0001AA"], "year": [2020, 2022]}


def test_without_the_names_table_codes_link_as_before():
    con = _con([("GM0001", "WK000100", "Centrum")], [])
    links = load_links(con, TABLES - {"intermediate.int_area_names"}, "GM0001")
    assert links[["area_code", "lbm_wijk_code", "link_rule"]].to_dict("records") == [
        {"area_code": "WK000100", "lbm_wijk_code": "WK000100", "link_rule": "exact"}]


def test_the_gemeente_mean_of_a_merged_gemeente_uses_its_former_gemeenten_and_needs_no_seed():
    con = _con([("GM0003", "WK000300", "Dorp")], [("GM0001", "WK000100", "Dorp")])
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.fct_liveability_outcomes (wijk_code VARCHAR, gemeente_code VARCHAR)")
    con.execute("INSERT INTO marts.fct_liveability_outcomes VALUES ('WK000100', 'GM0001')")
    tables = TABLES | {"marts.fct_liveability_outcomes"}
    assert reference_gemeenten(con, tables, "GM0003") == ["GM0003"]  # without the seed: its own code only
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.gemeente_changes (old_code VARCHAR, new_code VARCHAR)")
    con.execute("INSERT INTO staging.gemeente_changes VALUES ('GM0001', 'GM0003')")
    assert reference_gemeenten(con, tables | {"staging.gemeente_changes"}, "GM0003") == ["GM0003", "GM0001"]
    assert reference_gemeenten(con, tables | {"staging.gemeente_changes"}, "GM0001") == ["GM0001"]
