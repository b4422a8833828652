"""The one Dagster ``Definitions`` of wijk_assets; ``workspace.yaml`` and ``dagster dev`` load it."""

from __future__ import annotations

import dagster as dg

from wijk_assets.assets.dbt import dbt_feature_models, dbt_resource, dbt_training_models
from wijk_assets.assets.explanations import correlations_table, explanations
from wijk_assets.assets.gate import model_gate_verdict
from wijk_assets.assets.models import liveability_model
from wijk_assets.assets.monitoring import release_changes
from wijk_assets.assets.raw import raw_assets
from wijk_assets.assets.reports import report_assets, report_checks
from wijk_assets.checks.feature_checks import feature_checks
from wijk_assets.checks.raw_gates import raw_gate_checks
from wijk_assets.sensors import automation_sensor, release_sensor, weekly_refresh_schedules
from wijk_assets.resources import CbsSourceResource, WarehouseResource
from wijk_assets.settings import Settings, load_settings


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "duckdb": WarehouseResource(path=str(settings.duckdb_path)),
        "dbt": dbt_resource(),
        "cbs": CbsSourceResource(
            data_dir=str(settings.data_dir) if settings.data_dir else None,
            base_url=settings.cbs_base_url,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions(
        assets=[
            *raw_assets,
            dbt_feature_models,
            dbt_training_models,
            liveability_model,
            model_gate_verdict,
            explanations,
            correlations_table,
            release_changes,
            *report_assets,
        ],
        asset_checks=[*raw_gate_checks(), *feature_checks, *report_checks],
        sensors=[release_sensor, automation_sensor],
        schedules=[*weekly_refresh_schedules],
        resources=build_resources(settings),
    )


defs = build_definitions()
