"""The model step's fits in worker processes (wijk_assets.lib.ml.model_fits) are the fits of the calling
process, bit for bit: model text, out-of-fold predictions, fold models, temporal check and every metric.
SYNTHETIC data (a made-up country, see test_model_selection.rough_frame); two spawned workers."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd

from wijk_assets.lib.ml.model_fits import train_model
from wijk_assets.lib.ml.training import FITS_FITTED, FITS_FROM_SELECTION, feature_matrix
from wijk_assets_tests.unit.test_outer_fits import SEED, _assert_same_model, selected  # noqa: F401 (fixture)


def _train(selected, outer_fits, workers):  # noqa: F811
    frame, features, model_features, mask, result = selected
    return train_model(frame, "lbm", model_features, params=result.chosen["params"], seed=SEED, n_jobs=1,
                       train_mask=mask, baseline_features=features, outer_fits=outer_fits, workers=workers)


def _same(a, b) -> bool:
    """Equal, NaN included (a metric with no variance is NaN on both paths)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _assert_same_everything(here, pooled, X):
    _assert_same_model(here, pooled, X)
    assert _same(here.temporal_metrics, pooled.temporal_metrics)
    assert here.temporal_metrics["available"] and {"all_wijken", "unseen_gemeenten"} <= set(here.temporal_metrics)
    assert here.data_version == pooled.data_version and here.n_rows == pooled.n_rows
    pd.testing.assert_frame_equal(here.calibration_table, pooled.calibration_table, check_exact=True)


def test_the_models_fits_in_worker_processes_are_the_fits_of_this_process(selected):  # noqa: F811
    """Without the selection's fits: five fold fits, the final fit and two temporal fits in the workers,
    the ridge folds in this thread. With a training mask that leaves rows out (exact matches only)."""
    frame, _, model_features, mask, _ = selected
    here, pooled = _train(selected, None, 1), _train(selected, None, 2)
    assert here.cv_fits_from == pooled.cv_fits_from == FITS_FITTED
    assert "fits_in_workers_seconds" in pooled.timings and "fits_in_workers_seconds" not in here.timings
    _assert_same_everything(here, pooled, feature_matrix(frame, model_features))


def test_with_the_selections_fits_handed_over_only_the_final_and_temporal_fits_run_in_the_workers(selected):  # noqa: F811
    """The selection's cross-validation fits without its final and temporal fits (as a selection that did
    not make them would hand over): the final and temporal fits run in the workers."""
    frame, _, model_features, mask, result = selected
    cv_only = dataclasses.replace(result.chosen_outer_fits, final_model=None, temporal=None)
    here, pooled = _train(selected, cv_only, 1), _train(selected, cv_only, 2)
    assert "fits_in_workers_seconds" in pooled.timings
    assert here.cv_fits_from == pooled.cv_fits_from == FITS_FROM_SELECTION
    _assert_same_everything(here, pooled, feature_matrix(frame, model_features))


def test_a_partial_training_mask_changes_the_final_fit_in_both_paths_alike(selected):  # noqa: F811
    """The final fit bins its own (masked) rows in the worker as in this process: dropping rows from the
    mask changes the model, identically on both paths."""
    frame, features, model_features, mask, result = selected
    smaller = mask.copy()
    smaller[np.flatnonzero(smaller)[::7]] = False
    kwargs = dict(params=result.chosen["params"], seed=SEED, n_jobs=1, train_mask=smaller, baseline_features=features)
    here = train_model(frame, "lbm", model_features, workers=1, **kwargs)
    pooled = train_model(frame, "lbm", model_features, workers=2, **kwargs)
    assert here.model_string == pooled.model_string != _train(selected, None, 1).model_string
    assert _same(here.temporal_metrics, pooled.temporal_metrics)
