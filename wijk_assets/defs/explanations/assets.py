"""Explanation tables per outcome (SHAP), for the outcomes whose model passed gate 3.

The "t-shape": breadth (``global_importance`` over all drivers) and depth per wijk
(``shap_values``, ``area_drivers``, ``area_residuals``). Explanations are computed for each wijk's
latest outcome year, the picture a wijkanalyse starts from. SHAP values come from LightGBM's own
``pred_contrib`` (exact TreeSHAP; a test shows it equals ``shap.TreeExplainer`` and the benchmark shows
it is faster). Contributions that are exactly 0 (features the trees never split on) are not stored:
base value + the stored contributions still add up to the prediction.

Gate 3 (``models/model_gate_verdict``, :mod:`wijk_assets.defs.models.gate`) is an upstream asset: for an
outcome it withheld, the explanation partitions materialise empty (their earlier rows removed) with the
verdict and its reason in the metadata, a normal state rather than a failed run.
"""


import dagster as dg
import numpy as np
import pandas as pd

from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.resources import DUCKDB_POOL, SettingsResource, WarehouseResource
from wijk_assets.keys import (
    GATE_KEY,
    CORRELATIONS_KEY,
    DRIVERS_KEY,
    IMPORTANCE_KEY,
    MODEL_KEY,
    OUTCOMES,
    RESIDUALS_KEY,
    SHAP_KEY,
    TRAINING_KEY,
    outcome_partitions,
)
from wijk_assets.defs.models.gate import load_model_run, load_verdict
from wijk_assets.defs.column_lineage import explanation_lineage
from wijk_assets.defs.explanations.reuse import (
    INPUTS_VERSION_KEY,
    catalog_digest,
    inputs_version,
    reusable_results,
    training_rows_digest,
)
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.lib.warehouse import replace_partition, replace_table, sql_types

ADDITIVITY_TOLERANCE = 1e-6
# Drivers compare a wijk's value with the average over the wijk-years the model was trained on: that
# average is what the model's expectation (the SHAP base value) stands for.
COMPARISON_LABEL = "average of the wijken the model learned from"
RANK_SEED = 20240917
# The training mart's columns the explanations read besides the outcome and the model's features.
ROW_COLUMNS = ("area_code", "gemeente_code", "outcome_year", "feature_year", "match_rules", "n_buurten")
EXPLAIN_CODE_VERSION = "explain-2"


