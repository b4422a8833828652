"""Raw assets: one DuckDB table ``raw.<source>`` per catalogued source, partitioned by release year.

Validate, then swap: a partition is written to ``raw_staging.<source>`` first, gate 1 (the source's
Great Expectations suite plus its plausibility rules, :mod:`wijk_assets.lib.quality.staged_gate`) runs on
those rows, and only a passing partition replaces the live one, in one transaction. A file that fails to
parse, or a partition gate 1 refuses, makes the asset *fail*: the live rows, the data version and the
last materialisation stay the previous ones, refused rows are kept in ``quarantine.<source>`` and every
refusal is listed in ``quarantine.rejections`` (run id, file, one-line reason). Cleaning is not done
here: codes, padding and suppression markers stay verbatim; the dbt staging layer interprets them.

In a full build (``wijk-assets materialize``) the large partitions (RIVM years, wijk boundaries) are read,
staged and put through gate 1's GE suite by a worker process ahead of their run (:mod:`wijk_assets.lib.prestage`);
their run copies the staged rows in and runs the rest of gate 1 and the swap here, as for any partition.
"""


import hashlib

import dagster as dg

from wijk_assets.lib.sources.catalog import load_catalog
from wijk_assets.lib.quality.staged_gate import one_line_reason, rejection_record, validate_staged
from wijk_assets.defs.resources import DUCKDB_POOL, CbsSourceResource, WarehouseResource
from wijk_assets.keys import raw_asset_key
from wijk_assets.lib.sources.base import READER_VERSION, RAW_COLUMNS, sha256_file
from wijk_assets.lib import prestage
from wijk_assets.lib.sources.summary import ExtractSummary
from wijk_assets.lib.warehouse import (
    quarantine_partition,
    quarantine_table,
    swap_in_partition,
    table_schema,
)



def release_year_partitions(source: str) -> dg.DynamicPartitionsDefinition:
    """One dynamic partition set per source: sources publish different years."""
    return dg.DynamicPartitionsDefinition(name=f"{source}_release_year")


def raw_data_version(sha256s: list[str], params: list[str] | None = None) -> str:
    """Changes when, and only when, the input bytes, the reader, or a setting the reader applied change.

    ``params`` are the readers' ``version_params`` (e.g. the survey's minimum number of respondents),
    serialised; without them the version depends on bytes and reader only, as before.
    """
    digest = hashlib.sha256(READER_VERSION.encode())
    for sha in sorted(sha256s):
        digest.update(sha.encode())
    for param in sorted(params or []):
        digest.update(param.encode())
    return digest.hexdigest()[:16]


def withdrawn_metadata(gate) -> dict:
    """``withdrawn_files``: the files whose declared withdrawal let gate 1 accept a reload without them
    (their rows left the live partition with this materialisation); ``replaced_files``: live files this
    load replaced by files of the same kind under other names; nothing when neither happened."""
    observed = [r.get("observed_value") or {} for r in gate.results
                if r.get("expectation") == "files_of_live_partition_delivered"]
    gone = [o["file"] for o in observed if o.get("withdrawal_declared")]
    replaced = {o["file"]: o["replaced_by"] for o in observed if o.get("replaced_by")}
    return {**({"withdrawn_files": dg.MetadataValue.json(gone)} if gone else {}),
            **({"replaced_files": dg.MetadataValue.json(replaced)} if replaced else {})}


def _reject_gated(context, con, source: str, table: str, year: int, summary: ExtractSummary, gate) -> None:
    """Gate 1 refused the staged partition: quarantine its rows, record why, fail the asset."""
    from wijk_assets.defs.raw.checks import gate_metadata

    reason = one_line_reason(gate)
    record = rejection_record(
        context.run.run_id, source, year, "gate_1", summary.extract_files(), reason, gate.failed_expectations()
    )
    moved = quarantine_partition(con, table, RAW_COLUMNS, record)
    files = ", ".join(f["source"] for f in summary.files)
    context.log.error(f"{table} {year}: gate 1 refused {files}: {gate.summary()[:2000]}")
    missing = [f for r in gate.failures if r["expectation"] == "files_of_live_partition_delivered"
               for f in r.get("missing") or []]
    hint = (f" Put {', '.join(missing)} back in the data folder, or, when the publisher withdrew it, declare that "
            f"with WIJK_WITHDRAWN_FILES={','.join(missing)} and load again." if missing else "")
    raise dg.Failure(
        description=(
            f"{table} release year {year} refused by gate 1 before it went live ({files}): {reason}. "
            f"The previous rows stay live; the {moved} refused rows are in {quarantine_table(table)} "
            f"(run_id = '{context.run.run_id}').{hint}"
        ),
        metadata={
            **gate_metadata(gate),
            "release_year": year,
            "files": dg.MetadataValue.json(summary.extract_files()),
            "quarantine_table": quarantine_table(table),
            "quarantined_rows": moved,
            "run_id": context.run.run_id,
            "reason": reason,
        },
        allow_retries=False,
    )


