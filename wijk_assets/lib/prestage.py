"""Large raw partitions read, staged and put through gate 1's GE suite in a worker process, ahead of their run.

A national build (:func:`wijk_assets.runner.materialize.materialize_all`) loads ~17 raw partitions, one
Dagster run at a time, in one process: one core of two. The three RIVM years (~1.9 M rows each) were most
of that stage, and most of each went to work that needs neither Dagster nor the warehouse: parsing the
workbooks, typing the rows in DuckDB and the GE suite. For partitions whose own files are large
(:data:`PRESTAGE_MIN_BYTES`), :func:`prestaging` has one worker process do that work while this process
loads the small partitions; those runs come last. A prepared partition's own run then

1. copies the staged rows from the worker's database file into ``raw_staging.<source>``
   (:func:`stage_prepared`; the rows, their order and their types as the run would have staged them),
2. runs the rules that read the live warehouse (plausibility against the live partition, the live
   partition's files delivered) and combines them with the worker's GE result
   (:func:`wijk_assets.lib.quality.staged_gate.validate_staged`),
3. swaps in, or quarantines, exactly as for a partition read in its run: validate, then swap.

**Same result as reading in the run.** The worker runs the same reader, ``stage_partition`` and GE code on
the same bytes. A run uses a prepared partition only when the files it would read now have the paths and
sha256 the worker read, with the same reader settings; otherwise, and whenever the worker failed (a file it
cannot parse, a worker that died), the run reads the files itself, so a reader's error is raised and
recorded where it always was. Runs started any other way (the Dagster UI, sensors, ``refresh``) read
in their run: no worker is active there.

No Dagster here: the worker does not import it.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from wijk_assets.lib.sources.summary import ExtractSummary

# A partition whose own files (the year in their names) total at least this many bytes is prepared ahead:
# the RIVM years (9-11 MB of workbooks, 6-11 s each in their run) and the wijk boundaries (3.8 MB of
# GeoJSON, ~1.7 s); the rest (KWB, proximity, survey, SES: < 1.2 MB each) take ~0.6 s in their run.
PRESTAGE_MIN_BYTES = 2 * 1024 * 1024
ALIAS = "prestaged"


@dataclass(frozen=True)
class PreparedPartition:
    source: str
    year: int
    reader_config: tuple  # the offline reader's settings the worker read with (see reader_config)
    listing: tuple  # (relative path, sha256) of every file of the partition, as the worker read them
    db_path: str  # the worker's database file: raw_staging.<source> holds the staged rows
    rows: int
    summary: ExtractSummary
    ge_result: object  # GateResult of the source's suite on the staged rows; None when it has no suite
    seconds: float  # the worker's time for the read, the staging and the GE suite


def reader_config(cbs) -> tuple:
    """What the offline readers depend on besides the files' bytes (data folder, survey threshold)."""
    return (str(cbs.data_dir), int(cbs.min_respondents))


def partition_listing(data_dir: str, source: str, year: int) -> tuple:
    """(relative path, sha256) of every file in ``data_dir`` the partition's run would read, sorted."""
    from wijk_assets.lib.sources.base import sha256_file
    from wijk_assets.lib.sources.catalog import find_source_files

    files = [f for f in find_source_files(source, Path(data_dir)) if f.filename_year in (None, int(year))]
    return tuple(sorted((f.relative_path, sha256_file(f.path)) for f in files))


def candidates(cbs, sources: list[str]) -> list[tuple[str, int]]:
    """The partitions worth preparing ahead, in load order: offline sources whose files all carry their
    year in their names (a multi-year file is read once per process and kept, see
    ``read_multi_year_file``), each year whose files total at least :data:`PRESTAGE_MIN_BYTES`. Read off
    the file names only, so the worker can start before the partitions are registered."""
    if cbs.mode == "live" or (os.cpu_count() or 1) < 2:
        return []
    out = []
    for source in sources:
        try:
            files = cbs.source_files(source)
        except Exception:  # noqa: BLE001 - the partition's own run reports an unusable folder
            continue
        if not files or any(f.filename_year is None for f in files):
            continue
        for year in sorted({f.filename_year for f in files}):
            if sum(f.path.stat().st_size for f in files if f.filename_year == year) >= PRESTAGE_MIN_BYTES:
                out.append((source, int(year)))
    return out


