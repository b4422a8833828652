"""Content versions of warehouse tables: same content -> same version, whatever the row order or float noise.

A data version that changes when nothing changed retrains every model downstream, so the version of a
table is a hash of *what it holds*, made canonical first:

* **row order** does not count: each row is hashed on its own and the row hashes are sorted before the
  table hash is taken;
* **float noise** does not count: DOUBLE/FLOAT values are written with :data:`SIGNIFICANT_DIGITS`
  significant digits before hashing. The source figures carry at most 6-7 significant digits (CBS
  counts, percentages with one decimal, Leefbaarometer scores with 4-6 decimals), so 12 digits keep
  every real difference and drop the ~1e-14 relative noise that parallel floating-point aggregation can
  leave. (The marts are also built deterministically, see the dbt models; this is the second line.)
* **the schema** counts: column names and types are part of the hash, so a renamed, added or retyped
  column changes the version even when the canonical text of the values would not.

Pure: takes a DuckDB connection, no Dagster.
"""

from __future__ import annotations

SIGNIFICANT_DIGITS = 12
_FLOAT_TYPES = {"DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def canonical_row_sql(columns: list[tuple[str, str]]) -> str:
    """SQL text of one row in canonical form: ``name=value`` per column, floats to 12 significant digits."""
    parts = []
    for name, data_type in columns:
        col = _quote(name)
        if data_type.upper() in _FLOAT_TYPES:
            value = (
                f"CASE WHEN {col} IS NULL THEN NULL WHEN isfinite({col}) "
                f"THEN printf('%.{SIGNIFICANT_DIGITS}g', {col}) ELSE CAST({col} AS VARCHAR) END"
            )
        else:
            value = f"CAST({col} AS VARCHAR)"
        label = name.replace("'", "''")
        parts.append(f"'{label}=' || coalesce({value}, '\\N')")
    return "concat_ws(chr(31), " + ", ".join(parts) + ")" if parts else "''"


def table_columns(con, schema: str, name: str) -> list[tuple[str, str]]:
    return [
        (c, t) for c, t in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [schema, name],
        ).fetchall()
    ]


def content_version(con, schema: str, name: str) -> str:
    """``<rows>-<sha256 prefix>`` over the table's schema and its sorted canonical row hashes."""
    columns = table_columns(con, schema, name)
    if not columns:
        raise ValueError(f"table {schema}.{name} not found (or has no columns)")
    schema_text = ";".join(f"{c}:{t}" for c, t in columns).replace("'", "''")
    rows, digest = con.execute(
        f"SELECT count(*), sha256('{schema_text}' || coalesce(string_agg(h, '' ORDER BY h), '')) "
        f"FROM (SELECT md5({canonical_row_sql(columns)}) AS h FROM {_quote(schema)}.{_quote(name)})"
    ).fetchone()
    return f"{rows}-{digest[:32]}"


__all__ = ["SIGNIFICANT_DIGITS", "canonical_row_sql", "content_version", "table_columns"]
