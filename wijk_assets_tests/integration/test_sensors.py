"""Release sensor, weekly fallback schedules, downstream automation, and parallel raw partitions.

Offline tests run on a temporary data folder holding a copy of a REAL shared file (the SES-WOA 2019
Amsterdam StatLine export). Where a test needs a second year it copies that same real file under a
2020 name with its Perioden column rewritten to 2020: a real file relabelled for the test, not a CBS
release. Live tests run against the loopback fake CBS server (wijk_assets_tests/fakes/fake_cbs_server.py),
whose catalog holds the real 85984NED TableInfos ("Kerncijfers wijken en buurten 2024").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from wijk_assets.lib import warehouse
from wijk_assets.defs.raw.assets import build_raw_asset, raw_asset_key, raw_assets, release_year_partitions
from wijk_assets.defs.resources import CbsSourceResource, WarehouseResource
from wijk_assets.defs.automation.conditions import automation_sensor, downstream_automation_condition
from wijk_assets.defs.automation.release_sensor import REASON_TAG, SOURCE_TAG, build_release_sensor, release_sensor
from wijk_assets.defs.automation.schedules import weekly_refresh_schedules
from wijk_assets.lib.release.planner import load_cursor, plan_refresh
from wijk_assets.runner.refresh import follow_automation
from wijk_assets_tests.fakes.fake_cbs_server import FakeCbsServer

SES_DIR = "cbs_ses_woa_85163NED"
SES_2019 = "ses_woa_scores_wijk_buurt_2019_gm0363_amsterdam.csv"
SES_2020 = "ses_woa_scores_wijk_buurt_2020_gm0363_amsterdam.csv"  # relabelled copy, made by the tests


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _tick(sensor, instance, cursor, cbs):
    """One sensor evaluation, then what the daemon does with the result: add the partitions."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"cbs": cbs})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _runs(result) -> list[tuple[str, str]]:
    return sorted((r.asset_selection[0].path[-1], r.partition_key) for r in result.run_requests or [])


def _added(result) -> dict[str, list[str]]:
    return {r.partitions_def_name: sorted(r.partition_keys) for r in result.dynamic_partitions_requests or []}


@pytest.fixture()
def ses_folder(shared_data_dir, tmp_path) -> Path:
    """A data folder with one real file: the SES-WOA 2019 Amsterdam export (writable copy)."""
    data = tmp_path / "data"
    (data / SES_DIR).mkdir(parents=True)
    shutil.copyfile(shared_data_dir / SES_DIR / SES_2019, data / SES_DIR / SES_2019)
    return data


def _relabel_to_2020(data: Path) -> Path:
    """Copy the real 2019 file under a 2020 name with Perioden rewritten to 2020 (test relabelling)."""
    text = (data / SES_DIR / SES_2019).read_text(encoding="utf-8-sig")
    lines = text.splitlines(keepends=True)
    relabelled = [lines[0]] + [
        '"2020";' + line[len('"2019";'):] if line.startswith('"2019";') else line for line in lines[1:]
    ]
    target = data / SES_DIR / SES_2020
    target.write_text("\ufeff" + "".join(relabelled), encoding="utf-8")
    return target