def _reject_unreadable(context, duckdb, cbs, source: str, table: str, year: int, error: Exception) -> None:
    """A reader refused a file: record the rejection (nothing was staged) so ``status`` can show it."""
    files = []
    if cbs.mode != "live":
        try:
            files = [
                {"source": f.relative_path, "sha256": sha256_file(f.path)}
                for f in cbs.source_files(source)
                if f.filename_year in (None, year)
            ]
        except Exception:  # noqa: BLE001 - listing is best effort; the reader's error is what matters
            files = []
    reason = " ".join(str(error).split())[:300]
    record = rejection_record(context.run.run_id, source, year, "read", files, reason, [])
    try:
        with duckdb.connect() as con:
            quarantine_partition(con, table, RAW_COLUMNS, record, move_staged=False)
    except Exception as write_error:  # noqa: BLE001 - never hide the reader's error behind this one
        context.log.warning(f"could not record the rejection of {table} {year}: {write_error}")


def _read_extracts(context, duckdb, cbs, source: str, table: str, year: int) -> list:
    """Read the partition's files in this run (a partition not prepared ahead)."""
    try:
        extracts = cbs.extracts(source, year)
    except Exception as error:  # the reader refused a file: record why, keep the live partition
        _reject_unreadable(context, duckdb, cbs, source, table, year, error)
        raise
    if not extracts:
        raise dg.Failure(
            f"source {source!r} has nothing for release year {year} "
            f"({'live CBS catalog' if cbs.mode == 'live' else f'data folder {cbs.data_dir}'}); "
            "the partition was not changed"
        )
    return extracts


def build_raw_asset(source: str) -> dg.AssetsDefinition:
    spec = load_catalog()[source]
    table = f"raw.{source}"

    @dg.asset(
        key=raw_asset_key(source),
        partitions_def=release_year_partitions(source),
        group_name="raw",
        code_version=READER_VERSION,
        pool=DUCKDB_POOL,
        kinds={"duckdb", "python"},
        description=(
            f"{spec.title} ({spec.publisher}; {spec.licence}). Long layout, one row per area x "
            "measure with the cell text verbatim, plus provenance (file, sha256, row, retrieved-at)."
        ),
        metadata={"dagster/table_name": table, "source_levels": ", ".join(spec.levels)},
    )
    def _raw_asset(
        context: dg.AssetExecutionContext, duckdb: WarehouseResource, cbs: CbsSourceResource
    ) -> dg.MaterializeResult:
        year = int(context.partition_key)
        partition = {"release_year": year}
        prepared = prestage.take(source, year, cbs)  # read, staged and GE-checked ahead by a worker (lib.prestage)
        extracts = None if prepared is not None else _read_extracts(context, duckdb, cbs, source, table, year)
        with duckdb.connect() as con:
            if prepared is not None:
                staged = prestage.stage_prepared(con, prepared, table)
                summary, ge_result = prepared.summary, prepared.ge_result
                context.log.info(f"{table} {year}: read, staged and checked by GE in a worker process ahead of "
                                 f"this run ({prepared.seconds:.1f} s); files {', '.join(p for p, _ in prepared.listing)}")
            else:
                staged, _, summary = prestage.stage_extracts(con, extracts, table, year)
                ge_result = None
            gate = validate_staged(con, source, year, staged, table, withdrawn=cbs.withdrawn_files, ge_result=ge_result)
            if not gate.success:
                _reject_gated(context, con, source, table, year, summary, gate)
            rows = swap_in_partition(con, table, RAW_COLUMNS, partition)
            schema = table_schema(con, table)
        files = summary.files
        context.log.info(f"{table} {year}: {rows} rows from {len(files)} file(s)")
        suppression = summary.suppression
        extra: dict[str, object] = {}
        if suppression is not None:
            context.log.info(f"{table} {year}: suppressed cells per reason {suppression['by_reason']}")
            extra["suppressed_cells"] = dg.MetadataValue.json(suppression)
            for reason, n in sorted(suppression["by_reason"].items()):
                extra[f"n_suppressed_{reason}"] = int(n)
            threshold = suppression.get("min_respondents")
            if isinstance(threshold, int):
                extra["min_respondents"] = threshold
            elif threshold is not None:  # files read with different thresholds in one run
                extra["min_respondents"] = dg.MetadataValue.json(threshold)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(name=n, type=t) for n, t in schema]
                ),
                "dagster/table_name": table,
                "release_year": year,
                "sources": dg.MetadataValue.json(files),
                "source_sha256": ", ".join(f["sha256"] for f in files),
                "cbs_table_ids": ", ".join(sorted({f["cbs_table_id"] for f in files if f["cbs_table_id"]}))
                or "n/a",
                "mode": cbs.mode,
                "reader_version": READER_VERSION,
                "retrieved_at": str(summary.retrieved_at),
                "areas_per_level": dg.MetadataValue.json(summary.levels),
                "measures": summary.n_measures,
                "prepared_ahead": prepared is not None,
                "gate_1_before_swap": dg.MetadataValue.text(gate.summary()[:2000]),
                # read by the ge_gate_<source> check of the same run (raw_gates._validated_before_swap)
                "gate_1_result": dg.MetadataValue.json(gate.to_metadata()),
                **withdrawn_metadata(gate),
                **extra,
            },
            data_version=dg.DataVersion(
                raw_data_version([f["sha256"] for f in files], summary.version_params)
            ),
        )

    return _raw_asset


RAW_SOURCES = list(load_catalog())
raw_assets = [build_raw_asset(source) for source in RAW_SOURCES]
