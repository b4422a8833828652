"""Change monitoring between releases: what moved, per area and per feature, and how the model holds up.

Tables in schema ``monitoring``:
- ``indicator_changes``: per wijk and indicator of EVERY source, the value in that source's two latest
  release years and the change (``source_releases`` lists each source's years, or why it had nothing
  to compare);
- ``prediction_changes``: per wijk, the predicted Leefbaarometer score from the previous release's
  features and from the latest release's features (same model), and the change;
- ``feature_drift``: per feature, the distribution shift between the two releases (PSI, SMD, KS);
- ``new_year_performance``: per outcome, how the previous model version does on outcome years after its
  own training cut-off (or ``available`` false with the reason when there is none: never an in-sample
  score), else the temporal hold-out in unseen gemeenten (trained on earlier years).
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.resources import DUCKDB_POOL, WarehouseResource
from wijk_assets.keys import CHANGES_KEY, FEATURE_CATALOG_KEY, FEATURE_TABLE_KEY, MODEL_KEY, TRAINING_KEY
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.lib.warehouse import replace_table

NATIONAL_SOURCE = "rivm_gezondheid"


def source_changes(features: pd.DataFrame, catalog: pd.DataFrame, *, national_source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-wijk indicator changes for every source (its features between its own two latest release
    years) and one summary row per source (years compared, or why nothing could be compared)."""
    from wijk_assets.lib.change_monitoring import indicator_changes

    tables, summary = [], []
    for source, group in catalog.groupby("source", sort=True):
        columns = [f for f in group["feature"] if f in features.columns]
        if source == national_source:
            columns = [f for f in columns if f.endswith("__18plus")] or columns
        if not columns:
            continue
        years = sorted(int(y) for y, g in features.groupby("year") if g[columns].notna().any().any())
        row = {"source": source, "release_years": ", ".join(map(str, years)), "n_indicators": len(columns)}
        if len(years) < 2:
            summary.append({**row, "year_prev": None, "year_latest": years[-1] if years else None,
                            "n_wijken": 0, "status": "one release only: nothing to compare yet"})
            continue
        prev, latest = years[-2], years[-1]
        table = indicator_changes(features, (prev, latest), columns, year_col="year")
        tables.append(table.assign(source=source, year_prev=prev, year_latest=latest))
        summary.append({**row, "year_prev": prev, "year_latest": latest,
                        "n_wijken": int(table["area_code"].nunique()), "status": "compared"})
    changes = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["area_code", "indicator", "value_prev", "value_latest", "abs_change", "rel_change", "status",
                 "source", "year_prev", "year_latest"])
    return changes, pd.DataFrame(summary)


def _previous_artifact(current_path: str) -> Path | None:
    """The newest other model version of the same outcome on disk, if any (trained on older data)."""
    current = Path(current_path)
    others = [p for p in current.parent.iterdir() if p.is_dir() and p != current and (p / "model.txt").exists()]
    return max(others, key=lambda p: p.stat().st_mtime) if others else None


# A release changes what this compares (a source's two latest releases, the predictions on the two
# latest feature years) whether or not it retrains a model: after a release that retrains nothing it
# follows the new feature table; after one that retrains, it runs once, after the models (not once on the
# features and again after the models; the same diamond as publish/area_explanations').
CHANGES_CONDITION = {
    "triggered_by": [MODEL_KEY],
    "triggered_after_update_by": [FEATURE_TABLE_KEY],
    "waits_for_retraining_on": [TRAINING_KEY, FEATURE_CATALOG_KEY],
}


