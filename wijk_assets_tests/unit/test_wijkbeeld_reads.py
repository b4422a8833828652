"""The wijkbeeld asset declares every table its pages read (no data: the code's SQL against the graph).

Lineage from a page must lead to all its inputs: the pages read the nearest-wijk weights
(``ml.global_importance``), the official names (``int_area_names``) and the merger seed, which the asset
did not declare, so an auditor following the page's lineage never reached them.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from wijk_assets.defs.explanations.assets import EXPLANATION_TABLES
from wijk_assets.keys import GATE_KEY, MODEL_KEY, PUBLISH_KEY, WIJKBEELD_KEY

WIJKBEELD_CODE = Path(__file__).resolve().parents[2] / "wijk_assets" / "lib" / "wijkbeeld"
# tables written by Python assets (the dbt and raw tables are named after their asset keys)
WRITTEN_BY = {**{table: key for key, table in EXPLANATION_TABLES.items()}, "ml.model_runs": MODEL_KEY,
              "ml.model_gate": GATE_KEY, "publish.area_comparison": PUBLISH_KEY, "publish.area_drivers": PUBLISH_KEY}
TABLE = re.compile(r"\b(raw|staging|intermediate|marts|ml|publish|monitoring)\.([a-z_]+)\b")


def _read_tables() -> set[str]:
    return {f"{m.group(1)}.{m.group(2)}" for path in WIJKBEELD_CODE.glob("*.py")
            for m in TABLE.finditer(path.read_text(encoding="utf-8"))}


def test_every_table_the_pages_read_is_a_declared_dependency():
    from wijk_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    declared = set(graph.get(WIJKBEELD_KEY).parent_keys)
    reads = _read_tables()
    assert {"ml.global_importance", "intermediate.int_area_names", "staging.gemeente_changes"} <= reads
    for table in sorted(reads):
        key = WRITTEN_BY.get(table, dg.AssetKey(table.split(".")))
        assert graph.has(key), f"{table}: no asset writes it (map it in WRITTEN_BY)"
        assert key in declared, f"the pages read {table} ({key.to_user_string()}) but the asset does not declare it"
