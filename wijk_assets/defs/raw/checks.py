"""Gate 1: a blocking Great Expectations check on every raw table (``raw.<source>`` in DuckDB).

``raw_gate_check(source)`` returns a Dagster ``@asset_check`` named ``ge_gate_<source>`` that reads the
raw table read-only, runs ``suites/raw_<source>.json`` through :mod:`wijk_assets.lib.quality.ge_runner` and
returns an ``AssetCheckResult`` (severity ERROR) whose metadata names the failed expectations, their
columns, failing values and up to 10 failing rows (area_code, measure_key, source_file, source_row).
Because the check is ``blocking=True``, dbt staging and everything downstream do not run in the same
run when it fails.

Which rows are validated. The raw assets are partitioned by release year (dynamic partitions). The
check itself is *not* partitioned (``partitions_def`` on asset checks is a preview feature in dagster
1.13), but in dagster 1.13 an unpartitioned check that runs in a partitioned run still sees the run's
partition: ``context.has_partition_key`` / ``context.partition_key`` (taken from the run's
``dagster/partition`` tag) work - verified against the installed dagster source and in the tests. So:

- in a run that materialises partition 2020, the check validates ``release_year = 2020`` only;
- in a single-run backfill over a key range it validates the years in that range;
- run on its own (no partition, e.g. "Execute check" in the UI) it validates the whole table, one
  release year at a time (each year is a separate GE batch and loaded separately, so memory stays at
  one year's rows).

Wiring (in ``definitions.py``)::

    from wijk_assets.defs.raw.checks import raw_gate_checks
    dg.Definitions(assets=[*raw_assets, ...], asset_checks=raw_gate_checks(), resources={"duckdb": ...})

This module deliberately has no ``from __future__ import annotations``: Dagster inspects the check
function's ``context``/resource annotations at definition time and rejects string annotations.
"""

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from wijk_assets.lib.quality.ge_runner import GateResult, load_suite, suite_path, validate_frame
from wijk_assets.defs.resources import DUCKDB_POOL, WarehouseResource  # shared pool: no reader holds the file while a writer needs it
from wijk_assets.lib.warehouse import connect



def raw_table(source: str) -> str:
    return f"raw.{source}"


def raw_suite_name(source: str) -> str:
    return f"raw_{source}"


def _table_exists(con, table: str) -> bool:
    schema, name = table.split(".", 1)
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def _years_and_nulls(con, table: str) -> tuple[list[int], int]:
    rows = con.execute(
        f"SELECT release_year, count(*) FROM {table} GROUP BY 1 ORDER BY 1 NULLS LAST"
    ).fetchall()
    years = [int(r[0]) for r in rows if r[0] is not None]
    nulls = sum(int(r[1]) for r in rows if r[0] is None)
    return years, nulls


def table_years(path: str | Path, table: str) -> list[int]:
    """Release years present in a raw table ([] when the table does not exist)."""
    with connect(path, read_only=True) as con:
        return _years_and_nulls(con, table)[0] if _table_exists(con, table) else []


def read_raw_year(path: str | Path, table: str, year: int) -> pd.DataFrame:
    """One release year of a raw table as pandas, in its own short read-only connection.

    Text comes back as ``category`` (Arrow dictionary encoding): a national RIVM year is ~1.9M rows
    x 14 columns, which as Python strings would take several GB.
    """
    with connect(path, read_only=True) as con:
        rel = con.sql(f"SELECT * FROM {table} WHERE release_year = $1", params=[int(year)])
        return rel.to_arrow_table().to_pandas(strings_to_categorical=True)


def combine_results(suite: str, results: Iterable[GateResult]) -> GateResult:
    """Merge per-year GateResults into one (success = all blocking expectations passed everywhere)."""
    results = list(results)
    combined: list[dict] = []
    for result in results:
        combined.extend(result.results)
    combined.sort(key=lambda r: (r["success"], not r["blocking"]))
    return GateResult(
        suite=suite,
        success=all(r.success for r in results),
        results=combined,
        rows=sum(r.rows for r in results),
        batches=[b for r in results for b in r.batches],
        runtime_seconds=sum(r.runtime_seconds for r in results),
    )


def _failure(suite: str, expectation: str, why: str, batch: str | None = None, **extra) -> GateResult:
    return GateResult(
        suite=suite,
        success=False,
        results=[
            {
                "expectation": expectation,
                "column": None,
                "batch": batch,
                "success": False,
                "blocking": True,
                "unexpected_count": None,
                "unexpected_percent": None,
                "sample": [],
                "sample_rows": [],
                "missing": None,
                "observed_value": extra.get("observed_value"),
                "why": why,
                "exception": None,
            }
        ],
    )


