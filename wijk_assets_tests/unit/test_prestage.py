"""Large raw partitions prepared ahead by a worker process (wijk_assets.lib.prestage): which partitions, in
which order, the copy into the warehouse, and when a run reads the files itself instead.

SYNTHETIC files and tables only (file sizes, a made-up staged partition).
"""

from __future__ import annotations

from concurrent.futures import Future
from datetime import datetime

import duckdb
import pandas as pd
import pytest

from wijk_assets.defs.resources import CbsSourceResource
from wijk_assets.lib import prestage
from wijk_assets.lib.prestage import PreparedPartition, Prestager, candidates, load_order, partition_listing, stage_prepared
from wijk_assets.lib.sources.base import RAW_COLUMNS, RAW_DATA_COLUMNS
from wijk_assets.lib.sources.summary import ExtractSummary
from wijk_assets.lib.warehouse import stage_partition

RIVM = "rivm_gezondheid_50090NED"


def _folder(tmp_path, sizes: dict[str, int]):
    for name, size in sizes.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)
    return tmp_path


def test_only_large_year_named_partitions_of_an_offline_folder_are_prepared_ahead(tmp_path, monkeypatch):
    big = prestage.PRESTAGE_MIN_BYTES
    data = _folder(tmp_path, {
        f"{RIVM}/gezondheid_buurt_2031_18plus.xlsx": big // 2, f"{RIVM}/gezondheid_buurt_2031_65plus.xlsx": big // 2,
        f"{RIVM}/gezondheid_buurt_2032_18plus.xlsx": 1000,  # a small year of the same source
        "leefbaarometer/lbm3_scores_wijken_2002-2022.csv": 2 * big,  # one file for many years: never ahead
    })
    monkeypatch.setattr(prestage.os, "cpu_count", lambda: 2)
    cbs = CbsSourceResource(data_dir=str(data))
    assert candidates(cbs, ["leefbaarometer", "rivm_gezondheid", "cbs_kwb"]) == [("rivm_gezondheid", 2031)]
    assert candidates(CbsSourceResource(data_dir=str(data), base_url="http://127.0.0.1:9"), ["rivm_gezondheid"]) == []
    monkeypatch.setattr(prestage.os, "cpu_count", lambda: 1)  # one core: nothing to overlap
    assert candidates(cbs, ["rivm_gezondheid"]) == []


def test_prepared_partitions_load_last_and_each_source_keeps_its_year_order():
    partitions = {"rivm": ["2012", "2016", "2020"], "lbm": ["2002", "2008"], "grenzen": ["2024"]}
    order, ahead = load_order(partitions, [("rivm", 2012), ("rivm", 2016), ("rivm", 2020), ("grenzen", 2024)])
    assert order == [("lbm", "2002"), ("lbm", "2008"), ("rivm", "2012"), ("rivm", "2016"), ("rivm", "2020"),
                     ("grenzen", "2024")]
    assert ahead == [("rivm", 2012), ("rivm", 2016), ("rivm", 2020), ("grenzen", 2024)]
    assert load_order(partitions, []) == ([("rivm", "2012"), ("rivm", "2016"), ("rivm", "2020"), ("lbm", "2002"),
                                           ("lbm", "2008"), ("grenzen", "2024")], [])


def _staged_rows(n: int) -> pd.DataFrame:
    frame = pd.DataFrame({name: [None] * n for name in RAW_DATA_COLUMNS})
    frame["area_code"] = [f"BU{i:08d}" for i in range(n)][::-1]  # not sorted: the order must survive
    frame["measure_key"] = "m"
    frame["value_raw"] = [str(i) if i % 7 else "." for i in range(n)]
    frame["source_row"] = range(2, n + 2)
    frame["release_year"] = 2031
    return frame


def _prepared(path: str, listing=(("a.xlsx", "0" * 64),), config=("data", 10)) -> PreparedPartition:
    summary = ExtractSummary(files=[], levels={}, n_measures=1, suppression=None, version_params=[],
                             retrieved_at=datetime(2026, 1, 1))
    return PreparedPartition("rivm_gezondheid", 2031, config, tuple(listing), path, 0, summary, None, 0.0)


