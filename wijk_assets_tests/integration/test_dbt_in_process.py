"""dbt run in this process (a full build's dbt steps, ``wijk_assets.defs.dbt.in_process``), on real data.

Starts from a copy of the session's built warehouse (``lbm_warehouse``), whose dbt relations were built
by dbt subprocesses (``materialize_keys`` outside a full build), and runs the feature step again with dbt
in this process:

- the same command gives the same relations, the same Dagster materialisations and the same dbt test
  results as the subprocess did;
- a dbt test that fails fails the step as it does in a subprocess (dagster-dbt's error names the test),
  every relation stays the previous build's (validate, then swap), and the warehouse file is free
  afterwards: dbt's DuckDB database is closed, for this process's own connections and for others.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from wijk_assets.defs.dbt import in_process
from wijk_assets.defs.dbt.project import dbt_project
from wijk_assets.keys import FEATURE_TABLE_KEY
from wijk_assets.runner.materialize import materialize_keys

from wijk_assets_tests.integration.test_refused_builds import _error, _snapshot, feature_step_copy


@pytest.fixture(scope="module")
def world(lbm_warehouse, shared_data_dir, tmp_path_factory):
    copy = feature_step_copy(lbm_warehouse, shared_data_dir, tmp_path_factory.mktemp("dbt_in_process"))
    return {**copy, "lbm": lbm_warehouse}


def _checks(instance, run_id) -> dict[tuple[str, str], bool]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    out = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        out[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation.passed
    return out


def _materialized(instance, run_id) -> dict[str, object]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    out = {}
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        rows = materialization.metadata.get("dagster/row_count")
        out[materialization.asset_key.to_user_string()] = rows.value if rows is not None else None
    return out


def _last_feature_run(instance):
    return instance.get_latest_materialization_event(FEATURE_TABLE_KEY).run_id


def _count_commands(monkeypatch) -> list[list[str]]:
    """The dbt commands run in this process (the command word of each, e.g. ``build``)."""
    commands: list[list[str]] = []
    original = in_process.InProcessDbt.__init__

    def counting(self, args, **kwargs):
        commands.append([a for a in args[1:2]])
        original(self, args, **kwargs)

    monkeypatch.setattr(in_process.InProcessDbt, "__init__", counting)
    return commands


def test_dbt_in_this_process_builds_what_the_subprocess_built(world, monkeypatch):
    db, lbm_instance = world["db"], world["lbm"]["instance"]
    commands = _count_commands(monkeypatch)
    before = _snapshot(db)
    subprocess_run = _last_feature_run(lbm_instance)  # the session build's feature step: dbt subprocesses
    instance = dg.DagsterInstance.ephemeral()

    with in_process.dbt_in_this_process():
        result = materialize_keys(world["defs"], instance, world["keys"], None, trigger="test")

    assert result.success
    assert commands[-1] == ["build"]  # dbt ran here (after a parse for this warehouse file), not as a subprocess
    # a relative target folder (the parse's) is the project's, as for the subprocess, which ran in the project
    # folder: nothing lands in this process's working directory (the first version wrote its dbt.log there)
    relative = Path(dbt_project.target_path)
    if not relative.is_absolute() and Path.cwd().resolve() != Path(dbt_project.project_dir).resolve():
        assert not (Path.cwd() / relative.parts[0]).exists()
    assert _snapshot(db) == before  # same relations, same content
    # the session's run also held the steps after this one (the training mart ...): compared on this step's
    ours, theirs = _materialized(instance, result.run_id), _materialized(lbm_instance, subprocess_run)
    assert set(ours) == {k.to_user_string() for k in world["keys"]}
    assert ours == {k: v for k, v in theirs.items() if k in ours}  # same assets, same row counts
    our_checks, their_checks = _checks(instance, result.run_id), _checks(lbm_instance, subprocess_run)
    assert our_checks == {k: v for k, v in their_checks.items() if k[0] in ours}
    assert len(our_checks) > 90  # every dbt test of the step, as a check
    # dbt's database is closed: another configuration in this process and another process can open the file
    with duckdb.connect(str(db), config={"memory_limit": "300MB"}) as con:
        con.execute("SELECT 1").fetchall()


def test_a_failing_dbt_test_in_this_process_fails_the_step_and_keeps_every_relation(world):
    db = world["db"]
    with duckdb.connect(str(db)) as con:  # the same cell twice: stg_cells' unique_combination test fails
        con.execute("INSERT INTO raw.cbs_kwb SELECT * FROM raw.cbs_kwb WHERE release_year = 2024 "
                    "AND measure_key = 'Woningvoorraad_35' ORDER BY source_row LIMIT 3")
    before = _snapshot(db)
    instance = dg.DagsterInstance.ephemeral()

    with in_process.dbt_in_this_process():
        refused = materialize_keys(world["defs"], instance, world["keys"], None, trigger="test")

    assert not refused.success
    error = _error(refused)
    assert "unique_combination_stg_cells_measure_id__area_code" in error, error
    assert _snapshot(db) == before  # validate, then swap: nothing replaced, no __previous relation left
    assert instance.get_latest_materialization_event(FEATURE_TABLE_KEY) is None
    with duckdb.connect(str(db), config={"memory_limit": "300MB"}) as con:
        con.execute("SELECT 1").fetchall()
    other = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}).close()"],
                           capture_output=True, text=True, timeout=120)
    assert other.returncode == 0, other.stderr
