"""Unit tests (SYNTHETIC data) for calibrated intervals, simulated rank ranges, fold models and the
driver-sentence comparison rule. The same properties are checked on the real data in
test_model_outputs.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.ml.explain import (
    HIGHER,
    LOWER,
    WITHIN,
    area_drivers,
    area_residuals,
    comparison_agrees,
)
from wijk_assets.lib.ml.training import (
    evaluate,
    feature_matrix,
    fit_fold_models,
    fold_predictions,
    load_fold_models,
    save_fold_models,
)
from wijk_assets.lib.ml.uncertainty import (
    calibration_groups,
    conformal_intervals,
    conformal_quantile,
    coverage_by_group,
    match_quality,
    simulated_rank_ranges,
    size_class,
)
from wijk_assets.lib.responsible.stigma import simulated_rank_text


def test_match_quality_takes_the_worst_rule():
    rules = pd.Series([
        "cbs_kwb:exact, rivm_gezondheid:exact",
        "rivm_gezondheid:exact_code_and_name",
        "cbs_kwb:exact, rivm_gezondheid:name_within_gemeente",
        "rivm_gezondheid:contained_in_sole_unmatched_wijk, cbs_kwb:exact",
        "rivm_gezondheid:some_future_rule",
        None,
    ])
    assert match_quality(rules).tolist()[:5] == ["exact", "exact", "name", "rough", "rough"]
    assert pd.isna(match_quality(rules).iloc[5])


def test_calibration_groups_merge_small_combinations():
    quality = pd.Series(["exact"] * 300 + ["rough"] * 40 + ["rough"] * 200)
    size = pd.Series(["large"] * 150 + ["small"] * 150 + ["small"] * 40 + ["large"] * 200)
    groups = calibration_groups(quality, size, min_rows=100)
    assert set(groups[:300]) == {"exact/large", "exact/small"}
    assert set(groups[300:]) == {"rough/all"}  # rough/small has 40 rows < 100: merged with rough/large
    assert size_class(pd.Series([1, 2, 3, np.nan, 10])).tolist() == ["small", "small", "large", "small", "large"]
    # a quality too small even as a whole is calibrated with everything else
    tiny = calibration_groups(pd.Series(["exact"] * 300 + ["name"] * 5 + ["rough"] * 60),
                              pd.Series(["large"] * 365), min_rows=100, min_quality_rows=40)
    assert set(tiny[300:305]) == {"pooled/all"} and set(tiny[:300]) == {"exact/large"}
    assert set(tiny[305:]) == {"rough/all"}


def test_a_group_too_small_for_its_coverage_falls_back_to_all_rows():
    rng = np.random.default_rng(2)  # SYNTHETIC: 'few' has 6 rows, too few for a 95 % conformal quantile
    groups = np.array(["many"] * 400 + ["few"] * 6)
    actual = rng.normal(0, 1, 406)
    clusters = np.arange(406) % 10
    iv = conformal_intervals(actual, np.zeros(406), groups, clusters, coverage=0.95)
    assert np.isfinite(iv["half_width"]).all()
    assert iv["half_width"][400:].between(1.2, 2.6).all()


def test_conformal_quantile_is_the_finite_sample_rank():
    r = np.arange(1, 101, dtype=float)  # 1..100
    assert conformal_quantile(r, 0.9) == 91.0  # ceil(101 * 0.9) = 91st smallest
    assert conformal_quantile(r[:5], 0.9) == float("inf")  # too few to promise 90 %


def test_group_calibrated_intervals_cover_every_group_where_a_global_band_does_not():
    rng = np.random.default_rng(3)  # SYNTHETIC: a precise group and a noisy one, 5 folds
    n = 4000
    group = np.where(rng.random(n) < 0.8, "exact/large", "rough/all")
    noise = np.where(group == "exact/large", 0.05, 0.20)
    predicted = rng.normal(4.0, 0.3, n)
    actual = predicted + rng.normal(0, noise)
    folds = rng.integers(0, 5, n)
    iv = conformal_intervals(actual, predicted, group, folds, coverage=0.93)
    cov = coverage_by_group(actual, iv["lower"], iv["upper"], group).set_index("group")
    assert cov["coverage"].between(0.90, 0.96).all(), cov
    assert cov.loc["rough/all", "mean_width"] > 3 * cov.loc["exact/large", "mean_width"]
    # one global band of the same nominal coverage under-covers the noisy group
    half = conformal_quantile(np.abs(actual - predicted), 0.93)
    glob = coverage_by_group(actual, predicted - half, predicted + half, group).set_index("group")
    assert glob.loc["rough/all", "coverage"] < 0.80 and glob.loc["exact/large", "coverage"] > 0.97


def test_conformal_never_calibrates_a_row_on_its_own_cluster():
    # SYNTHETIC: fold 0 has huge residuals, the other folds tiny ones; fold 0's interval must come from the
    # other folds only (so it is narrow and fold 0 is NOT covered: the check is honest, not circular).
    actual = np.r_[np.full(50, 10.0), np.zeros(200)]
    predicted = np.zeros(250)
    folds = np.r_[np.zeros(50, int), np.repeat([1, 2, 3, 4], 50)]
    iv = conformal_intervals(actual, predicted, ["g"] * 250, folds, coverage=0.9)
    assert (iv["half_width"][:50] == 0).all()
    assert (iv["half_width"][50:] == 10.0).all()


def test_a_group_from_few_gemeenten_leaves_out_the_wijk_not_the_gemeente():
    """SYNTHETIC: a 'rough' group drawn from 8 gemeenten, one of which (g0, with a third of the rows) has
    residuals three times as large. Leaving out a whole gemeente calibrates g0 on the others only and
    under-covers the group; leaving out the wijk (all its years) covers it, and still never uses a row's
    own residual."""
    rng = np.random.default_rng(11)
    gemeente = np.r_[np.zeros(120, int), rng.integers(1, 8, 240)]
    wijk = np.array([f"w{g}_{i % 30}" for i, g in enumerate(gemeente)])
    scale = np.where(gemeente == 0, 0.3, 0.1)
    actual = rng.normal(0, scale)
    predicted = np.zeros(actual.size)
    group = np.full(actual.size, "rough/all")
    by_gemeente = conformal_intervals(actual, predicted, group, gemeente, coverage=0.95)
    by_wijk = conformal_intervals(actual, predicted, group, gemeente, coverage=0.95, units=wijk)
    cov = [coverage_by_group(actual, iv["lower"], iv["upper"], group)["coverage"].iloc[0] for iv in (by_gemeente, by_wijk)]
    assert cov[0] < 0.90 <= cov[1] <= 0.97, cov
    # a wijk's own residuals never calibrate it: the wijk with the one largest residual is not covered by it
    worst = int(np.argmax(np.abs(actual)))
    assert by_wijk["half_width"][worst] < abs(actual[worst])
    # with many gemeenten (>= MIN_GROUP_CLUSTERS) the whole gemeente is left out, as before
    many = np.arange(actual.size) % 40
    assert conformal_intervals(actual, predicted, group, many, units=wijk).equals(
        conformal_intervals(actual, predicted, group, many))


def test_flags_only_outside_the_interval():
    out = area_residuals([4.30, 3.90, 4.05, 4.05], [4.10, 4.10, 4.10, 4.00], half_width=[0.25, 0.15, 0.02, 0.1])
    assert out["flag"].tolist() == [WITHIN, LOWER, LOWER, WITHIN]
    assert out["lower"].tolist() == pytest.approx([3.85, 3.95, 4.08, 3.90])
    out = area_residuals([4.30], [4.10], half_width=[0.1])
    assert out["flag"].tolist() == [HIGHER]
    with pytest.raises(ValueError):
        area_residuals([4.3], [4.1], half_width=[0.0])


def test_simulated_ranks_are_informative_only_where_scores_separate():
    rng = np.random.default_rng(5)  # SYNTHETIC
    n = 300
    predicted = pd.Series(np.r_[np.linspace(3.0, 5.0, 150), np.full(150, 4.0)])
    groups = pd.Series(["precise"] * 150 + ["noisy"] * 150)
    pool = pd.DataFrame({"group": ["precise"] * 500 + ["noisy"] * 500,
                         "residual": np.r_[rng.normal(0, 0.01, 500), rng.normal(0, 1.0, 500)]})
    ranks = simulated_rank_ranges(predicted, groups, pool, n_draws=200, seed=1)
    assert (ranks["rank_low"] <= ranks["rank_high"]).all()
    # the noisy wijken all predict 4.0 with sd 1.0: they can end up anywhere -> not informative
    assert not ranks["informative"].iloc[150:].any()
    # the precise extremes are ordered: the top one ranks near the top in every draw
    assert ranks["informative"].iloc[[0, 149]].all()
    assert ranks["rank_high"].iloc[149] < 0.2 * n
    text = simulated_rank_text(ranks["rank_low"], ranks["rank_high"], ranks["n_ranked"], ranks["informative"])
    assert text["rank_range"].iloc[150:].isna().all()
    assert (text["rank_note"].iloc[150:] == "not distinguishable from most wijken").all()
    assert text["rank_range"].iloc[149].startswith("rank ") and text["rank_note"].iloc[149] is None


def test_comparison_value_never_contradicts_the_verb():
    # SYNTHETIC SHAP rows: feature 'a' raises the prediction with higher values (direction +1)
    assert comparison_agrees(12.0, 8.0, +1, 0.05)
    assert not comparison_agrees(12.0, 8.0, +1, -0.05)  # "lowers" with a value on the favourable side
    assert not comparison_agrees(12.0, 8.0, 0, 0.05)  # no single direction: no comparison
    assert not comparison_agrees(8.0, 8.0, +1, 0.05)
    long = pd.DataFrame({
        "area_code": ["A", "A", "B", "B"], "year": 2022, "outcome": "lbm",
        "feature": ["a", "b", "a", "b"], "feature_value": [12.0, 3.0, 12.0, 9.0],
        "shap_value": [0.05, -0.02, -0.03, -0.01], "base_value": 4.0, "prediction": 4.0,
    })
    catalog = pd.DataFrame({"feature": ["a", "b"], "label": ["share a", "share b"], "unit": ["%", "%"]})
    drivers = area_drivers(long, catalog, {"a": 8.0, "b": 5.0}, directions={"a": 1, "b": 1},
                           reference_label="average wijk")
    s = drivers.set_index(["area_code", "feature"])["sentence"]
    assert s[("A", "a")] == "share a: 12.0% (average wijk 8.0%) raises the predicted score by 0.05"
    assert s[("A", "b")] == "share b: 3.0% (average wijk 5.0%) lowers the predicted score by 0.02"
    # B: a high value of a favourable feature that still lowers (interactions): no comparison shown
    assert s[("B", "a")] == "share a: 12.0% lowers the predicted score by 0.03"
    assert s[("B", "b")] == "share b: 9.0% lowers the predicted score by 0.01"
    assert drivers.set_index(["area_code", "feature"])["comparison_shown"].tolist() == [True, True, False, False]


def test_fold_models_reproduce_the_out_of_fold_predictions(tmp_path):
    rng = np.random.default_rng(11)  # SYNTHETIC training frame: 40 gemeenten x 10 wijken x 2 years
    n = 800
    frame = pd.DataFrame({
        "area_code": [f"WK{i % 400:06d}" for i in range(n)],
        "gemeente_code": [f"GM{(i % 400) // 10:04d}" for i in range(n)],
        "outcome_year": np.repeat([2020, 2022], 400),
        "feature_year": np.repeat([2020, 2020], 400),
    })
    for j in range(6):
        frame[f"f{j}"] = rng.normal(size=n)
    frame.loc[rng.random(n) < 0.1, "f2"] = np.nan
    frame["lbm"] = 4 + 0.3 * frame["f0"] - 0.2 * frame["f1"].clip(-1, 1) + rng.normal(0, 0.1, n)
    features = [f"f{j}" for j in range(6)]
    params = {"name": "t", "num_leaves": 7, "min_data_in_leaf": 20, "feature_fraction": 0.8,
              "bagging_fraction": 0.7, "learning_rate": 0.1, "n_estimators": 60}
    grid = [params, {**params, "name": "u", "num_leaves": 15}]
    result = evaluate(frame, "lbm", features, grid, seed=4, n_jobs=1, baselines=False)
    fold_of = result.oof["fold"].to_numpy()
    boosters = fit_fold_models(frame, "lbm", features, result.best_params, fold_of, seed=4, n_jobs=1)
    assert len(boosters) == 5
    pred = fold_predictions(boosters, feature_matrix(frame, features), fold_of)
    np.testing.assert_allclose(pred, result.oof["lightgbm"].to_numpy(), rtol=0, atol=1e-12)
    save_fold_models(boosters, tmp_path)
    again = fold_predictions(load_fold_models(tmp_path), feature_matrix(frame, features), fold_of)
    np.testing.assert_allclose(again, pred, rtol=0, atol=1e-12)
    with pytest.raises(FileNotFoundError, match="folds"):
        load_fold_models(tmp_path / "elsewhere")
