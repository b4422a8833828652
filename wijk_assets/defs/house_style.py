"""What every asset shows in the Dagster UI besides its own metadata: kinds and owners by stage.

Applied once in :mod:`wijk_assets.definitions` (``Definitions.map_asset_specs``), so a new asset of a
stage gets them without repeating them, and a test asserts none is left without.
"""

from __future__ import annotations

import dagster as dg

# Who answers for an asset, by group (Dagster owners are e-mail addresses or "team:<name>").
OWNERS_BY_GROUP_PREFIX = {
    "raw": "team:data-engineering",
    "dbt_": "team:data-engineering",
    "models": "team:data-science",
    "explanations": "team:data-science",
    "monitoring": "team:data-science",
    "publish": "team:information-management",
    "reports": "team:information-management",
}

# What an asset is made with, by group (added to the kinds an asset declares itself).
KINDS_BY_GROUP_PREFIX = {
    "raw": {"python", "duckdb"},
    "dbt_": {"dbt", "duckdb"},
    "models": {"lightgbm", "duckdb"},
    "explanations": {"shap", "duckdb"},
    "monitoring": {"python", "duckdb"},
    "publish": {"python", "duckdb"},
    "reports": {"python", "markdown"},
}


def _for_group(table: dict, group: str | None):
    for prefix, value in table.items():
        if group and group.startswith(prefix):
            return value
    return None


def apply_house_style(spec: dg.AssetSpec) -> dg.AssetSpec:
    owners = list(spec.owners or [])
    owner = _for_group(OWNERS_BY_GROUP_PREFIX, spec.group_name)
    if owner and owner not in owners:
        owners.append(owner)
    kinds = set(spec.kinds or set()) | set(_for_group(KINDS_BY_GROUP_PREFIX, spec.group_name) or set())
    return spec.replace_attributes(owners=owners, kinds=kinds)


def rounded(metadata: dict, digits: int = 4) -> dict:
    """Metadata with plain floats rounded for reading (R² 0.6050, not 0.6049870133912284).

    Only bare Python/NumPy floats are rounded; an exact figure an auditor needs stays available in the
    warehouse tables (``ml.model_runs.metrics``) and JSON metadata values are left as they are.
    """
    out = {}
    for key, value in metadata.items():
        if isinstance(value, float) or type(value).__name__ in {"float64", "float32"}:
            value = round(float(value), digits)
        out[key] = value
    return out
