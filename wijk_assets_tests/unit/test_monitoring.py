"""Monitoring functions on REAL data: RIVM/GGD Gezondheidsmonitor wijk estimates (adults 18+) of 2016
and 2020 from the shared xlsx dumps of CBS table 50090NED (both years on the 2020 area indeling).

Between 2016 and 2020 smoking (Roker) and "moeite met rondkomen" fell and emotional loneliness rose
across Dutch wijken by ~0.9 pooled SD; some indicators (e.g. high risk of anxiety/depression) barely
moved. The drift tests rest on those real differences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.sources.catalog import find_source_files
from wijk_assets.lib.change_monitoring import (
    feature_drift,
    indicator_changes,
    performance_on_new_year,
    prediction_changes,
    psi,
    to_number,
)
from wijk_assets.lib.sources import read_source_file
from wijk_assets.lib.sources.base import key_stem

SHIFTED = ["Roker", "MoeiteMetRondkomen", "EmotioneelEenzaam"]
STABLE = ["HoogRisicoOpAngstOfDepressie", "EenOfMeerLichamelijkeBeperkingen", "BeperkingInZien"]
OUTCOME = "ErvarenGezondheidGoedZeerGoed"
PREDICTORS = ["Roker", "MoeiteMetRondkomen", "EenOfMeerLangdurigeAandoeningen", "Overgewicht", "WekelijkseSporters"]
INDICATORS = sorted(set(SHIFTED + STABLE + PREDICTORS + [OUTCOME]))


@pytest.fixture(scope="module")
def rivm_raw(shared_data_dir) -> pd.DataFrame:
    """Raw long rows (cell text verbatim) of the wijken in the 2016 and 2020 18+ files."""
    frames = []
    for source_file in find_source_files("rivm_gezondheid", shared_data_dir):
        if source_file.filename_year in (2016, 2020) and source_file.relative_path.endswith("_18plus.xlsx"):
            frame = read_source_file(source_file).frame
            frames.append(frame[frame["area_code"].str.strip().str.startswith("WK")])
    assert len(frames) == 2
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def rivm_long(rivm_raw) -> pd.DataFrame:
    """area_code, release_year, indicator, value - the raw text kept as text (the functions parse it)."""
    long = pd.DataFrame(
        {
            "area_code": rivm_raw["area_code"],
            "release_year": rivm_raw["release_year"],
            "indicator": rivm_raw["measure_key"].map(key_stem),
            "value": rivm_raw["value_raw"],
        }
    )
    return long[long["indicator"].isin(INDICATORS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def rivm_wide(rivm_long) -> pd.DataFrame:
    frame = rivm_long.assign(value=to_number(rivm_long["value"]), area_code=rivm_long["area_code"].str.strip())
    wide = frame.pivot(index=["area_code", "release_year"], columns="indicator", values="value")  # keeps NaN
    return wide.reset_index().rename_axis(columns=None)


def _year(wide: pd.DataFrame, year: int) -> pd.DataFrame:
    return wide[wide["release_year"] == year].reset_index(drop=True)


def test_indicator_changes_long_and_wide_agree_with_the_raw_cells(rivm_long, rivm_wide, rivm_raw):
    changes = indicator_changes(rivm_long, years=(2016, 2020), key_indicators=SHIFTED + STABLE)
    assert changes.attrs["years"] == (2016, 2020)
    assert set(changes["indicator"]) == set(SHIFTED + STABLE)
    # Burgwallen-Oude Zijde (Amsterdam): smokers, from the raw cell text of both files
    raw = rivm_raw[(rivm_raw["area_code"].str.strip() == "WK036300") & (rivm_raw["measure_key"].map(key_stem) == "Roker")]
    cells = {int(r.release_year): float(r.value_raw.strip()) for r in raw.itertuples()}
    row = changes[(changes["area_code"] == "WK036300") & (changes["indicator"] == "Roker")].iloc[0]
    assert (row.value_prev, row.value_latest) == (cells[2016], cells[2020])
    assert row.abs_change == pytest.approx(cells[2020] - cells[2016])
    assert row.rel_change == pytest.approx((cells[2020] - cells[2016]) / cells[2016])
    assert row.status == "both"

    # areas in one year only are kept and labelled; most wijken are in both
    counts = changes.drop_duplicates("area_code")["status"].value_counts()
    assert counts["both"] > 3000
    assert set(counts.index) <= {"both", "new_area", "dropped_area"}
    new_areas = changes[changes["status"] == "new_area"]
    assert new_areas["value_prev"].isna().all() and new_areas["value_latest"].notna().all()

    # largest absolute change first within each indicator
    roker = changes[changes["indicator"] == "Roker"]["abs_change"].abs().dropna().to_numpy()
    assert (np.diff(roker) <= 1e-12).all()

    wide_changes = indicator_changes(rivm_wide, years=(2016, 2020), key_indicators=SHIFTED + STABLE)
    key = ["area_code", "indicator"]
    merged = changes.merge(wide_changes, on=key, suffixes=("", "_wide"))
    assert len(merged) == len(changes) == len(wide_changes)
    assert np.allclose(merged["abs_change"], merged["abs_change_wide"], equal_nan=True)

    # default years: the two latest; one value per area/indicator/year is required
    assert indicator_changes(rivm_long, key_indicators=["Roker"]).attrs["years"] == (2016, 2020)
    with pytest.raises(ValueError, match="share area, indicator and year"):
        indicator_changes(pd.concat([rivm_long, rivm_long]), key_indicators=["Roker"])
    with pytest.raises(ValueError, match="year 2012 is not in the frame"):
        indicator_changes(rivm_long, years=(2012, 2020))


def test_feature_drift_detects_the_real_shift_and_nothing_against_itself(rivm_wide):
    prev, new = _year(rivm_wide, 2016), _year(rivm_wide, 2020)
    drift = feature_drift(prev, new, SHIFTED + STABLE).set_index("column")

    for column in SHIFTED:
        assert drift.loc[column, "flag"], drift.loc[column, "reasons"]
        assert drift.loc[column, "psi"] >= 0.25 and drift.loc[column, "psi_level"] == "major"
        assert abs(drift.loc[column, "smd"]) >= 0.5
        assert drift.loc[column, "ks_pvalue"] < 1e-10
    assert drift.loc["Roker", "smd"] < 0 and drift.loc["Roker", "mean_shift"] < 0  # fewer smokers
    assert drift.loc["EmotioneelEenzaam", "smd"] > 0 and drift.loc["EmotioneelEenzaam", "median_shift"] > 0
    for column in STABLE:
        assert not drift.loc[column, "flag"], drift.loc[column, "reasons"]
        assert drift.loc[column, "psi"] < 0.1 and abs(drift.loc[column, "smd"]) < 0.1
    assert (drift["n_prev"] == len(prev)).all() and (drift["n_new"] == len(new)).all()
    assert drift.index[0] in SHIFTED  # sorted by PSI

    same = feature_drift(prev, prev, SHIFTED + STABLE)
    assert not same["flag"].any()
    assert np.allclose(same[["psi", "smd", "ks_statistic", "mean_shift", "median_shift"]], 0)
    assert np.allclose(same["ks_pvalue"], 1)

    # a column that lost a fifth of its values in the new frame is flagged for its nulls
    base_nulls = new["BeperkingInZien"].isna().mean()  # suppressed wijken ('.' in the source)
    assert 0 < base_nulls < 0.05
    holed = new.copy()
    holed.loc[holed.sample(frac=0.2, random_state=1).index, "BeperkingInZien"] = np.nan
    nulls = feature_drift(new, holed, ["BeperkingInZien"]).iloc[0]
    assert nulls["flag"] and "null ratio" in nulls["reasons"]
    assert nulls["null_ratio_prev"] == pytest.approx(base_nulls)
    assert nulls["null_ratio_new"] == pytest.approx(holed["BeperkingInZien"].isna().mean())

    # PSI directly: zero against itself, symmetric-ish and large for the real shift
    roker_prev, roker_new = prev["Roker"].to_numpy(), new["Roker"].to_numpy()
    assert psi(roker_prev, roker_prev) == pytest.approx(0)
    assert psi(roker_new, roker_prev) > 0.25


class _Model:
    """A linear model fitted on the 2016 wijken; NaN for a wijk with a suppressed predictor."""

    def __init__(self, train: pd.DataFrame):
        from sklearn.linear_model import LinearRegression

        self.fitted = LinearRegression().fit(train[PREDICTORS], train[OUTCOME])

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        out = np.full(len(features), np.nan)
        complete = features[PREDICTORS].notna().all(axis=1).to_numpy()
        out[complete] = self.fitted.predict(features.loc[complete, PREDICTORS])
        return out


def _fit_2016_model(rivm_wide):
    train = _year(rivm_wide, 2016).dropna(subset=PREDICTORS + [OUTCOME])
    return _Model(train), train


def test_performance_on_new_year_before_retraining(rivm_wide):
    from sklearn.metrics import mean_absolute_error, r2_score

    model, train = _fit_2016_model(rivm_wide)
    reference = {"r2": r2_score(train[OUTCOME], model.predict(train[PREDICTORS])),
                 "mae": mean_absolute_error(train[OUTCOME], model.predict(train[PREDICTORS]))}
    new = _year(rivm_wide, 2020)
    result = performance_on_new_year(model.predict, new, OUTCOME, feature_columns=PREDICTORS, reference=reference)

    rows = new.dropna(subset=PREDICTORS + [OUTCOME])
    with_outcome = new[new[OUTCOME].notna()]
    assert result["n"] == len(rows)
    assert result["n_no_outcome"] == new[OUTCOME].isna().sum()
    assert result["n_no_prediction"] == len(with_outcome) - len(rows)  # 0: suppression hits whole rows
    assert result["r2"] == pytest.approx(r2_score(rows[OUTCOME], model.predict(rows[PREDICTORS])))
    assert result["mae"] == pytest.approx(mean_absolute_error(rows[OUTCOME], model.predict(rows[PREDICTORS])))
    assert 0.3 < result["r2"] < reference["r2"]  # still informative, but worse than on its own year
    assert result["r2_drop"] == pytest.approx(reference["r2"] - result["r2"])
    assert result["mae_increase"] == pytest.approx(result["mae"] - reference["mae"])
    assert result["mean_outcome"] == pytest.approx(rows[OUTCOME].mean())

    # the 2016 mean as a "model" is worse than useless on 2020 (the outcome rose ~2.8 points)
    constant = performance_on_new_year(lambda f: np.full(len(f), train[OUTCOME].mean()), new, OUTCOME,
                                       feature_columns=PREDICTORS)
    assert constant["r2"] < 0 and constant["bias"] < -1

    # rows without an observed outcome are left out and counted; an outcome Series works too
    holed = new.copy()
    drop = rows.index[:100]
    holed.loc[drop, OUTCOME] = np.nan
    holed.loc[rows.index[100:150], "Roker"] = np.nan  # the model cannot predict these 50
    partial = performance_on_new_year(model.predict, holed, OUTCOME, feature_columns=PREDICTORS)
    assert partial["n_no_outcome"] == result["n_no_outcome"] + 100
    assert partial["n_no_prediction"] == 50 and partial["n"] == result["n"] - 150
    as_series = performance_on_new_year(model.predict, new[PREDICTORS], new[OUTCOME])
    assert as_series["r2"] == pytest.approx(result["r2"])


def test_prediction_changes_between_years(rivm_wide):
    model, _ = _fit_2016_model(rivm_wide)
    prev, new = _year(rivm_wide, 2016), _year(rivm_wide, 2020)
    pred_prev = pd.DataFrame({"area_code": prev["area_code"], "prediction": model.predict(prev)}).dropna()
    pred_new = pd.DataFrame({"area_code": new["area_code"], "prediction": model.predict(new)}).dropna()

    changes = prediction_changes(pred_prev, pred_new)
    both = changes[changes["status"] == "both"]
    prev_areas, new_areas = set(pred_prev["area_code"]), set(pred_new["area_code"])
    assert len(both) == changes.attrs["n_common"] == len(prev_areas & new_areas) > 3000
    assert set(changes.loc[changes["status"] == "new_area", "area_code"]) == new_areas - prev_areas
    assert set(changes.loc[changes["status"] == "dropped_area", "area_code"]) == prev_areas - new_areas
    assert 0.8 < changes.attrs["spearman"] < 1  # the ranking of wijken mostly holds
    assert changes.attrs["mean_abs_change"] > 0
    assert np.allclose(both["abs_change"], both["prediction_latest"] - both["prediction_prev"])
    assert (both["rank_change"] == both["rank_prev"] - both["rank_latest"]).all()
    assert changes["rank_prev"].min() == 1 and changes["rank_latest"].min() == 1
    top = changes.iloc[0]
    assert abs(top["abs_change"]) == changes["abs_change"].abs().max()

    as_series = prediction_changes(pred_prev.set_index("area_code")["prediction"],
                                   pred_new.set_index("area_code")["prediction"])
    pd.testing.assert_frame_equal(as_series, changes)
    unchanged = prediction_changes(pred_prev, pred_prev)
    assert (unchanged["abs_change"] == 0).all() and (unchanged["rank_change"] == 0).all()
    assert unchanged.attrs["spearman"] == pytest.approx(1)
