"""Spatially lagged features (SYNTHETIC frames: the lag arithmetic and the as-of rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wijk_assets.lib.ml.spatial_lag import LAG_PREFIX, N_NEIGHBOURS, spatial_lags


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


def test_comparison_detects_a_neighbourhood_effect_synthetic():
    """SYNTHETIC: 12 gemeenten x 20 wijken on a line; the outcome is the neighbours' mean of x, so the
    lag must lift grouped-CV R² well above the model without it (the check that decided issue 15's
    'keep the lags only if they help' is able to say yes)."""
    from wijk_assets.lib.ml.spatial_lag import compare_with_spatial_lags

    rng = np.random.default_rng(7)
    codes = [f"WK{g:04d}{w:02d}" for g in range(12) for w in range(20)]
    frame = pd.DataFrame({
        "area_code": codes * 2,
        "gemeente_code": [f"GM{c[2:6]}" for c in codes] * 2,
        "outcome_year": [2020] * len(codes) + [2022] * len(codes),
        "feature_year": [2020] * len(codes) + [2022] * len(codes),
        "x": rng.normal(size=2 * len(codes)),
    })
    pairs = [(codes[i], codes[i + 1]) for i in range(len(codes) - 1)]
    neighbours = pd.DataFrame(pairs + [(b, a) for a, b in pairs], columns=["area_code", "neighbour_code"])
    lagged = spatial_lags(frame, neighbours, ["x"])
    frame["lbm"] = lagged[LAG_PREFIX + "x"] + rng.normal(scale=0.05, size=len(frame))
    result = compare_with_spatial_lags(frame, neighbours, "lbm", ["x"], params={"n_estimators": 50, "num_leaves": 7})
    assert result["n_lag_features"] == 2 and result["rows_with_neighbours"] == len(frame)
    assert result["without_lags"]["lightgbm"] < 0.2
    assert result["with_lags"]["lightgbm"] > 0.8 and result["with_lags"]["ridge"] > 0.8
