"""Explanations once per model version: reuse the stored tables when nothing they are made of changed.

The explanation step re-runs whenever an upstream asset has new data (a KWB release adds feature rows
for a year no model is trained on, so the feature table changes while the model, its training rows and
its verdict stay the same). Its outputs are a function of: the model version (model and fold models),
gate 3's verdict on it, the training rows of the outcome (every column), the catalog's feature labels,
units and sources, the municipality in focus (metadata) and this code. :func:`inputs_version` hashes
exactly those, the rows and labels by digests computed in DuckDB before anything is loaded into pandas
(a refresh that keeps the explanations reads neither the mart nor the model files); when the latest materialisation of every explanation table carries the same version
and the tables still hold the rows it wrote, the step re-emits that materialisation's metadata instead
of recomputing SHAP values, intervals and rank ranges (~5 s per published outcome). The step still
materialises, so what reads the explanations (the published tables, the wijkbeeld) follows as before.
"""

from __future__ import annotations

import hashlib

import dagster as dg

from wijk_assets.defs.resources import WarehouseResource

INPUTS_VERSION_KEY = "explanation_inputs_version"


def training_rows_digest(con, outcome: str) -> str:
    """Digest of the outcome's training rows, every column (the rows the explanations are made from:
    ``marts.mart_wijk_training`` with a feature year and a value for ``outcome``), computed in DuckDB:
    the column names and types, and each row's hash, sorted (row order does not matter; the compute
    path checks the order against the model's out-of-fold table). ~0.15 s on the national mart, where
    reading the rows into pandas and hashing them there took ~1-1.5 s per published outcome on a refresh."""
    from wijk_assets.lib.content_version import exact_rows_digest
    from wijk_assets.lib.warehouse import quote_ident

    return exact_rows_digest(con, "marts", "mart_wijk_training",
                             f"feature_year IS NOT NULL AND {quote_ident(outcome)} IS NOT NULL")


def catalog_digest(con) -> str:
    """Digest of ``marts.feature_catalog``'s labels, units and sources, from which (with the fixed
    context prefixes of :data:`wijk_assets.defs.models.assets.CONTEXT_PREFIXES`) every label the
    explanations print is made."""
    from wijk_assets.defs.models.assets import CONTEXT_PREFIXES

    rows = con.execute("SELECT feature, label, unit, source FROM marts.feature_catalog ORDER BY ALL").fetchall()
    payload = repr(sorted(CONTEXT_PREFIXES.items())) + "\n" + "\n".join("\x1f".join(map(str, r)) for r in rows)
    return hashlib.sha256(payload.encode()).hexdigest()


def inputs_version(code_version: str, model_version: str, verdict_passed: bool, rows_digest: str,
                   labels_digest: str, gemeente: str) -> str:
    """Version of everything the explanation tables are computed from (see the module docstring):
    ``rows_digest`` from :func:`training_rows_digest`, ``labels_digest`` from :func:`catalog_digest`."""
    payload = "\n".join([code_version, model_version, str(bool(verdict_passed)), gemeente, rows_digest, labels_digest])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def reusable_results(instance: dg.DagsterInstance, duckdb: WarehouseResource, outcome: str, version: str,
                     tables: dict[dg.AssetKey, str], side_tables: tuple[str, ...]) -> list[dg.MaterializeResult] | None:
    """The previous materialisations of every explanation table of ``outcome`` when all were made from
    inputs of ``version`` and the tables still hold what they wrote; else None (recompute)."""
    from wijk_assets.lib.warehouse import table_exists

    previous = {}
    for key in tables:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[outcome]), limit=1
        ).records
        if not records:
            return None
        materialization = records[0].asset_materialization
        metadata = dict(materialization.metadata) if materialization is not None else {}
        stored = metadata.get(INPUTS_VERSION_KEY)
        if getattr(stored, "value", stored) != version:
            return None
        previous[key] = (records[0].run_id, metadata)
    with duckdb.connect(read_only=True) as con:
        for key, table in tables.items():
            rows = previous[key][1].get("dagster/row_count")
            if not table_exists(con, table):
                return None
            held = con.execute(f"SELECT count(*) FROM {table} WHERE outcome = ?", [outcome]).fetchall()[0][0]
            if held != getattr(rows, "value", rows):
                return None
        for table in side_tables:
            if not table_exists(con, table) or not con.execute(
                f"SELECT count(*) FROM {table} WHERE outcome = ?", [outcome]
            ).fetchall()[0][0]:
                return None
    return [
        dg.MaterializeResult(
            asset_key=key,
            metadata={**metadata, "reused_from_run": run_id,
                      "reused": "inputs unchanged (same model version, verdict, training rows and labels): "
                                "the stored explanations were kept, not recomputed"},
        )
        for key, (run_id, metadata) in previous.items()
    ]


__all__ = ["INPUTS_VERSION_KEY", "catalog_digest", "inputs_version", "reusable_results", "training_rows_digest"]
