"""DuckDB access: opening the one database file safely and replacing a partition atomically.

DuckDB lets one process hold the file for writing, and while it does no other process can open it at
all. Everything that touches the file therefore goes through :func:`connect`, which waits (with backoff)
for the lock instead of crashing, and the Dagster assets that use it share one concurrency pool.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd

LOCK_WAIT_SECONDS = 600.0


# A file another process is creating right now reads as "not a valid DuckDB database file" for a
# moment; that is waited out for this long before it counts as a damaged file.
BEING_CREATED_SECONDS = 10.0


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set lock" in text)


def _is_being_created(error: Exception) -> bool:
    return "not a valid duckdb database file" in str(error).lower()


def _fresh_database_beside(path: Path) -> Path:
    """An empty, valid database file in ``path``'s folder under a name private to this process."""
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):08x}.creating")
    duckdb.connect(str(scratch)).close()
    return scratch


def _discard(scratch: Path) -> None:
    scratch.unlink(missing_ok=True)
    scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


def _install_new_database(path: Path, *, over_empty: bool = False) -> bool:
    """Put a new, empty database at ``path`` so that no process can ever see it half made; True if it did.

    DuckDB creates a file with O_CREAT and locks it afterwards; a second process that opens the new,
    still empty file in between takes the lock first, finds no header, and the creator then fails on
    the lock: the file stays at 0 bytes and is never initialised. Instead the database is made under a
    private name and hard-linked into place, which is atomic and fails if the path exists (another
    process made it first: theirs is used). ``over_empty``: a 0-byte file at ``path`` (an interrupted
    creation, no data) is replaced; any other existing file is left as it is.
    """
    scratch = _fresh_database_beside(path)
    try:
        try:
            os.link(scratch, path)
            return True
        except FileExistsError:
            if over_empty and path.stat().st_size == 0:
                os.replace(scratch, path)
                return True
            return False
        except OSError:  # a filesystem without hard links: the window is back, the retry loop covers it
            if path.exists():
                return False
            os.replace(scratch, path)
            return True
    finally:
        _discard(scratch)


# Database files this process keeps open (see held_open): resolved path -> the open connection.
_HELD: dict[Path, duckdb.DuckDBPyConnection] = {}


@contextlib.contextmanager
def held_open(path: Path | str) -> Iterator[None]:
    """Keep the database file open in this process for the block: :func:`connect` to it then hands out
    a cursor of the open database instead of opening and closing the file.

    Opening the file reads its header and catalog, and closing the last connection writes a
    checkpoint: ~30 ms each time, and a national build connects ~150 times. The command-line runs hold
    the file for one Dagster run at a time (:func:`wijk_assets.runner.materialize.materialize_keys`),
    never across a dbt step (dbt opens the file from its own process, which it could not while this
    one holds it). Transactions are per cursor, as they were per connection; a read-only request gets a
    cursor of the writable database (code that asks for read-only access does not write). Nested
    blocks for the same file keep the outer one's connection.
    """
    key = Path(path).resolve()
    if key in _HELD:
        yield
        return
    with connect(key) as con:
        _HELD[key] = con
        try:
            yield
        finally:
            _HELD.pop(key, None)


