"""dbt models as Dagster assets (dagster-dbt), in two ops.

Each op builds, validates, then swaps (:mod:`wijk_assets.defs.dbt.swap`): the relations it rebuilds
replace the previous ones only after its dbt tests passed and, in the first op, gate 2 (Great
Expectations on ``marts/fct_area_features``) passed on the new feature table. Everything built on the
feature table (the training mart) runs in the second op, so it never reads a refused feature build;
the blocking check ``ge_gate_fct_area_features`` observes the live table after each build.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from wijk_assets.defs.dbt.test_descriptions import describe_dbt_test
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.defs.dbt.swap import build_then_swap
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.keys import FEATURE_CATALOG_KEY, FEATURE_TABLE_KEY, TRAINING_KEY
from wijk_assets.lib.warehouse import quote_ident
from wijk_assets.defs.dbt.project import dbt_project, prepare_manifest_for_definitions, prepare_parse_state

# Models built on the gated feature table; they run in the second op. A test asserts this list holds
# every dbt model downstream of marts/fct_area_features, so a new one cannot slip past the gate.
AFTER_FEATURE_GATE = "int_wijk_training_cells mart_wijk_training"


class WijkDbtTranslator(DagsterDbtTranslator):
    """Asset keys ``<schema>/<model>`` (staging/stg_…, marts/fct_area_features) grouped per layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            schema = dbt_resource_props.get("schema") or "main"
            return dg.AssetKey([schema, dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        """dagster-dbt's metadata, with the table named ``<schema>.<table>`` like every other asset here.

        dagster-dbt prefixes the database, which dbt-duckdb takes from the warehouse file's name: the
        definitions would then depend on which file the manifest was last parsed for (see :mod:`.project`)."""
        metadata = dict(super().get_metadata(dbt_resource_props))
        schema = dbt_resource_props.get("schema")
        table = dbt_resource_props.get("alias") or dbt_resource_props.get("name")
        if "dagster/table_name" in metadata and schema and table:
            metadata["dagster/table_name"] = f"{schema}.{table}"
        return metadata

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "dbt_seeds"
        return f"dbt_{dbt_resource_props.get('schema') or 'models'}"

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        """dbt tests as checks, each described in plain words (see ``test_descriptions``)."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        test = manifest.get("nodes", {}).get(unique_id, {})
        return spec._replace(description=describe_dbt_test(test))

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        """Every model and seed follows its upstream: a new raw partition rebuilds what depends on it."""
        return downstream_automation_condition()


translator = WijkDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

# Not dbt_project.prepare_if_dev(): under `dagster dev` it runs the `dbt` found on PATH, which is none when
# the venv is not activated. This re-parses with the venv's dbt whenever the project changed.
prepare_manifest_for_definitions()


LINEAGE_MARTS = {
    dg.AssetKey(["marts", "fct_area_features"]),
    dg.AssetKey(["marts", "fct_liveability_outcomes"]),
    dg.AssetKey(["marts", "mart_wijk_training"]),
}
# dagster-dbt names each output after its asset key ("marts__fct_area_features")
_LINEAGE_OUTPUTS = {key.to_python_identifier(): key for key in LINEAGE_MARTS}

# The feature catalog is versioned by the columns its readers use: what each feature is (label, unit,
# source, sensitivity, source keys ...). Its statistics (years available, counts, coverage) change with
# every release but no asset reads them, so a release that adds no feature and no training row does
# not re-run the six model partitions for them. ``unit/test_lineage.py`` checks that every Python reader
# of ``marts.feature_catalog`` names only these columns.
FEATURE_CATALOG_READ_COLUMNS = ("feature", "concept", "label", "unit", "kind", "source", "cbs_table_ids",
                                "source_measure_keys", "sensitive", "description", "denominator")
_CATALOG_OUTPUT = FEATURE_CATALOG_KEY.to_python_identifier()


def column_lineage_metadata(key: dg.AssetKey, duckdb: WarehouseResource) -> dict[str, Any]:
    """``dagster/column_lineage`` (and a column schema with each feature's label, unit and source keys)
    for one of :data:`LINEAGE_MARTS`, read from the tables dbt just built."""
    from wijk_assets.defs import column_lineage as lineage
    from wijk_assets.keys import OUTCOMES

    with duckdb.connect(read_only=True) as con:
        catalog = con.execute(
            "SELECT feature, source, source_measure_keys, label, unit FROM marts.feature_catalog"
        ).df()
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [key.path[0], key.path[1]],
        ).fetchall()
    rows = catalog.to_dict("records")
    names = [c for c, _ in columns]
    if key.path[1] == "fct_area_features":
        table_lineage = lineage.feature_table_lineage(r for r in rows if r["feature"] in set(names))
    elif key.path[1] == "fct_liveability_outcomes":
        table_lineage = lineage.outcomes_lineage([o for o in OUTCOMES if o in names])
    else:
        table_lineage = lineage.training_lineage(names, {r["feature"] for r in rows}, OUTCOMES)
    described = {r["feature"]: r for r in rows}

    def describe(column: str) -> str | None:
        info = described.get(lineage.base_feature(column))
        if info is None:
            return None
        prefix = "" if column == info["feature"] else f"{column.split('__')[0]} of: "
        return f"{prefix}{info['label']} [{info['unit']}] from {info['source']}: {info['source_measure_keys']}"

    schema = dg.TableSchema(columns=[dg.TableColumn(c, t, description=describe(c)) for c, t in columns])
    return {
        "dagster/column_lineage": table_lineage,
        "dagster/column_schema": schema,
        **lineage.lineage_summary(table_lineage),
    }


def table_content_version(key: dg.AssetKey, duckdb: WarehouseResource, only=None) -> str:
    """A data version of the table ``<schema>.<name>`` from its content (see
    :mod:`wijk_assets.lib.content_version`): row order and float noise below 12 significant digits do not
    count, a renamed, added or retyped column does. Takes a few seconds on the feature table."""
    from wijk_assets.lib.content_version import content_version

    schema, name = key.path
    with duckdb.connect(read_only=True) as con:
        return content_version(con, schema, name, only)


def with_column_lineage(events, duckdb: WarehouseResource, context: dg.AssetExecutionContext | None = None,
                        known_versions: Mapping[str, str] | None = None):
    """Pass dbt's events through; every model's output gets its row count, and the outputs of
    :data:`LINEAGE_MARTS` also their column lineage and a data version of their content.

    Dagster's own data version of a dbt asset is a hash of its code version and its inputs' versions,
    so it changes whenever anything upstream changed. These three marts are what models and reports
    read, so they are versioned by what they hold: the outcomes table rebuilt after a new health-monitor
    release (its Leefbaarometer rows unchanged) keeps its data version, and nothing that reads only it
    is retrained (see ``downstream_automation_condition``).

    All of this is read from the warehouse, which the dbt process holds open while it runs, so the
    outputs are held back until dbt has finished (every dbt model is a table, so a row count is a
    lookup, not a scan). When the build fails they are dropped: the step's relations are then the
    previous ones again (:func:`wijk_assets.defs.dbt.swap.build_then_swap`), so nothing was materialised.
    ``known_versions``: output name -> content version the caller has just computed for that table
    (a table left in place), so it is not read twice.
    """
    held = []
    for event in events:
        if isinstance(event, dg.Output):
            held.append(event)
        else:
            yield event
    keys = {}
    for event in held:
        key = _LINEAGE_OUTPUTS.get(event.output_name)
        if key is None and context is not None:
            key = context.assets_def.keys_by_output_name.get(event.output_name)
        keys[event.output_name] = key
    row_counts = _row_counts(duckdb, [k.path for k in keys.values() if k is not None and len(k.path) == 2])
    for event in held:
        key = keys[event.output_name]
        metadata = dict(event.metadata)
        rows = row_counts.get(tuple(key.path)) if key is not None else None
        if rows is not None:
            metadata["dagster/row_count"] = rows
        if event.output_name in _LINEAGE_OUTPUTS:
            yield dg.Output(
                value=event.value,
                output_name=event.output_name,
                metadata={**metadata, **column_lineage_metadata(key, duckdb)},
                data_version=dg.DataVersion((known_versions or {}).get(event.output_name)
                                            or table_content_version(key, duckdb)),
                tags=event.tags,
            )
        elif event.output_name == _CATALOG_OUTPUT:
            version_of_read_columns = table_content_version(FEATURE_CATALOG_KEY, duckdb, FEATURE_CATALOG_READ_COLUMNS)
            yield dg.Output(value=event.value, output_name=event.output_name,
                            metadata={**metadata, "versioned_columns": ", ".join(FEATURE_CATALOG_READ_COLUMNS)},
                            data_version=dg.DataVersion(version_of_read_columns), tags=event.tags)
        else:
            yield dg.Output(value=event.value, output_name=event.output_name, metadata=metadata,
                            data_version=event.data_version, tags=event.tags)


def _row_counts(duckdb: WarehouseResource, tables: list[list[str]]) -> dict[tuple[str, str], int]:
    """Row counts of the (schema, name) tables and views that exist, over one connection."""
    if not tables:
        return {}
    with duckdb.connect(read_only=True) as con:
        existing = set(con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall())
        return {
            (schema, name): int(con.execute(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(name)}").fetchone()[0])
            for schema, name in tables
            if (schema, name) in existing
        }


def _point_dbt_at(duckdb: WarehouseResource) -> None:
    """dbt's profile reads the database path from WIJK_DUCKDB_PATH; the dbt subprocess inherits it.

    The project's partial-parse state is made first when it was made for another warehouse file, or
    waited for when a full build started that parse in the background (see :mod:`.project`)."""
    prepare_parse_state(duckdb_path=duckdb.path)
    os.environ["WIJK_DUCKDB_PATH"] = str(Path(duckdb.path).resolve())
    # dagster-dbt puts each invocation's target folder under $DBT_TARGET_PATH (default "target") and
    # copies the partial-parse state from there: point it at this project's target (per test worker).
    os.environ["DBT_TARGET_PATH"] = str(dbt_project.project_dir / dbt_project.target_path)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    exclude=AFTER_FEATURE_GATE,
    name="dbt_features",
    pool=DUCKDB_POOL,
)
def dbt_feature_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, duckdb: WarehouseResource, settings: SettingsResource
):
    """Seeds, staging, intermediate and the marts up to the feature table, with their dbt tests; they
    replace the previous ones only after the dbt tests and gate 2 passed (see :mod:`.swap`)."""
    from wijk_assets.defs.dbt.checks import evaluate_feature_gate, remember_passed_verdict

    def gate():
        verdict = evaluate_feature_gate(duckdb, settings.gemeente)
        remember_passed_verdict(context.run.run_id, verdict)
        return verdict

    _point_dbt_at(duckdb)
    build = build_then_swap(
        context, duckdb, lambda: dbt.cli(["build"], context=context).stream(),
        gate=gate if FEATURE_TABLE_KEY in context.selected_asset_keys else None,
    )
    yield from with_column_lineage(build, duckdb, context)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=AFTER_FEATURE_GATE,
    name="dbt_training",
    pool=DUCKDB_POOL,
)
def dbt_training_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, duckdb: WarehouseResource, settings: SettingsResource
):
    """The training mart, built only after the feature table passed its gate; it replaces the previous
    one only after its dbt tests passed. Not rebuilt when nothing it reads changed (see
    :mod:`.unchanged_inputs`)."""
    from wijk_assets.defs.dbt import unchanged_inputs as unchanged

    _point_dbt_at(duckdb)
    with duckdb.connect(read_only=True) as con:
        fingerprint = unchanged.training_inputs_fingerprint(con, settings.sensitive_opt_in)
    live = unchanged.unchanged_build(context, duckdb, fingerprint)
    if live is not None:
        context.log.info(f"training inputs unchanged since run {live.run_id}: the live training mart stays, dbt not run")
        mart_output = context.assets_def.get_output_name_for_asset_key(TRAINING_KEY)
        yield from with_column_lineage(unchanged.outputs_of_live_build(context, live, fingerprint), duckdb, context,
                                       known_versions={mart_output: live.mart_version})
        yield from unchanged.carried_check_results(context, live)
        return

    passed: set[str] = set()

    def build():
        for event in dbt.cli(["build"], context=context).stream():
            check = unchanged.passed_check(event)
            if check is not None:
                passed.add(check)
            yield event

    mart_version = None
    mart_output = context.assets_def.get_output_name_for_asset_key(TRAINING_KEY)
    for event in with_column_lineage(build_then_swap(context, duckdb, build), duckdb, context):
        if isinstance(event, dg.Output) and event.output_name == mart_output and event.data_version is not None:
            mart_version = event.data_version.value
        yield event
    whole = set(context.selected_asset_keys) == set(context.assets_def.keys) and mart_version is not None
    unchanged.record(duckdb, context.op_def.name, unchanged.LiveBuild(
        fingerprint, mart_version, frozenset(passed), context.run.run_id) if whole else None)

