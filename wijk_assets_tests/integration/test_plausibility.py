"""Issue 11, observation 2: damaged real files that the per-row / per-year GE suite accepted silently.

Each case loads the REAL file first (a good live partition), then a damaged copy generated here from
the real file, and asserts: the plausibility rule that catches it is named in the failure, the live
rows are the previous ones and the refused rows are in quarantine. Real data: KWB Utrecht 2023 (one
xlsx, gemeente + wijken + buurten) and RIVM 2020 (two files of one year: 18+ and 65+).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from openpyxl import Workbook
from python_calamine import CalamineWorkbook

from wijk_assets.defs.raw.assets import raw_asset_key, release_year_partitions
from wijk_assets.lib.quality.plausibility import (
    Partition,
    file_role,
    thousands_separator_rule,
)
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.definitions import build_definitions
from wijk_assets.settings import Settings

KWB = Path("cbs_kwb_xlsx_utrecht") / "kwb-2023_gm0344_utrecht.xlsx"
RIVM_18 = Path("rivm_gezondheid_50090NED") / "gezondheid_buurt_2020_18plus.xlsx"
RIVM_65 = Path("rivm_gezondheid_50090NED") / "gezondheid_buurt_2020_65plus.xlsx"


def read_sheet(path: Path) -> tuple[str, list[list]]:
    workbook = CalamineWorkbook.from_path(str(path))
    name = workbook.sheet_names[0]
    return name, workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)


def write_sheet(path: Path, sheet: str, rows: list[list]) -> None:
    workbook = Workbook(write_only=True)
    target = workbook.create_sheet(sheet)
    for row in rows:
        target.append([None if v == "" else v for v in row])
    workbook.save(path)


def damage_xlsx(real: Path, target: Path, change) -> None:
    sheet, rows = read_sheet(real)
    sheet, rows = change(sheet, [list(r) for r in rows])
    write_sheet(target, sheet, rows)


class Loaded:
    def __init__(self, shared: Path, root: Path, source: str, year: str, files: list[Path]):
        self.data = root / "data"
        for f in files:
            (self.data / f.parent).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / f, self.data / f)
        self.db = root / "wijk.duckdb"
        self.source, self.year, self.shared = source, year, shared
        self.instance = dg.DagsterInstance.ephemeral()
        self.instance.add_dynamic_partitions(release_year_partitions(source).name, [year])
        self.defs = build_definitions(
            Settings(data_dir=self.data, duckdb_path=self.db, cbs_base_url=None, gemeente="GM0106")
        )
        assert self.run().success

    def run(self):
        return materialize_keys(self.defs, self.instance, [raw_asset_key(self.source)], self.year, trigger="test")

    def restore(self, *files: Path) -> None:
        for f in files:
            shutil.copyfile(self.shared / f, self.data / f)

    def live(self) -> tuple:
        with duckdb.connect(str(self.db), read_only=True) as con:
            return con.execute(
                f"SELECT count(*), sum(hash(area_code, subgroup, measure_key, value_raw, source_sha256)) "
                f"FROM raw.{self.source} WHERE release_year = {int(self.year)}"
            ).fetchone()

    def refused(self, result) -> tuple[list[str], str, int]:
        """(failed expectation labels, failure description, quarantined rows) of a refused run."""
        assert not result.success
        assert not result.get_asset_materialization_events()
        data = result.get_step_failure_events()[0].event_specific_data.user_failure_data
        with duckdb.connect(str(self.db), read_only=True) as con:
            moved = con.execute(
                f"SELECT count(*) FROM quarantine.{self.source} WHERE run_id = ?", [result.run_id]
            ).fetchone()[0]
        return data.metadata["failed_expectations"].value, data.description, moved


@pytest.fixture(scope="module")
def kwb(shared_data_dir, tmp_path_factory) -> Loaded:
    return Loaded(shared_data_dir, tmp_path_factory.mktemp("kwb"), "cbs_kwb", "2023", [KWB])


@pytest.fixture(scope="module")
def rivm(shared_data_dir, tmp_path_factory) -> Loaded:
    return Loaded(shared_data_dir, tmp_path_factory.mktemp("rivm"), "rivm_gezondheid", "2020", [RIVM_18, RIVM_65])


def _column(rows: list[list], name: str) -> int:
    return rows[0].index(name)


def _with_separator(value) -> str:
    return f"{int(value):,}".replace(",", ".")


@pytest.mark.parametrize("scope", ["one_cell", "whole_column"])
def test_thousands_separator_in_a_count_column_is_refused(kwb, shared_data_dir, scope):
    def change(sheet, rows):
        col = _column(rows, "a_inw")
        targets = rows[1:2] if scope == "one_cell" else rows[1:]
        for row in targets:  # the gemeente row first: 367947 -> '367.947'
            if isinstance(row[col], float):
                row[col] = _with_separator(row[col])
        return sheet, rows

    before = kwb.live()
    damage_xlsx(shared_data_dir / KWB, kwb.data / KWB, change)
    failed, description, moved = kwb.refused(kwb.run())
    assert "values_have_no_thousands_separator(value_raw)" in failed
    assert "367.947" in description and KWB.name in description
    assert kwb.live() == before and moved > 0
    kwb.restore(KWB)


def test_column_shifted_one_row_down_is_refused(kwb, shared_data_dir):
    def change(sheet, rows):
        col = _column(rows, "a_inw")
        values = [r[col] for r in rows[1:]]
        for row, value in zip(rows[1:], [""] + values[:-1]):  # a wijk now holds the gemeente's population
            row[col] = value
        return sheet, rows

    before = kwb.live()
    damage_xlsx(shared_data_dir / KWB, kwb.data / KWB, change)
    failed, _, moved = kwb.refused(kwb.run())
    assert any(f.startswith("sum_of_parts_matches_whole(value_raw[") for f in failed), failed
    assert kwb.live() == before and moved > 0
    kwb.restore(KWB)


def test_indicator_dropped_from_one_of_several_files_of_a_year_is_refused(rivm, shared_data_dir):
    def change(sheet, rows):
        col = _column(rows, "Roker_11")
        return sheet, [r[:col] + r[col + 1:] for r in rows]

    before = rivm.live()
    damage_xlsx(shared_data_dir / RIVM_65, rivm.data / RIVM_65, change)
    result = rivm.run()
    failed, description, moved = rivm.refused(result)
    assert "file_delivers_required_measures(measure_stem)" in failed
    assert "file_measures_match_sibling_files(measure_key)" in failed
    assert RIVM_65.name in description and "Roker" in description
    assert rivm.live() == before and moved > 0
    rivm.restore(RIVM_65)


def test_half_of_one_file_of_a_year_is_refused(rivm, shared_data_dir):
    def change(sheet, rows):
        return sheet, rows[: len(rows) // 2]

    before = rivm.live()
    damage_xlsx(shared_data_dir / RIVM_65, rivm.data / RIVM_65, change)
    failed, description, moved = rivm.refused(rivm.run())
    assert "file_area_count_vs_sibling_files(area_code)" in failed
    assert "file_area_count_vs_previous_partition(area_code)" in failed
    assert RIVM_65.name in description
    assert rivm.live() == before and moved > 0
    rivm.restore(RIVM_65)


def test_year_over_year_jump_is_refused_against_the_previous_live_partition(kwb, shared_data_dir):
    """A gemeente count 10x too large (not a separator, not a shifted column): only the comparison
    with the previous live partition can see it; the sum-of-parts rule is switched off here by
    scaling the wijken and buurten too."""

    def change(sheet, rows):
        col = _column(rows, "a_woning")
        for row in rows[1:]:
            if isinstance(row[col], float):
                row[col] = row[col] * 10
        return sheet, rows

    before = kwb.live()
    damage_xlsx(shared_data_dir / KWB, kwb.data / KWB, change)
    failed, description, _ = kwb.refused(kwb.run())
    assert failed == ["year_over_year_change_within_factor(value_raw[^a_(inw|man|vrouw|hh|woning)$])"]
    assert "a_woning" in description
    assert kwb.live() == before
    kwb.restore(KWB)


def test_separator_rule_keeps_genuine_decimals_synthetic():
    """Synthetic edge cases: decimals of other shapes are not separators; mixed whole numbers and
    d.ddd are; '1.234.567' always is."""
    con = duckdb.connect()
    frame = pd.DataFrame(
        {
            "measure_key": ["dens"] * 4 + ["score"] * 3 + ["count"] * 3 + ["big"],
            "value_raw": ["1.234", "12.5", "3", "0.123", "0.123", "1.234", "2.345", "12", "367.947", "5", "1.234.567"],
            "release_year": 2023, "area_code": "GM0344", "subgroup": "", "source_file": "f.csv", "source_row": 2,
        }
    )
    con.register("staged", frame)
    part = Partition(staged="staged", live="live", year=2023, previous_year=None)
    (result,) = thousands_separator_rule(con, part, {"name": "t"})
    assert not result["success"]
    assert set(result["observed_value"]) == {"count", "big"}


def test_file_role_matches_files_of_one_kind_across_years():
    globs = [("rivm_gezondheid_50090NED/gezondheid_buurt_*.xlsx", r"_(\d{4})_")]
    assert file_role("rivm_gezondheid_50090NED/gezondheid_buurt_2016_65plus.xlsx", 2016, globs)[1] == (
        file_role("rivm_gezondheid_50090NED/gezondheid_buurt_2020_65plus.xlsx", 2020, globs)[1]
    )


SES = Path("cbs_ses_woa_85163NED") / "ses_woa_scores_wijk_buurt_2019_gm0363_amsterdam.csv"


def test_sum_of_parts_is_generic_ses_woa_households(shared_data_dir, tmp_path):
    """The same rule, configured in another suite (raw_cbs_ses_woa.json, households rounded to 100):
    one wijk's household count ten times too large (real Amsterdam file, damaged copy) is refused."""
    loaded = Loaded(shared_data_dir, tmp_path, "cbs_ses_woa", "2019", [SES])
    target = loaded.data / SES
    text = target.read_bytes().decode("utf-8-sig")
    line = next(row for row in text.splitlines() if '"WK036300  "' in row)
    fields = line.split(";")
    fields[3] = '"   29000"'  # 2900 households in Burgwallen-Oude Zijde
    target.write_bytes(("\ufeff" + text.replace(line, ";".join(fields))).encode("utf-8"))
    before = loaded.live()
    failed, description, moved = loaded.refused(loaded.run())
    assert [f for f in failed if f.startswith("sum_of_parts_matches_whole")], failed
    assert SES.name in description
    assert loaded.live() == before and moved > 0
    with duckdb.connect(str(loaded.db), read_only=True) as con:
        kept = con.execute(
            "SELECT trim(value_raw) FROM quarantine.cbs_ses_woa WHERE trim(area_code) = 'WK036300' "
            "AND measure_key = 'Particuliere huishoudens (Aantal)'"
        ).fetchall()
    assert kept == [("29000",)]


