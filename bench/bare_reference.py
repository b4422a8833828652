"""Bare-compute reference: the pipeline's essential work without Dagster, dbt or Great Expectations.

Usage:  python bench/bare_reference.py [--data-dir ../shared/data] [--outcomes lbm,fys] [--json out.json]

What it does, on the real files, in one process:
  1. read every source file the catalog lists, with the project's own readers
     (``wijk_assets.lib.sources.read_source_file``: reading and parsing the files is essential work);
  2. build the wide wijk x outcome-year table the way the training mart does, in pandas:
     per Leefbaarometer outcome year the latest RIVM health-monitor year <= outcome year, at most
     MAX_FEATURE_LAG_YEARS older (dbt var ``max_feature_lag_years``); columns <feature> (the wijk's own
     value), gm__<feature> (its gemeente), bu_sd__/bu_min__/bu_max__<feature> (spread over its buurten)
     and n_buurten, feature names from the concept map and subgroup map seeds of the dbt project;
  3. per outcome (lbm fys onv soc vrz won): 5-fold CV grouped by gemeente with LightGBM and the ridge
     baseline on the same folds, a final fit on all rows, and SHAP values (``pred_contrib``, exact
     TreeSHAP) for the latest outcome year.
It prints seconds per step, the total, peak memory (PSS) and per-outcome grouped-CV R² (LightGBM and ridge), so
the pipeline's time and quality can be compared with it (``bench/run_bench.py`` runs it first).

Shared with the pipeline, imported (no copy): the readers, LightGBM's base parameters and one candidate
of the tuning grid (``wijk_assets.lib.ml.training``: BASE_PARAMS via ``resolve_params``, DEFAULT_GRID),
the grouped folds and metrics (``lib.ml.validation``) and the ridge baseline pipeline
(``lib.ml.training.ridge_pipeline``). None of these import Dagster, dbt or GE.

Simplifications against the pipeline (deliberate: they are not essential compute, or do not change
what the model sees on the shared data):
  * features come from the RIVM health monitor only. The other feature sources are read (step 1) but
    do not reach the table: KWB 2023 is newer than every outcome year; CBS nabijheid (10 gemeenten)
    and SES-WOA (Amsterdam) cover a few percent of the wijken, so the pipeline's feature selection
    drops their columns (missing on more than half of the rows) anyway. The municipality survey is
    never a feature.
  * wijken are matched on the exact code (RIVM's 2020 layout vs the Leefbaarometer's 2022 layout); the
    pipeline also links renamed/merged wijken (int_area_code_harmonisation). Wijk-years without an
    exact match are left out, as the pipeline leaves out wijk-years without own features.
  * gemeente context is the gemeente with the same code (no merger crosswalk, no mean over former
    gemeenten).
  * no tuning: one fixed candidate of the pipeline's grid (``--params``, default ``medium``) instead of
    choosing among 4 candidates x 3 round checkpoints; no temporal hold-out, no mean baseline, no
    artefacts, no database. Feature selection keeps the pipeline's rules that matter here (missing on
    at most 50 % of the outcome's rows, not constant); there is no catalog/sensitivity check because
    no RIVM indicator is marked sensitive.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rss import MIB, TreeRssSampler  # noqa: E402

from wijk_assets.lib.ml.training import DEFAULT_GRID, OUTCOMES, resolve_params, ridge_pipeline  # noqa: E402
from wijk_assets.lib.ml.validation import grouped_folds, regression_metrics  # noqa: E402
from wijk_assets.lib.sources import read_source_file  # noqa: E402
from wijk_assets.lib.sources.base import key_stem  # noqa: E402
from wijk_assets.lib.sources.catalog import find_source_files, source_names  # noqa: E402

SEEDS_DIR = REPO / "dbt_project" / "seeds"
MAX_FEATURE_LAG_YEARS = 4  # dbt_project.yml vars.max_feature_lag_years
FEATURE_SOURCE = "rivm_gezondheid"
OUTCOME_SOURCE = "leefbaarometer"
# The pipeline's seed (wijk_assets/defs/models/assets.py SEED; not imported: that module imports Dagster).
PIPELINE_SEED = 20240917
MAX_MISSING = 0.5  # select_features(max_missing=0.5) in the model asset
ORCHESTRATION_MODULES = ("dagster", "dagster_dbt", "dbt", "great_expectations", "duckdb")
KEYS = ["area_code", "gemeente_code", "outcome_year", "feature_year"]


class Steps:
    """Wall time per named step, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def mark(self, name: str, started: float) -> float:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - started
        return now

    @property
    def total(self) -> float:
        return time.perf_counter() - self._start


# ------------------------------------------------------------------------------------------- reading