def _edit_one_value(path: Path) -> None:
    """Change one cell (Amsterdam's household count) - the file stays a valid StatLine export."""
    text = path.read_text(encoding="utf-8-sig")
    assert '"GM0363    ";"  457400"' in text
    path.write_text("\ufeff" + text.replace('"GM0363    ";"  457400"', '"GM0363    ";"  457401"'), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# plan_refresh: pure
# ---------------------------------------------------------------------------------------------------


def test_plan_refresh_decides_per_source_and_year():
    available = {"cbs_kwb": {"85984NED": {2024: "2025-03-27T02:00:00"}}}
    first = plan_refresh({}, available, {})
    assert first.new_partitions == {"cbs_kwb": ["2024"]}
    assert [(r.source, r.year, r.reason) for r in first.runs] == [("cbs_kwb", "2024", "new_year")]
    assert first.runs[0].run_key == "cbs_kwb:2024:85984NED@2025-03-27T02:00:00#1"
    assert first.cursor["sources"] == {"cbs_kwb": {"85984NED": {"2024": "2025-03-27T02:00:00"}}}

    known = {"cbs_kwb": ["2024"]}
    same = plan_refresh(first.cursor, available, known)
    assert not same.runs and not same.new_partitions and not same.changed
    assert same.cursor == first.cursor

    # a new table for a new year, and an update of the existing one
    newer = {
        "cbs_kwb": {
            "85984NED": {"2024": "2025-06-01T02:00:00"},
            "86123NED": {"2025": "2025-06-30T02:00:00"},
        }
    }
    plan = plan_refresh(first.cursor, newer, known)
    assert plan.new_partitions == {"cbs_kwb": ["2025"]}
    assert [(r.year, r.reason, r.items) for r in plan.runs] == [
        ("2024", "changed", ("85984NED",)),
        ("2025", "new_year", ("86123NED",)),
    ]
    assert plan.cursor["seq"] == 2
    # evaluating the same tick again (cursor not stored) gives the same run keys: Dagster skips them
    again = plan_refresh(first.cursor, newer, known)
    assert [r.run_key for r in again.runs] == [r.run_key for r in plan.runs]


def test_plan_refresh_files_added_removed_orphaned_and_failed_listing():
    sha = {k: (k * 64)[:64] for k in "abcdef"}
    cursor = {
        "version": 1,
        "seq": 4,
        "sources": {
            "rivm_gezondheid": {"r/2016_18plus.xlsx": {"2016": sha["a"]}, "r/2016_65plus.xlsx": {"2016": sha["b"]},
                                "r/2012_18plus.xlsx": {"2012": sha["c"]}},
            "leefbaarometer": {"l/lbm.csv": {"2020": sha["d"], "2022": sha["d"]}},
        },
    }
    known = {"rivm_gezondheid": ["2012", "2016", "2020"], "leefbaarometer": ["2020", "2022"]}
    available = {
        # 2016: one age-group file removed; 2020: a file appears for a known (registered) year;
        # 2012: its only file is gone -> orphaned, no run
        "rivm_gezondheid": {"r/2016_18plus.xlsx": {"2016": sha["a"]}, "r/2020_18plus.xlsx": {"2020": sha["e"]}},
        # leefbaarometer listing failed this tick: not in `available`
    }
    plan = plan_refresh(cursor, available, known)
    assert [(r.source, r.year, r.reason, r.items) for r in plan.runs] == [
        ("rivm_gezondheid", "2016", "removed_item", ("r/2016_65plus.xlsx",)),
        ("rivm_gezondheid", "2020", "new_item", ("r/2020_18plus.xlsx",)),
    ]
    assert plan.orphaned == {"rivm_gezondheid": ["2012"]}
    assert plan.cursor["sources"]["leefbaarometer"] == cursor["sources"]["leefbaarometer"]  # kept
    assert all(r.run_key.endswith("#5") and r.run_key.split(":")[2].startswith("sha256=") for r in plan.runs)

    # one file holding several years (year from a column): a new version re-runs all of its years
    lbm = plan_refresh(cursor, {"leefbaarometer": {"l/lbm.csv": {"2020": sha["f"], "2022": sha["f"], "2024": sha["f"]}}},
                       known)
    assert [(r.year, r.reason) for r in lbm.runs] == [("2020", "changed"), ("2022", "changed"), ("2024", "new_year")]

    # a file changed back to an earlier version later still gets a new run key (seq differs)
    a_to_b = plan_refresh({"seq": 1, "sources": {"s": {"f": {"2019": sha["a"]}}}}, {"s": {"f": {"2019": sha["b"]}}},
                          {"s": ["2019"]})
    b_to_a = plan_refresh(a_to_b.cursor, {"s": {"f": {"2019": sha["a"]}}}, {"s": ["2019"]})
    back = plan_refresh({"seq": 1, "sources": {"s": {"f": {"2019": sha["b"]}}}}, {"s": {"f": {"2019": sha["a"]}}},
                        {"s": ["2019"]})
    assert b_to_a.runs[0].run_key != back.runs[0].run_key


# ---------------------------------------------------------------------------------------------------
# offline release sensor on a real file
# ---------------------------------------------------------------------------------------------------


def test_offline_sensor_new_year_unchanged_and_modified_file(ses_folder):
    instance = dg.DagsterInstance.ephemeral()
    cbs = CbsSourceResource(data_dir=str(ses_folder))
    ses = release_year_partitions("cbs_ses_woa").name

    first = _tick(release_sensor, instance, None, cbs)
    assert _added(first) == {ses: ["2019"]}
    assert _runs(first) == [("cbs_ses_woa", "2019")]
    request = first.run_requests[0]
    assert request.tags[REASON_TAG] == "new_year" and request.tags[SOURCE_TAG] == "cbs_ses_woa"
    cursor = load_cursor(first.cursor)
    relpath = f"{SES_DIR}/{SES_2019}"
    sha = cursor["sources"]["cbs_ses_woa"][relpath]["2019"]
    assert len(sha) == 64 and cursor["files"][relpath]["sha256"] == sha
    assert instance.get_dynamic_partitions(ses) == ["2019"]

    second = _tick(release_sensor, instance, first.cursor, cbs)
    assert not second.run_requests and not second.dynamic_partitions_requests
    assert second.cursor == first.cursor

    # only the mtime changes (touch): nothing to load
    path = ses_folder / SES_DIR / SES_2019
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    touched = _tick(release_sensor, instance, second.cursor, cbs)
    assert not touched.run_requests and not touched.dynamic_partitions_requests
    assert load_cursor(touched.cursor)["sources"] == load_cursor(second.cursor)["sources"]

    # a new year's file (the real 2019 file relabelled as 2020 for this test): partition 2020 + one run
    _relabel_to_2020(ses_folder)
    third = _tick(release_sensor, instance, touched.cursor, cbs)
    assert _added(third) == {ses: ["2020"]}
    assert _runs(third) == [("cbs_ses_woa", "2020")]
    assert sorted(instance.get_dynamic_partitions(ses)) == ["2019", "2020"]

    # the 2019 file's content changes: a run for 2019 only, no partition added
    _edit_one_value(path)
    fourth = _tick(release_sensor, instance, third.cursor, cbs)
    assert not fourth.dynamic_partitions_requests
    assert _runs(fourth) == [("cbs_ses_woa", "2019")]
    assert fourth.run_requests[0].tags[REASON_TAG] == "changed"
    assert load_cursor(fourth.cursor)["sources"]["cbs_ses_woa"][relpath]["2019"] != sha

    fifth = _tick(release_sensor, instance, fourth.cursor, cbs)
    assert not fifth.run_requests and fifth.cursor == fourth.cursor


def test_sensor_run_requests_resolve_against_the_definitions(ses_folder, tmp_path):
    """Through Dagster's own tick evaluation: the partition added in the same tick resolves."""
    cbs = CbsSourceResource(data_dir=str(ses_folder))
    defs = dg.Definitions(
        assets=raw_assets,
        sensors=[release_sensor, automation_sensor],
        schedules=weekly_refresh_schedules,
        resources={"cbs": cbs, "duckdb": WarehouseResource(path=str(tmp_path / "w.duckdb"))},
    )
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("release_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 3600
    assert repo.get_sensor_def("wijk_automation").default_status == dg.DefaultSensorStatus.STOPPED
    schedule = repo.get_schedule_def("weekly_refresh_cbs_ses_woa")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * 1", "Europe/Amsterdam")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED

    with dg.instance_for_test() as instance:  # a persistent instance: the daemon passes a ref
        with dg.build_sensor_context(
            instance=instance, instance_ref=instance.get_ref(), resources={"cbs": cbs}, definitions=defs
        ) as context:
            data = sensor.evaluate_tick(context)
    assert [(r.partition_key, r.tags["dagster/partition"]) for r in data.run_requests] == [("2019", "2019")]
    assert data.run_requests[0].asset_selection == [raw_asset_key("cbs_ses_woa")]
    assert build_release_sensor("x", minimum_interval_seconds=600).minimum_interval_seconds == 600


def test_first_tick_over_a_loaded_warehouse_and_weekly_schedule(ses_folder, tmp_path):
    """Switching the sensor on after `wijk-assets materialize` reloads nothing; the weekly schedule
    compares the files with what each partition was last materialised from."""
    with dg.instance_for_test() as instance:  # schedules need a persistent instance (a ref)
        _loaded_warehouse_and_weekly_schedule(instance, ses_folder, tmp_path)


def _loaded_warehouse_and_weekly_schedule(instance, ses_folder, tmp_path):
    cbs = CbsSourceResource(data_dir=str(ses_folder))
    resources = {"cbs": cbs, "duckdb": WarehouseResource(path=str(tmp_path / "w.duckdb"))}
    asset = build_raw_asset("cbs_ses_woa")
    instance.add_dynamic_partitions(release_year_partitions("cbs_ses_woa").name, ["2019"])
    assert dg.materialize([asset], partition_key="2019", instance=instance, resources=resources).success

    first = _tick(release_sensor, instance, None, cbs)
    assert not first.run_requests and not first.dynamic_partitions_requests
    assert load_cursor(first.cursor)["sources"]["cbs_ses_woa"]  # the baseline is stored

    schedule = next(s for s in weekly_refresh_schedules if s.name == "weekly_refresh_cbs_ses_woa")
    repo = dg.Definitions(assets=[asset], schedules=[schedule], resources=resources).get_repository_def()

    def weekly():
        # `with`: the context opens its own instance from the ref and must close it again
        with dg.build_schedule_context(
            instance=instance, instance_ref=instance.get_ref(), resources={"cbs": cbs}, repository_def=repo
        ) as context:
            return schedule.evaluate_tick(context)

    quiet = weekly()
    assert quiet.run_requests == [] and "matches its source" in quiet.skip_message

    _edit_one_value(ses_folder / SES_DIR / SES_2019)
    _relabel_to_2020(ses_folder)
    data = weekly()
    assert sorted((r.partition_key, r.tags[REASON_TAG]) for r in data.run_requests) == [
        ("2019", "changed"),
        ("2020", "new_year"),
    ]
    assert all(r.tags["dagster/partition"] == r.partition_key for r in data.run_requests)
    assert sorted(instance.get_dynamic_partitions(release_year_partitions("cbs_ses_woa").name)) == ["2019", "2020"]

    # once both are loaded, the schedule has nothing to do
    for year in ("2019", "2020"):
        assert dg.materialize([asset], partition_key=year, instance=instance, resources=resources).success
    assert weekly().run_requests == []


# ---------------------------------------------------------------------------------------------------
# live release sensor against the fake CBS server
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_cbs(shared_data_dir):
    with FakeCbsServer(shared_data_dir, page_size=500) as server:
        yield server


def test_live_sensor_new_table_modified_table_and_unchanged(fake_cbs):
    fake_cbs.reset()
    instance = dg.DagsterInstance.ephemeral()
    cbs = CbsSourceResource(base_url=fake_cbs.base_url, catalog_url=fake_cbs.catalog_url, timeout_seconds=5)
    assert cbs.mode == "live"
    kwb = release_year_partitions("cbs_kwb").name

    first = _tick(release_sensor, instance, None, cbs)
    # the fake catalog: 85984NED (real TableInfos, KWB 2024) and 50090NED (RIVM 2012/2016/2020)
    assert _runs(first) == [("cbs_kwb", "2024"), ("rivm_gezondheid", "2012"), ("rivm_gezondheid", "2016"),
                            ("rivm_gezondheid", "2020")]
    assert _added(first)[kwb] == ["2024"]
    cursor = load_cursor(first.cursor)
    assert cursor["sources"]["cbs_kwb"] == {"85984NED": {"2024": "2025-03-27T02:00:00"}}
    assert "files" not in cursor

    unchanged = _tick(release_sensor, instance, first.cursor, cbs)
    assert not unchanged.run_requests and not unchanged.dynamic_partitions_requests
    assert unchanged.cursor == first.cursor

    # CBS publishes next year's KWB table
    modified = time.strftime("%Y-%m-%dT%H:%M:%S")
    fake_cbs.publish_table({"Identifier": "86123NED", "Title": "Kerncijfers wijken en buurten 2025",
                            "Period": "2025", "Modified": modified})
    new = _tick(release_sensor, instance, unchanged.cursor, cbs)
    assert _added(new) == {kwb: ["2025"]}
    assert _runs(new) == [("cbs_kwb", "2025")]
    assert new.run_requests[0].run_key.startswith(f"cbs_kwb:2025:86123NED@{modified}#")
    assert load_cursor(new.cursor)["sources"]["cbs_kwb"]["86123NED"] == {"2025": modified}
    assert sorted(instance.get_dynamic_partitions(kwb)) == ["2024", "2025"]

    # CBS corrects the 2024 table: one run, for 2024 only
    fake_cbs.update_modified("85984NED", "2025-07-01T02:00:00")
    corrected = _tick(release_sensor, instance, new.cursor, cbs)
    assert not corrected.dynamic_partitions_requests
    assert _runs(corrected) == [("cbs_kwb", "2024")]
    assert corrected.run_requests[0].tags[REASON_TAG] == "changed"
    assert load_cursor(corrected.cursor)["sources"]["cbs_kwb"]["85984NED"] == {"2024": "2025-07-01T02:00:00"}

    quiet = _tick(release_sensor, instance, corrected.cursor, cbs)
    assert not quiet.run_requests and quiet.cursor == corrected.cursor


def test_live_sensor_keeps_state_when_cbs_is_down(fake_cbs):
    fake_cbs.reset()
    instance = dg.DagsterInstance.ephemeral()
    cbs = CbsSourceResource(base_url=fake_cbs.base_url, catalog_url=fake_cbs.catalog_url, timeout_seconds=2)
    sensor = build_release_sensor("kwb_only", sources=["cbs_kwb"])
    first = _tick(sensor, instance, None, cbs)
    fake_cbs.inject("ODataCatalog/Tables", "404", times=1)  # a non-retried error for the listing
    with pytest.raises(dg.Failure, match="could not list"):
        _tick(sensor, instance, first.cursor, cbs)
    after = _tick(sensor, instance, first.cursor, cbs)
    assert not after.run_requests and after.cursor == first.cursor


# ---------------------------------------------------------------------------------------------------
# downstream automation: several raw partitions landing -> one downstream run
# ---------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")  # raised inside evaluate_automation_conditions
def test_downstream_condition_runs_once_after_several_partitions_land():
    parts = dg.DynamicPartitionsDefinition(name="toy_release_year")

    @dg.asset(key=["raw", "toy"], partitions_def=parts)
    def raw_toy():
        return 1

    @dg.asset(key=["marts", "toy"], deps=[raw_toy], automation_condition=downstream_automation_condition())
    def mart_toy():
        return 2

    defs = dg.Definitions(assets=[raw_toy, mart_toy])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(parts.name, ["2019", "2020", "2021"])

    def evaluate(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        return result.get_num_requested(mart_toy.key), result.cursor

    n, cursor = evaluate(None)
    assert n == 0  # raw not loaded yet
    for year in ("2019", "2020", "2021"):  # three partition runs land (as the release sensor requests them)
        assert dg.materialize([raw_toy], partition_key=year, instance=instance).success
    n, cursor = evaluate(cursor)
    assert n == 1
    n, cursor = evaluate(cursor)
    assert n == 0

    # 2020 reloaded while the 2021 run is still queued: wait for it
    assert dg.materialize([raw_toy], partition_key="2020", instance=instance).success
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={raw_toy.key})
    queued = instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2021"},
                                         asset_selection=frozenset({raw_toy.key}))
    n, cursor = evaluate(cursor)
    assert n == 0
    instance.report_run_canceled(queued)
    assert dg.materialize([raw_toy], partition_key="2021", instance=instance).success
    n, cursor = evaluate(cursor)
    assert n == 1
    n, cursor = evaluate(cursor)
    assert n == 0


def _data_version(instance, key) -> str:
    return instance.get_latest_materialization_event(key).asset_materialization.tags["dagster/data_version"]


def test_follow_automation_retrains_only_when_upstream_data_changes():
    """Synthetic toy graph (raw year partitions -> mart with a blocking gate -> one model per outcome):
    an unchanged reload triggers nothing, a new year flows through once, a failed gate stops the model."""
    parts = dg.DynamicPartitionsDefinition(name="toy2_release_year")
    outcomes = dg.StaticPartitionsDefinition(["a", "b"])
    content = {"2019": "v1", "2020": "v1"}
    gate_passes = {"value": True}
    cond = downstream_automation_condition()

    @dg.asset(key=["raw", "toy2"], partitions_def=parts, code_version="r1")
    def raw_toy(context):
        return dg.Output(1, data_version=dg.DataVersion(content[context.partition_key]))

    @dg.asset(key=["marts", "toy2"], deps=[raw_toy], code_version="m1", automation_condition=cond)
    def mart_toy():
        return 2

    @dg.asset_check(asset=mart_toy, blocking=True)
    def mart_gate():
        return dg.AssetCheckResult(passed=gate_passes["value"])

    @dg.asset(key=["models", "toy2"], deps=[mart_toy], partitions_def=outcomes, code_version="x1",
              automation_condition=cond)
    def model_toy():
        return 3

    defs = dg.Definitions(assets=[raw_toy, mart_toy, model_toy], asset_checks=[mart_gate])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(parts.name, ["2019", "2020"])
    # The initial load, as `wijk-assets materialize` does it: every asset once.
    for year in ("2019", "2020"):
        assert dg.materialize([raw_toy], partition_key=year, instance=instance).success
    assert dg.materialize([raw_toy, mart_toy, model_toy, mart_gate], selection=[mart_toy.key], instance=instance).success
    for outcome in ("a", "b"):
        assert dg.materialize([raw_toy, mart_toy, model_toy], selection=[model_toy.key], partition_key=outcome,
                              instance=instance).success
    first = follow_automation(defs, instance, log=lambda _: None)  # the first evaluation is the baseline
    assert first.runs == [] and first.ticks == 1
    mart_version = _data_version(instance, mart_toy.key)

    # The same file reloaded: same raw data version -> nothing downstream runs.
    assert dg.materialize([raw_toy], partition_key="2020", instance=instance).success
    again = follow_automation(defs, instance, cursor=first.automation_cursor, log=lambda _: None)
    assert again.runs == [] and again.ticks == 1

    # A new year: the mart is rebuilt once (new data version), then each model once.
    content["2021"] = "v1"
    instance.add_dynamic_partitions(parts.name, ["2021"])
    assert dg.materialize([raw_toy], partition_key="2021", instance=instance).success
    new_year = follow_automation(defs, instance, cursor=again.automation_cursor, log=lambda _: None)
    assert new_year.materialised() == {"marts/toy2": [None], "models/toy2": ["a", "b"]}
    assert _data_version(instance, mart_toy.key) != mart_version

    # A table over all outcomes (declared may_be_missing, for outcomes gate 3 withheld) follows once.
    @dg.asset(key=["publish", "toy2"], deps=[model_toy], code_version="p1",
              automation_condition=downstream_automation_condition(may_be_missing=[model_toy.key]))
    def publish_toy():
        return 4

    defs = dg.Definitions(assets=[raw_toy, mart_toy, model_toy, publish_toy], asset_checks=[mart_gate])
    instance.add_dynamic_partitions(parts.name, ["2022"])
    content["2022"] = "v1"
    assert dg.materialize([raw_toy, publish_toy], selection=[publish_toy.key], instance=instance).success
    cursor = follow_automation(defs, instance, cursor=new_year.automation_cursor, log=lambda _: None).automation_cursor
    assert dg.materialize([raw_toy], partition_key="2022", instance=instance).success
    published = follow_automation(defs, instance, cursor=cursor, log=lambda _: None)
    assert published.materialised() == {"marts/toy2": [None], "models/toy2": ["a", "b"], "publish/toy2": [None]}
    new_year = published

    # A revised release that fails the mart's gate: the mart is rebuilt, the models are not.
    content["2021"] = "v2"
    gate_passes["value"] = False
    assert dg.materialize([raw_toy], partition_key="2021", instance=instance).success
    blocked = follow_automation(defs, instance, cursor=new_year.automation_cursor, log=lambda _: None)
    assert [(r.asset_keys, r.success) for r in blocked.runs] == [(["marts/toy2"], False)]
    assert blocked.runs[0].failed_checks and blocked.runs[0].failed_checks[0].startswith("mart_gate")
    assert "models/toy2" not in blocked.materialised()


def test_follow_automation_runs_a_multi_asset_that_cannot_be_subset_as_a_whole():
    """Synthetic: an explanations-like multi-asset (can_subset=False) of which only one output depends
    on the table that changed. Dagster requests the whole multi-asset; the runner must run all of it
    (a run of one output fails with DagsterInvalidSubsetError)."""
    outcomes = dg.StaticPartitionsDefinition(["a", "b"])
    version = {"features": "v1"}
    cond = downstream_automation_condition()

    @dg.asset(key=["marts", "toy3_features"], code_version="f1")
    def features_toy():
        return dg.Output(1, data_version=dg.DataVersion(version["features"]))

    @dg.asset(key=["models", "toy3"], partitions_def=outcomes, code_version="x1")
    def model_toy():
        return 2

    @dg.multi_asset(
        specs=[dg.AssetSpec(["explanations", "toy3_shap"], deps=[model_toy], automation_condition=cond),
               dg.AssetSpec(["explanations", "toy3_drivers"], deps=[model_toy, features_toy], automation_condition=cond)],
        partitions_def=outcomes, can_subset=False)
    def explanations_toy():
        return None

    defs = dg.Definitions(assets=[features_toy, model_toy, explanations_toy])
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([features_toy], instance=instance).success
    for outcome in ("a", "b"):
        assert dg.materialize([features_toy, model_toy, explanations_toy], selection=[model_toy.key, *explanations_toy.keys],
                              partition_key=outcome, instance=instance).success
    baseline = follow_automation(defs, instance, log=lambda _: None)
    assert baseline.runs == []

    version["features"] = "v2"  # new feature-table content: only the drivers depend on it
    assert dg.materialize([features_toy], instance=instance).success
    followed = follow_automation(defs, instance, cursor=baseline.automation_cursor, log=lambda _: None)
    assert followed.success, [(r.asset_keys, r.error) for r in followed.runs]
    assert followed.materialised() == {"explanations/toy3_drivers": ["a", "b"], "explanations/toy3_shap": ["a", "b"]}


# ---------------------------------------------------------------------------------------------------
# parallel raw partitions in separate processes against one DuckDB file
# ---------------------------------------------------------------------------------------------------

LEEFBAAROMETER_YEARS = ("2016", "2018", "2020")

# Child processes are plain `python -c` programs (not multiprocessing children re-importing this test
# module), so each starts with only what it needs. Both watch duckdb.connect: the first "Could not set
# lock" a child meets is written to a marker file - it only observes; warehouse.connect does the waiting.
_WATCH_LOCK = r"""
import sys
from pathlib import Path
import duckdb
_real_connect = duckdb.connect
def _watching_connect(*args, **kwargs):
    try:
        return _real_connect(*args, **kwargs)
    except duckdb.IOException as error:
        marker = Path(SIGNAL_DIR) / f"blocked_{YEAR}"
        if "lock" in str(error).lower() and not marker.exists():
            marker.write_text(str(error)[:300])
        raise
duckdb.connect = _watching_connect
"""

_MATERIALIZE_CHILD = r"""
import json, sys
DATA_DIR, DB, YEAR, SIGNAL_DIR = sys.argv[1:5]
""" + _WATCH_LOCK + r"""
import dagster as dg
from wijk_assets.defs.raw.assets import build_raw_asset
from wijk_assets.defs.resources import CbsSourceResource, WarehouseResource

instance = dg.DagsterInstance.ephemeral()  # no Dagster pool here: only the file lock protects the file
instance.add_dynamic_partitions("leefbaarometer_release_year", [YEAR])
result = dg.materialize(
    [build_raw_asset("leefbaarometer")],
    partition_key=YEAR,
    instance=instance,
    resources={"cbs": CbsSourceResource(data_dir=DATA_DIR), "duckdb": WarehouseResource(path=DB)},
    raise_on_error=False,
)
errors = [str(e.event_specific_data.error.message)[:300] for e in result.all_events
          if e.event_type_value == "STEP_FAILURE"]
print("RESULT " + json.dumps({"year": YEAR, "success": result.success, "errors": errors}))
"""

_REPLACE_CHILD = r"""
import json, sys, time
from pathlib import Path
DB, YEAR, SIGNAL_DIR = sys.argv[1:4]
""" + _WATCH_LOCK + r"""
import pandas as pd
from wijk_assets.lib import warehouse

frame = pd.DataFrame({"release_year": [int(YEAR)] * 1000, "value": list(range(1000))})
(Path(SIGNAL_DIR) / f"ready_{YEAR}").write_text("")
while not (Path(SIGNAL_DIR) / "go").exists():  # start gate: all children write at the same instant
    time.sleep(0.005)
with warehouse.connect(DB, wait_seconds=60) as con:
    rows = warehouse.replace_partition(
        con, "raw.parallel_proof", [(frame, {})], {"release_year": "INTEGER", "value": "INTEGER"},
        {"release_year": int(YEAR)},
    )
    time.sleep(0.5)  # hold the file so the others must wait
print("RESULT " + json.dumps({"year": YEAR, "rows": rows}))
"""


def _spawn(code: str, args: list[str], log_dir: Path, name: str) -> subprocess.Popen:
    out = open(log_dir / f"{name}.out", "w")  # noqa: SIM115 - closed by _result
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT,
                            cwd=str(Path(__file__).resolve().parents[1]))


