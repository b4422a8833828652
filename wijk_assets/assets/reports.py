"""Published outputs and the documents that come out of the run itself.

- ``publish/area_explanations``: what a municipality may show residents: per wijk the drivers and the
  actual-vs-predicted comparison, with small areas suppressed, rank *ranges* instead of league-table
  positions, and no sensitive indicator unless opted in. A blocking check scans it for judgemental
  labels and sensitive columns.
- ``reports/algorithm_register_entry`` and ``reports/model_card``: filled from configuration plus the
  actual run (sources with sha256, models, validation figures, features, suppression counts).
- ``reports/audit_trail``: every materialisation with code version, data versions and check outcomes.
"""

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.assets.explanations import DRIVERS_KEY, RESIDUALS_KEY, CORRELATIONS_KEY
from wijk_assets.assets.models import MODEL_KEY, OUTCOME_LABELS, TRAINING_KEY
from wijk_assets.assets.raw import DUCKDB_POOL, RAW_SOURCES, raw_asset_key
from wijk_assets.resources import WarehouseResource
from wijk_assets.sensors import downstream_automation_condition
from wijk_assets.settings import REPO_ROOT, load_settings
from wijk_assets.warehouse import replace_table

PUBLISH_KEY = dg.AssetKey(["publish", "area_explanations"])
REGISTER_KEY = dg.AssetKey(["reports", "algorithm_register_entry"])
MODEL_CARD_KEY = dg.AssetKey(["reports", "model_card"])
AUDIT_KEY = dg.AssetKey(["reports", "audit_trail"])
COVERAGE_KEY = dg.AssetKey(["reports", "coverage_report"])
RPT_COVERAGE_KEY = dg.AssetKey(["marts", "rpt_coverage"])
# The sources the models are built from: the register entry lists these. The municipality's own survey
# is loaded (raw/gemeente_survey -> marts.fct_survey_indicators) but is not a model input; a test
# checks this list against the asset graph.
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


def small_area_signal(training_latest: pd.DataFrame, own_rivm_features: list[str]) -> pd.Series:
    """True where the publisher suppressed every health-monitor figure of the wijk (too few people)."""
    values = training_latest.set_index("area_code")[own_rivm_features]
    return values.isna().all(axis=1)


