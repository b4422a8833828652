"""The one Dagster ``Definitions`` of wijk_assets; ``workspace.yaml`` and ``dagster dev`` load it."""

from __future__ import annotations

import dagster as dg

from wijk_assets.defs.dbt.assets import dbt_feature_models, dbt_training_models
from wijk_assets.defs.dbt.project import dbt_resource
from wijk_assets.defs.explanations.assets import correlations_table, explanations
from wijk_assets.defs.models.gate import model_gate_verdict
from wijk_assets.defs.models.assets import liveability_model
from wijk_assets.defs.models.selection import model_selection, tune_models
from wijk_assets.defs.monitoring.assets import release_changes
from wijk_assets.defs.raw.assets import raw_assets
from wijk_assets.defs.publish.assets import publish_assets, publish_checks
from wijk_assets.defs.reports.assets import report_assets
from wijk_assets.defs.reports.wijkbeeld import wijkbeeld_assets
from wijk_assets.defs.dbt.checks import feature_checks
from wijk_assets.defs.raw.checks import raw_gate_checks
from wijk_assets.defs.automation.conditions import automation_sensor
from wijk_assets.defs.automation.release_sensor import release_sensor
from wijk_assets.defs.automation.schedules import weekly_refresh_schedules
from wijk_assets.defs.house_style import apply_house_style
from wijk_assets.defs.jobs import STAGE_JOBS
from wijk_assets.defs.resources import SettingsResource, WarehouseResource, cbs_resource
from wijk_assets.settings import Settings, load_settings


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "duckdb": WarehouseResource(path=str(settings.duckdb_path)),
        "dbt": dbt_resource(),
        "cbs": cbs_resource(settings),
        "settings": SettingsResource.from_settings(settings),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    assets = [
        *raw_assets,
        dbt_feature_models,
        dbt_training_models,
        model_selection,
        liveability_model,
        model_gate_verdict,
        explanations,
        correlations_table,
        release_changes,
        *publish_assets,
        *report_assets,
        *wijkbeeld_assets,
    ]
    return dg.Definitions(
        assets=dg.map_asset_specs(apply_house_style, assets),
        asset_checks=[*raw_gate_checks(), *feature_checks, *publish_checks],
        sensors=[release_sensor, automation_sensor],
        schedules=[*weekly_refresh_schedules],
        jobs=[*STAGE_JOBS, tune_models],
        resources=build_resources(settings),
    )


defs = build_definitions()
