"""Named jobs, so every run in the UI says which stage it is (not ``__ephemeral_asset_job__``).

A Dagster job holds assets of one partitions definition, so the stages map onto jobs like this:

- ``raw_refresh_<source>``: one per raw source (release-year partitions; defined with the weekly
  schedules in :mod:`wijk_assets.defs.automation.schedules`);
- ``build_features``: the dbt project (seeds, staging, intermediate, marts) with gate 2 and dbt tests;
- ``train_models``: per outcome, the model, its gate verdict and its explanations;
- ``publish_and_report``: correlations, change monitoring, published tables and reports;
- ``update_warehouse``: every unpartitioned asset (features, published tables and reports together),
  what ``wijk-assets materialize`` and ``refresh`` run when one run must span those stages.

The CLI launches each run through the smallest of these jobs that holds all its assets
(:func:`wijk_assets.runner.materialize.materialize_keys`).
"""

from __future__ import annotations

import dagster as dg

DBT_GROUPS = ("dbt_seeds", "dbt_staging", "dbt_intermediate", "dbt_marts")


def _groups(*names: str) -> dg.AssetSelection:
    return dg.AssetSelection.groups(*names)


build_features = dg.define_asset_job(
    "build_features",
    selection=_groups(*DBT_GROUPS),
    description="dbt: seeds, staging, intermediate and marts (gate 2 and the dbt tests run as checks).",
)

train_models = dg.define_asset_job(
    "train_models",
    selection=_groups("models", "explanations") - dg.AssetSelection.assets(dg.AssetKey(["explanations", "correlations"])),
    description="Per outcome: train the LightGBM model, decide its quality-gate verdict, explain it (SHAP).",
)

publish_and_report = dg.define_asset_job(
    "publish_and_report",
    selection=_groups("monitoring", "publish", "reports") | dg.AssetSelection.assets(dg.AssetKey(["explanations", "correlations"])),
    description="Correlations, change monitoring, published (suppressed, neutral) tables and the reports.",
)

update_warehouse = dg.define_asset_job(
    "update_warehouse",
    selection=_groups(*DBT_GROUPS, "monitoring", "publish", "reports")
    | dg.AssetSelection.assets(dg.AssetKey(["explanations", "correlations"])),
    description="Every unpartitioned asset: the dbt marts, published tables and reports in one run.",
)

STAGE_JOBS = [build_features, train_models, publish_and_report, update_warehouse]
