"""Change monitoring between releases: what moved, per area and per feature, and how the model holds up.

Tables in schema ``monitoring``:
- ``indicator_changes``: per wijk and health indicator, the value in the two latest national release
  years and the change;
- ``prediction_changes``: per wijk, the predicted Leefbaarometer score from the previous release's
  features and from the latest release's features (same model), and the change;
- ``feature_drift``: per feature, the distribution shift between the two releases (PSI, SMD, KS);
- ``new_year_performance``: per outcome, how a model that had not seen the latest outcome year does on
  it: the previous model version when one exists, else the temporal hold-out (trained on earlier years).
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd

from wijk_assets.defs.models.assets import load_training_frame
from wijk_assets.defs.raw.assets import DUCKDB_POOL
from wijk_assets.defs.resources import WarehouseResource
from wijk_assets.keys import CHANGES_KEY, FEATURE_TABLE_KEY, MODEL_KEY, TRAINING_KEY
from wijk_assets.defs.automation.conditions import downstream_automation_condition
from wijk_assets.lib.warehouse import replace_table

NATIONAL_SOURCE = "rivm_gezondheid"


def _previous_artifact(current_path: str) -> Path | None:
    """The newest other model version of the same outcome on disk, if any (trained on older data)."""
    current = Path(current_path)
    others = [p for p in current.parent.iterdir() if p.is_dir() and p != current and (p / "model.txt").exists()]
    return max(others, key=lambda p: p.stat().st_mtime) if others else None


@dg.asset(
    key=CHANGES_KEY,
    deps=[FEATURE_TABLE_KEY, TRAINING_KEY, MODEL_KEY],
    group_name="monitoring",
    pool=DUCKDB_POOL,
    code_version="monitoring-1",
    automation_condition=downstream_automation_condition(triggered_by=[MODEL_KEY]),  # after retraining, once
    description=(
        "Between the two latest releases: per-wijk indicator and predicted-score changes, per-feature "
        "drift, and each model's performance on the newest outcome year before retraining."
    ),
)
def release_changes(duckdb: WarehouseResource) -> dg.MaterializeResult:
    from wijk_assets.lib.ml.training import load_artifact
    from wijk_assets.lib.change_monitoring import feature_drift, indicator_changes, performance_on_new_year, prediction_changes

    with duckdb.connect(read_only=True) as con:
        features = con.execute("SELECT * FROM marts.fct_area_features WHERE area_level = 'wijk'").df()
        catalog = con.execute("SELECT feature, source FROM marts.feature_catalog").df()
        runs = con.execute("SELECT outcome, artifact_path, metrics FROM ml.model_runs").df()
    national = [f for f in catalog.loc[catalog["source"] == NATIONAL_SOURCE, "feature"] if f in features.columns]
    years = sorted(y for y, g in features.groupby("year") if g[national].notna().any().any())
    if len(years) < 2:
        raise dg.Failure(f"need two release years of {NATIONAL_SOURCE} to compare, found {years}")
    prev, latest = years[-2], years[-1]
    key_indicators = [f for f in national if f.endswith("__18plus")]
    changes = indicator_changes(features, (prev, latest), key_indicators, year_col="year")
    drift = feature_drift(
        features[features["year"] == prev], features[features["year"] == latest], national
    )

    frame, _ = load_training_frame(duckdb)
    lbm = runs.set_index("outcome").loc["lbm"]
    model = load_artifact(lbm["artifact_path"])
    by_year = {}
    for year in (prev, latest):
        rows = frame[frame["feature_year"] == year].drop_duplicates("area_code", keep="last")
        by_year[year] = pd.DataFrame({"area_code": rows["area_code"], "prediction": model.predict(rows)})
    predictions = prediction_changes(by_year[prev], by_year[latest])

    performance = []
    latest_outcome_year = int(frame["outcome_year"].max())
    for run in runs.itertuples(index=False):
        previous = _previous_artifact(run.artifact_path)
        if previous is not None:
            old = load_artifact(previous)
            new_rows = frame[(frame["outcome_year"] == latest_outcome_year) & frame[run.outcome].notna()]
            result = performance_on_new_year(old.predict, new_rows, run.outcome)
            performance.append({"outcome": run.outcome, "method": f"previous model {previous.name}", **result})
        else:
            temporal = json.loads(run.metrics).get("temporal") or {}
            metrics = temporal.get("lightgbm") or {}
            performance.append({
                "outcome": run.outcome,
                "method": f"temporal hold-out: trained before {temporal.get('test_year')}, tested on it",
                "n": metrics.get("n"), "r2": metrics.get("r2"), "mae": metrics.get("mae"), "rmse": metrics.get("rmse"),
            })
    performance = pd.DataFrame(performance)

    with duckdb.connect() as con:
        replace_table(con, "monitoring.indicator_changes", changes.assign(year_prev=prev, year_latest=latest))
        replace_table(con, "monitoring.prediction_changes", predictions.assign(feature_year_prev=prev, feature_year_latest=latest))
        replace_table(con, "monitoring.feature_drift", drift.assign(year_prev=prev, year_latest=latest))
        replace_table(con, "monitoring.new_year_performance", performance)

    flagged = drift[drift["flag"]] if "flag" in drift else drift.iloc[0:0]
    return dg.MaterializeResult(
        metadata={
            "years_compared": f"{prev} -> {latest}",
            "wijken_compared": int(changes["area_code"].nunique()),
            "features_drifted": len(flagged),
            "drift_top": dg.MetadataValue.md(
                drift.head(10)[["column", "psi", "smd", "ks_statistic", "flag", "reasons"]].to_markdown(index=False)
            ),
            "median_abs_prediction_change": float(predictions["abs_change"].abs().median()),
            "new_year_performance": dg.MetadataValue.md(performance.to_markdown(index=False)),
        }
    )
