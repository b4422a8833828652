"""LightGBM fits of the nested CV (:mod:`wijk_assets.lib.ml.selection`) in worker processes.

LightGBM's C API is not thread-safe across boosters (fits in parallel threads crashed the process), so
parallel fits run in worker processes, started with "spawn" (a clean interpreter: no forked OpenMP
state, no copy of the caller's Dagster/DuckDB objects). Each worker receives the feature matrices
once (pool initializer) and bins them itself exactly as the caller would (same values, same params),
so every fit -- and every result -- is identical to the serial path's.

"""

from __future__ import annotations

import multiprocessing
import sys
import types
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from wijk_assets.lib.ml.training import _default_n_jobs, _default_workers, _fit, _SharedBins, resolve_params

_STATE: dict[str, Any] = {}


def _init_fits(matrices, y, names, seed, n_jobs) -> None:
    _STATE.clear()
    _STATE.update(matrices=matrices, y=y, names=names, seed=seed, n_jobs=n_jobs,
                  bins={fs: _SharedBins(X, y, names[fs]) for fs, X in matrices.items()})


def _fit_task(payload) -> tuple[dict[int, np.ndarray], str | None]:
    """(predictions per checkpoint, the model text when the payload asks to keep the model)."""
    feature_set, params, checkpoints, fit_rows, predict_rows, keep_model = payload
    X, y = _STATE["matrices"][feature_set], _STATE["y"]
    native, rounds = resolve_params(params, _STATE["seed"], _STATE["n_jobs"])
    booster = _fit(X[fit_rows], y[fit_rows], native, rounds, _STATE["names"][feature_set],
                   _STATE["bins"][feature_set].subset(native, fit_rows, None))
    predictions = {k: booster.predict(X[predict_rows], num_iteration=k) for k in checkpoints}
    return predictions, (booster.model_to_string() if keep_model else None)


def run_fits(payloads, matrices, y, names, seed, n_jobs, workers) -> list[tuple[dict[int, np.ndarray], str | None]]:
    """Every fit of ``payloads``, in order: in this process, or in ``workers`` spawned processes. Each
    gives its predictions per checkpoint, and its model text when the payload's last item is true.

    In worker processes each fit gets ``n_jobs // workers`` LightGBM threads (at least one): two
    processes with two spinning OpenMP threads each on two cores are several times slower than one
    thread each (see :func:`wijk_assets.lib.ml.training._default_n_jobs`). Predictions do not depend on
    the thread count."""
    workers = _default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or len(payloads) < 2:
        _init_fits(matrices, y, names, seed, n_jobs)
        try:
            return [_fit_task(p) for p in payloads]
        finally:
            _STATE.clear()
    n_jobs = max(1, (n_jobs if n_jobs is not None else _default_n_jobs()) // min(workers, len(payloads)))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(payloads)), mp_context=context,
                             initializer=_init_fits, initargs=(matrices, y, names, seed, n_jobs)) as pool:
        with _lean_workers():  # the workers start while the tasks are submitted
            futures = [pool.submit(_fit_task, payload) for payload in payloads]
        return [future.result() for future in futures]


@contextmanager
def _lean_workers():
    """Start the worker processes without the caller's ``__main__``.

    A "spawn" child first imports the parent's main module (a CLI, ``dagster``'s run worker, a script),
    with everything that imports: Dagster, dbt, Great Expectations. Each fit worker then held ~140-560 MB
    it never uses (measured: 367 MB per worker from a bare script, 508 MB when the script imported
    Dagster and the definitions, ~930 MB from a script that built the definitions), which took the lbm
    selection's process tree over 2 GiB. The workers need only this module, so the parent's main module
    is hidden while they start."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
