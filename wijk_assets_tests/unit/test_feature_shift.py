"""Gate 2's drift warning knows "not yet published" (synthetic data, issue 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wijk_assets.lib.quality.feature_shift import shift_since_last_publication


def _areas(years: dict[int, dict[str, np.ndarray]], n: int = 60) -> pd.DataFrame:
    frames = []
    for year, columns in years.items():
        frame = pd.DataFrame({
            "area_code": [f"WK{i:06d}" for i in range(n)],
            "area_level": "wijk",
            "gemeente_code": [f"GM{i % 6:04d}" for i in range(n)],
            "year": year,
        })
        for name, values in columns.items():
            frame[name] = values
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_feature_not_yet_published_is_not_drift():
    """Synthetic: 'late' has values in 2016 and 2020 but none in 2024 (first release of that year)."""
    rng = np.random.default_rng(7)
    stable = rng.normal(50, 5, 60)
    late = rng.normal(10, 1, 60)
    areas = _areas({
        2016: {"steady": stable, "late": late},
        2020: {"steady": stable + rng.normal(0, 0.1, 60), "late": late + rng.normal(0, 0.05, 60)},
        2024: {"steady": stable + rng.normal(0, 0.1, 60), "late": np.full(60, np.nan)},
    })
    table, not_published = shift_since_last_publication(areas, {"steady": "src", "late": "src"})
    assert not table["flagged"].any(), table[table["flagged"]][["feature", "reasons"]]
    late = table[table["feature"] == "late"].iloc[0]
    assert late["years"] == "2016->2020"  # compared over its own latest published years
    assert table.loc[table["feature"] == "steady", "years"].iloc[0] == "2020->2024"
    assert list(not_published["feature"]) == ["late"]
    assert int(not_published["last_published"].iloc[0]) == 2020


def test_real_shift_is_still_flagged():
    """Synthetic: a feature whose values moved by several IQRs is flagged."""
    rng = np.random.default_rng(3)
    base = rng.normal(50, 5, 60)
    areas = _areas({2020: {"moved": base}, 2024: {"moved": base + 40}})
    table, not_published = shift_since_last_publication(areas, {"moved": "src"})
    assert bool(table.loc[table["feature"] == "moved", "flagged"].iloc[0])
    assert not_published.empty


def test_statistics_equal_scipy_and_the_row_by_row_definition():
    """Synthetic, with ties, NaN, text cells and areas missing in one year: the KS statistic and the rank
    correlation are scipy's values exactly, and every figure of ``yoy_shift`` equals a plain per-feature
    computation with pandas and scipy (the definition the fast path must keep)."""
    from scipy.stats import ks_2samp, spearmanr

    from wijk_assets.lib.quality.feature_shift import _ks_statistic, _spearman, yoy_shift

    rng = np.random.default_rng(11)
    for _ in range(20):
        a = rng.integers(0, 8, rng.integers(5, 80)).astype(float)  # many ties
        b = rng.integers(0, 8, rng.integers(5, 80)).astype(float) + rng.choice([0.0, 0.5])
        assert _ks_statistic(a, b) == float(ks_2samp(a, b, method="asymp").statistic)
        n = min(len(a), len(b))
        if len(np.unique(a[:n])) > 1 and len(np.unique(b[:n])) > 1:
            assert _spearman(a[:n], b[:n]) == float(spearmanr(a[:n], b[:n]).statistic)

    n = 90
    prev = pd.DataFrame({"area_code": [f"WK{i:06d}" for i in range(n)],
                         "area_level": np.where(np.arange(n) < 60, "wijk", "buurt"),
                         "x": rng.normal(5, 1, n).round(1), "y": rng.integers(0, 4, n).astype(float)})
    prev.loc[::7, "x"] = np.nan
    this = prev.sample(frac=0.9, random_state=1).reset_index(drop=True)
    this["x"] = (this["x"] * 1.6).astype(object)
    this.loc[3, "x"] = "n.v.t."  # text: not a number
    this["y"] = this["y"] + rng.integers(0, 2, len(this))
    this["only_this"] = 1.0
    got = yoy_shift(prev, this, ["x", "y", "only_this"], thresholds=None)
    for _, row in got.iterrows():
        level_prev = prev[prev["area_level"] == row["area_level"]]
        level_this = this[this["area_level"] == row["area_level"]]
        col = row["feature"]
        p_all = pd.to_numeric(level_prev[col], errors="coerce") if col in level_prev else pd.Series(dtype=float)
        t_all = pd.to_numeric(level_this[col], errors="coerce")
        p, t = p_all.dropna().to_numpy(float), t_all.dropna().to_numpy(float)
        assert row["n_prev"] == len(p) and row["n_this"] == len(t)
        assert row["null_ratio_this"] == float(t_all.isna().mean())
        if len(p) and len(t):
            assert row["median_this"] == float(np.median(t))
            assert row["ks"] == float(ks_2samp(p, t, method="asymp").statistic)
            joined = level_prev.set_index("area_code")[[col]].join(level_this.set_index("area_code")[[col]], how="inner",
                                                                    lsuffix="_p", rsuffix="_t")
            pair = joined.apply(pd.to_numeric, errors="coerce").dropna()
            assert row["paired_n"] == len(pair)
            assert row["spearman"] == float(spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic)
        else:
            assert np.isnan(row["ks"]) and row["paired_n"] == 0
    assert set(got["feature"]) == {"x", "y", "only_this"}