def _result(process: subprocess.Popen, log_dir: Path, name: str, timeout: float) -> dict:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stdout and process.stdout.close()
    text = (log_dir / f"{name}.out").read_text()
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, f"{name} failed (exit {process.returncode}):\n{text[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _wait_for(paths: list[Path], processes: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths) and time.monotonic() < deadline:
        if all(proc.poll() is not None for proc in processes):
            break
        time.sleep(0.05)


def test_parallel_raw_partitions_in_separate_processes(shared_data_dir, tmp_path):
    """Three processes materialise three Leefbaarometer years into ONE DuckDB file at the same time.

    The test holds the file's write lock until every child has met DuckDB's "Could not set lock" at
    least once, so each child provably waited in warehouse.connect's backoff loop; then all must
    succeed and every year's rows must be in the table.
    """
    db, signals = tmp_path / "parallel.duckdb", tmp_path / "signals"
    signals.mkdir()
    with warehouse.connect(db) as held:
        held.execute("CREATE SCHEMA IF NOT EXISTS raw")
        children = {
            year: _spawn(_MATERIALIZE_CHILD, [str(shared_data_dir), str(db), year, str(signals)], tmp_path,
                         f"materialize_{year}")
            for year in LEEFBAAROMETER_YEARS
        }
        _wait_for([signals / f"blocked_{y}" for y in LEEFBAAROMETER_YEARS], list(children.values()), 75)
    # the lock is released: the three children now get the file one after the other
    results = {year: _result(proc, tmp_path, f"materialize_{year}", 75) for year, proc in children.items()}
    blocked = sorted(p.name for p in signals.glob("blocked_*"))
    assert blocked == [f"blocked_{y}" for y in LEEFBAAROMETER_YEARS], results
    assert all("lock" in p.read_text().lower() for p in signals.glob("blocked_*"))
    assert results == {y: {"year": y, "success": True, "errors": []} for y in LEEFBAAROMETER_YEARS}

    con = duckdb.connect(str(db), read_only=True)
    counts = dict(con.execute("SELECT release_year, count(*) FROM raw.leefbaarometer GROUP BY 1 ORDER BY 1").fetchall())
    con.close()
    assert sorted(counts) == [int(y) for y in LEEFBAAROMETER_YEARS]
    assert all(n > 10_000 for n in counts.values()), counts  # every Dutch wijk x measure, per year


