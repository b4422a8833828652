"""The instance configuration ``wijk-assets`` writes, and its event log with kept connections.

SYNTHETIC assets (two trivial ones); what is checked is Dagster's storage, in a temporary home.
"""

from __future__ import annotations

import os
import sqlite3

import dagster as dg
import sqlalchemy
import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from wijk_assets.runner.event_storage import KEPT_ENGINES, KeptConnectionSqliteEventLogStorage
from wijk_assets.runner.materialize import instance_yaml


@dg.asset
def first() -> int:
    return 1


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="second")])
def second(first: int):
    yield dg.Output(first + 1)
    yield dg.AssetCheckResult(passed=True, check_name="positive")


def _instance(home) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(home), encoding="utf-8")
    return dg.DagsterInstance.local_temp(str(home))


def _default_reader(home) -> dg.DagsterInstance:
    """An instance of Dagster's own SQLite storage on the same folders (what a home without our
    dagster.yaml, or an older wijk-assets, reads)."""
    other = home.parent / f"{home.name}_reader"
    other.mkdir()
    return dg.DagsterInstance.local_temp(
        str(other),
        overrides={"run_storage": {"module": "dagster._core.storage.runs", "class": "SqliteRunStorage",
                                   "config": {"base_dir": str(home / "history")}},
                   "event_log_storage": {"module": "dagster._core.storage.event_log", "class": "SqliteEventLogStorage",
                                         "config": {"base_dir": str(home / "history" / "runs")}}})


def test_the_instance_config_keeps_the_pool_slot_and_dagsters_event_log_folder(tmp_path):
    config = yaml.safe_load(instance_yaml())
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["event_log_storage"]["class"] == "KeptConnectionSqliteEventLogStorage"
    assert config["event_log_storage"]["config"] == {"dagster_home": {"env": "DAGSTER_HOME"}}
    fixed = yaml.safe_load(instance_yaml(tmp_path / "home"))["event_log_storage"]["config"]
    assert fixed == {"dagster_home": str((tmp_path / "home").resolve())}


def test_a_copied_home_writes_its_events_into_the_copy(tmp_path, monkeypatch):
    """The README's home is $DAGSTER_HOME; a copy (or a moved repository) must not write into the
    original's folder, as an absolute path in dagster.yaml would."""
    import shutil

    original = tmp_path / "original"
    original.mkdir()
    (original / "dagster.yaml").write_text(instance_yaml(), encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(original))
    first = dg.materialize([first_asset_for_copy], instance=dg.DagsterInstance.get())
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    monkeypatch.setenv("DAGSTER_HOME", str(copy))
    instance = dg.DagsterInstance.get()
    assert instance.event_log_storage._base_dir.startswith(str(copy))
    second = dg.materialize([first_asset_for_copy], instance=instance)
    assert (copy / "history" / "runs" / f"{second.run_id}.db").exists()
    assert not (original / "history" / "runs" / f"{second.run_id}.db").exists()
    assert (original / "history" / "runs" / f"{first.run_id}.db").exists()
    assert len(instance.all_logs(first.run_id)) > 5  # the copied history reads from the copy


@dg.asset(name="copied_home_asset")
def first_asset_for_copy() -> int:
    return 1


def test_events_written_with_kept_connections_read_the_same_with_dagsters_own_storage(tmp_path):
    home = tmp_path / "home"
    instance = _instance(home)
    storage = instance.event_log_storage
    assert isinstance(storage, KeptConnectionSqliteEventLogStorage)
    results = [dg.materialize([first, second], instance=instance) for _ in range(3)]
    assert all(r.success for r in results)

    reader = _default_reader(home)
    assert type(reader.event_log_storage).__name__ == "SqliteEventLogStorage"
    for result in results:
        written = instance.all_logs(result.run_id)
        read = reader.all_logs(result.run_id)
        assert len(read) == len(written) > 10
        assert [e.dagster_event_type for e in read] == [e.dagster_event_type for e in written]
    # the cross-run index (asset materialisations and check evaluations are mirrored there)
    assert reader.get_latest_materialization_event(dg.AssetKey("second")).run_id == results[-1].run_id
    check = reader.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("second"), "positive"), limit=10)
    assert len(check) == 3 and {c.run_id for c in check} == {r.run_id for r in results}


def test_a_bounded_number_of_files_stays_open_and_wipe_closes_them(tmp_path):
    instance = _instance(tmp_path / "home")
    storage = instance.event_log_storage
    runs = [dg.materialize([first], instance=instance) for _ in range(KEPT_ENGINES + 3)]
    assert len(storage._engines) == KEPT_ENGINES  # the index and the latest run shards, not one per run
    assert runs[-1].run_id in storage._engines and runs[0].run_id not in storage._engines
    assert len(instance.all_logs(runs[0].run_id)) > 5  # an evicted shard opens again when read

    instance.wipe()  # deletes the run shards' files: no kept connection may write into a deleted file
    assert set(storage._engines) <= {"index"}  # the index file is emptied, not deleted: it may open again
    after = dg.materialize([first], instance=instance)
    assert after.success and os.path.exists(storage.path_for_shard(after.run_id))
    assert len(instance.all_logs(after.run_id)) > 5


def test_engines_inherited_across_fork_are_not_used(tmp_path):
    instance = _instance(tmp_path / "home")
    storage = instance.event_log_storage
    dg.materialize([first], instance=instance)
    inherited = dict(storage._engines)
    storage._engines_pid = -1  # as in a forked child: the engines belong to another process
    run = dg.materialize([first], instance=instance)
    assert run.success
    assert not set(map(id, storage._engines.values())) & set(map(id, inherited.values()))



def _schema(path) -> tuple[list, list]:
    """Every table and index of a SQLite file, its alembic stamp and its journal mode."""
    con = sqlite3.connect(path)
    try:
        objects = sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(), key=str)
        state = con.execute("SELECT version_num FROM alembic_version").fetchall() + con.execute(
            "PRAGMA journal_mode").fetchall()
        return objects, state
    finally:
        con.close()


def test_a_new_run_shard_is_the_file_dagsters_own_initialisation_makes(tmp_path, monkeypatch):
    ours = KeptConnectionSqliteEventLogStorage(str(tmp_path / "ours"))
    theirs = SqliteEventLogStorage(str(tmp_path / "theirs"))
    for storage in (ours, theirs):
        with storage.run_connection("run-a") as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    ours.dispose_engines()
    got, expected = _schema(ours.path_for_shard("run-a")), _schema(theirs.path_for_shard("run-a"))
    assert got == expected  # every table and index, the same alembic revision, the WAL journal
    assert len(got[0]) > 20 and got[1][0][0] and got[1][1] == ("wal",)

    # a file that already holds something (a half-made or older database) goes through Dagster's own path
    calls = []
    monkeypatch.setattr(SqliteEventLogStorage, "_initdb", lambda self, engine, for_index_shard=False: calls.append(1))
    con = sqlite3.connect(ours.path_for_shard("run-b"))
    con.execute("CREATE TABLE something (x)")
    con.commit()
    con.close()
    with ours.run_connection("run-b"):
        pass
    assert calls == [1]
    with ours.run_connection("run-c"):  # a new file does not
        pass
    assert calls == [1]
    ours.dispose_engines()
