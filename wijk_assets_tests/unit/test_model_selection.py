"""Model selection by grouped CV, scored with the choice included (BBC-CV or nested CV;
wijk_assets.lib.ml.selection) and training with a train mask,
on SYNTHETIC data (labelled as such: a made-up country, see test_ml.synthetic_frame).

The synthetic frame gets a match column: a block of gemeenten whose wijk-years are "rough" matches whose
outcome is shifted by a large error (features that describe another area), so training on exact
matches only must be the better recipe there, and the selection must find it without being told.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.ml.selection import (
    RETUNE_ROW_CHANGE,
    Recipe,
    exact_rows,
    recipe_features,
    retune_reason,
    select_model,
    training_mask,
    training_summary,
)
from wijk_assets.lib.ml.training import evaluate, train_outcome
from wijk_assets_tests.unit.test_ml import synthetic_catalog, synthetic_frame

FAST = {"num_leaves": 7, "min_data_in_leaf": 10, "feature_fraction": 0.8, "bagging_fraction": 0.8,
        "learning_rate": 0.1, "n_estimators": 60}
RECIPES = (
    Recipe("fast_all", "all", "all_matches", FAST),
    Recipe("fast_exact", "all", "exact_only", FAST),
)


def rough_frame(seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC: a third of the wijk-years are rough matches whose scores are shifted at random."""
    frame = synthetic_frame(n_gemeenten=30, wijken_per_gemeente=8, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rough = rng.random(len(frame)) < 0.35
    frame["match_rules"] = np.where(rough, "leefbaarometer:contained_in_sole_unmatched_wijk", "leefbaarometer:exact")
    frame.loc[rough, "lbm"] += rng.normal(0, 0.4, rough.sum())
    return frame


@pytest.fixture(scope="module")
def selected():
    frame = rough_frame()
    features = [c for c in frame.columns if c.startswith("health_")]
    return frame, features, select_model(frame, "lbm", features, synthetic_catalog(frame), seed=3, recipes=RECIPES)


def test_the_selection_prefers_exact_matches_when_rough_ones_are_noise(selected):
    _, _, result = selected
    assert result.chosen["training_rows"] == "exact_only"
    table = result.candidates.set_index("config")
    assert table.loc["fast_exact@60", "r2_exact_rows"] > table.loc["fast_all@60", "r2_exact_rows"]
    assert table["chosen"].sum() == 1 and table.loc[result.chosen["config"], "chosen"]
    # BBC-CV (the default): the corrected score on exact rows only, margin with an interval; the shares
    # of the draws that chose each configuration add up to one
    assert result.outer_choices == []
    corrected = result.corrected
    assert corrected["method"] == "bbc" and corrected["n_rows"] == int(exact_rows(selected[0]).sum())
    assert corrected["margin_lower"] <= corrected["margin_r2"] <= corrected["margin_upper"]
    assert corrected["r2"] > 0.3 and np.isfinite(corrected["ridge_r2"])
    assert table["chosen_share"].sum() == pytest.approx(1.0)
    assert table.loc[result.chosen["config"], "chosen_share"] > 0.5


def test_the_selection_is_deterministic_and_row_order_free(selected):
    frame, features, result = selected
    shuffled = frame.sample(frac=1.0, random_state=5).sort_values(["area_code", "outcome_year"], kind="mergesort")
    again = select_model(shuffled.reset_index(drop=True), "lbm", features, synthetic_catalog(frame), seed=3,
                         recipes=RECIPES)
    assert again.version == result.version
    assert again.record()["corrected"] == result.record()["corrected"]


def test_fits_in_worker_processes_give_the_same_selection_as_serial_ones(selected):
    """Same input, same output for any number of worker processes, bit for bit."""
    frame, features, result = selected
    serial = select_model(frame, "lbm", features, synthetic_catalog(frame), seed=3, recipes=RECIPES, workers=1)
    parallel = select_model(frame, "lbm", features, synthetic_catalog(frame), seed=3, recipes=RECIPES, workers=2)
    assert serial.record()["candidates"] == parallel.record()["candidates"]
    assert json.dumps(serial.record()["corrected"], sort_keys=True) == json.dumps(parallel.record()["corrected"], sort_keys=True)
    assert serial.outer_choices == parallel.outer_choices and serial.version == parallel.version
    # the choice's final and temporal fits, made in the same workers right after choosing
    a, b = serial.chosen_outer_fits, parallel.chosen_outer_fits
    assert a.final_model is not None and a.final_model == b.final_model
    assert set(a.temporal) == set(b.temporal) == {"all_wijken", "unseen_gemeenten"}
    for variant in a.temporal:
        for model in ("lightgbm", "ridge"):
            assert np.array_equal(a.temporal[variant][model], b.temporal[variant][model])


def test_nested_cv_on_request_makes_the_same_choice_with_one_inner_choice_per_outer_fold(selected):
    """``wijk-assets tune --nested``: the stored choice does not depend on how its figures are corrected
    (lowest plain grouped-CV RMSE either way); nested CV records one inner choice per outer fold."""
    frame, features, result = selected
    nested = select_model(frame, "lbm", features, synthetic_catalog(frame), seed=3, recipes=RECIPES, method="nested")
    assert nested.chosen == result.chosen and nested.version == result.version
    assert nested.record()["candidates"] != result.record()["candidates"]  # shares: outer folds, not draws
    assert len(nested.outer_choices) == 5 and nested.corrected["method"] == "nested"
    assert nested.corrected["n_rows"] == result.corrected["n_rows"]
    assert nested.corrected["margin_lower"] <= nested.corrected["margin_r2"] <= nested.corrected["margin_upper"]
    with pytest.raises(ValueError, match="unknown selection method"):
        select_model(frame, "lbm", features, synthetic_catalog(frame), seed=3, recipes=RECIPES, method="loocv")


def test_a_train_mask_trains_on_its_rows_but_predicts_every_row():
    frame = rough_frame()
    features = [c for c in frame.columns if c.startswith("health_")]
    mask = training_mask("exact_only", exact_rows(frame))
    result = evaluate(frame, "lbm", features, FAST, seed=3, n_jobs=1, train_mask=mask)
    assert result.oof["lightgbm"].notna().all()  # every row has an out-of-fold prediction
    assert result.fold_models is not None and len(result.fold_models) == 5
    artifact = train_outcome(frame, "lbm", features, FAST, seed=3, n_jobs=1, train_mask=mask, temporal=False)
    assert artifact.n_rows == int(mask.sum()) < len(frame)
    # the mask changes the model: trained on every row it would differ
    unmasked = train_outcome(frame, "lbm", features, FAST, seed=3, n_jobs=1, temporal=False)
    assert unmasked.model_string != artifact.model_string
    with pytest.raises(ValueError, match="selects no row"):
        evaluate(frame, "lbm", features, FAST, seed=3, n_jobs=1, train_mask=np.zeros(len(frame), dtype=bool))


def test_own_health_features_are_the_wijk_values_of_the_health_monitor():
    catalog = pd.DataFrame({"feature": ["a", "b", "c"], "source": ["rivm_gezondheid", "cbs_kwb", "rivm_gezondheid"]})
    assert recipe_features("own_health", ["gm__a", "a", "b", "c", "bu_sd__c"], catalog) == ["a", "c"]
    assert recipe_features("all", ["a", "b"], catalog) == ["a", "b"]
    with pytest.raises(ValueError):
        recipe_features("everything", ["a"], catalog)


def test_the_re_selection_rule():
    frame = rough_frame()
    features = [c for c in frame.columns if c.startswith("health_")]
    stored = training_summary(frame, "lbm", features)
    assert retune_reason(None, stored) == "no stored choice"
    assert retune_reason(stored, stored) is None
    assert retune_reason(stored, stored, force=True) == "asked for (retune)"
    # corrected values, same rows: keep
    changed = frame.copy()
    changed.loc[0, "health_f0_18plus"] += 1
    assert retune_reason(stored, training_summary(changed, "lbm", features)) is None
    # a new outcome year: select again
    newer = pd.concat([frame, frame.assign(outcome_year=2022)], ignore_index=True)
    assert "outcome years" in retune_reason(stored, training_summary(newer, "lbm", features))
    # one feature column of six gone: beyond the 10 % rule, select again; one of many: keep
    assert "feature columns" in retune_reason(stored, training_summary(frame, "lbm", features[:-1]))
    wide = frame.assign(**{f"extra_{i}": frame["health_f0_18plus"] * i for i in range(1, 20)})
    wide_features = features + [f"extra_{i}" for i in range(1, 20)]
    assert retune_reason(training_summary(wide, "lbm", wide_features),
                         training_summary(wide, "lbm", wide_features[:-1])) is None
    # rows: within the rule kept, beyond it selected again
    few = int(len(frame) * RETUNE_ROW_CHANGE * 0.5)
    assert retune_reason(stored, training_summary(frame.iloc[few:], "lbm", features)) is None
    many = int(len(frame) * RETUNE_ROW_CHANGE * 1.5)
    assert "training rows" in retune_reason(stored, training_summary(frame.iloc[many:], "lbm", features))
