"""Gate 1 reads a staged raw partition back as pandas (synthetic staging tables in tmp_path): in table
order, in chunks, text as categories, the same frame whatever the chunk size."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.quality.staged_gate import read_staged
from wijk_assets.lib.sources.base import RAW_COLUMNS
from wijk_assets.lib.warehouse import stage_partition


def _staged(tmp_path, n_rows: int = 2_345) -> tuple[duckdb.DuckDBPyConnection, str, pd.DataFrame]:
    """A synthetic raw partition of two files, staged as a raw load stages it."""
    rng = np.random.default_rng(7)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    frames = []
    for file_no in range(2):
        frame = pd.DataFrame({
            "release_year": 2020,
            "area_code": [f"WK{code:06d}  " for code in rng.integers(0, 500, n_rows)],
            "area_name": [f"Wijk {i % 37}" for i in range(n_rows)],
            "region_type": rng.choice(["Wijk", "Buurt", None], n_rows),
            "gemeente_name": "Gemeente",
            "subgroup": "",
            "measure_key": [f"M{i % 11}" for i in range(n_rows)],
            "value_raw": [("       ." if i % 13 == 0 else f"{i * 0.1:.1f}") for i in range(n_rows)],
            "source_row": np.arange(2, n_rows + 2) + file_no,
        })
        frames.append((frame, {"cbs_table_id": "50090NED", "source_file": f"file_{file_no}.xlsx",
                               "source_sha256": f"{file_no}" * 64, "retrieved_at": pd.Timestamp("2026-12-05"),
                               "reader_version": "test"}))
    staged, rows = stage_partition(con, "raw.synthetic", frames, RAW_COLUMNS, {"release_year": 2020})
    assert rows == 2 * n_rows
    expected = pd.concat([f.assign(**{k: v for k, v in c.items()}) for f, c in frames], ignore_index=True)
    return con, staged, expected


@pytest.mark.parametrize("chunk_rows", [1_000, 2_345, 250_000])
def test_the_staged_rows_read_back_in_table_order_whatever_the_chunks(tmp_path, chunk_rows):
    con, staged, expected = _staged(tmp_path)
    frame = read_staged(con, staged, chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(frame, read_staged(con, staged, chunk_rows=10**7))  # one chunk
    # table order: the files' rows as they were staged, text as categories
    assert frame["source_row"].tolist() == expected["source_row"].tolist()
    assert frame["area_code"].astype(str).tolist() == expected["area_code"].tolist()
    assert frame["source_file"].astype(str).tolist() == expected["source_file"].tolist()
    assert isinstance(frame["value_raw"].dtype, pd.CategoricalDtype)
    assert frame["region_type"].isna().sum() == expected["region_type"].isna().sum() > 0


def test_an_empty_staging_table_reads_as_an_empty_frame_with_its_columns(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    staged, rows = stage_partition(con, "raw.synthetic", [], RAW_COLUMNS, {"release_year": 2020})
    assert rows == 0
    frame = read_staged(con, staged)
    assert frame.empty and list(frame.columns) == list(RAW_COLUMNS)