@dg.asset(
    key=PUBLISH_KEY,
    deps=[DRIVERS_KEY, RESIDUALS_KEY, TRAINING_KEY],
    group_name="publish",
    pool=DUCKDB_POOL,
    code_version="publish-2",
    automation_condition=downstream_automation_condition(
        triggered_by=[DRIVERS_KEY, RESIDUALS_KEY], may_be_missing=[DRIVERS_KEY, RESIDUALS_KEY]
    ),
    description=(
        "Resident-facing tables (publish.area_drivers, publish.area_comparison): small areas "
        "suppressed, calibrated prediction intervals, rank ranges only where informative (else 'not "
        "distinguishable'), drivers that add up to the published prediction, neutral wording only."
    ),
)
def published_area_explanations(duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.responsible.privacy import suppress_small_areas
    from wijk_assets.responsible.stigma import simulated_rank_text

    settings = load_settings()
    with duckdb.connect(read_only=True) as con:
        # Only explanations of the current model of each outcome, and only if it passed gate 3.
        passed = (
            "SELECT g.outcome, g.model_version FROM ml.model_gate g JOIN ml.model_runs r "
            "ON r.outcome = g.outcome AND r.model_version = g.model_version WHERE g.passed"
        )
        drivers = con.execute(f"SELECT d.* FROM ml.area_drivers d JOIN ({passed}) p USING (outcome, model_version)").df()
        residuals = con.execute(f"SELECT d.* FROM ml.area_residuals d JOIN ({passed}) p USING (outcome, model_version)").df()
        gate = con.execute("SELECT outcome, passed, problems FROM ml.model_gate").df()
        catalog = con.execute("SELECT feature, source FROM marts.feature_catalog").df()
        latest_year = con.execute("SELECT max(outcome_year) FROM marts.mart_wijk_training WHERE feature_year IS NOT NULL").fetchone()[0]
        training = con.execute(
            "SELECT * FROM marts.mart_wijk_training WHERE outcome_year = ?", [latest_year]
        ).df()
        population = con.execute(
            "SELECT area_code, inhabitants FROM marts.fct_area_features WHERE inhabitants IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY area_code ORDER BY year DESC) = 1"
        ).df().set_index("area_code")["inhabitants"] if _has_column(con, "marts.fct_area_features", "inhabitants") else None

    rivm = [f for f in catalog.loc[catalog["source"] == "rivm_gezondheid", "feature"] if f in training.columns]
    signal = small_area_signal(training, rivm)

    # Rank ranges from the simulated order of each wijk's score under its own calibrated interval
    # (explanations/area_residuals); only where informative, otherwise "not distinguishable".
    comparison = residuals.copy()
    texts = simulated_rank_text(comparison["rank_low"], comparison["rank_high"], comparison["n_ranked"],
                                comparison["rank_informative"])
    comparison = pd.concat([comparison, texts], axis=1)
    comparison["outcome_label"] = comparison["outcome"].map(lambda o: OUTCOME_LABELS.get(o, o))
    comparison = comparison[
        ["outcome", "outcome_label", "area_code", "gemeente_code", "outcome_year", "actual", "predicted",
         "lower", "upper", "nominal_coverage", "match_quality", "residual", "band", "flag",
         "rank_min", "rank_max", "n_ranked", "rank_range", "rank_note", "model_version"]
    ]
    drivers = drivers[
        ["outcome", "area_code", "year", "side", "rank", "feature", "label", "feature_value",
         "comparison_value", "comparison_label", "comparison_shown", "shap_value", "sentence", "feature_year",
         "model_version"]
    ]
    # A comparison value that the sentence does not show is not published either.
    drivers = drivers.assign(comparison_value=drivers["comparison_value"].where(drivers["comparison_shown"]))

    comparison, comparison_report = suppress_small_areas(
        comparison, population=population, threshold=settings.min_inhabitants,
        value_columns=["actual", "predicted", "lower", "upper", "residual", "flag", "rank_min", "rank_max",
                       "rank_range", "rank_note"],
        small_area_signal=signal,
    )
    drivers, drivers_report = suppress_small_areas(
        drivers, population=population, threshold=settings.min_inhabitants,
        value_columns=["feature_value", "comparison_value", "shap_value", "sentence"], small_area_signal=signal,
    )
    with duckdb.connect() as con:
        replace_table(con, "publish.area_drivers", drivers)
        replace_table(con, "publish.area_comparison", comparison)
        replace_table(
            con,
            "publish.suppression_log",
            pd.DataFrame(
                [
                    {"table": "publish.area_comparison", **_flat(comparison_report.to_metadata())},
                    {"table": "publish.area_drivers", **_flat(drivers_report.to_metadata())},
                ]
            ),
        )
    return dg.MaterializeResult(
        metadata={
            "min_inhabitants": settings.min_inhabitants,
            "suppression_comparison": dg.MetadataValue.json(comparison_report.to_metadata()),
            "suppression_drivers": dg.MetadataValue.json(drivers_report.to_metadata()),
            "rows_drivers": len(drivers),
            "rows_comparison": len(comparison),
            "outcomes_published": ", ".join(sorted(comparison["outcome"].unique())),
            "outcomes_withheld_by_gate_3": dg.MetadataValue.json(
                {r.outcome: r.problems for r in gate.itertuples(index=False) if not r.passed}
            ),
        }
    )


def _has_column(con, table: str, column: str) -> bool:
    return column in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}


def _flat(metadata: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in metadata.items()}


