"""Comparable wijken: the nearest wijken nationally in the model's feature space.

The space is the features that matter most to the published Leefbaarometer model (global importance,
top ``N_FEATURES``), each standardised over all wijken of the latest outcome year; the distance is the
root mean squared difference over the features both wijken have (at least ``MIN_SHARED``). Only wijken
that are published (not suppressed) are offered as comparisons. The data hold no province, so the
within-province list is not made (the page says so).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_FEATURES = 20
MIN_SHARED = 10
N_NEAREST = 5


def nearest_wijken(con, codes: list[str], tables: set[str]) -> pd.DataFrame:
    """Per wijk in ``codes`` the ``N_NEAREST`` nearest published wijken (own gemeente included)."""
    needed = {"ml.global_importance", "ml.model_runs", "marts.mart_wijk_training", "publish.area_comparison"}
    if not needed <= tables:
        return pd.DataFrame()
    features = [r[0] for r in con.execute(
        "SELECT i.feature FROM ml.global_importance i JOIN ml.model_runs r USING (outcome, model_version) "
        "WHERE i.outcome = 'lbm' ORDER BY i.rank LIMIT ?", [N_FEATURES]).fetchall()]
    columns = {r[0] for r in con.execute("DESCRIBE marts.mart_wijk_training").fetchall()}
    features = [f for f in features if f in columns]
    if len(features) < MIN_SHARED:
        return pd.DataFrame()
    quoted = ", ".join(f'm."{f}"' for f in features)
    frame = con.execute(
        f"""
        SELECT m.area_code, p.area_name, p.gemeente_name, p.actual AS lbm, p.outcome_year, p.suppressed_reason, {quoted}
        FROM marts.mart_wijk_training m
        JOIN publish.area_comparison p ON p.area_code = m.area_code AND p.outcome = 'lbm' AND p.outcome_year = m.outcome_year
        WHERE m.outcome_year = (SELECT max(outcome_year) FROM publish.area_comparison WHERE outcome = 'lbm')
        ORDER BY m.area_code
        """
    ).df()
    if frame.empty:
        return frame
    values = frame[features].astype(float)
    z = ((values - values.mean()) / values.std(ddof=0).replace(0, np.nan)).to_numpy()
    present = ~np.isnan(z)
    zfilled = np.nan_to_num(z)
    candidates = frame["suppressed_reason"].isna().to_numpy()
    rows = []
    index = {c: i for i, c in enumerate(frame["area_code"])}
    for code in codes:
        i = index.get(code)
        if i is None:
            continue
        shared = present & present[i]
        n = shared.sum(axis=1)
        diff = (zfilled - zfilled[i]) ** 2 * shared
        with np.errstate(invalid="ignore", divide="ignore"):
            distance = np.sqrt(diff.sum(axis=1) / n)
        distance[(n < MIN_SHARED) | ~candidates] = np.inf
        distance[i] = np.inf
        for rank, j in enumerate(np.argsort(distance, kind="stable")[:N_NEAREST], start=1):
            if not np.isfinite(distance[j]):
                break
            rows.append({"area_code": code, "rank": rank, "other_code": frame.at[j, "area_code"],
                         "other_name": frame.at[j, "area_name"], "other_gemeente": frame.at[j, "gemeente_name"],
                         "lbm": frame.at[j, "lbm"], "year": int(frame.at[j, "outcome_year"]),
                         "distance": float(distance[j]), "n_shared": int(n[j]), "n_features": len(features)})
    return pd.DataFrame(rows)
