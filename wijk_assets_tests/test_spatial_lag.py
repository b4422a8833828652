"""Spatially lagged features (SYNTHETIC frames: the lag arithmetic and the as-of rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wijk_assets.ml.spatial_lag import LAG_PREFIX, N_NEIGHBOURS, spatial_lags


def test_lag_is_the_neighbours_mean_in_the_same_outcome_year_synthetic():
    # SYNTHETIC: A touches B and C; C touches A only; D is an island; E has no row (water)
    frame = pd.DataFrame({
        "area_code": ["A", "B", "C", "D", "A", "B", "C"],
        "outcome_year": [2020, 2020, 2020, 2020, 2022, 2022, 2022],
        "x": [1.0, 2.0, 4.0, 8.0, 10.0, 20.0, np.nan],
        "y": [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0],
    })
    neighbours = pd.DataFrame({
        "area_code": ["A", "B", "A", "C", "A", "E"],
        "neighbour_code": ["B", "A", "C", "A", "E", "A"],
    })
    out = spatial_lags(frame, neighbours, ["x"])
    got = out.set_index(["area_code", "outcome_year"])
    assert got.loc[("A", 2020), LAG_PREFIX + "x"] == 3.0  # mean(B=2, C=4) of 2020 only
    assert got.loc[("A", 2022), LAG_PREFIX + "x"] == 20.0  # C is missing in 2022: mean over what exists
    assert got.loc[("B", 2020), LAG_PREFIX + "x"] == 1.0
    assert got.loc[("C", 2022), LAG_PREFIX + "x"] == 10.0
    assert np.isnan(got.loc[("D", 2020), LAG_PREFIX + "x"]) and got.loc[("D", 2020), N_NEIGHBOURS] == 0
    assert got.loc[("A", 2020), N_NEIGHBOURS] == 2  # E (no row) does not count
    assert LAG_PREFIX + "y" not in out.columns
    assert len(out) == len(frame) and list(out.columns[: len(frame.columns)]) == list(frame.columns)
    # recomputing replaces the lag columns instead of duplicating them
    again = spatial_lags(out, neighbours, ["x"])
    assert list(again.columns) == list(out.columns)
