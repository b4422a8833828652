"""Gate 2: Great Expectations on ``marts.fct_area_features`` (blocking) and a year-over-year shift
check (warning only).

Sources cover different areas and years (the health monitor is national for 2012/2016/2020; KWB,
nabijheid and SES-WOA cover a few gemeenten), so a NULL ratio over the whole table says nothing. Each
feature is judged where its source delivered: the rows of the years it was published, in the gemeenten
for which that source has any value that year. Within that footprint at most ``MAX_NULL_RATIO`` of the
areas may lack the value (small-area suppression by the publisher is expected, a column that went
empty is not).

No ``from __future__ import annotations``: Dagster inspects the check's annotations at definition time.
"""

from dataclasses import dataclass

import dagster as dg
import pandas as pd

from wijk_assets.lib.quality.feature_gate import (
    GATED_LEVELS_SQL, LEVELS, feature_suite_spec, footprint_null_ratios, footprint_null_spec,
)
from wijk_assets.lib.quality.feature_shift import shift_since_last_publication
from wijk_assets.defs.resources import SettingsResource, WarehouseResource
from wijk_assets.keys import FEATURE_TABLE_KEY

MAX_NULL_RATIO = 0.5
KEYS = ["area_code", "area_level", "gemeente_code", "wijk_code", "year"]


def load_feature_table(duckdb: WarehouseResource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The feature table's rows at the gated levels (no 'land' rows), and the catalog."""
    with duckdb.connect(read_only=True) as con:
        features = con.execute(
            f"SELECT * FROM marts.fct_area_features WHERE {GATED_LEVELS_SQL}", list(LEVELS)
        ).df()
        catalog = con.execute("SELECT feature, source, label, unit, kind FROM marts.feature_catalog").df()
    return features, catalog


@dataclass
class FeatureGateVerdict:
    passed: bool
    metadata: dict
    reason: str  # one paragraph: what failed, or "all expectations met"
    failed_expectations: list[str]


def evaluate_feature_gate(duckdb: WarehouseResource, gemeente: str) -> FeatureGateVerdict:
    """Gate 2 on the table now under the name ``marts.fct_area_features``.

    The dbt step runs this on the table it just built, before it may replace the previous one (see
    :mod:`wijk_assets.lib.build_swap`); the blocking check below runs it again on the live table, so the
    UI's check history shows every verdict."""
    from wijk_assets.lib.quality.ge_runner import validate_frame

    # Keys only: the NULL ratios are computed in DuckDB (footprint_null_ratios), and no expectation
    # here reads a feature column (GE copies the frame it is given once per metric).
    with duckdb.connect(read_only=True) as con:
        areas = con.execute(
            f"SELECT area_code, area_level, gemeente_code, year FROM marts.fct_area_features WHERE {GATED_LEVELS_SQL}",
            list(LEVELS),
        ).df()
        n_rows = con.execute("SELECT count(*) FROM marts.fct_area_features").fetchone()[0]
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
            "AND table_name = 'fct_area_features'").fetchall()]
        catalog = con.execute("SELECT feature, source FROM marts.feature_catalog").df()
        null_ratios = footprint_null_ratios(con, "marts.fct_area_features", catalog)
    feature_cols = [c for c in columns if c not in KEYS]
    structural = validate_frame(
        areas[["area_code", "area_level", "year"]],
        # Keys, codes, levels and years; the feature columns' NULL ratios are gated per source footprint below.
        feature_suite_spec([], max_null_ratio={}, blocking_nulls=False),
    )
    results = {"structure": structural, "null ratios per source footprint": validate_frame(
        null_ratios, footprint_null_spec(MAX_NULL_RATIO))}

    # The municipality in focus must be present, in every year of a national source, at every level
    # that year holds (the national KWB 2024 extract has gemeenten and wijken, no buurten).
    focus = areas[areas["gemeente_code"] == gemeente]
    focus_counts = focus.groupby(["year", "area_level"]).size().unstack(fill_value=0)
    national_years = sorted(set(areas.loc[areas["area_level"] == "gemeente"].groupby("year").size().loc[lambda s: s > 300].index))
    year_levels = areas.groupby("year")["area_level"].agg(set)
    missing_focus = [
        int(y) for y in national_years
        if y not in focus_counts.index
        or any(focus_counts.loc[y].get(level, 0) == 0 for level in year_levels[y])
    ]

    failed = {k: r for k, r in results.items() if not r.success}
    reasons = [f"{k}: {r.summary()}" for k, r in failed.items()]
    if missing_focus:
        reasons.append(f"focus gemeente {gemeente} missing in {', '.join(map(str, missing_focus))}")
    metadata = {
        "rows": int(n_rows),
        "feature_columns": len(feature_cols),
        "batches_validated": len(results),
        "failed_batches": dg.MetadataValue.json({k: r.to_metadata() for k, r in failed.items()}),
        "summary": "; ".join(f"{k}: {r.summary()}" for k, r in failed.items()) or "all expectations met",
        f"{gemeente}_areas_per_year_level": dg.MetadataValue.json(
            {str(y): {k: int(v) for k, v in row.items()} for y, row in focus_counts.iterrows()}
        ),
        "focus_gemeente_missing_in_years": missing_focus,
    }
    return FeatureGateVerdict(
        passed=not failed and not missing_focus,
        metadata=metadata,
        reason="; ".join(reasons) or "all expectations met",
        failed_expectations=[e for r in failed.values() for e in r.failed_expectations()],
    )


