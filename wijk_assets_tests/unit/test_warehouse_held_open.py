"""warehouse.held_open: one open database for a run's many connects (synthetic databases in tmp_path),
and which of the command line's runs hold the file (the definitions, no data)."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import duckdb
import pytest

from wijk_assets.lib import warehouse


def _counting_connect(monkeypatch) -> list[tuple]:
    opened: list[tuple] = []
    real = duckdb.connect

    def counting(database, *args, **kwargs):
        opened.append((database, kwargs.get("read_only", False)))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(warehouse.duckdb, "connect", counting)
    return opened


def test_connects_inside_the_block_share_the_one_open_database(tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    with warehouse.connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    opened = _counting_connect(monkeypatch)
    with warehouse.held_open(path):
        with warehouse.connect(path) as con:
            con.execute("INSERT INTO t VALUES (2)")
        # a read-only request gets a cursor of the open database (DuckDB refuses a second open of the
        # same file with another configuration in one process)
        with warehouse.connect(path, read_only=True) as con:
            assert con.execute("SELECT sum(x) FROM t").fetchone()[0] == 3
        with warehouse.held_open(tmp_path / "." / "w.duckdb"):  # nested, same file by another spelling
            with warehouse.connect(str(path)) as con:
                con.execute("INSERT INTO t VALUES (4)")
        assert len(opened) == 1
    # the block's end closed the file: a read-only open (another configuration) works again
    with warehouse.connect(path, read_only=True) as con:
        assert con.execute("SELECT sum(x) FROM t").fetchone()[0] == 7
    assert len(opened) == 2 and opened[-1][1] is True


def test_a_failed_transaction_in_the_block_is_rolled_back_and_the_rest_stays(tmp_path):
    path = tmp_path / "w.duckdb"
    with warehouse.held_open(path):
        with warehouse.connect(path) as con:
            con.execute("CREATE TABLE t AS SELECT 1 AS x")
        with pytest.raises(duckdb.Error), warehouse.connect(path) as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("INSERT INTO t VALUES (2)")
            con.execute("INSERT INTO t VALUES ('not a number')")
        with warehouse.connect(path) as con:
            assert con.execute("SELECT list(x ORDER BY x) FROM t").fetchone()[0] == [1]
    # what was committed in the block is in the file for another process
    out = subprocess.run([sys.executable, "-c", f"import duckdb; print(duckdb.connect({str(path)!r}, read_only=True)"
                          ".execute('SELECT count(*) FROM t').fetchone()[0])"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_another_process_waits_for_the_held_file_and_then_finds_the_writes(tmp_path):
    path = tmp_path / "w.duckdb"
    reader = [sys.executable, "-c", "import sys; from wijk_assets.lib import warehouse\n"
              f"with warehouse.connect({str(path)!r}, read_only=True, wait_seconds=60) as con:\n"
              "    print(con.execute('SELECT count(*) FROM t').fetchone()[0])"]
    with warehouse.held_open(path):
        with warehouse.connect(path) as con:
            con.execute("CREATE TABLE t AS SELECT * FROM range(5)")
        waiting = subprocess.Popen(reader, stdout=subprocess.PIPE, text=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.0)
        assert waiting.poll() is None  # the file is held: the other process is still waiting for the lock
    assert waiting.communicate(timeout=60)[0].strip() == "5"


def test_the_command_line_holds_the_file_only_for_the_run_of_monitoring_publish_and_reports(monkeypatch, tmp_path):
    from wijk_assets.definitions import build_definitions
    from wijk_assets.keys import SELECTION_KEY, raw_asset_key
    from wijk_assets.runner.materialize import _warehouse_held_open, plan_waves
    from wijk_assets.settings import load_settings

    monkeypatch.setenv("WIJK_DUCKDB_PATH", str(tmp_path / "w.duckdb"))
    defs = build_definitions(load_settings())
    graph = defs.resolve_asset_graph()

    def held(keys) -> bool:
        return not isinstance(_warehouse_held_open(defs, keys), contextlib.nullcontext)

    assert not held([raw_asset_key("rivm_gezondheid")])
    raw = {raw_asset_key(s) for s in ("rivm_gezondheid", "leefbaarometer", "cbs_kwb", "cbs_wijkgrenzen",
                                      "cbs_nabijheid", "cbs_ses_woa", "gemeente_survey")}
    rest = [k for k in graph.toposorted_asset_keys if k not in raw and graph.get(k).is_materializable]
    waves = [keys for _, keys in plan_waves(graph, rest)]
    dbt_wave, outcome_wave, reports_wave = waves
    assert any("dbt" in graph.get(k).kinds for k in dbt_wave) and not held(dbt_wave)
    assert SELECTION_KEY in outcome_wave and not held(outcome_wave)
    assert not held([k for k in outcome_wave if k != SELECTION_KEY])  # model, gate 3, explanations: no gain held
    assert held(reports_wave)
    assert not held(reports_wave + [raw_asset_key("cbs_kwb")])  # one key outside those groups: not held