def test_parallel_replace_partition_waits_for_the_lock(tmp_path):
    """Lower level: three processes call warehouse.connect + replace_partition at the same instant,
    each holding the file for half a second; all succeed and every partition's rows are there."""
    db, signals = tmp_path / "proof.duckdb", tmp_path / "signals"
    signals.mkdir()
    years = ["2016", "2018", "2020"]
    children = {y: _spawn(_REPLACE_CHILD, [str(db), y, str(signals)], tmp_path, f"replace_{y}") for y in years}
    _wait_for([signals / f"ready_{y}" for y in years], list(children.values()), 60)
    (signals / "go").write_text("")
    results = {y: _result(proc, tmp_path, f"replace_{y}", 60) for y, proc in children.items()}
    assert results == {y: {"year": y, "rows": 1000} for y in years}
    assert len(list(signals.glob("blocked_*"))) >= 1  # at least one writer had to wait for another
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT release_year, count(*) FROM raw.parallel_proof GROUP BY 1 ORDER BY 1").fetchall() == [
        (int(y), 1000) for y in years
    ]
    con.close()


def test_cli_instance_config_limits_the_duckdb_pool_to_one(tmp_path, monkeypatch):
    """What `wijk-assets` writes to $DAGSTER_HOME/dagster.yaml: one slot per pool, so runs launched
    together queue for the "duckdb" pool every raw asset is in."""
    from wijk_assets.defs.raw.assets import raw_assets
    from wijk_assets.defs.resources import DUCKDB_POOL
    from wijk_assets.runner.materialize import ensure_dagster_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    home = ensure_dagster_home()
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert {a.op.pool for a in raw_assets} == {DUCKDB_POOL}


