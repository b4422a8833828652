"""Two files of one release year that deliver the same indicator for the same area are refused at gate 1,
before the swap, with a message that says so; the partition's previous rows stay live.

Found by the benchmark: the shared data holds the national KWB 2024 (OData JSON, every gemeente and wijk);
a gemeente's own kwb-2024 xlsx dropped beside it (here: the real Utrecht 2023 file relabelled as 2024, every
cell byte for byte as published) used to pass gate 1 (uniqueness was checked per file) and fail later in
dbt, after the raw partition had already been replaced.

Real data: the national KWB 2024 JSON and the Utrecht 2023 xlsx, linked or relabelled in a tmp folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import duckdb
from wijk_assets.definitions import build_definitions
from wijk_assets.defs.raw.assets import raw_asset_key, release_year_partitions
from wijk_assets.runner.materialize import materialize_keys
from wijk_assets.settings import REPO_ROOT, Settings

sys.path.insert(0, str(REPO_ROOT / "bench"))
from run_bench import KWB_REAL, relabel_kwb  # noqa: E402

NATIONAL = Path("cbs_kwb_85984NED_2024_wijk") / "kwb_2024_gemeente_wijk_8vars.json"


def _live(db: Path) -> tuple:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT source_file), sum(hash(area_code, measure_key, value_raw)) "
            "FROM raw.cbs_kwb WHERE release_year = 2024"
        ).fetchone()


def test_a_second_file_with_the_same_cells_is_refused_before_the_swap(shared_data_dir, tmp_path):
    data = tmp_path / "data"
    (data / NATIONAL.parent).mkdir(parents=True)
    (data / NATIONAL).symlink_to(shared_data_dir / NATIONAL)
    db = tmp_path / "wijk.duckdb"
    settings = Settings(data_dir=data, duckdb_path=db, cbs_base_url=None, gemeente="GM0344")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(release_year_partitions("cbs_kwb").name, ["2024"])
    key = raw_asset_key("cbs_kwb")
    assert materialize_keys(build_definitions(settings), instance, [key], "2024", trigger="test").success
    before = _live(db)
    assert before[0] > 0 and before[1] == 1

    # the gemeente's own file for the same year, beside the national one
    (data / KWB_REAL).parent.mkdir(parents=True)
    relabel_kwb(shared_data_dir / KWB_REAL, data / KWB_REAL.replace("kwb-2023", "kwb-2024"), 2023, 2024)
    result = materialize_keys(build_definitions(settings), instance, [key], "2024", trigger="test")
    assert not result.success
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failed[0].event_specific_data.error) if failed else ""
    assert "measure_concept" in message and "area_code_clean" in message, message[:2000]
    # validate, then swap: the national rows are still the live 2024 partition
    assert _live(db) == before