def test_the_copy_keeps_rows_order_and_types_and_removes_the_worker_file(tmp_path):
    worker_db = tmp_path / "worker.duckdb"
    provenance = {"cbs_table_id": None, "source_file": "a.xlsx", "source_sha256": "0" * 64,
                  "retrieved_at": datetime(2026, 1, 1), "reader_version": "r"}
    with duckdb.connect(str(worker_db)) as con:
        staged, rows = stage_partition(con, "raw.rivm_gezondheid", [(_staged_rows(5000), provenance)], RAW_COLUMNS,
                                       {"release_year": 2031})
        expected = con.execute(f"SELECT * FROM {staged}").fetchall()
        types = con.execute(f"DESCRIBE {staged}").fetchall()
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        assert stage_prepared(con, _prepared(str(worker_db)), "raw.rivm_gezondheid") == staged
        assert con.execute(f"SELECT * FROM {staged}").fetchall() == expected  # same rows, same order
        assert con.execute(f"DESCRIBE {staged}").fetchall() == types
        assert [r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
                if r[0] == prestage.ALIAS] == []  # detached
    assert rows == 5000 and not worker_db.exists()


def _prestager(prepared_or_error, log) -> Prestager:
    """A Prestager whose worker already answered (no process is started)."""
    done: Future = Future()
    if isinstance(prepared_or_error, Exception):
        done.set_exception(prepared_or_error)
    else:
        done.set_result(prepared_or_error)
    p = object.__new__(Prestager)
    p.log, p.pending = log, {("rivm_gezondheid", 2031): done}
    return p


def test_a_run_reads_the_files_itself_when_they_changed_or_the_worker_failed(tmp_path):
    big = prestage.PRESTAGE_MIN_BYTES
    data = _folder(tmp_path / "data", {f"{RIVM}/gezondheid_buurt_2031_18plus.xlsx": big})
    cbs = CbsSourceResource(data_dir=str(data))
    config = prestage.reader_config(cbs)
    listing = partition_listing(str(data), "rivm_gezondheid", 2031)
    lines: list[str] = []

    worker_file = tmp_path / "w.duckdb"
    worker_file.write_bytes(b"x")
    same = _prepared(str(worker_file), listing, config)
    assert _prestager(same, lines.append).take("rivm_gezondheid", 2031, cbs) is same
    assert _prestager(same, lines.append).take("rivm_gezondheid", 2016, cbs) is None  # not prepared

    (data / RIVM / "gezondheid_buurt_2031_18plus.xlsx").write_bytes(b"\1" * big)  # changed since it was read
    assert _prestager(same, lines.append).take("rivm_gezondheid", 2031, cbs) is None
    assert not worker_file.exists()  # the stale preparation is thrown away
    other_threshold = _prepared(str(worker_file), partition_listing(str(data), "rivm_gezondheid", 2031),
                                (config[0], config[1] + 1))
    assert _prestager(other_threshold, lines.append).take("rivm_gezondheid", 2031, cbs) is None
    assert _prestager(ValueError("gezondheid_buurt_2031_18plus.xlsx: not a workbook"), lines.append).take(
        "rivm_gezondheid", 2031, cbs) is None
    assert "not a workbook" in lines[-1] and "read in its run" in lines[-1]
    assert sum("changed since it was prepared" in line for line in lines) == 2


def test_without_an_active_worker_nothing_is_prepared():
    assert prestage.take("rivm_gezondheid", 2020, CbsSourceResource(data_dir="/nonexistent")) is None
    with prestage.prestaging(CbsSourceResource(data_dir="/nonexistent"), []) as active:
        assert active is None and prestage.take("rivm_gezondheid", 2020, None) is None


def test_a_worker_error_comes_back_as_its_message(tmp_path):
    """A reader's SourceFormatError cannot be rebuilt from its pickle (its class takes file, expected and found);
    in the pool that broke the worker for every later partition. It comes back as a RuntimeError naming the
    file (SYNTHETIC: a workbook that is not one)."""
    import pickle

    data = _folder(tmp_path / "data", {f"{RIVM}/gezondheid_buurt_2031_18plus.xlsx": 100})
    with pytest.raises(RuntimeError) as info:
        prestage.prepare_in_worker((str(data), 10), "rivm_gezondheid", 2031, str(tmp_path))
    assert "gezondheid_buurt_2031_18plus.xlsx" in str(info.value)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_the_worker_does_not_import_dagster_with_the_command_line_module():
    """The worker starts with spawn, which imports the parent's main module again: for `wijk-assets` that is
    wijk_assets.cli. Importing it must not import Dagster (~1 s and ~100 MB in the worker, on the raw stage's
    critical path); nor may the worker's own module."""
    import subprocess
    import sys

    code = ("import sys; import wijk_assets.cli, wijk_assets.lib.prestage; "
            "print(sorted(m for m in ('dagster', 'dbt', 'great_expectations') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