@dg.asset_check(
    asset=PUBLISH_KEY,
    name="no_judgemental_labels_or_sensitive_columns",
    blocking=True,
    pool=DUCKDB_POOL,
    description=(
        "Blocking: published tables contain no judgement labels for places (probleemwijk, worst, …) "
        "and no sensitive indicator (e.g. migration background) unless WIJK_SENSITIVE_OPT_IN lists it."
    ),
)
def publish_guard(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    from wijk_assets.responsible.stigma import check_no_judgemental_labels, check_no_sensitive_columns

    settings = load_settings()
    with duckdb.connect(read_only=True) as con:
        tables = {
            name: con.execute(f"SELECT * FROM {name}").df()
            for name in ("publish.area_drivers", "publish.area_comparison")
        }
        catalog = con.execute("SELECT feature AS column, sensitive FROM marts.feature_catalog").df()
    violations = check_no_judgemental_labels(tables) + check_no_sensitive_columns(
        tables, catalog, settings.sensitive_opt_in
    )
    return dg.AssetCheckResult(
        passed=not violations,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "violations": len(violations),
            "sample": dg.MetadataValue.json([v.to_dict() for v in violations[:20]]),
            "sensitive_opt_in": ", ".join(settings.sensitive_opt_in) or "none",
        },
    )


