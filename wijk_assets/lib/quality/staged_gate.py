"""Gate 1 before the swap: validate a staged raw partition, then swap it in or quarantine it. No Dagster.

Order of a raw load (see :func:`wijk_assets.defs.raw.assets.build_raw_asset`):

1. the reader parses the files (a file it cannot parse stops here; nothing is written);
2. the rows go to ``raw_staging.<source>`` (:func:`wijk_assets.lib.warehouse.stage_partition`);
3. :func:`validate_staged` runs the source's GE suite and the plausibility rules on those rows;
4. pass -> :func:`wijk_assets.lib.warehouse.swap_in_partition` replaces the live partition in one
   transaction; fail -> :func:`wijk_assets.lib.warehouse.quarantine_partition` moves the rows to
   ``quarantine.<source>`` (tagged with run id, file and reason) and the live partition, its data
   version and its last materialisation stay the previous ones (the asset raises).

The blocking ``ge_gate_<source>`` asset check keeps observing the *live* table after a successful
load, so the UI's check history and the cross-run automation guard are unchanged.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Sequence
from datetime import datetime, timezone

import duckdb
import pandas as pd

from wijk_assets.lib.sources.catalog import load_catalog
from wijk_assets.lib.memory import release_free_memory
from wijk_assets.lib.quality.ge_runner import (
    GateResult,
    load_suite,
    suite_path,
    validate_frame,
)
from wijk_assets.lib.quality.plausibility import (
    Partition,
    previous_live_year,
    validate_plausibility,
)


def _combine(suite: str, parts: list[GateResult]) -> GateResult:
    results = [r for p in parts for r in p.results]
    results.sort(key=lambda r: (r["success"], not r["blocking"]))
    return GateResult(
        suite=suite,
        success=all(p.success for p in parts),
        results=results,
        rows=max((p.rows for p in parts), default=0),
        batches=sorted({b for p in parts for b in p.batches}),
        runtime_seconds=sum(p.runtime_seconds for p in parts),
    )


def catalog_file_globs(source: str) -> list[tuple[str, str | None]]:
    """(glob, year regex when the year is in the file name) per ``files:`` entry of the catalog."""
    return [
        (f.glob, f.year_regex if f.year_from == "filename" else None) for f in load_catalog()[source].files
    ]


def read_staged(con: duckdb.DuckDBPyConnection, staged: str, chunk_rows: int = 250_000) -> pd.DataFrame:
    """The staged rows in table order as pandas, text as ``category`` (a national RIVM year is ~1.9M rows).

    Read in chunks of ``chunk_rows`` rows, each text column dictionary-encoded as it arrives and every
    other column copied out of DuckDB's result (a kept slice would keep the whole exported chunk alive).
    A plain Arrow copy of a RIVM year (file name, sha256, subgroup and measure key on every row) is
    ~0.6 GB and was, with its conversion, the raw stage's memory peak (~1 GB over the frame's ~55 MB);
    chunked, the peak is about half of that.
    """
    import pyarrow as pa

    low, high = con.execute(f"SELECT min(rowid), max(rowid) FROM {staged}").fetchall()[0]
    if low is None:
        return con.sql(f"SELECT * FROM {staged} LIMIT 0").to_arrow_table().to_pandas(strings_to_categorical=True)
    text = (pa.types.is_string, pa.types.is_large_string, getattr(pa.types, "is_string_view", lambda t: False))

    def own(column: pa.ChunkedArray) -> pa.Array:
        if any(is_text(column.type) for is_text in text):
            return column.dictionary_encode().combine_chunks()
        return pa.concat_arrays([*column.chunks, pa.array([], type=column.type)])  # a copy

    chunks = []
    for start in range(int(low), int(high) + 1, chunk_rows):
        part = con.sql(
            f"SELECT * FROM {staged} WHERE rowid >= {start} AND rowid < {start + chunk_rows} ORDER BY rowid"
        ).to_arrow_table()
        chunks.append(pa.table([own(c) for c in part.columns], names=part.column_names))
        del part
    table = pa.concat_tables(chunks).unify_dictionaries()
    del chunks
    return table.to_pandas(self_destruct=True, split_blocks=True)


LARGE_PARTITION_ROWS = 200_000


def ge_gate_on_staged(con: duckdb.DuckDBPyConnection, source: str, staged: str) -> GateResult | None:
    """The GE half of gate 1: the suite ``raw_<source>`` on the staged rows (None without a suite).

    Needs only the staged table, not the live warehouse: :mod:`wijk_assets.lib.prestage` runs it in a worker
    process on a partition staged in a database file of its own."""
    name = f"raw_{source}"
    if not suite_path(name).is_file():
        return None
    frame = read_staged(con, staged)
    release_free_memory()  # the Arrow chunks read_staged freed, before GE makes its copies
    ge_result = validate_frame(frame, load_suite(name), consume=True)
    del frame
    if ge_result.rows >= LARGE_PARTITION_ROWS:
        # GE's batch, validator and metric objects reference one another, so even once validate_frame has
        # let go of GE's context the frames GE validated (a RIVM year: 1.9 M rows) are cyclic garbage,
        # freed only when a full collection happens to run, often several runs later (+100-250 MB per
        # RIVM partition through the next steps). One collection here costs a fraction of a second.
        gc.collect()
        release_free_memory()
    return ge_result


def validate_staged(
    con: duckdb.DuckDBPyConnection, source: str, year: int, staged: str, live: str, withdrawn: Sequence[str] = (),
    *, ge_result: GateResult | None = None,
) -> GateResult:
    """Gate 1 on the candidate partition: the GE suite ``raw_<source>`` plus its plausibility rules.

    ``withdrawn``: files the publisher withdrew on purpose (``Settings.withdrawn_files``); a reload may
    lack them. Without a suite for the source there is no gate: the result passes with nothing evaluated.
    ``ge_result``: the suite's result on these very rows when it was already run (a partition prepared
    ahead, :mod:`wijk_assets.lib.prestage`); the plausibility rules, which read the live table, run here.
    """
    name = f"raw_{source}"
    if not suite_path(name).is_file():
        return GateResult(suite=name, success=True)
    if ge_result is None:
        ge_result = ge_gate_on_staged(con, source, staged)
    part = Partition(staged=staged, live=live, year=int(year), previous_year=previous_live_year(con, live, year),
                     withdrawn=tuple(withdrawn))
    plausible = validate_plausibility(con, part, load_suite(name), catalog_file_globs(source))
    return _combine(name, [ge_result, plausible])


def one_line_reason(result: GateResult, limit: int = 300, first: int = 1) -> str:
    """The first failed expectation(s) with column, file and an example, in one line (CLI, quarantine);
    the full list is in the failure's metadata and ``quarantine.rejections.failed_expectations``."""
    bits = []
    for failure in result.failures[:first]:
        where = failure.get("batch") or ""
        file_match = re.search(r"file=([^,]+)", where)
        sample = failure.get("sample_rows") or []
        file = file_match.group(1) if file_match else (sample[0].get("source_file") if sample else None)
        detail = ""
        if failure.get("missing"):
            detail = f" missing {', '.join(map(str, failure['missing'][:5]))}"
        elif sample and sample[0].get("source_row") is not None:
            detail = f" e.g. row {sample[0]['source_row']} {sample[0].get('measure_key') or ''}={sample[0].get('value_raw')!r}"
        elif failure.get("sample"):
            detail = f" e.g. {str(failure['sample'][0])[:80]}"
        bits.append(f"{failure['expectation']}({failure.get('column') or ''}){' in ' + file if file else ''}{detail}")
    more = len(result.failed_expectations()) - len(bits)
    text = "; ".join(bits) + (f" (+{more} more failed expectation{'s' if more > 1 else ''})" if more > 0 else "")
    return text[:limit]


def rejection_record(
    run_id: str, source: str, year: int, stage: str, files: list[dict], reason: str, failed: list[str]
) -> dict:
    return {
        "run_id": run_id,
        "source": source,
        "release_year": int(year),
        "rejected_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "stage": stage,
        "files": json.dumps([{"source": f["source"], "sha256": f["sha256"]} for f in files]),
        "reason": reason,
        "failed_expectations": json.dumps(failed),
    }


__all__ = ["catalog_file_globs", "ge_gate_on_staged", "one_line_reason", "read_staged", "rejection_record",
           "validate_staged"]
