"""Per-row expectations validated on a frame of only their own columns (ge_runner, large frames): the
same verdicts, counts and evidence rows as on the whole frame.

SYNTHETIC frames; the threshold is lowered so that small frames take the narrow path.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.quality import ge_runner
from wijk_assets.lib.quality.ge_runner import _narrow_groups, validate_frame

IS_PERCENTAGE = {"type": "comparison", "column": {"name": "group"}, "operator": "==", "parameter": "percentage"}
SPEC = {
    "name": "synthetic_narrow",
    "expectations": [
        {"type": "expect_table_columns_to_match_set",
         "kwargs": {"column_set": ["file", "row", "key", "group", "value", "note"], "exact_match": True},
         "meta": {"blocking": True, "why": "columns"}},
        {"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["file", "key"]},
         "meta": {"blocking": True, "why": "one value per file and key"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "value", "mostly": 0.9,
                                                                   "row_condition": IS_PERCENTAGE},
         "meta": {"blocking": True, "why": "percentages are mostly there"}},
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 10**7},
         "meta": {"blocking": True, "why": "rows"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "missing_column", "mostly": 0.5},
         "meta": {"blocking": False, "why": "a column the frame lacks: reported on the whole frame"}},
    ],
}


def _frame(duplicate: bool = False, holes: float = 0.0) -> pd.DataFrame:
    n = 6000
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "file": pd.Categorical(["a.xlsx", "b.xlsx"] * (n // 2)),
        "row": np.arange(n) + 2,
        "key": [f"K{i // 2}" for i in range(n)],
        "group": pd.Categorical(["percentage", "count", "percentage"] * (n // 3)),
        "value": rng.uniform(0, 100, n),
        "note": pd.Categorical(["x"] * n),
    })
    if duplicate:
        frame.loc[4, "key"] = frame.loc[2, "key"]  # both in a.xlsx
    if holes:
        frame.loc[rng.random(n) < holes, "value"] = np.nan
    return frame


def _canonical(result) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in result.results)


def test_column_level_expectations_are_grouped_by_their_columns_on_large_frames(monkeypatch):
    frame = _frame()
    assert _narrow_groups(SPEC, frame, list(range(5))) == {}  # below the threshold: nothing narrowed
    monkeypatch.setattr(ge_runner, "NARROW_MIN_ROWS", 1000)
    # table-level ones stay on the whole frame, as does the one whose column is missing
    assert _narrow_groups(SPEC, frame, list(range(5))) == {("file", "key"): [1], ("group", "value"): [2]}


@pytest.mark.parametrize("duplicate,holes", [(False, 0.0), (True, 0.0), (False, 0.3), (True, 0.3)])
def test_narrow_validation_gives_the_whole_frame_results(monkeypatch, duplicate, holes):
    whole = validate_frame(_frame(duplicate, holes), SPEC, sample_columns=("file", "row"))
    monkeypatch.setattr(ge_runner, "NARROW_MIN_ROWS", 1000)
    narrow = validate_frame(_frame(duplicate, holes), SPEC, sample_columns=("file", "row"))
    assert _canonical(narrow) == _canonical(whole)
    assert narrow.success == whole.success == (not duplicate and not holes)
    by_type = {(r["expectation"], r["column"]): r for r in narrow.results}
    if duplicate:  # the evidence rows come from the whole frame: file and source row of each duplicate
        rows = by_type[("expect_compound_columns_to_be_unique", "file,key")]["sample_rows"]
        assert {(r["file"], r["row"]) for r in rows} == {("a.xlsx", 4), ("a.xlsx", 6)}
    holes_seen = by_type[("expect_column_values_to_not_be_null", "value")]
    assert (holes_seen["unexpected_count"] > 0) == bool(holes) and holes_seen["success"] == (not holes)
    assert by_type[("expect_column_values_to_not_be_null", "missing_column")]["exception"]  # reported, not skipped


def test_batches_are_not_fingerprinted_and_verdicts_do_not_change(monkeypatch):
    """GE's pandas engine hashes every row of a batch under 1e9 bytes into a batch marker nothing reads
    (~0.85 s per national RIVM year); ge_runner turns that off. With hashing made to fail, validation
    still works and gives the results it gave with the marker (SYNTHETIC frame)."""
    import pandas.util

    from great_expectations.execution_engine import pandas_execution_engine

    frame = _frame(duplicate=True, holes=0.3)
    with monkeypatch.context() as patched:  # GE's own default, as before the change
        patched.setattr(ge_runner, "_no_batch_fingerprint", lambda: None)
        patched.setattr(pandas_execution_engine, "HASH_THRESHOLD", 1e9)
        with_marker = validate_frame(frame.copy(), SPEC, sample_columns=("file", "row"))

    def no_hashing(*args, **kwargs):
        raise AssertionError("a batch was fingerprinted")

    monkeypatch.setattr(pandas.util, "hash_pandas_object", no_hashing)
    without = validate_frame(frame.copy(), SPEC, sample_columns=("file", "row"))
    assert pandas_execution_engine.HASH_THRESHOLD == 0
    assert _canonical(without) == _canonical(with_marker) and not without.success