@dg.asset_check(
    asset=FEATURE_TABLE_KEY,
    name="ge_gate_fct_area_features",
    blocking=True,
    pool="duckdb",
    description=(
        "Gate 2 (blocking): keys, one row per area and year, code formats per level, coverage of the "
        "municipality in focus, and NULL ratios per feature inside each source's footprint. The dbt step "
        "applies the same gate before its tables replace the previous ones; this check observes the live table."
    ),
)
def feature_table_gate(
    context: dg.AssetCheckExecutionContext, duckdb: WarehouseResource, settings: SettingsResource
) -> dg.AssetCheckResult:
    verdict = _VERDICT_OF_RUN.pop(_run_id(context), None)
    source = "the dbt step of this run, on the table it then swapped in"
    if verdict is None:  # another process, or the check run on its own: validate the live table
        verdict = evaluate_feature_gate(duckdb, settings.gemeente)
        source = "this check, on the live table"
    return dg.AssetCheckResult(
        passed=verdict.passed, severity=dg.AssetCheckSeverity.ERROR, metadata={**verdict.metadata, "validated_by": source}
    )


# The verdict the dbt step reached on the table it swapped in, by run id, for this run's check (same
# process, in-process executor): the table cannot have changed in between (both hold the duckdb pool,
# and any table under the name passed the gate before it got there), so it is not validated twice.
_VERDICT_OF_RUN: dict[str, FeatureGateVerdict] = {}


def _run_id(context: dg.AssetCheckExecutionContext) -> str | None:
    try:
        return context.run.run_id
    except dg.DagsterError:  # invoked directly, outside a run (no run to ask): nothing was remembered
        return None


def forget_run_verdicts() -> None:
    """Verdicts whose run is over (its check did not run in this process) are not needed any more."""
    _VERDICT_OF_RUN.clear()


def remember_passed_verdict(run_id: str, verdict: FeatureGateVerdict) -> None:
    if verdict.passed:
        _VERDICT_OF_RUN[run_id] = verdict


@dg.asset_check(
    asset=FEATURE_TABLE_KEY,
    name="feature_shift_since_previous_year",
    blocking=False,
    pool="duckdb",
    description=(
        "Warning only: per feature and level, how the distribution moved between the two latest years "
        "in which it was published (median shift in IQRs, PSI, KS, rank stability); and a source's new "
        "release that lacks features it published before while bringing columns the concept map does not "
        "know (a renamed column?)."
    ),
)
def feature_shift_check(duckdb: WarehouseResource) -> dg.AssetCheckResult:
    from wijk_assets.lib.quality.renamed_columns import possible_renames, renames_summary

    areas, catalog = load_feature_table(duckdb)
    feature_source = dict(zip(catalog["feature"], catalog["source"]))
    table, not_published = shift_since_last_publication(areas, feature_source)
    flagged = table[table["flagged"]] if not table.empty else table
    summary = []
    try:
        with duckdb.connect(read_only=True) as con:
            renames = possible_renames(con, not_published)
    except Exception as error:  # noqa: BLE001 - a warning's own failure must not fail the build it warns about
        renames = pd.DataFrame()
        summary.append(f"could not look for renamed columns: {type(error).__name__}: {error}")
    if not flagged.empty:
        summary.append(f"{len(flagged)} feature distribution(s) moved implausibly since their previous year "
                       f"(e.g. {', '.join(flagged['feature'].astype(str).unique()[:5])}); see flagged_features")
    if not renames.empty:
        summary.append(renames_summary(renames))
    return dg.AssetCheckResult(
        passed=not summary,  # a shift, a likely rename, or a lookup that failed: warn
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(summary) or "no implausible shift, no feature missing beside an unmapped new column",
        metadata={
            "summary": "\n".join(summary) or "none",
            "possible_renamed_columns": dg.MetadataValue.md(
                renames.assign(**{c: renames[c].map(lambda v: ", ".join(map(str, v)))
                                  for c in ("missing_features", "last_published", "new_unmapped_columns")})
                .to_markdown(index=False) if not renames.empty else "none"),
            "features_compared": len(table),
            "flagged": len(flagged),
            "not_published_in_latest_year": len(not_published),
            "flagged_features": dg.MetadataValue.md(
                flagged[["source", "years", "area_level", "feature", "median_shift_iqr", "psi", "ks", "spearman", "reasons"]]
                .round(3)
                .head(50)
                .to_markdown(index=False)
                if not flagged.empty
                else "none"
            ),
            "not_published_features": dg.MetadataValue.md(
                not_published.head(50).to_markdown(index=False) if not not_published.empty else "none"
            ),
        },
    )


feature_checks = [feature_table_gate, feature_shift_check]
