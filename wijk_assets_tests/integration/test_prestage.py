"""A large raw partition prepared ahead by the worker process (wijk_assets.lib.prestage) goes live exactly as
it would have read in its own run, and a file the worker cannot read is refused in the run, as before.

Real data: RIVM 2020's three national workbooks (~1.25 M rows).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb

from wijk_assets.definitions import build_definitions
from wijk_assets.keys import raw_asset_key
from wijk_assets.runner.materialize import materialize_all, materialize_keys, register_partitions
from wijk_assets.settings import Settings

RIVM = "rivm_gezondheid_50090NED"


def _folder(shared_data_dir: Path, target: Path) -> Path:
    (target / RIVM).mkdir(parents=True)
    for path in sorted((shared_data_dir / RIVM).glob("gezondheid_buurt_2020_*.xlsx")):
        (target / RIVM / path.name).symlink_to(path)
    return target


def _settings(data: Path, db: Path) -> Settings:
    return Settings(data_dir=data, duckdb_path=db, cbs_base_url=None, gemeente="GM0106")


def _materialization(instance):
    event = instance.get_latest_materialization_event(raw_asset_key("rivm_gezondheid"))
    meta = event.asset_materialization.metadata
    return {k: getattr(v, "value", v) for k, v in meta.items()}, event.asset_materialization.tags


def _rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute("SELECT * EXCLUDE (retrieved_at) FROM raw.rivm_gezondheid").fetchall()


def test_a_partition_prepared_ahead_goes_live_as_one_read_in_its_run(shared_data_dir, tmp_path):
    data = _folder(shared_data_dir, tmp_path / "data")
    ahead_instance, inline_instance = dg.DagsterInstance.ephemeral(), dg.DagsterInstance.ephemeral()
    lines: list[str] = []
    report = materialize_all(_settings(data, tmp_path / "ahead.duckdb"), instance=ahead_instance,
                             sources=["rivm_gezondheid"], downstream=False, log=lines.append)
    assert report.success, lines
    ahead, ahead_tags = _materialization(ahead_instance)
    assert ahead["prepared_ahead"] is True

    settings = _settings(data, tmp_path / "inline.duckdb")  # the same partition, read in its run (no worker)
    defs = build_definitions(settings)
    register_partitions(inline_instance, defs.resources["cbs"], ["rivm_gezondheid"])
    assert materialize_keys(defs, inline_instance, [raw_asset_key("rivm_gezondheid")], "2020", trigger="cli",
                            raise_on_error=True).success
    inline, inline_tags = _materialization(inline_instance)
    assert inline["prepared_ahead"] is False

    rows = _rows(tmp_path / "ahead.duckdb")
    assert len(rows) > 1_000_000 and rows == _rows(tmp_path / "inline.duckdb")  # same rows, same order
    for key in ("dagster/row_count", "sources", "source_sha256", "areas_per_level", "measures", "suppressed_cells",
                "gate_1_before_swap"):
        assert ahead.get(key) == inline.get(key), key
    strip = lambda gate: {k: v for k, v in gate.items() if k != "runtime_seconds"}  # noqa: E731
    assert strip(ahead["gate_1_result"]) == strip(inline["gate_1_result"])
    assert ahead_tags["dagster/data_version"] == inline_tags["dagster/data_version"]


def test_a_file_the_worker_cannot_read_is_refused_in_its_run(shared_data_dir, tmp_path):
    data = _folder(shared_data_dir, tmp_path / "data")
    broken = data / RIVM / "gezondheid_buurt_2020_65plus.xlsx"
    blob = broken.resolve().read_bytes()
    broken.unlink()
    broken.write_bytes(blob[: len(blob) // 2])
    db = tmp_path / "wijk.duckdb"
    lines: list[str] = []
    report = materialize_all(_settings(data, db), instance=dg.DagsterInstance.ephemeral(),
                             sources=["rivm_gezondheid"], downstream=False, log=lines.append)
    assert not report.success
    assert any("not prepared ahead" in line and "gezondheid_buurt_2020_65plus.xlsx" in line for line in lines), lines
    with duckdb.connect(str(db), read_only=True) as con:  # the run recorded the reader's refusal, as without a worker
        stage, files, reason = con.execute(
            "SELECT stage, files, reason FROM quarantine.rejections WHERE source = 'rivm_gezondheid'").fetchall()[0]
    assert stage == "read" and "gezondheid_buurt_2020_65plus.xlsx" in reason
