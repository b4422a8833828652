"""Validate, then swap, for the relations a dbt invocation rebuilds. No Dagster.

dbt replaces a model in place, and its tests and our Great Expectations gate run afterwards: a failing
check would find the new table already live, and the good one gone. So a build goes like this:

1. :func:`set_aside` renames every relation the invocation is about to rebuild to ``<name>__previous``
   (a catalog operation: nothing is copied), in one transaction;
2. dbt builds the new relations under their own names, and the gates validate them there;
3. everything passed -> :func:`commit` drops the ``__previous`` relations;
   dbt failed or a gate refused -> :func:`reject`, in one transaction: each new *table* is copied to
   ``quarantine.<schema>__<name>`` for inspection, the new relations are dropped, the previous ones get
   their names back, and the rejection is recorded in ``quarantine.build_rejections``.

Between 1 and 3 the previous relations are not under their names; the step holds the warehouse pool,
so no other step reads in that time. A build that was killed in between leaves ``__previous``
relations behind: :func:`restore_interrupted` (called by :func:`set_aside`) puts them back first, since
the interrupted build was never validated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

import pandas as pd

from wijk_assets.lib.warehouse import QUARANTINE_SCHEMA, add_missing_columns, ensure_table, quote_ident

PREVIOUS_SUFFIX = "__previous"
BUILD_REJECTIONS_TABLE = f"{QUARANTINE_SCHEMA}.build_rejections"
BUILD_REJECTION_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "step": "VARCHAR",  # the Dagster step that built the relations (dbt_features, publish__area_explanations …)
    "asset_keys": "VARCHAR",  # JSON list of the asset keys ("marts/fct_area_features") the step would have materialised
    "rejected_at": "TIMESTAMP",
    "stage": "VARCHAR",  # "dbt" (a model or dbt test failed), "gate_2" (Great Expectations), "publish_guard"
    "reason": "VARCHAR",  # one paragraph, as the run reported it
    "failed_expectations": "VARCHAR",  # JSON list of "expect_x(column)" labels (gate_2)
    "relations": "VARCHAR",  # JSON list of "schema.name" the build would have replaced
    "quarantined": "VARCHAR",  # JSON object "schema.name" -> quarantine table holding the rejected rows
}


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str

    @property
    def sql(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def previous(self) -> Relation:
        return Relation(self.schema, self.name + PREVIOUS_SUFFIX)

    @property
    def quarantine(self) -> Relation:
        return Relation(QUARANTINE_SCHEMA, f"{self.schema}__{self.name}")

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def kind_of(con: duckdb.DuckDBPyConnection, relation: Relation) -> str | None:
    """``"TABLE"``, ``"VIEW"`` or None when the relation does not exist."""
    row = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [relation.schema, relation.name],
    ).fetchone()
    if row is None:
        return None
    return "VIEW" if row[0] == "VIEW" else "TABLE"


def _drop(con: duckdb.DuckDBPyConnection, relation: Relation) -> None:
    kind = kind_of(con, relation)
    if kind is not None:
        con.execute(f"DROP {kind} {relation.sql}")


def _rename(con: duckdb.DuckDBPyConnection, relation: Relation, new_name: str) -> None:
    con.execute(f"ALTER {kind_of(con, relation)} {relation.sql} RENAME TO {quote_ident(new_name)}")


def _in_transaction(con: duckdb.DuckDBPyConnection, work) -> object:
    con.execute("BEGIN TRANSACTION")
    try:
        result = work()
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return result


def set_aside_now(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """The relations whose ``<name>__previous`` exists: set aside by a build that has not finished (or
    was killed; ``wijk-assets status`` lists them)."""
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE ? ESCAPE '\\' "
        "ORDER BY 1, 2",
        ["%" + PREVIOUS_SUFFIX.replace("_", "\\_")],
    ).fetchall()
    return [Relation(schema, name[: -len(PREVIOUS_SUFFIX)]) for schema, name in rows]


def restore_interrupted(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """Give every ``<name>__previous`` relation its name back (the build that set it aside never finished,
    so what stands under the name now was never validated). Returns the relations restored."""
    restored = set_aside_now(con)

    def work():
        for relation in restored:
            _drop(con, relation)
            _rename(con, relation.previous, relation.name)

    if restored:
        _in_transaction(con, work)
    return restored


def set_aside(con: duckdb.DuckDBPyConnection, relations: list[Relation]) -> list[Relation]:
    """Rename the existing ones of ``relations`` to ``<name>__previous`` (one transaction); returns them."""
    restore_interrupted(con)
    existing = [r for r in relations if kind_of(con, r) is not None]

    def work():
        for relation in existing:
            _rename(con, relation, relation.previous.name)

    _in_transaction(con, work)
    return existing


def commit(con: duckdb.DuckDBPyConnection, relations: list[Relation]) -> None:
    """The new relations passed: drop the previous ones (one transaction)."""

    def work():
        for relation in relations:
            _drop(con, relation.previous)

    _in_transaction(con, work)


def reject(
    con: duckdb.DuckDBPyConnection,
    relations: list[Relation],
    *,
    run_id: str,
    step: str,
    stage: str,
    reason: str,
    asset_keys: list[str],
    failed_expectations: list[str] | None = None,
) -> dict[str, str]:
    """Put the previous relations back and keep the rejected tables in quarantine (one transaction).

    A rejected *view* is only dropped: it is a query over the tables, whose rejected versions are kept.
    ``quarantine.<schema>__<name>`` holds the latest rejected version of a table; which run it came from
    is in :data:`BUILD_REJECTIONS_TABLE`. Returns ``{"schema.name": quarantine table}``.
    """
    _prepare(con)
    kept: dict[str, str] = {}

    def work():
        for relation in relations:
            kind = kind_of(con, relation)
            if kind == "TABLE":
                con.execute(f"CREATE OR REPLACE TABLE {relation.quarantine.sql} AS SELECT * FROM {relation.sql}")
                kept[str(relation)] = str(relation.quarantine)
            if kind is not None:
                con.execute(f"DROP {kind} {relation.sql}")
            if kind_of(con, relation.previous) is not None:
                _rename(con, relation.previous, relation.name)
        _record(con, run_id=run_id, step=step, stage=stage, reason=reason, asset_keys=asset_keys,
                failed_expectations=failed_expectations, relations=[str(r) for r in relations], kept=kept)

    _in_transaction(con, work)
    return kept


def reject_frames(
    con: duckdb.DuckDBPyConnection,
    frames: dict[str, pd.DataFrame],
    *,
    run_id: str,
    step: str,
    stage: str,
    reason: str,
    asset_keys: list[str],
) -> dict[str, str]:
    """For a step that validates its tables before writing them: keep the refused frames (``{"schema.name":
    frame}``) in quarantine and record the rejection; the live tables are not touched (one transaction)."""
    _prepare(con)
    kept: dict[str, str] = {}

    def work():
        for name, frame in frames.items():
            target = Relation(*name.split(".", 1)).quarantine
            con.register("__refused", frame)
            try:
                con.execute(f"CREATE OR REPLACE TABLE {target.sql} AS SELECT * FROM __refused")
            finally:
                con.unregister("__refused")
            kept[name] = str(target)
        _record(con, run_id=run_id, step=step, stage=stage, reason=reason, asset_keys=asset_keys,
                failed_expectations=None, relations=list(frames), kept=kept)

    _in_transaction(con, work)
    return kept


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {QUARANTINE_SCHEMA}")
    ensure_table(con, BUILD_REJECTIONS_TABLE, BUILD_REJECTION_COLUMNS)
    add_missing_columns(con, BUILD_REJECTIONS_TABLE, BUILD_REJECTION_COLUMNS)


def _record(con, *, run_id, step, stage, reason, asset_keys, failed_expectations, relations, kept) -> None:
    record = {
        "run_id": run_id,
        "step": step,
        "asset_keys": json.dumps(sorted(asset_keys)),
        "rejected_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "stage": stage,
        "reason": reason,
        "failed_expectations": json.dumps(failed_expectations or []),
        "relations": json.dumps(relations),
        "quarantined": json.dumps(kept),
    }
    columns = list(BUILD_REJECTION_COLUMNS)
    con.execute(
        f"INSERT INTO {BUILD_REJECTIONS_TABLE} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
        [record[c] for c in columns],
    )


def latest_rejections(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The latest rejection per step (newest first), or none when nothing was ever rejected."""
    schema, name = BUILD_REJECTIONS_TABLE.split(".")
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, name]
    ).fetchone()[0]
    if not exists:
        return []
    frame = con.execute(
        f"SELECT * FROM {BUILD_REJECTIONS_TABLE} QUALIFY row_number() OVER (PARTITION BY step ORDER BY rejected_at DESC) = 1 "
        "ORDER BY rejected_at DESC"
    ).df()
    return frame.to_dict("records")


__all__ = [
    "BUILD_REJECTIONS_TABLE",
    "Relation",
    "commit",
    "kind_of",
    "latest_rejections",
    "reject",
    "reject_frames",
    "restore_interrupted",
    "set_aside",
    "set_aside_now",
]