SURVEY_A = Path("utrecht_inwonersenquete") / "uic_tevredenheid_culturele_voorzieningen_buurt_2023_subwijk.csv"
SURVEY_B = Path("utrecht_inwonersenquete") / "uic_tevredenheid_jongerenvoorzieningen_subwijk_2023.csv"


def test_reload_without_a_file_of_the_live_partition_is_refused_until_its_withdrawal_is_declared(
    shared_data_dir, tmp_path
):
    """A release year is live with rows from two files; the publisher's folder then holds only one of them.
    The remaining file passes every rule on its own, so without this rule the swap silently deleted the
    other file's rows. Refused (rows kept, refused rows in quarantine, the file named) until the
    withdrawal is declared; then accepted, and the metadata says which file's rows left."""
    survey = Loaded(shared_data_dir, tmp_path, "gemeente_survey", "2023", [SURVEY_A, SURVEY_B])
    before = survey.live()
    with duckdb.connect(str(survey.db), read_only=True) as con:
        files_before = {r[0] for r in con.execute("SELECT DISTINCT source_file FROM raw.gemeente_survey").fetchall()}
    gone = next(f for f in files_before if f.endswith(SURVEY_B.name))

    (survey.data / SURVEY_B).unlink()
    failed, description, moved = survey.refused(survey.run())
    assert failed == ["files_of_live_partition_delivered(source_file)"]
    assert f"missing {gone}" in description and "WIJK_WITHDRAWN_FILES" in description
    assert survey.live() == before and moved > 0

    # declared by file name (as the publisher's notice would name it): accepted, only file A stays live
    survey.defs = build_definitions(Settings(data_dir=survey.data, duckdb_path=survey.db, cbs_base_url=None,
                                             gemeente="GM0106", withdrawn_files=(SURVEY_B.name,)))
    result = survey.run()
    assert result.success
    [materialization] = result.get_asset_materialization_events()
    metadata = materialization.event_specific_data.materialization.metadata
    assert metadata["withdrawn_files"].value == [gone]
    with duckdb.connect(str(survey.db), read_only=True) as con:
        files_after = {r[0] for r in con.execute("SELECT DISTINCT source_file FROM raw.gemeente_survey").fetchall()}
    assert files_after == files_before - {gone}

    # the file is back: a new role is never refused, and the live rows are the original ones again
    survey.restore(SURVEY_B)
    assert survey.run().success and survey.live() == before

    # the same file under another name (a corrected release): taken as the replacement, with a warning
    renamed = SURVEY_B.with_name(SURVEY_B.name.replace("_2023", "_gecorrigeerd_2023"))
    (survey.data / SURVEY_B).rename(survey.data / renamed)
    survey.defs = build_definitions(Settings(data_dir=survey.data, duckdb_path=survey.db, cbs_base_url=None,
                                             gemeente="GM0106"))
    result = survey.run()
    assert result.success
    [materialization] = result.get_asset_materialization_events()
    metadata = materialization.event_specific_data.materialization.metadata
    assert metadata["replaced_files"].value == {gone: [str(renamed)]}
    assert "withdrawn_files" not in metadata
    with duckdb.connect(str(survey.db), read_only=True) as con:
        files_now = {r[0] for r in con.execute("SELECT DISTINCT source_file FROM raw.gemeente_survey").fetchall()}
    assert files_now == files_before - {gone} | {str(renamed)}