def validate_raw_table(
    path: str | Path,
    source: str,
    years: Iterable[int] | None = None,
    *,
    suite: dict | str | None = None,
    strict: bool = True,
) -> GateResult:
    """Validate ``raw.<source>`` in the DuckDB file at ``path`` with its suite, year by year.

    ``years=None`` validates every release year in the table. With ``strict`` a year asked for but
    absent fails the gate; otherwise absent years are skipped. A missing table, or rows without a
    release year, fail the gate with a plain message.
    """
    started = time.perf_counter()
    table = raw_table(source)
    spec = load_suite(suite or raw_suite_name(source)) if not isinstance(suite, dict) else suite
    name = spec["name"]
    with connect(path, read_only=True) as con:
        exists = _table_exists(con, table)
        present, null_years = _years_and_nulls(con, table) if exists else ([], 0)
    if not exists:
        return _failure(
            name,
            "table_exists",
            f"{table} does not exist in {path}: materialise the raw asset before its gate runs",
        )
    wanted = sorted(set(int(y) for y in years)) if years is not None else present
    if not strict:
        wanted = [y for y in wanted if y in present]
    parts: list[GateResult] = []
    if years is None and null_years:
        parts.append(
            _failure(
                name,
                "expect_column_values_to_not_be_null",
                "rows without release_year cannot belong to any partition",
                observed_value=f"{null_years} rows with release_year NULL",
            )
        )
    if not wanted:
        parts.append(_failure(name, "table_not_empty", f"{table} holds no release year"))
    for year in wanted:
        if year not in present:
            parts.append(
                _failure(
                    name,
                    "partition_has_rows",
                    f"{table} has no rows for release_year {year}, which this run was to validate",
                    batch=f"release_year={year}",
                )
            )
            continue
        frame = read_raw_year(path, table, year)
        parts.append(validate_frame(frame, spec))
        del frame
    result = combine_results(name, parts)
    result.runtime_seconds = time.perf_counter() - started
    return result


def _years_in_scope(context: dg.AssetCheckExecutionContext) -> tuple[list[int] | None, bool]:
    """(release years the current run wrote, strict) - ``(None, False)`` means validate everything.

    dagster 1.13 exposes the run's partition on an unpartitioned check in a partitioned run
    (``has_partition_key``/``partition_key``, from the run's ``dagster/partition`` tag). A single key
    is strict (that year must be in the table); a key range (single-run backfill) is not: only the
    years of the range that exist are validated, since dynamic keys need not be consecutive.
    """
    try:
        if context.has_partition_key:
            return _as_years([context.partition_key]), True
        if context.has_partition_key_range:
            key_range = context.partition_key_range
            start, end = sorted((int(key_range.start), int(key_range.end)))
            return list(range(start, end + 1)), False
    except Exception:  # noqa: BLE001 - no usable partition information: fall back to the tag
        pass
    tag = context.run.tags.get("dagster/partition") if context.run else None
    if tag:
        return _as_years([tag]), True
    return None, False


def _as_years(keys: list[str]) -> list[int] | None:
    try:
        return [int(k) for k in keys]
    except (TypeError, ValueError):
        return None  # not a year-keyed partition: validate the whole table


def gate_metadata(result: GateResult) -> dict[str, Any]:
    """Dagster metadata for a GateResult: text for the verdict, JSON for the details."""
    return gate_metadata_from_dict(result.to_metadata())


def gate_metadata_from_dict(meta: dict) -> dict[str, Any]:
    """:func:`gate_metadata` from ``GateResult.to_metadata()`` (e.g. as stored by the raw asset)."""
    failures = [f for f in meta["failed"] if f.get("blocking")]
    warnings = [f for f in meta["failed"] if not f.get("blocking")]
    return {
        "suite": dg.MetadataValue.text(meta["suite"]),
        "summary": dg.MetadataValue.text(meta["summary"][:4000]),
        "failed_expectations": dg.MetadataValue.json(meta["failed_expectations"]),
        "failures": dg.MetadataValue.json(failures),
        "warnings": dg.MetadataValue.json(warnings),
        "passed_expectations": dg.MetadataValue.json(meta["passed"]),
        "batches": dg.MetadataValue.json(meta["batches"]),
        "rows_validated": dg.MetadataValue.int(int(meta["rows"])),
        "expectation_results": dg.MetadataValue.int(int(meta["evaluated"])),
        "runtime_seconds": dg.MetadataValue.float(float(meta["runtime_seconds"])),
    }


