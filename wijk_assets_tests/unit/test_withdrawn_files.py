"""A reload without a file of the live partition (gate 1's ``files_of_live_partition_delivered``): how a
declared withdrawal is matched, and what ``wijk-assets status`` tells the operator. Synthetic strings."""

from __future__ import annotations

from wijk_assets.lib.quality.plausibility import is_withdrawn
from wijk_assets.runner.status import StuckPartition

GONE = "rivm_gezondheid_50090NED/gezondheid_buurt_2016_18-64.xlsx"


def test_a_withdrawal_names_the_file_by_its_path_or_its_name_only():
    assert is_withdrawn(GONE, (GONE,))
    assert is_withdrawn(GONE, ("gezondheid_buurt_2016_18-64.xlsx",))
    assert is_withdrawn(GONE, (" other.csv", " gezondheid_buurt_2016_18-64.xlsx "))
    assert not is_withdrawn(GONE, ())
    assert not is_withdrawn(GONE, ("gezondheid_buurt_2016_65plus.xlsx", "2016_18-64.xlsx", ""))


def test_status_tells_the_operator_to_restore_the_file_or_declare_its_withdrawal():
    stuck = StuckPartition(
        source="rivm_gezondheid", year="2016", run_id="r1", stage="gate_1", files=["a.xlsx"], loaded_before=True,
        reason=f"files_of_live_partition_delivered(source_file) in {GONE} missing {GONE}",
    )
    block = stuck.block()
    assert f"put {GONE} back in the data folder" in block
    assert f"WIJK_WITHDRAWN_FILES={GONE}" in block
    assert "keeps its previous rows" in block
    other = StuckPartition(source="cbs_kwb", year="2023", run_id="r2", stage="gate_1",
                           reason="file_area_count_between(area_code) in x.xlsx")
    assert "WIJK_WITHDRAWN_FILES" not in other.block() and "quarantine.cbs_kwb" in other.block()


def _rule(live: dict[str, str], staged: dict[str, str], withdrawn=()):
    """live / staged: {file: glob} of one release year (roles = file names here). SYNTHETIC."""
    from wijk_assets.lib.quality.plausibility import Partition, _files_of_live_partition

    previous = {f: {"source_file": f, "glob": g, "n_areas": 100} for f, g in live.items()}
    files = [{"source_file": f, "glob": g, "role": f} for f, g in staged.items()]
    part = Partition(staged="s", live="l", year=2016, previous_year=2016, withdrawn=tuple(withdrawn))
    return _files_of_live_partition(files, previous, part, "release_year=2016")


def test_a_missing_file_is_refused_unless_declared_or_replaced_by_a_new_file_of_its_kind():
    rivm = {"a_18-64.xlsx": "rivm", "a_18plus.xlsx": "rivm", "a_65plus.xlsx": "rivm"}
    lost = _rule(rivm, {"a_18plus.xlsx": "rivm", "a_65plus.xlsx": "rivm"})
    assert [(r["success"], r["blocking"], r["missing"]) for r in lost] == [(False, True, ["a_18-64.xlsx"])]
    declared = _rule(rivm, {"a_18plus.xlsx": "rivm", "a_65plus.xlsx": "rivm"}, withdrawn=("a_18-64.xlsx",))
    assert [(r["success"], r["observed_value"]["withdrawal_declared"]) for r in declared] == [(True, True)]
    replaced = _rule(rivm, {"a_18-64_v2.xlsx": "rivm", "a_18plus.xlsx": "rivm", "a_65plus.xlsx": "rivm"})
    assert [(r["success"], r["blocking"], r["observed_value"]["replaced_by"]) for r in replaced] == [
        (False, False, ["a_18-64_v2.xlsx"])]  # a warning, not a refusal
    # two files gone and one new: not a replacement of both; a new file of another kind replaces none
    two_gone = _rule(rivm, {"a_18plus_v2.xlsx": "rivm", "a_65plus.xlsx": "rivm"})
    assert [(r["success"], r["blocking"]) for r in two_gone] == [(False, True), (False, True)]
    other_kind = _rule(rivm, {"x.csv": "survey", "a_18plus.xlsx": "rivm", "a_65plus.xlsx": "rivm"})
    assert [(r["success"], r["blocking"]) for r in other_kind] == [(False, True)]
    complete = _rule(rivm, dict(rivm))
    assert [(r["success"], r["observed_value"]) for r in complete] == [(True, {"live_files": 3})]
