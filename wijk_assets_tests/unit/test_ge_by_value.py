"""Gate expectations over a column's distinct values (ge_runner): same verdict, row-level evidence.

SYNTHETIC frames: a categorical text column with a handful of distinct values repeated over many rows,
as the provenance columns of a raw partition are (one sha256 per file, ~2 M rows).
"""

from __future__ import annotations

import pandas as pd

from wijk_assets.lib.quality.ge_runner import _by_value_expectations, validate_frame

SPEC = {
    "name": "synthetic_by_value",
    "expectations": [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "sha", "regex": "^[0-9a-f]{8}$"},
         "meta": {"blocking": True, "why": "hex"}},
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "sha", "regex": "^[0-9a-f]{8}$", "mostly": 0.5}, "meta": {"blocking": False, "why": "hex, mostly"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "row"}, "meta": {"blocking": True, "why": "row"}},
    ],
}


def _frame(bad_at: int | None = None) -> pd.DataFrame:
    sha = ["0123abcd", "89efcdab", "00ff00ff"] * 4000
    if bad_at is not None:
        sha[bad_at] = "NOT-HEX!"
    return pd.DataFrame({"sha": pd.Categorical(sha), "row": range(len(sha))})


def test_only_every_row_checks_go_by_value():
    frame = _frame()
    # 'mostly' counts rows: not by value
    assert _by_value_expectations(SPEC, frame) == {("sha",): [0], ("row",): [2]}
    assert _by_value_expectations(SPEC, frame.astype({"sha": object})) == {("sha",): [0], ("row",): [2]}  # any dtype
    assert _by_value_expectations(RANGE_SPEC, _percentages()) == {("value", "group"): [0]}


# A range with a row condition (the RIVM suite's "percentages lie in 0..100"): checked on the distinct
# (value, group) combinations; a value outside the range in another group does not count.
RANGE_SPEC = {
    "name": "synthetic_range",
    "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "value", "min_value": 0, "max_value": 100,
                    "row_condition": {"type": "comparison", "column": {"name": "group"}, "operator": "==",
                                      "parameter": "percentage"}},
         "meta": {"blocking": True, "why": "percentages"}},
    ],
}


def _percentages(bad_at: int | None = None) -> pd.DataFrame:
    n = 9000
    value = [float(i % 101) for i in range(n)]
    group = ["percentage", "count", "percentage"] * (n // 3)
    value[1] = 5000.0  # a count: outside 0..100 but not a percentage
    if bad_at is not None:
        value[bad_at] = 130.0
    return pd.DataFrame({"value": value, "group": pd.Categorical(group), "row": range(n)})


def test_a_range_with_a_row_condition_goes_by_distinct_combinations_with_the_same_verdict():
    assert validate_frame(_percentages(), RANGE_SPEC).success
    result = validate_frame(_percentages(bad_at=4242), RANGE_SPEC, sample_columns=("row", "value"))
    assert not result.success
    [failure] = [r for r in result.results if not r["success"]]
    assert failure["unexpected_count"] == 1 and [r["row"] for r in failure["sample_rows"]] == [4242]


def test_a_passing_regex_is_checked_on_distinct_values_and_reports_no_failing_row():
    result = validate_frame(_frame(), SPEC)
    assert result.success
    regex = [r for r in result.results if r["expectation"] == "expect_column_values_to_match_regex"]
    assert len(regex) == 2 and all(r["success"] and r["unexpected_count"] == 0 for r in regex)
    assert result.rows == 12000


def test_a_failing_value_gets_the_row_level_evidence_of_every_row():
    result = validate_frame(_frame(bad_at=7777), SPEC, sample_columns=("row", "sha"))
    assert not result.success
    failed = [r for r in result.results if not r["success"]]
    assert len(failed) == 1
    [failure] = failed
    assert failure["column"] == "sha" and failure["unexpected_count"] == 1  # rows, not distinct values
    assert failure["sample"] == ["NOT-HEX!"]
    assert [r["row"] for r in failure["sample_rows"]] == [7777]
    # the non-blocking 'mostly' variant ran on the rows and passes (1 of 12000 rows)
    assert any(r["success"] and r["unexpected_count"] == 1 for r in result.results
               if r["expectation"] == "expect_column_values_to_match_regex")


def test_a_batch_loses_only_the_categories_it_does_not_use():
    """Synthetic: after a split into batches a categorical column keeps categories of other batches;
    GE's value_counts would list them with count 0, so they are dropped, and only there."""
    import pandas as pd

    from wijk_assets.lib.quality.ge_runner import _drop_unused_categories

    frame = pd.DataFrame({
        "year": pd.Categorical(["2020", "2020", "2024"]),
        "file": pd.Categorical(["a.xlsx", None, "b.xlsx"], categories=["a.xlsx", "b.xlsx"]),
    })
    part = _drop_unused_categories(frame[frame["year"] == "2020"].copy())
    assert list(part["year"].cat.categories) == ["2020"] and list(part["file"].cat.categories) == ["a.xlsx"]
    assert part["file"].isna().tolist() == [False, True]
    whole = _drop_unused_categories(frame.copy())
    assert list(whole["year"].cat.categories) == ["2020", "2024"]
    assert list(whole["file"].cat.categories) == ["a.xlsx", "b.xlsx"]


# Not-null and pair equality (the raw suites' provenance columns and "the code's level is the level the
# file states") go by value too: a null is one of the distinct values.
PAIR_SPEC = {
    "name": "synthetic_pair",
    "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "file"}, "meta": {"blocking": True, "why": "file"}},
        {"type": "expect_column_pair_values_to_be_equal", "kwargs": {"column_A": "level", "column_B": "stated"},
         "meta": {"blocking": True, "why": "levels agree"}},
    ],
}


