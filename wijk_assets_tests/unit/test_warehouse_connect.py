"""warehouse.connect when several processes meet a database file that does not exist yet (synthetic,
empty databases in tmp_path; no real data)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from wijk_assets.lib import warehouse

def test_a_new_file_is_never_opened_by_duckdb_before_it_is_a_whole_database(tmp_path, monkeypatch):
    """DuckDB creates a file before it locks it, so a process racing the creator can lock the still
    empty file first, find no header, and leave it at 0 bytes for good ("not a valid DuckDB database
    file" for every later opener; seen in CI with three writers starting at once). connect therefore
    never lets DuckDB create the shared path: each call that reaches it finds a complete database."""
    seen: list[tuple[str, int]] = []
    real_connect = duckdb.connect

    def spying_connect(database, *args, **kwargs):
        target = Path(database)
        if target.parent == tmp_path and not target.name.startswith("."):
            seen.append((target.name, target.stat().st_size if target.exists() else -1))
        return real_connect(database, *args, **kwargs)

    monkeypatch.setattr(warehouse.duckdb, "connect", spying_connect)
    path = tmp_path / "new.duckdb"
    with warehouse.connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with warehouse.connect(path) as con:
        assert con.execute("SELECT x FROM t").fetchone() == (1,)
    assert seen and all(size > 0 for _, size in seen), seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.duckdb"]  # no scratch file is left behind


def test_an_abandoned_empty_file_is_replaced_by_a_new_database(tmp_path, monkeypatch):
    """A 0-byte file that stays empty is an interrupted creation, not data: a writer replaces it."""
    monkeypatch.setattr(warehouse, "BEING_CREATED_SECONDS", 0.3)
    path = tmp_path / "empty.duckdb"
    path.write_bytes(b"")
    with warehouse.connect(path) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert path.stat().st_size > 0


def test_a_damaged_file_is_refused_and_left_as_it_is(tmp_path, monkeypatch):
    """Bytes that are not a DuckDB database are never replaced: the error names the file."""
    monkeypatch.setattr(warehouse, "BEING_CREATED_SECONDS", 0.3)
    path = tmp_path / "damaged.duckdb"
    path.write_bytes(b"this is not a database" * 500)
    with pytest.raises(duckdb.IOException, match="damaged.duckdb"), warehouse.connect(path):
        pass
    assert path.read_bytes() == b"this is not a database" * 500
    with pytest.raises(duckdb.IOException), warehouse.connect(path, read_only=True):
        pass


def test_read_only_never_creates_a_file(tmp_path):
    path: Path = tmp_path / "missing.duckdb"
    with pytest.raises(duckdb.Error), warehouse.connect(path, read_only=True, wait_seconds=1):
        pass
    assert not path.exists()


def test_releasing_memory_looks_up_malloc_trim_once_per_process(monkeypatch):
    """``ctypes.util.find_library`` forks ``ldconfig``: once per process, not on every release (a run
    releases memory dozens of times, in a process of ~1 GB during a national load)."""
    import ctypes.util

    from wijk_assets.lib import memory

    lookups = []
    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: lookups.append(name) or real(name))
    memory._malloc_trim.cache_clear()
    try:
        for _ in range(3):
            memory.release_free_memory()
    finally:
        memory._malloc_trim.cache_clear()
    assert lookups == ["c"]
