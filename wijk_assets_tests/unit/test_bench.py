"""Tests of the benchmark's own helpers in ``bench/`` (not of timings; a few seconds).

Synthetic frames are labelled as such; the KWB relabelling test reads the real file from the shared
data folder (through the ``shared_data_dir`` fixture, so it runs in the integration tier).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from overhead import DagsterOverhead  # noqa: E402
from bare_reference import area_blocks, feature_year_of, parse_numbers, training_table  # noqa: E402
from rss import MIB, TreeRssSampler, tree_rss_bytes  # noqa: E402
from run_bench import KWB_REAL, relabel_kwb, run_own_process  # noqa: E402


CHILD_MIB = 300
# A child that holds CHILD_MIB MiB of touched memory until killed.
CHILD = f"import time; b = bytearray({CHILD_MIB} * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ready', flush=True); time.sleep(60)"


def test_tree_rss_counts_the_memory_of_a_child_process():
    me = psutil.Process()
    alone = tree_rss_bytes(me)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        with TreeRssSampler(interval=0.05) as sampler:
            time.sleep(0.3)
            peak = sampler.peak_bytes
        assert tree_rss_bytes(me) - alone > (CHILD_MIB - 30) * MIB
        assert peak - alone > (CHILD_MIB - 30) * MIB
        # per step window: the tree's peak, and how much of it was this process (the child is not)
        tree, own = sampler.peak_between(0, time.time())
        assert tree - own > (CHILD_MIB - 30) * MIB and own < tree
        assert sampler.peak_between(0, 1) == (0, 0)  # no sample in 1970
    finally:
        child.kill()
        child.wait()
    # the child is gone: the tree is back to about this process alone, and a new phase starts there
    assert tree_rss_bytes(me) - alone < 50 * MIB


def test_pages_a_forked_child_shares_with_this_process_count_once():
    """A child between fork and exec holds its parent's pages: the tree's memory is not twice this
    process's (a plain sum of RSS counted them twice: run BD's 2,293 MiB)."""
    import os

    held = bytearray(CHILD_MIB * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])
    me = psutil.Process()
    alone = tree_rss_bytes(me)
    pid = os.fork()
    if pid == 0:  # the child: shares every page of the parent until it writes to it
        time.sleep(1.5)
        os._exit(0)
    try:
        time.sleep(0.3)
        child = psutil.Process(pid)
        assert child.memory_info().rss > CHILD_MIB * MIB  # what a sum of RSS added a second time
        assert tree_rss_bytes(me) - alone < 60 * MIB
    finally:
        os.waitpid(pid, 0)
    del held


def test_a_line_in_its_own_process_is_sampled_without_this_process():
    """(b) and (d') run in processes of their own: their peak is the child's tree, whatever this process
    holds (here 400 MiB, held while the child runs)."""
    held = bytearray(400 * 1024 * 1024)
    held[::4096] = b"x" * len(held[::4096])
    code = CHILD.replace("time.sleep(60)", "time.sleep(1)")
    returncode, stdout, peak, sampler = run_own_process([sys.executable, "-c", code], capture=True)
    assert returncode == 0 and stdout.strip() == "ready"
    assert CHILD_MIB * MIB <= peak < (CHILD_MIB + 150) * MIB  # the child and its interpreter, not this process
    assert psutil.Process().memory_info().rss > 400 * MIB
    assert len(sampler.timeline) >= 3
    del held


def test_sampler_reset_starts_a_new_phase_but_keeps_the_overall_peak():
    with TreeRssSampler(interval=0.05) as sampler:
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.2)
        finally:
            child.kill()
            child.wait()
        with_child = sampler.peak_bytes
        sampler.reset()
        after = sampler.peak_bytes
        assert with_child - after > (CHILD_MIB - 30) * MIB
        assert sampler.overall_peak_bytes >= with_child


@pytest.mark.parametrize(("outcome_year", "expected"), [(2002, None), (2008, None), (2012, 2012), (2014, 2012),
                                                         (2016, 2016), (2018, 2016), (2022, 2020), (2024, 2020),
                                                         (2025, None)])
def test_feature_year_is_the_latest_year_within_the_lag_window(outcome_year, expected):
    assert feature_year_of(outcome_year, [2012, 2016, 2020]) == expected


def test_cell_text_is_parsed_like_the_dbt_macro():
    text = pd.Series(["    78.4", ".", "NA", "1.234,5", "12,5", "-", None, "x"], dtype=object)
    values = parse_numbers(text)
    expected = [78.4, np.nan, np.nan, 1234.5, 12.5, 0.0, np.nan, np.nan]
    np.testing.assert_allclose(values, expected, equal_nan=True)


def _synthetic_wide() -> pd.DataFrame:
    """SYNTHETIC: one gemeente, two wijken; WK000101 has three buurten, WK000102 one."""
    rows = {
        "GM0001": [50.0, 10.0],
        "WK000101": [40.0, 12.0],
        "WK000102": [60.0, np.nan],
        "BU00010101": [30.0, 11.0],
        "BU00010102": [40.0, 13.0],
        "BU00010103": [50.0, np.nan],
        "BU00010201": [60.0, 8.0],
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["a__18plus", "b__18plus"])


def test_area_blocks_give_own_gemeente_and_buurt_spread_columns():
    block = area_blocks(_synthetic_wide())
    assert list(block.index) == ["WK000101", "WK000102"]
    one = block.loc["WK000101"]
    assert one["a__18plus"] == 40.0 and one["gm__a__18plus"] == 50.0 and one["n_buurten"] == 3
    assert one["bu_min__a__18plus"] == 30.0 and one["bu_max__a__18plus"] == 50.0
    assert one["bu_sd__a__18plus"] == pytest.approx(10.0)  # sample sd of 30, 40, 50
    assert one["bu_sd__b__18plus"] == pytest.approx(np.std([11.0, 13.0], ddof=1))  # NaN buurt ignored
    assert np.isnan(block.loc["WK000102", "bu_sd__a__18plus"])  # one buurt: no spread


def test_training_table_uses_the_as_of_year_and_exact_wijk_codes():
    """SYNTHETIC outcomes: WK000101 matches, WK000199 has no RIVM wijk, 2008 has no feature year."""
    outcomes = pd.DataFrame({
        "area_code": ["WK000101", "WK000199", "WK000101", "WK000101"],
        "outcome_year": [2014, 2014, 2008, 2022],
        "lbm": [4.1, 4.0, 3.9, 4.2], "fys": np.nan, "onv": np.nan, "soc": np.nan, "vrz": np.nan, "won": np.nan,
    })
    outcomes["gemeente_code"] = "GM0001"
    wide = _synthetic_wide()
    later = wide * 2
    table = training_table({2012: wide, 2020: later}, outcomes)
    assert table[["area_code", "outcome_year", "feature_year"]].values.tolist() == [
        ["WK000101", 2014, 2012], ["WK000101", 2022, 2020]]
    assert table["a__18plus"].tolist() == [40.0, 80.0]


def test_relabelled_kwb_copy_reads_as_the_new_year_with_identical_cells(shared_data_dir, tmp_path):
    from wijk_assets.lib.sources import read_source_file
    from wijk_assets.lib.sources.catalog import find_source_files

    real = shared_data_dir / KWB_REAL
    if not real.is_file():
        pytest.fail(f"real KWB file not found at {real}")
    target = tmp_path / Path(KWB_REAL).parent / "kwb-2024_gm0344_utrecht.xlsx"
    target.parent.mkdir(parents=True)
    relabel_kwb(real, target, 2023, 2024)
    (new,) = find_source_files("cbs_kwb", tmp_path)
    relabelled = read_source_file(new)
    original = read_source_file(find_source_files("cbs_kwb", shared_data_dir)[0])
    assert relabelled.years() == [2024] and relabelled.metadata["sheet"] == "kwb-2024"
    columns = [c for c in original.frame.columns if c != "release_year"]
    pd.testing.assert_frame_equal(relabelled.frame[columns], original.frame[columns])
    with pytest.raises(SystemExit, match="no sheet named kwb-2019"):
        relabel_kwb(real, tmp_path / "other.xlsx", 2019, 2024)


def test_dagster_overhead_counts_the_events_a_run_stores_and_unwraps_on_exit():
    """Synthetic: a two-asset run in an ephemeral instance; every event it stores is counted, and the
    instance's storage is the unwrapped one again afterwards."""
    import dagster as dg

    @dg.asset
    def first() -> int:
        return 1

    @dg.asset
    def second(first: int) -> int:
        return first + 1

    instance = dg.DagsterInstance.ephemeral()
    storage = instance.event_log_storage
    with DagsterOverhead(instance) as overhead:
        result = dg.materialize([first, second], instance=instance)
    assert result.success
    stored = len(instance.all_logs(result.run_id))
    assert overhead.events.calls == stored > 0
    assert overhead.events.seconds > 0 and overhead.evaluations.calls == 0
    assert "store_event" not in vars(storage)  # the class's method again
    dg.materialize([first], instance=instance)
    assert overhead.events.calls == stored  # no longer counted
    assert overhead.summary().startswith(f"event storage {overhead.events.seconds:.1f} s for {stored} events")


def test_dagster_overhead_counts_automation_evaluations_of_the_refresh_runner():
    """Synthetic: one evaluation of a one-asset graph through the runner's module function."""
    import dagster as dg

    from wijk_assets.runner import refresh as refresh_module

    @dg.asset(automation_condition=dg.AutomationCondition.eager())
    def lone() -> int:
        return 1

    defs = dg.Definitions(assets=[lone])
    instance = dg.DagsterInstance.ephemeral()
    original = refresh_module.evaluate_automation
    with DagsterOverhead(instance) as overhead:
        refresh_module.evaluate_automation(defs, instance)
    assert overhead.evaluations.calls == 1 and overhead.evaluations.seconds > 0
    assert refresh_module.evaluate_automation is original
    assert "automation evaluations" in overhead.summary()