def _levels(null_file_at: int | None = None, mismatch_at: int | None = None) -> pd.DataFrame:
    n = 6000
    level = ["wijk", "buurt", "gemeente"] * (n // 3)
    stated = list(level)
    file = ["a.xlsx", "b.xlsx"] * (n // 2)
    if null_file_at is not None:
        file[null_file_at] = None
    if mismatch_at is not None:
        stated[mismatch_at] = "buurt" if level[mismatch_at] != "buurt" else "wijk"
    return pd.DataFrame({"file": pd.Categorical(file), "level": pd.Series(level, dtype=object),
                         "stated": pd.Series(stated, dtype=object), "row": range(n)})


def test_not_null_and_pair_equality_go_by_distinct_values_with_the_same_verdict_and_row_evidence():
    assert _by_value_expectations(PAIR_SPEC, _levels()) == {("file",): [0], ("level", "stated"): [1]}
    good = validate_frame(_levels(), PAIR_SPEC)
    assert good.success and all(r["unexpected_count"] == 0 for r in good.results)

    bad = validate_frame(_levels(null_file_at=4321, mismatch_at=1234), PAIR_SPEC, sample_columns=("row",))
    assert not bad.success
    failed = {r["expectation"]: r for r in bad.results if not r["success"]}
    assert set(failed) == {"expect_column_values_to_not_be_null", "expect_column_pair_values_to_be_equal"}
    for name, row in (("expect_column_values_to_not_be_null", 4321), ("expect_column_pair_values_to_be_equal", 1234)):
        assert failed[name]["unexpected_count"] == 1, failed[name]  # counted over rows, not distinct values
        assert [r["row"] for r in failed[name]["sample_rows"]] == [row]


def test_a_validation_keeps_no_copy_of_the_validated_frame():
    """GE's ``get_context`` keeps its context as the current project, and with it the batches it
    validated; the gate lets go of it, so a national RIVM year's frames are not held until the next
    gate. Checked by what is alive afterwards: no frame of the validated length but the caller's."""
    import gc

    n = 12_347  # a length no other frame in the test process has
    frame = pd.DataFrame({"sha": pd.Categorical(["0123abcd", "89efcdab"] * (n // 2) + ["0123abcd"]), "row": range(n)})
    assert validate_frame(frame, SPEC).success
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, pd.DataFrame) and len(o) == n and o is not frame]
    assert alive == []
