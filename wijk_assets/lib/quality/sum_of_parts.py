"""Plausibility rule for gate 1: the wijken of a gemeente add up to the gemeente's own figure.

CBS publishes wijk counts rounded (inhabitants to multiples of 5 since KWB 2021: each wijk may be off by
a few people) and counts some residents (without a fixed address, in registration) at gemeente level
only. So the sum of a gemeente's wijken may differ from the gemeente figure by at most

    rounding * n_wijken + relative_tolerance * gemeente_value

(KWB 2024, 342 gemeenten: the largest gap is Velsen GM0453, 61 inhabitants over 10 wijken, 0.09% of
68,000; every gemeente with one wijk is off by at most 4). A gemeente whose wijken add up to something
else means a shifted column, a wijk missing from the file, a wijk loaded twice or a damaged copy.

:func:`add_sum_of_parts_columns` adds, on the gemeente rows of the concept, the columns a GE suite
checks (``expect_column_values_to_be_between(parts_excess, max_value=0)``): ``parts_sum``,
``parts_n``, ``parts_allowed`` and ``parts_excess`` (|sum - gemeente| - allowed, > 0 = implausible).
Every other row gets NaN (GE skips nulls). A gemeente is checked only when the same file and year holds
at least one of its wijken and all of them have a number (a suppressed wijk makes the sum unknowable).

Self-contained on purpose: it needs only the derived columns of ``prepare_raw_for_validation``
(``area_code_clean``, ``level``, ``gemeente_code``, ``measure_concept``, ``value_num``). Pure pandas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SUM_OF_PARTS_COLUMNS = ("parts_sum", "parts_n", "parts_allowed", "parts_excess")
GROUP_COLUMNS = ("release_year", "source_file", "subgroup")


def add_sum_of_parts_columns(
    frame: pd.DataFrame,
    *,
    concept: str,
    rounding: float = 5.0,
    relative_tolerance: float = 0.001,
    parent_level: str = "gemeente",
    child_level: str = "wijk",
) -> pd.DataFrame:
    """``frame`` with the four ``parts_*`` columns (see the module docstring)."""
    out = frame.copy()
    for name in SUM_OF_PARTS_COLUMNS:
        out[name] = np.nan
    groups = [c for c in GROUP_COLUMNS if c in out.columns]
    concept_rows = out["measure_concept"].astype(object).eq(concept).to_numpy(bool)
    if not concept_rows.any():
        return out
    level = out["level"].astype(object)
    cols = [*groups, "gemeente_code", "value_num"]
    children = out.loc[concept_rows & level.eq(child_level).to_numpy(bool), cols].copy()
    children["gemeente_code"] = children["gemeente_code"].astype(object)
    for name in groups:
        children[name] = children[name].astype(object)
    keys = [*groups, "gemeente_code"]
    summary = children.groupby(keys, dropna=False, observed=True).agg(
        parts_sum=("value_num", "sum"),
        parts_n=("value_num", "size"),
        parts_numbers=("value_num", "count"),
    )
    parent_mask = concept_rows & level.eq(parent_level).to_numpy(bool)
    parents = out.loc[parent_mask, [*groups, "area_code_clean", "value_num"]].copy()
    parents["gemeente_code"] = parents["area_code_clean"].astype(object)
    for name in groups:
        parents[name] = parents[name].astype(object)
    joined = parents.join(summary, on=keys)
    complete = joined["parts_n"].notna() & (joined["parts_n"] == joined["parts_numbers"]) & joined["value_num"].notna()
    allowed = rounding * joined["parts_n"] + relative_tolerance * joined["value_num"].abs()
    excess = (joined["parts_sum"] - joined["value_num"]).abs() - allowed
    out.loc[joined.index, "parts_sum"] = joined["parts_sum"].where(complete)
    out.loc[joined.index, "parts_n"] = joined["parts_n"].where(complete)
    out.loc[joined.index, "parts_allowed"] = allowed.where(complete)
    out.loc[joined.index, "parts_excess"] = excess.where(complete)
    return out


__all__ = ["SUM_OF_PARTS_COLUMNS", "add_sum_of_parts_columns"]
