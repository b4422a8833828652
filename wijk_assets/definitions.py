"""The one Dagster ``Definitions`` of wijk_assets; ``workspace.yaml`` and ``dagster dev`` load it."""

from __future__ import annotations

import dagster as dg

from wijk_assets.assets.raw import raw_assets
from wijk_assets.resources import CbsSourceResource, WarehouseResource
from wijk_assets.settings import Settings, load_settings


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "duckdb": WarehouseResource(path=str(settings.duckdb_path)),
        "cbs": CbsSourceResource(
            data_dir=str(settings.data_dir) if settings.data_dir else None,
            base_url=settings.cbs_base_url,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    return dg.Definitions(
        assets=[*raw_assets],
        resources=build_resources(settings),
    )


defs = build_definitions()
