"""The model selection's outer-fold fits handed to the model step (wijk_assets.lib.ml.outer_fits), on
SYNTHETIC data (a made-up country, see test_model_selection.rough_frame).

The model step may use the selection's fits instead of fitting again only because they are the same
fits: these tests check that a model trained with them is the model trained without them, bit for bit
(out-of-fold predictions, metrics, final model, fold models' predictions and SHAP values), and that
fits made on other folds or stored under another key are not used.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from wijk_assets.lib.ml.outer_fits import OuterFits, cut_to_rounds, load_outer_fits, outer_fits_key, save_outer_fits
from wijk_assets.lib.ml.selection import exact_rows, recipe_features, select_model, training_mask
from wijk_assets.lib.ml.training import FITS_FITTED, FITS_FROM_SELECTION, evaluate, feature_matrix, train_outcome
from wijk_assets_tests.unit.test_ml import synthetic_catalog
from wijk_assets_tests.unit.test_model_selection import FAST, RECIPES, rough_frame

SEED = 3


@pytest.fixture(scope="module")
def selected():
    frame = rough_frame()
    features = [c for c in frame.columns if c.startswith("health_")]
    catalog = synthetic_catalog(frame)
    result = select_model(frame, "lbm", features, catalog, seed=SEED, recipes=RECIPES)
    chosen = result.chosen
    model_features = recipe_features(chosen["feature_set"], features, catalog)
    mask = training_mask(chosen["training_rows"], exact_rows(frame))
    return frame, features, model_features, mask, result


def _train(selected, outer_fits):
    frame, features, model_features, mask, result = selected
    return train_outcome(frame, "lbm", model_features, params=result.chosen["params"], seed=SEED, n_jobs=1,
                         train_mask=mask, baseline_features=features, outer_fits=outer_fits)


def _assert_same_model(fresh, given, X):
    pd.testing.assert_frame_equal(fresh.oof_predictions, given.oof_predictions, check_exact=True)
    assert fresh.cv_metrics == given.cv_metrics and fresh.baseline_metrics == given.baseline_metrics
    assert fresh.model_string == given.model_string
    assert len(fresh.fold_models) == len(given.fold_models) == 5
    for a, b in zip(fresh.fold_models, given.fold_models):
        assert np.array_equal(a.predict(X), b.predict(X))
        assert np.array_equal(a.predict(X, pred_contrib=True), b.predict(X, pred_contrib=True))


def test_a_model_trained_with_the_selections_outer_fits_is_the_model_trained_without(selected):
    frame, _, model_features, _, result = selected
    fits = result.chosen_outer_fits
    assert len(fits.models) == 5 and fits.fold_of.shape == (len(frame),) and np.isfinite(fits.ridge).all()
    fresh, given = _train(selected, None), _train(selected, fits)
    assert fresh.cv_fits_from == FITS_FITTED and given.cv_fits_from == FITS_FROM_SELECTION
    _assert_same_model(fresh, given, feature_matrix(frame, model_features))


def test_fits_made_on_other_folds_are_not_used(selected):
    frame, _, model_features, _, result = selected
    fits = result.chosen_outer_fits
    other = OuterFits(fold_of=(fits.fold_of + 1) % 5, models=fits.models, ridge=fits.ridge)
    fresh, trained = _train(selected, None), _train(selected, other)
    assert trained.cv_fits_from == FITS_FITTED
    _assert_same_model(fresh, trained, feature_matrix(frame, model_features))


def test_a_damaged_fit_file_is_not_used_and_the_model_is_fitted(selected, tmp_path):
    """A handed-over model file cut in half (LightGBM would crash the process parsing it) is found by
    its checksum: nothing is handed over, the model step fits, and the model is the same."""
    frame, _, model_features, _, result = selected
    directory = save_outer_fits(result.chosen_outer_fits, tmp_path / "selection_outer_fits", "k")
    assert load_outer_fits(directory, "k") is not None
    text = (directory / "fold_0.txt").read_text(encoding="utf-8")
    (directory / "fold_0.txt").write_text(text[: len(text) // 2], encoding="utf-8")
    assert load_outer_fits(directory, "k") is None
    fresh, trained = _train(selected, None), _train(selected, load_outer_fits(directory, "k"))
    assert trained.cv_fits_from == FITS_FITTED
    _assert_same_model(fresh, trained, feature_matrix(frame, model_features))


def test_a_fit_cut_to_k_rounds_is_the_fit_of_k_rounds(selected):
    frame, features, _, _, _ = selected
    long = evaluate(frame, "lbm", features, FAST, seed=SEED, n_jobs=1, baselines=False)
    short = evaluate(frame, "lbm", features, {**FAST, "n_estimators": 20}, seed=SEED, n_jobs=1, baselines=False)
    X = feature_matrix(frame, features)
    for a, b in zip(long.fold_models, short.fold_models):
        cut = cut_to_rounds(a.model_to_string(), 20)
        assert np.array_equal(lgb.Booster(model_str=cut).predict(X), b.predict(X))
        assert not np.array_equal(a.predict(X), b.predict(X))  # the uncut fit is another model


def test_stored_fits_are_found_only_under_their_own_key(selected, tmp_path):
    frame, _, _, _, result = selected
    key = outer_fits_key(training_fingerprint="f", baseline_version="b", groups=frame["gemeente_code"], n_folds=5)
    moved = frame["gemeente_code"].copy()
    moved.iloc[0] = moved.iloc[-1]  # one row in another gemeente: other folds
    other = outer_fits_key(training_fingerprint="f", baseline_version="b", groups=moved, n_folds=5)
    assert key != other
    assert outer_fits_key(training_fingerprint="g", baseline_version="b", groups=frame["gemeente_code"],
                          n_folds=5) != key
    directory = tmp_path / "lbm" / "selection_outer_fits"
    assert load_outer_fits(directory, key) is None  # nothing stored
    save_outer_fits(result.chosen_outer_fits, directory, key)
    loaded = load_outer_fits(directory, key)
    assert loaded.models == result.chosen_outer_fits.models
    assert np.array_equal(loaded.fold_of, result.chosen_outer_fits.fold_of)
    assert np.array_equal(loaded.ridge, result.chosen_outer_fits.ridge)
    assert load_outer_fits(directory, other) is None
    (directory / "fold_2.txt").unlink()  # damaged: not used
    assert load_outer_fits(directory, key) is None


def test_the_selections_final_and_temporal_fits_are_the_model_steps_and_nothing_is_fitted_again(selected, monkeypatch):
    """Right after choosing, the selection fits its choice's final model and temporal check in the same
    workers. Handed over, the model step fits nothing (every fitting path raises here), and its model,
    out-of-fold table and temporal figures are those of the model fitted from scratch, bit for bit."""
    import json

    import wijk_assets.lib.ml.model_fits as model_fits
    import wijk_assets.lib.ml.training as training
    from wijk_assets.lib.ml.model_fits import handed_over_fits, train_model

    frame, features, model_features, mask, result = selected
    fits = result.chosen_outer_fits
    assert fits.final_model is not None and set(fits.temporal) == {"all_wijken", "unseen_gemeenten"}
    kwargs = dict(params=result.chosen["params"], seed=SEED, n_jobs=1, train_mask=mask, baseline_features=features)
    fresh = train_model(frame, "lbm", model_features, workers=1, **kwargs)

    def no_fit(*args, **kw):
        raise AssertionError("the model step fitted again what the selection handed over")
    for module, name in ((training, "_fit"), (training, "_fit_predict_ridge"), (model_fits, "fit_in_workers")):
        monkeypatch.setattr(module, name, no_fit)
    given = train_model(frame, "lbm", model_features, workers=2, outer_fits=fits, **kwargs)
    assert given.cv_fits_from == FITS_FROM_SELECTION and "fits_in_workers_seconds" not in given.timings
    _assert_same_model(fresh, given, feature_matrix(frame, model_features))
    assert json.dumps(fresh.temporal_metrics, sort_keys=True, default=str) == json.dumps(
        given.temporal_metrics, sort_keys=True, default=str)
    assert fresh.temporal_metrics["available"]
    # on other folds (another seed) the handed-over fits are not this model's: nothing is handed over
    assert handed_over_fits(frame, "lbm", SEED, fits) is not None
    assert handed_over_fits(frame, "lbm", SEED + 1, fits) is None


def test_the_final_and_temporal_fits_are_stored_with_the_fold_fits_and_checked(selected, tmp_path):
    frame, _, _, _, result = selected
    fits = result.chosen_outer_fits
    directory = save_outer_fits(fits, tmp_path / "selection_outer_fits", "k")
    loaded = load_outer_fits(directory, "k")
    assert loaded.final_model == fits.final_model and set(loaded.temporal) == set(fits.temporal)
    for variant, by_model in fits.temporal.items():
        assert set(loaded.temporal[variant]) == {"lightgbm", "ridge"}
        for model, values in by_model.items():
            assert np.array_equal(loaded.temporal[variant][model], values)
    text = (directory / "final.txt").read_text(encoding="utf-8")
    (directory / "final.txt").write_text(text[: len(text) // 2], encoding="utf-8")  # damaged: nothing is used
    assert load_outer_fits(directory, "k") is None


def test_the_selections_out_of_fold_predictions_are_the_fold_models_own_and_the_model_step_uses_them(
        selected, tmp_path, monkeypatch):
    """The selection hands over its out-of-fold predictions of the choice: they are what the cut fold
    models predict, bit for bit, they are stored with the fits, and the model step takes them instead of
    predicting every row again (no booster predicts here; the out-of-fold table is the fresh model's)."""
    from wijk_assets.lib.ml.model_fits import train_model

    frame, features, model_features, mask, result = selected
    fits = result.chosen_outer_fits
    X = feature_matrix(frame, model_features)
    assert fits.predictions.shape == (len(frame),)
    for fold, text in enumerate(fits.models):
        rows = fits.fold_of == fold
        assert np.array_equal(lgb.Booster(model_str=text).predict(X[rows]), fits.predictions[rows])
    loaded = load_outer_fits(save_outer_fits(fits, tmp_path / "selection_outer_fits", "k"), "k")
    assert np.array_equal(loaded.predictions, fits.predictions)

    kwargs = dict(params=result.chosen["params"], seed=SEED, n_jobs=1, train_mask=mask, baseline_features=features)
    fresh = train_model(frame, "lbm", model_features, workers=1, **kwargs)

    def no_predict(*args, **kw):
        raise AssertionError("the model step predicted again what the selection handed over")
    monkeypatch.setattr(lgb.Booster, "predict", no_predict)
    given = train_model(frame, "lbm", model_features, workers=2, outer_fits=loaded, **kwargs)
    pd.testing.assert_frame_equal(fresh.oof_predictions, given.oof_predictions, check_exact=True)
    assert fresh.cv_metrics == given.cv_metrics


def test_stored_predictions_of_another_length_are_not_used(selected, tmp_path):
    _, _, _, _, result = selected
    fits = result.chosen_outer_fits
    short = OuterFits(fold_of=fits.fold_of, models=fits.models, ridge=fits.ridge, predictions=fits.predictions[:-1])
    assert load_outer_fits(save_outer_fits(short, tmp_path / "selection_outer_fits", "k"), "k").predictions is None


def test_fits_stored_without_predictions_are_still_used_and_give_the_same_model(selected, tmp_path):
    """Fits stored by the previous version (no out-of-fold predictions in ``arrays.npz``) are handed over
    as before: the model step predicts the rows with them, and the model is the one fitted from scratch."""
    frame, _, model_features, _, result = selected
    fits = result.chosen_outer_fits
    old = OuterFits(fold_of=fits.fold_of, models=fits.models, ridge=fits.ridge, final_model=fits.final_model,
                    temporal=fits.temporal)
    loaded = load_outer_fits(save_outer_fits(old, tmp_path / "selection_outer_fits", "k"), "k")
    assert loaded.predictions is None
    fresh, given = _train(selected, None), _train(selected, loaded)
    assert given.cv_fits_from == FITS_FROM_SELECTION
    _assert_same_model(fresh, given, feature_matrix(frame, model_features))


@pytest.mark.parametrize("damage", ["flipped byte", "cut"])
def test_a_damaged_arrays_file_is_not_used_and_the_model_is_fitted(selected, tmp_path, damage):
    """The out-of-fold, ridge and temporal arrays are one zip file: a flipped byte (its CRC no longer
    matches) or a file cut short makes the stored fits unusable, not the model step fail."""
    frame, _, model_features, _, result = selected
    directory = save_outer_fits(result.chosen_outer_fits, tmp_path / "selection_outer_fits", "k")
    raw = bytearray((directory / "arrays.npz").read_bytes())
    if damage == "flipped byte":
        raw[raw.find(b"lightgbm.npy") + 300] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    (directory / "arrays.npz").write_bytes(bytes(raw))
    assert load_outer_fits(directory, "k") is None
    fresh, trained = _train(selected, None), _train(selected, load_outer_fits(directory, "k"))
    assert trained.cv_fits_from == FITS_FITTED
    _assert_same_model(fresh, trained, feature_matrix(frame, model_features))
