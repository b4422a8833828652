"""Dagster's SQLite event log, with its database connections kept open between events.

Every run writes ~20-60 events (run start, one output per asset and check, planned and stored
materialisations, check evaluations, logs ...); a national build writes ~1,070. Dagster's
``SqliteEventLogStorage`` opens a new SQLAlchemy engine and SQLite connection for every write (and a
second one for an asset event, which it mirrors into the cross-run index), checks the database's
schema revision on first use, and disposes of the engine again: ~10 ms per event measured in the
benchmark, ~11 s of a national build.

:class:`KeptConnectionSqliteEventLogStorage` is the same storage, in the same files, with the same
transactions and the same durability (SQLite's defaults: WAL journal, as Dagster sets it, and a sync
per commit); only the engine of a database file is kept and its connection reused. What it changes:

* at most :data:`KEPT_ENGINES` engines are kept (the index and the most recently used run shards), so a
  long-lived process that reads many runs (the Dagster UI) holds a bounded number of open files;
* a process that inherited engines across ``fork`` drops them without closing (SQLite connections must
  not cross a fork) and opens its own;
* before Dagster deletes run-shard files (``wipe``) every engine is disposed of, so no connection writes
  to a deleted file;
* a new run's shard file gets its tables and its alembic revision stamp as Dagster's ``_initdb`` gives
  them, but stamped through alembic's ``MigrationContext`` with the migration scripts read once per
  process: Dagster's own path reads every migration script twice per new file and runs alembic's
  environment script (~50 of its ~55 ms per run; a national build starts 26 runs). Any other state of
  the file (an existing, older or half-made database, the index shard, a concurrent initialisation)
  goes through Dagster's ``_initdb``, with its retries.

Other processes (the webserver, the daemon, runs launched from the UI) read and write the same files
concurrently, as with Dagster's class: SQLite's file locks and WAL do not depend on how long a
connection stays open, and each write is still its own committed transaction.

``wijk-assets`` writes this class into ``$DAGSTER_HOME/dagster.yaml`` when it creates the instance
configuration (:func:`wijk_assets.runner.materialize.instance_yaml`). Its one setting is the Dagster
home, ``{env: DAGSTER_HOME}`` there, and the files are where Dagster's default keeps them under it
(``history/runs``), so a home that is moved or copied (with the repository) keeps working: an absolute
path written into the file would send the copy's events to the original's folder.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import functools
import sqlite3

import sqlalchemy as db
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._config import StringSource
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import _alembic_lock, create_engine, get_alembic_config
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS, create_db_conn_string
from dagster._serdes import ConfigurableClassData
from sqlalchemy import exc as db_exc
from sqlalchemy.engine import Connection, Engine

KEPT_ENGINES = 8  # the index shard plus the run shards most recently written or read


@functools.lru_cache(maxsize=1)
def _migration_scripts() -> ScriptDirectory:
    """The SQLite event log's alembic scripts, as Dagster's ``_initdb`` finds them (read once)."""
    return ScriptDirectory.from_config(get_alembic_config(sqlite_event_log.__file__))


def init_new_shard(engine: Engine) -> bool:
    """Make ``engine``'s file a run shard as Dagster's ``_initdb`` makes a new one (the event log's tables,
    WAL journal, alembic stamped at head); True when the file is a stamped shard afterwards, False when
    it holds anything else (Dagster's ``_initdb`` decides then)."""
    with _alembic_lock:
        scripts = _migration_scripts()
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            if context.get_current_revision():
                return True  # stamped already (by another process): as Dagster's, nothing to do
            if db.inspect(conn).get_table_names():
                return False
            SqlEventLogStorageMetadata.create_all(conn)
            conn.execute(db.text("PRAGMA journal_mode=WAL;"))
            context.stamp(scripts, "head")
            conn.commit()
    return True


def events_dir(dagster_home: str | os.PathLike) -> str:
    """Where Dagster's default SQLite storage keeps the event log of a home."""
    return os.path.join(os.fspath(dagster_home), "history", "runs", "")


class KeptConnectionSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose per-file engines (and their connections) live between events."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def config_type(cls):  # noqa: D102 - Dagster's configurable-class hooks
        return {"dagster_home": StringSource}

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # noqa: D102
        return cls(events_dir(config_value["dagster_home"]), inst_data=inst_data)

    def _engine(self, shard: str) -> Engine:
        """The kept engine of ``shard``'s file (callers hold ``_db_lock``)."""
        if self._engines_pid != os.getpid():  # inherited across fork: not ours to use or to close
            for engine in self._engines.values():
                engine.dispose(close=False)
            self._engines.clear()
            self._engines_pid = os.getpid()
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        # SQLAlchemy's queue pool: a connection goes back to the pool after each use and any thread may
        # take it next (uses are serialised by _db_lock, as in Dagster's class; the sensor and log
        # watcher threads also read), hence check_same_thread off.
        engine = create_engine(
            create_db_conn_string(self._base_dir, shard),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        if shard not in self._initialized_dbs:
            self._initdb(engine)
            self._initialized_dbs.add(shard)
        self._engines[shard] = engine
        while len(self._engines) > KEPT_ENGINES:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def _initdb(self, engine: Engine, for_index_shard=False) -> None:
        if not for_index_shard:
            try:
                if init_new_shard(engine):
                    return
            except (db_exc.DatabaseError, sqlite3.DatabaseError, sqlite3.OperationalError):
                pass  # e.g. another process initialising the same file: Dagster's path retries
        super()._initdb(engine, for_index_shard=for_index_shard)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def dispose_engines(self) -> None:
        """Close every kept connection (before files are deleted, and when the storage is disposed)."""
        with self._db_lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.dispose()

    def wipe(self) -> None:
        self.dispose_engines()
        super().wipe()

    def dispose(self) -> None:
        self.dispose_engines()
        super().dispose()


__all__ = ["KEPT_ENGINES", "KeptConnectionSqliteEventLogStorage", "events_dir", "init_new_shard"]
