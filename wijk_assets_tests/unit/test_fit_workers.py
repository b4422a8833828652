"""The model selection's fit workers (wijk_assets.lib.lgbm_fits via wijk_assets.lib.ml.parallel_fits), on
SYNTHETIC data (labelled as such: random matrices, no real file)."""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from wijk_assets.lib.lgbm_fits import fit_task, worker_init
from wijk_assets.lib.ml.parallel_fits import _lean_workers, run_fits

PARAMS = {"num_leaves": 7, "min_data_in_leaf": 10, "feature_fraction": 0.8, "bagging_fraction": 0.8,
          "learning_rate": 0.1, "n_estimators": 30}


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = X[:, 0] - 0.5 * X[:, 1] + rng.normal(0, 0.3, 400)
    payload = ("all", PARAMS, [10, 30], np.arange(300), np.arange(300, 400), True)
    return {"all": X}, y, {"all": [f"f{i}" for i in range(6)]}, payload


# evaluated in the worker (a builtin is all a worker can unpickle without importing this test module)
LOADED = ("sorted(n for n, m in __import__('sys').modules.items() "
          "if m is not None and n.split('.')[0] in {'sklearn', 'pandas', 'dagster', 'duckdb'})")


def test_a_fit_worker_loads_neither_scikit_learn_nor_pandas_and_fits_the_same_model():
    """A worker starts in a fresh interpreter: LightGBM's optional scikit-learn and pandas integrations
    (most of a worker's start-up time) are kept out, and its fit is the fit of the calling process."""
    matrices, y, names, payload = _data()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=worker_init, initargs=(matrices, y, names, 3, 1)) as pool:
        with _lean_workers():
            predictions, model = pool.submit(fit_task, payload).result()
            loaded = pool.submit(eval, LOADED).result()
    assert loaded == []
    (here, here_model), = run_fits([payload], matrices, y, names, 3, 1, workers=1)
    assert here_model == model
    assert all(np.array_equal(predictions[k], here[k]) for k in (10, 30))
    assert "sklearn" in sys.modules and sys.modules["sklearn"] is not None  # the calling process is untouched

