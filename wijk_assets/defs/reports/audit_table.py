"""The audit table ``audit.audit_trail``, kept up to date from the Dagster instance (rows: :mod:`.audit`).

Written from the instance's whole history, the trail cost a refresh time in proportion to every run
ever made (one event-log query per run and per asset); a municipality's instance only grows. So it is
extended: each update adds the materialisations since the last one, and writes again the rows of runs
that had not ended then. The stored rows stay, in one transaction with the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster import AssetKey, DagsterInstance

from wijk_assets.defs.reports.audit import AUDIT_COLUMNS, audit_trail_rows

# The table's column types: declared, not inferred from a frame (a frame's object column of True/False/None
# became VARCHAR 'True'/'False': DuckDB casts it back in SQL, but a pandas reader's ``== False`` never
# matched, and so the asset's own count of materialisations with failed checks was always 0).
AUDIT_SQL_TYPES = {
    "asset_key": "VARCHAR", "partition": "VARCHAR", "run_id": "VARCHAR", "timestamp": "TIMESTAMPTZ",
    "storage_id": "BIGINT", "code_version": "VARCHAR", "data_version": "VARCHAR", "input_data_versions": "VARCHAR",
    "source_sha256": "VARCHAR", "row_count": "BIGINT", "checks": "VARCHAR", "n_checks": "BIGINT",
    "n_checks_failed": "BIGINT", "checks_passed": "BOOLEAN", "run_ended": "BOOLEAN",
}
if list(AUDIT_SQL_TYPES) != AUDIT_COLUMNS:  # a column added to one list only would fail every update
    raise RuntimeError("AUDIT_SQL_TYPES must declare exactly the AUDIT_COLUMNS, in their order")
AUDIT_TABLE = "audit.audit_trail"


@dataclass(frozen=True)
class AuditUpdate:
    rows: int  # rows in the table after the update
    written: int  # rows this update wrote (new materialisations, and rows of runs that had not ended)
    mode: str  # "appended", or "rebuilt: <why>"


def _why_rebuild(instance: DagsterInstance, con, table: str) -> str | None:
    """Why the stored trail cannot be extended (None: it can): it is missing, has other columns, or its
    latest row is not in this instance's event log (written from another Dagster instance, or that run
    was deleted). Rows of runs deleted earlier, or of an asset whose history was wiped, stay."""
    from wijk_assets.lib.warehouse import table_exists

    if not table_exists(con, table):
        return "no trail yet"
    schema, name = table.split(".", 1)
    declared = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position", [schema, name]).fetchall()
    if [c for c, _ in declared] != AUDIT_COLUMNS or dict(declared)["checks_passed"] != "BOOLEAN":
        return "the stored trail has other columns or types (an older version wrote it)"
    latest = con.execute(f"SELECT asset_key, storage_id, run_id FROM {table} ORDER BY storage_id DESC LIMIT 1").fetchall()
    if latest:
        asset_key, storage_id, run_id = latest[0]
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=AssetKey.from_user_string(asset_key), storage_ids=[int(storage_id)]), limit=1
        ).records
        if not records or records[0].run_id != run_id:
            return f"its latest row ({asset_key}, run {run_id}) is not in this Dagster instance's event log"
    return None


def update_audit_table(instance: DagsterInstance, con, table: str = AUDIT_TABLE, *,
                       limit_per_asset: int = 10_000) -> AuditUpdate:
    """Bring the audit table up to date with the instance: add the materialisations since its last
    update, and write again the rows of runs that had not ended then (their check outcomes may have been
    incomplete). One transaction; the cost follows what is new, not the instance's whole history.

    The stored rows are kept, so a run deleted from the instance later stays in the trail. When the table
    cannot be extended (:func:`_why_rebuild`), it is written from the instance's whole history, as
    :func:`wijk_assets.defs.reports.audit.audit_trail_rows` gives it.
    """
    from wijk_assets.lib.warehouse import quote_ident

    reason = _why_rebuild(instance, con, table)
    if reason is None:
        stored = {
            key: (int(last), None if first_open is None else int(first_open))
            for key, last, first_open in con.execute(
                f"SELECT asset_key, max(storage_id), min(storage_id) FILTER (WHERE NOT run_ended) FROM {table} "
                "GROUP BY asset_key").fetchall()
        }
    else:
        stored = {}
    rewrite: dict[str, int] = {}  # asset key -> rows after this storage id are written again
    after: dict[str, int] = {}
    for name, (last, first_open) in stored.items():
        after[name] = last
        if first_open is not None:
            after[name] = rewrite[name] = first_open - 1
    frame = audit_trail_rows(instance, limit_per_asset=limit_per_asset, after=after)
    schema = table.split(".", 1)[0]
    columns = ", ".join(f"{quote_ident(c)} {t}" for c, t in AUDIT_SQL_TYPES.items())
    # on a cursor of its own: ``register`` refuses a connection with an unfetched result from a read above
    with con.cursor() as cur:
        cur.register("__audit_rows", frame)
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
            if reason is not None:
                cur.execute(f"CREATE OR REPLACE TABLE {table} ({columns})")
            for name, after in rewrite.items():
                cur.execute(f"DELETE FROM {table} WHERE asset_key = ? AND storage_id > ?", [name, after])
            cur.execute(f"INSERT INTO {table} SELECT {', '.join(quote_ident(c) for c in AUDIT_COLUMNS)} "
                        f"FROM __audit_rows ORDER BY asset_key, storage_id")
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
    total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return AuditUpdate(rows=int(total), written=len(frame), mode="appended" if reason is None else f"rebuilt: {reason}")
