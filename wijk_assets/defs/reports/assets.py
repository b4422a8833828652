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

from wijk_assets.defs.raw.assets import RAW_SOURCES, raw_asset_key
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import (
    GATE_KEY,
    AUDIT_KEY,
    CORRELATIONS_KEY,
    COVERAGE_KEY,
    DRIVERS_KEY,
    MODEL_CARD_KEY,
    MODEL_KEY,
    OUTCOME_LABELS,
    PUBLISH_KEY,
    REGISTER_KEY,
    RESIDUALS_KEY,
    RPT_COVERAGE_KEY,
    TRAINING_KEY,
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
# Official names of areas in published tables: exactly dim_area's (the label check skips them, a
# gemeente may be called "Best"; publish_guard checks they are the official names instead).
NAME_COLUMNS = ("area_name", "gemeente_name")


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
    deps=[DRIVERS_KEY, RESIDUALS_KEY, TRAINING_KEY, GATE_KEY],
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
def published_area_explanations(duckdb: WarehouseResource, settings: SettingsResource) -> dg.MaterializeResult:
    from wijk_assets.lib.responsible.privacy import suppress_small_areas
    from wijk_assets.lib.responsible.stigma import simulated_rank_text

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
        # Real inhabitants (KWB, latest year per area: the 2024 national release covers every wijk); the
        # stand-in (small_area_signal) only decides where no population is known.
        population_rows = con.execute(
            "SELECT area_code, value AS inhabitants, year, source, cbs_table_id FROM marts.fct_area_feature_values "
            "WHERE feature = 'inhabitants' AND value IS NOT NULL "
            "QUALIFY row_number() OVER (PARTITION BY area_code ORDER BY year DESC) = 1"
        ).df()
        population = population_rows.set_index("area_code")["inhabitants"] if not population_rows.empty else None
        names = con.execute(
            "SELECT area_code, area_name, gemeente_name FROM marts.dim_area"
        ).df()

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

    population_source = _population_source(population_rows, comparison["area_code"])
    comparison = _with_names(comparison, names)
    drivers = _with_names(drivers, names)
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
                    {"table": "publish.area_comparison", **_flat(comparison_report.to_metadata()),
                     "population_source": population_source},
                    {"table": "publish.area_drivers", **_flat(drivers_report.to_metadata()),
                     "population_source": population_source},
                ]
            ),
        )
    return dg.MaterializeResult(
        metadata={
            "min_inhabitants": settings.min_inhabitants,
            "population_source": population_source,
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


def _with_names(frame: pd.DataFrame, names: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the official area and gemeente names (dim_area) right after area_code."""
    out = frame.drop(columns=[c for c in NAME_COLUMNS if c in frame.columns]).merge(
        names, on="area_code", how="left"
    )
    first = [c for c in frame.columns if c not in NAME_COLUMNS]
    at = first.index("area_code") + 1
    return out[first[:at] + list(NAME_COLUMNS) + first[at:]]


def _population_source(population_rows: pd.DataFrame, published_codes: pd.Series) -> str:
    """'cbs_kwb 2024 (85984NED): 3,300 areas' for the areas a published table holds."""
    rows = population_rows[population_rows["area_code"].isin(set(published_codes))]
    if rows.empty:
        return "none: no inhabitants known for the published areas"
    parts = (
        rows.assign(table=rows["cbs_table_id"].fillna(""))
        .groupby(["source", "year", "table"]).size().sort_index(ascending=[True, False, True])
    )
    return "; ".join(
        f"{source} {year}{f' ({table})' if table else ''}: {n} areas" for (source, year, table), n in parts.items()
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
def publish_guard(duckdb: WarehouseResource, settings: SettingsResource) -> dg.AssetCheckResult:
    from wijk_assets.lib.responsible.stigma import check_no_judgemental_labels, check_no_sensitive_columns

    with duckdb.connect(read_only=True) as con:
        tables = {
            name: con.execute(f"SELECT * FROM {name}").df()
            for name in ("publish.area_drivers", "publish.area_comparison")
        }
        catalog = con.execute("SELECT feature AS column, sensitive FROM marts.feature_catalog").df()
        official = con.execute("SELECT area_code, area_name, gemeente_name FROM marts.dim_area").df()
    from wijk_assets.lib.responsible.stigma import Violation

    # Names are checked against dim_area instead of the label list (a gemeente is called "Best").
    name_violations = []
    for name, frame in tables.items():
        present = [c for c in NAME_COLUMNS if c in frame.columns]
        if not present:
            continue
        merged = frame[["area_code", *present]].merge(official, on="area_code", how="left", suffixes=("", "_official"))
        for column in present:
            differs = merged[column].notna() & (merged[column] != merged[f"{column}_official"])
            for row in merged.index[differs][:20]:
                name_violations.append(
                    Violation(name, column, int(row), "not_an_official_name", f"{merged.at[row, column]!r}")
                )
    unnamed = {name: frame.drop(columns=[c for c in NAME_COLUMNS if c in frame.columns]) for name, frame in tables.items()}
    violations = name_violations + check_no_judgemental_labels(unnamed) + check_no_sensitive_columns(
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


def run_facts(duckdb: WarehouseResource, run_id: str, settings: SettingsResource) -> dict:
    """Everything the register entry and model card state about this run, read from the warehouse."""
    from wijk_assets.lib.sources.catalog import load_catalog
    from wijk_assets.lib.responsible.model_sources import context_source_years, model_source_years

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
    context_sources = [source_fact(name, years) for name, years in describing.items()]
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

    facts = run_facts(duckdb, context.run_id, settings)
    config = load_register_config()
    entry = build_register_entry(facts, config)
    card = build_model_card(facts, config)
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
    from wijk_assets.defs.reports.audit import audit_trail_rows

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
