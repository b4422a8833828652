"""Issue 11, observation 4: one unreadable new-year partition must not freeze every downstream update.

Real data: the Leefbaarometer (release year 2022) and KWB Utrecht 2023 are loaded; an unreadable KWB
2024 file (the real 2023 xlsx, truncated) is dropped in as a new year and fails. Then the
Leefbaarometer changes. Before the fix the downstream asset (declared with the project's own
``downstream_automation_condition``) was never requested again, because a dependency partition was
missing. Now it follows; ``wijk-assets status`` names the stuck partition (file, reason, what to do)
and exits 1; removing the bad file drops the never-loaded partition and status is clean again.

The downstream asset here is a small stand-in (``mart``) for the dbt models, so the test exercises the
automation condition itself without building the whole pipeline.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import dagster as dg
import pytest

from wijk_assets.defs.raw.assets import raw_asset_key, raw_assets, release_year_partitions
from wijk_assets.defs.raw.checks import raw_gate_checks
from wijk_assets.cli import main
from wijk_assets.runner.materialize import ensure_dagster_home, materialize_keys
from wijk_assets.definitions import build_resources
from wijk_assets.runner.refresh import follow_automation
from wijk_assets.runner.status import forget_unloaded_orphans, stuck_partitions
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.settings import Settings

LBM = Path("leefbaarometer") / "lbm3_scores_wijken_2002-2022.csv"
KWB = Path("cbs_kwb_xlsx_utrecht") / "kwb-2023_gm0344_utrecht.xlsx"
BAD_KWB = Path("cbs_kwb_xlsx_utrecht") / "kwb-2024_gm0344_utrecht.xlsx"
LBM_KEY, KWB_KEY = raw_asset_key("leefbaarometer"), raw_asset_key("cbs_kwb")


@dg.asset(
    key="mart",
    deps=[LBM_KEY, KWB_KEY],
    code_version="1",
    automation_condition=downstream_automation_condition(),
)
def mart() -> None:
    """Stand-in for the dbt models downstream of both sources."""


def _revise_lbm(path: Path) -> None:
    """A genuine-looking revision of the Leefbaarometer: one 2022 score moves by 0.01."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    year, score = rows[0].index("jaar"), rows[0].index("lbm")
    row = next(r for r in rows[1:] if r[year] == "2022" and r[score] not in ("", "NA"))
    row[score] = f"{float(row[score]) + 0.01:.6f}"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