def run_facts(duckdb: WarehouseResource, run_id: str) -> dict:
    """Everything the register entry and model card state about this run, read from the warehouse."""
    from wijk_assets.catalog import load_catalog
    from wijk_assets.ml.training import load_artifact

    settings = load_settings()
    catalog = load_catalog()
    sources = []
    with duckdb.connect(read_only=True) as con:
        for source in MODEL_SOURCES:
            files = con.execute(
                f"SELECT DISTINCT source_file, source_sha256, release_year, cbs_table_id FROM raw.{source} "
                "ORDER BY release_year, source_file"
            ).df()
            spec = catalog[source]
            sources.append({
                "name": source,
                "title": spec.title,
                "publisher": spec.publisher,
                "licence": spec.licence,
                "cbs_table_ids": sorted({t for t in files["cbs_table_id"].dropna() if t}),
                "years": sorted(int(y) for y in files["release_year"].unique()),
                "files": [{"path": p, "sha256": s} for p, s in files[["source_file", "source_sha256"]].drop_duplicates().itertuples(index=False)],
                "level": ", ".join(spec.levels),
            })
        runs = con.execute(
            "SELECT r.*, g.passed AS gate_passed, g.problems AS gate_problems FROM ml.model_runs r "
            "LEFT JOIN ml.model_gate g ON g.outcome = r.outcome AND g.model_version = r.model_version "
            "ORDER BY r.outcome"
        ).df()
        suppression = con.execute("SELECT * FROM publish.suppression_log WHERE \"table\" = 'publish.area_comparison'").df()
    outcomes, features, params = [], set(), {}
    import lightgbm

    for run in runs.itertuples(index=False):
        metrics = json.loads(run.metrics)
        cv = metrics["grouped_cv"]
        artifact = load_artifact(run.artifact_path)
        features.update(json.loads(run.features))
        params[run.outcome] = json.loads(run.params)
        temporal = metrics.get("temporal") or {}
        outcomes.append({
            "outcome": run.outcome,
            "description": OUTCOME_LABELS.get(run.outcome, run.outcome)
            + ("" if run.gate_passed == True else f" - NOT PUBLISHED, quality gate 3: {run.gate_problems or 'not checked'}"),  # noqa: E712
            "validation": "5-fold cross-validation grouped by gemeente (no gemeente in both train and test)"
            + (f"; temporal check: trained before {temporal.get('test_year')}, tested on it, R² "
               f"{(temporal.get('lightgbm') or {}).get('r2', float('nan')):.3f}" if temporal.get("available") else ""),
            "n_areas": int(run.n_rows),
            "metrics": {k: float(cv["lightgbm"][k]) for k in ("r2", "mae", "rmse") if k in cv["lightgbm"]},
            "baselines": {
                name: {k: float(cv[name][k]) for k in ("r2", "mae") if k in cv[name]}
                for name in ("ridge", "mean") if name in cv
            },
        })
        del artifact
    row = suppression.iloc[0].to_dict() if not suppression.empty else {}
    from wijk_assets.responsible.stigma import opted_in_sensitive_columns

    return {
        "run_id": run_id,
        "code_version": code_version(),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gemeente": settings.gemeente,
        "area_level": "wijk",
        "classification_year": 2022,
        "sources": sources,
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
        },
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(REGISTER_KEY, deps=[MODEL_KEY, PUBLISH_KEY, CORRELATIONS_KEY, *[raw_asset_key(s) for s in MODEL_SOURCES]],
                     automation_condition=downstream_automation_condition(triggered_by=[PUBLISH_KEY]),
                     description="Algoritmeregister entry (Markdown + JSON) filled from configuration and this run."),
        dg.AssetSpec(MODEL_CARD_KEY, deps=[MODEL_KEY, PUBLISH_KEY],
                     automation_condition=downstream_automation_condition(triggered_by=[PUBLISH_KEY]),
                     description="Model card: intended and out-of-scope use, metrics with baselines, limitations."),
    ],
    group_name="reports",
    pool=DUCKDB_POOL,
    code_version="reports-1",
)
def register_and_model_card(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    from wijk_assets.responsible.register import (
        build_model_card,
        build_register_entry,
        register_json,
        render_register_markdown,
    )

    facts = run_facts(duckdb, context.run_id)
    entry = build_register_entry(facts)
    card = build_model_card(facts)
    out = reports_dir(duckdb)
    (out / "algorithm_register_entry.md").write_text(render_register_markdown(entry), encoding="utf-8")
    (out / "algorithm_register_entry.json").write_text(register_json(entry), encoding="utf-8")
    (out / "model_card.md").write_text(card, encoding="utf-8")
    with duckdb.connect() as con:
        replace_table(con, "reports.documents", pd.DataFrame([
            {"document": "algorithm_register_entry", "format": "json", "content": register_json(entry), "run_id": context.run_id},
            {"document": "algorithm_register_entry", "format": "markdown", "content": render_register_markdown(entry), "run_id": context.run_id},
            {"document": "model_card", "format": "markdown", "content": card, "run_id": context.run_id},
        ]))
    yield dg.MaterializeResult(
        asset_key=REGISTER_KEY,
        metadata={
            "path_markdown": dg.MetadataValue.path(str(out / "algorithm_register_entry.md")),
            "path_json": dg.MetadataValue.path(str(out / "algorithm_register_entry.json")),
            "code_version": facts["code_version"],
            "sources": len(facts["sources"]),
            "outcomes": len(facts["outcomes"]),
        },
    )
    yield dg.MaterializeResult(
        asset_key=MODEL_CARD_KEY,
        metadata={"path": dg.MetadataValue.path(str(out / "model_card.md")), "preview": dg.MetadataValue.md(card[:4000])},
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
    from wijk_assets.responsible.audit import audit_trail_rows

    rows = audit_trail_rows(context.instance)
    rows = rows.astype({c: "string" for c in rows.columns if rows[c].dtype == object})
    with duckdb.connect() as con:
        replace_table(con, "audit.audit_trail", rows)
    failed = int((rows["checks_passed"] == False).sum()) if "checks_passed" in rows else 0  # noqa: E712
    # The trail is a log of the instance, not a function of its inputs: version it by its content.
    content = hashlib.sha256(rows.to_csv(index=False).encode("utf-8")).hexdigest()
    return dg.MaterializeResult(
        metadata={"dagster/row_count": len(rows), "materialisations_with_failed_checks": failed},
        data_version=dg.DataVersion(content),
    )


report_assets = [coverage_report, published_area_explanations, register_and_model_card, audit_trail]
report_checks = [publish_guard]