def parse_numbers(text: pd.Series) -> np.ndarray:
    """Cell text -> float the way the dbt macro parse_number does ('.', 'NA', '' -> NaN; '1.234,5' and
    '12,5' -> comma decimals; '-' (nihil) -> 0)."""
    s = text.astype("string").str.strip()
    both = s.str.contains(",", regex=False) & s.str.contains(".", regex=False)
    s = s.where(~both, s.str.replace(".", "", regex=False))
    s = s.str.replace(",", ".", regex=False)
    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values[(s.isin(["-", "–"])).to_numpy(dtype=bool, na_value=False)] = 0.0
    return values


def feature_names_of(frame: pd.DataFrame, concepts: pd.DataFrame, suffixes: dict[str, str]) -> pd.Series:
    """<concept>__<age-group suffix> per raw row (NaN for unmapped or 'ignore' measures), from the seeds."""
    mapped = concepts[(concepts["source"] == FEATURE_SOURCE) & (concepts["kind"] != "ignore")]
    concept_of = dict(zip(mapped["measure_key_stem"], mapped["concept"]))
    keys = pd.Series(frame["measure_key"].unique())
    stems = {k: concept_of.get(key_stem(k)) for k in keys}
    concept = frame["measure_key"].map(stems)
    suffix = frame["subgroup"].fillna("").map(suffixes)
    return (concept + "__" + suffix).where(concept.notna() & suffix.notna())


def rivm_wide(frame: pd.DataFrame, concepts: pd.DataFrame, suffixes: dict[str, str]) -> pd.DataFrame:
    """One RIVM file (long raw layout) -> area_code x feature, numbers."""
    feature = feature_names_of(frame, concepts, suffixes)
    keep = feature.notna().to_numpy()
    area = frame["area_code"].astype("string").str.strip().str.upper()[keep]
    long = pd.DataFrame({"area_code": area.to_numpy(), "feature": feature[keep].to_numpy(),
                         "value": parse_numbers(frame["value_raw"][keep])})
    return long.set_index(["area_code", "feature"])["value"].unstack("feature")