@pytest.fixture
def world(shared_data_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    for f in (LBM, KWB):
        (data / f.parent).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data_dir / f, data / f)
    db = tmp_path / "wijk.duckdb"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("WIJK_DATA_DIR", str(data))
    monkeypatch.setenv("WIJK_DUCKDB_PATH", str(db))
    monkeypatch.delenv("WIJK_CBS_BASE_URL", raising=False)
    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    settings = Settings(data_dir=data, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")
    defs = dg.Definitions(
        assets=[*raw_assets, mart],
        asset_checks=raw_gate_checks(["leefbaarometer", "cbs_kwb"]),
        resources=build_resources(settings),
    )
    instance.add_dynamic_partitions(release_year_partitions("leefbaarometer").name, ["2022"])
    instance.add_dynamic_partitions(release_year_partitions("cbs_kwb").name, ["2023"])
    assert materialize_keys(defs, instance, [LBM_KEY], "2022", trigger="test").success
    assert materialize_keys(defs, instance, [KWB_KEY], "2023", trigger="test").success
    yield {"data": data, "db": db, "instance": instance, "defs": defs, "settings": settings}
    instance.dispose()


def _mart_runs(report) -> int:
    return sum(1 for run in report.runs if "mart" in run.asset_keys and run.success)


def test_unreadable_new_year_does_not_freeze_other_sources(world, shared_data_dir, capsys):
    instance, defs, data = world["instance"], world["defs"], world["data"]
    assert materialize_keys(defs, instance, [dg.AssetKey("mart")], None, trigger="test").success
    first = follow_automation(defs, instance, log=lambda *_: None)  # the baseline evaluation
    assert _mart_runs(first) == 0
    cursor = first.automation_cursor

    # a new KWB year whose file cannot be read: the partition is added and its load fails
    blob = (shared_data_dir / KWB).read_bytes()
    (data / BAD_KWB).write_bytes(blob[: len(blob) // 2])
    instance.add_dynamic_partitions(release_year_partitions("cbs_kwb").name, ["2024"])
    failed = materialize_keys(defs, instance, [KWB_KEY], "2024", trigger="test")
    assert not failed.success

    # another source changes: its change must still reach the mart
    _revise_lbm(data / LBM)
    assert materialize_keys(defs, instance, [LBM_KEY], "2022", trigger="test").success
    followed = follow_automation(defs, instance, cursor=cursor, log=lambda *_: None)
    assert _mart_runs(followed) == 1, [(r.asset_keys, r.success) for r in followed.runs]
    cursor = followed.automation_cursor

    # the stuck partition is named with its file, a one-line reason and what to do
    (stuck,) = stuck_partitions(instance, defs.resources["cbs"], world["db"])
    assert (stuck.source, stuck.year, stuck.stage, stuck.loaded_before) == ("cbs_kwb", "2024", "read", False)
    assert stuck.files == [BAD_KWB.as_posix()]
    assert BAD_KWB.name in stuck.reason and "\n" not in stuck.reason
    block = stuck.block()
    assert block.startswith("STUCK raw/cbs_kwb [2024]") and "to do:" in block and "remove it" in block

    # `wijk-assets status` prints that block (no stack trace) and exits 1
    capsys.readouterr()
    assert main(["status"]) == 1
    out = capsys.readouterr()
    assert "STUCK raw/cbs_kwb [2024]" in out.out and BAD_KWB.name in out.out
    assert "Traceback" not in out.out + out.err

    # removing the bad file recovers: the never-loaded partition is dropped, nothing is stuck,
    # and the automation does not rebuild anything for it
    (data / BAD_KWB).unlink()
    removed = forget_unloaded_orphans(instance, defs.resources["cbs"], ["cbs_kwb"], log=lambda *_: None)
    assert removed == ["cbs_kwb[2024]"]
    assert "2024" not in instance.get_dynamic_partitions(release_year_partitions("cbs_kwb").name)
    assert stuck_partitions(instance, defs.resources["cbs"], world["db"]) == []
    assert main(["status"]) == 0
    assert "no stuck raw partitions" in capsys.readouterr().out
    after = follow_automation(defs, instance, cursor=cursor, log=lambda *_: None)
    assert after.runs == []


def test_refused_revision_of_a_loaded_year_is_stuck_with_its_quarantine(world, shared_data_dir):
    """A gate-1 refusal of a year that did load: stuck, keeps its rows, points at the quarantine."""
    instance, defs, data = world["instance"], world["defs"], world["data"]
    with open(data / LBM, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    code = rows[0].index("wk_code")
    for row in rows[1:]:
        row[code] = row[code][2:]  # codes without their WK prefix
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    (data / LBM).write_text(out.getvalue(), encoding="utf-8")
    result = materialize_keys(defs, instance, [LBM_KEY], "2022", trigger="test")
    assert not result.success
    (stuck,) = stuck_partitions(instance, defs.resources["cbs"], world["db"])
    assert (stuck.source, stuck.year, stuck.stage, stuck.loaded_before) == ("leefbaarometer", "2022", "gate_1", True)
    assert stuck.files == [LBM.as_posix()] and "area_code_clean" in stuck.reason
    assert f"quarantine.leefbaarometer WHERE run_id = '{result.run_id}'" in stuck.block()
    # the file that is live put back in its place: nothing is left to load, so nothing is stuck (it stayed
    # stuck for good: the release check saw no change and every refresh exited 1)
    shutil.copyfile(shared_data_dir / LBM, data / LBM)
    assert stuck_partitions(instance, defs.resources["cbs"], world["db"]) == []
    # ... and loading it again is a success too
    assert materialize_keys(defs, instance, [LBM_KEY], "2022", trigger="test").success
    assert stuck_partitions(instance, defs.resources["cbs"], world["db"]) == []


def test_a_load_that_no_refresh_followed_reaches_the_marts_at_the_next_refresh(world, monkeypatch):
    """A refresh that loaded a raw partition and stopped before its automation (a crash, a killed cron
    job), or a load started by hand: the next `refresh` finds no new release (the partition already
    holds the file) and must still carry the load downstream. Each refresh began with a baseline
    evaluation that counted everything before it as handled, so the mart stayed stale for good."""
    from wijk_assets.runner import refresh as runner

    instance, defs, data, settings = world["instance"], world["defs"], world["data"], world["settings"]
    assert materialize_keys(defs, instance, [dg.AssetKey("mart")], None, trigger="test").success
    quiet = lambda *_: None  # noqa: E731
    # the first refresh loads the Leefbaarometer's other release years (the world holds 2022 only)
    assert runner.refresh(settings, instance, defs=defs, log=quiet).success
    assert runner.stored_cursor(instance) is not None
    assert runner.refresh(settings, instance, defs=defs, log=quiet).runs == []  # settled

    # the revised Leefbaarometer is loaded (by a refresh that then died, or by hand); nothing follows it
    _revise_lbm(data / LBM)
    for year in instance.get_dynamic_partitions(release_year_partitions("leefbaarometer").name):
        assert materialize_keys(defs, instance, [LBM_KEY], year, trigger="test").success  # every year of the file

    resumed = runner.refresh(settings, instance, defs=defs, log=quiet)
    assert [r.asset_keys for r in resumed.runs] == [["mart"]], [(r.trigger, r.asset_keys) for r in resumed.runs]
    assert resumed.success
    assert runner.refresh(settings, instance, defs=defs, log=quiet).runs == []  # and once only

    # a cursor this Dagster cannot read: the refresh says so and starts from a baseline, it does not fail
    instance.run_storage.set_cursor_values({runner.CURSOR_KEY: "not a cursor"})
    lines = []
    assert runner.refresh(settings, instance, defs=defs, log=lines.append).success
    assert any("stored automation cursor cannot be read" in line for line in lines)
    assert runner.stored_cursor(instance) is not None


def test_cli_materialize_prints_a_stuck_block_not_a_stack_trace(shared_data_dir, tmp_path, monkeypatch, capfd):
    """`wijk-assets materialize --raw-only` with a refused new KWB year (thousands separators, generated
    from the real 2023 file): the good year loads, the command ends 1 with one STUCK block."""
    from wijk_assets_tests.integration.test_plausibility import damage_xlsx

    data = tmp_path / "data"
    (data / KWB.parent).mkdir(parents=True)
    shutil.copyfile(shared_data_dir / KWB, data / KWB)

    def separators(sheet, rows):
        col = rows[0].index("a_inw")
        for row in rows[1:]:
            if isinstance(row[col], float):
                row[col] = f"{int(row[col]):,}".replace(",", ".")
        return "kwb-2024", rows

    damage_xlsx(shared_data_dir / KWB, data / BAD_KWB, separators)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("WIJK_DATA_DIR", str(data))
    monkeypatch.setenv("WIJK_DUCKDB_PATH", str(tmp_path / "wijk.duckdb"))
    monkeypatch.delenv("WIJK_CBS_BASE_URL", raising=False)

    assert main(["materialize", "--raw-only", "--source", "cbs_kwb"]) == 1
    out = capfd.readouterr()
    assert "ok  raw/cbs_kwb [2023]" in out.out and "FAILED raw/cbs_kwb [2024]" in out.out
    assert [line for line in out.out.splitlines() if line.startswith("STUCK ")] == [
        "STUCK raw/cbs_kwb [2024] - the partition has no rows (never loaded); other sources carry on"
    ]
    assert f"file:   {BAD_KWB.as_posix()}" in out.out
    assert "values_have_no_thousands_separator(value_raw)" in out.out and "'367.947'" in out.out
    assert "quarantine.cbs_kwb WHERE run_id" in out.out
    assert "Traceback" not in out.out + out.err


# SYNTHETIC stand-ins for a downstream step: "error" raises what an out-of-memory worker or a full disk
# would, "refuse" refuses on purpose (dg.Failure, as a dbt build refused by its tests or gate 2 does)
_FLAKY_MODE = {"mode": "ok"}


@dg.asset(key="flaky_mart", deps=[LBM_KEY], code_version="1", automation_condition=downstream_automation_condition())
def flaky_mart() -> None:
    if _FLAKY_MODE["mode"] == "error":
        raise MemoryError("synthetic: the worker ran out of memory")
    if _FLAKY_MODE["mode"] == "refuse":
        raise dg.Failure("synthetic: the new build was refused by its checks")


@dg.asset(key="flaky_report", deps=["flaky_mart"], code_version="1", automation_condition=downstream_automation_condition())
def flaky_report() -> None:
    """What follows the mart."""


def test_a_run_that_failed_with_an_error_is_retried_once_by_the_next_refresh(world, monkeypatch, capsys):
    """A mart run that failed with an error (not a refusal) counted as handled: the next refreshes found
    no new release and left the mart and everything after it on their old version, silently, until a
    source published again. Now the next `refresh` runs it again, once, and what follows it; a
    deliberate refusal is not retried (the same input gives the same refusal). Partitions, an error that
    persists and skipped steps: ``unit/test_refresh_retry.py``."""
    from wijk_assets.runner import refresh as runner

    instance, data, settings = world["instance"], world["data"], world["settings"]
    # the real Leefbaarometer file cut to its 2022 rows: each revision reloads one partition, not eight
    with open(data / LBM, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    with open(data / LBM, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([rows[0], *(r for r in rows[1:] if r[2] == "2022")])
    defs = dg.Definitions(assets=[*raw_assets, flaky_mart, flaky_report],
                          asset_checks=raw_gate_checks(["leefbaarometer", "cbs_kwb"]),
                          resources=build_resources(settings))
    monkeypatch.setitem(_FLAKY_MODE, "mode", "ok")
    quiet = lambda *_: None  # noqa: E731
    assert runner.refresh(settings, instance, defs=defs, log=quiet).success  # baseline
    assert runner.refresh(settings, instance, defs=defs, log=quiet).runs == []

    def revise_then_refresh(mode: str):
        """The Leefbaarometer is revised: the refresh reloads it, and the run of the mart (and the report
        after it, which is skipped: no error of its own) fails."""
        _FLAKY_MODE["mode"] = mode
        _revise_lbm(data / LBM)
        failed = runner.refresh(settings, instance, defs=defs, log=quiet)
        assert [(r.trigger, r.asset_keys, r.success) for r in failed.runs] == [
            ("refresh", [LBM_KEY.to_user_string()], True), ("automation tick 1", ["flaky_mart", "flaky_report"], False)]

    revise_then_refresh("error")
    # `wijk-assets status` names it, with its error and what to do, and exits 1
    import wijk_assets.definitions
    from wijk_assets.runner.status import print_status

    monkeypatch.setattr(wijk_assets.definitions, "build_definitions", lambda _settings: defs)
    assert print_status(settings, stale=False, instance=instance) == 1
    out = capsys.readouterr().out
    assert "FAILED flaky_mart - error in run" in out and "MemoryError: synthetic" in out, out
    _FLAKY_MODE["mode"] = "ok"
    lines = []
    retried = runner.refresh(settings, instance, defs=defs, log=lines.append)
    assert [(r.trigger, r.asset_keys, r.success) for r in retried.runs] == [
        ("retry of a failed run", ["flaky_mart"], True), ("automation tick 1", ["flaky_report"], True)]
    assert any(line.startswith("retry: flaky_mart failed with an error") and "ran out of memory" in line
               for line in lines), lines
    assert runner.refresh(settings, instance, defs=defs, log=quiet).runs == []  # once only

    revise_then_refresh("refuse")
    _FLAKY_MODE["mode"] = "ok"
    assert runner.refresh(settings, instance, defs=defs, log=quiet).runs == []  # a refusal stands
