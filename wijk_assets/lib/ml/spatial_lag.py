"""Spatially lagged features: the mean of an indicator over a wijk's neighbours (same outcome year).

Neighbours come from the wijk boundaries (``intermediate.int_wijk_neighbours``, shapely on the CBS/
Kadaster wijk- en buurtkaart). The lag of feature ``x`` for wijk w in outcome year t is the mean of ``x``
over the neighbours of w that have a row for year t in the same frame - so a lag only ever uses values
the as-of rule already allowed for that outcome year (never a later figure). The adjacency itself comes
from the latest boundaries (2024): a wijk code that did not exist then has no neighbours (lag NaN), and
a re-divided gemeente's older wijken are approximated by the 2024 map.

Pure pandas, no Dagster. :func:`compare_with_spatial_lags` measures whether the lags improve grouped-CV
R² (same folds, same tuning grid) for an outcome, beside the ridge baseline. Measured on the shared data
(2026-12, 386 model features of lbm, 77 own features lagged, 17,779 of 18,633 wijk-years with
neighbours): LightGBM R² 0.5957 without, 0.5937 with the lags; ridge 0.5713 without, 0.5071 with. onv
(281 features, 54 lagged): LightGBM 0.8056 / 0.8083, ridge 0.7970 / 0.7971. A 0.003 gain on one outcome
and a loss on the other is no improvement, so the models are NOT given the lags (issue 15: keep them
only if they improve the grouped-CV R²); the neighbours table stays for the wijkbeeld and re-measuring.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

LAG_PREFIX = "nb_mean__"
N_NEIGHBOURS = "n_neighbours"


def spatial_lags(
    frame: pd.DataFrame,
    neighbours: pd.DataFrame,
    features: Sequence[str],
    *,
    area: str = "area_code",
    year: str = "outcome_year",
) -> pd.DataFrame:
    """``frame`` plus ``nb_mean__<f>`` for each of ``features`` and ``n_neighbours`` (neighbours with a
    row in the same year). ``neighbours``: columns ``area_code``, ``neighbour_code`` (both directions)."""
    features = [f for f in features if f in frame.columns]
    pairs = neighbours[["area_code", "neighbour_code"]].drop_duplicates()
    values = frame[[area, year, *features]].rename(columns={area: "neighbour_code"})
    joined = pairs.merge(values, on="neighbour_code", how="inner")
    grouped = joined.groupby(["area_code", year])
    lags = grouped[features].mean().add_prefix(LAG_PREFIX)
    lags[N_NEIGHBOURS] = grouped.size()
    lags = lags.reset_index().rename(columns={"area_code": area})
    out = frame.drop(columns=[c for c in lags.columns if c not in (area, year) and c in frame.columns])
    out = out.merge(lags, on=[area, year], how="left")
    out[N_NEIGHBOURS] = out[N_NEIGHBOURS].fillna(0).astype("int64")
    return out


CONTEXT_PREFIXES = ("gm__", "bu_sd__", "bu_min__", "bu_max__")


def own_features(features: Sequence[str]) -> list[str]:
    """The wijk's own features among a model's inputs (not the gemeente / buurt-spread context columns)."""
    return [f for f in features if not f.startswith(CONTEXT_PREFIXES) and f != "n_buurten"]


def compare_with_spatial_lags(
    frame: pd.DataFrame,
    neighbours: pd.DataFrame,
    outcome: str,
    features: Sequence[str],
    *,
    seed: int = 0,
    params=None,
) -> dict:
    """Grouped-CV R² of LightGBM and the baselines on the same folds, with the model's ``features``
    and with those plus the neighbours' mean of each own feature (and ``n_neighbours``).

    This is how the decision not to feed the lags to the models was measured (README, "Spatial
    neighbours"); rerun it when the data change.
    """
    from wijk_assets.lib.ml.training import evaluate

    data = frame[frame[outcome].notna()].reset_index(drop=True)
    own = own_features(features)
    lagged = spatial_lags(data, neighbours, own)
    lag_columns = [LAG_PREFIX + f for f in own] + [N_NEIGHBOURS]
    base = evaluate(data, outcome, list(features), params, seed)
    with_lags = evaluate(lagged, outcome, [*features, *lag_columns], params, seed)
    return {
        "outcome": outcome,
        "n_rows": len(data),
        "n_features": len(features),
        "n_lag_features": len(lag_columns),
        "rows_with_neighbours": int((lagged[N_NEIGHBOURS] > 0).sum()),
        "without_lags": {k: v["r2"] for k, v in base.metrics.items()},
        "with_lags": {k: v["r2"] for k, v in with_lags.metrics.items()},
    }


__all__ = ["LAG_PREFIX", "N_NEIGHBOURS", "compare_with_spatial_lags", "own_features", "spatial_lags"]