def load_order(partitions: dict[str, list[str]], large: list[tuple[str, int]]) -> tuple[list, list]:
    """(the raw runs in load order, the partitions the worker prepares), for ``large`` from :func:`candidates`.

    The small partitions load first, while the worker prepares the large ones; those load last, each
    source's years in ascending order (plausibility compares a year with the previous live one). The
    worker and this process are never both in a large partition's read and check (~1 GiB each for a RIVM
    year): with the first large partition read here instead, the two overlapped at 2.15 GiB."""
    plain = [(s, str(y)) for s, years in partitions.items() for y in years]
    if not large:
        return plain, []
    rest = [(s, y) for s, y in plain if (s, int(y)) not in large]
    return [*rest, *((s, str(y)) for s, y in large)], list(large)


def stage_extracts(con, extracts: list, table: str, year: int) -> tuple[str, int, ExtractSummary]:
    """Stage the extracts' rows of release ``year`` in ``raw_staging`` of ``con`` (a run's warehouse, or the
    worker's own file); returns (staging table, rows, the summary the partition's metadata needs, taken
    before the reader's frames are released)."""
    from wijk_assets.lib.memory import release_free_memory
    from wijk_assets.lib.sources import raw_parts
    from wijk_assets.lib.sources.base import RAW_COLUMNS
    from wijk_assets.lib.sources.summary import summarise_extracts
    from wijk_assets.lib.warehouse import stage_partition

    retrieved_at = datetime.now(timezone.utc).replace(tzinfo=None)
    summary = summarise_extracts(extracts, year, retrieved_at)
    parts = raw_parts(extracts, retrieved_at)
    staged, rows = stage_partition(con, table, parts, RAW_COLUMNS, {"release_year": int(year)})
    # The rows now live in DuckDB's staging table; drop the reader's pandas copy before gate 1 reads the
    # staged rows (a RIVM year is ~1.9 M rows: two copies at once were the run's peak).
    del parts
    for extract in extracts:
        extract.frame = extract.frame.iloc[0:0]
    release_free_memory()  # hand those pages back before gate 1 builds its own frame
    return staged, int(rows), summary


def prepare_in_worker(config: tuple, source: str, year: int, folder: str) -> PreparedPartition:
    """:func:`prepare_partition`, with any error handed back as a plain RuntimeError carrying its message: an
    exception whose class takes other arguments than its message (``SourceFormatError``) cannot be rebuilt
    in this process, and the pool would then count the worker as dead, with the partitions after it."""
    try:
        return prepare_partition(config, source, year, folder)
    except Exception as error:  # noqa: BLE001 - the run reads the files itself and meets the error there
        raise RuntimeError(f"{type(error).__name__}: {error}") from None


def prepare_partition(config: tuple, source: str, year: int, folder: str) -> PreparedPartition:
    """In the worker: read the partition's files, stage their rows in a database file of its own and run
    the source's GE suite on them."""
    import duckdb

    from wijk_assets.lib.memory import release_free_memory
    from wijk_assets.lib.quality.staged_gate import ge_gate_on_staged
    from wijk_assets.lib.sources import read_partition_files
    from wijk_assets.lib.sources.catalog import find_source_files

    started = time.perf_counter()
    data_dir, min_respondents = config
    listing = partition_listing(data_dir, source, year)
    # the reading CbsSourceResource.extracts does for an offline source (without importing Dagster here)
    extracts = read_partition_files(find_source_files(source, Path(data_dir)), int(year), min_respondents)
    if not extracts:
        raise RuntimeError(f"{source} {year}: nothing to read")
    read = tuple(sorted((e.source, e.sha256) for e in extracts))
    if read != listing:  # a file changed (or appeared) while it was read: the run reads for itself
        raise RuntimeError(f"{source} {year}: the files changed while they were read ({read} != {listing})")
    db_path = str(Path(folder) / f"{source}_{year}.duckdb")
    # a small buffer pool: the staged rows go to the file rather than stay cached (the worker's peak 1,119 ->
    # 1,071 MiB over the three RIVM years, at the same speed); it runs beside the main process's own
    with contextlib.closing(duckdb.connect(db_path, config={"memory_limit": "256MB"})) as con:
        staged, rows, summary = stage_extracts(con, extracts, f"raw.{source}", int(year))
        ge_result = ge_gate_on_staged(con, source, staged)
    del extracts
    gc.collect()
    release_free_memory()
    return PreparedPartition(source, int(year), config, listing, db_path, rows, summary, ge_result,
                             time.perf_counter() - started)


