"""LightGBM fits of the model selection (:mod:`wijk_assets.lib.ml.selection`) and of the model step
(:mod:`wijk_assets.lib.ml.model_fits`) in worker processes, started for one call and stopped after it
(so they hold no memory through the next stage; keeping them between calls saved nothing measurable).
One call may have two rounds (:func:`fit_pool`): the selection's cross-validation, then its choice's
final and temporal fits in the same workers.

LightGBM's C API is not thread-safe across boosters (fits in parallel threads crashed the process), so
parallel fits run in worker processes, started with "spawn" (a clean interpreter: no forked OpenMP
state, no copy of the caller's Dagster/DuckDB objects). Each worker receives the feature matrices
once (pool initializer) and bins them itself exactly as the caller would (same values, same params),
so every fit -- and every result -- is identical to the serial path's. The worker side is
:mod:`wijk_assets.lib.lgbm_fits` (numpy and LightGBM only, so a worker starts in a fraction of the time).

"""

from __future__ import annotations

import multiprocessing
import sys
import types
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from wijk_assets.lib.lgbm_fits import _default_n_jobs, _default_workers, clear_state, fit_task, worker_init


def run_fits(payloads, matrices, y, names, seed, n_jobs, workers) -> list[tuple[dict[int, np.ndarray], str | None]]:
    """Every fit of ``payloads``, in order: in this process, or in ``workers`` spawned processes. Each
    gives its predictions per checkpoint, and its model text when the payload's last item is true.

    In worker processes each fit gets ``n_jobs // workers`` LightGBM threads (at least one): two
    processes with two spinning OpenMP threads each on two cores are several times slower than one
    thread each (see :func:`wijk_assets.lib.ml.training._default_n_jobs`). Predictions do not depend on
    the thread count."""
    with fit_pool(matrices, y, names, seed, n_jobs, workers, len(payloads)) as run:
        return run(payloads)


@contextmanager
def fit_pool(matrices, y, names, seed, n_jobs, workers, n_tasks: int):
    """A ``run(payloads)`` callable for several rounds of fits on the same matrices, as :func:`run_fits`
    makes them (the same fits, threads and results), with the worker processes kept between the rounds:
    the model selection fits its choice's final and temporal models right after choosing, in the workers
    that already hold and binned the matrices. ``n_tasks``: the first round's number of fits (with
    ``workers``, it decides how many processes start and the threads per fit, as in :func:`run_fits`)."""
    workers = _default_workers() if workers is None else max(1, int(workers))
    if workers == 1 or n_tasks < 2:
        worker_init(matrices, y, names, seed, n_jobs, lean=False)
        try:
            yield lambda payloads: [fit_task(p) for p in payloads]
        finally:
            clear_state()
        return
    n_jobs = max(1, (n_jobs if n_jobs is not None else _default_n_jobs()) // min(workers, n_tasks))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, n_tasks), mp_context=context,
                             initializer=worker_init, initargs=(matrices, y, names, seed, n_jobs)) as pool:
        def run(payloads):
            with _lean_workers():  # workers start while tasks are submitted
                futures = [pool.submit(fit_task, payload) for payload in payloads]
            return [future.result() for future in futures]
        yield run


@contextmanager
def _lean_workers():
    """Start the worker processes without the caller's ``__main__``.

    A "spawn" child first imports the parent's main module (a CLI, ``dagster``'s run worker, a script),
    with everything that imports: Dagster, dbt, Great Expectations. Each fit worker then held ~140-560 MB
    it never uses (measured: 367 MB per worker from a bare script, 508 MB when the script imported
    Dagster and the definitions, ~930 MB from a script that built the definitions), which took the lbm
    selection's process tree over 2 GiB. The workers need only :mod:`wijk_assets.lib.lgbm_fits`, so the
    parent's main module is hidden while they start."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main
