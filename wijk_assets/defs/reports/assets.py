"""The documents that come out of the run itself (published tables: :mod:`wijk_assets.defs.publish.assets`).

- ``reports/coverage_report``: which areas were matched across layouts, per source and rule.
- ``reports/algorithm_register_entry`` and ``reports/model_card``: filled from configuration plus the
  actual run (sources with sha256, models, validation figures, features, suppression counts).
- ``reports/audit_trail``: every materialisation with code version, data versions and check outcomes.
"""

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import (
    GATE_KEY,
    AUDIT_KEY,
    CORRELATIONS_KEY,
    COVERAGE_KEY,
    MODEL_CARD_KEY,
    MODEL_KEY,
    OUTCOME_LABELS,
    PUBLISH_KEY,
    REGISTER_KEY,
    RPT_COVERAGE_KEY,
)
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.settings import REPO_ROOT
from wijk_assets.lib.warehouse import replace_table

# The raw sources upstream of the models in the asset graph (a test checks this list against the graph;
# the boundaries are upstream through display names of the area-code crosswalk). The municipality's own
# survey is loaded (raw/gemeente_survey -> marts.fct_survey_indicators) but is not upstream. The register
# entry does NOT list these: it lists, from the run itself, the sources whose figures the trained models
# really use (wijk_assets.lib.responsible.model_sources), and the rest as loaded but not a model input.
MODEL_SOURCES = tuple(s for s in RAW_SOURCES if s != "gemeente_survey")