def warm_up() -> None:
    """The worker's initializer: import Great Expectations (~1.6 s) in a thread while the first partition's
    files are read (the xlsx parser lets go of the GIL for part of its work); the GE suite, which needs it,
    comes after the read and the staging."""
    import atexit
    import threading

    from wijk_assets.lib.quality.ge_runner import _gx

    threading.Thread(target=_gx, name="wijk-ge-import", daemon=True).start()
    atexit.register(_exit_now)


def _exit_now() -> None:
    """The worker's exit, without the interpreter's teardown: freeing a RIVM year's leftover objects one by
    one kept the raw stage waiting ~0.7-1 s for the worker to end. Registered last, so it runs first of
    the exit handlers, after the pool's worker loop returned: every result has been sent by then (the
    result queue is written synchronously), the DuckDB files are closed and the worker has no children."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


class Prestager:
    """One worker process preparing ``items`` in order; :meth:`take` hands each to its run once."""

    def __init__(self, cbs, items: list[tuple[str, int]], log=print):
        self.folder = tempfile.mkdtemp(prefix="wijk_prestage_")
        self.log = log
        self.config = reader_config(cbs)
        # spawn: a fresh interpreter (this process runs threads: Dagster's, dbt's background parse)
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=warm_up)
        self.pending: dict[tuple[str, int], Future] = {
            (source, int(year)): self.pool.submit(prepare_in_worker, self.config, source, int(year), self.folder)
            for source, year in items
        }

    def take(self, source: str, year: int, cbs) -> PreparedPartition | None:
        """The partition prepared for this run, or None: not prepared, the worker failed, or the files or
        reader settings differ from what the worker read (then the run reads the files itself)."""
        future = self.pending.pop((source, int(year)), None)
        if future is None:
            return None
        try:
            prepared = future.result()
        except Exception as error:  # noqa: BLE001 - the run reads the files itself and meets the error there
            self.log(f"   {source} [{year}]: not prepared ahead ({' '.join(str(error).split())[:200]}); read in its run")
            return None
        config = reader_config(cbs)
        if prepared.reader_config != config or prepared.listing != partition_listing(config[0], source, year):
            self.log(f"   {source} [{year}]: files or reader settings changed since it was prepared; read in its run")
            discard(prepared)
            return None
        return prepared

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # what has not started is cancelled
        shutil.rmtree(self.folder, ignore_errors=True)


_ACTIVE: list[Prestager] = []


@contextlib.contextmanager
def prestaging(cbs, items: list[tuple[str, int]], log=print) -> Iterator[Prestager | None]:
    """Prepare ``items`` in a worker process for the block's raw runs in this process (none: nothing)."""
    if not items:
        yield None
        return
    prestager = Prestager(cbs, items, log=log)
    _ACTIVE.append(prestager)
    try:
        yield prestager
    finally:
        _ACTIVE.remove(prestager)
        prestager.close()


def take(source: str, year: int, cbs) -> PreparedPartition | None:
    """The raw asset's question: was this partition prepared ahead for this run?"""
    return _ACTIVE[-1].take(source, year, cbs) if _ACTIVE else None


def stage_prepared(con, prepared: PreparedPartition, table: str) -> str:
    """Copy a prepared partition's staged rows into ``raw_staging.<source>`` of the warehouse, in the order
    the worker staged them; returns the staging table. The worker's file is deleted afterwards."""
    from wijk_assets.lib.sources.base import RAW_COLUMNS
    from wijk_assets.lib.warehouse import ensure_table, quote_ident, staging_table

    staged = staging_table(table)
    names = ", ".join(quote_ident(c) for c in RAW_COLUMNS)
    path = prepared.db_path.replace("'", "''")
    con.execute(f"ATTACH '{path}' AS {ALIAS} (READ_ONLY)")
    try:
        con.execute(f"DROP TABLE IF EXISTS {staged}")
        ensure_table(con, staged, RAW_COLUMNS)
        con.execute(f"INSERT INTO {staged} ({names}) SELECT {names} FROM {ALIAS}.{staged}")
    finally:
        con.execute(f"DETACH {ALIAS}")
        discard(prepared)
    return staged


def discard(prepared: PreparedPartition) -> None:
    for suffix in ("", ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(prepared.db_path + suffix)


__all__ = ["PRESTAGE_MIN_BYTES", "PreparedPartition", "Prestager", "candidates", "load_order", "prestaging",
           "stage_extracts", "stage_prepared", "take"]
