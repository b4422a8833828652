"""Raw assets: one DuckDB table ``raw.<source>`` per catalogued source, partitioned by release year.

Validate, then swap: a partition is written to ``raw_staging.<source>`` first, gate 1 (the source's
Great Expectations suite plus its plausibility rules, :mod:`wijk_assets.lib.quality.staged_gate`) runs on
those rows, and only a passing partition replaces the live one, in one transaction. A file that fails to
parse, or a partition gate 1 refuses, makes the asset *fail*: the live rows, the data version and the
last materialisation stay the previous ones, refused rows are kept in ``quarantine.<source>`` and every
refusal is listed in ``quarantine.rejections`` (run id, file, one-line reason). Cleaning is not done
here: codes, padding and suppression markers stay verbatim; the dbt staging layer interprets them.
"""


import hashlib
import json

import dagster as dg
import pandas as pd

from wijk_assets.lib.sources.catalog import load_catalog
from wijk_assets.lib.quality.staged_gate import one_line_reason, rejection_record, validate_staged
from wijk_assets.defs.resources import DUCKDB_POOL, CbsSourceResource, WarehouseResource, raw_parts
from wijk_assets.keys import raw_asset_key
from wijk_assets.lib.sources.base import READER_VERSION, RAW_COLUMNS, sha256_file
from wijk_assets.lib.memory import release_free_memory
from wijk_assets.lib.warehouse import (
    quarantine_partition,
    quarantine_table,
    stage_partition,
    swap_in_partition,
    table_schema,
)



def release_year_partitions(source: str) -> dg.DynamicPartitionsDefinition:
    """One dynamic partition set per source: sources publish different years."""
    return dg.DynamicPartitionsDefinition(name=f"{source}_release_year")


def _level_counts(frame: pd.DataFrame) -> dict[str, int]:
    has_code = frame["area_code"].notna()
    # distinct codes first: a RIVM year repeats each of its ~17k codes on ~110 rows (1.9 M strips -> 17k)
    codes = frame.loc[has_code, "area_code"].drop_duplicates().astype(str).str.strip().drop_duplicates()
    prefix = codes.str[:2].map({"NL": "land", "GM": "gemeente", "WK": "wijk", "BU": "buurt"})
    counts = {k: int(v) for k, v in prefix.fillna("other").value_counts().sort_index().items()}
    if (~has_code).any() and "area_name" in frame:
        # areas named only (a municipality's own survey areas): counted by name
        counts["no_cbs_code"] = int(frame.loc[~has_code, "area_name"].nunique())
    return counts


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


def _version_params(extracts) -> list[str]:
    return sorted(
        {json.dumps(e.metadata["version_params"], sort_keys=True) for e in extracts if e.metadata.get("version_params")}
    )


def suppression_summary(extracts, year: int | None = None) -> dict | None:
    """Cells a reader blanked or found suppressed, per reason, over all extracts (None when no reader
    reports any). Readers report ``metadata["suppression"] = {"n_cells", "by_reason", ...}``, optionally
    ``"by_year": {"2023": {"n_cells", "by_reason"}}`` for files that feed several release years; the
    values of suppressed cells are never part of it."""
    reported = [e for e in extracts if isinstance(e.metadata.get("suppression"), dict)]
    if not reported:
        return None
    by_reason: dict[str, int] = {}
    per_file = []
    thresholds = set()
    for e in reported:
        supp = e.metadata["suppression"]
        if year is not None and str(year) in (supp.get("by_year") or {}):
            supp = {**supp, **supp["by_year"][str(year)]}
        for reason, n in (supp.get("by_reason") or {}).items():
            by_reason[reason] = by_reason.get(reason, 0) + int(n)
        if supp.get("min_respondents") is not None:
            thresholds.add(int(supp["min_respondents"]))
        per_file.append(
            {
                "source": e.source,
                "n_cells": int(supp.get("n_cells", 0)),
                "by_reason": {k: int(v) for k, v in (supp.get("by_reason") or {}).items()},
                "respondents_column": supp.get("respondents_column"),
            }
        )
    summary: dict = {
        "n_cells": sum(f["n_cells"] for f in per_file),
        "n_suppressed": sum(by_reason.values()),
        "by_reason": by_reason,
        "per_file": per_file,
    }
    if thresholds:
        summary["min_respondents"] = sorted(thresholds)[0] if len(thresholds) == 1 else sorted(thresholds)
    return summary


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


def _extract_files(extracts) -> list[dict]:
    return [{"source": e.source, "sha256": e.sha256} for e in extracts]


def _reject_gated(context, con, source: str, table: str, year: int, extracts, gate) -> None:
    """Gate 1 refused the staged partition: quarantine its rows, record why, fail the asset."""
    from wijk_assets.defs.raw.checks import gate_metadata

    reason = one_line_reason(gate)
    record = rejection_record(
        context.run.run_id, source, year, "gate_1", _extract_files(extracts), reason, gate.failed_expectations()
    )
    moved = quarantine_partition(con, table, RAW_COLUMNS, record)
    files = ", ".join(e.source for e in extracts)
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
            "files": dg.MetadataValue.json(_extract_files(extracts)),
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
        parts = raw_parts(extracts)
        retrieved_at = parts[0][1]["retrieved_at"]
        partition = {"release_year": year}
        # Everything the metadata needs from the frames, before they are released (below)
        files = [
            {
                "source": e.source,
                "sha256": e.sha256,
                "cbs_table_id": e.cbs_table_id or "",
                "rows": len(e.frame),
            }
            for e in extracts
        ]
        levels = _level_counts(pd.concat([e.frame[["area_code", "area_name"]] for e in extracts]))
        n_measures = len({k for e in extracts for k in e.frame["measure_key"].unique()})
        with duckdb.connect() as con:
            staged, _ = stage_partition(con, table, parts, RAW_COLUMNS, partition)
            # The rows now live in DuckDB's staging table; drop the reader's pandas copy before gate 1
            # reads the staged rows (a RIVM year is ~1.9 M rows: two copies at once were the run's peak).
            del parts
            for extract in extracts:
                extract.frame = extract.frame.iloc[0:0]
            release_free_memory()  # hand those pages back before gate 1 builds its own frame
            gate = validate_staged(con, source, year, staged, table, withdrawn=cbs.withdrawn_files)
            if not gate.success:
                _reject_gated(context, con, source, table, year, extracts, gate)
            rows = swap_in_partition(con, table, RAW_COLUMNS, partition)
            schema = table_schema(con, table)
        context.log.info(f"{table} {year}: {rows} rows from {len(files)} file(s)")
        suppression = suppression_summary(extracts, year)
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
                "retrieved_at": str(retrieved_at),
                "areas_per_level": dg.MetadataValue.json(levels),
                "measures": n_measures,
                "gate_1_before_swap": dg.MetadataValue.text(gate.summary()[:2000]),
                # read by the ge_gate_<source> check of the same run (raw_gates._validated_before_swap)
                "gate_1_result": dg.MetadataValue.json(gate.to_metadata()),
                **withdrawn_metadata(gate),
                **extra,
            },
            data_version=dg.DataVersion(
                raw_data_version([f["sha256"] for f in files], _version_params(extracts))
            ),
        )

    return _raw_asset


RAW_SOURCES = list(load_catalog())
raw_assets = [build_raw_asset(source) for source in RAW_SOURCES]
