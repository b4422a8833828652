"""The dbt steps build, validate, then swap (the mechanics are in :mod:`wijk_assets.lib.build_swap`).

Both dbt steps set aside the relations they are about to rebuild before dbt starts. What dbt then
builds replaces them only when every dbt test passed and, for the feature step, gate 2 (Great
Expectations on ``marts.fct_area_features``) passed on the new table. Otherwise the previous
relations are put back, the rejected tables are kept in ``quarantine``, the rejection is recorded in
``quarantine.build_rejections`` (``wijk-assets status`` shows it) and the step fails: nothing
downstream runs, and nothing that reads the warehouse sees the rejected build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import dagster as dg
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets

from wijk_assets.defs.dbt.checks import FeatureGateVerdict
from wijk_assets.defs.resources import WarehouseResource
from wijk_assets.lib import build_swap
from wijk_assets.lib.build_swap import Relation


def relations_built(context: dg.AssetExecutionContext) -> list[Relation]:
    """The warehouse relations (tables and views) of the models and seeds this step materialises."""
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([context.assets_def])
    selected = set(context.selected_asset_keys)
    relations = []
    for node in manifest["nodes"].values():
        if node["resource_type"] not in ("model", "seed") or node["config"].get("materialized") == "ephemeral":
            continue
        if translator.get_asset_key(node) in selected:
            relations.append(Relation(node["schema"], node.get("alias") or node["name"]))
    return sorted(relations, key=str)


def _one_paragraph(error: BaseException) -> str:
    text = getattr(error, "description", None) or str(error) or type(error).__name__
    return " ".join(text.split())[:4000]


def build_then_swap(
    context: dg.AssetExecutionContext,
    duckdb: WarehouseResource,
    build: Callable[[], Iterable],
    gate: Callable[[], FeatureGateVerdict] | None = None,
) -> Iterator:
    """Run ``build`` (dbt's event stream) on set-aside relations; yield its events; swap or reject.

    ``gate`` returns gate 2's verdict on what dbt just built. The
    events pass through as they come, so callers that hold outputs until the end (``with_column_lineage``)
    see the swap decided before they read the tables.
    """
    relations = relations_built(context)
    step = context.op_def.name
    run_id = context.run.run_id
    with duckdb.connect() as con:
        previous = build_swap.set_aside(con, relations)
    context.log.info(f"{step}: {len(previous)} of {len(relations)} relations set aside until the build passed its checks")

    def refuse(stage: str, reason: str, failed: list[str]) -> dict[str, str]:
        with duckdb.connect() as con:
            kept = build_swap.reject(
                con, relations, run_id=run_id, step=step, stage=stage, reason=reason, failed_expectations=failed,
                asset_keys=[k.to_user_string() for k in context.selected_asset_keys],
            )
        context.log.error(f"{step}: build refused at {stage}; the previous relations are live again: {reason[:2000]}")
        return kept

    try:
        yield from build()
    except Exception as error:
        refuse("dbt", _one_paragraph(error), [])
        raise
    if gate is not None:
        try:
            verdict = gate()
        except Exception as error:
            refuse("gate_2", f"the gate could not run: {_one_paragraph(error)}", [])
            raise
        if not verdict.passed:
            kept = refuse("gate_2", verdict.reason, verdict.failed_expectations)
            raise dg.Failure(
                description=(
                    f"gate 2 refused the feature build: {verdict.reason}. The previous feature tables stay live; the "
                    f"refused tables are in {', '.join(sorted(set(kept.values()))) or 'no table'} "
                    f"(run_id = '{run_id}', see {build_swap.BUILD_REJECTIONS_TABLE})."
                ),
                metadata={**verdict.metadata, "run_id": run_id, "quarantined": dg.MetadataValue.json(kept)},
                allow_retries=False,
            )
    with duckdb.connect() as con:
        build_swap.commit(con, previous)
