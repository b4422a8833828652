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