@contextlib.contextmanager
def connect(
    path: Path | str, *, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database file, waiting for another process's lock to clear rather than failing (or a
    cursor of it while this process holds it open, see :func:`held_open`)."""
    path = Path(path)
    held = _HELD.get(path.resolve()) if _HELD else None
    if held is not None:
        cursor = held.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
        return
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _install_new_database(path)
    started = time.monotonic()
    deadline = started + wait_seconds
    invalid_since: float | None = None
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            now = time.monotonic()
            if _is_being_created(error):
                invalid_since = now if invalid_since is None else invalid_since
                if now - invalid_since >= BEING_CREATED_SECONDS:
                    if read_only or not _install_new_database(path, over_empty=True):
                        raise
                    invalid_since = None
                    continue
            elif not _is_lock_error(error):
                raise
            if now > deadline:
                raise
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 2.0)
    try:
        yield con
    finally:
        con.close()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_table(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    schema, _ = table.split(".", 1)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    cols = ", ".join(f"{quote_ident(c)} {t}" for c, t in columns.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({cols})")
    existing = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    missing = [c for c in columns if c not in existing]
    if missing:
        raise RuntimeError(
            f"table {table} exists but lacks columns {missing}: it was written by an older version; "
            f"drop it (DROP TABLE {table}) and materialise again"
        )


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".", 1)
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()[0])


def add_missing_columns(con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]) -> None:
    """Add the columns a newer version writes to an existing bookkeeping table (NULL in old rows), so an
    ``ml.*`` table of an earlier run does not have to be dropped by hand."""
    if not table_exists(con, table):
        return
    existing = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    for name, sql_type in columns.items():
        if name not in existing:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {sql_type}")


def replace_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parts: list[tuple[pd.DataFrame, dict[str, object]]],
    columns: dict[str, str],
    partition: dict[str, object],
) -> int:
    """Replace the rows of one partition (e.g. ``{"release_year": 2020}``) in a single transaction.

    ``parts`` are (frame, constants) pairs: the frame holds the per-row columns, ``constants`` the
    columns that are the same for every row of that frame (provenance), so they are not repeated in
    memory. The old rows of the partition are deleted and the new ones inserted in one transaction; a
    failure at any point (a value that does not cast, a full disk) rolls back and leaves the previous
    content of the table untouched. Returns the number of rows written.
    """
    ensure_table(con, table, columns)
    where = " AND ".join(f"{quote_ident(k)} = ?" for k in partition)
    written = 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {table} WHERE {where}", list(partition.values()))
        for frame, constants in parts:
            select, params = [], []
            for name, sql_type in columns.items():
                if name in constants:
                    select.append(f"CAST(? AS {sql_type})")
                    params.append(constants[name])
                else:
                    select.append(f"CAST({quote_ident(name)} AS {sql_type})")
            con.register("__incoming", frame)
            try:
                con.execute(f"INSERT INTO {table} SELECT {', '.join(select)} FROM __incoming", params)
            finally:
                con.unregister("__incoming")
            written += len(frame)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return written


STAGING_SCHEMA = "raw_staging"  # a partition waits here while gate 1 validates it
QUARANTINE_SCHEMA = "quarantine"  # rejected partitions, tagged with run id, file and reason


def staging_table(table: str) -> str:
    """``raw.cbs_kwb`` -> ``raw_staging.cbs_kwb``: where a partition is written before it may go live."""
    return f"{STAGING_SCHEMA}.{table.split('.', 1)[1]}"


def quarantine_table(table: str) -> str:
    return f"{QUARANTINE_SCHEMA}.{table.split('.', 1)[1]}"


REJECTIONS_TABLE = f"{QUARANTINE_SCHEMA}.rejections"
REJECTION_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "source": "VARCHAR",  # the raw source (catalog name)
    "release_year": "INTEGER",
    "rejected_at": "TIMESTAMP",
    "stage": "VARCHAR",  # "read" (the file could not be parsed) or "gate_1" (validated and refused)
    "files": "VARCHAR",  # JSON list of {"source", "sha256"}
    "reason": "VARCHAR",  # one line
    "failed_expectations": "VARCHAR",  # JSON list of "expect_x(column)" labels
    "rows": "BIGINT",  # rows kept in quarantine.<source> (0 when the file could not be read)
}


def stage_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parts: list[tuple[pd.DataFrame, dict[str, object]]],
    columns: dict[str, str],
    partition: dict[str, object],
) -> tuple[str, int]:
    """Write one partition to its staging table (``raw_staging.<name>``, emptied first), not to ``table``.

    The staging table holds exactly the candidate rows, typed like the live table, so gate 1 validates
    what *would* go live. Returns (staging table, rows written).
    """
    staged = staging_table(table)
    con.execute(f"DROP TABLE IF EXISTS {staged}")
    ensure_table(con, staged, columns)
    return staged, replace_partition(con, staged, parts, columns, partition)


def swap_in_partition(
    con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str], partition: dict[str, object]
) -> int:
    """Replace the live partition by the staged one and drop the staging table, in one transaction."""
    staged = staging_table(table)
    ensure_table(con, table, columns)
    where = " AND ".join(f"{quote_ident(k)} = ?" for k in partition)
    names = ", ".join(quote_ident(c) for c in columns)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {table} WHERE {where}", list(partition.values()))
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged}")
        written = con.execute(f"SELECT count(*) FROM {staged}").fetchone()[0]
        con.execute(f"DROP TABLE {staged}")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return int(written)


def quarantine_partition(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: dict[str, str],
    rejection: dict[str, object],
    *,
    move_staged: bool = True,
) -> int:
    """Move the staged rows of a refused partition to ``quarantine.<name>`` and record the rejection.

    ``rejection`` holds the REJECTION_COLUMNS except ``rows``. Quarantined rows keep every raw column
    plus ``run_id``, ``rejected_at`` and ``reason``; earlier rejections stay (each run is its own
    set of rows), so an engineer can compare attempts. The live table is not touched. When nothing
    was staged (the file could not be read) only the rejection is recorded. Returns the rows moved.
    """
    staged = staging_table(table)
    target = quarantine_table(table)
    ensure_table(con, REJECTIONS_TABLE, REJECTION_COLUMNS)
    exists = move_staged and bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [STAGING_SCHEMA, staged.split(".", 1)[1]],
        ).fetchone()[0]
    )
    con.execute("BEGIN TRANSACTION")
    try:
        moved = 0
        if exists:
            ensure_table(
                con, target, {**columns, "run_id": "VARCHAR", "rejected_at": "TIMESTAMP", "reason": "VARCHAR"}
            )
            names = ", ".join(quote_ident(c) for c in columns)
            con.execute(
                f"INSERT INTO {target} ({names}, run_id, rejected_at, reason) "
                f"SELECT {names}, ?, CAST(? AS TIMESTAMP), ? FROM {staged}",
                [rejection["run_id"], rejection["rejected_at"], rejection["reason"]],
            )
            moved = int(con.execute(f"SELECT count(*) FROM {staged}").fetchone()[0])
            con.execute(f"DROP TABLE {staged}")
        record = {**rejection, "rows": moved}
        cols = list(REJECTION_COLUMNS)
        con.execute(
            f"INSERT INTO {REJECTIONS_TABLE} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [record.get(c) for c in cols],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return moved


def replace_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> int:
    """Swap a whole table for ``frame`` in one transaction (for unpartitioned derived tables)."""
    return replace_tables(con, {table: frame})[table]


def replace_tables(con: duckdb.DuckDBPyConnection, frames: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Swap several whole tables (``{"schema.name": frame}``) in one transaction: all or none."""
    for schema in sorted({table.split(".", 1)[0] for table in frames}):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
    names = {table: f"__incoming_{i}" for i, table in enumerate(frames)}
    for table, frame in frames.items():
        con.register(names[table], frame)
    try:
        con.execute("BEGIN TRANSACTION")
        try:
            for table in frames:
                con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {names[table]}")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    finally:
        for name in names.values():
            con.unregister(name)
    return {table: len(frame) for table, frame in frames.items()}


def sql_types(frame: pd.DataFrame) -> dict[str, str]:
    """DuckDB column types for a derived frame (bool, integer, float, else text)."""
    out = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_bool_dtype(series):
            out[column] = "BOOLEAN"
        elif pd.api.types.is_integer_dtype(series):
            out[column] = "BIGINT"
        elif pd.api.types.is_float_dtype(series):
            out[column] = "DOUBLE"
        else:
            out[column] = "VARCHAR"
    return out


def table_schema(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall()]