@dg.asset(
    key=CHANGES_KEY,
    deps=[FEATURE_TABLE_KEY, TRAINING_KEY, MODEL_KEY, FEATURE_CATALOG_KEY],
    group_name="monitoring",
    pool=DUCKDB_POOL,
    code_version="monitoring-2",
    automation_condition=downstream_automation_condition(**CHANGES_CONDITION),
    description=(
        "Between the two latest releases: per-wijk indicator and predicted-score changes, per-feature "
        "drift, and each model's performance on the newest outcome year before retraining."
    ),
)
def release_changes(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.training import load_artifact
    from wijk_assets.lib.change_monitoring import feature_drift, performance_on_new_year, prediction_changes

    with duckdb.connect(read_only=True) as con:
        features = con.execute("SELECT * FROM marts.fct_area_features WHERE area_level = 'wijk'").df()
        catalog = con.execute("SELECT feature, source FROM marts.feature_catalog").df()
        runs = con.execute("SELECT outcome, artifact_path, metrics FROM ml.model_runs").df()
    national = [f for f in catalog.loc[catalog["source"] == NATIONAL_SOURCE, "feature"] if f in features.columns]
    years = sorted(y for y, g in features.groupby("year") if g[national].notna().any().any())
    if len(years) < 2:
        raise dg.Failure(f"need two release years of {NATIONAL_SOURCE} to compare, found {years}")
    prev, latest = years[-2], years[-1]
    drift = feature_drift(
        features[features["year"] == prev], features[features["year"] == latest], national
    )
    # Per-wijk changes for every source that released, not only the health monitor: each source's
    # features between its own two latest release years (health monitor: the 18+ figures). A source
    # with a single release is listed with the reason there is nothing to compare yet.
    changes, sources = source_changes(features, catalog, national_source=NATIONAL_SOURCE)

    # through the kept frame (see wijk_assets.defs.models.frame_cache): after the outcomes' runs of a build
    # the mart is not read again
    frame, _ = load_training_frame(duckdb, context.run.run_id, read_only_frame=True)  # rows are selected from it
    lbm = runs.set_index("outcome").loc["lbm"]
    model = load_artifact(lbm["artifact_path"])
    by_year = {}
    for year in (prev, latest):
        rows = frame[frame["feature_year"] == year].drop_duplicates("area_code", keep="last")
        by_year[year] = pd.DataFrame({"area_code": rows["area_code"], "prediction": model.predict(rows)})
    predictions = prediction_changes(by_year[prev], by_year[latest])

    performance = []
    for run in runs.itertuples(index=False):
        previous = _previous_artifact(run.artifact_path)
        if previous is not None:
            old = load_artifact(previous)
            # the previous model is scored only on outcome years after its own training cut-off
            cutoff = int(old.oof_predictions["outcome_year"].max()) if len(old.oof_predictions) else None
            rows = frame[frame[run.outcome].notna()]
            result = performance_on_new_year(old.predict, rows, run.outcome, training_cutoff=cutoff)
            performance.append({"outcome": run.outcome, "method": f"previous model {previous.name}", **result})
        else:
            temporal = json.loads(run.metrics).get("temporal") or {}
            unseen = temporal.get("unseen_gemeenten") or {}
            metrics = unseen.get("lightgbm") or {}
            performance.append({
                "outcome": run.outcome,
                "method": f"temporal hold-out: trained on years before {temporal.get('test_year')}, tested on "
                          "it in gemeenten not trained on (no earlier model version to score)",
                "available": bool(metrics), "n": metrics.get("n"), "r2": metrics.get("r2"),
                "mae": metrics.get("mae"), "rmse": metrics.get("rmse"),
            })
    performance = pd.DataFrame(performance)

    with duckdb.connect() as con:
        replace_table(con, "monitoring.indicator_changes", changes)
        replace_table(con, "monitoring.source_releases", sources)
        replace_table(con, "monitoring.prediction_changes", predictions.assign(feature_year_prev=prev, feature_year_latest=latest))
        replace_table(con, "monitoring.feature_drift", drift.assign(year_prev=prev, year_latest=latest))
        replace_table(con, "monitoring.new_year_performance", performance)

    flagged = drift[drift["flag"]] if "flag" in drift else drift.iloc[0:0]
    return dg.MaterializeResult(
        metadata={
            "years_compared": f"{prev} -> {latest}",
            "wijken_compared": int(changes["area_code"].nunique()) if len(changes) else 0,
            "sources_compared": dg.MetadataValue.md(sources.to_markdown(index=False)),
            "features_drifted": len(flagged),
            "drift_top": dg.MetadataValue.md(
                drift.head(10)[["column", "psi", "smd", "ks_statistic", "flag", "reasons"]].to_markdown(index=False)
            ),
            "median_abs_prediction_change": float(predictions["abs_change"].abs().median()),
            "new_year_performance": dg.MetadataValue.md(performance.to_markdown(index=False)),
        }
    )