def latest_rows(frame: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Each wijk's most recent outcome year with a value for ``outcome``."""
    rows = frame[frame[outcome].notna()]
    latest = rows["outcome_year"].max()
    return rows[rows["outcome_year"] == latest].reset_index(drop=True)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(SHAP_KEY, deps=[MODEL_KEY, TRAINING_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="SHAP contribution per wijk x outcome x feature (long) from the model of the wijk's own fold, with base value and the published (out-of-fold) prediction."),
        dg.AssetSpec(IMPORTANCE_KEY, deps=[MODEL_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="Global importance per outcome: mean |SHAP|, rank and direction of effect."),
        # A driver's value is the model input in the training mart (its lineage goes on from there to the
        # feature table). Not the feature table itself: a release without training rows changes no
        # explanation, so that dependency only made the drivers "stale" after every such release while
        # nothing would ever run them (`wijk-assets status` said so and `refresh` did nothing). The mart is
        # not a trigger either: it changes only with a retraining, which the model's update brings.
        dg.AssetSpec(DRIVERS_KEY, deps=[MODEL_KEY, TRAINING_KEY, GATE_KEY],
                     automation_condition=downstream_automation_condition(triggered_by=[MODEL_KEY, GATE_KEY]),
                     description="Per wijk, the top drivers pushing the predicted score up and down, in plain language."),
        dg.AssetSpec(RESIDUALS_KEY, deps=[MODEL_KEY, GATE_KEY], automation_condition=downstream_automation_condition(), description="Actual vs out-of-fold predicted score with a prediction interval calibrated per match quality and wijk size (conformal, leave-one-gemeente-out); flagged only outside its interval; simulated rank ranges."),
    ],
    partitions_def=outcome_partitions,
    group_name="explanations",
    pool=DUCKDB_POOL,
    code_version=EXPLAIN_CODE_VERSION,
    can_subset=False,
)
def explanations(context: dg.AssetExecutionContext, duckdb: WarehouseResource, settings: SettingsResource):
    from wijk_assets.lib.ml.explain import area_drivers, area_residuals, global_importance, shap_long
    from wijk_assets.lib.ml.training import feature_matrix, fold_predictions, load_artifact, load_fold_models
    from wijk_assets.lib.ml.uncertainty import (
        NOMINAL_COVERAGE,
        calibration_groups,
        conformal_intervals,
        coverage_by_group,
        match_quality,
        simulated_rank_ranges,
        size_class,
    )

    outcome = context.partition_key
    run = load_model_run(duckdb, outcome)
    verdict = load_verdict(duckdb, outcome, run["model_version"])
    if verdict is None:
        raise dg.Failure(
            f"gate 3 has not judged the current {outcome} model ({run['model_version']}): materialise "
            f"models/model_gate_verdict [{outcome}] first"
        )
    if not verdict["passed"]:
        yield from _withheld(duckdb, outcome, run["model_version"], verdict["problems"])
        return
    # Once per model version: nothing they are made of changed -> keep the stored tables (see reuse.py).
    # Checked before anything is loaded: the digests are computed in DuckDB.
    with duckdb.connect(read_only=True) as con:
        version = inputs_version(EXPLAIN_CODE_VERSION, run["model_version"], verdict["passed"],
                                 training_rows_digest(con, outcome), catalog_digest(con), settings.gemeente)
    reused = reusable_results(context.instance, duckdb, outcome, version, EXPLANATION_TABLES, RESIDUAL_SIDE_TABLES)
    if reused is not None:
        context.log.info(f"{outcome}: explanation inputs unchanged ({version}); stored explanations kept")
        yield from reused
        return
    artifact = load_artifact(run["artifact_path"])
    frame, catalog = load_training_frame(duckdb, context.run.run_id, read_only_frame=True)  # selected from below

    # Every row the model was cross-validated on, in the order of its out-of-fold table; only the columns
    # used below (the mart has ~3x more columns than a model's features: copying them all cost ~2 s).
    used = list(dict.fromkeys([*ROW_COLUMNS, outcome, *artifact.features]))
    data = frame[used].loc[frame[outcome].notna().to_numpy()].reset_index(drop=True)  # not .loc[rows, cols]: 10x slower
    del frame
    oof = artifact.oof_predictions
    if len(oof) != len(data) or not (
        (oof["area_code"].astype(str).to_numpy() == data["area_code"].astype(str).to_numpy()).all()
        and (oof["outcome_year"].to_numpy() == data["outcome_year"].to_numpy()).all()
    ):
        raise dg.Failure(
            f"{outcome}: marts.mart_wijk_training no longer matches the model's out-of-fold table "
            f"({len(data)} vs {len(oof)} rows): re-materialise models/liveability_model[{outcome}]"
        )
    fold_models = load_fold_models(run["artifact_path"])  # only now: the reuse above needs none of them
    fold_of = oof["fold"].to_numpy()
    # The published prediction: each wijk's out-of-fold prediction, from the model of its own fold.
    X = feature_matrix(data, artifact.features)  # once: SHAP below explains rows of the same matrix
    predicted = fold_predictions(fold_models, X, fold_of)
    quality = match_quality(data["match_rules"])
    groups = calibration_groups(quality, size_class(data["n_buurten"]))
    intervals = conformal_intervals(data[outcome], predicted, groups, data["gemeente_code"], coverage=NOMINAL_COVERAGE,
                                    units=data["area_code"])

    year = int(data["outcome_year"].max())
    latest = (data["outcome_year"] == year).to_numpy()
    rows = data[latest].reset_index(drop=True)
    rows_fold = fold_of[latest]
    rows_X = pd.DataFrame(X[latest], columns=artifact.features)  # one float block: cheap to slice per fold

    parts = []
    for fold_no, booster in enumerate(fold_models):
        in_fold = rows_fold == fold_no
        if in_fold.any():
            part = rows[in_fold]
            parts.append(shap_long(booster, rows_X[in_fold], part[["area_code", "outcome_year"]], outcome))
    long = pd.concat(parts, ignore_index=True)
    base_pred = long.groupby("area_code", observed=True)[["base_value", "prediction"]].first()
    sums = long.groupby("area_code", observed=True)["shap_value"].sum()
    additivity = float(np.max(np.abs(sums + base_pred["base_value"] - base_pred["prediction"])))
    published_pred = pd.Series(predicted[latest], index=rows["area_code"].astype(str).to_numpy())
    prediction_diff = float(np.max(np.abs(base_pred["prediction"] - published_pred.reindex(base_pred.index.astype(str)).to_numpy())))
    stored = long[long["shap_value"] != 0].copy()
    for column in ("area_code", "outcome", "feature"):
        stored[column] = stored[column].astype(str)
    stored["model_version"] = run["model_version"]

    importance = global_importance(long)
    importance = importance.merge(catalog[["feature", "label", "source"]], on="feature", how="left")
    importance["model_version"] = run["model_version"]

    feature_year = int(rows["feature_year"].max())
    # The value SHAP compares with is the model's expectation over its training wijken, not a national
    # figure: the comparison value is the average over the wijk-years the model was trained on, shown only
    # where it agrees with the verb (see area_drivers).
    reference = data[artifact.features].mean(numeric_only=True)
    directions = dict(zip(importance["feature"], importance["direction"]))
    # Top 3 up and top 3 down per wijk: a resident sees both sides, not only what lowers the score.
    ups = area_drivers(long, catalog, reference, top_n=3, directions=directions, reference_label=COMPARISON_LABEL,
                       sign=1)
    downs = area_drivers(long, catalog, reference, top_n=3, directions=directions, reference_label=COMPARISON_LABEL,
                         sign=-1)
    drivers = pd.concat([ups.assign(side="up"), downs.assign(side="down")], ignore_index=True)
    drivers = drivers.rename(columns={"national_value": "comparison_value"})
    drivers["comparison_label"] = COMPARISON_LABEL
    # Per wijk: the release its features were taken as of (each source's latest release not after it).
    drivers = drivers.merge(rows[["area_code", "feature_year"]].astype({"feature_year": "int64"}), on="area_code", how="left")
    drivers["model_version"] = run["model_version"]

    residuals = area_residuals(
        rows[outcome].to_numpy(), predicted[latest], half_width=intervals["half_width"].to_numpy()[latest],
        ids=rows[["area_code", "gemeente_code", "outcome_year"]],
    )
    residuals["match_rules"] = rows["match_rules"].to_numpy()
    residuals["match_quality"] = quality.to_numpy()[latest]
    residuals["calibration_group"] = groups.to_numpy()[latest]
    residuals["nominal_coverage"] = NOMINAL_COVERAGE
    # The order of the wijken' scores under their own intervals (simulated from their groups' residuals).
    pool = pd.DataFrame({"group": groups.to_numpy(), "residual": data[outcome].to_numpy() - predicted}).dropna()
    ranks = simulated_rank_ranges(residuals["predicted"], residuals["calibration_group"], pool, seed=RANK_SEED)
    residuals = pd.concat([residuals, ranks[["rank_low", "rank_high", "n_ranked", "rank_share", "informative"]]
                           .rename(columns={"informative": "rank_informative"})], axis=1)
    residuals.insert(0, "outcome", outcome)
    residuals["model_version"] = run["model_version"]

    # The interval check: empirical coverage per calibration group and per match quality, over every
    # out-of-fold row and over the published (latest) year.
    coverage = []
    for scope, mask in (("all_years", np.ones(len(data), dtype=bool)), ("latest_year", latest)):
        for kind, labels in (("calibration_group", groups), ("match_quality", quality.fillna("unknown"))):
            table = coverage_by_group(data[outcome].to_numpy()[mask], intervals["lower"].to_numpy()[mask],
                                      intervals["upper"].to_numpy()[mask], labels.to_numpy()[mask])
            coverage.append(table.assign(scope=scope, grouping=kind))
    coverage = pd.concat(coverage, ignore_index=True)
    coverage["nominal_coverage"] = NOMINAL_COVERAGE
    coverage["model_version"] = run["model_version"]
    # Out-of-fold error per match rule (a row counts for every rule among its sources) and per quality.
    rule_errors = match_rule_errors(data[outcome].to_numpy() - predicted, data["match_rules"], quality)
    rule_errors["model_version"] = run["model_version"]

    written = {}
    with duckdb.connect() as con:
        for table, data in (
            ("ml.shap_values", stored),
            ("ml.global_importance", importance),
            ("ml.area_drivers", drivers),
            ("ml.area_residuals", residuals),
            ("ml.interval_coverage", coverage),
            ("ml.match_rule_errors", rule_errors),
        ):
            data = data.copy(deep=False)  # the column below is added to (or replaced in) this copy only
            data["outcome"] = outcome
            written[table] = replace_partition(con, table, [(data, {})], sql_types(data), {"outcome": outcome})

    focus = residuals[residuals["area_code"].str.startswith("WK" + settings.gemeente[2:])]

    def lineage(frame: pd.DataFrame) -> dict:
        """Column lineage: which model inputs (and through them which raw source keys) feed each column."""
        return {"dagster/column_lineage": explanation_lineage(frame.columns, artifact.features, outcome)}

    yield dg.MaterializeResult(
        asset_key=SHAP_KEY,
        metadata={
            INPUTS_VERSION_KEY: version,
            "dagster/row_count": written["ml.shap_values"],
            "dagster/table_name": "ml.shap_values",
            "areas_explained": int(rows.shape[0]),
            "outcome_year": year,
            "additivity_max_abs_error": additivity,
            "max_abs_diff_prediction_vs_published": prediction_diff,
            "method": "LightGBM pred_contrib (TreeSHAP) of each wijk's fold model (explains its out-of-fold prediction)",
            "model_version": run["model_version"],
            **lineage(stored),
        },
    )
    yield dg.MaterializeResult(
        asset_key=IMPORTANCE_KEY,
        metadata={
            INPUTS_VERSION_KEY: version,
            **lineage(importance),
            "dagster/row_count": written["ml.global_importance"],
            "dagster/table_name": "ml.global_importance",
            "top_10": dg.MetadataValue.md(
                importance.head(10)[["rank", "feature", "label", "mean_abs_shap", "direction_text"]].to_markdown(index=False)
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=DRIVERS_KEY,
        metadata={
            INPUTS_VERSION_KEY: version,
            **lineage(drivers),
            "dagster/row_count": written["ml.area_drivers"],
            "dagster/table_name": "ml.area_drivers",
            "feature_year": feature_year,
            "example_focus_gemeente": dg.MetadataValue.md(
                drivers[drivers["area_code"].str.startswith("WK" + settings.gemeente[2:])]
                .sort_values(["area_code", "side", "rank"])[["area_code", "side", "rank", "sentence"]]
                .head(30)
                .to_markdown(index=False)
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=RESIDUALS_KEY,
        metadata={
            INPUTS_VERSION_KEY: version,
            **lineage(residuals),
            "dagster/row_count": written["ml.area_residuals"],
            "dagster/table_name": "ml.area_residuals",
            "error_band_rmse": artifact.oof_rmse,
            "nominal_coverage": NOMINAL_COVERAGE,
            "flag_counts": dg.MetadataValue.json(residuals["flag"].value_counts().to_dict()),
            "rank_ranges_informative": int(residuals["rank_informative"].sum()),
            "interval_coverage": dg.MetadataValue.md(coverage.drop(columns=["model_version"]).to_markdown(index=False)),
            "oof_error_per_match_rule": dg.MetadataValue.md(rule_errors.drop(columns=["model_version"]).to_markdown(index=False)),
            "focus_gemeente": dg.MetadataValue.md(
                focus[["area_code", "actual", "predicted", "lower", "upper", "match_quality", "flag"]].to_markdown(index=False)
            ),
        },
    )


EXPLANATION_TABLES = {
    SHAP_KEY: "ml.shap_values",
    IMPORTANCE_KEY: "ml.global_importance",
    DRIVERS_KEY: "ml.area_drivers",
    RESIDUALS_KEY: "ml.area_residuals",
}
# Written with the residuals (interval coverage per group, out-of-fold error per match rule): they
# describe the published intervals, so they go when the outcome is withheld.
RESIDUAL_SIDE_TABLES = ("ml.interval_coverage", "ml.match_rule_errors")


def _withheld(duckdb: WarehouseResource, outcome: str, model_version: str, reason: str):
    """Gate 3 withheld the outcome: no explanations of it exist (earlier rows are removed), and each
    partition says so in its metadata. Not an error."""
    from wijk_assets.lib.warehouse import table_exists

    with duckdb.connect() as con:
        for table in [*EXPLANATION_TABLES.values(), *RESIDUAL_SIDE_TABLES]:
            if table_exists(con, table):
                con.execute(f"DELETE FROM {table} WHERE outcome = ?", [outcome])
    for key, table in EXPLANATION_TABLES.items():
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "verdict": "withheld",
                "reason": reason,
                "model_version": model_version,
                "dagster/row_count": 0,
                "dagster/table_name": table,
            },
        )


def match_rule_errors(residual, match_rules: pd.Series, quality: pd.Series) -> pd.DataFrame:
    """Rows and out-of-fold error per match rule (a row counts once for every rule among its sources)
    and per match quality class."""
    frame = pd.DataFrame({"residual": np.asarray(residual, dtype=float),
                          "match_rules": match_rules.to_numpy(), "match_quality": quality.to_numpy()})
    frame = frame[np.isfinite(frame["residual"])]
    per_rule = frame.assign(rule=frame["match_rules"].fillna("").str.split(",")).explode("rule")
    per_rule["rule"] = per_rule["rule"].str.split(":").str[-1].str.strip()
    out = []
    for kind, column, table in (("match_rule", "rule", per_rule), ("match_quality", "match_quality", frame)):
        for value, g in table.groupby(column, dropna=False):
            r = g["residual"].to_numpy()
            out.append({"grouping": kind, "value": str(value), "n_rows": int(r.size),
                        "rmse": float(np.sqrt(np.mean(r ** 2))), "mae": float(np.mean(np.abs(r)))})
    return pd.DataFrame(out)


@dg.asset(
    key=CORRELATIONS_KEY,
    deps=[TRAINING_KEY],
    group_name="explanations",
    pool=DUCKDB_POOL,
    code_version="explain-1",
    # Only after the training mart has new content: not requested together with every rebuild of the
    # mart (a release that adds no training row rebuilds it to the same content).
    automation_condition=downstream_automation_condition(triggered_by=[], triggered_after_update_by=[TRAINING_KEY]),
    description=(
        "Spearman correlation of every wijk feature with every Leefbaarometer outcome in the latest "
        "outcome year, with Benjamini-Hochberg q-values: the relations the models build on. "
        "Associations, not causes."
    ),
)
def correlations_table(duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.explain import correlations

    # only the latest outcome year of the health monitor's outcome: that is all the table is made of
    latest, catalog = load_training_frame(duckdb, latest_year_of="fys")
    own = [f for f in catalog["feature"] if f in latest.columns and not f.startswith(("gm__", "bu_"))]
    table = correlations(latest, own, [o for o in OUTCOMES if latest[o].notna().any()])
    table = table.merge(catalog[["feature", "label", "source"]], on="feature", how="left")
    table["outcome_year"] = int(latest["outcome_year"].iloc[0])
    with duckdb.connect() as con:
        rows = replace_table(con, "ml.correlations", table)
    significant = table[table["q_value"] < 0.05]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dagster/table_name": "ml.correlations",
            "pairs_tested": int(table["p_value"].notna().sum()),
            "pairs_q_below_0_05": len(significant),
            "strongest_for_lbm": dg.MetadataValue.md(
                table[table["outcome"] == "lbm"].reindex(table["rho"].abs().sort_values(ascending=False).index)
                .dropna(subset=["rho"]).head(10)[["feature", "label", "rho", "q_value"]].to_markdown(index=False)
            ),
        }
    )