def raw_gate_check(
    source_name: str,
    asset_key: dg.AssetKey | str | list[str] | None = None,
    duckdb_path_getter: Callable[[WarehouseResource], str] | None = None,
    *,
    suite_name: str | None = None,
    pool: str | None = DUCKDB_POOL,
) -> dg.AssetChecksDefinition:
    """The blocking GE gate ``ge_gate_<source_name>`` on the raw asset (default key ``raw/<source>``).

    ``duckdb_path_getter`` turns the ``duckdb`` resource into the database path (default: its
    ``.path``). The check opens the file read-only.
    """
    key = dg.AssetKey(["raw", source_name]) if asset_key is None else dg.AssetKey.from_coercible(asset_key)
    suite = suite_name or raw_suite_name(source_name)
    spec = load_suite(suite)  # fail at definition time, not at run time, when a suite is broken
    get_path = duckdb_path_getter or (lambda resource: resource.path)

    @dg.asset_check(
        asset=key,
        name=f"ge_gate_{source_name}",
        blocking=True,
        pool=pool,
        description=(
            f"Gate 1 (Great Expectations suite {suite}.json, {len(spec['expectations'])} expectations): "
            f"{spec.get('description', '')} Fails with severity ERROR and blocks downstream assets."
        ),
        metadata={"suite_file": str(suite_path(suite).name)},
    )
    def _ge_gate(context: dg.AssetCheckExecutionContext, duckdb: WarehouseResource) -> dg.AssetCheckResult:
        years, strict = _years_in_scope(context)
        path = get_path(duckdb)
        reused = _validated_before_swap(context, key, years)
        if reused is not None:
            context.log.info(f"GE gate {suite}: {reused['summary'][:500]} (validated before the swap in this run)")
            return dg.AssetCheckResult(
                passed=bool(reused["success"]),
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    **gate_metadata_from_dict(reused),
                    "release_years": dg.MetadataValue.json(years),
                    "validated": dg.MetadataValue.text("before the swap, on the rows now live (same run)"),
                },
                description=str(reused["summary"])[:1000],
            )
        context.log.info(
            f"GE gate {suite} on {raw_table(source_name)} in {path}: "
            f"{'release years ' + ', '.join(map(str, years)) if years else 'all release years'}"
        )
        result = validate_raw_table(path, source_name, years, suite=spec, strict=strict)
        (context.log.info if result.success else context.log.error)(result.summary()[:2000])
        return dg.AssetCheckResult(
            passed=result.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={**gate_metadata(result), "release_years": dg.MetadataValue.json(years or "all")},
            description=result.summary()[:1000],
        )

    return _ge_gate


GATE_RESULT_METADATA = "gate_1_result"  # the raw asset's before-swap GateResult.to_metadata()


def _validated_before_swap(context, key: dg.AssetKey, years: list[int] | None) -> dict | None:
    """The gate result the raw asset recorded in THIS run for the one partition in scope, if any.

    The raw asset validates the staged partition with the same suite (plus plausibility rules) and
    swaps exactly those rows in, in one transaction; validating the live partition again in the same
    run would repeat ~20 s of GE on a national RIVM year for the same answer. Anything else (no
    partition, a key range, a materialisation from another run or without the result) validates the
    live table as before.
    """
    if not years or len(years) != 1 or context.run is None:
        return None
    try:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[str(years[0])]), limit=1
        ).records
    except Exception:  # noqa: BLE001 - fall back on validating the table
        return None
    if not records or records[0].run_id != context.run.run_id:
        return None
    materialization = records[0].asset_materialization
    value = (materialization.metadata or {}).get(GATE_RESULT_METADATA) if materialization else None
    stored = getattr(value, "value", None)
    return stored if isinstance(stored, dict) and "success" in stored and "summary" in stored else None


def raw_gate_checks(
    sources: Iterable[str] | None = None,
    duckdb_path_getter: Callable[[WarehouseResource], str] | None = None,
) -> list[dg.AssetChecksDefinition]:
    """One gate per catalogued source that has a suite (all five raw tables)."""
    from wijk_assets.lib.sources.catalog import source_names

    names = list(sources) if sources is not None else source_names()
    return [
        raw_gate_check(name, duckdb_path_getter=duckdb_path_getter)
        for name in names
        if suite_path(raw_suite_name(name)).is_file()
    ]


__all__ = [
    "combine_results",
    "gate_metadata",
    "raw_gate_check",
    "raw_gate_checks",
    "raw_suite_name",
    "raw_table",
    "read_raw_year",
    "table_years",
    "validate_raw_table",
]

