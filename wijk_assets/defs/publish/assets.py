"""Published tables: what a municipality may show residents.

``publish/area_explanations`` writes, per wijk, the drivers and the actual-vs-predicted comparison with
official names, small areas suppressed, rank *ranges* only where they are informative and no sensitive
indicator unless opted in. The publication guard (:func:`guard_violations`: no judgemental labels, no
sensitive column unless opted in, official area names) runs on the new tables *before* they replace the
published ones; a refusal keeps them in ``quarantine.publish__<table>`` and fails the asset. The blocking
check ``publish_guard`` runs the same guard on what is live.
"""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import (
    DIM_AREA_KEY,
    DRIVERS_KEY,
    FEATURE_CATALOG_KEY,
    FEATURE_VALUES_KEY,
    GATE_KEY,
    OUTCOME_LABELS,
    PUBLISH_KEY,
    RESIDUALS_KEY,
    TRAINING_KEY,
)
from wijk_assets.lib.warehouse import replace_tables

# Official names of areas in published tables: exactly dim_area's (the label check skips them, a
# gemeente may be called "Best"; publish_guard checks they are the official names instead).
NAME_COLUMNS = ("area_name", "gemeente_name")


def small_area_signal(training_latest: pd.DataFrame, own_rivm_features: list[str]) -> pd.Series:
    """True where the publisher suppressed every health-monitor figure of the wijk (too few people)."""
    values = training_latest.set_index("area_code")[own_rivm_features]
    return values.isna().all(axis=1)


@dg.asset(
    key=PUBLISH_KEY,
    deps=[DRIVERS_KEY, RESIDUALS_KEY, TRAINING_KEY, GATE_KEY, FEATURE_VALUES_KEY, FEATURE_CATALOG_KEY, DIM_AREA_KEY],
    group_name="publish",
    pool=DUCKDB_POOL,
    code_version="publish-2",
    # After the explanations, and after a release that retrains nothing: new feature values (the
    # inhabitants that decide suppression) or new areas and names (dim_area; new boundaries change it,
    # and the wijkbeeld, which follows this table, draws them). When a release retrains, once, after the
    # new explanations.
    automation_condition=downstream_automation_condition(
        triggered_by=[DRIVERS_KEY, RESIDUALS_KEY], may_be_missing=[DRIVERS_KEY, RESIDUALS_KEY],
        triggered_after_update_by=[FEATURE_VALUES_KEY, DIM_AREA_KEY],
        waits_for_retraining_on=[TRAINING_KEY, FEATURE_CATALOG_KEY],
    ),
    description=(
        "Resident-facing tables (publish.area_drivers, publish.area_comparison): small areas "
        "suppressed, calibrated prediction intervals, rank ranges only where informative (else 'not "
        "distinguishable'), drivers that add up to the published prediction, neutral wording only."
    ),
)
def published_area_explanations(context, duckdb: WarehouseResource, settings: SettingsResource) -> dg.MaterializeResult:
    # (``context`` is not annotated: with postponed annotations Dagster cannot check a string type hint)
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
        # the official names: written into the tables, and what the guard compares their names with
        guard_catalog, names = _guard_references(con)

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
    published = {"publish.area_drivers": drivers, "publish.area_comparison": comparison}
    # Validate, then swap: the guard runs on these tables before they replace the published ones.
    violations = guard_violations(published, guard_catalog, names, settings.sensitive_opt_in)
    if violations:
        _refuse(context, duckdb, published, violations)
    suppression_log = pd.DataFrame(
        [
            {"table": "publish.area_comparison", **_flat(comparison_report.to_metadata()),
             "population_source": population_source},
            {"table": "publish.area_drivers", **_flat(drivers_report.to_metadata()),
             "population_source": population_source},
        ]
    )
    with duckdb.connect() as con:
        replace_tables(con, {**published, "publish.suppression_log": suppression_log})
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
            "dagster/row_count": len(comparison),
            "preview_focus_gemeente": dg.MetadataValue.md(_preview(comparison, settings.gemeente)),
        }
    )


def _preview(comparison: pd.DataFrame, gemeente: str, rows: int = 20) -> str:
    """The published comparison of the gemeente in focus, as people will read it (rounded)."""
    focus = comparison[comparison["area_code"].astype(str).str.startswith("WK" + gemeente[2:])]
    columns = [c for c in ("outcome", "area_name", "actual", "predicted", "lower", "upper", "flag", "rank_range",
                           "rank_note") if c in focus.columns]
    if focus.empty:
        return f"no published wijk of {gemeente}"
    return focus[columns].head(rows).round(3).to_markdown(index=False)


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
    with duckdb.connect(read_only=True) as con:
        tables = {name: con.execute(f"SELECT * FROM {name}").df() for name in PUBLISHED_TABLES}
        catalog, official = _guard_references(con)
    violations = guard_violations(tables, catalog, official, settings.sensitive_opt_in)
    return dg.AssetCheckResult(
        passed=not violations,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "violations": len(violations),
            "sample": dg.MetadataValue.json([v.to_dict() for v in violations[:20]]),
            "sensitive_opt_in": ", ".join(settings.sensitive_opt_in) or "none",
        },
    )


PUBLISHED_TABLES = ("publish.area_drivers", "publish.area_comparison")


def _guard_references(con) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the guard compares against: which features are sensitive, and the official area names."""
    catalog = con.execute("SELECT feature AS column, sensitive FROM marts.feature_catalog").df()
    official = con.execute("SELECT area_code, area_name, gemeente_name FROM marts.dim_area").df()
    return catalog, official


def guard_violations(tables: dict[str, pd.DataFrame], catalog: pd.DataFrame, official: pd.DataFrame,
                     sensitive_opt_in: list[str]) -> list:
    """The publication guard: judgemental labels, sensitive indicators not opted in, unofficial names.

    Applied by the asset to the tables before they are written, and by ``publish_guard`` to what is live."""
    from wijk_assets.lib.responsible.stigma import Violation, check_no_judgemental_labels, check_no_sensitive_columns

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
    return name_violations + check_no_judgemental_labels(unnamed) + check_no_sensitive_columns(
        tables, catalog, sensitive_opt_in
    )


def _refuse(context: dg.AssetExecutionContext, duckdb: WarehouseResource, published: dict, violations: list):
    """The guard refused the new tables: keep them in quarantine, leave the published ones, fail."""
    from wijk_assets.lib.build_swap import BUILD_REJECTIONS_TABLE, reject_frames

    reason = f"{len(violations)} violation(s) of the publication guard, e.g. " + "; ".join(map(str, violations[:3]))
    with duckdb.connect() as con:
        kept = reject_frames(con, published, run_id=context.run.run_id, step=context.op_def.name,
                             stage="publish_guard", reason=reason, asset_keys=[PUBLISH_KEY.to_user_string()])
    raise dg.Failure(
        description=(
            f"the publication guard refused the new tables: {reason}. The published tables stay as they were; "
            f"the refused ones are in {', '.join(kept.values())} (run_id = '{context.run.run_id}', see "
            f"{BUILD_REJECTIONS_TABLE})."
        ),
        metadata={"violations": len(violations),
                  "sample": dg.MetadataValue.json([v.to_dict() for v in violations[:20]]),
                  "quarantined": dg.MetadataValue.json(kept)},
        allow_retries=False,
    )


publish_assets = [published_area_explanations]
publish_checks = [publish_guard]
