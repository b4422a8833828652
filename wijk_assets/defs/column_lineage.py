"""Column-level lineage as Dagster metadata (``dagster/column_lineage``), from raw source keys to SHAP.

Raw tables are long (one row per area × source key, see :mod:`wijk_assets.lib.sources.base`), so a raw
"column" in this lineage is the **source file's own column key** (``Roker_11``, ``g_wozbag``, ``lbm``),
held in the raw table's ``measure_key`` column; an auditor reads "feature ``smokers_pct_18plus`` of
``marts/fct_area_features`` comes from ``Roker_11`` of ``raw/rivm_gezondheid``" in the Dagster UI's
column lineage and finds the rows with ``measure_key = 'Roker_11'``. Per-row lineage (file, sha256,
row) is in ``marts.fct_area_feature_values``.

The functions are pure: they take what the warehouse says (the feature catalog, a table's columns,
the model's feature list) and return :class:`dagster.TableColumnLineage`; the assets attach them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

from wijk_assets.defs.models.assets import CONTEXT_PREFIXES
from wijk_assets.keys import FEATURE_TABLE_KEY, OUTCOMES_KEY, TRAINING_KEY, raw_asset_key

LEEFBAAROMETER_KEY = raw_asset_key("leefbaarometer")

# the keys every raw table carries (area code and release year) feed these columns of the marts
AREA_KEY_COLUMNS = {"area_code": "area_code", "year": "release_year"}


def split_keys(text: str | None) -> list[str]:
    """``feature_catalog.source_measure_keys`` ('Roker_11 | Roker_12') -> ['Roker_11', 'Roker_12']."""
    return [k.strip() for k in (text or "").split("|") if k.strip()]


def feature_table_lineage(catalog: Iterable[Mapping[str, object]]) -> dg.TableColumnLineage:
    """``fct_area_features``: each feature column <- its source keys in ``raw/<source>``.

    ``catalog``: rows of ``marts.feature_catalog`` with ``feature``, ``source``, ``source_measure_keys``.
    """
    deps: dict[str, list[dg.TableColumnDep]] = {}
    sources: set[str] = set()
    for row in catalog:
        source = str(row["source"])
        sources.add(source)
        deps[str(row["feature"])] = [
            dg.TableColumnDep(raw_asset_key(source), key) for key in split_keys(row.get("source_measure_keys"))
        ]
    for column, raw_column in AREA_KEY_COLUMNS.items():
        deps[column] = [dg.TableColumnDep(raw_asset_key(s), raw_column) for s in sorted(sources)]
    return dg.TableColumnLineage(deps_by_column=deps)


def outcomes_lineage(outcomes: Sequence[str]) -> dg.TableColumnLineage:
    """``fct_liveability_outcomes``: each score <- the Leefbaarometer file's column of that name."""
    deps = {o: [dg.TableColumnDep(LEEFBAAROMETER_KEY, o)] for o in outcomes}
    deps["area_code"] = [dg.TableColumnDep(LEEFBAAROMETER_KEY, "area_code")]
    deps["year"] = [dg.TableColumnDep(LEEFBAAROMETER_KEY, "release_year")]
    return dg.TableColumnLineage(deps_by_column=deps)


def base_feature(column: str) -> str:
    for prefix in CONTEXT_PREFIXES:
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


def training_lineage(columns: Iterable[str], features: set[str], outcomes: Sequence[str]) -> dg.TableColumnLineage:
    """``mart_wijk_training``: a feature or its gemeente/buurt-spread context column <- that feature of
    ``fct_area_features``; an outcome <- ``fct_liveability_outcomes``."""
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for column in columns:
        if column in outcomes:
            deps[column] = [dg.TableColumnDep(OUTCOMES_KEY, column)]
        elif base_feature(column) in features:
            deps[column] = [dg.TableColumnDep(FEATURE_TABLE_KEY, base_feature(column))]
    if "area_code" in columns:
        deps["area_code"] = [dg.TableColumnDep(OUTCOMES_KEY, "area_code"), dg.TableColumnDep(FEATURE_TABLE_KEY, "area_code")]
    return dg.TableColumnLineage(deps_by_column=deps)


def explanation_lineage(
    table_columns: Iterable[str], model_features: Sequence[str], outcome: str
) -> dg.TableColumnLineage:
    """The explanation tables: every SHAP value, prediction and importance is a function of the model's
    input columns in ``mart_wijk_training``; ``actual`` is the outcome; ``feature_value`` (drivers) is
    the wijk's own value of a model input, read from ``mart_wijk_training`` (whose lineage goes on to
    ``fct_area_features``)."""
    inputs = [dg.TableColumnDep(TRAINING_KEY, f) for f in model_features]
    rules: dict[str, list[dg.TableColumnDep]] = {
        "shap_value": inputs,
        "prediction": inputs,
        "predicted": inputs,
        "base_value": [dg.TableColumnDep(TRAINING_KEY, outcome)],
        "mean_abs_shap": inputs,
        "feature_value": inputs,
        "actual": [dg.TableColumnDep(TRAINING_KEY, outcome)],
        "residual": [dg.TableColumnDep(TRAINING_KEY, outcome), *inputs],
        # intervals: the prediction plus a half-width calibrated on out-of-fold residuals of the outcome
        "lower": [dg.TableColumnDep(TRAINING_KEY, outcome), *inputs],
        "upper": [dg.TableColumnDep(TRAINING_KEY, outcome), *inputs],
        "match_quality": [dg.TableColumnDep(TRAINING_KEY, "match_rules")],
        # the average of each model input over the training rows
        "comparison_value": inputs,
        "area_code": [dg.TableColumnDep(TRAINING_KEY, "area_code")],
    }
    columns = set(table_columns)
    return dg.TableColumnLineage(deps_by_column={c: d for c, d in rules.items() if c in columns and d})


def lineage_summary(lineage: dg.TableColumnLineage) -> dict[str, int]:
    """Counts for metadata next to the lineage: columns with lineage and upstream columns they name."""
    deps = lineage.deps_by_column
    return {
        "columns_with_lineage": len(deps),
        "upstream_columns": len({(d.asset_key.to_user_string(), d.column_name) for ds in deps.values() for d in ds}),
    }


__all__ = [
    "base_feature",
    "explanation_lineage",
    "feature_table_lineage",
    "lineage_summary",
    "outcomes_lineage",
    "split_keys",
    "training_lineage",
]