class _FakeLiveCbs:
    """Duck-typed stand-in for CbsSourceResource in live mode (the sensor only uses these members)."""

    mode = "live"
    data_dir = None

    def __init__(self, tables: dict[str, list[dict]], failing: tuple[str, ...] = ()):
        self.tables, self.failing = tables, failing

    def live_tables(self, source: str) -> list[dict]:
        if source in self.failing:
            raise ConnectionError("CBS catalog unreachable")
        return self.tables.get(source, [])

    def source_files(self, source: str):
        raise AssertionError("live sources must not fall back to files here")


def test_listing_skips_entries_without_a_year_and_isolates_failures():
    from wijk_assets.lib.release.listing import list_available

    cbs = _FakeLiveCbs(
        {
            "cbs_kwb": [
                {"Identifier": "85984NED", "Title": "Kerncijfers wijken en buurten 2024", "Period": "2024",
                 "Modified": "2025-03-27T02:00:00"},
                {"Identifier": "99999NED", "Title": "Kerncijfers wijken en buurten 2026", "Period": "",
                 "Modified": "2026-01-01T02:00:00"},
            ],
            "rivm_gezondheid": [{"Identifier": "50090NED", "Period": "2012, 2016, 2020",
                                 "Modified": "2022-11-30T02:00:00"}],
        },
        failing=("cbs_nabijheid",),
    )
    listing = list_available(cbs, ["cbs_kwb", "rivm_gezondheid", "cbs_nabijheid", "leefbaarometer"])
    assert listing.available() == {
        "cbs_kwb": {"85984NED": {"2024": "2025-03-27T02:00:00"}},
        "rivm_gezondheid": {"50090NED": {y: "2022-11-30T02:00:00" for y in ("2012", "2016", "2020")}},
        "leefbaarometer": {},  # no live table and no data folder: nothing to offer
    }
    assert "99999NED" in listing.skipped["cbs_kwb"][0]
    assert listing.errors == {"cbs_nabijheid": "ConnectionError: CBS catalog unreachable"}

    previous = {"version": 1, "seq": 1, "sources": {"cbs_nabijheid": {"85231ENG": {"2021": "x"}}}}
    plan = plan_refresh(previous, listing.available(), {"cbs_nabijheid": ["2021"]})
    assert plan.cursor["sources"]["cbs_nabijheid"] == {"85231ENG": {"2021": "x"}}  # kept while CBS is down
    assert {r.source for r in plan.runs} == {"cbs_kwb", "rivm_gezondheid"}