def outcomes_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Leefbaarometer long raw rows -> one row per wijk x year with lbm fys onv soc vrz won."""
    keep = frame["measure_key"].isin(OUTCOMES).to_numpy()
    long = pd.DataFrame({
        "area_code": frame["area_code"].astype("string").str.strip().str.upper()[keep].to_numpy(),
        "outcome_year": frame["release_year"][keep].astype(int).to_numpy(),
        "measure": frame["measure_key"][keep].to_numpy(),
        "value": parse_numbers(frame["value_raw"][keep]),
    })
    wide = long.set_index(["area_code", "outcome_year", "measure"])["value"].unstack("measure").reset_index()
    wide.columns.name = None
    wide["gemeente_code"] = "GM" + wide["area_code"].str[2:6]
    return wide


def read_sources(data_dir: Path, steps: Steps, log) -> tuple[dict[int, pd.DataFrame], pd.DataFrame]:
    """Read every catalogued file; keep RIVM (wide per year) and the Leefbaarometer outcomes."""
    concepts = pd.read_csv(SEEDS_DIR / "concept_map.csv", dtype=str)
    subgroups = pd.read_csv(SEEDS_DIR / "subgroup_map.csv", dtype=str, keep_default_na=False)
    suffixes = dict(zip(subgroups.loc[subgroups["source"] == FEATURE_SOURCE, "subgroup"],
                        subgroups.loc[subgroups["source"] == FEATURE_SOURCE, "suffix"]))
    rivm_parts: dict[int, list[pd.DataFrame]] = {}
    outcomes = None
    for source in source_names():
        started = time.perf_counter()
        files = find_source_files(source, data_dir)
        rows = 0
        for source_file in files:
            extract = read_source_file(source_file)
            rows += len(extract.frame)
            if source == FEATURE_SOURCE:
                for year in extract.years():
                    part = extract.frame[extract.frame["release_year"] == year]
                    rivm_parts.setdefault(year, []).append(rivm_wide(part, concepts, suffixes))
            elif source == OUTCOME_SOURCE:
                outcomes = outcomes_wide(extract.frame)
            del extract  # the long raw frames are not kept (one file in memory at a time)
        steps.mark(f"read {source}", started)
        log(f"  read {source:<16} {len(files):>2} files {rows:>9,} raw rows {time.perf_counter() - started:7.2f} s")
    if outcomes is None or not rivm_parts:
        raise SystemExit(f"{data_dir}: no Leefbaarometer or no RIVM files found (see catalog.yaml)")
    rivm = {year: pd.concat(parts, axis=1) for year, parts in sorted(rivm_parts.items())}
    return rivm, outcomes


# ------------------------------------------------------------------------------------ the wide table


def area_blocks(wide: pd.DataFrame) -> pd.DataFrame:
    """Per wijk of one RIVM year: own values, gm__ context, bu_sd/min/max spread over its buurten, n_buurten."""
    codes = wide.index.to_series()
    features = list(wide.columns)
    own = wide[codes.str.startswith("WK").to_numpy()]
    gm = wide[codes.str.startswith("GM").to_numpy()].add_prefix("gm__")
    buurten = wide[codes.str.startswith("BU").to_numpy()]
    parent = "WK" + buurten.index.str[2:8]
    grouped = buurten.groupby(parent)
    spread = pd.concat(
        [grouped.std(ddof=1).add_prefix("bu_sd__"), grouped.min().add_prefix("bu_min__"),
         grouped.max().add_prefix("bu_max__")], axis=1)
    spread.insert(0, "n_buurten", grouped.size().astype(np.float64))
    block = own.join(spread, how="left")
    block["gemeente_code"] = "GM" + block.index.str[2:6]
    block = block.join(gm, on="gemeente_code", how="left").drop(columns="gemeente_code")
    block.index.name = "area_code"
    ordered = (["n_buurten"] + features + [f"gm__{f}" for f in features]
               + [f"{p}__{f}" for p in ("bu_sd", "bu_min", "bu_max") for f in features])
    return block[[c for c in ordered if c in block.columns]]


def feature_year_of(outcome_year: int, feature_years: list[int]) -> int | None:
    """The latest feature year <= outcome year within the lag window (the mart's ASOF JOIN)."""
    usable = [y for y in feature_years if y <= outcome_year and outcome_year - y <= MAX_FEATURE_LAG_YEARS]
    return max(usable) if usable else None


def training_table(rivm: dict[int, pd.DataFrame], outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per Leefbaarometer wijk x outcome year with an exact-code RIVM match in its feature year."""
    years = sorted(rivm)
    blocks = {year: area_blocks(wide) for year, wide in rivm.items()}
    parts = []
    for outcome_year, rows in outcomes.groupby("outcome_year"):
        feature_year = feature_year_of(outcome_year, years)
        if feature_year is None:
            continue
        block = blocks[feature_year]
        rows = rows[rows["area_code"].isin(block.index)]
        features = block.loc[rows["area_code"].to_numpy()].reset_index(drop=True)
        keys = rows[["area_code", "gemeente_code", "outcome_year"]].reset_index(drop=True)
        keys["feature_year"] = feature_year
        parts.append(pd.concat([keys, features, rows[list(OUTCOMES)].reset_index(drop=True)], axis=1))
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------- models


def select_columns(data: pd.DataFrame) -> list[str]:
    """Numeric columns other than keys/outcomes, missing on at most MAX_MISSING of the rows, not constant."""
    candidates = [c for c in data.columns if c not in KEYS and c not in OUTCOMES]
    values = data[candidates]
    missing = values.isna().mean()
    distinct = values.nunique(dropna=True)
    return [c for c in candidates if missing[c] <= MAX_MISSING and distinct[c] >= 2]


def candidate_params(name: str) -> dict:
    for candidate in DEFAULT_GRID:
        if candidate.get("name") == name:
            return dict(candidate)
    raise SystemExit(f"--params {name!r}: not in the tuning grid ({', '.join(c['name'] for c in DEFAULT_GRID)})")


def ridge_predict(X_train, y_train, X_test, groups_train, seed: int) -> np.ndarray:
    """The pipeline's ridge baseline: alpha chosen on 3 grouped inner folds, one BLAS thread."""
    inner = grouped_folds(pd.DataFrame({"g": groups_train}), "g", n_splits=3, seed=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return ridge_pipeline(cv=inner).fit(X_train, y_train).predict(X_test)


def model_outcome(table: pd.DataFrame, outcome: str, params: dict, seed: int, steps: Steps) -> dict:
    data = table[table[outcome].notna()].reset_index(drop=True)
    features = select_columns(data)
    X = np.ascontiguousarray(data[features].to_numpy(dtype=np.float64, na_value=np.nan))
    y = data[outcome].to_numpy(dtype=np.float64)
    groups = data["gemeente_code"].to_numpy()
    native, rounds = resolve_params(params, seed)
    folds = grouped_folds(data, "gemeente_code", 5, seed)

    started = time.perf_counter()
    oof_lgb = np.full(len(y), np.nan)
    for train, test in folds:
        booster = lgb.train(native, lgb.Dataset(X[train], label=y[train]), num_boost_round=rounds)
        oof_lgb[test] = booster.predict(X[test])
    started = steps.mark(f"{outcome}: lightgbm 5-fold CV", started)
    oof_ridge = np.full(len(y), np.nan)
    for train, test in folds:
        oof_ridge[test] = ridge_predict(X[train], y[train], X[test], groups[train], seed)
    started = steps.mark(f"{outcome}: ridge 5-fold CV", started)
    final = lgb.train(native, lgb.Dataset(X, label=y), num_boost_round=rounds)
    started = steps.mark(f"{outcome}: final fit", started)
    latest = data["outcome_year"].to_numpy() == data["outcome_year"].max()
    contrib = final.predict(X[latest], pred_contrib=True)
    steps.mark(f"{outcome}: SHAP (pred_contrib)", started)
    additivity = float(np.max(np.abs(contrib.sum(axis=1) - final.predict(X[latest]))))
    return {
        "outcome": outcome,
        "rows": len(y),
        "features": len(features),
        "latest_year": int(data["outcome_year"].max()),
        "shap_rows": int(latest.sum()),
        "shap_additivity_max_abs": additivity,
        "cv_r2_lightgbm": regression_metrics(y, oof_lgb)["r2"],
        "cv_r2_ridge": regression_metrics(y, oof_ridge)["r2"],
        "rounds": rounds,
    }


# --------------------------------------------------------------------------------------------- main


def run(data_dir: Path, outcomes: list[str], params_name: str, seed: int, log=print) -> dict:
    params = candidate_params(params_name)
    steps = Steps()
    with TreeRssSampler() as sampler:
        log(f"bare reference: data={data_dir} outcomes={','.join(outcomes)} params={params_name} seed={seed}")
        rivm, outcome_rows = read_sources(data_dir, steps, log)
        started = time.perf_counter()
        table = training_table(rivm, outcome_rows)
        del rivm, outcome_rows
        steps.mark("build wide wijk-year table", started)
        log(f"  wide table: {len(table):,} wijk-years x {table.shape[1]} columns, "
            f"outcome years {sorted(table['outcome_year'].unique().tolist())}")
        results = []
        for outcome in outcomes:
            result = model_outcome(table, outcome, params, seed, steps)
            results.append(result)
            log(f"  {outcome}: {result['rows']:,} rows, {result['features']} features, grouped-CV R² "
                f"LightGBM {result['cv_r2_lightgbm']:.4f} ridge {result['cv_r2_ridge']:.4f}; SHAP for "
                f"{result['shap_rows']:,} wijken ({result['latest_year']}), additivity {result['shap_additivity_max_abs']:.1e}")
        total = steps.total
        peak = sampler.overall_peak_bytes
    self_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # the point of the reference: none of the orchestration stack was even imported
    imported = sorted(m for m in ORCHESTRATION_MODULES if m in sys.modules)
    return {"orchestration_modules_imported": imported, "total_seconds": total, "steps": steps.seconds, "outcomes": results, "peak_rss_bytes": peak,
            "ru_maxrss_self_bytes": self_maxrss, "params": params_name, "seed": seed,
            "table_shape": list(table.shape)}


def print_summary(result: dict, log=print) -> None:
    log(f"\n{'step':<44} {'seconds':>8}")
    for name, seconds in result["steps"].items():
        log(f"{name:<44} {seconds:8.2f}")
    log(f"{'total':<44} {result['total_seconds']:8.2f}")
    log(f"peak memory (sampled, process tree, PSS): {result['peak_rss_bytes'] / MIB:.0f} MiB"
        f" (ru_maxrss of this process: {result['ru_maxrss_self_bytes'] / MIB:.0f} MiB)")
    imported = result["orchestration_modules_imported"]
    log(f"imported of dagster/dbt/great_expectations/duckdb: {', '.join(imported) if imported else 'none'}")
    log(f"\n{'outcome':<8} {'rows':>6} {'features':>8} {'R2 lightgbm':>12} {'R2 ridge':>9}")
    for r in result["outcomes"]:
        log(f"{r['outcome']:<8} {r['rows']:>6} {r['features']:>8} {r['cv_r2_lightgbm']:>12.4f} {r['cv_r2_ridge']:>9.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="source folder (default: the project's, ../shared/data)")
    parser.add_argument("--outcomes", default=",".join(OUTCOMES), help="comma-separated subset of the outcomes")
    parser.add_argument("--params", default="medium", help="candidate of the pipeline's tuning grid to fit")
    parser.add_argument("--seed", type=int, default=PIPELINE_SEED)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.data_dir:
        data_dir = Path(args.data_dir).resolve()
    else:
        from wijk_assets.settings import load_settings

        data_dir = load_settings().data_dir
    outcomes = [o.strip() for o in args.outcomes.split(",") if o.strip()]
    unknown = sorted(set(outcomes) - set(OUTCOMES))
    if unknown:
        parser.error(f"unknown outcomes {unknown}; choose from {', '.join(OUTCOMES)}")
    result = run(data_dir, outcomes, args.params, args.seed)
    print_summary(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
