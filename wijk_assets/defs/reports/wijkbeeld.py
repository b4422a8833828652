"""``reports/wijkbeeld``: the static pages an omgevingsregisseur opens (thin Dagster wiring).

Writes ``<reports>/wijkbeeld/<gemeente code>/index.html`` and one page per wijk for the gemeente in
``WIJK_GEMEENTE``; the pages are built by :mod:`wijk_assets.lib.wijkbeeld` (pure code).
"""


import dagster as dg

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.defs.reports.assets import reports_dir
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import (
    DIM_AREA_KEY,
    FEATURE_VALUES_KEY,
    GATE_KEY,
    IMPORTANCE_KEY,
    MODEL_KEY,
    OUTCOMES_KEY,
    PUBLISH_KEY,
    SURVEY_KEY,
    TRAINING_KEY,
    WIJK_GEOMETRY_KEY,
    WIJKBEELD_KEY,
    raw_asset_key,
)

# Every table the pages read (lib/wijkbeeld), so lineage from a page leads to all its inputs
# (unit/test_wijkbeeld_reads.py compares this list with the code's SQL).
WIJKBEELD_READS = [
    PUBLISH_KEY, GATE_KEY, OUTCOMES_KEY, FEATURE_VALUES_KEY, DIM_AREA_KEY, WIJK_GEOMETRY_KEY, SURVEY_KEY,
    IMPORTANCE_KEY, MODEL_KEY, TRAINING_KEY, raw_asset_key("cbs_wijkgrenzen"),
    dg.AssetKey(["intermediate", "int_area_names"]), dg.AssetKey(["intermediate", "int_area_code_harmonisation"]),
    dg.AssetKey(["staging", "gemeente_changes"]),
]


@dg.asset(
    key=WIJKBEELD_KEY,
    deps=WIJKBEELD_READS,
    group_name="reports",
    pool=DUCKDB_POOL,
    code_version="wijkbeeld-2",  # -2: the overview names the inhabitants' KWB release(s) from the data
    # Runs once per refresh, after the published tables (which follow the models), or when the municipal
    # survey changes; not also after the marts it reads, which would build the pages twice (a diamond).
    # A withheld outcome has no explanations (and a model may be missing): its partitions may be missing.
    automation_condition=downstream_automation_condition(triggered_by=[PUBLISH_KEY, SURVEY_KEY],
                                                         may_be_missing=[IMPORTANCE_KEY, MODEL_KEY]),
    description=(
        "Wijkbeeld: a self-contained static site per gemeente (WIJK_GEMEENTE) under "
        "reports/wijkbeeld/<gemeente>/: an overview with a map of the wijken, a table of all wijken and "
        "'Welke wijk als volgende?' signals with their uncertainty, and one page per wijk. Dutch, no network."
    ),
)
def wijkbeeld(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    from wijk_assets.lib.wijkbeeld.data import load_gemeente
    from wijk_assets.lib.wijkbeeld.site import write_site
    from wijk_assets.lib.wijkbeeld.version import files_sha256, inputs_version, pages_intact

    with duckdb.connect(read_only=True) as con:
        data = load_gemeente(con, settings.gemeente)
    out_dir = reports_dir(duckdb) / "wijkbeeld" / settings.gemeente
    names = dict(zip(data.wijken["area_code"], data.wijken["area_name"]))
    version = inputs_version(data, min_inhabitants=settings.min_inhabitants, out_dir=out_dir)
    # Same inputs, same pages (see lib/wijkbeeld/version.py): when the last materialisation rendered
    # these inputs and its pages are on disk unchanged, they are kept instead of rendered again.
    kept = _kept_pages(context, version, pages_intact)
    if kept is not None:
        context.log.info(f"wijkbeeld {data.gemeente_name}: inputs unchanged ({version[:12]}); pages in {out_dir} kept")
        return dg.MaterializeResult(metadata={**kept, "rendered": False})
    site = write_site(data, out_dir, min_inhabitants=settings.min_inhabitants)
    context.log.info(f"wijkbeeld {data.gemeente_name}: {len(site.wijk_pages)} wijk pages in {out_dir}")
    return dg.MaterializeResult(
        metadata={
            "gemeente": f"{data.gemeente_name} ({data.gemeente_code})",
            "index": dg.MetadataValue.path(str(site.index)),
            "wijk_pages": dg.MetadataValue.json({names[c]: str(p) for c, p in site.wijk_pages.items()}),
            "n_wijk_pages": len(site.wijk_pages),
            "overview": dg.MetadataValue.md(site.markdown),
            "notes": "; ".join(data.notes) or "none",
            "inputs_version": version,
            "pages_sha256": dg.MetadataValue.json(files_sha256([site.index, *site.wijk_pages.values()])),
            "rendered": True,
        }
    )


PAGE_METADATA = ("gemeente", "index", "wijk_pages", "n_wijk_pages", "overview", "notes", "inputs_version",
                 "pages_sha256")


def _kept_pages(context: dg.AssetExecutionContext, version: str, pages_intact) -> dict | None:
    """The last materialisation's page metadata when it rendered ``version`` and its pages are intact."""
    event = context.instance.get_latest_materialization_event(WIJKBEELD_KEY)
    metadata = event.asset_materialization.metadata if event is not None and event.asset_materialization else {}
    if any(name not in metadata for name in PAGE_METADATA):
        return None
    recorded = metadata["pages_sha256"].value
    if metadata["inputs_version"].value != version or not pages_intact(recorded):
        return None
    return {name: metadata[name] for name in PAGE_METADATA}


wijkbeeld_assets = [wijkbeeld]