@dg.asset(
    key=COVERAGE_KEY,
    deps=[RPT_COVERAGE_KEY],
    group_name="reports",
    pool=DUCKDB_POOL,
    code_version="coverage-1",
    automation_condition=downstream_automation_condition(),
    description=(
        "Coverage per source and year as asset metadata: areas in the hierarchy, Leefbaarometer wijken "
        "matched exactly or harmonised (per rule), and those left unmatched (listed), plus the share "
        "of Leefbaarometer wijk-years that join to features."
    ),
)
def coverage_report(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.connect(read_only=True) as con:
        coverage = con.execute("SELECT * FROM marts.rpt_coverage ORDER BY source, year").df()
    overall = coverage[coverage["source"] == "all_feature_sources"]
    per_source = coverage[coverage["source"] != "all_feature_sources"]
    rule_columns = [c for c in coverage.columns if c.startswith("n_") and c not in ("n_areas", "n_in_hierarchy", "n_land", "n_gemeenten", "n_wijken", "n_buurten")]
    table = per_source[["source", "year", "n_areas", "n_in_hierarchy", *[c for c in rule_columns if c in per_source]]]
    metadata = {
        "per_source_year": dg.MetadataValue.md(table.to_markdown(index=False)),
        "unmatched_leefbaarometer_wijken": dg.MetadataValue.json(
            {
                f"{r.source} {r.year}": str(r.unmatched_lbm_wijken)
                for r in per_source.itertuples(index=False)
                if pd.notna(r.n_unmatched) and r.n_unmatched > 0
            }
        ),
    }
    if not overall.empty:
        row = overall.iloc[0]
        metadata.update({
            "lbm_join_fraction": float(row["lbm_join_fraction"]),
            "lbm_join_fraction_raw_quick_join": float(row["raw_quick_join_fraction"]),
            "lbm_join_fraction_excluding_changed_codes": float(row["lbm_join_fraction_excl_changed_codes"]),
            "lbm_wijk_years": int(row["lbm_wijk_years"]),
            "lbm_wijk_years_joined": int(row["lbm_wijk_years_joined"]),
        })
    return dg.MaterializeResult(metadata=metadata)


def reports_dir(duckdb: WarehouseResource) -> Path:
    path = Path(duckdb.path).resolve().parent / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def code_version() -> str:
    """The git commit of this checkout (with '+dirty' when it has uncommitted changes), else the
    package version."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True,
            text=True, timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from wijk_assets import __version__

        return f"wijk_assets {__version__}"


def run_facts(duckdb: WarehouseResource, run_id: str, settings: SettingsResource) -> dict:
    """Everything the register entry and model card state about this run, read from the warehouse."""
    from wijk_assets.lib.sources.catalog import load_catalog
    from wijk_assets.lib.responsible.model_sources import (
        context_source_years,
        files_with_gemeente,
        mark_files_with_gemeente,
        model_source_years,
    )

    catalog = load_catalog()
    with duckdb.connect(read_only=True) as con:
        runs = con.execute(
            "SELECT r.*, g.verdict AS gate_verdict, g.problems AS gate_problems, g.margin_r2 AS gate_margin, "
            "g.margin_lower AS gate_lower, g.margin_upper AS gate_upper, g.interval_level AS gate_level, "
            "g.method AS gate_method, g.rule AS gate_rule FROM ml.model_runs r "
            "LEFT JOIN ml.model_gate g ON g.outcome = r.outcome AND g.model_version = r.model_version "
            "ORDER BY r.outcome"
        ).df()
        suppression = con.execute("SELECT * FROM publish.suppression_log WHERE \"table\" = 'publish.area_comparison'").df()
        gemeente_name = con.execute(
            "SELECT area_name FROM marts.dim_area WHERE area_code = ?", [settings.gemeente]
        ).fetchone()
        feature_catalog = con.execute("SELECT feature, source FROM marts.feature_catalog").df()
        # the rows the models were trained on: Leefbaarometer wijk-years with own features
        trained = "SELECT area_code, outcome_year FROM marts.mart_wijk_training WHERE feature_year IS NOT NULL"
        feature_years = con.execute(
            "SELECT DISTINCT f.source, f.source_year FROM intermediate.int_lbm_feature_years f "
            f"WHERE EXISTS (SELECT 1 FROM ({trained}) t WHERE t.area_code = f.lbm_wijk_code "
            "AND t.outcome_year = f.outcome_year)"
        ).df()
        outcome_years = [int(r[0]) for r in con.execute(f"SELECT DISTINCT outcome_year FROM ({trained})").fetchall()]
        files_by_source = {
            source: con.execute(
                f"SELECT DISTINCT source_file, source_sha256, release_year, cbs_table_id FROM raw.{source} "
                "ORDER BY release_year, source_file"
            ).df()
            for source in RAW_SOURCES
            if source != "gemeente_survey"  # the municipality's own survey: published on its own, never a model input
        }
        # which loaded files hold rows of this gemeente: the entry names only those of the files that do
        # not feed the model (another gemeente's sample is counted, not named)
        covering = files_with_gemeente(con, list(files_by_source), settings.gemeente)
    model_features = sorted({f for run in runs.itertuples(index=False) for f in json.loads(run.features)})
    boundary_years = files_by_source.get("cbs_wijkgrenzen", pd.DataFrame({"release_year": []}))["release_year"]
    feeding = model_source_years(
        model_features, feature_catalog, feature_years, "leefbaarometer", outcome_years,
        structural_years={"cbs_wijkgrenzen": boundary_years.unique()} if any(
            f.startswith("nb_mean__") for f in model_features) else None,
    )
    loaded = {source: files["release_year"].unique() for source, files in files_by_source.items()}
    describing = context_source_years(loaded, feeding)

    def source_fact(name: str, years, **extra) -> dict:
        spec = catalog[name]
        files = files_by_source[name]
        files = files[files["release_year"].isin([int(y) for y in years])]
        return {
            "name": name,
            "title": spec.title,
            "publisher": spec.publisher,
            "licence": spec.licence,
            "cbs_table_ids": sorted({t for t in files["cbs_table_id"].dropna() if t}),
            "years": sorted(int(y) for y in years),
            "files": [{"path": p, "sha256": s} for p, s in files[["source_file", "source_sha256"]].drop_duplicates().itertuples(index=False)],
            "level": ", ".join(spec.levels),
            **extra,
        }

    sources = [source_fact(s["name"], s["years"], role=s["role"], **({"features": s["features"]} if s["features"] else {}))
               for s in feeding]
    context_sources = mark_files_with_gemeente([source_fact(name, years) for name, years in describing.items()],
                                               covering)
    from wijk_assets.lib.responsible.register import outcome_facts

    outcomes, features, params = [], set(), {}
    import lightgbm

    for run in runs.to_dict("records"):
        features.update(json.loads(run["features"]))
        params[run["outcome"]] = json.loads(run["params"])
        gate = None if pd.isna(run.get("gate_verdict")) else {
            "verdict": run["gate_verdict"], "reason": run["gate_problems"] or "",
            "margin": run["gate_margin"], "lower": run["gate_lower"], "upper": run["gate_upper"],
            "level": run["gate_level"], "method": run["gate_method"], "rule": run["gate_rule"],
        }
        outcomes.append(outcome_facts(
            run["outcome"], OUTCOME_LABELS.get(run["outcome"], run["outcome"]), json.loads(run["metrics"]),
            int(run["n_rows"]), gate,
        ))
    row = suppression.iloc[0].to_dict() if not suppression.empty else {}
    from wijk_assets.lib.responsible.stigma import opted_in_sensitive_columns

    return {
        "run_id": run_id,
        "code_version": code_version(),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gemeente": settings.gemeente,
        **({"gemeente_name": gemeente_name[0]} if gemeente_name and gemeente_name[0] else {}),
        "area_level": "wijk",
        "classification_year": 2022,
        "sources": sources,
        "context_sources": context_sources,
        "model": {
            "type": "LightGBM gradient-boosted regression trees, one model per outcome",
            "version": ", ".join(f"{r.outcome}={r.model_version}" for r in runs.itertuples(index=False)),
            "library": f"lightgbm {lightgbm.__version__}",
            "explainer": "TreeSHAP via LightGBM pred_contrib (checked equal to shap.TreeExplainer)",
            "trained_on": "all Dutch wijken with a Leefbaarometer score, outcome years with features at most 4 years older",
            "hyperparameters": params,
        },
        "outcomes": outcomes,
        "features": sorted(features),
        "sensitive_opt_in": opted_in_sensitive_columns(sorted(features), None, settings.sensitive_opt_in),
        "suppression": {
            "min_inhabitants": settings.min_inhabitants,
            "min_respondents": settings.min_respondents,
            "n_areas": int(row.get("n_areas", 0)),
            "n_suppressed_population": int(row.get("n_suppressed_population", 0)),
            "n_suppressed_signal": int(row.get("n_suppressed_signal", 0)),
            "n_population_unknown": int(row.get("n_population_unknown", 0)),
            **({"population_source": row["population_source"]} if row.get("population_source") else {}),
        },
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(REGISTER_KEY, deps=[MODEL_KEY, GATE_KEY, PUBLISH_KEY, CORRELATIONS_KEY, *[raw_asset_key(s) for s in MODEL_SOURCES]],
                     automation_condition=downstream_automation_condition(triggered_by=[PUBLISH_KEY]),
                     description="Algoritmeregister entry (Markdown + JSON) filled from configuration and this run."),
        dg.AssetSpec(MODEL_CARD_KEY, deps=[MODEL_KEY, GATE_KEY, PUBLISH_KEY],
                     automation_condition=downstream_automation_condition(triggered_by=[PUBLISH_KEY]),
                     description="Model card: intended and out-of-scope use, metrics with baselines, limitations."),
    ],
    group_name="reports",
    pool=DUCKDB_POOL,
    code_version="reports-2",
)
def register_and_model_card(
    context: dg.AssetExecutionContext, duckdb: WarehouseResource, settings: SettingsResource
):
    from wijk_assets.lib.responsible.register import (
        build_model_card,
        build_register_entry,
        load_register_config,
        register_json,
        render_register_markdown,
    )

    facts = run_facts(duckdb, context.run.run_id, settings)
    config = load_register_config()
    entry = build_register_entry(facts, config)
    card = build_model_card(facts, config)
    out = reports_dir(duckdb)
    (out / "algorithm_register_entry.md").write_text(render_register_markdown(entry), encoding="utf-8")
    (out / "algorithm_register_entry.json").write_text(register_json(entry), encoding="utf-8")
    (out / "model_card.md").write_text(card, encoding="utf-8")
    with duckdb.connect() as con:
        replace_table(con, "reports.documents", pd.DataFrame([
            {"document": "algorithm_register_entry", "format": "json", "content": register_json(entry), "run_id": context.run.run_id},
            {"document": "algorithm_register_entry", "format": "markdown", "content": render_register_markdown(entry), "run_id": context.run.run_id},
            {"document": "model_card", "format": "markdown", "content": card, "run_id": context.run.run_id},
        ]))
    yield dg.MaterializeResult(
        asset_key=REGISTER_KEY,
        metadata={
            "path_markdown": dg.MetadataValue.path(str(out / "algorithm_register_entry.md")),
            "path_json": dg.MetadataValue.path(str(out / "algorithm_register_entry.json")),
            "code_version": facts["code_version"],
            "sources": len(facts["sources"]),
            "outcomes": len(facts["outcomes"]),
            # the focus gemeente this entry is about (``refresh`` makes it again when WIJK_GEMEENTE changes)
            "gemeente": settings.gemeente,
        },
    )
    yield dg.MaterializeResult(
        asset_key=MODEL_CARD_KEY,
        metadata={"path": dg.MetadataValue.path(str(out / "model_card.md")), "preview": dg.MetadataValue.md(card[:4000]),
                  "gemeente": settings.gemeente},
    )


@dg.asset(
    key=AUDIT_KEY,
    deps=[REGISTER_KEY, MODEL_CARD_KEY],
    group_name="reports",
    pool=DUCKDB_POOL,
    code_version="audit-1",
    automation_condition=downstream_automation_condition(),
    description=(
        "audit.audit_trail: one row per materialisation (asset, partition, run id, code version, data "
        "version, input data versions, source sha256, check outcomes), from the Dagster event log."
    ),
)
def audit_trail(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.defs.reports.audit_table import AUDIT_TABLE, update_audit_table
    from wijk_assets.lib.content_version import content_version

    with duckdb.connect() as con:
        update = update_audit_table(context.instance, con)
        # The trail is a log of the instance, not a function of its inputs: version it by its content
        # (row order does not count, so an extended trail and one written at once get the same version).
        content = content_version(con, *AUDIT_TABLE.split("."))
        failed = con.execute(f"SELECT count(*) FROM {AUDIT_TABLE} WHERE checks_passed = false").fetchone()[0]
    context.log.info(f"audit trail: {update.mode}; {update.written} rows written, {update.rows} in the trail")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": update.rows, "materialisations_with_failed_checks": int(failed),
                  "rows_written": update.written, "update": update.mode},
        data_version=dg.DataVersion(content),
    )


report_assets = [coverage_report, register_and_model_card, audit_trail]
