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
