"""Benchmark: materialise every asset on the real data into a fresh DuckDB file and print the figures.

Usage:  .venv/bin/python bench/run_bench.py [--data-dir ../shared/data] [--keep]

Prints wall time per raw partition and per downstream step (dbt, gates, models, explanations), the
stage totals, the overall total, and peak RSS of this process and of its children (dbt runs as a
subprocess). Figures are printed, never asserted: timing belongs in a report, not in a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _stage(label: str) -> str:
    """Stage of a step, from its step key (checks first: their keys start with their asset's key)."""
    if label.startswith("raw/"):
        return "raw (incl. gate 1)"
    if "gate" in label or "check" in label or "no_judgemental" in label or "shift_since" in label:
        return "gates 2-3 + publish guard"
    if label.startswith("dbt"):
        return "dbt"
    if label.startswith("models__"):
        return "models"
    if label.startswith("explanations"):
        return "explanations"
    return "monitoring, publish, reports"


def _compare_explainers(settings) -> None:
    """pred_contrib vs shap.TreeExplainer on the same model and rows (the lbm model, latest year)."""
    from wijk_assets.defs.explanations.assets import latest_rows, load_model_run
    from wijk_assets.defs.models.assets import load_training_frame
    from wijk_assets.lib.ml.explain import compare_with_tree_explainer
    from wijk_assets.lib.ml.training import load_artifact
    from wijk_assets.defs.resources import WarehouseResource

    duckdb = WarehouseResource(path=str(settings.duckdb_path))
    artifact = load_artifact(load_model_run(duckdb, "lbm")["artifact_path"])
    frame, _ = load_training_frame(duckdb)
    rows = latest_rows(frame, "lbm")
    result = compare_with_tree_explainer(artifact.booster, rows[artifact.features])
    print(
        f"\nSHAP on {result['n_rows']} wijken x {result['n_features']} features (lbm model): "
        f"pred_contrib {result['seconds_pred_contrib']:.2f} s, shap.TreeExplainer "
        f"{result['seconds_tree_explainer']:.2f} s, max |difference| {result['max_abs_diff']:.2e}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="source folder (default ../shared/data)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import dagster as dg

    from wijk_assets.runner.materialize import materialize_all
    from wijk_assets.settings import load_settings

    workdir = Path(tempfile.mkdtemp(prefix="wijk_bench_"))
    db = workdir / "bench.duckdb"
    base = load_settings()
    data_dir = Path(args.data_dir).resolve() if args.data_dir else base.data_dir
    from dataclasses import replace

    settings = replace(base, data_dir=data_dir, duckdb_path=db, cbs_base_url=None)
    print(f"benchmark: data={data_dir} db={db} python={sys.version.split()[0]} cores={os.cpu_count()}")

    start = time.perf_counter()
    report = materialize_all(settings, instance=dg.DagsterInstance.ephemeral(), log=lambda *_: None)
    total = time.perf_counter() - start

    stages: dict[str, float] = defaultdict(float)
    print(f"\n{'step':<58} {'partition':>9} {'seconds':>8}  ok")
    for t in report.timings:
        print(f"{t.label:<58} {t.partition or '':>9} {t.seconds:8.2f}  {'yes' if t.success else 'NO'}")
        stages[_stage(t.label)] += t.seconds
    print("\nstage totals (sum of step wall times):")
    for stage, seconds in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {stage:<14} {seconds:8.2f} s")
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size_mb = db.stat().st_size / 1e6 if db.exists() else 0.0
    print(f"\ntotal wall time: {total:.1f} s")
    # A child's high-water mark starts at the parent's size when it is forked (before dbt is exec'd), so
    # the child figure is an upper bound of dbt's own memory, not a measurement of it.
    print(f"peak RSS: this process {self_rss:.0f} MiB, largest child (dbt, upper bound) {child_rss:.0f} MiB")
    print(f"database size: {size_mb:.1f} MB")
    print(f"all steps succeeded: {report.success}")
    if report.success:
        _compare_explainers(settings)
    if not args.keep:
        shutil.rmtree(workdir)  # the database and the model artefacts beside it
    else:
        print(f"kept: {db}")
    return 0 if report.success else 1


if __name__ == "__main__":
    sys.exit(main())
