"""dbt models as Dagster assets (dagster-dbt), in two ops.

The feature table's Great Expectations gate is a Python check on ``marts/fct_area_features``. A blocking
check only stops *other* steps, so everything built on the feature table (the training mart) runs in a
second dbt op; when the gate fails that op is skipped and the previous training mart stays as it was.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from wijk_assets.assets.raw import DUCKDB_POOL
from wijk_assets.resources import WarehouseResource
from wijk_assets.sensors import downstream_automation_condition
from wijk_assets.settings import DBT_PROJECT_DIR

DBT_TARGET_PATH = Path(os.environ.get("WIJK_DBT_TARGET_PATH", "target"))
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, target_path=DBT_TARGET_PATH)

# Models built on the gated feature table; they run in the second op. A test asserts this list holds
# every dbt model downstream of marts/fct_area_features, so a new one cannot slip past the gate.
AFTER_FEATURE_GATE = "int_wijk_training_cells mart_wijk_training"


def dbt_executable() -> str:
    """The ``dbt`` beside this interpreter: an unactivated venv otherwise finds none on PATH."""
    import sys

    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _manifest_is_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [
        p
        for pattern in ("*.yml", "models/**/*", "seeds/**/*", "macros/**/*", "tests/**/*")
        for p in DBT_PROJECT_DIR.glob(pattern)
        if p.is_file()
    ]
    return any(p.stat().st_mtime > built for p in sources)


def prepare_manifest(force: bool = False) -> Path:
    """Parse the dbt project when its manifest is missing or older than any project file.

    ``dagster dev`` prepares the manifest itself; the CLI, the tests and CI rely on this.
    """
    manifest = dbt_project.manifest_path
    if force or _manifest_is_stale(manifest):
        dbt = DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
        dbt.cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    return manifest


class WijkDbtTranslator(DagsterDbtTranslator):
    """Asset keys ``<schema>/<model>`` (staging/stg_…, marts/fct_area_features) grouped per layer."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] in ("model", "seed", "snapshot"):
            schema = dbt_resource_props.get("schema") or "main"
            return dg.AssetKey([schema, dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "dbt_seeds"
        return f"dbt_{dbt_resource_props.get('schema') or 'models'}"

    def get_automation_condition(self, dbt_resource_props: Mapping[str, Any]) -> dg.AutomationCondition | None:
        """Every model and seed follows its upstream: a new raw partition rebuilds what depends on it."""
        return downstream_automation_condition()


translator = WijkDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

dbt_project.prepare_if_dev()
prepare_manifest()


def _point_dbt_at(duckdb: WarehouseResource) -> None:
    """dbt's profile reads the database path from WIJK_DUCKDB_PATH; the dbt subprocess inherits it."""
    os.environ["WIJK_DUCKDB_PATH"] = str(Path(duckdb.path).resolve())


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    exclude=AFTER_FEATURE_GATE,
    name="dbt_features",
    pool=DUCKDB_POOL,
)
def dbt_feature_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, duckdb: WarehouseResource):
    """Seeds, staging, intermediate and the marts up to the feature table, with their dbt tests."""
    _point_dbt_at(duckdb)
    yield from dbt.cli(["build"], context=context).stream()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    select=AFTER_FEATURE_GATE,
    name="dbt_training",
    pool=DUCKDB_POOL,
)
def dbt_training_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, duckdb: WarehouseResource):
    """The training mart, built only after the feature table passed its gate."""
    _point_dbt_at(duckdb)
    yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
